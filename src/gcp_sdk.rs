//! What every use of Google's Secret Manager client shares: the client (credentials from
//! Google's default chain, `ATL_GCP_ENDPOINT`, every call bounded, HTTPS through rustls
//! with ring), a runtime to call it from the synchronous code around it, and one sentence
//! for a failed call that names the IAM permission it needed. Used by the Secret Manager
//! store and by `psoxy`.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
pub use google_cloud_secretmanager_v1::Error;
pub use google_cloud_secretmanager_v1::client::SecretManagerService;
pub use google_cloud_secretmanager_v1::model;

use crate::exit::Exit;

/// Where the client sends its calls instead of `https://secretmanager.googleapis.com`: a
/// private endpoint, or a stand-in in tests (`http://` only on loopback).
pub const ENDPOINT_VAR: &str = "ATL_GCP_ENDPOINT";

/// A Secret Manager client and the runtime its calls run on.
pub struct Gcp {
    runtime: tokio::runtime::Runtime,
    pub client: SecretManagerService,
}

impl Gcp {
    /// A client with Google's default credentials (`GOOGLE_APPLICATION_CREDENTIALS`,
    /// gcloud's application-default file, or the metadata server on Google Cloud), for
    /// `what` (in messages). Exit 2 when there are none, or `ATL_GCP_ENDPOINT` is unusable.
    pub fn connect(timeout: Duration, what: &str) -> Result<Self> {
        let endpoint = endpoint()?;
        check_credentials(what)?;
        // The client's HTTPS uses the process's default rustls provider: ring, as everywhere
        // else here. Err means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let mut builder = SecretManagerService::builder()
            // The client's own tries, like the AWS SDK's three: a fault that passes within a
            // call's time is absorbed here; longer ones are the store protocol's to handle.
            .with_retry_policy(Aip194Strict.with_attempt_limit(3).with_time_limit(timeout * 2))
            .with_attempt_timeout(timeout);
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let client = runtime
            .block_on(async { tokio::time::timeout(timeout, builder.build()).await })
            .map_err(|_| {
                Exit::usage(format!(
                    "no Google credentials for {what} within {}: the metadata server did not answer. \
                     Set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run \
                     `gcloud auth application-default login`",
                    crate::duration::human(timeout)
                ))
            })?
            .map_err(|e| {
                Exit::usage(format!(
                    "cannot set up Google's Secret Manager client for {what}: {}",
                    crate::text::one_line(&crate::text::root_cause(&e))
                ))
            })?;
        Ok(Self { runtime, client })
    }

    /// Runs one call to completion, with the client. Must not run inside another runtime.
    pub fn run<T, F: Future<Output = T>>(&self, call: impl FnOnce(SecretManagerService) -> F) -> T {
        self.runtime.block_on(call(self.client.clone()))
    }
}

/// `ATL_GCP_ENDPOINT`, checked: `https://`, or `http://` on a loopback address.
fn endpoint() -> Result<Option<String>, Exit> {
    let Some(value) = std::env::var(ENDPOINT_VAR).ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    crate::config::store_address(ENDPOINT_VAR, &value, "Google credentials")?;
    Ok(Some(value.trim().trim_end_matches('/').to_owned()))
}

/// Exit 2 when no source of Google's default credentials can apply here: no key file named,
/// no gcloud application-default file, and not on Google Cloud (whose metadata server would
/// otherwise be waited for until the time limit).
fn check_credentials(what: &str) -> Result<(), Exit> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(file) = env("GOOGLE_APPLICATION_CREDENTIALS") {
        return if PathBuf::from(&file).is_file() {
            Ok(())
        } else {
            Err(Exit::usage(format!(
                "GOOGLE_APPLICATION_CREDENTIALS names {}, which is not a file: name a service-account \
                 key file, or unset it to use gcloud's application-default credentials",
                PathBuf::from(file).display()
            )))
        };
    }
    let gcloud = env("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config/gcloud")));
    let adc = gcloud.map(|dir| dir.join("application_default_credentials.json"));
    let on_google = env("GCE_METADATA_HOST").is_some()
        || std::fs::read_to_string("/sys/class/dmi/id/product_name").is_ok_and(|p| p.contains("Google"));
    if adc.as_deref().is_some_and(std::path::Path::is_file) || on_google {
        return Ok(());
    }
    Err(Exit::usage(format!(
        "no Google credentials for {what}: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key \
         file, or run `gcloud auth application-default login` (on Google Cloud, the metadata server's \
         service account is used)"
    )))
}

/// A failed call in one sentence; whether trying again may help; whether it is the settings'
/// fault (the credentials, a permission, a malformed name: exit 2).
pub struct Failure {
    pub message: String,
    pub passing: bool,
    pub usage: bool,
}

impl Failure {
    /// As an error: exit 2 for the settings' fault, else exit 1.
    pub fn into_error(self) -> anyhow::Error {
        if self.usage { Exit::usage(self.message).into() } else { anyhow::anyhow!(self.message) }
    }
}

/// Creates the secret `name` (`projects/P/secrets/S`) as atl-token creates one: automatic
/// replication, no labels.
pub async fn create_secret(client: SecretManagerService, name: String) -> Result<model::Secret, Error> {
    let (parent, id) = name.split_once("/secrets/").unwrap_or((&name, ""));
    let secret = model::Secret::new()
        .set_replication(model::Replication::new().set_automatic(model::replication::Automatic::new()));
    client.create_secret().set_parent(parent).set_secret_id(id).set_secret(secret).send().await
}

/// Adds `data` as a new version of the secret `name`.
pub async fn add_version(
    client: SecretManagerService,
    name: String,
    data: Vec<u8>,
) -> Result<model::SecretVersion, Error> {
    let payload = model::SecretPayload::new().set_data(data);
    client.add_secret_version().set_parent(name).set_payload(payload).send().await
}

/// The number at the end of `projects/P/secrets/S/versions/N`; `None` for an alias.
pub fn version_number(name: &str) -> Option<String> {
    let number = name.rsplit('/').next()?;
    number.chars().all(|c| c.is_ascii_digit()).then(|| number.to_owned()).filter(|n| !n.is_empty())
}

/// `action` (`AddSecretVersion`, …) on `resource` failed: Google's status and message, the
/// IAM permission it needs when it was refused, never a value. The full error goes to `-v`.
pub fn failure(action: &str, resource: &str, error: &Error) -> Failure {
    crate::http::log(|| format!("Secret Manager {action} failed: {error:?}"));
    let status = error.status();
    let code = status.map(|s| s.code);
    let detail = match status {
        Some(status) => format!("{}: {}", status.code, crate::text::one_line(&status.message)),
        None if error.is_timeout() => "no answer in time".to_owned(),
        None if error.is_authentication() => format!(
            "Google's credentials did not give a token ({}): check GOOGLE_APPLICATION_CREDENTIALS, or run \
             `gcloud auth application-default login`",
            crate::text::one_line(&crate::text::root_cause(error))
        ),
        None => match error.http_status_code() {
            Some(http) => format!("HTTP {http}"),
            None => format!(
                "it could not be reached ({})",
                crate::text::one_line(&crate::text::root_cause(error))
            ),
        },
    };
    let hint = match code {
        Some(Code::PermissionDenied) => {
            format!(" (the caller needs the IAM permission {} on it: see the README)", permission(action))
        }
        Some(Code::Unauthenticated) => {
            " (Google refused the credentials: check GOOGLE_APPLICATION_CREDENTIALS)".to_owned()
        }
        _ => String::new(),
    };
    let passing = match code {
        Some(code) => matches!(
            code,
            Code::Unavailable
                | Code::ResourceExhausted
                | Code::Internal
                | Code::DeadlineExceeded
                | Code::Aborted
        ),
        None => !error.is_authentication() && error.http_status_code().is_none_or(|s| s == 429 || s >= 500),
    };
    let usage = error.is_authentication()
        || matches!(code, Some(Code::PermissionDenied | Code::Unauthenticated | Code::InvalidArgument));
    let message = format!("GCP Secret Manager {action} on {resource} failed: {detail}{hint}");
    Failure { message: crate::text::one_line(&message), passing, usage }
}

/// Google's status code of a failed call, if the service answered with one.
pub fn code(error: &Error) -> Option<Code> {
    error.status().map(|s| s.code)
}

/// The IAM permission a Secret Manager call needs.
fn permission(action: &str) -> &'static str {
    match action {
        "GetSecret" => "secretmanager.secrets.get",
        "CreateSecret" => "secretmanager.secrets.create",
        "UpdateSecret" => "secretmanager.secrets.update",
        "AddSecretVersion" => "secretmanager.versions.add",
        "AccessSecretVersion" => "secretmanager.versions.access",
        "ListSecretVersions" => "secretmanager.versions.list",
        "GetSecretVersion" => "secretmanager.versions.get",
        "DestroySecretVersion" => "secretmanager.versions.destroy",
        _ => "for this call",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_come_from_resource_names() {
        assert_eq!(version_number("projects/p/secrets/s/versions/12").as_deref(), Some("12"));
        assert_eq!(version_number("projects/p/secrets/s/versions/atl-token-current"), None);
        assert_eq!(version_number(""), None);
    }
}

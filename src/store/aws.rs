//! The AWS Secrets Manager backend of the shared store ([`super::shared`]): the secret's
//! versions and its `AWSCURRENT` label. `docs/shared-store.md` sets out the protocol, and how
//! this backend maps onto its compare-and-set.
//!
//! The compare-and-set is `UpdateSecretVersionStage(AWSCURRENT, MoveToVersionId=new,
//! RemoveFromVersionId=old)`, which fails unless `old` still holds `AWSCURRENT`. Nothing
//! else ever moves `AWSCURRENT`: every `PutSecretValue` names one of our own labels
//! (`atl-claim`, `atl-next`), so a swap is two steps: a put, then that promote. A new set
//! put but not promoted keeps `atl-next`, where [`Cas::unfinished`] finds it.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use super::shared::{Cas, Purpose, Swapped, Unavailable, Versioned, Write, off_runtime};
use crate::config::SecretSettings;
use crate::exit::Exit;

const CURRENT: &str = "AWSCURRENT";
/// Our own labels: a claim (or any write that spends nothing), and a new generation.
const CLAIM: &str = "atl-claim";
const NEXT: &str = "atl-next";
/// AWS error codes that may pass if tried again.
const TRANSIENT: [&str; 7] = [
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
    "RequestTimeout",
];

/// A secret in AWS Secrets Manager.
pub struct Secret {
    secret_id: String,
    http_timeout: Duration,
    /// Made on first use, so that `print` from the copy builds no runtime or client.
    aws: OnceLock<Aws>,
}

struct Aws {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Aws {
    /// A runtime of its own and the SDK client. Must not run inside another runtime.
    fn connect(secret_id: &str, timeout: Duration) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let client = runtime.block_on(client(secret_id, timeout))?;
        Ok(Self { runtime, client })
    }
}

impl Secret {
    pub fn new(settings: &SecretSettings, http_timeout: Duration) -> Self {
        Self { secret_id: settings.secret_id.clone(), http_timeout, aws: OnceLock::new() }
    }

    fn aws(&self) -> Result<&Aws> {
        if let Some(aws) = self.aws.get() {
            return Ok(aws);
        }
        let (secret_id, timeout) = (self.secret_id.as_str(), self.http_timeout);
        let aws = off_runtime(|| Aws::connect(secret_id, timeout))??;
        Ok(self.aws.get_or_init(|| aws))
    }

    /// Runs one SDK call to completion. Inside another runtime (a login), on a thread of
    /// its own, as a runtime cannot be blocked on from within one.
    fn block<T: Send, F: Future<Output = T> + Send>(
        &self,
        call: impl FnOnce(Client) -> F + Send,
    ) -> Result<T> {
        let aws = self.aws()?;
        let client = aws.client.clone();
        off_runtime(|| aws.runtime.block_on(call(client)))
    }

    fn read_version(&self, version_id: &str) -> Result<String> {
        let (id, version) = (self.secret_id.clone(), version_id.to_owned());
        let answer = self.block(|client| async move {
            client.get_secret_value().secret_id(id).version_id(version).send().await
        })?;
        let output = answer.map_err(|e| self.failed("GetSecretValue", &e))?;
        Ok(output.secret_string().unwrap_or_default().to_owned())
    }

    /// Writes a new version under our label for `write`'s purpose (never `AWSCURRENT`),
    /// with `write.key` as its `ClientRequestToken`: the same key and text make one version.
    fn put(&self, write: &Write<'_>) -> Result<String> {
        let label = match write.purpose {
            Purpose::Claim => CLAIM,
            Purpose::Next => NEXT,
        };
        let (id, text, key) = (self.secret_id.clone(), write.text.to_owned(), write.key.to_owned());
        let answer = self.block(|client| async move {
            client
                .put_secret_value()
                .secret_id(id)
                .secret_string(text)
                .client_request_token(key)
                .version_stages(label)
                .send()
                .await
        })?;
        let output = answer.map_err(|e| self.failed("PutSecretValue", &e))?;
        output.version_id().map(str::to_owned).ok_or_else(|| anyhow!("PutSecretValue returned no version id"))
    }

    /// Moves `AWSCURRENT` to `to` if `from` still holds it. Any error means "maybe not":
    /// read again rather than parse the message.
    fn promote(&self, to: &str, from: &str) -> Result<bool> {
        let (id, target, source) = (self.secret_id.clone(), to.to_owned(), from.to_owned());
        let answer = self.block(|client| async move {
            client
                .update_secret_version_stage()
                .secret_id(id)
                .version_stage(CURRENT)
                .move_to_version_id(target)
                .remove_from_version_id(source)
                .send()
                .await
        })?;
        match answer {
            Ok(_) => Ok(true),
            Err(e) => match self.read()? {
                Some(current) if current.version == to => Ok(true),
                // Another version was promoted meanwhile: lost.
                Some(current) if current.version != from => Ok(false),
                // Nothing moved, so the call itself failed (a policy without
                // UpdateSecretVersionStage, say): trying again would only write more versions.
                _ => Err(self.failed("UpdateSecretVersionStage", &e)),
            },
        }
    }

    /// One sentence for a failed AWS call: the operation, the secret, and AWS's error code and
    /// message (or what kept the call from AWS), with what to check. The SDK's full debug
    /// form, a few KiB, goes to `-v`.
    fn failed<E>(&self, action: &str, error: &SdkError<E, HttpResponse>) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        crate::http::log(|| format!("AWS {action} failed: {error:?}"));
        let service = error.as_service_error();
        // An answer the SDK could not read (moto's XML for a bad signature, say) still names
        // its code and message.
        let raw = error.raw_response().and_then(|r| r.body().bytes()).map(String::from_utf8_lossy);
        let tag = |name: &str| {
            let text = raw.as_deref()?;
            let start = text.find(&format!("<{name}>"))? + name.len() + 2;
            Some(text[start..].split('<').next()?.to_owned())
        };
        let (raw_code, raw_message) = (tag("Code"), tag("Message"));
        let code = service.and_then(ProvideErrorMetadata::code).or(raw_code.as_deref()).unwrap_or_default();
        let hint = match code {
            "AccessDeniedException" => {
                " (the IAM policy must allow it on this secret: see the README's \"Many hosts\" section)"
            }
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch" => {
                " (AWS refused the credentials: check AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            }
            _ => "",
        };
        let detail = match (service, error) {
            (Some(service), _) => {
                let message = service.message().or(raw_message.as_deref());
                let message = message.map(|m| format!(": {m}")).unwrap_or_default();
                format!("{}{message}", if code.is_empty() { "an error with no code" } else { code })
            }
            (None, SdkError::TimeoutError(_)) => "no answer in time".to_owned(),
            (None, SdkError::DispatchFailure(_)) => {
                format!("AWS could not be reached ({})", root_cause(error))
            }
            (None, SdkError::ResponseError(_)) => {
                format!("its answer could not be read ({})", root_cause(error))
            }
            (None, _) => root_cause(error),
        };
        let message = format!("AWS Secrets Manager {action} on {} failed: {detail}{hint}", self.secret_id);
        let status = error.raw_response().map(|r| r.status().as_u16());
        let passing = match error {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
            _ => TRANSIENT.contains(&code) || status.is_some_and(|s| s == 429 || s >= 500),
        };
        if passing { Unavailable(message).into() } else { anyhow!(message) }
    }
}

impl Cas for Secret {
    fn what(&self) -> String {
        format!("secret {}", self.secret_id)
    }

    fn id(&self) -> &str {
        &self.secret_id
    }

    fn kind(&self) -> (&'static str, &'static str) {
        (crate::config::AWS_SECRETS_MANAGER, "AWS Secrets Manager")
    }

    fn read(&self) -> Result<Option<Versioned>> {
        let id = self.secret_id.clone();
        let answer = self.block(|client| async move {
            client.get_secret_value().secret_id(id).version_stage(CURRENT).send().await
        })?;
        let output = match answer {
            Ok(output) => output,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(self.failed("GetSecretValue", &e)),
        };
        Ok(Some(Versioned {
            version: output.version_id().unwrap_or_default().to_owned(),
            text: output.secret_string().unwrap_or_default().to_owned(),
        }))
    }

    fn create(&self, write: &Write<'_>) -> Result<Option<String>> {
        let (id, text, key) = (self.secret_id.clone(), write.text.to_owned(), write.key.to_owned());
        let answer = self.block(|client| async move {
            client.create_secret().name(id).secret_string(text).client_request_token(key).send().await
        })?;
        match answer {
            Ok(output) => Ok(Some(output.version_id().unwrap_or_default().to_owned())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_exists_exception()) => Ok(None),
            Err(e) => Err(self.failed("CreateSecret", &e)),
        }
    }

    fn swap(&self, expected: &str, write: &Write<'_>) -> Result<Swapped> {
        let version = self.put(write)?;
        if write.purpose == Purpose::Next {
            super::shared::pause_for_tests("put");
        }
        Ok(if self.promote(&version, expected)? { Swapped::Won(version) } else { Swapped::Lost })
    }

    /// The version labelled `atl-next`, when `AWSCURRENT` is elsewhere.
    fn unfinished(&self, current: &str) -> Result<Option<Versioned>> {
        let id = self.secret_id.clone();
        let answer =
            self.block(|client| async move { client.describe_secret().secret_id(id).send().await })?;
        let output = answer.map_err(|e| self.failed("DescribeSecret", &e))?;
        let next = output.version_ids_to_stages().and_then(|versions| {
            versions.iter().find(|(_, labels)| labels.iter().any(|l| l == NEXT)).map(|(v, _)| v.clone())
        });
        let Some(version) = next.filter(|v| v != current) else { return Ok(None) };
        let text = self.read_version(&version)?;
        Ok(Some(Versioned { version, text }))
    }

    fn finish(&self, unfinished: &str, expected: &str) -> Result<bool> {
        self.promote(unfinished, expected)
    }
}

/// The innermost cause of an error, in its own words: "Connection refused (os error 111)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The SDK client, from the standard AWS settings (`AWS_REGION`, `AWS_PROFILE`,
/// `AWS_ENDPOINT_URL`, …), with HTTPS through rustls and ring, and every call bounded.
async fn client(secret_id: &str, timeout: Duration) -> Result<Client> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeout / 2)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout * 2)
        .build();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts)
        .load()
        .await;
    if sdk.region().is_some() {
        return Ok(Client::new(&sdk));
    }
    // An ARN names its region: use it when the settings name none.
    let Some(region) = secret_id.strip_prefix("arn:").and_then(|rest| rest.split(':').nth(2)) else {
        return Err(Exit::usage(
            "no AWS region for the secret: set AWS_REGION (or a region in the AWS_PROFILE's config), \
             or give the secret's ARN in ATL_STORE",
        )
        .into());
    };
    let config = aws_sdk_secretsmanager::config::Builder::from(&sdk)
        .region(aws_config::Region::new(region.to_owned()))
        .build();
    Ok(Client::from_conf(config))
}

fn not_found<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ResourceNotFoundException")
}

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
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use super::shared::{Cas, Purpose, Swapped, Unavailable, Versioned, Write, off_runtime};
use crate::config::SecretSettings;

const CURRENT: &str = "AWSCURRENT";
/// Our own labels: a claim (or any write that spends nothing), and a new generation.
const CLAIM: &str = "atl-claim";
const NEXT: &str = "atl-next";

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
        let output = answer.map_err(|e| sent(self.failed("PutSecretValue", &e), write.text))?;
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

    /// One sentence for a failed AWS call ([`crate::aws_sdk::failure`]); a fault that may
    /// pass is [`Unavailable`].
    fn failed<E>(&self, action: &str, error: &SdkError<E, HttpResponse>) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let failure = crate::aws_sdk::failure("AWS Secrets Manager", action, &self.secret_id, error);
        if failure.passing { Unavailable(failure.message).into() } else { anyhow!(failure.message) }
    }
}

/// `error`, for a call that wrote `text`, without the tokens in it (an answer may echo it).
fn sent(error: anyhow::Error, text: &str) -> anyhow::Error {
    let message = crate::oauth::redact_sent(&format!("{error:#}"), text, &[]);
    if error.is::<Unavailable>() { Unavailable(message).into() } else { anyhow!(message) }
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
            Err(e) => Err(sent(self.failed("CreateSecret", &e), write.text)),
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
    fn unfinished(&self, current: &str) -> Result<Vec<Versioned>> {
        let id = self.secret_id.clone();
        let answer =
            self.block(|client| async move { client.describe_secret().secret_id(id).send().await })?;
        let output = answer.map_err(|e| self.failed("DescribeSecret", &e))?;
        let next = output.version_ids_to_stages().and_then(|versions| {
            versions.iter().find(|(_, labels)| labels.iter().any(|l| l == NEXT)).map(|(v, _)| v.clone())
        });
        let Some(version) = next.filter(|v| v != current) else { return Ok(Vec::new()) };
        let text = self.read_version(&version)?;
        Ok(vec![Versioned { version, text }])
    }

    fn finish(&self, unfinished: &str, expected: &str) -> Result<bool> {
        self.promote(unfinished, expected)
    }
}

/// The SDK client, from the standard AWS settings ([`crate::aws_sdk::settings`]).
async fn client(secret_id: &str, timeout: Duration) -> Result<Client> {
    let sdk = crate::aws_sdk::settings(timeout, Some(secret_id), &format!("secret {secret_id}")).await?;
    Ok(Client::new(&sdk))
}

fn not_found<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ResourceNotFoundException")
}

//! psoxy's places in AWS: SSM Parameter Store (values and lock) and Secrets Manager (values;
//! the lock stays in SSM, as psoxy keeps it there).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};

use super::{Meta, PLACEHOLDER, Place, REFRESH_TOKEN, STARTED_TAG, Target};
use crate::config::Config;
use crate::exit::{Code, Exit};

/// Where the values live; the lock is in SSM either way.
enum Home {
    Ssm,
    SecretsManager,
}

pub struct AwsPlace {
    target: Target,
    home: Home,
    kms_key_id: Option<String>,
    runtime: tokio::runtime::Runtime,
    ssm: aws_sdk_ssm::Client,
    secrets: aws_sdk_secretsmanager::Client,
    /// The lock parameters this process holds, by name, with the value it wrote, to release
    /// them only while they still hold it.
    held: std::cell::RefCell<Vec<(String, String)>>,
}

impl AwsPlace {
    pub fn connect(config: &Config, target: &Target, kms_key_id: Option<&str>) -> Result<Self> {
        let home = match target {
            Target::Ssm { .. } => Home::Ssm,
            Target::SecretsManager { .. } => Home::SecretsManager,
            Target::Gcp { .. } => return Err(anyhow!("{} is not an AWS target", target.label())),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let sdk = runtime.block_on(crate::aws_sdk::settings(config.http_timeout, None, &target.label()))?;
        Ok(Self {
            target: target.clone(),
            home,
            kms_key_id: kms_key_id.map(str::to_owned),
            ssm: aws_sdk_ssm::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            runtime,
            held: std::cell::RefCell::new(Vec::new()),
        })
    }

    fn ssm_failed<E>(
        &self,
        action: &str,
        name: &str,
        error: &aws_sdk_ssm::error::SdkError<E, aws_sdk_ssm::config::http::HttpResponse>,
    ) -> anyhow::Error
    where
        E: aws_sdk_ssm::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        anyhow!(crate::aws_sdk::failure("AWS SSM", action, name, error).message)
    }

    fn secrets_failed<E>(
        &self,
        action: &str,
        name: &str,
        error: &aws_sdk_secretsmanager::error::SdkError<
            E,
            aws_sdk_secretsmanager::config::http::HttpResponse,
        >,
    ) -> anyhow::Error
    where
        E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        anyhow!(crate::aws_sdk::failure("AWS Secrets Manager", action, name, error).message)
    }

    /// Takes one lock parameter the way psoxy does: create it (`Overwrite=false`), wait a
    /// moment, read it back; a stale one (2 minutes) is deleted and taken.
    fn take(&self, name: &str, deadline: Instant) -> Result<()> {
        loop {
            let mine = format!("locked_{}", now_ms());
            let created = self.runtime.block_on(
                self.ssm
                    .put_parameter()
                    .name(name)
                    .value(&mine)
                    .r#type(ParameterType::String)
                    .overwrite(false)
                    .send(),
            );
            match created {
                Ok(_) => {
                    std::thread::sleep(Duration::from_millis(
                        100 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 200,
                    ));
                    let (value, _) = self.read_lock(name)?.unwrap_or_default();
                    if value == mine {
                        self.held.borrow_mut().push((name.to_owned(), mine));
                        return Ok(());
                    }
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_already_exists()) => {
                    if let Some((_, taken_at)) = self.read_lock(name)?
                        && now_ms().saturating_sub(taken_at)
                            >= u64::try_from(super::LOCK_STALE.as_millis()).unwrap_or(0)
                    {
                        eprintln!(
                            "atl-token: note: psoxy's lock {name} is stale (over 2 minutes old): taking it"
                        );
                        self.delete(name)?;
                        continue;
                    }
                }
                Err(e) => return Err(self.ssm_failed("PutParameter", name, &e)),
            }
            if Instant::now() >= deadline {
                return Err(Exit::new(
                    Code::Failure,
                    format!(
                        "psoxy holds its lock {name}: it is refreshing the family now. Try again in a minute \
                         (a lock older than 2 minutes is taken over)"
                    ),
                )
                .into());
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The lock's value and when it was last modified (Unix ms); `None` when there is none.
    fn read_lock(&self, name: &str) -> Result<Option<(String, u64)>> {
        match self.runtime.block_on(self.ssm.get_parameter().name(name).send()) {
            Ok(output) => {
                let parameter = output.parameter();
                let value = parameter.and_then(|p| p.value()).unwrap_or_default().to_owned();
                let at = parameter
                    .and_then(|p| p.last_modified_date())
                    .map_or(0, |d| u64::try_from(d.to_millis().unwrap_or(0)).unwrap_or(0));
                Ok(Some((value, at)))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(None),
            Err(e) => Err(self.ssm_failed("GetParameter", name, &e)),
        }
    }

    fn delete(&self, name: &str) -> Result<()> {
        match self.runtime.block_on(self.ssm.delete_parameter().name(name).send()) {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(()),
            Err(e) => Err(self.ssm_failed("DeleteParameter", name, &e)),
        }
    }
}

impl Place for AwsPlace {
    fn lock(&self, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        for name in self.target.lock_names() {
            if let Err(e) = self.take(&name, deadline) {
                let _ = self.unlock();
                return Err(e);
            }
        }
        Ok(())
    }

    fn unlock(&self) -> Result<()> {
        let held: Vec<(String, String)> = self.held.borrow_mut().drain(..).collect();
        for (name, mine) in held {
            // Taken over meanwhile (psoxy counts a lock 2 minutes old as stale): the lock is
            // someone else's now, and not ours to delete.
            match self.read_lock(&name)? {
                Some((value, _)) if value == mine => self.delete(&name)?,
                Some(_) => eprintln!(
                    "atl-token: warning: psoxy's lock {name} no longer holds atl-token's value: someone took \
                     it over meanwhile, so it is left alone"
                ),
                None => {}
            }
        }
        Ok(())
    }

    fn put(&self, what: &str, value: &str) -> Result<()> {
        let name = self.target.name(what);
        match self.home {
            Home::Ssm => {
                let put = self
                    .ssm
                    .put_parameter()
                    .name(&name)
                    .value(value)
                    .r#type(ParameterType::SecureString)
                    .overwrite(true)
                    .set_key_id(self.kms_key_id.clone());
                self.runtime.block_on(put.send()).map_err(|e| self.ssm_failed("PutParameter", &name, &e))?;
            }
            Home::SecretsManager => {
                let put = self.secrets.put_secret_value().secret_id(&name).secret_string(value);
                match self.runtime.block_on(put.send()) {
                    Ok(_) => {}
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                        let create = self
                            .secrets
                            .create_secret()
                            .name(&name)
                            .secret_string(value)
                            .set_kms_key_id(self.kms_key_id.clone());
                        self.runtime
                            .block_on(create.send())
                            .map_err(|e| self.secrets_failed("CreateSecret", &name, &e))?;
                    }
                    Err(e) => return Err(self.secrets_failed("PutSecretValue", &name, &e)),
                }
            }
        }
        Ok(())
    }

    fn tag_started(&self, started_at: u64) -> Result<()> {
        let name = self.target.name(REFRESH_TOKEN);
        match self.home {
            Home::Ssm => {
                let tag = Tag::builder().key(STARTED_TAG).value(started_at.to_string()).build()?;
                let call = self
                    .ssm
                    .add_tags_to_resource()
                    .resource_type(ResourceTypeForTagging::Parameter)
                    .resource_id(&name)
                    .tags(tag);
                self.runtime
                    .block_on(call.send())
                    .map_err(|e| self.ssm_failed("AddTagsToResource", &name, &e))?;
            }
            Home::SecretsManager => {
                let tag = aws_sdk_secretsmanager::types::Tag::builder()
                    .key(STARTED_TAG)
                    .value(started_at.to_string())
                    .build();
                let call = self.secrets.tag_resource().secret_id(&name).tags(tag);
                self.runtime
                    .block_on(call.send())
                    .map_err(|e| self.secrets_failed("TagResource", &name, &e))?;
            }
        }
        Ok(())
    }

    fn describe(&self, what: &str) -> Result<Option<Meta>> {
        let name = self.target.name(what);
        match self.home {
            Home::Ssm => {
                let got =
                    self.runtime.block_on(self.ssm.get_parameter().name(&name).with_decryption(true).send());
                let output = match got {
                    Ok(output) => output,
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => {
                        return Ok(None);
                    }
                    Err(e) => return Err(self.ssm_failed("GetParameter", &name, &e)),
                };
                let parameter = output.parameter();
                let mut meta = Meta {
                    changed_at: parameter
                        .and_then(|p| p.last_modified_date())
                        .map(|d| u64::try_from(d.secs()).unwrap_or(0)),
                    started_at: None,
                    placeholder: parameter.and_then(|p| p.value()) == Some(PLACEHOLDER),
                };
                if what == REFRESH_TOKEN {
                    let tags = self.runtime.block_on(
                        self.ssm
                            .list_tags_for_resource()
                            .resource_type(ResourceTypeForTagging::Parameter)
                            .resource_id(&name)
                            .send(),
                    );
                    let tags = tags.map_err(|e| self.ssm_failed("ListTagsForResource", &name, &e))?;
                    meta.started_at = tags
                        .tag_list()
                        .iter()
                        .find(|t| t.key() == STARTED_TAG)
                        .and_then(|t| t.value().parse().ok());
                }
                Ok(Some(meta))
            }
            Home::SecretsManager => {
                let described = self.runtime.block_on(self.secrets.describe_secret().secret_id(&name).send());
                let output = match described {
                    Ok(output) => output,
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                        return Ok(None);
                    }
                    Err(e) => return Err(self.secrets_failed("DescribeSecret", &name, &e)),
                };
                let value = self.runtime.block_on(self.secrets.get_secret_value().secret_id(&name).send());
                let placeholder =
                    value.ok().and_then(|v| v.secret_string().map(|s| s == PLACEHOLDER)).unwrap_or(false);
                Ok(Some(Meta {
                    changed_at: output.last_changed_date().map(|d| u64::try_from(d.secs()).unwrap_or(0)),
                    started_at: output
                        .tags()
                        .iter()
                        .find(|t| t.key() == Some(STARTED_TAG))
                        .and_then(|t| t.value()?.parse().ok()),
                    placeholder,
                }))
            }
        }
    }
}

fn now_ms() -> u64 {
    u64::try_from(crate::token::clock().as_millis()).unwrap_or(u64::MAX)
}

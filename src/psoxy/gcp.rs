//! psoxy's place in GCP Secret Manager: one secret per value, the version psoxy reads named
//! by the label `latest-version`, and the lock a label on `{prefix}OAUTH_REFRESH_TOKEN`
//! (see the module above for psoxy's source).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use google_cloud_gax::error::rpc::Code;

use super::{LOCK_ID, LOCK_STALE, Meta, PLACEHOLDER, Place, REFRESH_TOKEN, STARTED_TAG, Target};
use crate::config::Config;
use crate::exit::{Code as ExitCode, Exit};
use crate::gcp_sdk::{self, Gcp, model};

/// psoxy's labels: the version to read, and its lock.
const VERSION_LABEL: &str = "latest-version";
const LOCK_LABEL: &str = "locked";
/// Updates of a secret's labels lost to another writer in a row before giving up.
const LABEL_TRIES: usize = 5;

pub struct GcpPlace {
    project: String,
    target: Target,
    gcp: Gcp,
    /// Whether this process holds psoxy's lock.
    /// The lock label's value this process set, while it holds the lock.
    held: std::cell::RefCell<Option<String>>,
}

impl GcpPlace {
    pub fn connect(config: &Config, target: &Target) -> Result<Self> {
        let Target::Gcp { project, .. } = target else {
            return Err(anyhow!("{} is not a GCP target", target.label()));
        };
        Ok(Self {
            project: project.clone(),
            target: target.clone(),
            gcp: Gcp::connect(config.http_timeout, &target.label())?,
            held: std::cell::RefCell::new(None),
        })
    }

    /// `projects/P/secrets/{prefix}{what}`.
    fn secret_name(&self, what: &str) -> String {
        format!("projects/{}/secrets/{}", self.project, self.target.name(what))
    }

    fn failed(&self, action: &str, resource: &str, error: &gcp_sdk::Error) -> anyhow::Error {
        gcp_sdk::failure(action, resource, error).into_error()
    }

    /// The secret, or `None` when it does not exist.
    fn get(&self, name: &str) -> Result<Option<model::Secret>> {
        let owned = name.to_owned();
        match self.gcp.run(|client| async move { client.get_secret().set_name(owned).send().await }) {
            Ok(secret) => Ok(Some(secret)),
            Err(e) if gcp_sdk::code(&e) == Some(Code::NotFound) => Ok(None),
            Err(e) => Err(self.failed("GetSecret", name, &e)),
        }
    }

    /// The secret, created (automatic replication) when psoxy's Terraform has not made it.
    fn get_or_create(&self, name: &str) -> Result<model::Secret> {
        if let Some(secret) = self.get(name)? {
            return Ok(secret);
        }
        let created = self.gcp.run(|client| gcp_sdk::create_secret(client, name.to_owned()));
        match created {
            Ok(secret) => Ok(secret),
            Err(e) if gcp_sdk::code(&e) == Some(Code::AlreadyExists) => {
                self.get(name)?.ok_or_else(|| anyhow!("{name} exists and does not"))
            }
            Err(e) => Err(self.failed("CreateSecret", name, &e)),
        }
    }

    /// Writes `secret`'s labels changed by `change`, with the etag it was read with. `Ok(false)`
    /// when the secret changed since (the etag refused).
    fn relabel(
        &self,
        secret: model::Secret,
        change: impl FnOnce(&mut HashMap<String, String>),
    ) -> Result<bool> {
        let name = secret.name.clone();
        let mut labels = secret.labels.clone();
        change(&mut labels);
        let update = model::Secret::new().set_name(name.clone()).set_etag(secret.etag).set_labels(labels);
        let mask = google_cloud_wkt::FieldMask::default().set_paths(["labels"]);
        let answer = self.gcp.run(|client| async move {
            client.update_secret().set_secret(update).set_update_mask(mask).send().await
        });
        match answer {
            Ok(_) => Ok(true),
            Err(e) if gcp_sdk::code(&e) == Some(Code::FailedPrecondition) => Ok(false),
            Err(e) => Err(self.failed("UpdateSecret", &name, &e)),
        }
    }

    /// [`GcpPlace::relabel`] on a fresh read, until the etag is accepted.
    fn relabel_fresh(&self, name: &str, change: impl Fn(&mut HashMap<String, String>)) -> Result<()> {
        for _ in 0..LABEL_TRIES {
            let secret = self.get_or_create(name)?;
            if self.relabel(secret, &change)? {
                return Ok(());
            }
        }
        Err(anyhow!("{name} changed under every update of its labels: try again"))
    }

    /// Destroys `name`'s enabled versions other than `keep`, as psoxy does after each write:
    /// each version left is billed. Best effort: the value is written already.
    fn destroy_others(&self, name: &str, keep: &str) {
        let parent = name.to_owned();
        let listed = self.gcp.run(|client| async move {
            client
                .list_secret_versions()
                .set_parent(parent)
                .set_filter("state:ENABLED")
                .set_page_size(20)
                .send()
                .await
        });
        let versions = match listed {
            Ok(listed) => listed.versions,
            Err(e) => {
                return eprintln!(
                    "atl-token: warning: old versions of {name} are left: {}",
                    self.failed("ListSecretVersions", name, &e)
                );
            }
        };
        for version in versions.into_iter().filter(|v| v.name != keep) {
            let target = version.name.clone();
            let destroyed = self
                .gcp
                .run(|client| async move { client.destroy_secret_version().set_name(target).send().await });
            if let Err(e) = destroyed {
                return eprintln!(
                    "atl-token: warning: old versions of {name} are left: {}",
                    self.failed("DestroySecretVersion", &version.name, &e)
                );
            }
        }
    }

    /// The text and creation time (Unix seconds) of `name`'s version `version`.
    fn read_version(&self, name: &str, version: &str) -> Result<Option<(String, Option<u64>)>> {
        let version_name = format!("{name}/versions/{version}");
        let wanted = version_name.clone();
        let accessed = self
            .gcp
            .run(|client| async move { client.access_secret_version().set_name(wanted).send().await });
        let access = match accessed {
            Ok(access) => access,
            Err(e) if matches!(gcp_sdk::code(&e), Some(Code::NotFound | Code::FailedPrecondition)) => {
                return Ok(None);
            }
            Err(e) => return Err(self.failed("AccessSecretVersion", &version_name, &e)),
        };
        let text = String::from_utf8_lossy(&access.payload.map(|p| p.data).unwrap_or_default()).into_owned();
        let resolved = access.name.clone();
        let meta = self
            .gcp
            .run(|client| async move { client.get_secret_version().set_name(resolved).send().await })
            .map_err(|e| self.failed("GetSecretVersion", &access.name, &e))?;
        let created = meta.create_time.and_then(|t| u64::try_from(t.seconds()).ok());
        Ok(Some((text, created)))
    }
}

impl Place for GcpPlace {
    fn lock(&self, wait: Duration) -> Result<()> {
        let name = self.secret_name(LOCK_ID);
        let deadline = Instant::now() + wait;
        let stale = u64::try_from(LOCK_STALE.as_millis()).unwrap_or(u64::MAX);
        loop {
            let secret = self.get_or_create(&name)?;
            let locked_at = secret.labels.get(LOCK_LABEL).and_then(|v| v.parse::<u64>().ok());
            let now = now_ms();
            let free = locked_at.is_none_or(|at| now.saturating_sub(at) >= stale);
            if free {
                if locked_at.is_some() {
                    eprintln!(
                        "atl-token: note: psoxy's lock on {name} is stale (over 2 minutes old): taking it"
                    );
                }
                if self.relabel(secret, |labels| {
                    labels.insert(LOCK_LABEL.to_owned(), now.to_string());
                })? {
                    *self.held.borrow_mut() = Some(now.to_string());
                    return Ok(());
                }
                // Another writer came first: look again.
                continue;
            }
            if Instant::now() >= deadline {
                return Err(Exit::new(
                    ExitCode::Failure,
                    format!(
                        "psoxy holds its lock (label {LOCK_LABEL} on {name}): it is refreshing the family now. \
                         Try again in a minute (a lock older than 2 minutes is taken over)"
                    ),
                )
                .into());
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn unlock(&self) -> Result<()> {
        let Some(mine) = self.held.borrow_mut().take() else { return Ok(()) };
        let name = self.secret_name(LOCK_ID);
        let ours = |labels: &HashMap<String, String>| labels.get(LOCK_LABEL) == Some(&mine);
        // Taken over meanwhile (psoxy counts a lock 2 minutes old as stale): not ours to
        // remove. The update is checked by the etag, so the label removed is the one read.
        if !ours(&self.get_or_create(&name)?.labels) {
            eprintln!(
                "atl-token: warning: psoxy's lock on {name} no longer holds atl-token's label: someone took it \
                 over meanwhile, so it is left alone"
            );
            return Ok(());
        }
        self.relabel_fresh(&name, |labels| {
            if ours(labels) {
                labels.remove(LOCK_LABEL);
            }
        })
    }

    fn put(&self, what: &str, value: &str) -> Result<()> {
        let name = self.secret_name(what);
        self.get_or_create(&name)?;
        let added =
            self.gcp.run(|client| gcp_sdk::add_version(client, name.clone(), value.as_bytes().to_vec()));
        let version = added.map_err(|e| self.failed("AddSecretVersion", &name, &e))?;
        let number = gcp_sdk::version_number(&version.name)
            .ok_or_else(|| anyhow!("AddSecretVersion named no version: {}", version.name))?;
        self.relabel_fresh(&name, |labels| {
            labels.insert(VERSION_LABEL.to_owned(), number.clone());
        })?;
        self.destroy_others(&name, &version.name);
        Ok(())
    }

    fn tag_started(&self, started_at: u64) -> Result<()> {
        self.relabel_fresh(&self.secret_name(REFRESH_TOKEN), |labels| {
            labels.insert(STARTED_TAG.to_owned(), started_at.to_string());
        })
    }

    fn describe(&self, what: &str) -> Result<Option<Meta>> {
        let name = self.secret_name(what);
        let Some(secret) = self.get(&name)? else { return Ok(None) };
        // As psoxy reads: the labelled version, else `latest`.
        let labelled = secret.labels.get(VERSION_LABEL).filter(|v| !v.is_empty());
        let mut read = match labelled {
            Some(version) => self.read_version(&name, version)?,
            None => None,
        };
        if read.is_none() {
            read = self.read_version(&name, "latest")?;
        }
        let Some((text, changed_at)) = read else { return Ok(None) };
        Ok(Some(Meta {
            changed_at,
            started_at: secret.labels.get(STARTED_TAG).and_then(|v| v.parse().ok()),
            placeholder: text == PLACEHOLDER,
        }))
    }
}

fn now_ms() -> u64 {
    u64::try_from(crate::token::clock().as_millis()).unwrap_or(u64::MAX)
}

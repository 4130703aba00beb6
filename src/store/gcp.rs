//! The GCP Secret Manager backend of the shared store ([`super::shared`]): each document is
//! a version of one secret, and the secret's version alias `atl-token-current` says which
//! version is current. Only an update of the secret that carries the etag it was read with
//! moves the alias; Secret Manager refuses it (`FAILED_PRECONDITION`) when the secret has
//! changed since. Through Google's official client ([`crate::gcp_sdk`]).
//!
//! - read: `AccessSecretVersion` of `versions/atl-token-current`: the document, and the
//!   version number the alias resolved to, in one call;
//! - swap: two steps. `GetSecret` (the alias still on `expected`, and the etag), then
//!   `AddSecretVersion`, then `UpdateSecret` of the alias with that etag;
//! - unfinished: the newest versions above the current one (a host stopped between the two
//!   steps); the protocol takes the one that is the next generation;
//! - old versions: each new generation destroys the versions below the current one that are
//!   older than [`KEEP`]. Secret Manager bills every version that is not destroyed (enabled
//!   or disabled), so a family refreshed every hour would otherwise add 2 a hour.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Result, anyhow};
use google_cloud_gax::error::rpc::Code;

use super::shared::{Cas, Purpose, Swapped, Unavailable, Versioned, Write, off_runtime};
use crate::config::{Config, GCP_SECRET_MANAGER, SecretSettings};
use crate::gcp_sdk::{self, Gcp, model, version_number};

/// The version alias that marks the current document.
const ALIAS: &str = "atl-token-current";
/// How long a version below the current one is kept before it is destroyed: enough to see
/// what happened in the last refreshes, short enough that a secret holds a handful.
const KEEP: Duration = Duration::from_secs(3600);
/// Versions destroyed at most per new generation, so that a backlog never slows a refresh.
const PRUNE_AT_MOST: usize = 10;
/// Versions above the current one looked at for an unfinished write.
const UNFINISHED_AT_MOST: usize = 4;

/// A secret in GCP Secret Manager.
pub struct GcpSecret {
    /// `gcp-secretmanager:projects/P/secrets/NAME`, for the files this host keeps.
    id: String,
    /// `projects/P/secrets/NAME`.
    name: String,
    what: String,
    http_timeout: Duration,
    /// Made on first use, so that `print` from the copy builds no runtime or client.
    gcp: OnceLock<Gcp>,
    /// Whether an old version could not be destroyed (said once).
    warned: std::cell::Cell<bool>,
}

impl GcpSecret {
    pub fn new(config: &Config, settings: &SecretSettings) -> Self {
        Self {
            id: format!("{GCP_SECRET_MANAGER}:{}", settings.secret_id),
            what: format!("GCP secret {}", settings.secret_id),
            name: settings.secret_id.clone(),
            http_timeout: config.http_timeout,
            gcp: OnceLock::new(),
            warned: std::cell::Cell::new(false),
        }
    }

    /// Runs one call to completion. Inside another runtime (a login), on a thread of its
    /// own, as a runtime cannot be blocked on from within one.
    fn block<T: Send, F: Future<Output = T> + Send>(
        &self,
        call: impl FnOnce(gcp_sdk::SecretManagerService) -> F + Send,
    ) -> Result<T> {
        let gcp = match self.gcp.get() {
            Some(gcp) => gcp,
            None => {
                let (timeout, what) = (self.http_timeout, self.what.as_str());
                let gcp = off_runtime(|| Gcp::connect(timeout, what))??;
                self.gcp.get_or_init(|| gcp)
            }
        };
        off_runtime(|| gcp.run(call))
    }

    /// One sentence for a failed call ([`gcp_sdk::failure`]): a fault that may pass is
    /// [`Unavailable`]; a refusal of the credentials or a permission is exit 2.
    fn failed(&self, action: &str, resource: &str, error: &gcp_sdk::Error) -> anyhow::Error {
        let failure = gcp_sdk::failure(action, resource, error);
        if failure.passing { Unavailable(failure.message).into() } else { failure.into_error() }
    }

    fn version_name(&self, version: &str) -> String {
        format!("{}/versions/{version}", self.name)
    }

    /// The secret's etag, and the version its alias names (`None`: no alias yet).
    fn secret(&self) -> Result<Option<(String, Option<String>)>> {
        let name = self.name.clone();
        match self.block(|client| async move { client.get_secret().set_name(name).send().await })? {
            Ok(secret) => Ok(Some((secret.etag, secret.version_aliases.get(ALIAS).map(i64::to_string)))),
            Err(e) if gcp_sdk::code(&e) == Some(Code::NotFound) => Ok(None),
            Err(e) => Err(self.failed("GetSecret", &self.name, &e)),
        }
    }

    /// Adds `text` as a new version: its number.
    fn add(&self, text: &str) -> Result<String> {
        let (name, data) = (self.name.clone(), text.as_bytes().to_vec());
        let added = self.block(|client| gcp_sdk::add_version(client, name, data))?;
        let version = added.map_err(|e| -> anyhow::Error {
            let error = self.failed("AddSecretVersion", &self.name, &e);
            // An answer may echo the tokens it was sent.
            let message = crate::oauth::redact_sent(&format!("{error:#}"), text, &[]);
            let code = crate::exit::code_for(&error);
            if error.is::<Unavailable>() {
                Unavailable(message).into()
            } else {
                crate::exit::Exit::new(code, message).into()
            }
        })?;
        version_number(&version.name)
            .ok_or_else(|| anyhow!("AddSecretVersion named no version: {}", version.name))
    }

    /// Moves the alias to `to` if the secret is unchanged since `etag` was read. Without an
    /// answer, the alias is read again: on `to`, moved; elsewhere than `from`, lost.
    fn point(&self, to: &str, from: Option<&str>, etag: &str) -> Result<bool> {
        let number: i64 = to.parse().map_err(|_| anyhow!("{}: a version that is not a number", self.id))?;
        let secret = model::Secret::new()
            .set_name(self.name.clone())
            .set_etag(etag.to_owned())
            .set_version_aliases(HashMap::from([(ALIAS.to_owned(), number)]));
        let mask = google_cloud_wkt::FieldMask::default().set_paths(["version_aliases"]);
        let answer = self.block(|client| async move {
            client.update_secret().set_secret(secret).set_update_mask(mask).send().await
        })?;
        match answer {
            Ok(_) => Ok(true),
            // The etag is stale: another write came first.
            Err(e) if gcp_sdk::code(&e) == Some(Code::FailedPrecondition) => Ok(false),
            Err(e) => {
                let error = self.failed("UpdateSecret", &self.name, &e);
                if !error.chain().any(|c| c.is::<Unavailable>()) {
                    return Err(error);
                }
                match self.secret() {
                    Ok(Some((_, alias))) if alias.as_deref() == Some(to) => Ok(true),
                    Ok(Some((_, alias))) if alias.as_deref() != from => Ok(false),
                    _ => Err(error),
                }
            }
        }
    }

    /// The text of version `version`.
    fn access(&self, version: &str) -> Result<Option<Versioned>> {
        let name = self.version_name(version);
        let shown = name.clone();
        let answer =
            self.block(|client| async move { client.access_secret_version().set_name(name).send().await })?;
        let access = match answer {
            Ok(access) => access,
            // No secret, no alias yet (a create stopped halfway), or a destroyed version.
            Err(e) if matches!(gcp_sdk::code(&e), Some(Code::NotFound | Code::FailedPrecondition)) => {
                return Ok(None);
            }
            Err(e) => return Err(self.failed("AccessSecretVersion", &shown, &e)),
        };
        let version = version_number(&access.name).unwrap_or_else(|| version.to_owned());
        let data = access.payload.map(|p| p.data).unwrap_or_default();
        Ok(Some(Versioned { version, text: String::from_utf8_lossy(&data).into_owned() }))
    }

    /// The enabled versions, newest first (the first page, 100: destroyed versions stay
    /// listed forever, and are left out by the filter).
    fn versions(&self) -> Result<Vec<model::SecretVersion>> {
        let parent = self.name.clone();
        let listed = self.block(|client| async move {
            client
                .list_secret_versions()
                .set_parent(parent)
                .set_filter("state:ENABLED")
                .set_page_size(100)
                .send()
                .await
        })?;
        let listed = listed.map_err(|e| self.failed("ListSecretVersions", &self.name, &e))?;
        let mut versions: Vec<model::SecretVersion> = listed
            .versions
            .into_iter()
            .filter(|v| v.state == model::secret_version::State::Enabled)
            .collect();
        versions
            .sort_by_key(|v| std::cmp::Reverse(version_number(&v.name).and_then(|n| n.parse::<u64>().ok())));
        Ok(versions)
    }

    /// Destroys versions below `current` older than [`KEEP`]; best effort. A missing
    /// permission is said once, since each version left is billed.
    fn prune(&self, current: &str) {
        let Ok(current) = current.parse::<u64>() else { return };
        let now = crate::token::now();
        let old = |v: &model::SecretVersion| {
            let number = version_number(&v.name).and_then(|n| n.parse::<u64>().ok()).unwrap_or(u64::MAX);
            let created = v.create_time.map_or(i64::MAX, |t| t.seconds());
            number < current && u64::try_from(created).is_ok_and(|c| c + KEEP.as_secs() <= now)
        };
        let versions = match self.versions() {
            Ok(versions) => versions,
            Err(e) => return crate::http::log(|| format!("old versions of {} not pruned: {e:#}", self.name)),
        };
        for version in versions.into_iter().filter(old).take(PRUNE_AT_MOST) {
            let name = version.name.clone();
            let destroyed = self
                .block(|client| async move { client.destroy_secret_version().set_name(name).send().await });
            let error = match destroyed {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => self.failed("DestroySecretVersion", &version.name, &e),
                Err(e) => e,
            };
            if !self.warned.replace(true) {
                eprintln!(
                    "atl-token: warning: old versions of {} are not destroyed, and each is billed while it \
                     exists: {error:#}",
                    self.name
                );
            }
            return;
        }
    }
}

impl Cas for GcpSecret {
    fn what(&self) -> String {
        self.what.clone()
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> (&'static str, &'static str) {
        (GCP_SECRET_MANAGER, "GCP Secret Manager")
    }

    fn read(&self) -> Result<Option<Versioned>> {
        self.access(ALIAS)
    }

    /// Creates the secret (automatic replication), adds the first version and points the
    /// alias at it. A secret that exists without the alias (a create stopped halfway) is
    /// finished the same way, with its etag.
    fn create(&self, write: &Write<'_>) -> Result<Option<String>> {
        let name = self.name.clone();
        let created = self.block(|client| gcp_sdk::create_secret(client, name))?;
        let etag = match created {
            Ok(secret) => secret.etag,
            Err(e) if gcp_sdk::code(&e) == Some(Code::AlreadyExists) => match self.secret()? {
                Some((etag, None)) => etag,
                _ => return Ok(None),
            },
            Err(e) => return Err(self.failed("CreateSecret", &self.name, &e)),
        };
        let version = self.add(write.text)?;
        Ok(self.point(&version, None, &etag)?.then_some(version))
    }

    fn swap(&self, expected: &str, write: &Write<'_>) -> Result<Swapped> {
        let Some((etag, alias)) = self.secret()? else { return Ok(Swapped::Lost) };
        if alias.as_deref() != Some(expected) {
            return Ok(Swapped::Lost);
        }
        let version = self.add(write.text)?;
        if write.purpose == Purpose::Next {
            super::shared::pause_for_tests("put");
        }
        if !self.point(&version, Some(expected), &etag)? {
            return Ok(Swapped::Lost);
        }
        if write.purpose == Purpose::Next {
            self.prune(&version);
        }
        Ok(Swapped::Won(version))
    }

    /// The newest few versions above the current one.
    fn unfinished(&self, current: &str) -> Result<Vec<Versioned>> {
        let Ok(current) = current.parse::<u64>() else { return Ok(Vec::new()) };
        let above: Vec<String> = self
            .versions()?
            .iter()
            .filter_map(|v| version_number(&v.name))
            .filter(|n| n.parse::<u64>().is_ok_and(|n| n > current))
            .take(UNFINISHED_AT_MOST)
            .collect();
        let mut written = Vec::new();
        for version in above {
            written.extend(self.access(&version)?);
        }
        Ok(written)
    }

    fn finish(&self, unfinished: &str, expected: &str) -> Result<bool> {
        let Some((etag, alias)) = self.secret()? else { return Ok(false) };
        if alias.as_deref() != Some(expected) {
            return Ok(false);
        }
        self.point(unfinished, Some(expected), &etag)
    }
}

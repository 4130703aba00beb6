//! What a host keeps of a shared store's family beside where its token file would be: a
//! copy of the access token (`token.json.access`, never the refresh token), so that `print`
//! on a fresh token makes no network call, and a new token set that could not yet be
//! written to the store (`token.json.next`), so that a host that gave up hands it over on
//! its next run. Both are mode 0600, and read as the token file is: never through a link,
//! never another user's file.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde_json::{Map, Value, json};

use crate::safe_path::write_private;
use crate::token::Token;

/// How much earlier than its expiry a host may refresh: a share of the token's lifetime.
const JITTER_SHARE: u32 = 10;
const MAX_JITTER: Duration = Duration::from_secs(300);
/// More than any token set.
const MAX_SIZE: u64 = 1024 * 1024;

/// This host's files for one shared family, named by the store's `id`.
pub struct Kept {
    /// The store, as recorded in the files: a file for another store is not used.
    id: String,
    pub copy: PathBuf,
    pub next: PathBuf,
}

impl Kept {
    pub fn new(token_file: &Path, id: &str) -> Self {
        Self { id: id.to_owned(), copy: copy_path(token_file), next: sibling(token_file, ".next") }
    }

    /// Keeps a copy of `token`'s access token (the refresh token left out) and `generation`;
    /// without a token, removes the copy. A copy that cannot be written is a warning.
    pub fn keep_copy(&self, token: Option<&Map<String, Value>>, generation: u64) {
        let Some(token) = token else {
            let _ = fs::remove_file(&self.copy);
            return;
        };
        let mut token = token.clone();
        token.remove("refresh_token");
        let copy = json!({"secret": self.id, "generation": generation, "token": token});
        if let Err(e) = write_private(&self.copy, &serde_json::to_vec(&copy).expect("JSON"), false) {
            eprintln!("atl-token: warning: cannot keep the access token in {}: {e:#}", self.copy.display());
        }
    }

    /// The copy of the access token, seen as expiring `jitter`'s share of the spread early.
    pub fn read_copy(&self, jitter: f64) -> Result<Option<Token>> {
        read_copy(&self.copy, &self.id, jitter, true)
    }

    /// Keeps `document` (a new token set not yet in the store), synced to disk before it
    /// returns.
    pub fn keep_next(&self, document: &Value) -> Result<()> {
        let kept = json!({"secret": self.id, "document": document});
        write_private(&self.next, &serde_json::to_vec(&kept).expect("JSON"), true)
    }

    /// The document kept by [`Kept::keep_next`], if any.
    pub fn read_next(&self) -> Result<Option<Value>> {
        Ok(read_own(&self.next, "kept token set", &self.id, true)?.map(|mut kept| kept["document"].take()))
    }

    pub fn forget_next(&self) {
        let _ = fs::remove_file(&self.next);
    }
}

/// How much earlier than its expiry a host may refresh a token set: a share of its lifetime.
pub fn spread(token: &Token) -> Duration {
    token.lifetime().map_or(Duration::ZERO, |l| (l / JITTER_SHARE).min(MAX_JITTER))
}

/// A number in [0, 1) drawn anew: a process's share of the jitter, or of a pause.
pub fn random_share() -> f64 {
    f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 256.0
}

/// For the hot path: this host's copy of the access token of the shared store `id`, beside
/// `token_file`, with a jitter of this process's own.
pub fn fresh_copy(token_file: &Path, id: &str) -> Option<Token> {
    read_copy(&copy_path(token_file), id, random_share(), false).ok()?
}

/// The copy at `path`, if it is one of `id`'s family, its expiry moved `jitter`'s share of
/// the spread earlier, so that the hosts of a fleet go to the store at different moments.
/// Another user's file there is skipped, with a warning when `warn`.
fn read_copy(path: &Path, id: &str, jitter: f64, warn: bool) -> Result<Option<Token>> {
    let Some(copy) = read_own(path, "access token copy", id, warn)? else { return Ok(None) };
    let Some(Value::Object(mut fields)) = copy.get("token").cloned() else { return Ok(None) };
    let early = spread(&Token::from_fields(fields.clone())).mul_f64(jitter).as_secs();
    if let Some(at) = fields.get(crate::token::EXPIRES_AT).and_then(Value::as_u64) {
        fields.insert(crate::token::EXPIRES_AT.to_owned(), at.saturating_sub(early).into());
    }
    Ok(Some(Token::from_fields(fields)))
}

/// A file kept for `id` (`{"secret": …, …}`). `None` when there is none, or it is for
/// another store, or not JSON, or not the user's own (skipped, with a warning when `warn`).
fn read_own(path: &Path, what: &str, id: &str, warn: bool) -> Result<Option<Value>> {
    let Some(opened) = crate::safe_path::open_own(path, what, warn)? else { return Ok(None) };
    let bytes = crate::safe_path::read_limited(opened, path, MAX_SIZE, what)?;
    Ok(serde_json::from_slice::<Value>(&bytes).ok().filter(|kept| kept["secret"] == id))
}

fn copy_path(token_file: &Path) -> PathBuf {
    sibling(token_file, ".access")
}

/// `token.json` + `suffix`, beside it.
fn sibling(token_file: &Path, suffix: &str) -> PathBuf {
    let mut name = token_file.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    token_file.with_file_name(name)
}

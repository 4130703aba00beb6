//! The folder files the user trusts (`atl-token trust`, direnv's `allow` is the model): each
//! by its real path and the SHA-256 of its bytes, in `trusted.json` under atl-token's own
//! folder. A changed file is no longer trusted. Reads and writes only that list; the
//! decision of what an untrusted file may set is [`super::sources`]'.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::exit::Exit;
use crate::safe_path::{self, Rules};

/// The list's file name, in atl-token's own folder.
pub const LIST_FILE: &str = "trusted.json";

/// The list: only the user's own file, like a token file.
const LIST: Rules = Rules { what: "trust list", key: "atl-token trust --list", root_may_own: false };
/// A list of a few hundred files is a few dozen KiB; a larger one is refused unread.
const MAX_LIST: u64 = 1024 * 1024;

/// The files trusted, as `trusted.json` holds them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TrustList {
    pub files: Vec<Trusted>,
}

/// One trusted file: where it is, and what it held when the user trusted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trusted {
    /// The real path, links resolved.
    pub path: String,
    /// The SHA-256 of its bytes, in lowercase hex.
    pub sha256: String,
}

/// Whether a file is trusted as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// Trusted once, but its bytes have changed since.
    Changed,
    Unknown,
}

impl TrustList {
    /// What the list says of the file at `real` (links resolved) holding `bytes`.
    pub fn verdict(&self, real: &Path, bytes: &[u8]) -> Verdict {
        let path = real.to_string_lossy();
        match self.files.iter().find(|t| t.path == path) {
            None => Verdict::Unknown,
            Some(t) if t.sha256 == sha256_hex(bytes) => Verdict::Trusted,
            Some(_) => Verdict::Changed,
        }
    }

    /// Records `real` as holding `bytes`, in place of an earlier record of it.
    pub fn add(&mut self, real: &Path, bytes: &[u8]) {
        self.remove(real);
        self.files.push(Trusted { path: real.to_string_lossy().into_owned(), sha256: sha256_hex(bytes) });
    }

    /// Forgets `real`; whether it was there.
    pub fn remove(&mut self, real: &Path) -> bool {
        let path = real.to_string_lossy();
        let before = self.files.len();
        self.files.retain(|t| t.path != path);
        self.files.len() != before
    }
}

/// The SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The list's path under atl-token's folder `config_dir`.
pub fn list_path(config_dir: &Path) -> PathBuf {
    config_dir.join(LIST_FILE)
}

/// Reads the list in `config_dir` (empty when there is none) by the token file's rules: the
/// user's own regular file, in a folder nobody else can write.
pub fn load(config_dir: &Path) -> Result<TrustList> {
    let path = list_path(config_dir);
    let Some(bytes) = safe_path::read_trusted(&path, &LIST, MAX_LIST)? else {
        return Ok(TrustList::default());
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Exit::usage(format!(
            "{} is not a trust list ({e}): remove it, then run `atl-token trust` again for each file you trust",
            path.display()
        ))
        .into()
    })
}

/// Writes the list in `config_dir` (mode 600, the folder made 700 if missing), replacing it
/// whole.
pub fn save(config_dir: &Path, list: &TrustList) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = list_path(config_dir);
    if !config_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(config_dir)
            .with_context(|| format!("cannot make folder {}", config_dir.display()))?;
    }
    // The folder's rules, checked before anything is written into it.
    safe_path::resolve_with(&path, &LIST)?;
    let mut file = tempfile::Builder::new()
        .prefix(".atl-token-trust.")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(config_dir)
        .with_context(|| format!("cannot write in {}", config_dir.display()))?;
    let mut bytes = serde_json::to_vec_pretty(list).context("cannot write the trust list")?;
    bytes.push(b'\n');
    file.write_all(&bytes).and_then(|()| file.as_file().sync_all()).context("cannot write the trust list")?;
    file.persist(&path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_trusted_only_as_it_was_when_trusted() {
        let mut list = TrustList::default();
        let path = Path::new("/home/me/jira/.env");
        assert_eq!(list.verdict(path, b"ATL_ON_ROTATE=true\n"), Verdict::Unknown);
        list.add(path, b"ATL_ON_ROTATE=true\n");
        assert_eq!(list.verdict(path, b"ATL_ON_ROTATE=true\n"), Verdict::Trusted);
        assert_eq!(list.verdict(path, b"ATL_ON_ROTATE=id\n"), Verdict::Changed);
        assert_eq!(list.verdict(Path::new("/home/me/other/.env"), b"ATL_ON_ROTATE=true\n"), Verdict::Unknown);
        list.add(path, b"ATL_ON_ROTATE=id\n");
        assert_eq!(list.files.len(), 1, "trusting again replaces the record");
        assert!(list.remove(path));
        assert_eq!(list.verdict(path, b"ATL_ON_ROTATE=id\n"), Verdict::Unknown);
    }

    #[test]
    fn sha256_matches_the_known_answer() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn the_list_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_dir = dir.path().join("atl-token");
        assert!(load(&config_dir).expect("no list is an empty one").files.is_empty());
        let mut list = TrustList::default();
        list.add(Path::new("/srv/jira/.env"), b"x");
        save(&config_dir, &list).expect("saved");
        let mode = std::fs::metadata(list_path(&config_dir)).expect("meta").permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        assert_eq!(load(&config_dir).expect("read").files, list.files);
    }
}

//! The token file on disk: reading it, the lock that serializes refreshes, and the atomic
//! replace that never leaves a half-written file or loses a rotated refresh token.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use tempfile::NamedTempFile;

use crate::exit::Exit;
use crate::token::{self, Token};

/// Token files and everything beside them that may hold a token are created with this mode.
const PRIVATE: u32 = 0o600;
/// Space set aside before a refresh token is spent, so that the answer can be written.
/// Atlassian's token sets are a few KiB; this leaves room for far larger ones.
const MIN_RESERVATION: u64 = 64 * 1024;
/// Waiting longer than this for another atl-token means something is stuck.
pub const LOCK_WAIT: Duration = Duration::from_secs(180);
/// A temp file beside the token file older than this was left by a process that died (a
/// login waits minutes, not a day): the next refresh removes it.
const STALE_TEMP: Duration = Duration::from_secs(24 * 3600);
/// How often a waiting process tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// Set in the environment of a debug build, this turns the lock off, so that a test can show
/// what the lock prevents. Release builds do not contain the switch.
#[cfg(debug_assertions)]
const NO_LOCK_FOR_TESTS: &str = "ATL_TOKEN_TEST_ONLY_NO_LOCK";

/// The token file at a path.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

/// A token as read from disk.
#[derive(Debug)]
pub struct Stored {
    pub token: Token,
    /// The file's bytes as read, for `print --json`.
    pub bytes: Vec<u8>,
    /// The file's modification time (Unix seconds), for files without `expires_at`.
    pub written_at: Option<u64>,
}

impl Stored {
    pub fn remaining(&self, now: u64) -> Duration {
        self.token.remaining(now, self.written_at)
    }
}

impl Store {
    pub fn new(path: PathBuf) -> Self {
        // A token file that is a symlink (into a secrets folder, say) is replaced where it
        // points, with its lock beside the real file: a rename over the link would leave the
        // real file behind, stale.
        let path = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(&path).unwrap_or(path),
            _ => path,
        };
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    /// The token, or `None` when there is no file.
    pub fn load(&self) -> Result<Option<Stored>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read token file {}", self.path.display()));
            }
        };
        let mut bytes = Vec::new();
        // The modification time of the very file that was read, even if it is replaced now.
        let modified = file.metadata().and_then(|m| m.modified());
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read token file {}", self.path.display()))?;
        let token = Token::parse(&bytes).map_err(|e| {
            Exit::login_required(format!(
                "{} is not a token file ({e}): run `atl-token login` to replace it",
                self.path.display()
            ))
        })?;
        let written_at = modified.ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs());
        Ok(Some(Stored { token, bytes, written_at }))
    }

    /// The token, or exit 4 telling the user to log in.
    pub fn load_existing(&self) -> Result<Stored> {
        self.load()?.ok_or_else(|| {
            Exit::login_required(format!("no token in {}: run `atl-token login` first", self.path.display()))
                .into()
        })
    }

    /// Takes the exclusive lock beside the token file (`token.json.lock`), waiting up to
    /// `wait` for another atl-token to finish. Released when the guard is dropped, and by
    /// the OS if the process dies.
    pub fn lock(&self, wait: Duration) -> Result<Lock> {
        let path = self.sibling(".lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        #[cfg(debug_assertions)]
        if std::env::var_os(NO_LOCK_FOR_TESTS).is_some() {
            return Ok(Lock { _file: file });
        }
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(LOCK_POLL),
                Err(TryLockError::WouldBlock) => {
                    return Err(anyhow!(
                        "another atl-token has held {} for over {}: is one stuck? (see `fuser {}`)",
                        path.display(),
                        crate::duration::human(wait),
                        path.display()
                    ));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
        }
    }

    /// Creates the temp file that will replace the token file and fills it, proving that
    /// the folder is writable and has room before a refresh token is spent.
    pub fn reserve(&self) -> Result<Reservation> {
        let dir = self.dir();
        let current = fs::metadata(&self.path).map_or(0, |m| m.len());
        let size = MIN_RESERVATION.max(current.saturating_mul(4));
        let context = || {
            format!(
                "cannot write a new token file in {} (nothing was sent to the server; \
                 free some space or fix the folder's permissions)",
                dir.display()
            )
        };
        let prefix = self.temp_prefix();
        self.remove_stale_temps(&prefix);
        let mut file = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .permissions(fs::Permissions::from_mode(PRIVATE))
            .tempfile_in(dir)
            .with_context(context)?;
        fill(file.as_file_mut(), size).with_context(context)?;
        Ok(Reservation { file, target: self.path.clone() })
    }

    /// Temp files are named `.token.json.XXXXXX.tmp`.
    fn temp_prefix(&self) -> String {
        format!(".{}.", self.path.file_name().unwrap_or_default().to_string_lossy())
    }

    /// Removes temp files that a killed process left behind, a day after they were written.
    fn remove_stale_temps(&self, prefix: &str) {
        let Ok(entries) = fs::read_dir(self.dir()) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(prefix) && name.ends_with(".tmp")) {
                continue;
            }
            let modified = entry.metadata().and_then(|m| m.modified());
            if modified.is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_TEMP)) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Writes `size` bytes of spaces, so the file system has allotted the blocks.
fn fill(file: &mut File, size: u64) -> io::Result<()> {
    const CHUNK: [u8; 8192] = [b' '; 8192];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(CHUNK.len() as u64)).unwrap_or(CHUNK.len());
        file.write_all(&CHUNK[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// The exclusive lock that serializes everything that reads, spends and writes a refresh token.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// A temp file beside the token file, already sized, waiting for the new token.
#[derive(Debug)]
pub struct Reservation {
    file: NamedTempFile,
    target: PathBuf,
}

impl Reservation {
    /// Replaces the token file with `token`: write, fsync, rename, fsync the folder.
    ///
    /// If that fails, the token set is saved to a rescue file (mode 0600) whose path the
    /// error gives, so a refresh token the server has already rotated is never lost.
    pub fn commit(self, token: &Token) -> Result<()> {
        let bytes = token.to_bytes();
        let Self { mut file, target } = self;
        let (cause, kept) = match write_over(file.as_file_mut(), &bytes) {
            Err(e) => (e, None),
            Ok(()) => match file.persist(&target) {
                Ok(_) => {
                    sync_dir(&target);
                    return Ok(());
                }
                // The temp file holds the complete new token set: keep it as the rescue.
                Err(e) => (e.error, e.file.keep().ok().map(|(_, path)| path)),
            },
        };
        let rescue = kept.or_else(|| write_rescue(&target, &bytes));
        Err(match rescue {
            Some(rescue) => anyhow!(
                "cannot replace token file {}: {cause}. The new token set, with the only valid refresh \
                 token, was saved to {}: move it over {} before the next refresh",
                target.display(),
                rescue.display(),
                target.display()
            ),
            None => anyhow!(
                "cannot replace token file {} ({cause}), and no rescue file could be written either: \
                 the new refresh token is lost; run `atl-token login`",
                target.display()
            ),
        })
    }
}

fn write_over(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    file.rewind()?;
    file.write_all(bytes)?;
    file.set_len(bytes.len() as u64)?;
    file.sync_all()
}

/// Makes a rename durable. A failure here is reported but not fatal: the new file is in place.
fn sync_dir(target: &Path) {
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        eprintln!("atl-token: warning: cannot fsync {}: {e}", dir.display());
    }
}

/// Saves the token set beside the target, else in the temp folder. Returns where.
fn write_rescue(target: &Path, bytes: &[u8]) -> Option<PathBuf> {
    let stamp = format!("{}-{}", token::now(), std::process::id());
    let name = target.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let beside = target.with_file_name(format!("{name}.rescue-{stamp}"));
    let elsewhere = std::env::temp_dir().join(format!("atl-token-{name}.rescue-{stamp}"));
    [beside, elsewhere].into_iter().find(|path| {
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new().write(true).create_new(true).mode(PRIVATE).open(path)?;
            file.write_all(bytes)?;
            file.sync_all()
        };
        write().is_ok()
    })
}

/// Creates the token file's folder (mode 0700) if it is missing, for a first login.
pub fn ensure_dir(store: &Store) -> Result<()> {
    let dir = store.dir();
    if dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create folder {} for the token file", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(refresh: &str) -> Token {
        let answer = json!({"access_token": "a", "refresh_token": refresh, "expires_in": 60});
        let serde_json::Value::Object(map) = answer else { unreachable!() };
        Token::from_response(map, None, 100)
    }

    #[test]
    fn commit_replaces_the_file_with_mode_0600_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("token.json"));
        fs::write(store.path(), "old").expect("write");
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).expect("chmod");

        store.reserve().expect("reserve").commit(&token("r2")).expect("commit");

        let stored = store.load().expect("load").expect("file exists");
        assert_eq!(stored.token.refresh_token(), Some("r2"));
        let mode = fs::metadata(store.path()).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> =
            fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("token.json")]);
    }

    #[test]
    fn a_symlinked_token_file_is_replaced_where_it_points() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = dir.path().join("secrets");
        fs::create_dir(&secrets).expect("mkdir");
        fs::write(secrets.join("token.json"), "old").expect("write");
        let link = dir.path().join("token.json");
        std::os::unix::fs::symlink(secrets.join("token.json"), &link).expect("symlink");

        let store = Store::new(link.clone());
        store.reserve().expect("reserve").commit(&token("r2")).expect("commit");

        assert!(fs::symlink_metadata(&link).expect("meta").file_type().is_symlink(), "the link stays");
        let stored = Store::new(link).load().expect("load").expect("file");
        assert_eq!(stored.token.refresh_token(), Some("r2"), "read through the link");
        let _lock = store.lock(Duration::ZERO).expect("lock");
        assert!(secrets.join("token.json.lock").exists(), "the lock is beside the real file");
    }

    #[test]
    fn temp_files_left_by_dead_processes_are_removed_a_day_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("token.json"));
        let stale = dir.path().join(".token.json.abc123.tmp");
        let fresh = dir.path().join(".token.json.def456.tmp");
        let other = dir.path().join(".other.json.abc123.tmp");
        for path in [&stale, &fresh, &other] {
            fs::write(path, "x").expect("write");
        }
        let old = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        for path in [&stale, &other] {
            File::options().write(true).open(path).expect("open").set_modified(old).expect("set mtime");
        }
        drop(store.reserve().expect("reserve"));
        assert!(!stale.exists(), "a day-old temp file is removed");
        assert!(fresh.exists(), "a recent one may belong to a login in progress");
        assert!(other.exists(), "another token file's temp files are not ours");
    }

    #[test]
    fn a_failed_rename_keeps_the_new_token_in_a_rescue_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A non-empty folder where the token file should be: rename over it fails.
        let store = Store::new(dir.path().join("token.json"));
        fs::create_dir(store.path()).expect("mkdir");
        fs::write(store.path().join("x"), "x").expect("write");

        let err = store.reserve().expect("reserve").commit(&token("r-new")).unwrap_err().to_string();
        assert!(err.contains("was saved to"), "{err}");
        assert!(!err.contains("r-new"), "the error must not show the token: {err}");
        let rescue =
            err.split("saved to ").nth(1).and_then(|s| s.split(':').next()).expect("path in message");
        let saved = Token::parse(&fs::read(rescue).expect("rescue file")).expect("rescue parses");
        assert_eq!(saved.refresh_token(), Some("r-new"));
        let mode = fs::metadata(rescue).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_missing_file_is_none_and_a_broken_one_asks_for_login() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("token.json"));
        assert!(store.load().expect("load").is_none());
        let err = store.load_existing().unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Code::LoginRequired);
        fs::write(store.path(), "{\"error\": ").expect("write");
        let err = store.load().unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Code::LoginRequired);
        assert!(err.to_string().contains("atl-token login"));
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("token.json"));
        let held = store.lock(Duration::ZERO).expect("first lock");
        let err = store.lock(Duration::from_millis(30)).unwrap_err().to_string();
        assert!(err.contains("token.json.lock"), "{err}");
        drop(held);
        store.lock(Duration::ZERO).expect("lock after release");
    }
}

//! The token file on disk: reading it, the lock that serializes refreshes, the atomic
//! replace that never leaves a half-written file, and the rescue file that keeps a rotated
//! refresh token when the replace fails.
//!
//! Which paths may be used at all (symlinks, folders, owners) is [`crate::safe_path`]'s job.

use std::fs::{self, File, TryLockError};
use std::io::{self, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use tempfile::NamedTempFile;

use super::{Details, Outcome, Refresh, Slot, Stored, TokenStore};
use crate::exit::{self, Code, Exit};
use crate::safe_path::{self, Access};
use crate::token::{self, ParseError, Token};

/// Token files and everything beside them that may hold a token are created with this mode.
const PRIVATE: u32 = 0o600;
/// No token file is larger: Atlassian's are a few KiB. A larger file is refused unread.
pub const MAX_TOKEN_FILE: u64 = 1024 * 1024;
/// Space set aside before a refresh token is spent, so that the answer can be written:
/// four times the current file, at least this much...
const MIN_RESERVATION: u64 = 64 * 1024;
/// ...and at most this much, whatever size (or sparse size) the current file claims.
const MAX_RESERVATION: u64 = 4 * MAX_TOKEN_FILE;
/// Waiting longer than this for another atl-token means something is stuck.
pub const LOCK_WAIT: Duration = Duration::from_secs(180);
/// A temp file beside the token file older than this was left by a process that died (a
/// login waits minutes, not a day): the next refresh removes it, unless it holds a token.
const STALE_TEMP: Duration = Duration::from_secs(24 * 3600);
/// How often a waiting process tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(10);
/// Rescue files are named `token.json.rescue-<unix time>-<pid>`.
const RESCUE_INFIX: &str = ".rescue-";

/// Set in the environment of a debug build, this turns the lock off, so that a test can show
/// what the lock prevents. Release builds do not contain the switch.
#[cfg(debug_assertions)]
const NO_LOCK_FOR_TESTS: &str = "ATL_TOKEN_TEST_ONLY_NO_LOCK";

/// A token file as read: its bytes, when it was written (Unix seconds), and the warning for
/// a file other users can read.
pub struct Read {
    pub bytes: Vec<u8>,
    pub written_at: Option<u64>,
    pub warning: Option<String>,
}

/// The token file at a path.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// The token file at `path`. A symlink is followed only where that is safe (the user's
    /// own link, in a folder nobody else can write), so that a token file linked into a
    /// secrets folder is replaced where it points, with its lock beside the real file; any
    /// other link, a folder others can write, another user's file, or one too large to be a
    /// token file is refused (exit 2).
    pub fn new(path: &Path) -> Result<Self> {
        let (path, meta) = safe_path::resolve(path)?;
        if let Some(meta) = meta {
            safe_path::check_size(&path, meta.len(), MAX_TOKEN_FILE, "token file")?;
        }
        Ok(Self { path })
    }

    /// Makes the token file's folder (0700) if it is missing.
    #[cfg(feature = "keyring")]
    pub fn ensure_dir(&self) -> Result<()> {
        ensure_dir(self)
    }

    fn dir(&self) -> &Path {
        safe_path::folder_of(&self.path)
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    /// The file's bytes and modification time, or `None` when there is no file.
    fn read(&self) -> Result<Option<(Vec<u8>, Option<u64>)>> {
        let Some(read) = self.read_quietly()? else { return Ok(None) };
        if let Some(warning) = read.warning {
            eprintln!("{warning}");
        }
        Ok(Some((read.bytes, read.written_at)))
    }

    /// The file's bytes and modification time, and the warning for a file others can read,
    /// given rather than printed (the hot path prints it only if it goes on); `None` when there
    /// is no file.
    pub fn read_quietly(&self) -> Result<Option<Read>> {
        let Some(opened) = safe_path::open(&self.path, Access::Read, "token file")? else { return Ok(None) };
        let warning = safe_path::shared_warning(&self.path, &opened.1, "the token file");
        // The modification time of the very file that was read, even if it is replaced now.
        let written_at =
            opened.1.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs());
        let bytes = safe_path::read_limited(opened, &self.path, MAX_TOKEN_FILE, "token file")?;
        Ok(Some(Read { bytes, written_at, warning }))
    }

    /// Takes the exclusive lock beside the token file (`token.json.lock`), waiting up to
    /// `wait` for another atl-token to finish. Released when the guard is dropped, and by
    /// the OS if the process dies.
    pub fn lock(&self, wait: Duration) -> Result<Lock> {
        let path = self.sibling(".lock");
        let (file, _) = safe_path::open(&path, Access::Lock, "lock file")?
            .ok_or_else(|| anyhow!("cannot create lock file {}", path.display()))?;
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

    /// Renames an unreadable token file to `token.json.unreadable`, with a warning, so that
    /// a service account's new token set does not overwrite what may be someone's data.
    fn set_aside(&self, _held: &Lock) -> Result<()> {
        let aside = self.sibling(".unreadable");
        fs::rename(&self.path, &aside)
            .with_context(|| format!("cannot move {} aside to {}", self.path.display(), aside.display()))?;
        eprintln!(
            "atl-token: warning: {} did not hold a token set; it is kept as {}, and a new token is \
             fetched (a service account's can always be fetched again)",
            self.path.display(),
            aside.display()
        );
        Ok(())
    }

    /// Moves a rescue file over the token file when it holds a newer token set, which means
    /// that an earlier run spent the refresh token in the token file but could not replace
    /// it. Must run under the lock, before anything is spent. If the rescue cannot be moved,
    /// nothing may be spent: the error says which command fixes it.
    pub fn adopt_rescue(&self, _held: &Lock) -> Result<()> {
        let Some(rescue) = self.newest_rescue()? else { return Ok(()) };
        let current = self.read()?;
        let current_at = current.as_ref().and_then(|(bytes, _)| Token::parse(bytes).ok()?.obtained_at());
        let same = current.as_ref().is_some_and(|(bytes, _)| *bytes == rescue.bytes);
        if same || current_at > rescue.token.obtained_at() {
            return Ok(());
        }
        install(&rescue.path, &self.path, &rescue.bytes).map_err(|e| {
            anyhow!(
                "{} holds a newer token set than {}, and it cannot be moved there ({e:#}). Nothing was \
                 sent to the server. Once {} can be written, run: {}",
                rescue.path.display(),
                self.path.display(),
                self.path.display(),
                move_command(&rescue.path, &self.path)
            )
        })?;
        eprintln!(
            "atl-token: note: an earlier run could not write {}; its new token set was in {}, and is now in place",
            self.path.display(),
            rescue.path.display()
        );
        Ok(())
    }

    /// Deletes the token file and any rescue file beside it, so that no copy of the token
    /// family is left for a later refresh to adopt. Returns the paths removed.
    fn delete(&self, _held: &Lock) -> Result<Vec<PathBuf>> {
        let mut targets = vec![self.path.clone()];
        if let Ok(entries) = fs::read_dir(self.dir()) {
            // Only the user's own: another user's file is no copy of this family.
            let own =
                |p: &PathBuf| safe_path::open(p, Access::Read, "rescue file").is_ok_and(|o| o.is_some());
            targets.extend(
                entries.flatten().map(|e| e.path()).filter(|p| is_rescue_of(p, &self.path) && own(p)),
            );
        }
        let mut removed = Vec::new();
        for path in targets {
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot delete {}", path.display())),
            }
        }
        Ok(removed)
    }

    /// The rescue file beside the token file with the newest token set, if any. Another
    /// user's rescue file, or one that is not a regular file, is refused.
    fn newest_rescue(&self) -> Result<Option<Rescue>> {
        let entries = match fs::read_dir(self.dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot list folder {}", self.dir().display())),
        };
        let mut newest: Option<Rescue> = None;
        for entry in entries.flatten() {
            let path = entry.path();
            if !is_rescue_of(&path, &self.path) {
                continue;
            }
            // Another user's file (a sticky folder lets anyone plant one) is no rescue: it
            // must not stop the refresh, which the victim could not then undo.
            let Some(opened) = safe_path::open_own(&path, "rescue file", true)? else { continue };
            let bytes = safe_path::read_limited(opened, &path, MAX_TOKEN_FILE, "rescue file")?;
            let Ok(token) = Token::parse(&bytes) else {
                eprintln!("atl-token: warning: {} is not a token file; left alone", path.display());
                continue;
            };
            if newest.as_ref().is_none_or(|n| token.obtained_at() > n.token.obtained_at()) {
                newest = Some(Rescue { path, bytes, token });
            }
        }
        Ok(newest)
    }

    /// Creates the temp file that will replace the token file and fills it, proving that
    /// the folder is writable and has room before a refresh token is spent.
    pub fn reserve_space(&self) -> Result<Reservation> {
        let dir = self.dir();
        let current = fs::symlink_metadata(&self.path).map_or(0, |m| m.len());
        let size = current.saturating_mul(4).clamp(MIN_RESERVATION, MAX_RESERVATION);
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
    /// One that holds a token (kept when nothing else could be written) is never removed.
    fn remove_stale_temps(&self, prefix: &str) {
        let Ok(entries) = fs::read_dir(self.dir()) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(prefix) && name.ends_with(".tmp")) {
                continue;
            }
            let path = entry.path();
            let modified = entry.metadata().and_then(|m| m.modified());
            let stale = modified.is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_TEMP));
            if stale && !holds_token(&path) {
                let _ = fs::remove_file(path);
            }
        }
    }
}

impl TokenStore for FileStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn load(&self) -> Result<Option<Stored>> {
        let Some((bytes, written_at)) = self.read()? else { return Ok(None) };
        let token = Token::parse(&bytes).map_err(|e| {
            let path = self.path.display();
            Exit::login_required(match e {
                ParseError::Empty => format!("{path} is empty, so it holds no token: run `atl-token login`"),
                e => format!("{path} is not a token file ({e}): run `atl-token login` to replace it"),
            })
        })?;
        Ok(Some(Stored { token, bytes, written_at }))
    }

    fn reserve(&self) -> Result<Box<dyn Slot + '_>> {
        ensure_dir(self)?;
        Ok(Box::new(FileSlot { store: self, reservation: self.reserve_space()? }))
    }

    /// Everything from reading the file to replacing it happens under the lock, and the file
    /// is read after the lock is taken, so concurrent callers queue up and each one spends the
    /// newest refresh token (or finds the token fresh and spends nothing). A rescue file left
    /// by a run that could not write is moved into place first. The temp file for the answer
    /// is created before the request, so a full disk fails the run before the refresh token
    /// is spent. An error answer never touches the file.
    fn refresh(&self, refresh: Refresh<'_>) -> Result<Outcome> {
        if refresh.renewable {
            ensure_dir(self)?;
        }
        let lock = self.lock(LOCK_WAIT)?;
        self.adopt_rescue(&lock)?;
        let stored = match self.load() {
            Ok(Some(stored)) => Some(stored),
            Ok(None) if refresh.renewable => None,
            Ok(None) => return Err(super::no_token(&self.location())),
            // A service account's token set can be fetched again: an unreadable one is kept
            // aside (it may be something else that was put there), and replaced.
            Err(e) if refresh.renewable && exit::code_for(&e) == Code::LoginRequired => {
                self.set_aside(&lock)?;
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(outcome) = super::not_due(&refresh, stored.as_ref())? {
            return Ok(outcome);
        }
        let reservation = self.reserve_space()?;
        let token = (refresh.spend)(stored.as_ref().map(|s| &s.token), crate::http::REFRESH.budget)?;
        reservation.commit(&token, &lock)?;
        Ok(Outcome::Refreshed(token))
    }

    /// Reads the newest token set (a rescue file's, if newer) under the lock, applies
    /// `change`, and replaces the file as a refresh does.
    fn update(&self, change: &mut dyn FnMut(Token) -> Token) -> Result<Token> {
        let lock = self.lock(LOCK_WAIT)?;
        self.adopt_rescue(&lock)?;
        let token = change(self.load_existing()?.token);
        self.reserve_space()?.commit(&token, &lock)?;
        Ok(token)
    }

    /// Under the lock, and with a newer rescued token set in place first, so that the token
    /// revoked is the live one and no refresh replaces the file while it is deleted. Rescue
    /// files go too, so that no copy of the family is left for a later refresh to adopt.
    fn remove(&self, before: &mut dyn FnMut(&Stored) -> Result<()>) -> Result<Option<Vec<String>>> {
        let lock = self.lock(LOCK_WAIT)?;
        self.adopt_rescue(&lock)?;
        let Some(stored) = self.load()? else { return Ok(None) };
        before(&stored)?;
        Ok(Some(self.delete(&lock)?.iter().map(|path| path.display().to_string()).collect()))
    }

    fn details(&self) -> Result<Details> {
        let path = self.location();
        let mode =
            fs::metadata(&self.path).with_context(|| format!("cannot read {path}"))?.permissions().mode()
                & 0o777;
        Ok(Details {
            json: ("token_file", serde_json::json!({"path": path, "mode": format!("{mode:04o}")})),
            lines: vec![("token file", format!("{path} (mode {mode:04o})"))],
        })
    }
}

/// A login's reservation beside the token file.
struct FileSlot<'a> {
    store: &'a FileStore,
    reservation: Reservation,
}

impl Slot for FileSlot<'_> {
    fn commit(self: Box<Self>, token: &Token) -> Result<()> {
        let lock = self.store.lock(LOCK_WAIT)?;
        self.reservation.commit(token, &lock)
    }
}

/// A rescue file and the token set in it.
struct Rescue {
    path: PathBuf,
    bytes: Vec<u8>,
    token: Token,
}

fn holds_token(path: &Path) -> bool {
    match safe_path::open(path, Access::Read, "temp file") {
        Ok(Some(opened)) => safe_path::read_limited(opened, path, MAX_RESERVATION, "temp file")
            .is_ok_and(|bytes| Token::parse(&bytes).is_ok()),
        Ok(None) => false,
        // Not a regular file of the user's own: not atl-token's to remove.
        Err(_) => true,
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
    /// Replaces the token file with `token`: write, fsync, rename, fsync the folder. Needs
    /// the lock, held since the token file was read.
    ///
    /// If the rename fails, the new token set is kept in a rescue file beside the token
    /// file (mode 0600), which the error names and the next run moves into place before it
    /// spends anything, so a refresh token the server has already rotated is never lost.
    pub fn commit(self, token: &Token, _held: &Lock) -> Result<()> {
        let bytes = token.to_bytes();
        let Self { mut file, target } = self;
        let (cause, rescue) = match write_over(file.as_file_mut(), &bytes) {
            Err(cause) => (cause, write_rescue(&target, &bytes)),
            Ok(()) => match file.persist(&target) {
                Ok(_) => {
                    sync_dir(&target);
                    return Ok(());
                }
                Err(e) => (e.error, keep_as_rescue(e.file, &target, &bytes)),
            },
        };
        // A token file that is a mount point can still be written in place.
        if let Some(rescue) = &rescue
            && install(rescue, &target, &bytes).is_ok()
        {
            return Ok(());
        }
        // Name a rescue file only if it is really there.
        Err(match rescue.filter(|path| fs::symlink_metadata(path).is_ok()) {
            Some(rescue) => {
                // Only a rescue file beside the token file is found by the next run.
                let next_run = if is_rescue_of(&rescue, &target) {
                    "the next run moves it into place before it spends anything, or run"
                } else {
                    "before the next refresh, run"
                };
                anyhow!(
                    "cannot replace token file {}: {cause}. The new token set, with the only valid \
                     refresh token, is in {}: {next_run}: {}",
                    target.display(),
                    rescue.display(),
                    move_command(&rescue, &target)
                )
            }
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

/// `token.json.rescue-`: how every rescue file's name for `target` starts.
fn rescue_prefix(target: &Path) -> String {
    format!("{}{RESCUE_INFIX}", target.file_name().unwrap_or_default().to_string_lossy())
}

/// `token.json.rescue-<unix time>-<pid>` beside the token file.
fn rescue_path(target: &Path) -> PathBuf {
    target.with_file_name(format!("{}{}-{}", rescue_prefix(target), token::now(), std::process::id()))
}

/// Whether `path` is a rescue file that [`FileStore::adopt_rescue`] finds for `target`.
fn is_rescue_of(path: &Path, target: &Path) -> bool {
    safe_path::folder_of(path) == safe_path::folder_of(target)
        && path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&rescue_prefix(target)))
}

/// Renames the complete temp file to the rescue name; failing that, writes a new rescue file;
/// failing that too, keeps the temp file itself. Returns where the token set is.
fn keep_as_rescue(temp: NamedTempFile, target: &Path, bytes: &[u8]) -> Option<PathBuf> {
    let rescue = rescue_path(target);
    match temp.persist_noclobber(&rescue) {
        Ok(_) => {
            sync_dir(&rescue);
            Some(rescue)
        }
        Err(e) => write_rescue(target, bytes).or_else(|| e.file.keep().ok().map(|(_, path)| path)),
    }
}

/// Writes a new rescue file beside the target, else in the temp folder. Returns where.
fn write_rescue(target: &Path, bytes: &[u8]) -> Option<PathBuf> {
    let beside = rescue_path(target);
    let name = beside.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let elsewhere = std::env::temp_dir().join(format!("atl-token-{name}"));
    [beside, elsewhere].into_iter().find(|path| {
        let write = || -> io::Result<()> {
            // create_new: never through a link, never over another file.
            let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(PRIVATE).open(path)?;
            file.write_all(bytes)?;
            file.sync_all()
        };
        write().is_ok()
    })
}

/// Moves a rescue file over the token file. A token file that is a mount point (a
/// single-file bind mount, as `docker run -v ./token.json:/app/token.json` makes: rename
/// gives EBUSY) is overwritten in place instead, and the rescue file, whose content is then
/// durable in the token file, is removed.
fn install(rescue: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
    match fs::rename(rescue, target) {
        Ok(()) => {
            sync_dir(target);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
            overwrite_in_place(target, bytes).with_context(|| {
                format!("{} is a mount point and cannot be written in place", target.display())
            })?;
            let _ = fs::remove_file(rescue);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes `bytes` over the file's content and fsyncs. The new JSON is padded with spaces
/// (which JSON allows) to the old length before the file is cut, so a reader sees the old
/// content or the new, never the new with the old one's tail.
fn overwrite_in_place(target: &Path, bytes: &[u8]) -> Result<()> {
    let (mut file, meta) = safe_path::open(target, Access::Write, "token file")?
        .ok_or_else(|| anyhow!("{} does not exist", target.display()))?;
    let old_len = meta.len().min(MAX_TOKEN_FILE);
    let mut padded = bytes.to_vec();
    padded.resize(padded.len().max(usize::try_from(old_len).unwrap_or(0)), b' ');
    file.write_all(&padded)?;
    file.set_len(bytes.len() as u64)?;
    file.sync_all()?;
    Ok(())
}

/// The shell command that moves `from` over `to`, quoted for the shell where needed.
fn move_command(from: &Path, to: &Path) -> String {
    let word = |path: &Path| crate::shell::quote(&path.display().to_string());
    format!("mv -- {} {}", word(from), word(to))
}

/// Makes a rename durable. A failure here is reported but not fatal: the new file is in place.
fn sync_dir(target: &Path) {
    let dir = safe_path::folder_of(target);
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        eprintln!("atl-token: warning: cannot fsync {}: {e}", dir.display());
    }
}

/// Creates the token file's folder (mode 0700) if it is missing, for a first login.
fn ensure_dir(store: &FileStore) -> Result<()> {
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

    fn token(refresh: &str, obtained_at: u64) -> Token {
        let answer = json!({"access_token": "a", "refresh_token": refresh, "expires_in": 60});
        let serde_json::Value::Object(map) = answer else { unreachable!() };
        Token::from_response(
            map,
            None,
            obtained_at,
            &[(crate::token::Bound::Token, "https://auth.example.com/oauth/token")],
        )
        .0
    }

    fn store_in(dir: &tempfile::TempDir) -> FileStore {
        FileStore::new(&dir.path().join("token.json")).expect("store")
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn write(store: &FileStore, token: &Token) {
        let lock = store.lock(Duration::ZERO).expect("lock");
        store.reserve_space().expect("reserve").commit(token, &lock).expect("commit");
    }

    #[test]
    fn commit_replaces_the_file_with_mode_0600_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(&dir);
        fs::write(store.path.as_path(), "old").expect("write");
        fs::set_permissions(store.path.as_path(), fs::Permissions::from_mode(0o644)).expect("chmod");

        write(&store, &token("r2", 1));

        let stored = store.load().expect("load").expect("file exists");
        assert_eq!(stored.token.refresh_token(), Some("r2"));
        let mode = fs::metadata(store.path.as_path()).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(names(dir.path()), ["token.json", "token.json.lock"]);
    }

    #[test]
    fn a_symlinked_token_file_is_replaced_where_it_points() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = dir.path().join("secrets");
        fs::create_dir(&secrets).expect("mkdir");
        fs::write(secrets.join("token.json"), "old").expect("write");
        let link = dir.path().join("token.json");
        std::os::unix::fs::symlink(secrets.join("token.json"), &link).expect("symlink");

        let store = FileStore::new(&link).expect("store");
        write(&store, &token("r2", 1));

        assert!(fs::symlink_metadata(&link).expect("meta").file_type().is_symlink(), "the link stays");
        let stored = FileStore::new(&link).expect("store").load().expect("load").expect("file");
        assert_eq!(stored.token.refresh_token(), Some("r2"), "read through the link");
        assert!(secrets.join("token.json.lock").exists(), "the lock is beside the real file");
    }

    #[test]
    fn temp_files_left_by_dead_processes_are_removed_a_day_later_unless_they_hold_a_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(&dir);
        let stale = dir.path().join(".token.json.abc123.tmp");
        let fresh = dir.path().join(".token.json.def456.tmp");
        let other = dir.path().join(".other.json.abc123.tmp");
        let kept = dir.path().join(".token.json.ghi789.tmp");
        for path in [&stale, &fresh, &other] {
            fs::write(path, "     ").expect("write");
        }
        fs::write(&kept, token("only-copy", 1).to_bytes()).expect("write");
        let old = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        for path in [&stale, &other, &kept] {
            File::options().write(true).open(path).expect("open").set_modified(old).expect("set mtime");
        }
        drop(store.reserve_space().expect("reserve"));
        assert!(!stale.exists(), "a day-old temp file is removed");
        assert!(fresh.exists(), "a recent one may belong to a login in progress");
        assert!(other.exists(), "another token file's temp files are not ours");
        assert!(kept.exists(), "a temp file that holds a token is never removed");
    }

    #[test]
    fn a_failed_rename_keeps_the_new_token_in_a_rescue_file_with_the_documented_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(&dir);
        let lock = store.lock(Duration::ZERO).expect("lock");
        let reservation = store.reserve_space().expect("reserve");
        // A non-empty folder where the token file should be: rename over it fails.
        fs::create_dir(store.path.as_path()).expect("mkdir");
        fs::write(store.path.as_path().join("x"), "x").expect("write");

        let err = reservation.commit(&token("r-new", 1), &lock).unwrap_err().to_string();
        assert!(!err.contains("r-new"), "the error must not show the token: {err}");
        let listed = names(dir.path());
        let rescue: Vec<&String> = listed.iter().filter(|n| n.starts_with("token.json.rescue-")).collect();
        assert_eq!(rescue.len(), 1, "one rescue file, beside the token file: {listed:?}");
        let rescue = dir.path().join(rescue[0]);
        assert!(err.contains(&format!("is in {}", rescue.display())), "{err}");
        assert!(
            err.contains(&format!("run: mv -- {} {}", rescue.display(), store.path.as_path().display())),
            "{err}"
        );
        let saved = Token::parse(&fs::read(&rescue).expect("rescue file")).expect("rescue parses");
        assert_eq!(saved.refresh_token(), Some("r-new"));
        let mode = fs::metadata(&rescue).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!listed.iter().any(|n| n.ends_with(".tmp")), "no temp file left: {listed:?}");

        // A day later, the next reservation does not remove it.
        let old = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        File::options().write(true).open(&rescue).expect("open").set_modified(old).expect("set mtime");
        drop(store.reserve_space().expect("reserve"));
        assert!(rescue.exists(), "a rescue file is never removed");
    }

    #[test]
    fn a_newer_rescue_file_is_adopted_and_an_older_one_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(&dir);
        fs::write(store.path.as_path(), token("spent", 100).to_bytes()).expect("write");
        let rescue = dir.path().join("token.json.rescue-200-1");
        fs::write(&rescue, token("live", 200).to_bytes()).expect("write");
        let older = dir.path().join("token.json.rescue-50-1");
        fs::write(&older, token("ancient", 50).to_bytes()).expect("write");

        let lock = store.lock(Duration::ZERO).expect("lock");
        store.adopt_rescue(&lock).expect("adopted");
        let stored = store.load_existing().expect("load");
        assert_eq!(stored.token.refresh_token(), Some("live"));
        assert!(!rescue.exists(), "moved, not copied");
        assert!(older.exists(), "an older rescue file is left alone");

        store.adopt_rescue(&lock).expect("nothing to do");
        assert_eq!(store.load_existing().expect("load").token.refresh_token(), Some("live"));
    }

    #[test]
    fn a_rescue_file_beats_a_token_file_that_does_not_parse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(&dir);
        fs::write(store.path.as_path(), "{\"access_tok").expect("write");
        fs::write(dir.path().join("token.json.rescue-200-1"), token("live", 200).to_bytes()).expect("write");
        let lock = store.lock(Duration::ZERO).expect("lock");
        store.adopt_rescue(&lock).expect("adopted");
        assert_eq!(store.load_existing().expect("load").token.refresh_token(), Some("live"));
    }

    #[test]
    fn a_missing_file_is_none_and_a_broken_one_asks_for_login() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(&dir);
        assert!(store.load().expect("load").is_none());
        let err = store.load_existing().unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Code::LoginRequired);
        fs::write(store.path.as_path(), "{\"error\": ").expect("write");
        let err = store.load().unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Code::LoginRequired);
        assert!(err.to_string().contains("atl-token login"));
    }

    #[test]
    fn a_huge_or_sparse_token_file_is_refused_and_caps_the_reservation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(&dir);
        File::create(store.path.as_path()).expect("create").set_len(64 * 1024 * 1024).expect("sparse 64 MiB");
        let err = FileStore::new(store.path.as_path()).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Code::Usage);
        let err = store.load().unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::Code::Usage);
        assert!(err.to_string().contains("more than any token file"), "{err}");
        let reservation = store.reserve_space().expect("reserve");
        let reserved = reservation.file.as_file().metadata().expect("meta").len();
        assert_eq!(reserved, MAX_RESERVATION, "capped, not four times 64 MiB");
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(&dir);
        let held = store.lock(Duration::ZERO).expect("first lock");
        let err = store.lock(Duration::from_millis(30)).unwrap_err().to_string();
        assert!(err.contains("token.json.lock"), "{err}");
        drop(held);
        store.lock(Duration::ZERO).expect("lock after release");
    }
}

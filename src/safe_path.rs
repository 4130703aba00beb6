//! Paths another local user cannot redirect: which symlinks may be followed, which folders may
//! hold a token, and opening a file without following a link or waiting on a FIFO.
//!
//! The rules, for the user atl-token runs as (its effective uid):
//! - a symlink, in any component of the path, is followed only if that user (or root) owns
//!   it and nobody else can write its folder;
//! - a folder holding a token belongs to that user (or root), and nobody else can write it,
//!   unless it is sticky (like `/tmp`) and the file in it is the user's own;
//! - a token, lock or rescue file is a regular file that the user owns, opened with
//!   `O_NOFOLLOW | O_NONBLOCK` and checked again after opening, so it cannot be swapped.
//!
//! Every refusal is a configuration error (exit 2) that names the path and says what to do.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{Mode, OFlags};

use crate::exit::Exit;

/// More links than this in a row is a loop, or an attack.
const MAX_LINKS: usize = 8;
/// Write permission for the group and for others.
const OTHERS_WRITE: u32 = 0o022;
/// The sticky bit: in such a folder only a file's owner may remove or rename it.
const STICKY: u32 = 0o1000;
const ROOT: u32 = 0;

/// Which files a path may lead to, and what to call them in messages.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// E.g. "token file".
    pub what: &'static str,
    /// The setting that names the file, for "set … to the real file".
    pub key: &'static str,
    /// Whether a file root owns is trusted too (settings in `/etc`), besides the user's own.
    pub root_may_own: bool,
}

/// The token file: only the user's own.
pub const TOKEN_FILE: Rules = Rules { what: "token file", key: "ATL_TOKEN_FILE", root_may_own: false };
/// A file of settings (the env file, a CA bundle): the user's own or root's, and nobody else
/// may write it, since it decides where tokens go and whom atl-token trusts.
pub const ENV_FILE: Rules = Rules { what: "env file", key: "--env-file", root_may_own: true };
pub const CA_FILE: Rules = Rules { what: "CA file", key: "ATL_CA_FILE", root_may_own: true };

/// The effective user id: whose files atl-token may trust.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn refuse(message: String) -> anyhow::Error {
    Exit::usage(message).into()
}

/// The folder a path sits in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Follows the symlinks in `path`, in any of its components, that are safe to follow, and
/// returns where they lead, which may not exist yet (a first login creates it), with the
/// file's metadata if it exists. Refuses a link someone else could have planted (one that
/// is neither the user's nor root's, or sits in a folder others can write), a token folder
/// others can write, and a file that is not the user's own regular file.
pub fn resolve(path: &Path) -> Result<(PathBuf, Option<Metadata>)> {
    resolve_with(path, &TOKEN_FILE)
}

/// [`resolve`], for the files `rules` describe.
pub fn resolve_with(path: &Path, rules: &Rules) -> Result<(PathBuf, Option<Metadata>)> {
    let uid = euid();
    let mut pending: VecDeque<OsString> = VecDeque::new();
    let mut resolved = PathBuf::new();
    push_front(&mut pending, &mut resolved, path);
    let mut links = 0;
    // The metadata of the last component looked at, while it is the one `resolved` ends in.
    let mut last: Option<Metadata> = None;
    while let Some(name) = pending.pop_front() {
        last = None;
        if name == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&name);
        let meta = match fs::symlink_metadata(&candidate) {
            Ok(meta) => meta,
            // Nothing further can be a link: the rest does not exist yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                resolved = candidate;
                resolved.extend(pending.drain(..));
                break;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot look at {}", candidate.display())),
        };
        if !meta.file_type().is_symlink() {
            resolved = candidate;
            last = Some(meta);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(refuse(format!(
                "{} goes through more than {MAX_LINKS} symlinks: set {} to the real file",
                path.display(),
                rules.key
            )));
        }
        check_link(&candidate, &meta, uid, rules)?;
        let target = fs::read_link(&candidate)
            .with_context(|| format!("cannot read symlink {}", candidate.display()))?;
        push_front(&mut pending, &mut resolved, &target);
    }
    let meta = match last.map_or_else(|| fs::symlink_metadata(&resolved), Ok) {
        Ok(meta) => {
            check_file(&resolved, &meta, uid, rules)?;
            Some(meta)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot look at {} {}", rules.what, resolved.display()));
        }
    };
    check_folder(&resolved, meta.as_ref(), uid, rules)?;
    Ok((resolved, meta))
}

/// Puts `path`'s components before the pending ones; an absolute path starts again at `/`.
fn push_front(pending: &mut VecDeque<OsString>, resolved: &mut PathBuf, path: &Path) {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => {
                *resolved = PathBuf::from(component.as_os_str());
                names.clear();
            }
            Component::CurDir => {}
            Component::ParentDir => names.push(OsString::from("..")),
            Component::Normal(name) => names.push(name.to_owned()),
        }
    }
    for name in names.into_iter().rev() {
        pending.push_front(name);
    }
}

/// A link is followed only if the user or root owns it and nobody else can write its folder.
fn check_link(link: &Path, meta: &Metadata, uid: u32, rules: &Rules) -> Result<()> {
    if meta.uid() != uid && meta.uid() != ROOT {
        return Err(refuse(format!(
            "{} is a symlink owned by user {}, not by you: atl-token does not follow it. \
             Remove it, or set {} to the real file",
            link.display(),
            meta.uid(),
            rules.key
        )));
    }
    let dir = folder_of(link);
    let dir_meta = fs::metadata(dir).with_context(|| format!("cannot look at folder {}", dir.display()))?;
    match others_can_write(&dir_meta, uid) {
        None => Ok(()),
        Some(why) => Err(refuse(format!(
            "{} is a symlink in {}, which {why}: atl-token does not follow links there, since \
             another user could replace them. Set {} to the real file",
            link.display(),
            dir.display(),
            rules.key
        ))),
    }
}

/// Why others than `uid` could change what is in this folder, if they can.
fn others_can_write(dir: &Metadata, uid: u32) -> Option<String> {
    let mode = dir.permissions().mode();
    if dir.uid() != uid && dir.uid() != ROOT {
        Some(format!("belongs to user {}", dir.uid()))
    } else if mode & OTHERS_WRITE != 0 {
        Some(format!("others can write (mode {:o})", mode & 0o7777))
    } else {
        None
    }
}

/// Refuses a token folder that others can write, unless it is sticky (and so others cannot
/// replace the user's own file in it) and the file, if there is one yet, is the user's own.
fn check_folder(path: &Path, file: Option<&Metadata>, uid: u32, rules: &Rules) -> Result<()> {
    let dir = folder_of(path);
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        // A first login creates it, private.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot look at folder {}", dir.display())),
    };
    let Some(why) = others_can_write(&meta, uid) else { return Ok(()) };
    let owner_trusted = meta.uid() == uid || meta.uid() == ROOT;
    let sticky = meta.permissions().mode() & STICKY != 0;
    if owner_trusted && sticky && file.is_none_or(|f| f.uid() == uid) {
        return Ok(());
    }
    Err(refuse(format!(
        "the {} folder {} {why}, so another user could replace {}: keep the file in a folder \
         only you can write (e.g. `chmod go-w {}`), or set {} elsewhere",
        rules.what.trim_end_matches(" file"),
        dir.display(),
        path.display(),
        dir.display(),
        rules.key
    )))
}

/// Refuses anything but a regular file owned by `uid` (or root, where `rules` allow), that
/// nobody else can write where root may own it.
fn check_file(path: &Path, meta: &Metadata, uid: u32, rules: &Rules) -> Result<()> {
    check_owned_file(path, meta, uid, rules.what, rules.root_may_own)?;
    let mode = meta.permissions().mode();
    if rules.root_may_own && mode & OTHERS_WRITE != 0 {
        return Err(refuse(format!(
            "{} {} can be changed by other users (mode {:o}): atl-token reads settings only from files \
             nobody else can write. Run `chmod go-w {}`",
            rules.what,
            path.display(),
            mode & 0o7777,
            crate::shell::quote(&path.to_string_lossy())
        )));
    }
    Ok(())
}

/// Refuses anything but a regular file owned by `uid` (or by root, if `root_may_own`).
fn check_owned_file(path: &Path, meta: &Metadata, uid: u32, what: &str, root_may_own: bool) -> Result<()> {
    let kind = meta.file_type();
    if !kind.is_file() {
        let is = if kind.is_dir() {
            "a folder"
        } else if kind.is_symlink() {
            "a symlink"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(refuse(format!(
            "{what} {} is {is}: atl-token only uses regular files; move it away",
            path.display()
        )));
    }
    if meta.uid() != uid && !(root_may_own && meta.uid() == ROOT) {
        return Err(refuse(format!(
            "{what} {} belongs to user {}, not to you (user {uid}): atl-token only uses your own files; \
             move it away, or run atl-token as its owner",
            path.display(),
            meta.uid()
        )));
    }
    Ok(())
}

/// How [`open`] opens a file.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    Read,
    /// Write in place, never create.
    Write,
    /// Read and write, created (mode 0600) if missing: the lock file.
    Lock,
}

/// Opens `path` without following a symlink and without blocking on a FIFO, then checks that
/// what was opened is the user's own regular file; returns it with its metadata. `Ok(None)`
/// when it does not exist (and `access` does not create it).
pub fn open(path: &Path, access: Access, what: &str) -> Result<Option<(File, Metadata)>> {
    let Some((file, meta)) = open_unchecked(path, access, what)? else { return Ok(None) };
    check_owned_file(path, &meta, euid(), what, false)?;
    Ok(Some((file, meta)))
}

/// [`open`] for reading a file that another user may have planted beside the user's own
/// (a sticky folder lets anyone): such a file (a link, a FIFO, another user's) is not the
/// user's, so it is skipped, with a warning on stderr when `warn`, rather than stopping the
/// command, which the user could not then undo. Other errors stay errors.
pub fn open_own(path: &Path, what: &str, warn: bool) -> Result<Option<(File, Metadata)>> {
    match open(path, Access::Read, what) {
        Err(e) if crate::exit::code_for(&e) == crate::exit::Code::Usage => {
            if warn {
                eprintln!("atl-token: warning: {}; left alone", crate::text::one_line(&format!("{e:#}")));
            }
            Ok(None)
        }
        other => other,
    }
}

/// [`open`] without the check of what was opened: the caller's to make.
fn open_unchecked(path: &Path, access: Access, what: &str) -> Result<Option<(File, Metadata)>> {
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let flags = match access {
        Access::Read => flags | OFlags::RDONLY,
        Access::Write => flags | OFlags::WRONLY,
        Access::Lock => flags | OFlags::RDWR | OFlags::CREATE,
    };
    let fd = match rustix::fs::open(path, flags, Mode::RUSR | Mode::WUSR) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) if !matches!(access, Access::Lock) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => {
            return Err(refuse(format!(
                "{what} {} is a symlink: atl-token does not follow it there; remove it",
                path.display()
            )));
        }
        Err(e) => {
            return Err(io::Error::from(e)).with_context(|| format!("cannot open {what} {}", path.display()));
        }
    };
    let file = File::from(fd);
    let meta = file.metadata().with_context(|| format!("cannot look at {what} {}", path.display()))?;
    Ok(Some((file, meta)))
}

/// Up to `limit` bytes of the regular file at `path`, for a look at what it is, or `None`
/// when there is none or it is anything else: opened without waiting on a FIFO, and
/// following links, since nothing read this way is used (a file that is used is read again
/// by [`read_trusted`]'s rules).
pub fn peek(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = File::from(rustix::fs::open(path, flags, Mode::empty()).ok()?);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Reads a file of settings that `rules` describe, if it exists: a safe path to a regular
/// file that is the user's own (or root's), that nobody else can write, in a folder nobody
/// else can write, opened without following a link or waiting on a FIFO, and at most
/// `limit` bytes (larger is refused unread).
pub fn read_trusted(path: &Path, rules: &Rules, limit: u64) -> Result<Option<Vec<u8>>> {
    let (real, Some(_)) = resolve_with(path, rules)? else { return Ok(None) };
    let Some((mut file, meta)) = open_unchecked(&real, Access::Read, rules.what)? else { return Ok(None) };
    // Checked again on what was opened: the path may have changed since it was resolved.
    check_file(&real, &meta, euid(), rules)?;
    let too_big = |size: u64| {
        refuse(format!(
            "{} {} is {size} bytes, more than {} KiB: it is not a {}; check {}",
            rules.what,
            real.display(),
            limit / 1024,
            rules.what,
            rules.key
        ))
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::new();
    (&mut file)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {} {}", rules.what, real.display()))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(Some(bytes))
}

/// Whether group or others may read a file with this mode: then the `chmod` that fixes it.
pub fn shared_mode_fix(path: &Path, mode: u32) -> Option<String> {
    (mode & 0o077 != 0).then(|| format!("chmod 600 {}", crate::shell::quote(&path.to_string_lossy())))
}

/// Warns on stderr when other users can read `path`, which holds secrets, with the `chmod`
/// that fixes it. The command goes on: the warning is for the person, not the script.
pub fn warn_if_shared(path: &Path, meta: &Metadata, what: &str) {
    if let Some(warning) = shared_warning(path, meta, what) {
        eprintln!("{warning}");
    }
}

/// [`warn_if_shared`]'s warning, if there is one.
pub fn shared_warning(path: &Path, meta: &Metadata, what: &str) -> Option<String> {
    let mode = meta.permissions().mode();
    shared_mode_fix(path, mode).map(|fix| {
        format!(
            "atl-token: warning: {what} {} can be read by other users (mode {:o}): run `{fix}`",
            path.display(),
            mode & 0o777
        )
    })
}

/// Refuses a file of `size` bytes when that is more than `limit`.
pub fn check_size(path: &Path, size: u64, limit: u64, what: &str) -> Result<()> {
    if size <= limit {
        return Ok(());
    }
    Err(refuse(format!(
        "{what} {} is {size} bytes, more than any token file ({} KiB at most): it is not a token \
         file; check ATL_TOKEN_FILE, or move the file away and run `atl-token login`",
        path.display(),
        limit / 1024
    )))
}

/// Reads a file opened by [`open`], refusing one larger than `limit` bytes before reading it.
pub fn read_limited(
    (mut file, meta): (File, Metadata),
    path: &Path,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>> {
    check_size(path, meta.len(), limit, what)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len() + 1).unwrap_or(0));
    // It may grow while being read: never read past the limit.
    (&mut file)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    check_size(path, bytes.len() as u64, limit, what)?;
    Ok(bytes)
}

/// Replaces `path` with `bytes`, mode 0600, through a temp file and a rename, making its
/// folder (0700) if missing; with `durable`, on disk (file and folder synced) before it
/// returns. For the files a store keeps beside the token file's path.
#[cfg(any(shared_store, feature = "keyring"))]
pub fn write_private(path: &Path, bytes: &[u8], durable: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::DirBuilderExt;
    let dir = folder_of(path);
    if !dir.exists() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let mut file = tempfile::Builder::new()
        .prefix(".atl-token-keep.")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    if durable {
        file.as_file().sync_all()?;
    }
    file.persist(path)?;
    if durable {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn private_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn refused(result: Result<impl std::fmt::Debug>) -> String {
        let err = result.expect_err("refused");
        assert_eq!(crate::exit::code_for(&err), crate::exit::Code::Usage, "{err:#}");
        format!("{err:#}")
    }

    #[test]
    fn files_others_can_read_get_the_chmod_that_fixes_them() {
        let path = Path::new("/home/me/my dir/.env");
        assert_eq!(shared_mode_fix(path, 0o100600), None);
        assert_eq!(shared_mode_fix(path, 0o100400), None);
        for mode in [0o100640, 0o100604, 0o100644, 0o100660] {
            assert_eq!(shared_mode_fix(path, mode).as_deref(), Some("chmod 600 '/home/me/my dir/.env'"));
        }
    }

    #[test]
    fn a_plain_file_and_a_missing_one_resolve_to_themselves() {
        let dir = private_dir();
        let path = dir.path().join("token.json");
        assert_eq!(resolve(&path).expect("missing is fine").0, path);
        fs::write(&path, "{}").expect("write");
        let (resolved, meta) = resolve(&path).expect("own file");
        assert_eq!((resolved, meta.map(|m| m.len())), (path, Some(2)));
    }

    #[test]
    fn the_users_own_link_is_followed_even_to_a_target_that_does_not_exist_yet() {
        let dir = private_dir();
        let secrets = dir.path().join("secrets");
        fs::create_dir(&secrets).expect("mkdir");
        let link = dir.path().join("token.json");
        symlink("secrets/token.json", &link).expect("symlink");
        assert_eq!(resolve(&link).expect("followed").0, dir.path().join("secrets/token.json"));
        let chained = dir.path().join("chained.json");
        symlink(&link, &chained).expect("symlink");
        assert_eq!(resolve(&chained).expect("followed").0, dir.path().join("secrets/token.json"));
    }

    #[test]
    fn a_link_loop_is_refused() {
        let dir = private_dir();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        symlink(&b, &a).expect("symlink");
        symlink(&a, &b).expect("symlink");
        assert!(refused(resolve(&a)).contains("more than 8 symlinks"));
    }

    #[test]
    fn a_link_in_a_folder_others_can_write_is_not_followed() {
        let dir = private_dir();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).expect("mkdir");
        chmod(&shared, 0o1777);
        fs::write(dir.path().join("target"), "{}").expect("write");
        let link = shared.join("token.json");
        symlink(dir.path().join("target"), &link).expect("symlink");
        let err = refused(resolve(&link));
        assert!(err.contains("is a symlink in") && err.contains("others can write (mode 1777)"), "{err}");
    }

    #[test]
    fn links_in_the_folders_of_the_path_follow_the_same_rules() {
        let dir = private_dir();
        let real = dir.path().join("real");
        fs::create_dir(&real).expect("mkdir");
        symlink("real", dir.path().join("mine")).expect("symlink");
        let path = dir.path().join("mine/../mine/token.json");
        assert_eq!(resolve(&path).expect("own folder link").0, real.join("token.json"));

        let shared = dir.path().join("shared");
        fs::create_dir(&shared).expect("mkdir");
        chmod(&shared, 0o1777);
        symlink(&real, shared.join("d")).expect("symlink");
        let err = refused(resolve(&shared.join("d/token.json")));
        assert!(err.contains(&format!("{} is a symlink in", shared.join("d").display())), "{err}");
    }

    #[test]
    fn a_folder_others_can_write_is_refused_unless_sticky_with_the_users_own_file() {
        let dir = private_dir();
        let path = dir.path().join("token.json");
        chmod(dir.path(), 0o777);
        let err = refused(resolve(&path));
        assert!(err.contains("others can write (mode 777)") && err.contains("chmod go-w"), "{err}");
        chmod(dir.path(), 0o770);
        refused(resolve(&path));
        chmod(dir.path(), 0o1777);
        assert_eq!(resolve(&path).expect("sticky, no file yet").0, path);
        fs::write(&path, "{}").expect("write");
        assert_eq!(resolve(&path).expect("sticky, own file").0, path);
        chmod(dir.path(), 0o700);
    }

    #[test]
    fn a_fifo_or_folder_is_refused_without_blocking() {
        let dir = private_dir();
        let fifo = dir.path().join("token.json");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, Mode::RUSR | Mode::WUSR, 0)
            .expect("mkfifo");
        assert!(refused(resolve(&fifo)).contains("not a regular file"));
        assert!(refused(open(&fifo, Access::Read, "token file")).contains("not a regular file"));
        assert!(refused(open(&fifo, Access::Lock, "lock file")).contains("not a regular file"));
        let folder = dir.path().join("folder");
        fs::create_dir(&folder).expect("mkdir");
        assert!(refused(resolve(&folder)).contains("is a folder"));
    }

    #[test]
    fn open_never_follows_a_link_nor_creates_through_one() {
        let dir = private_dir();
        let target = dir.path().join("elsewhere");
        let link = dir.path().join("token.json.lock");
        symlink(&target, &link).expect("symlink");
        assert!(refused(open(&link, Access::Lock, "lock file")).contains("is a symlink"));
        assert!(!target.exists(), "nothing was created through the link");
        assert!(open(&dir.path().join("missing"), Access::Read, "token file").expect("ok").is_none());
    }

    #[test]
    fn reading_stops_at_the_limit() {
        let dir = private_dir();
        let path = dir.path().join("big");
        File::create(&path).expect("create").set_len(10 * 1024 * 1024 * 1024).expect("sparse 10 GiB");
        let opened = open(&path, Access::Read, "token file").expect("opens").expect("exists");
        let err = refused(read_limited(opened, &path, 1024 * 1024, "token file"));
        assert!(err.contains("10737418240 bytes") && err.contains("1024 KiB at most"), "{err}");
    }
}

//! `ATL_ON_ROTATE`: a command run after every new token set is saved (a login, a refresh,
//! `print`'s refresh), so that another tool (a CI job's secret store, pizauth-style scripts)
//! always has the live family. It gets the token file's path in `ATL_TOKEN_FILE` and the new
//! token set on stdin, never on its command line. Its failure is reported, not fatal (the
//! token is safe already), and it runs again on the next run until it succeeds.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::fs::{Mode, OFlags};
use std::time::{Duration, Instant};

use crate::config::{Config, Hook};
use crate::token::Token;

/// How long the hook may take before it is stopped and counted as failed.
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// Runs the hook for `token`, just saved.
pub fn rotated(config: &Config, token: &Token) {
    let Some(hook) = &config.on_rotate else { return };
    run(config, hook, token);
}

/// Runs the hook again when an earlier run of it failed, with the token set as it is now.
pub fn retry_pending(config: &Config, token: &Token) {
    let Some(hook) = &config.on_rotate else { return };
    if marked(&pending_mark(config)) {
        eprintln!("atl-token: note: running {} again: it failed last time", crate::config::ON_ROTATE.name);
        run(config, hook, token);
    }
}

fn run(config: &Config, hook: &Hook, token: &Token) {
    let mark = pending_mark(config);
    match attempt(config, hook, token.to_bytes()) {
        Ok(()) => {
            if marked(&mark) {
                let _ = std::fs::remove_file(&mark);
            }
        }
        Err(why) => {
            let again = if mark_pending(&mark) { "; it runs again on the next run" } else { "" };
            eprintln!(
                "atl-token: warning: {} ({}) failed: {why}. The new token set is saved in {}{again}",
                crate::config::ON_ROTATE.name,
                hook.origin,
                config.token_file.display()
            );
        }
    }
}

/// Whether `mark` is there and the user's own empty regular file. Anything else there (a
/// link, another user's file) is not a mark: it is left alone, with a warning.
fn marked(mark: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(mark) else { return false };
    let own = meta.file_type().is_file() && meta.uid() == crate::safe_path::euid();
    if !own {
        eprintln!(
            "atl-token: warning: {} is not your own file (a link, or another user's): it is left alone; \
             remove it if it should not be there",
            mark.display()
        );
    }
    own
}

/// Leaves the mark: a new empty file, never opened through a link or over an existing file
/// (`O_CREAT | O_EXCL | O_NOFOLLOW`). Whether the mark is there now.
fn mark_pending(mark: &Path) -> bool {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::open(mark, flags, Mode::RUSR | Mode::WUSR) {
        Ok(_) => true,
        Err(rustix::io::Errno::EXIST) => marked(mark),
        Err(_) => false,
    }
}

/// One run: `sh -c COMMAND` in a process group of its own, the token set on stdin (written
/// by a thread of its own, so a hook that does not read cannot hold the deadline back), its
/// stdout sent to stderr (stdout may be `print`'s token). At [`TIME_LIMIT`] the whole group
/// is killed, whatever it started, and atl-token waits no longer.
fn attempt(config: &Config, hook: &Hook, content: Vec<u8>) -> Result<(), String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(&hook.command)
        .env(crate::config::TOKEN_FILE.name, &config.token_file)
        .stdin(Stdio::piped())
        .stdout(std::io::stderr())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is no failure; the thread ends when the pipe
        // closes (the group exits or is killed) or with the process.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&content);
        });
    }
    let deadline = Instant::now() + time_limit();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("it exited with {status}")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_child(&child),
                    rustix::process::Signal::KILL,
                );
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "it took longer than {} and was stopped",
                    crate::duration::human(time_limit())
                ));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    }
}

/// [`TIME_LIMIT`]; in a debug build, `ATL_TOKEN_TEST_ONLY_HOOK_LIMIT` (seconds) makes it
/// shorter, so that the limit's test need not wait a minute. Release builds do not contain
/// the switch.
fn time_limit() -> Duration {
    #[cfg(debug_assertions)]
    if let Some(secs) = std::env::var("ATL_TOKEN_TEST_ONLY_HOOK_LIMIT").ok().and_then(|s| s.parse().ok()) {
        return Duration::from_secs(secs);
    }
    TIME_LIMIT
}

/// `token.json.rotate-pending` beside the token file: the hook's last run failed.
fn pending_mark(config: &Config) -> PathBuf {
    let mut name = config.token_file.file_name().unwrap_or_default().to_os_string();
    name.push(".rotate-pending");
    config.token_file.with_file_name(name)
}

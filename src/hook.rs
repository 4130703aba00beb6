//! `ATL_ON_ROTATE`: a command run after every new token set is saved (a login, a refresh,
//! `print`'s refresh), so that another tool (a CI job's secret store, pizauth-style scripts)
//! always has the live family. It gets the token file's path in `ATL_TOKEN_FILE` and the new
//! token set on stdin, never on its command line. Its failure is reported, not fatal (the
//! token is safe already), and it runs again on the next run until it succeeds.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
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
    if pending_mark(config).exists() {
        eprintln!("atl-token: note: running {} again: it failed last time", crate::config::ON_ROTATE.name);
        run(config, hook, token);
    }
}

fn run(config: &Config, hook: &Hook, token: &Token) {
    let mark = pending_mark(config);
    match attempt(config, hook, &token.to_bytes()) {
        Ok(()) => {
            let _ = std::fs::remove_file(&mark);
        }
        Err(why) => {
            let kept =
                std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&mark).is_ok();
            let again = if kept { "; it runs again on the next run" } else { "" };
            eprintln!(
                "atl-token: warning: {} ({}) failed: {why}. The new token set is saved in {}{again}",
                crate::config::ON_ROTATE.name,
                hook.origin,
                config.token_file.display()
            );
        }
    }
}

/// One run: `sh -c COMMAND`, the token set on stdin, its stdout sent to stderr (stdout may be
/// `print`'s token), within [`TIME_LIMIT`].
fn attempt(config: &Config, hook: &Hook, content: &[u8]) -> Result<(), String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(&hook.command)
        .env(crate::config::TOKEN_FILE.name, &config.token_file)
        .stdin(Stdio::piped())
        .stdout(std::io::stderr())
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is no failure.
        let _ = stdin.write_all(content);
    }
    let deadline = Instant::now() + TIME_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("it exited with {status}")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "it took longer than {} and was stopped",
                    crate::duration::human(TIME_LIMIT)
                ));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    }
}

/// `token.json.rotate-pending` beside the token file: the hook's last run failed.
fn pending_mark(config: &Config) -> PathBuf {
    let mut name = config.token_file.file_name().unwrap_or_default().to_os_string();
    name.push(".rotate-pending");
    config.token_file.with_file_name(name)
}

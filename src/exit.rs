//! Exit codes, and the one place that maps an error to one.

use std::fmt;

/// What a run of atl-token tells its caller through the exit status.
///
/// The numbers are part of the interface: scripts and cron wrappers test them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Everything worked.
    Success = 0,
    /// Network, server or file-system failure; trying again later may work.
    Failure = 1,
    /// Bad command line or configuration: fix what the message names. Found before any
    /// refresh token is sent, except a site the token does not reach (`ATL_SITE`).
    Usage = 2,
    /// `status --check`: the token family ends, or the refresh token expires, soon.
    Warning = 3,
    /// No usable refresh token: a person must run `atl-token login`.
    LoginRequired = 4,
    /// `exec`: the command cannot be run (not executable), as a shell says.
    CannotRun = 126,
    /// `exec`: the command was not found, as a shell says.
    NotFound = 127,
    /// Stopped by SIGHUP while waiting: the terminal went away (128 + 1).
    HungUp = 129,
    /// Stopped by Ctrl-C (128 + SIGINT).
    Interrupted = 130,
    /// Stopped by SIGTERM while waiting (128 + 15), e.g. by `timeout`.
    Terminated = 143,
}

impl From<Code> for std::process::ExitCode {
    fn from(code: Code) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// An error that decides its own exit code. Anything else exits with [`Code::Failure`].
#[derive(Debug)]
pub struct Exit {
    pub code: Code,
    message: String,
}

impl Exit {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: Code::Usage, message: message.into() }
    }

    pub fn login_required(message: impl Into<String>) -> Self {
        Self { code: Code::LoginRequired, message: message.into() }
    }

    pub fn interrupted(message: impl Into<String>) -> Self {
        Self { code: Code::Interrupted, message: message.into() }
    }

    /// An exit code whose reason the command has already printed.
    pub fn silent(code: Code) -> Self {
        Self { code, message: String::new() }
    }

    /// Whether the reason is still to be printed.
    pub fn is_silent(err: &anyhow::Error) -> bool {
        err.downcast_ref::<Self>().is_some_and(|e| e.message.is_empty())
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The exit code for an error: the first [`Exit`] in its chain decides, else [`Code::Failure`].
pub fn code_for(err: &anyhow::Error) -> Code {
    err.chain().find_map(|cause| cause.downcast_ref::<Exit>()).map_or(Code::Failure, |exit| exit.code)
}

/// A closed stdout (`atl-token print | head -c0`) ends the run quietly, as for other tools.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn code_comes_from_the_exit_error_in_the_chain() {
        let err =
            Err::<(), _>(Exit::login_required("gone")).context("refreshing /tmp/token.json").unwrap_err();
        assert_eq!(code_for(&err), Code::LoginRequired);
        assert_eq!(code_for(&anyhow::anyhow!("disk on fire")), Code::Failure);
        assert_eq!(code_for(&Exit::usage("bad key").into()), Code::Usage);
    }
}

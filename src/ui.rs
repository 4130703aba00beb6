//! Talking to the person at the terminal: the waiting line, reading a line (echoed or not),
//! and the signals that end a wait.
//!
//! atl-token writes no colour and no escape sequences except the waiting line, and that
//! only on a terminal (never to a pipe, a file or `TERM=dumb`), so `NO_COLOR` holds as is.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;

use crate::duration::human;
use crate::exit::{Code, Exit};

/// Whether stderr is a terminal that understands "go to the start of the line, clear it".
pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Whether stdin is a terminal, where a person can type.
pub fn stdin_is_terminal() -> bool {
    io::stdin().is_terminal()
}

/// The one status line shown while waiting: a spinner and the time left. Cleared when dropped.
pub struct Spinner {
    what: &'static str,
    deadline: Instant,
    frame: usize,
}

/// How often the waiting line is redrawn.
pub const SPIN_EVERY: Duration = Duration::from_millis(250);

impl Spinner {
    /// A spinner on stderr, or `None` when stderr is not a terminal.
    pub fn on_terminal(what: &'static str, deadline: Instant) -> Option<Self> {
        // `then`, not `then_some`: a spinner made and dropped would still clear the line.
        stderr_is_terminal().then(|| Self { what, deadline, frame: 0 })
    }

    /// Draws the next frame over the last one.
    pub fn draw(&mut self) {
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        let left = self.deadline.saturating_duration_since(Instant::now());
        let frame = FRAMES[self.frame % FRAMES.len()];
        self.frame += 1;
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{frame} {}: {} left (Ctrl-C to stop)", self.what, human(left));
        let _ = err.flush();
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

/// Waits for Ctrl-C, SIGTERM or SIGHUP (a closed SSH session), whatever comes first, and
/// gives the exit that ends `what`: 130, 143 or 129. Waiting for them means the process
/// ends through its normal path, dropping the listener and any temp file.
pub async fn stopped(what: &str) -> Exit {
    use tokio::signal::unix::{SignalKind, signal};
    async fn next(signal: Option<&mut tokio::signal::unix::Signal>) {
        match signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hangup = signal(SignalKind::hangup()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Exit::interrupted(format!("{what} cancelled")),
        () = next(term.as_mut()) => Exit::new(Code::Terminated, format!("{what} stopped by SIGTERM")),
        () = next(hangup.as_mut()) => {
            Exit::new(Code::HungUp, format!("{what} stopped: the terminal hung up (SIGHUP)"))
        }
    }
}

/// One line from stdin without its line ending, or `None` at the end of input.
///
/// Read on a detached thread: a read that never returns must not hold up the end of the
/// process (a runtime waits for its blocking tasks), so callers can race it against a
/// timeout and [`stopped`].
pub async fn read_line() -> io::Result<Option<String>> {
    let (sender, read) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = sender.send(io::stdin().read_line(&mut line).map(|n| (n > 0).then_some(line)));
    });
    let line = read.await.map_err(|_| io::Error::other("the reading thread ended"))??;
    Ok(line.map(|l| l.trim_end_matches(['\r', '\n']).to_owned()))
}

/// A line from stdin ([`read_line`]) for `task` (`login`, `init`), unless a signal ends
/// `task` first. The end of input is a usage error saying that `what` was not given.
pub async fn ask_line(task: &str, what: &str) -> anyhow::Result<String> {
    tokio::select! {
        line = read_line() => match line {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(Exit::usage(format!("stdin ended before {what} was given")).into()),
            Err(e) => Err(anyhow::anyhow!("cannot read {what} from stdin: {e}")),
        },
        exit = stopped(task) => Err(exit.into()),
    }
}

/// Turns off echo on the terminal that stdin is, for as long as it lives, so that a secret
/// typed there does not show. Does nothing when stdin is not a terminal.
pub struct NoEcho {
    saved: Option<rustix::termios::Termios>,
}

impl NoEcho {
    pub fn new() -> Self {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let stdin = io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else { return Self { saved: None } };
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        // The Enter that ends the line still moves to the next one.
        quiet.local_modes.insert(LocalModes::ECHONL);
        match tcsetattr(&stdin, OptionalActions::Now, &quiet) {
            Ok(()) => Self { saved: Some(saved) },
            Err(_) => Self { saved: None },
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(io::stdin(), rustix::termios::OptionalActions::Now, saved);
        }
    }
}

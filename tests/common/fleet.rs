//! A fleet of hosts printing at once, for the shared stores' tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{AuthServer, TestEnv, assert_exit, atl_command, stderr, stdout, wait_for};

/// A host of a fleet on a shared store: its own folder, env file and access-token copy, and
/// the environment its commands get (the store's address and credentials).
pub struct Host {
    pub dir: PathBuf,
    pub env: Vec<(&'static str, String)>,
}

impl Host {
    /// A host in `test`'s folder, named `name`: `test`'s settings plus `ATL_STORE=store`, a
    /// 4-second lease and `extra`; its commands get `env`.
    pub fn new(
        test: &TestEnv,
        name: &str,
        store: &str,
        extra: &str,
        env: Vec<(&'static str, String)>,
    ) -> Self {
        let dir = test.path(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let settings = std::fs::read_to_string(test.path(".env")).expect(".env");
        let settings = format!("{settings}ATL_STORE={store}\nATL_STORE_LEASE=4s\n{extra}");
        std::fs::write(dir.join(".env"), settings).expect("write .env");
        super::set_mode(&dir.join(".env"), 0o600);
        Self { dir, env }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = atl_command(&self.dir, args);
        command.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run atl-token")
    }

    /// `status --json`'s store.
    pub fn store(&self) -> Value {
        let output = self.run(&["status", "--json"]);
        assert_exit(&output, 0);
        serde_json::from_slice::<Value>(&output.stdout).expect("status is JSON")["store"].clone()
    }

    pub fn refresh_token(&self) -> String {
        let output = self.run(&["print", "--refresh", "--min-valid", "1s"]);
        assert_exit(&output, 0);
        stdout(&output).trim().to_owned()
    }
}

/// Every half second for `length`, five commands on each of `hosts` hosts, made by
/// `command(host)`. Returns each one's output, when it was seen done and its host, and the
/// number of rounds.
pub fn run(
    hosts: usize,
    length: Duration,
    command: impl Fn(usize) -> Command,
) -> (Vec<(Output, Instant, usize)>, usize) {
    let start = Instant::now();
    let mut running: Vec<(Child, usize)> = Vec::new();
    let mut finished: Vec<(Output, Instant, usize)> = Vec::new();
    let mut next_round = start;
    let mut rounds = 0;
    while start.elapsed() < length {
        if Instant::now() >= next_round {
            for host in 0..hosts {
                for _ in 0..5 {
                    let child =
                        command(host).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
                    running.push((child, host));
                }
            }
            next_round += Duration::from_millis(500);
            rounds += 1;
        }
        collect(&mut running, &mut finished);
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for("every command to finish", Duration::from_secs(90), || {
        collect(&mut running, &mut finished);
        running.is_empty()
    });
    (finished, rounds)
}

/// Moves finished children from `running` to `finished`, with the time they were seen done.
fn collect(running: &mut Vec<(Child, usize)>, finished: &mut Vec<(Output, Instant, usize)>) {
    let mut i = 0;
    while i < running.len() {
        if running[i].0.try_wait().expect("try_wait").is_some() {
            let (child, host) = running.swap_remove(i);
            let output = child.wait_with_output().expect("output");
            finished.push((output, Instant::now(), host));
        } else {
            i += 1;
        }
    }
}

/// Starts `refresh` (a refresh command of a host) stopping after `step`, waits until it says
/// so, and kills it (SIGKILL).
pub fn crash_after(mut refresh: Command, step: &str) {
    let mut child =
        refresh.env("ATL_TOKEN_TEST_ONLY_PAUSE_AT", step).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let paused = lines.next().expect("a line").expect("utf-8");
    assert!(paused.contains(&format!("paused after step {step}")), "{paused}");
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
}

/// Lets the family's access token expire: `refresh` (a refresh command of a host) with a
/// two-second lifetime, then waited out.
pub fn expire(auth: &AuthServer, mut refresh: Command) {
    auth.set_access_ttl(2);
    assert_exit(&refresh.output().expect("refresh"), 0);
    auth.set_access_ttl(3600);
    std::thread::sleep(Duration::from_millis(2500));
}

/// Starts five `print --min-valid 1s` on each of `hosts` hosts at once (made by
/// `print(host)`), and waits until every one has succeeded.
pub fn race(hosts: usize, print: impl Fn(usize) -> Command) {
    let children: Vec<Child> = (0..hosts)
        .flat_map(|host| (0..5).map(move |_| host))
        .map(|host| print(host).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn"))
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
}

/// The prints of [`run`] under faults: each exited 0 with a token the server issued and that
/// was valid when printed, or 1 with one line; anything else panics. Returns the exit 1s'
/// hosts and messages.
pub fn failures(finished: &[(Output, Instant, usize)], auth: &AuthServer) -> Vec<(usize, String)> {
    let mut failed = Vec::new();
    for (output, at, host) in finished {
        match output.status.code() {
            Some(0) => {
                let token = stdout(output).trim().to_owned();
                assert!(auth.access_valid_at(&token, *at), "host {host} printed {token}, not valid then");
            }
            Some(1) => {
                let message = stderr(output);
                assert_eq!(message.lines().count(), 1, "one sentence: {message}");
                failed.push((*host, message));
            }
            _ => panic!("host {host}: {:?}\n{}", output.status, stderr(output)),
        }
    }
    failed
}

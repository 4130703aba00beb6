//! A fleet of hosts printing at once, for the shared stores' tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{AuthServer, assert_exit, wait_for};

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

//! A fleet of hosts printing at once, for the shared stores' tests.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::wait_for;

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

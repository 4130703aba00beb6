//! Crashes and disk faults: the token file survives SIGKILL at any moment, and a full or
//! read-only disk fails a refresh before the refresh token is spent.
//!
//! The disk tests mount a tmpfs, which needs root (or CAP_SYS_ADMIN): they are ignored by a
//! plain `cargo test` and run by `.ci/run` with `--ignored`, where they fail loudly if the
//! mount is refused rather than pass without testing anything.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn sigkill_at_random_moments_never_breaks_the_token_file() {
    let env = TestEnv::new();
    // Atlassian lets a rotated refresh token work for a while; so does this server, so a
    // refresh killed after the server rotated can be followed by one that works.
    env.auth.set_reuse_window(Duration::from_secs(600));
    env.auth.set_jitter(Duration::from_millis(40));
    env.write_token(-10);
    let seed = u64::try_from(now()).expect("time");
    let mut rng = seed | 1;
    let mut killed_mid_run = 0;
    for round in 0..100 {
        let before = env.read_token()["refresh_token"].as_str().expect("rt").to_owned();
        let mut child = env.spawn(&["refresh", "-q"]);
        std::thread::sleep(Duration::from_micros(next_random(&mut rng) % 60_000));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reap");
        killed_mid_run += usize::from(status.code().is_none());

        let token = env.read_token();
        let after = token["refresh_token"].as_str().expect("the file holds a refresh token");
        assert!(
            after == before || env.auth.issued(after),
            "round {round} (seed {seed}): the file holds a refresh token the server never issued"
        );
        assert!(token["access_token"].is_string(), "round {round} (seed {seed})");
        let output = env.run(&["refresh", "-q"]);
        assert_exit(&output, 0);
    }
    assert!(killed_mid_run > 50, "most runs were killed mid-flight, not after exiting ({killed_mid_run})");
}

/// A tmpfs mounted for one test; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output();
        match output {
            Ok(o) if o.status.success() => Self { path: path.to_owned() },
            Ok(o) => panic!(
                "cannot mount a tmpfs at {} (this test needs root or CAP_SYS_ADMIN): {}",
                path.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("cannot run mount(8) for this test: {e}"),
        }
    }

    fn remount_read_only(&self) {
        let status =
            Command::new("mount").args(["-o", "remount,ro"]).arg(&self.path).status().expect("mount");
        assert!(status.success(), "cannot remount {} read-only", self.path.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A test env whose token file lives on a fresh 256 KiB tmpfs.
fn env_on_tmpfs() -> (TestEnv, Tmpfs, PathBuf) {
    let env = TestEnv::new();
    let mount = Tmpfs::mount(&env.path("tiny"), "256k");
    let token_file = mount.path.join("token.json");
    env.write_env(&format!("ATL_TOKEN_FILE={}\n", token_file.display()));
    (env, mount, token_file)
}

#[test]
#[ignore = "mounts a tmpfs: needs root; .ci/run runs it"]
fn a_full_disk_fails_the_refresh_before_the_token_is_spent() {
    let (env, mount, token_file) = env_on_tmpfs();
    env.write_token_at(&token_file, -10);
    let before = std::fs::read(&token_file).expect("token file");
    // Fill the file system to the last byte.
    let filler = mount.path.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![b'x'; 4096];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    let _ = std::io::Write::write_all(&mut file, b"x");
    drop(file);

    let output = env.run(&["refresh"]);
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert!(err.contains("cannot write a new token file"), "{err}");
    assert!(err.contains("nothing was sent to the server"), "{err}");
    assert!(env.auth.token_calls().is_empty(), "the refresh token was not spent");
    assert_eq!(std::fs::read(&token_file).expect("token file"), before, "file untouched");

    // With room again, the same file refreshes.
    std::fs::remove_file(&filler).expect("free space");
    assert_exit(&env.run(&["refresh", "-q"]), 0);
    assert_eq!(env.auth.token_calls().len(), 1);
}

#[test]
#[ignore = "mounts a tmpfs: needs root; .ci/run runs it"]
fn a_read_only_folder_fails_the_refresh_before_the_token_is_spent() {
    let (env, mount, token_file) = env_on_tmpfs();
    env.write_token_at(&token_file, 3600);
    // A lock file from an earlier run is there too: the refresh must still not go ahead.
    std::fs::write(mount.path.join("token.json.lock"), "").expect("lock file");
    let before = std::fs::read(&token_file).expect("token file");
    mount.remount_read_only();

    let output = env.run(&["refresh"]);
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(env.auth.token_calls().is_empty(), "the refresh token was not spent");
    assert_eq!(std::fs::read(&token_file).expect("token file"), before);

    // Reading still works: a valid token prints without writing anything.
    let output = env.run(&["print"]);
    assert_exit(&output, 0);
    assert!(stdout(&output).starts_with("at-"));
}

//! `ATL_STORE=keyring` against a real Secret Service: gnome-keyring-daemon on a D-Bus session
//! bus of the test's own, its login collection unlocked with a password on stdin (Debian
//! packages `gnome-keyring`, `dbus` and `libsecret-tools`, which `.ci/run` installs). Run
//! with `cargo test --features keyring --test keyring`; the tests fail, saying what is
//! missing, where the keyring cannot start.
#![cfg(feature = "keyring")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// A D-Bus session bus and a gnome-keyring-daemon on it, in a folder of their own; the bus
/// is killed on drop, and the keyring daemon leaves with it.
struct SecretService {
    bus: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl SecretService {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (home, run) = (dir.path().join("home"), dir.path().join("run"));
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::create_dir_all(&run).expect("mkdir");
        set_mode(&run, 0o700);
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dbus-daemon ({e}): install the Debian package dbus"));
        let mut address = String::new();
        BufReader::new(bus.stdout.take().expect("stdout")).read_line(&mut address).expect("bus address");
        let address = address.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon printed no address: {address:?}");
        let daemon = |args: &[&str], stdin: &[u8]| {
            let mut child = Command::new("gnome-keyring-daemon")
                .args(args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", &home)
                .env("XDG_RUNTIME_DIR", &run)
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start gnome-keyring-daemon ({e}): install the Debian package gnome-keyring"
                    )
                });
            child.stdin.take().expect("stdin").write_all(stdin).expect("password");
            let status = child.wait().expect("wait");
            assert!(status.success(), "gnome-keyring-daemon {args:?} failed: {status}");
        };
        daemon(&["--unlock", "--components=secrets"], b"test-password");
        daemon(&["--start", "--components=secrets"], b"");
        let service = Self { bus, address, dir };
        // Ready once an item can be stored and read back.
        wait_for("the Secret Service to store an item", Duration::from_secs(10), || {
            service.tool(&["store", "--label=probe", "service", "atl-token-probe"], b"ready").status.success()
                && service.tool(&["lookup", "service", "atl-token-probe"], b"").stdout == b"ready"
        });
        service
    }

    fn tool(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new("secret-tool")
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .env("HOME", self.dir.path().join("home"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run secret-tool ({e}): install the Debian package libsecret-tools")
            });
        child.stdin.take().expect("stdin").write_all(stdin).expect("stdin");
        child.wait_with_output().expect("secret-tool")
    }

    /// The keyring's token set for the token file at `path`, as another tool sees it.
    fn lookup(&self, path: &str) -> Option<String> {
        let output = self.tool(&["lookup", "service", "atl-token", "username", path], b"");
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

/// A test env whose family lives in the keyring: pushed there from a token file whose access
/// token expires in `access_left` seconds, the file then deleted.
fn keyring_env(keyring: &SecretService, access_left: i64) -> TestEnv {
    let env = TestEnv::new();
    env.auth.set_reuse_window(Duration::from_secs(600));
    env.write_env("ATL_STORE=keyring\n");
    let source = env.path("family.json");
    env.write_token_at(&source, access_left);
    let pushed = run(keyring, &env, &["store", "push", "--from", "family.json"]);
    assert_exit(&pushed, 0);
    std::fs::remove_file(source).expect("rm");
    env
}

fn command(keyring: &SecretService, env: &TestEnv, args: &[&str]) -> Command {
    let mut command = env.command(args);
    command.env("DBUS_SESSION_BUS_ADDRESS", &keyring.address);
    command
}

fn run(keyring: &SecretService, env: &TestEnv, args: &[&str]) -> Output {
    command(keyring, env, args).output().expect("run atl-token")
}

fn token_path(env: &TestEnv) -> String {
    env.token_file().display().to_string()
}

#[test]
fn the_family_lives_in_the_keyring_and_is_refreshed_there() {
    let keyring = SecretService::start();
    let env = keyring_env(&keyring, -10);
    let held = keyring.lookup(&token_path(&env)).expect("the family is in the keyring");
    assert!(held.contains("refresh_token"), "{held}");

    let printed = run(&keyring, &env, &["print"]);
    assert_exit(&printed, 0);
    assert_eq!(env.auth.refreshes(), 1);
    let held: serde_json::Value =
        serde_json::from_str(&keyring.lookup(&token_path(&env)).expect("still there")).expect("JSON");
    assert_eq!(stdout(&printed).trim(), held["access_token"].as_str().expect("access"));
    assert!(env.auth.is_live(held["refresh_token"].as_str().expect("refresh")), "the live token is kept");
    assert!(!env.token_file().exists(), "no token file: the keyring is the store");

    let status = run(&keyring, &env, &["status"]);
    assert_exit(&status, 0);
    assert!(stdout(&status).contains("the OS keyring, service atl-token"), "{}", stdout(&status));
}

#[test]
fn concurrent_prints_on_an_expired_token_refresh_once() {
    let keyring = SecretService::start();
    let env = keyring_env(&keyring, -10);
    let children: Vec<Child> = (0..10)
        .map(|_| {
            command(&keyring, &env, &["print"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert_exit(&output, 0);
    }
    assert_eq!(env.auth.refreshes(), 1, "the file lock serialized them");
    assert_eq!(env.auth.superseded(), 0);
}

/// SIGKILL at random moments of a refresh: the keyring always holds a set the server issued,
/// and the next refresh works (the server, like Cloud, lets a rotated token work a while).
#[test]
fn sigkill_mid_refresh_loses_nothing() {
    let keyring = SecretService::start();
    let env = keyring_env(&keyring, -10);
    env.auth.set_jitter(Duration::from_millis(40));
    let mut rng = u64::try_from(now()).expect("time") | 1;
    for round in 0..25 {
        let mut child = command(&keyring, &env, &["refresh", "-q"]).spawn().expect("spawn");
        std::thread::sleep(Duration::from_micros(next_random(&mut rng) % 80_000));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let held: serde_json::Value =
            serde_json::from_str(&keyring.lookup(&token_path(&env)).expect("in the keyring")).expect("JSON");
        let refresh = held["refresh_token"].as_str().expect("a refresh token");
        assert!(env.auth.issued(refresh), "round {round}: a refresh token the server never issued");
        assert_exit(&run(&keyring, &env, &["refresh", "-q"]), 0);
    }
}

/// No silent fallback to a file: without a D-Bus session there is no keyring, and atl-token
/// says so (exit 2), naming ATL_STORE=file.
#[test]
fn no_keyring_is_exit_2_and_never_a_file() {
    let env = TestEnv::new();
    env.write_env("ATL_STORE=keyring\n");
    let source = env.path("family.json");
    env.write_token_at(&source, 3600);
    for args in [&["store", "push", "--from", "family.json"][..], &["print"][..]] {
        let output = env.command(args).env_remove("DBUS_SESSION_BUS_ADDRESS").output().expect("run");
        assert_exit(&output, 2);
        let message = stderr(&output);
        assert!(message.contains("no D-Bus session") && message.contains("ATL_STORE=file"), "{message}");
    }
    assert!(!env.token_file().exists(), "nothing went to a file instead");
    assert!(!Path::new(&env.path("token.json.keyring-rescue")).exists());
}

/// The third review: another user's `token.json.keyring-rescue` in a sticky folder made
/// `refresh` and `logout` stop (exit 2). It is not this user's: skipped, with a warning.
#[test]
#[ignore = "needs root: plants a file as another user; .ci/run runs it"]
fn another_users_keyring_rescue_file_is_skipped() {
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(rustix::process::geteuid().as_raw(), 0, "needs root, to own a file as another user");
    let keyring = SecretService::start();
    let env = TestEnv::new();
    let shared = env.path("sticky");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    env.write_env(&format!("ATL_STORE=keyring\nATL_TOKEN_FILE={}\n", shared.join("token.json").display()));
    let source = env.path("family.json");
    env.write_token_at(&source, -10);
    assert_exit(&run(&keyring, &env, &["store", "push", "--from", "family.json"]), 0);
    let planted = shared.join("token.json.keyring-rescue");
    std::fs::write(&planted, r#"{"access_token": "evil", "refresh_token": "evil"}"#).expect("write");
    std::os::unix::fs::lchown(&planted, Some(4242), None).expect("chown");
    for args in [&["refresh"][..], &["logout"]] {
        let output = run(&keyring, &env, args);
        assert_exit(&output, 0);
        assert!(stderr(&output).contains("left alone"), "{args:?}: {}", stderr(&output));
    }
    assert_eq!(env.auth.refreshes(), 1);
    assert!(planted.exists(), "another user's file is left alone");
}

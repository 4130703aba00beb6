//! A hostile neighbour: another local user, a cloned repository's `.env`, a proxy, a server
//! that echoes what it was sent, a broken mount. Each test here failed before atl-token
//! guarded against what it names.
//!
//! Tests that need a second user or a mount are `#[ignore]`d for a plain `cargo test` and run
//! by `.ci/run` (as root) with `--ignored`; where they cannot set themselves up they fail,
//! saying why, rather than pass.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A user id that is neither root nor the user running the tests.
const OTHER_USER: u32 = 4242;

#[track_caller]
fn require_root() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test needs root, to own files as another user or to mount: \
         run `sudo cargo test --test hostile -- --ignored` (CI runs it as root)"
    );
}

fn lchown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), None).expect("lchown (needs root)");
}

/// Runs `atl-token print`, and `login` that must stop before it listens; returns their stderr.
fn assert_refused(env: &TestEnv, what: &str) -> String {
    let mut child = env.spawn(&["print"]);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let out = child.wait_with_output().expect("output");
    assert_eq!(status.code(), Some(2), "print: {}", stderr(&out));
    let print_err = stderr(&out);
    assert!(print_err.contains(what), "{print_err}");

    let out = env.run(&["login", "--no-browser", "--timeout", "2s"]);
    assert_exit(&out, 2);
    assert!(!stderr(&out).contains("Open this URL"), "refused before the browser: {}", stderr(&out));
    let out = env.run(&["refresh"]);
    assert_exit(&out, 2);
    assert!(env.auth.token_calls().is_empty(), "nothing was sent");
    print_err
}

// --- 1. Symlinks, folders, owners, FIFOs ---

#[test]
fn the_users_own_symlink_is_followed_even_before_its_target_exists() {
    let env = TestEnv::new();
    fs::create_dir(env.path("secrets")).expect("mkdir");
    chmod(&env.path("secrets"), 0o700);
    symlink("secrets/token.json", env.token_file()).expect("symlink");

    let login = Login::start(&env, &[]);
    let state = login.param("state");
    assert_eq!(status_of(&login.callback(&format!("code={CODE}&state={state}"))), 200);
    let (status, _, err) = login.finish();
    assert!(status.success(), "{err}");

    assert!(fs::symlink_metadata(env.token_file()).expect("meta").file_type().is_symlink(), "still a link");
    let real: serde_json::Value =
        serde_json::from_slice(&fs::read(env.path("secrets/token.json")).expect("real file")).expect("json");
    assert_eq!(real["refresh_token"], "rt-1");
    assert_eq!(mode_of(&env.path("secrets/token.json")), 0o600);
    assert!(env.path("secrets/token.json.lock").exists(), "the lock is beside the real file");
}

#[test]
fn a_symlink_in_a_folder_others_can_write_is_not_followed() {
    let env = TestEnv::new();
    let precious = env.path("precious");
    fs::write(&precious, "keep me\n").expect("write");
    fs::create_dir(env.path("shared")).expect("mkdir");
    chmod(&env.path("shared"), 0o1777);
    symlink(&precious, env.path("shared/token.json")).expect("symlink");
    env.write_env("ATL_TOKEN_FILE=shared/token.json\n");

    let err = assert_refused(&env, "is a symlink in");
    assert!(err.contains("others can write (mode 1777)"), "{err}");
    assert_eq!(fs::read_to_string(&precious).expect("read"), "keep me\n");

    // A link to a folder, on the way to the token file, is no different.
    let private = env.path("private");
    fs::create_dir(&private).expect("mkdir");
    symlink(&private, env.path("shared/d")).expect("symlink");
    env.write_env("ATL_TOKEN_FILE=shared/d/token.json\n");
    let err = assert_refused(&env, "shared/d is a symlink in");
    assert!(err.contains("others can write (mode 1777)"), "{err}");
    assert_eq!(fs::read_dir(&private).expect("ls").count(), 0, "nothing was written through it");
}

#[test]
fn a_token_folder_others_can_write_is_refused_unless_sticky_with_the_users_own_file() {
    let env = TestEnv::new();
    let shared = env.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    env.write_token_at(&shared.join("token.json"), 3600);
    env.write_env("ATL_TOKEN_FILE=shared/token.json\n");
    chmod(&shared, 0o777);

    let err = assert_refused(&env, "others can write (mode 777)");
    assert!(err.contains(&format!("chmod go-w {}", shared.display())), "{err}");

    chmod(&shared, 0o1777);
    let out = env.run(&["print"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).starts_with("at-"));
}

#[test]
fn a_fifo_as_token_file_is_refused_at_once() {
    let env = TestEnv::new();
    let status = Command::new("mkfifo").arg(env.token_file()).status().expect("mkfifo");
    assert!(status.success());
    let err = assert_refused(&env, "not a regular file");
    assert!(err.contains(&env.token_file().display().to_string()), "{err}");
}

#[test]
fn a_fifo_or_symlink_as_lock_file_is_refused_and_nothing_is_created_through_it() {
    let env = TestEnv::new();
    env.write_token(-10);
    let lock = env.path("token.json.lock");
    let status = Command::new("mkfifo").arg(&lock).status().expect("mkfifo");
    assert!(status.success());
    let out = env.run(&["refresh"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("lock file") && stderr(&out).contains("not a regular file"));

    fs::remove_file(&lock).expect("rm");
    let victim = env.path("victim");
    symlink(&victim, &lock).expect("symlink");
    let out = env.run(&["refresh"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("is a symlink"), "{}", stderr(&out));
    assert!(!victim.exists(), "nothing was created through the link");
    assert!(env.auth.token_calls().is_empty());
}

#[test]
#[ignore = "needs root: plants files as another user; .ci/run runs it"]
fn a_symlink_planted_by_another_user_is_not_followed() {
    require_root();
    // The reproduction: the victim's token file is in a shared folder, where another user
    // has put a symlink to one of the victim's files.
    let env = TestEnv::new();
    let precious = env.path("precious");
    fs::write(&precious, "export PATH=/usr/bin\n").expect("write");
    fs::create_dir(env.path("shared")).expect("mkdir");
    chmod(&env.path("shared"), 0o1777);
    let link = env.path("shared/atl-victim-token.json");
    symlink(&precious, &link).expect("symlink");
    lchown(&link, OTHER_USER);
    env.write_env(&format!("ATL_TOKEN_FILE={}\n", link.display()));

    let err = assert_refused(&env, &format!("is a symlink owned by user {OTHER_USER}, not by you"));
    assert!(err.contains(&link.display().to_string()), "{err}");
    assert_eq!(fs::read_to_string(&precious).expect("read"), "export PATH=/usr/bin\n");

    // Or a link to one of the victim's folders, with the token file's usual name.
    let folder = env.path("victim-folder");
    fs::create_dir(&folder).expect("mkdir");
    let dir_link = env.path("shared/d");
    symlink(&folder, &dir_link).expect("symlink");
    lchown(&dir_link, OTHER_USER);
    env.write_env(&format!("ATL_TOKEN_FILE={}/token.json\n", dir_link.display()));
    assert_refused(&env, &format!("{} is a symlink owned by user {OTHER_USER}", dir_link.display()));
    assert_eq!(fs::read_dir(&folder).expect("ls").count(), 0, "nothing was written through it");

    // The same link in a folder only the victim can write is still another user's link.
    let private_link = env.path("token.json");
    symlink(&precious, &private_link).expect("symlink");
    lchown(&private_link, OTHER_USER);
    env.write_env("");
    assert_refused(&env, "not by you");
    assert_eq!(fs::read_to_string(&precious).expect("read"), "export PATH=/usr/bin\n");
}

#[test]
#[ignore = "needs root: runs atl-token as a second user; .ci/run runs it"]
fn a_victim_who_is_not_root_is_protected_the_same_way() {
    require_root();
    const VICTIM: u32 = 4243;
    let env = TestEnv::new();
    chmod(env.dir.path(), 0o755);
    let home = env.path("victim");
    fs::create_dir(&home).expect("mkdir");
    let bashrc = home.join(".bashrc");
    fs::write(&bashrc, "alias ll='ls -l'\n").expect("write");
    fs::copy(env.path(".env"), home.join(".env")).expect("copy .env");
    for path in [&home, &bashrc, &home.join(".env")] {
        lchown(path, VICTIM);
    }
    let shared = env.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o1777);
    let link = shared.join("atl-victim-token.json");
    symlink(&bashrc, &link).expect("symlink");
    lchown(&link, OTHER_USER);

    for args in [&["print"][..], &["login", "--no-browser", "--timeout", "2s"]] {
        let mut command = atl_command(&home, args);
        std::os::unix::process::CommandExt::uid(&mut command, VICTIM);
        command.env("ATL_TOKEN_FILE", &link);
        let out = command.output().expect("run as the victim");
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(&format!("owned by user {OTHER_USER}")), "{}", stderr(&out));
    }
    assert_eq!(fs::read_to_string(&bashrc).expect("read"), "alias ll='ls -l'\n", ".bashrc untouched");
}

#[test]
#[ignore = "needs root: owns a file as another user; .ci/run runs it"]
fn another_users_token_file_is_refused() {
    require_root();
    let env = TestEnv::new();
    env.write_token(3600);
    lchown(&env.token_file(), OTHER_USER);
    let err = assert_refused(&env, &format!("belongs to user {OTHER_USER}, not to you"));
    assert!(err.contains(&env.token_file().display().to_string()), "{err}");
}

// --- 2. The refresh token goes only to the endpoint that issued it ---

#[test]
fn a_repositorys_env_cannot_send_the_refresh_token_elsewhere() {
    let env = TestEnv::new();
    let login = Login::start(&env, &[]);
    let state = login.param("state");
    assert_eq!(status_of(&login.callback(&format!("code={CODE}&state={state}"))), 200);
    let (status, _, err) = login.finish();
    assert!(status.success(), "{err}");
    let before = fs::read(env.token_file()).expect("token file");

    // A cloned repository whose .env points at the victim's token file and a server of
    // its own; the client id and secret come from the victim's shell.
    let attacker = Server::start(|_| Reply::Json(200, json!({"access_token": "evil", "expires_in": 60})));
    let repo = env.path("repo");
    fs::create_dir(&repo).expect("mkdir");
    fs::write(
        repo.join(".env"),
        format!("ATL_TOKEN_FILE=\"{}\"\nATL_TOKEN_URL={}\n", env.token_file().display(), attacker.url("/t")),
    )
    .expect("write");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_atl-token"))
            .env_clear()
            .env("HOME", env.dir.path())
            .env("ATL_CLIENT_ID", CLIENT_ID)
            .env("ATL_CLIENT_SECRET", CLIENT_SECRET)
            .env("ATL_SCOPE", "read:jira-work")
            .current_dir(&repo)
            .args(args)
            .output()
            .expect("run")
    };
    // Untrusted, the file is refused before anything is sent.
    let out = run(&["refresh"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("atl-token trust"), "{}", stderr(&out));
    assert!(attacker.requests().is_empty(), "nothing reached the other server");
    // Trusted by mistake, the family's binding still holds.
    assert_exit(&run(&["trust"]), 0);
    let out = run(&["refresh"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(attacker.requests().is_empty(), "nothing reached the other server");
    assert!(err.contains(&format!("is bound to the token endpoint {}", env.auth.token_url())), "{err}");
    assert!(err.contains(&attacker.url("/t")), "{err}");
    assert!(err.contains(&format!("ATL_TOKEN_URL in {}", repo.join(".env").display())), "{err}");
    assert!(err.contains("run `atl-token login`"), "{err}");
    assert_eq!(fs::read(env.token_file()).expect("token file"), before, "file untouched");
}

#[test]
fn a_file_without_an_issuer_is_bound_to_the_endpoint_of_its_first_refresh() {
    let env = TestEnv::new();
    env.write_token(-10);
    assert_exit(&env.run(&["refresh", "-q"]), 0);
    assert_eq!(env.read_token()["token_url"], env.auth.token_url());

    let other = Server::start(|_| Reply::Json(500, json!({"error": "server_error"})));
    env.write_env(&format!("ATL_TOKEN_URL={}\n", other.url("/oauth/token")));
    let out = env.run(&["refresh"]);
    assert_exit(&out, 2);
    assert!(other.requests().is_empty());
    assert_eq!(env.auth.token_calls().len(), 1);
}

#[test]
fn login_names_endpoints_that_are_not_atlassians_before_the_browser() {
    let env = TestEnv::new();
    let login = Login::start(&env, &["--timeout", "1s"]);
    let (_, _, err) = login.finish();
    let lines: Vec<&str> = err.lines().collect();
    let note = lines.iter().position(|l| l.starts_with("note: signing in through endpoints")).expect("note");
    let url = lines.iter().position(|l| l.trim_start().starts_with("http://")).expect("url");
    assert!(note < url, "the note comes before the URL: {err}");
    let env_file = env.path(".env").display().to_string();
    assert!(
        lines[note].contains(&format!("{} (ATL_TOKEN_URL in {env_file})", env.auth.token_url())),
        "{err}"
    );
    assert!(lines[note].contains(&format!("(ATL_AUTHORIZE_URL in {env_file})")), "{err}");
}

// --- 3. The rescue file ---

/// A token set as atl-token writes it, bound to the test server.
fn token_json(env: &TestEnv, refresh: &str, obtained_at: i64) -> Vec<u8> {
    let value = json!({"access_token": "at-x", "refresh_token": refresh, "expires_in": 3600,
                       "expires_at": obtained_at - 10, "obtained_at": obtained_at,
                       "family_started_at": obtained_at - 1000, "token_url": env.auth.token_url()});
    serde_json::to_vec_pretty(&value).expect("json")
}

/// The state a failed replace leaves: the server rotated `old` to `new`, `token.json` still
/// holds `old`, and the rescue file holds `new`. Returns the rescue file's path.
fn leave_a_rescue(env: &TestEnv) -> (String, String, std::path::PathBuf) {
    let (_, old) = env.auth.issue();
    let (_, new) = env.auth.issue();
    env.auth.spend(&old);
    let now = now();
    fs::write(env.token_file(), token_json(env, &old, now - 100)).expect("write");
    let rescue = env.path(&format!("token.json.rescue-{}-77", now - 50));
    fs::write(&rescue, token_json(env, &new, now - 50)).expect("write");
    chmod(&rescue, 0o600);
    (old, new, rescue)
}

#[test]
fn a_rescue_file_is_moved_into_place_before_the_next_refresh_spends_anything() {
    let env = TestEnv::new();
    let (old, new, rescue) = leave_a_rescue(&env);

    let out = env.run(&["refresh", "-q"]);
    assert_exit(&out, 0);
    let calls = env.auth.token_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].param("refresh_token"), Some(new), "the rescued token was spent, not {old}");
    assert!(!rescue.exists(), "moved into place");
    assert!(env.auth.is_live(env.read_token()["refresh_token"].as_str().expect("rt")));
    assert!(stderr(&out).contains("could not write"), "{}", stderr(&out));
}

#[test]
fn login_says_signed_in_only_after_the_token_file_is_written() {
    let env = TestEnv::new();
    let login = Login::start(&env, &[]);
    // Something now stands where the token file must go: the rename will fail.
    fs::create_dir(env.token_file()).expect("mkdir");
    fs::write(env.token_file().join("x"), "x").expect("write");
    let state = login.param("state");
    let page = login.callback(&format!("code={CODE}&state={state}"));
    assert_ne!(status_of(&page), 200, "{page}");
    assert!(!page.contains("Signed in"), "{page}");
    assert!(page.contains("could not save it"), "{page}");

    let (status, _, err) = login.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    let rescue = fs::read_dir(env.dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("token.json.rescue-")))
        .expect("a rescue file");
    assert!(err.contains(&rescue.display().to_string()), "{err}");
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&rescue).expect("read")).expect("json");
    assert_eq!(saved["refresh_token"], "rt-1");
}

/// A bind mount of one file onto itself, as `docker run -v ./token.json:/app/token.json`
/// makes; unmounted on drop.
struct FileMount(std::path::PathBuf);

impl FileMount {
    fn bind(path: &Path, read_only: bool) -> Self {
        let run = |args: &[&str]| {
            let out = Command::new("mount").args(args).arg(path).arg(path).output().expect("run mount");
            assert!(
                out.status.success(),
                "cannot bind-mount {} (this test needs root): {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        };
        run(&["--bind"]);
        let mount = Self(path.to_owned());
        if read_only {
            let out =
                Command::new("mount").args(["-o", "remount,bind,ro"]).arg(path).output().expect("mount");
            assert!(
                out.status.success(),
                "cannot remount read-only: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        mount
    }
}

impl Drop for FileMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn leftovers(env: &TestEnv) -> Vec<String> {
    fs::read_dir(env.dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".rescue-") || n.ends_with(".tmp"))
        .collect()
}

#[test]
#[ignore = "needs root: bind-mounts a file; .ci/run runs it"]
fn a_token_file_bind_mounted_on_its_own_is_refreshed_in_place() {
    require_root();
    let env = TestEnv::new();
    env.write_token(-10);
    let _mount = FileMount::bind(&env.token_file(), false);
    for round in 0..3 {
        let out = env.run(&["refresh", "-q"]);
        assert_exit(&out, 0);
        let live = env.read_token()["refresh_token"].as_str().expect("rt").to_owned();
        assert!(env.auth.is_live(&live), "round {round}: the file holds the live token");
        assert!(leftovers(&env).is_empty(), "round {round}: {:?}", leftovers(&env));
    }
    assert_eq!(env.auth.token_calls().len(), 3);
}

#[test]
#[ignore = "needs root: bind-mounts a file read-only; .ci/run runs it"]
fn a_rescue_that_cannot_be_moved_into_place_stops_the_refresh_before_anything_is_sent() {
    require_root();
    let env = TestEnv::new();
    let (_, new, rescue) = leave_a_rescue(&env);
    let before = fs::read(env.token_file()).expect("read");
    let _mount = FileMount::bind(&env.token_file(), true);

    let out = env.run(&["refresh"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(env.auth.token_calls().is_empty(), "nothing was spent");
    assert!(err.contains("Nothing was sent to the server"), "{err}");
    assert!(
        err.contains(&format!("run: mv -- {} {}", rescue.display(), env.token_file().display())),
        "{err}"
    );
    assert!(rescue.exists(), "the rescue file is kept");
    assert_eq!(fs::read(env.token_file()).expect("read"), before);
    assert!(env.auth.is_live(&new));
}

// --- 4. Secrets echoed by a server ---

#[test]
fn secrets_echoed_by_a_server_or_proxy_are_never_shown() {
    let env = TestEnv::new();
    let refresh = env.write_token(-10);
    // A framework that quotes the request in its error, then a proxy that does the same.
    let echo = Server::start(|request| {
        let body = String::from_utf8_lossy(&request.body).into_owned();
        if request.path == "/json" {
            Reply::Json(400, json!({"error": "invalid_request", "error_description": format!("bad: {body}")}))
        } else {
            Reply::Raw { status: 502, headers: vec![], body: format!("<pre>{body}</pre>").into_bytes() }
        }
    });
    for (path, format) in [("/json", "json"), ("/json", "form"), ("/proxy", "json"), ("/proxy", "form")] {
        env.write_env(&format!("ATL_TOKEN_URL={}\nATL_TOKEN_BODY={format}\n", echo.url(path)));
        let out = env.run(&["refresh"]);
        assert_exit(&out, 1);
        let err = stderr(&out);
        assert!(err.contains("(redacted)"), "{path} {format}: {err}");
        for secret in [CLIENT_SECRET, refresh.as_str()] {
            assert!(!err.contains(secret), "{path} {format}: {err}");
        }
    }

    // The code and the secret, on the terminal and on the browser's page.
    let env = TestEnv::new();
    let login = Login::start_with(&env, &format!("ATL_TOKEN_URL={}\n", echo.url("/json")), &[]);
    let state = login.param("state");
    let page = login.callback(&format!("code={CODE}&state={state}"));
    let (status, _, err) = login.finish();
    assert_eq!(status.code(), Some(1));
    for text in [&page, &err] {
        assert!(text.contains("(redacted)"), "{text}");
        assert!(!text.contains(CODE) && !text.contains(CLIENT_SECRET), "{text}");
    }
}

// --- 5. No proxy for loopback ---

#[test]
fn a_loopback_token_endpoint_is_never_reached_through_a_proxy() {
    let env = TestEnv::new();
    env.write_token(-10);
    let proxy = Server::start(|_| Reply::Json(502, json!({"error": "proxied"})));
    let out = env
        .command(&["refresh", "-q"])
        .env("HTTP_PROXY", proxy.url(""))
        .env("http_proxy", proxy.url(""))
        .env("ALL_PROXY", proxy.url(""))
        .output()
        .expect("run");
    assert_exit(&out, 0);
    assert!(proxy.requests().is_empty(), "the proxy saw {:?}", proxy.requests());
    assert_eq!(env.auth.token_calls().len(), 1);
}

// --- 7. No upper bound on what a token file costs ---

#[test]
fn a_huge_token_file_is_refused_without_being_read() {
    let env = TestEnv::new();
    // The review's 301 MB file, sparse: it costs no disk.
    fs::File::create(env.token_file()).expect("create").set_len(301 * 1024 * 1024).expect("sparse");
    let err = assert_refused(&env, "more than any token file (1024 KiB at most)");
    assert!(err.contains("check ATL_TOKEN_FILE"), "{err}");
    let names = leftovers(&env);
    assert!(names.is_empty(), "no reservation left behind: {names:?}");
}

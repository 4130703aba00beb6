//! A hostile neighbour, the second review: every destination bound to the family at login,
//! settings only from files nobody else can write, and whatever a server sends treated as
//! data. Each test here failed before atl-token guarded against what it names.
//!
//! Tests that need a second user are `#[ignore]`d for a plain `cargo test` and run by
//! `.ci/run` (as root) with `--ignored`; where they cannot set themselves up they fail,
//! saying why, rather than pass.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A user id that is neither root nor the user running the tests.
const OTHER_USER: u32 = 4242;

#[track_caller]
fn require_root() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test needs root, to own files or sockets as another user: run \
         `sudo cargo test --test neighbour -- --ignored` (CI runs it as root)"
    );
}

/// Logs in to `env`'s server, so that the token file records every destination.
fn log_in(env: &TestEnv) {
    let login = Login::start(env, &[]);
    let state = login.param("state");
    assert_eq!(status_of(&login.callback(&format!("code={CODE}&state={state}"))), 200);
    let (status, _, err) = login.finish();
    assert!(status.success(), "{err}");
}

/// A cloned repository in `env`'s folder with `settings` as its `.env`.
fn repository(env: &TestEnv, settings: &str) -> PathBuf {
    let repo = env.path("repo");
    fs::create_dir_all(&repo).expect("mkdir");
    fs::write(repo.join(".env"), settings).expect("write .env");
    repo
}

/// atl-token run in `dir`, finding `./.env` itself, with the victim's AWS key in the
/// environment.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    bare_command(dir).env("AWS_SECRET_ACCESS_KEY", "victims-aws-key").args(args).output().expect("run")
}

// --- 1. Destinations bound at login ---

#[test]
fn a_planted_env_cannot_send_the_access_token_or_a_variable_to_another_api() {
    let env = TestEnv::new();
    log_in(&env);
    let before = fs::read(env.token_file()).expect("token file");
    assert_eq!(env.read_token()["api_url"], env.auth.server.url(""));

    let attacker = Server::start(|_| {
        Reply::Json(200, json!([{"id": "evil-id", "url": "https://other.atlassian.net", "name": "x"}]))
    });
    let repo = repository(
        &env,
        &format!(
            "ATL_CLIENT_ID={CLIENT_ID}\nATL_CLIENT_SECRET={CLIENT_SECRET}\nATL_SCOPE=read:jira-work\n\
             ATL_TOKEN_FILE={}\nATL_TOKEN_URL={}\nATL_API_URL={}/${{AWS_SECRET_ACCESS_KEY}}\n\
             ATL_SITE=https://other.atlassian.net\n",
            env.token_file().display(),
            env.auth.token_url(),
            attacker.url("")
        ),
    );
    // Untrusted, the file is refused whole; trusted by mistake, the bindings still hold.
    assert_exit(&run_in(&repo, &["print", "--env"]), 2);
    assert_exit(&run_in(&repo, &["trust"]), 0);
    for args in
        [&["print", "--env"][..], &["api", "/rest/api/3/myself"], &["sites"], &["print", "--cloud-id"]]
    {
        let out = run_in(&repo, args);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(&format!("is bound to the API {}", env.auth.server.url(""))), "{args:?}: {err}");
        assert!(err.contains(&format!("but the settings now name {}/$", attacker.url(""))), "{err}");
        assert!(err.contains(&format!("ATL_API_URL in {}", repo.join(".env").display())), "{err}");
        assert!(err.contains("the value of ATL_API_URL in") && err.contains("kept as written"), "{err}");
        assert!(!err.contains("victims-aws-key"), "{err}");
    }
    let status = run_in(&repo, &["status"]);
    assert!(stdout(&status).contains("SETTINGS DIFFER"), "{}", stdout(&status));
    assert!(attacker.requests().is_empty(), "the other server got {:?}", attacker.requests());
    assert_eq!(fs::read(env.token_file()).expect("token file"), before, "no cloud id cached");
}

#[test]
fn a_planted_datacenter_env_gets_neither_the_bearer_token_nor_the_revoke() {
    let env = TestEnv::with(AuthServer::datacenter());
    env.write_token(3600);
    // The first use of a file without records binds it.
    assert_exit(&env.run(&["refresh", "-q"]), 0);
    let token = env.read_token();
    let base = env.auth.base_url();
    assert_eq!(token["api_url"], base.trim_end_matches('/'));
    assert_eq!(token["revoke_url"], format!("{}{DC_PATH}/revoke", base.trim_end_matches('/')));
    let before = fs::read(env.token_file()).expect("token file");

    let attacker = Server::start(|_| Reply::Json(200, json!({"ok": true})));
    let repo = repository(
        &env,
        &format!(
            "ATL_CLIENT_ID={CLIENT_ID}\nATL_CLIENT_SECRET={CLIENT_SECRET}\nATL_SCOPE=READ\n\
             ATL_PROVIDER=datacenter\nATL_BASE_URL={}\nATL_TOKEN_URL={}\nATL_TOKEN_FILE={}\n",
            attacker.url(""),
            env.auth.token_url(),
            env.token_file().display()
        ),
    );
    assert_exit(&run_in(&repo, &["trust"]), 0);
    for args in [&["api", "/rest/api/2/myself"][..], &["logout"], &["print", "--api-base"]] {
        let out = run_in(&repo, args);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains(&format!("but the settings now name {}", attacker.url(""))),
            "{}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    assert!(attacker.requests().is_empty(), "the other server got {:?}", attacker.requests());
    assert!(env.auth.revoke_calls().is_empty());
    assert_eq!(fs::read(env.token_file()).expect("token file"), before, "kept");
}

#[test]
fn a_file_without_records_is_bound_by_its_first_use_and_refused_elsewhere_after() {
    let env = TestEnv::new();
    env.write_token(3600);
    assert_exit(&env.run(&["print", "--cloud-id"]), 0);
    let token = env.read_token();
    assert_eq!(token["api_url"], env.auth.server.url(""));
    assert_eq!(token["token_url"], env.auth.token_url());

    let other = Server::start(|_| Reply::Json(200, json!([])));
    env.write_env(&format!("ATL_API_URL={}\n", other.url("")));
    let out = env.run(&["api", "/rest/api/3/myself"]);
    assert_exit(&out, 2);
    assert!(other.requests().is_empty());
}

// --- 2. Settings only from files nobody else can write ---

/// A folder whose env file is `make`'s, named by `--env-file` or found as `./.env`; `print`
/// run there must stop at once with exit 2.
fn refused_env(named: bool, make: impl FnOnce(&Path), expected: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(".env");
    make(&path);
    let mut command = bare_command(dir.path());
    if named {
        command.arg("--env-file").arg(&path);
    }
    let mut child =
        command.arg("print").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let out = child.wait_with_output().expect("output");
    assert_eq!(status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(expected), "{}", stderr(&out));
}

fn fifo(p: &Path) {
    let mode = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
    rustix::fs::mknodat(rustix::fs::CWD, p, rustix::fs::FileType::Fifo, mode, 0).expect("fifo");
}

#[test]
fn an_env_file_that_is_not_a_small_private_regular_file_is_refused_unread() {
    let settings = "ATL_CLIENT_ID=a\nATL_CLIENT_SECRET=b\nATL_SCOPE=c\n";
    refused_env(true, fifo, "not a regular file");
    refused_env(true, |p| std::os::unix::fs::symlink("/dev/zero", p).expect("symlink"), "not a regular file");
    // Found in the folder, neither names a setting: not atl-token's, so not read, nor waited on.
    refused_env(false, fifo, "ATL_CLIENT_ID");
    refused_env(false, |p| std::os::unix::fs::symlink("/dev/zero", p).expect("symlink"), "ATL_CLIENT_ID");
    for named in [true, false] {
        refused_env(
            named,
            |p| {
                fs::write(p, settings).expect("write");
                set_mode(p, 0o666);
            },
            "can be changed by other users (mode 666)",
        );
        refused_env(
            named,
            |p| {
                fs::write(p, settings).expect("write");
                set_mode(p.parent().expect("folder"), 0o777);
            },
            "others can write (mode 777)",
        );
        refused_env(
            named,
            |p| fs::write(p, format!("{settings}{}", "# x\n".repeat(17 * 1024))).expect("write"),
            "more than 64 KiB",
        );
    }
}

#[test]
#[ignore = "needs root: owns an env file as another user; .ci/run runs it"]
fn another_users_env_file_is_refused() {
    require_root();
    refused_env(
        false,
        |p| {
            fs::write(p, "ATL_CLIENT_ID=a\nATL_CLIENT_SECRET=b\nATL_SCOPE=c\n").expect("write");
            std::os::unix::fs::lchown(p, Some(OTHER_USER), None).expect("chown");
        },
        &format!("belongs to user {OTHER_USER}"),
    );
}

// --- 3. Another user on the callback port ---

/// A listener of another user's on `address` (`127.0.0.1` or `::1`) and `port`, for 30 s.
fn listen_as_other_user(address: &str, port: u16) -> std::process::Child {
    let family = if address.contains(':') { "socket.AF_INET6" } else { "socket.AF_INET" };
    let script = format!(
        "import socket,sys,time; s=socket.socket({family}); s.bind(('{address}', int(sys.argv[1]))); \
         s.listen(); print('ok', flush=True); time.sleep(30)"
    );
    let mut holder = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .arg(port.to_string())
        .uid(OTHER_USER)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 as another user");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "ok", "the other user's listener is up");
    holder
}

#[test]
#[ignore = "needs root: listens as another user; .ci/run runs it"]
fn another_user_holding_the_callback_port_stops_login_before_the_browser_opens() {
    require_root();
    let env = TestEnv::new();
    let port = free_port();
    let mut holder = listen_as_other_user("127.0.0.1", port);

    env.write_env(&format!("ATL_PORT={port}\n"));
    let out = env.run(&["login", "--no-browser", "--timeout", "3s"]);
    // With --paste the browser may be on another machine: a warning, not a refusal.
    let pasted = env.run(&["login", "--paste", "--timeout", "2s"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&format!("port {port} is held by user {OTHER_USER}")), "{err}");
    assert!(err.contains("would receive the authorization code") && err.contains("ATL_PORT"), "{err}");
    assert!(!err.contains("Open this URL"), "refused before the browser: {err}");
    let warned = stderr(&pasted);
    assert!(
        warned.contains(&format!(
            "warning: if the browser runs on this machine: port {port} is held by user {OTHER_USER}"
        )),
        "{warned}"
    );
}

/// The third review: another user listening on `[::1]:PORT` only, and `ATL_LISTEN` naming
/// an IPv4 address. `login` bound that one address and showed the URL, and a browser that
/// takes `localhost` to `::1` would have delivered the code to the other user.
#[test]
#[ignore = "needs root: listens as another user; .ci/run runs it"]
fn another_user_on_the_other_loopback_family_stops_a_login_with_atl_listen() {
    require_root();
    let env = TestEnv::new();
    let port = free_port();
    let mut holder = listen_as_other_user("::1", port);

    let mut outs = Vec::new();
    for listen in ["127.0.0.1", "0.0.0.0"] {
        env.write_env(&format!("ATL_PORT={port}\nATL_LISTEN={listen}\n"));
        outs.push((listen, env.run(&["login", "--no-browser", "--timeout", "3s"])));
    }
    let _ = holder.kill();
    let _ = holder.wait();
    for (listen, out) in outs {
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(&format!("is held by user {OTHER_USER}")), "ATL_LISTEN={listen}: {err}");
        assert!(!err.contains("Open this URL"), "refused before the browser: {err}");
    }
}

// --- 4. Paging with bounds ---

fn cloud() -> TestEnv {
    let env = TestEnv::new();
    env.write_token(3600);
    assert_exit(&env.run(&["print", "--cloud-id"]), 0);
    env
}

#[test]
fn a_page_claiming_a_huge_total_is_refused_before_anything_is_planned() {
    let env = cloud();
    env.auth.set_api(|_| {
        Reply::Json(200, json!({"startAt": 0, "maxResults": 1, "total": 100_000_000_000u64, "issues": [1]}))
    });
    for extra in [&[][..], &["--ndjson"]] {
        let out =
            env.command(&["api", "--paginate", "/rest/api/3/search"]).args(extra).output().expect("run");
        assert_exit(&out, 1);
        assert!(stderr(&out).contains("past the limit of 100000"), "{}", stderr(&out));
    }
    assert_eq!(env.auth.api_calls().len(), 2, "one page each, nothing planned");
}

#[test]
fn ndjson_prints_pages_before_the_listing_ends() {
    let env = cloud();
    // 40 pages of one item; the last is served only once the second page's item has been
    // printed, which a tool that keeps every page until the end never does.
    let printed = Arc::new(AtomicBool::new(false));
    let seen = printed.clone();
    env.auth.set_api(move |r| {
        let start: u64 = r.path.split("startAt=").nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if start == 39 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !seen.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(25));
            }
            if !seen.load(Ordering::SeqCst) {
                return Reply::Json(500, json!({"error": "the first pages were never printed"}));
            }
        }
        Reply::Json(200, json!({"startAt": start, "maxResults": 1, "total": 40, "issues": [{"n": start}]}))
    });
    let mut child = env.spawn(&["api", "--paginate", "--ndjson", "--parallel", "1", "/rest/api/3/search"]);
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().expect("line").expect("read"), r#"{"n":0}"#);
    assert_eq!(lines.next().expect("line").expect("read"), r#"{"n":1}"#);
    printed.store(true, Ordering::SeqCst);
    let rest: Vec<String> = lines.map(|l| l.expect("read")).collect();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{rest:?}");
    assert_eq!(rest.len(), 38);
    assert_eq!(rest.last().map(String::as_str), Some(r#"{"n":39}"#));
}

#[test]
fn a_paging_link_cannot_lead_out_of_the_api_base() {
    let env = cloud();
    env.auth.set_api(|_| Reply::Json(200, json!({"results": [1], "_links": {"next": "/../../../evil?x=1"}})));
    let out = env.run(&["api", "--product", "confluence", "--paginate", "/wiki/api/v2/pages"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("leads out of the API base"), "{}", stderr(&out));
    assert_eq!(env.auth.api_calls().len(), 1, "{:?}", env.auth.api_calls());
}

// --- 5. Strings from servers ---

#[test]
fn a_token_answer_that_could_inject_a_header_is_refused_and_nothing_is_written() {
    let env = TestEnv::new();
    env.write_token(-10);
    let before = fs::read(env.token_file()).expect("token file");
    for (access, refresh) in
        [("abc\r\nX-Injected: yes", "rt-new"), ("at-new", "rt\\"), ("at-new\\", "rt-new")]
    {
        env.auth.push_fault(Reply::Json(
            200,
            json!({"access_token": access, "refresh_token": refresh, "expires_in": 3600}),
        ));
        let out = env.run(&["refresh"]);
        assert_exit(&out, 1);
        assert!(stderr(&out).contains("is not a token"), "{}", stderr(&out));
        assert_eq!(fs::read(env.token_file()).expect("token file"), before, "nothing written");
    }
}

#[test]
fn a_server_cannot_move_the_family_start_or_stop_refreshes() {
    let env = TestEnv::new();
    env.write_token(-10);
    let started = env.read_token()["family_started_at"].clone();
    env.auth.push_fault(Reply::Json(
        200,
        json!({"access_token": "at-x", "refresh_token": "rt-x", "expires_in": u64::MAX,
               "family_started_at": u64::MAX, "token_url": "https://evil.example/t"}),
    ));
    let out = env.run(&["refresh"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("lives longer than a day"), "{}", stderr(&out));
    let token = env.read_token();
    assert_eq!(token["family_started_at"], started);
    assert_eq!(token["token_url"], env.auth.token_url());
    let expires_at = token["expires_at"].as_i64().expect("expires_at");
    assert!(expires_at <= now() + 24 * 3600, "{expires_at}");
}

#[test]
fn escape_sequences_from_servers_never_reach_the_terminal() {
    let env = TestEnv::new();
    env.write_token(3600);
    env.auth.set_sites(
        json!([{"id": SITE_ID, "url": "https://example.atlassian.net\u{1b}]8;;https://evil/\u{7}",
                               "name": "\u{1b}[2J\u{1b}[31mHACKED", "scopes": ["read:jira-work\u{9b}1m"]}]),
    );
    let mut token = env.read_token();
    token["scope"] = json!("read:jira-work \u{1b}]0;pwned\u{7}");
    fs::write(env.token_file(), token.to_string()).expect("write");
    for args in [&["sites"][..], &["sites", "--json"], &["status"], &["status", "--json"]] {
        let out = env.run(args);
        assert_exit(&out, 0);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!text.chars().any(|c| c == '\u{1b}' || c == '\u{9b}' || c == '\u{7}'), "{args:?}: {text:?}");
    }
}

// --- 6. Redaction of every form of an echo ---

#[test]
fn echoed_secrets_in_lowercase_percent_json_and_html_forms_are_redacted() {
    let env = TestEnv::new();
    env.write_token(-10);
    env.write_env("ATL_CLIENT_SECRET=\"s/cr+t=1\"\n");
    env.auth.push_fault(Reply::Raw {
        status: 400,
        headers: vec![("Content-Type", "text/html".to_owned())],
        body: b"<p>client_secret=s%2fcr%2bt%3d1 or \"s\\/cr+t=1\" or s&#47;cr&#x2B;t&#61;1 or S/CR+T=1</p>"
            .to_vec(),
    });
    let out = env.run(&["refresh"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert_eq!(err.matches("(redacted)").count(), 4, "{err}");
    for echo in ["2fcr", "\\/cr", "&#47;", "CR+T", "cr+t"] {
        assert!(!err.contains(echo), "{echo}: {err}");
    }
}

#[test]
fn api_errors_do_not_show_a_token_in_the_url() {
    let env = cloud();
    env.auth.set_api(|_| Reply::Json(500, json!({"error": "boom"})));
    let out = env.run(&["api", "/rest/api/3/x?access_token=SEKRIT&jql=a"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("access_token=(redacted)&jql=a"), "{err}");
    assert!(!err.contains("SEKRIT"), "{err}");
}

// --- 7. Another user's rescue file ---

#[test]
#[ignore = "needs root: plants a file as another user; .ci/run runs it"]
fn another_users_rescue_file_in_a_sticky_folder_does_not_block_refresh() {
    require_root();
    let env = TestEnv::new();
    let shared = env.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    set_mode(&shared, 0o1777);
    env.write_env(&format!("ATL_TOKEN_FILE={}\n", shared.join("token.json").display()));
    let refresh = env.write_token_at(&shared.join("token.json"), -10);
    let planted = shared.join(format!("token.json.rescue-{}-1", now()));
    fs::write(
        &planted,
        json!({"access_token": "a", "refresh_token": "attacker", "obtained_at": now() + 999}).to_string(),
    )
    .expect("write");
    std::os::unix::fs::lchown(&planted, Some(OTHER_USER), None).expect("chown");

    let out = env.run(&["refresh", "-q"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains(&planted.display().to_string()), "{}", stderr(&out));
    assert_eq!(env.auth.token_calls()[0].param("refresh_token"), Some(refresh), "the real one was spent");
    assert!(planted.exists(), "left alone");
}

// --- 8. No proxy for any loopback destination ---

#[test]
fn a_loopback_api_is_never_reached_through_a_proxy_whatever_the_token_endpoint() {
    let env = TestEnv::new();
    env.write_token(3600);
    let mut token = env.read_token();
    token["cloud_site"] = json!(SITE_URL);
    token["cloud_id"] = json!(SITE_ID);
    fs::write(env.token_file(), token.to_string()).expect("write");
    env.write_env("ATL_TOKEN_URL=https://auth.example.invalid/oauth/token\n");
    env.auth.set_api(|_| Reply::Json(200, json!({"ok": true})));
    let proxy = Server::start(|_| Reply::Json(502, json!({"error": "proxied"})));
    let out = env
        .command(&["api", "/rest/api/3/myself"])
        .env("HTTP_PROXY", proxy.url(""))
        .env("http_proxy", proxy.url(""))
        .env("HTTPS_PROXY", proxy.url(""))
        .output()
        .expect("run");
    assert!(proxy.requests().is_empty(), "the proxy saw {:?}", proxy.requests());
    assert_exit(&out, 0);
    assert_eq!(env.auth.api_calls().len(), 1);
}

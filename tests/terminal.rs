//! atl-token in a real pseudo-terminal (rexpect): `init`'s questions and its unechoed secret,
//! the waiting line that only a terminal gets, and `login --paste` with a second try.
//!
//! rexpect turns echo off in the terminal it makes; each test runs atl-token through
//! `bash -c 'stty echo; ...'`, so the terminal echoes as a person's does, and what is not
//! shown is atl-token's doing.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;

const SECRET: &str = "Top-Secret-Value-42";

/// `script` (a shell line run after `stty echo`) in a terminal, in `dir`, with a clean
/// environment whose HOME is `dir`.
fn terminal(dir: &Path, script: &str) -> PtySession {
    let mut command = Command::new("bash");
    command
        .args(["-c", &format!("stty echo; {script}")])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("TERM", "xterm")
        .env("ATL", env!("CARGO_BIN_EXE_atl-token"))
        .current_dir(dir);
    rexpect::session::spawn_command(command, Some(20_000)).expect("spawn in a terminal")
}

fn exit_code(session: &PtySession) -> i32 {
    for _ in 0..200 {
        match session.process().status() {
            Some(WaitStatus::Exited(_, code)) => return code,
            Some(WaitStatus::StillAlive) | None => std::thread::sleep(Duration::from_millis(50)),
            Some(other) => panic!("ended by {other:?}"),
        }
    }
    panic!("still running")
}

/// Pastes where the browser goes after consent for the login that printed `url` (the
/// redirect to `port`, with its state and a code), and waits for the login to succeed.
fn paste_the_redirect(t: &mut PtySession, url: &str, port: u16) {
    let url = url::Url::parse(url).expect("URL");
    t.send_line(&redirect_address(port, &state_of(&url))).expect("paste");
    t.exp_string("Logged in.").expect("signed in");
    t.exp_eof().expect("ends");
    assert_eq!(exit_code(t), 0);
}

#[test]
fn init_asks_on_a_terminal_and_never_echoes_the_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = terminal(dir.path(), "\"$ATL\" init --profile sandbox");
    t.exp_string("Choose 1, 2 or 3 [1]:").expect("provider question");
    t.send_line("").expect("answer");
    t.exp_string("Choose 1 or 2 [1]:").expect("grant question");
    t.send_line("").expect("a person signs in");
    t.exp_string("Client ID:").expect("client id question");
    t.send_line("my-client-id").expect("answer");
    let before = t.exp_string("Client secret (not shown as you type):").expect("secret question");
    assert!(before.contains("my-client-id"), "the terminal echoes what is typed: {before}");
    t.send_line(SECRET).expect("answer");
    let after = t.exp_string("Site, e.g.").expect("site question");
    assert!(!after.contains(SECRET), "the secret is not echoed: {after:?}");
    t.send_line("https://your-team.atlassian.net").expect("answer");
    t.exp_string("Scopes [read:jira-work read:jira-user]:").expect("scope question");
    t.send_line("").expect("default scopes");
    let rest = t.exp_eof().expect("init ends");
    assert!(!rest.contains(SECRET), "{rest}");
    assert!(rest.contains("http://localhost:8014"), "the callback URL to register: {rest}");
    assert!(rest.contains("atl-token --profile sandbox login"), "the next command: {rest}");
    assert_eq!(exit_code(&t), 0);

    let env_file = dir.path().join(".config/atl-token/sandbox/.env");
    assert_eq!(mode_of(&env_file), 0o600);
    let text = std::fs::read_to_string(&env_file).expect("read");
    for line in [
        "ATL_CLIENT_ID=my-client-id",
        &format!("ATL_CLIENT_SECRET={SECRET}"),
        "ATL_SITE=https://your-team.atlassian.net",
        "ATL_SCOPE='read:jira-work read:jira-user'",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
}

#[test]
fn ctrl_c_at_the_secret_question_writes_nothing_and_gives_the_echo_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "\"$ATL\" init --provider cloud --grant authorization-code --client-id x; echo \"EXIT:$?\"; \
                  stty -a | tr ' ;' '\\n\\n' | grep -x -e echo -e -echo | sed 's/^/STATE:/'";
    let mut t = terminal(dir.path(), script);
    t.exp_string("Client secret (not shown as you type):").expect("secret question");
    t.send_control('c').expect("Ctrl-C");
    t.exp_string("EXIT:130").expect("exit 130");
    t.exp_string("STATE:echo").expect("echo is on again");
    assert!(!dir.path().join(".config/atl-token/.env").exists(), "nothing written");
}

#[test]
fn the_waiting_line_shows_on_a_terminal_and_not_in_a_pipe() {
    let env = TestEnv::new();
    let port = free_port();
    env.write_env(&format!("ATL_REDIRECT_URI=http://127.0.0.1:{port}/callback\n"));
    let script =
        format!("\"$ATL\" --env-file {} login --no-browser --timeout 2m", env.path(".env").display());
    let mut t = terminal(env.dir.path(), &script);
    let (_, url) = t.exp_regex(r"http://127\.0\.0\.1:\d+/authorize\S+").expect("the URL");
    let (_, line) =
        t.exp_regex(r"\| Waiting for the browser: 1m \d+s left \(Ctrl-C to stop\)").expect("spinner");
    assert!(line.contains("left"), "{line}");
    t.exp_string("/ Waiting for the browser").expect("the spinner turns");
    let url = url::Url::parse(&url).expect("URL");
    let state = state_of(&url);
    let page =
        browser_get(port, &format!("127.0.0.1:{port}"), &format!("/callback?code={CODE}&state={state}"));
    assert_eq!(status_of(&page), 200, "{page}");
    let rest = t.exp_eof().expect("login ends");
    assert!(rest.contains("\x1b[2K"), "the line is cleared: {rest:?}");
    assert!(rest.contains("Logged in."), "{rest}");
    assert_eq!(exit_code(&t), 0);

    // The same login with stderr in a pipe: no waiting line, no escape sequence.
    let env = TestEnv::new();
    let login = Login::start(&env, &[]);
    std::thread::sleep(Duration::from_millis(600));
    let state = login.param("state");
    assert_eq!(status_of(&login.callback(&format!("code={CODE}&state={state}"))), 200);
    let (status, _, stderr) = login.finish();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains('\x1b') && !stderr.contains("left (Ctrl-C"), "{stderr:?}");
}

#[test]
fn a_wrong_paste_on_a_terminal_can_be_tried_again() {
    let env = TestEnv::new();
    let port = free_port();
    env.write_env(&format!("ATL_REDIRECT_URI=http://127.0.0.1:{port}/callback\n"));
    let script = format!("\"$ATL\" --env-file {} login --paste", env.path(".env").display());
    let mut t = terminal(env.dir.path(), &script);
    let (_, url) = t.exp_regex(r"http://127\.0\.0\.1:\d+/authorize\S+").expect("the URL");
    t.exp_string("paste it here and press Enter:").expect("the question");
    t.send_line("not a URL").expect("paste");
    t.exp_string("that is not a URL").expect("explained");
    t.exp_string("Try again:").expect("another go");
    paste_the_redirect(&mut t, &url, port);
    assert_eq!(env.read_token()["refresh_token"], "rt-1");
}

#[test]
fn a_port_in_use_on_a_terminal_offers_the_paste_instead() {
    let env = TestEnv::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    env.write_env(&format!("ATL_REDIRECT_URI=http://127.0.0.1:{port}/callback\n"));
    let script = format!("\"$ATL\" --env-file {} login --no-browser", env.path(".env").display());
    let mut t = terminal(env.dir.path(), &script);
    t.exp_string(&format!("port {port} on 127.0.0.1 is in use by another program")).expect("why");
    t.exp_string("Carrying on without the listener: paste the address instead.").expect("the offer");
    let (_, url) = t.exp_regex(r"http://127\.0\.0\.1:\d+/authorize\S+").expect("the URL");
    t.exp_string("paste it here and press Enter:").expect("the question");
    paste_the_redirect(&mut t, &url, port);
}

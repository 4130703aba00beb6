//! `atl-token refresh`: rotation, every server fault, concurrency and crashes.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn refresh_rotates_and_keeps_the_family_start() {
    let env = TestEnv::new();
    let old = env.write_token(3600);
    let before = env.read_token();

    let output = env.run(&["refresh"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "");
    assert!(stderr(&output).contains("access token valid for "), "{}", stderr(&output));

    let token = env.read_token();
    assert_ne!(token["refresh_token"], old);
    assert!(env.auth.is_live(token["refresh_token"].as_str().expect("rt")));
    assert!(!env.auth.is_live(&old));
    assert_eq!(token["family_started_at"], before["family_started_at"]);
    assert_eq!(mode_of(&env.token_file()), 0o600);
    let call = &env.auth.token_calls()[0];
    assert_eq!(call.param("grant_type").as_deref(), Some("refresh_token"));
    assert_eq!(call.param("refresh_token"), Some(old));
    assert_eq!(call.param("client_secret").as_deref(), Some(CLIENT_SECRET));
}

#[test]
fn quiet_refresh_prints_nothing() {
    let env = TestEnv::new();
    env.write_token(3600);
    let output = env.run(&["refresh", "-q"]);
    assert_exit(&output, 0);
    assert!(output.stdout.is_empty() && output.stderr.is_empty(), "{}", stderr(&output));
}

#[test]
fn form_bodies_are_sent_when_configured() {
    let env = TestEnv::new();
    env.write_env("ATL_TOKEN_BODY=form\n");
    let old = env.write_token(3600);
    assert_exit(&env.run(&["refresh", "-q"]), 0);
    let call = &env.auth.token_calls()[0];
    assert_eq!(call.content_type, "application/x-www-form-urlencoded");
    assert_eq!(call.param("refresh_token"), Some(old));
}

#[test]
fn if_needed_skips_the_network_while_the_token_is_valid() {
    let env = TestEnv::new();
    env.write_token(600);
    let output = env.run(&["refresh", "--if-needed"]);
    assert_exit(&output, 0);
    assert!(stderr(&output).contains("not refreshed"), "{}", stderr(&output));
    assert!(env.auth.token_calls().is_empty());

    let output = env.run(&["refresh", "--if-needed", "--min-valid", "11m", "-q"]);
    assert_exit(&output, 0);
    assert_eq!(env.auth.token_calls().len(), 1, "10 minutes left is less than 11m");
}

#[test]
fn an_answer_without_refresh_token_keeps_the_old_one() {
    let env = TestEnv::new();
    let old = env.write_token(-10);
    env.auth.push_fault(Reply::Json(200, json!({"access_token": "at-new", "expires_in": 60})));
    assert_exit(&env.run(&["refresh", "-q"]), 0);
    let token = env.read_token();
    assert_eq!(token["access_token"], "at-new");
    assert_eq!(token["refresh_token"], old);
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let env = TestEnv::new();
    env.write_token(-10);
    env.auth.push_fault(Reply::Json(500, json!({"error": "server_error"})));
    env.auth.push_fault(Reply::Raw {
        status: 503,
        headers: vec![("Retry-After", "1".into())],
        body: b"Service Unavailable".to_vec(),
    });
    let output = env.run(&["refresh", "-q"]);
    assert_exit(&output, 0);
    assert_eq!(env.auth.token_calls().len(), 3);
    assert!(env.auth.is_live(env.read_token()["refresh_token"].as_str().expect("rt")));
}

/// Runs a refresh against a failing server and checks the file was not touched.
fn assert_failure_leaves_file(env: &TestEnv, code: i32) -> String {
    let before = std::fs::read(env.token_file()).expect("token file");
    let output = env.run(&["refresh"]);
    assert_exit(&output, code);
    assert_eq!(std::fs::read(env.token_file()).expect("token file"), before, "file untouched");
    let names: Vec<_> = std::fs::read_dir(env.dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(names.is_empty(), "no temp file left: {names:?}");
    stderr(&output)
}

#[test]
fn a_rejected_refresh_token_asks_for_login_and_keeps_the_file() {
    let env = TestEnv::new();
    env.write_token(-10);
    env.auth.push_fault(Reply::Json(
        403,
        json!({"error": "unauthorized_client", "error_description": "refresh_token is invalid"}),
    ));
    let err = assert_failure_leaves_file(&env, 4);
    assert!(err.contains("HTTP 403 unauthorized_client: refresh_token is invalid"), "{err}");
    assert!(err.contains("run `atl-token login`"), "{err}");
    assert_eq!(env.auth.token_calls().len(), 1, "4xx is not retried");

    env.auth.push_fault(Reply::Json(400, json!({"error": "invalid_grant"})));
    assert_failure_leaves_file(&env, 4);
}

#[test]
fn an_html_502_is_reported_with_status_and_excerpt() {
    let env = TestEnv::new();
    env.write_token(-10);
    for _ in 0..4 {
        env.auth.push_fault(Reply::Raw {
            status: 502,
            headers: vec![("Content-Type", "text/html".into())],
            body: b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>".to_vec(),
        });
    }
    let err = assert_failure_leaves_file(&env, 1);
    assert!(err.contains("HTTP 502"), "{err}");
    assert!(err.contains("502 Bad Gateway"), "{err}");
    assert!(err.contains("the token file was not changed"), "{err}");
    assert_eq!(env.auth.token_calls().len(), 4, "retried, then gave up");
}

#[test]
fn a_truncated_answer_never_reaches_the_file() {
    let env = TestEnv::new();
    env.write_token(-10);
    // A complete HTTP answer whose JSON stops short.
    env.auth.push_fault(Reply::Raw {
        status: 200,
        headers: vec![("Content-Type", "application/json".into())],
        body: br#"{"access_token": "at-x", "refresh_tok"#.to_vec(),
    });
    let err = assert_failure_leaves_file(&env, 1);
    assert!(err.contains("cut off"), "{err}");
    assert!(!err.contains("at-x"), "a success body is never quoted: {err}");

    // A connection that closes mid-body is transient: retried, then it works.
    env.auth.push_fault(Reply::Truncated {
        status: 200,
        body: br#"{"access_token": "#.to_vec(),
        declared: 200,
    });
    let output = env.run(&["refresh", "-q"]);
    assert_exit(&output, 0);
    assert!(env.auth.is_live(env.read_token()["refresh_token"].as_str().expect("rt")));
}

#[test]
fn a_server_that_never_answers_times_out() {
    let env = TestEnv::new();
    env.write_env("ATL_HTTP_TIMEOUT=1\n");
    env.write_token(-10);
    for _ in 0..4 {
        env.auth.push_fault(Reply::Hang(Duration::from_secs(30)));
    }
    let err = assert_failure_leaves_file(&env, 1);
    assert!(err.contains("timed out"), "{err}");
}

#[test]
fn wrong_client_credentials_are_named() {
    let env = TestEnv::new();
    env.write_env("ATL_CLIENT_SECRET=not-the-secret\n");
    env.write_token(-10);
    let err = assert_failure_leaves_file(&env, 1);
    assert!(err.contains("client credentials rejected"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
}

#[test]
fn no_token_file_asks_for_login() {
    let env = TestEnv::new();
    let output = env.run(&["refresh"]);
    assert_exit(&output, 4);
    assert!(stderr(&output).contains("run `atl-token login` first"));
    let calls = env.auth.token_calls();
    assert!(calls.is_empty());
}

#[test]
fn an_error_body_saved_by_the_seed_script_asks_for_login() {
    let env = TestEnv::new();
    std::fs::write(env.token_file(), "{\n  \"error\": \"invalid_grant\"\n}\n").expect("write");
    let output = env.run(&["refresh"]);
    assert_exit(&output, 4);
    assert!(stderr(&output).contains("holds no refresh token"), "{}", stderr(&output));
}

#[test]
fn twenty_concurrent_refreshes_all_succeed_and_leave_the_live_token() {
    let env = TestEnv::new();
    env.write_token(-10);
    let children: Vec<_> = (0..20).map(|_| env.spawn(&["refresh", "-q"])).collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert_exit(&output, 0);
    }
    let calls = env.auth.token_calls();
    assert_eq!(calls.len(), 20);
    assert!(calls.iter().all(|c| c.param("refresh_token").is_some_and(|rt| rt.starts_with("rt-"))));
    let live = env.read_token()["refresh_token"].as_str().expect("rt").to_owned();
    assert_eq!(live, "rt-21", "the 20th rotation is in the file");
    assert!(env.auth.is_live(&live));
}

#[test]
fn sigkill_mid_refresh_leaves_a_valid_file() {
    let env = TestEnv::new();
    let old = env.write_token(-10);
    env.auth.set_delay(Duration::from_secs(3));
    let mut child = env.spawn(&["refresh"]);
    wait_for("the refresh request", Duration::from_secs(10), || !env.auth.token_calls().is_empty());
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    assert_eq!(env.read_token()["refresh_token"], old, "the old file is intact");
    // The server rotated after the kill; this fixture has no reuse window, so the next
    // refresh is told to log in, and the file is still left as it was.
    std::thread::sleep(Duration::from_secs(3));
    env.auth.set_delay(Duration::ZERO);
    let output = env.run(&["refresh"]);
    assert_exit(&output, 4);
    assert_eq!(env.read_token()["refresh_token"], old);
}

#[test]
fn seed_script_files_work_unchanged() {
    let env = TestEnv::new();
    let (_, refresh) = env.auth.issue();
    let seed_env = format!(
        "JIRA_CLIENT_ID=\"{CLIENT_ID}\"\r\nJIRA_CLIENT_SECRET=\"{CLIENT_SECRET}\"\r\n\
         JIRA_DOMAIN=\"https://my-url.atlassian.net\"\r\n\
         JIRA_SCOPE=\"offline_access offline_access read:jira-work\"\r\nREFRESH_PORT=8014\r\n\
         TOKEN_FILE_NAME=\"seed-token.json\"\r\nATL_TOKEN_URL={}\r\n",
        env.auth.token_url()
    );
    std::fs::write(env.path(".env"), seed_env).expect("write .env");
    let seed_token = format!(
        "{{\n  \"access_token\": \"at-old\",\n  \"expires_in\": 3600,\n  \"token_type\": \"Bearer\",\n  \
         \"refresh_token\": \"{refresh}\",\n  \"scope\": \"offline_access read:jira-work\"\n}}\n"
    );
    std::fs::write(env.path("seed-token.json"), seed_token).expect("write token");

    // The file was just written, so its access token counts as valid for another hour.
    let output = env.run(&["print"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "at-old\n");
    assert!(env.auth.token_calls().is_empty());

    let output = env.run(&["refresh", "-q"]);
    assert_exit(&output, 0);
    let bytes = std::fs::read(env.path("seed-token.json")).expect("read");
    let token: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(token["refresh_token"], "rt-2");
    assert_eq!(token["token_type"], "Bearer", "the seed's fields stay at the top level");
    assert!(token["expires_at"].is_i64());
}

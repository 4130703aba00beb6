//! Data Center: the real binary against the test server in Data Center mode, which reads
//! form bodies only, binds codes to a PKCE S256 challenge and lets them live 10 seconds,
//! deletes a rotated pair at once, and revokes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

fn datacenter() -> TestEnv {
    TestEnv::with(AuthServer::datacenter())
}

#[test]
fn login_refresh_print_and_logout_against_a_strict_datacenter_server() {
    let env = datacenter();
    let login = Login::start(&env, &[]);
    assert!(
        login.url.as_str().starts_with(&format!("{}/rest/oauth2/latest/authorize?", env.auth.base_url()))
    );
    assert!(login.stderr.all().contains("note: signing in to Data Center at"), "{}", login.stderr.all());
    let page = login.consent();
    assert_eq!(status_of(&page), 200, "{page}");
    let (status, _, err) = login.finish();
    assert!(status.success(), "{err}");

    // The code went in a form, with a verifier the server checked against the challenge.
    let exchange = &env.auth.token_calls()[0];
    assert_eq!(exchange.content_type, "application/x-www-form-urlencoded");
    assert_eq!(exchange.param("grant_type").as_deref(), Some("authorization_code"));
    assert_eq!(exchange.param("code_verifier").map(|v| v.len()), Some(64));
    let first = env.read_token()["refresh_token"].as_str().expect("refresh token").to_owned();
    assert!(env.auth.is_live(&first));

    assert_exit(&env.run(&["refresh", "-q"]), 0);
    let second = env.read_token()["refresh_token"].as_str().expect("refresh token").to_owned();
    assert!(env.auth.is_live(&second) && !env.auth.is_live(&first), "rotated, the old pair deleted");
    let refresh = &env.auth.token_calls()[1];
    assert_eq!(refresh.param("redirect_uri"), exchange.param("redirect_uri"), "Data Center wants it again");

    let printed = env.run(&["print", "--access"]);
    assert_exit(&printed, 0);
    assert_eq!(stdout(&printed), format!("{}\n", env.read_token()["access_token"].as_str().expect("access")));
    let base = env.run(&["print", "--api-base"]);
    assert_exit(&base, 0);
    assert_eq!(stdout(&base), format!("{}\n", env.auth.base_url().trim_end_matches('/')));

    let logout = env.run(&["logout"]);
    assert_exit(&logout, 0);
    assert_eq!(env.auth.revoked(), vec![second.clone()]);
    let revoke = &env.auth.revoke_calls()[0];
    assert_eq!(revoke.param("token_type_hint").as_deref(), Some("refresh_token"));
    assert!(!env.auth.is_live(&second));
    assert!(!env.token_file().exists());
    assert!(stderr(&logout).contains("revoked the refresh token"), "{}", stderr(&logout));
}

#[test]
fn a_code_that_outlived_its_ten_seconds_fails_the_login_with_a_reason() {
    let env = datacenter();
    env.auth.set_code_ttl(Duration::ZERO);
    let login = Login::start(&env, &[]);
    let page = login.consent();
    assert_eq!(status_of(&page), 400, "{page}");
    let (status, _, stderr) = login.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Authorization code expired"), "{stderr}");
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(!env.token_file().exists());
}

#[test]
fn a_json_body_gets_no_token_from_datacenter_and_the_file_is_kept() {
    let env = datacenter();
    env.write_env("ATL_TOKEN_BODY=json\n");
    let refresh_token = env.write_token(-5);
    let before = std::fs::read(env.token_file()).expect("token file");
    let output = env.run(&["refresh"]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("invalid_request"), "{}", stderr(&output));
    assert_eq!(std::fs::read(env.token_file()).expect("token file"), before);
    assert!(env.auth.is_live(&refresh_token), "nothing was spent");
}

#[test]
fn a_lost_answer_is_not_resent_on_datacenter() {
    let env = datacenter();
    let refresh_token = env.write_token(-5);
    let before = std::fs::read(env.token_file()).expect("token file");
    env.auth.lose_answers(1);
    let output = env.run(&["refresh"]);
    assert_exit(&output, 1);
    assert_eq!(env.auth.token_calls().len(), 1, "exactly one request reached the server");
    let err = stderr(&output);
    assert!(err.contains("may have rotated"), "{err}");
    assert!(err.contains("atl-token login"), "{err}");
    assert_eq!(std::fs::read(env.token_file()).expect("token file"), before, "the file is kept");
    assert!(!env.auth.is_live(&refresh_token), "the server did rotate: this family is lost");
}

#[test]
fn the_same_lost_answer_is_resent_on_cloud_and_succeeds_within_the_reuse_window() {
    let env = TestEnv::new();
    env.auth.set_reuse_window(Duration::from_secs(600));
    env.write_token(-5);
    env.auth.lose_answers(1);
    let output = env.run(&["refresh", "-q"]);
    assert_exit(&output, 0);
    assert_eq!(env.auth.token_calls().len(), 2, "sent again after the lost answer");
    let live = env.read_token()["refresh_token"].as_str().expect("refresh token").to_owned();
    assert!(env.auth.is_live(&live));
}

#[test]
fn datacenter_resends_only_what_the_server_turned_away() {
    for (fault, resent) in [
        (Reply::Json(503, serde_json::json!({"error": "temporarily_unavailable"})), true),
        (Reply::Raw { status: 429, headers: vec![("Retry-After", "0".into())], body: vec![] }, true),
        (Reply::Json(500, serde_json::json!({"error": "server_error"})), false),
        (Reply::Raw { status: 502, headers: vec![], body: b"Bad Gateway".to_vec() }, false),
        (Reply::Hang(Duration::from_secs(4)), false),
    ] {
        let env = datacenter();
        let refresh_token = env.write_token(-5);
        env.auth.push_fault(fault.clone());
        let output = env.run(&["refresh", "-q"]);
        let calls = env.auth.token_calls().len();
        if resent {
            assert_exit(&output, 0);
            assert_eq!(calls, 2, "{fault:?}");
        } else {
            assert_exit(&output, 1);
            assert_eq!(calls, 1, "{fault:?} was sent again");
            assert!(stderr(&output).contains("may have rotated"), "{}", stderr(&output));
            assert!(env.auth.is_live(&refresh_token), "the fault came before the server spent it");
        }
    }
}

#[test]
fn a_refused_connection_is_resent_on_datacenter() {
    // A port where nothing listens: no request can reach a server.
    let env = datacenter();
    env.write_env(&format!("ATL_TOKEN_URL=http://127.0.0.1:{CLOSED_PORT}/rest/oauth2/latest/token\n"));
    env.write_token(-5);
    let output = env.run(&["refresh"]);
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert!(err.contains("also after retrying"), "a connect failure is retried: {err}");
    assert!(!err.contains("may have rotated"), "{err}");
}

#[test]
fn twenty_concurrent_refreshes_and_prints_keep_the_strict_family_alive() {
    let env = datacenter();
    env.write_token(-5);
    env.auth.set_jitter(Duration::from_millis(50));
    let children: Vec<_> =
        (0..20).flat_map(|_| [env.spawn(&["refresh", "-q"]), env.spawn(&["print", "--access"])]).collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
    for output in &outputs {
        assert_exit(output, 0);
    }
    let printed: HashSet<String> = outputs.iter().map(stdout).filter(|s| !s.is_empty()).collect();
    assert!(!printed.is_empty() && printed.iter().all(|t| t.starts_with("at-")), "{printed:?}");
    let calls = env.auth.token_calls();
    assert!((20..=21).contains(&calls.len()), "20 refreshes and at most one print refresh: {}", calls.len());
    let sent: HashSet<String> = calls.iter().filter_map(|c| c.param("refresh_token")).collect();
    assert_eq!(sent.len(), calls.len(), "no refresh token was sent twice");
    let live = env.read_token()["refresh_token"].as_str().expect("refresh token").to_owned();
    assert!(env.auth.is_live(&live), "the file holds the live token");
}

#[test]
fn a_failed_revoke_keeps_the_file_unless_forced() {
    let env = datacenter();
    let refresh_token = env.write_token(3600);
    env.auth.push_fault(Reply::Json(401, serde_json::json!({"error": "invalid_client"})));
    let output = env.run(&["logout"]);
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert!(err.contains("could not revoke") && err.contains("was kept"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(env.token_file().exists());

    env.auth.push_fault(Reply::Json(401, serde_json::json!({"error": "invalid_client"})));
    let output = env.run(&["logout", "--force"]);
    assert_exit(&output, 0);
    assert!(stderr(&output).contains("deleting"), "{}", stderr(&output));
    assert!(!env.token_file().exists());
    assert!(env.auth.is_live(&refresh_token), "not revoked: the warning said so");
}

#[test]
fn cloud_logout_deletes_the_file_and_says_where_to_remove_access() {
    let env = TestEnv::new();
    env.write_token(3600);
    std::fs::write(env.path("token.json.rescue-1-1"), "{}").expect("rescue file");
    let output = env.run(&["logout"]);
    assert_exit(&output, 0);
    assert!(!env.token_file().exists());
    assert!(!env.path("token.json.rescue-1-1").exists(), "no copy of the family is left");
    assert!(stderr(&output).contains("https://id.atlassian.com/manage-profile/apps"), "{}", stderr(&output));
    assert!(env.auth.server.requests().is_empty(), "Cloud has nothing to revoke");
    let again = env.run(&["logout"]);
    assert_exit(&again, 0);
    assert!(stderr(&again).contains("nothing to log out"), "{}", stderr(&again));
}

/// Data Center's scopes are a ladder, and its provider may take `READ WRITE` as one unknown
/// scope: login warns before the browser, naming the single highest, and a consent refused
/// for the scope says the same.
#[test]
fn more_than_one_scope_is_warned_about_with_the_highest_named() {
    let env = datacenter();
    let login = Login::start_with(&env, "ATL_SCOPE=\"READ WRITE\"\n", &[]);
    let warning = login.stderr.wait_line(|l| l.contains("warning:"));
    assert!(warning.contains("ladder") && warning.contains("ATL_SCOPE=WRITE"), "{warning}");
    let page = login.consent();
    assert_eq!(status_of(&page), 400, "{page}");
    let (status, _, err) = login.finish();
    assert!(!status.success());
    let last = err.lines().last().unwrap_or_default().to_owned();
    assert!(last.contains("invalid_scope") && last.contains("ATL_SCOPE=WRITE"), "{err}");
}

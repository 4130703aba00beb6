//! `atl-token status`: health from token files with chosen timestamps (no sleeping), as text,
//! as JSON, and as `--check` exit codes. No network.

mod common;

use common::*;
use serde_json::{Value, json};

const DAY: i64 = 24 * 3600;

/// A token file whose refresh token was issued `used_days_ago` and whose family started
/// `family_days_ago` (each half a day less, so that whole days left do not depend on the
/// second the binary reads the clock), granted `scope`.
fn write(env: &TestEnv, used_days_ago: i64, family_days_ago: i64, scope: &str) {
    let now = now() + DAY / 2;
    let token = json!({"access_token": "at-x", "refresh_token": "rt-x", "expires_in": 3600,
                       "expires_at": now + 1800, "obtained_at": now - used_days_ago * DAY,
                       "family_started_at": now - family_days_ago * DAY, "scope": scope});
    std::fs::write(env.token_file(), token.to_string()).expect("write token");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.token_file(), std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn check(env: &TestEnv, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["status", "--check"];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    let line = stdout(&out);
    assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    (out.status.code().expect("exit code"), line)
}

#[test]
fn check_exit_codes_follow_the_limits_ahead() {
    let env = TestEnv::new();
    write(&env, 1, 10, "read:jira-work offline_access");
    let (code, line) = check(&env, &[]);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("OK: the refresh token expires unused in 89 days; the family ends in 355 days"),
        "{line}"
    );

    write(&env, 70, 100, "read:jira-work");
    let (code, line) = check(&env, &[]);
    assert_eq!(code, 3, "{line}");
    assert!(line.starts_with("WARNING: the refresh token expires unused in 20 days"), "{line}");
    assert!(line.contains("atl-token refresh"), "{line}");
    assert_eq!(check(&env, &["--warn-days", "10"]).0, 0);

    write(&env, 1, 350, "read:jira-work");
    let (code, line) = check(&env, &[]);
    assert_eq!(code, 3, "{line}");
    assert!(line.contains("365-day limit in 15 days") && line.contains("atl-token login"), "{line}");

    write(&env, 91, 100, "read:jira-work");
    let (code, line) = check(&env, &[]);
    assert_eq!(code, 4, "{line}");
    assert!(line.starts_with("LOGIN REQUIRED: the refresh token has expired"), "{line}");

    std::fs::remove_file(env.token_file()).expect("rm");
    let (code, line) = check(&env, &[]);
    assert_eq!(code, 4, "{line}");
    assert!(line.contains("no token in"), "{line}");
    assert!(env.auth.server.requests().is_empty(), "status reads the file only");
}

#[test]
fn datacenter_has_no_family_limit() {
    let env = TestEnv::with(AuthServer::datacenter());
    write(&env, 1, 400, "READ");
    let (code, line) = check(&env, &[]);
    assert_eq!(code, 0, "{line}");
    let json: Value = serde_json::from_str(&stdout(&env.run(&["status", "--json"]))).expect("JSON");
    assert_eq!(json["provider"], "datacenter");
    assert_eq!(json["family"]["ends_at"], Value::Null);
    assert_eq!(json["base_url"], env.auth.base_url());
}

#[test]
fn json_has_a_stable_versioned_shape_with_utc_times() {
    let env = TestEnv::new();
    env.write_env("ATL_SCOPE=\"read:jira-work write:jira-work\"\n");
    write(&env, 2, 30, "read:jira-work offline_access");
    let out = env.run(&["status", "--json"]);
    assert_exit(&out, 0);
    let json: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(json["version"], 1);
    assert_eq!(json["provider"], "cloud");
    assert_eq!(json["token_file"]["mode"], "0600");
    assert_eq!(json["token_file"]["path"], env.token_file().display().to_string());
    assert_eq!(json["scopes"]["not_granted"], json!(["write:jira-work"]));
    assert_eq!(json["scopes"]["granted"], json!(["read:jira-work", "offline_access"]));
    assert_eq!(json["access_token"]["valid"], true);
    assert_eq!(json["refresh_token"]["present"], true);
    let issued = json["refresh_token"]["issued_at"]["unix"].as_i64().expect("unix");
    assert_eq!(json["refresh_token"]["expires_at"]["unix"].as_i64(), Some(issued + 90 * DAY));
    let started = json["family"]["started_at"]["unix"].as_i64().expect("unix");
    assert_eq!(json["family"]["ends_at"]["unix"].as_i64(), Some(started + 365 * DAY));
    for time in
        [&json["access_token"]["expires_at"], &json["refresh_token"]["issued_at"], &json["family"]["ends_at"]]
    {
        let utc = time["utc"].as_str().expect("utc");
        let ok = utc.len() == 20 && utc.ends_with('Z') && utc.as_bytes()[10] == b'T';
        assert!(ok, "RFC 3339 UTC: {utc}");
        let unix = time["unix"].as_i64().expect("unix");
        let date = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{unix}"), "+%FT%TZ"])
            .output()
            .expect("date");
        assert_eq!(stdout(&date).trim(), utc, "agrees with date(1)");
    }
    assert_eq!(json["check"]["status"], "healthy");
    assert_eq!(json["site"], Value::Null);
}

#[test]
fn the_text_flags_a_configured_scope_that_was_not_granted() {
    let env = TestEnv::new();
    env.write_env("ATL_SCOPE=\"read:jira-work write:jira-work\"\n");
    write(&env, 2, 30, "read:jira-work offline_access");
    let out = env.run(&["status"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("NOT GRANTED though configured: write:jira-work"), "{text}");
    assert!(text.contains("provider       Atlassian Cloud"), "{text}");
    assert!(text.contains("(mode 0600)"), "{text}");
    assert!(text.contains("ends in 335 days"), "{text}");
}

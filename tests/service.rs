//! Service accounts: `ATL_GRANT=client_credentials` on Cloud and Data Center, against the
//! test authorization server. There is no login and no refresh token: each access token is
//! fetched with the client's credentials, under the same lock as a refresh.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{
    AuthServer, CLIENT_SECRET, Reply, SITE_ID, TENANT_INFO_PATH, TestEnv, assert_exit, mode_of, stderr,
    stdout,
};
use serde_json::json;

/// A Cloud service account: no scopes asked for, `ATL_SITE` the test server.
fn cloud() -> TestEnv {
    let env = TestEnv::new();
    env.write_env(&format!("ATL_GRANT=client_credentials\nATL_SITE={}\n", env.auth.server.url("")));
    env
}

fn datacenter() -> TestEnv {
    let env = TestEnv::with(AuthServer::datacenter());
    env.write_env("ATL_GRANT=client_credentials\n");
    env
}

#[test]
fn print_fetches_a_token_with_the_client_credentials_and_keeps_it() {
    let env = cloud();
    let output = env.run(&["print"]);
    assert_exit(&output, 0);
    let token = stdout(&output).trim().to_owned();
    assert!(env.auth.access_valid_at(&token, Instant::now()), "{token}");
    let calls = env.auth.token_calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].content_type.starts_with("application/json"), "Cloud takes JSON");
    assert_eq!(calls[0].param("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(calls[0].param("client_secret").as_deref(), Some(CLIENT_SECRET));
    assert_eq!(calls[0].param("scope").as_deref(), Some("read:jira-work"), "ATL_SCOPE, no offline_access");

    let file = env.read_token();
    assert_eq!(file["grant"], "client_credentials");
    assert!(file.get("refresh_token").is_none(), "{file}");
    assert!(file.get("family_started_at").is_none(), "a service account has no family: {file}");
    assert_eq!(mode_of(&env.token_file()), 0o600);

    // Fresh: the next print is the file's, with no request.
    let again = env.run(&["print"]);
    assert_eq!(stdout(&again).trim(), token);
    assert_eq!(env.auth.token_calls().len(), 1);
}

#[test]
fn data_center_gets_a_form_with_the_scopes() {
    let env = datacenter();
    let output = env.run(&["print", "--header"]);
    assert_exit(&output, 0);
    assert!(stdout(&output).starts_with("Authorization: Bearer at-"), "{}", stdout(&output));
    let calls = env.auth.token_calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].content_type.starts_with("application/x-www-form-urlencoded"));
    assert_eq!(calls[0].param("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(calls[0].param("scope").as_deref(), Some("READ"));
    assert_eq!(calls[0].param("redirect_uri"), None);
}

/// 200 scripts start at once on an expired token: one token request between them.
#[test]
fn two_hundred_prints_on_an_expired_token_make_one_request() {
    let env = cloud();
    env.auth.set_access_ttl(2);
    assert_exit(&env.run(&["print", "--min-valid", "1s"]), 0);
    std::thread::sleep(Duration::from_millis(2100));
    env.auth.set_access_ttl(3600);
    let before = env.auth.token_calls().len();
    let children: Vec<Child> = (0..200)
        .map(|_| {
            env.command(&["print", "--min-valid", "1s"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut printed = Vec::new();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert_exit(&output, 0);
        printed.push(stdout(&output).trim().to_owned());
    }
    assert_eq!(env.auth.token_calls().len() - before, 1, "one fetch for 200 prints");
    printed.dedup();
    assert_eq!(printed.len(), 1, "every print got the one new token: {printed:?}");
}

#[test]
fn a_deleted_or_broken_token_file_is_fetched_again() {
    let env = cloud();
    assert_exit(&env.run(&["print"]), 0);
    std::fs::remove_file(env.token_file()).expect("rm");
    let output = env.run(&["print"]);
    assert_exit(&output, 0);
    assert_eq!(env.auth.token_calls().len(), 2);

    std::fs::write(env.token_file(), "<html>502 Bad Gateway</html>").expect("write");
    common::set_mode(&env.token_file(), 0o600);
    let output = env.run(&["print"]);
    assert_exit(&output, 0);
    assert!(stderr(&output).contains("token.json.unreadable"), "{}", stderr(&output));
    assert_eq!(env.read_token()["grant"], "client_credentials");
    let aside = std::fs::read_to_string(env.path("token.json.unreadable")).expect("kept aside");
    assert!(aside.contains("502 Bad Gateway"));
}

#[test]
fn a_rejected_credential_is_exit_4_and_the_secret_is_never_shown() {
    let env = TestEnv::new();
    let wrong = "wrong-secret-9f8e7d";
    env.write_env(&format!(
        "ATL_GRANT=client_credentials\nATL_SITE={}\nATL_CLIENT_SECRET={wrong}\n",
        env.auth.server.url("")
    ));
    for args in [&["print"][..], &["-v", "print"][..], &["-v", "status", "--online"][..]] {
        let output = env.run(args);
        assert_exit(&output, 4);
        let message = stderr(&output);
        assert!(message.contains("rejected the service account's credentials"), "{message}");
        assert!(message.contains("invalid_client"), "{message}");
        assert!(message.contains("admin.atlassian.com"), "where to check it: {message}");
        assert!(!message.contains(wrong), "the client secret leaked: {message}");
    }
    assert!(!env.token_file().exists(), "nothing was written");
}

#[test]
fn a_refused_scope_is_exit_2_naming_the_scopes() {
    let env = datacenter();
    env.write_env("ATL_GRANT=client_credentials\nATL_SCOPE=\"READ PROJECT_ADMIN\"\n");
    let output = env.run(&["print"]);
    assert_exit(&output, 2);
    let message = stderr(&output);
    assert!(message.contains("invalid_scope") && message.contains("READ PROJECT_ADMIN"), "{message}");
}

#[test]
fn busy_servers_are_tried_again() {
    let env = cloud();
    env.auth.push_fault(Reply::Json(503, json!({"error": "unavailable"})));
    env.auth.push_fault(Reply::Json(429, json!({"error": "slow down"})));
    let output = env.run(&["print"]);
    assert_exit(&output, 0);
    assert_eq!(env.auth.token_calls().len(), 3);
    assert_eq!(env.auth.credential_grants(), 1);
}

#[test]
fn login_needs_no_browser_and_fetches_a_first_token() {
    let env = cloud();
    let output = env.run(&["login"]);
    assert_exit(&output, 0);
    let message = stderr(&output);
    assert!(message.lines().next().is_some_and(|l| l.contains("needs no login")), "{message}");
    assert_eq!(env.auth.credential_grants(), 1);
    assert_eq!(env.read_token()["grant"], "client_credentials");
}

#[test]
fn status_shows_the_grant_and_checks_without_the_network_unless_online() {
    let env = cloud();
    let check = env.run(&["status", "--check"]);
    assert_exit(&check, 0);
    assert!(stdout(&check).starts_with("OK: a service account"), "{}", stdout(&check));
    assert!(env.auth.token_calls().is_empty(), "no network without --online");

    let online = env.run(&["status", "--online"]);
    assert_exit(&online, 0);
    assert_eq!(env.auth.credential_grants(), 1);
    let text = stdout(&online);
    assert!(text.lines().any(|l| l.starts_with("grant") && l.contains("client credentials")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("refresh token") && l.contains("none")), "{text}");
    let json = env.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(status["grant"], "client_credentials");
    assert_eq!(status["check"]["status"], "healthy");
}

/// A service account's token may reach no site through accessible-resources: the site's
/// public tenant info names the cloud id, and no token is sent there.
#[test]
fn the_cloud_id_comes_from_the_sites_tenant_info_without_a_token() {
    let env = cloud();
    env.auth.set_sites(json!([]));
    let output = env.run(&["print", "--cloud-id"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).trim(), SITE_ID);
    let asked: Vec<_> =
        env.auth.server.requests().into_iter().filter(|r| r.path == TENANT_INFO_PATH).collect();
    assert_eq!(asked.len(), 1);
    assert!(asked[0].authorization.is_empty(), "no token goes to the site: {:?}", asked[0].authorization);
    // Cached: asked once.
    assert_exit(&env.run(&["print", "--cloud-id"]), 0);
    assert_eq!(env.auth.server.requests().into_iter().filter(|r| r.path == TENANT_INFO_PATH).count(), 1);
}

/// A family from a login is never replaced by a service account's token.
#[test]
fn a_login_family_in_the_token_file_is_not_replaced() {
    let env = cloud();
    let refresh = env.write_token(-10);
    let output = env.run(&["print"]);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("ATL_GRANT is client_credentials"), "{}", stderr(&output));
    assert_eq!(env.read_token()["refresh_token"], refresh.as_str());
    assert!(env.auth.token_calls().is_empty());
}

#[test]
fn the_grant_is_checked_where_it_is_set() {
    let env = TestEnv::new();
    env.write_env("ATL_GRANT=password\n");
    let output = env.run(&["print"]);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("ATL_GRANT"), "{}", stderr(&output));
    env.write_env("ATL_GRANT=client_credentials\nATL_PROVIDER=oauth1\n");
    let output = env.run(&["status"]);
    assert_exit(&output, 2);
}

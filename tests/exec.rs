//! `atl-token exec -- CMD`: the command runs in atl-token's place with a fresh token in its
//! environment, and its exit code is atl-token's.

mod common;

use common::*;

fn cloud() -> TestEnv {
    let env = TestEnv::new();
    env.write_env(&format!("ATL_SITE={SITE_URL}\n"));
    env
}

const SHOW: &str = r#"printf '%s\n' "$ATL_ACCESS_TOKEN" "$ATL_CLOUD_ID" "$ATL_API_BASE"; tr '\0' ' ' </proc/$$/cmdline; echo; exit 7"#;

#[test]
fn the_command_gets_a_fresh_token_in_its_environment_and_its_exit_code_is_kept() {
    let env = cloud();
    env.write_token(-10);
    let output = env.run(&["exec", "--", "sh", "-c", SHOW]);
    assert_exit(&output, 7);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(env.auth.refreshes(), 1, "the expired token was refreshed first");
    let access = env.read_token()["access_token"].as_str().expect("access").to_owned();
    assert_eq!(lines[0], access);
    assert_eq!(lines[1], SITE_ID);
    assert_eq!(lines[2], format!("{}/ex/jira/{SITE_ID}", env.auth.server.url("").trim_end_matches('/')));
    assert!(!lines[3].contains(&access), "the token is not on the command line: {}", lines[3]);
}

#[test]
fn mcp_atlassian_gets_the_names_it_reads() {
    let env = cloud();
    env.write_token(3600);
    let script = r#"printf '%s\n' "$ATLASSIAN_OAUTH_ACCESS_TOKEN" "$ATLASSIAN_OAUTH_CLOUD_ID" "$CONFLUENCE_URL" "${ATL_ACCESS_TOKEN:-none}""#;
    let args = ["exec", "--env-style", "mcp-atlassian", "--product", "confluence", "--", "sh", "-c", script];
    let output = env.run(&args);
    assert_exit(&output, 0);
    let access = env.read_token()["access_token"].as_str().expect("access").to_owned();
    assert_eq!(stdout(&output), format!("{access}\n{SITE_ID}\n{SITE_URL}/wiki\nnone\n"));
    assert_eq!(env.auth.refreshes(), 0, "a fresh token is not refreshed");
}

#[test]
fn data_center_hands_on_the_base_url() {
    let env = TestEnv::with(AuthServer::datacenter());
    env.write_token(3600);
    let output = env.run(&["exec", "--env-style", "mcp-atlassian", "--", "sh", "-c", "echo \"$JIRA_URL\""]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).trim(), env.auth.base_url().trim_end_matches('/'));
}

#[test]
fn a_missing_or_unrunnable_command_is_127_or_126() {
    let env = cloud();
    env.write_token(3600);
    let missing = env.run(&["exec", "--", "no-such-command-atl"]);
    assert_exit(&missing, 127);
    assert!(stderr(&missing).contains("cannot run no-such-command-atl"), "{}", stderr(&missing));
    std::fs::write(env.path("not-executable"), "#!/bin/sh\n").expect("write");
    let unrunnable = env.run(&["exec", "--", "./not-executable"]);
    assert_exit(&unrunnable, 126);
    let none = env.run(&["exec"]);
    assert_exit(&none, 2);
}

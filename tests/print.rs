//! `atl-token print`: what it writes, and its refresh under the lock.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn prints_each_kind_of_output() {
    let env = TestEnv::new();
    let refresh = env.write_token(3600);
    let access = env.read_token()["access_token"].as_str().expect("at").to_owned();

    let out = env.run(&["print"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), format!("{access}\n"));
    assert!(out.stderr.is_empty());
    assert_eq!(stdout(&env.run(&["print", "--access"])), format!("{access}\n"));
    assert_eq!(stdout(&env.run(&["print", "--refresh"])), format!("{refresh}\n"));
    assert_eq!(stdout(&env.run(&["print", "--header"])), format!("Authorization: Bearer {access}\n"));
    // A bearer header is the same for every request, so scripts can name the request either way.
    let for_url = env.run(&["print", "--header", "--method", "POST", "--url", "/rest/api/3/issue"]);
    assert_eq!(stdout(&for_url), format!("Authorization: Bearer {access}\n"));
    assert_exit(&env.run(&["print", "--url", "/rest/api/3/issue"]), 2);
    let json = env.run(&["print", "--json"]);
    assert_eq!(json.stdout, std::fs::read(env.token_file()).expect("read"), "the file, byte for byte");
    assert!(env.auth.token_calls().is_empty(), "a valid token needs no network");
}

#[test]
fn an_expiring_token_is_refreshed_first() {
    let env = TestEnv::new();
    env.write_token(30);
    let out = env.run(&["print", "--header"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "Authorization: Bearer at-2\n", "30s left is under the 60s margin");
    assert_eq!(env.read_token()["refresh_token"], "rt-2");

    // 2 minutes left is under a 5-minute margin.
    env.write_token(120);
    let written = env.read_token()["access_token"].as_str().expect("at").to_owned();
    let out = env.run(&["print", "--min-valid", "5m"]);
    assert_exit(&out, 0);
    assert_ne!(stdout(&out), format!("{written}\n"));
    assert_eq!(stdout(&out), format!("{}\n", env.read_token()["access_token"].as_str().expect("at")));
    assert_eq!(env.auth.token_calls().len(), 2);
}

#[test]
fn no_refresh_fails_instead_of_refreshing() {
    let env = TestEnv::new();
    env.write_token(-5);
    let out = env.run(&["print", "--no-refresh"]);
    assert_exit(&out, 1);
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("--no-refresh"), "{}", stderr(&out));
    assert!(env.auth.token_calls().is_empty());
}

#[test]
fn no_token_file_exits_4() {
    let env = TestEnv::new();
    let out = env.run(&["print", "--access"]);
    assert_exit(&out, 4);
    assert!(stderr(&out).contains("run `atl-token login`"));
    assert_eq!(stdout(&out), "");
}

#[test]
fn a_failed_refresh_prints_nothing_on_stdout() {
    let env = TestEnv::new();
    env.write_token(-5);
    env.auth.push_fault(Reply::Json(403, serde_json::json!({"error": "unauthorized_client"})));
    let out = env.run(&["print"]);
    assert_exit(&out, 4);
    assert_eq!(stdout(&out), "", "a script's $(...) gets nothing rather than a stale token");
}

#[test]
fn twenty_concurrent_prints_on_an_expired_token_refresh_once() {
    let env = TestEnv::new();
    env.write_token(-5);
    // A slow server widens the window in which the others must wait on the lock.
    env.auth.set_delay(Duration::from_millis(300));
    let children: Vec<_> = (0..20).map(|_| env.spawn(&["print", "--access"])).collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
    for out in &outputs {
        assert_exit(out, 0);
    }
    let printed: std::collections::HashSet<String> = outputs.iter().map(stdout).collect();
    assert_eq!(printed.len(), 1, "all print the same token: {printed:?}");
    assert_eq!(printed.into_iter().next(), Some("at-2\n".to_owned()));
    assert_eq!(env.auth.token_calls().len(), 1, "exactly one refresh reached the server");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let env = TestEnv::new();
    env.write_token(3600);
    let mut child =
        env.command(&["print", "--json"]).stdout(std::process::Stdio::piped()).spawn().expect("spawn");
    drop(child.stdout.take());
    let status = child.wait().expect("wait");
    assert!(status.success());
}

/// `print` on a fresh token takes the hot path, anything else the full one: either way the
/// same output, and each warning once (the hot path never warns and then hands over).
#[test]
fn the_hot_path_and_the_full_path_print_the_same_and_warn_once() {
    let env = TestEnv::new();
    set_mode(&env.path(".env"), 0o644);
    env.write_token(3600);
    set_mode(&env.token_file(), 0o644);
    let access = env.read_token()["access_token"].as_str().expect("at").to_owned();
    let args: [&[&str]; 4] = [&["print"], &["print", "--access"], &["print", "--header"], &["print", "-v"]];
    for args in args {
        let out = env.run(args);
        assert_exit(&out, 0);
        let expected = if args.contains(&"--header") {
            format!("Authorization: Bearer {access}\n")
        } else {
            format!("{access}\n")
        };
        assert_eq!(stdout(&out), expected, "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.matches("the env file").count(), 1, "{args:?}: {err}");
        assert_eq!(err.matches("the token file").count(), 1, "{args:?}: {err}");
    }
    // Expiring: the hot path hands over, and the full path refreshes and warns, once.
    env.write_token(10);
    set_mode(&env.token_file(), 0o644);
    let out = env.run(&["print", "--access"]);
    assert_exit(&out, 0);
    assert_eq!(env.auth.token_calls().len(), 1);
    assert_eq!(stderr(&out).matches("the env file").count(), 1, "{}", stderr(&out));
    // Anything the hot path does not know is the full parser's, --help included.
    let help = env.run(&["print", "--help"]);
    assert_exit(&help, 0);
    assert!(stdout(&help).contains("--min-valid"), "{}", stdout(&help));
}

/// A Data Center admin may make access tokens live minutes or less: the default
/// `--min-valid` then adapts (a third of the lifetime), while an explicit one as long as the
/// lifetime is still refused.
#[test]
fn the_default_min_valid_adapts_to_short_lived_tokens() {
    let env = TestEnv::new();
    env.write_token(30);
    let mut token = env.read_token();
    token["expires_in"] = 30.into();
    std::fs::write(env.token_file(), serde_json::to_vec(&token).expect("JSON")).expect("write");
    let output = env.run(&["print"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).trim(), token["access_token"].as_str().expect("access"));
    assert!(env.auth.token_calls().is_empty(), "30 s left of 30: no refresh needed");

    let explicit = env.run(&["print", "--min-valid", "30s"]);
    assert_exit(&explicit, 2);
    assert!(stderr(&explicit).contains("whole lifetime"), "{}", stderr(&explicit));
}

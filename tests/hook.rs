//! `ATL_ON_ROTATE`: a command run after each new token set is saved, with the set on stdin
//! and the token file's path in `ATL_TOKEN_FILE`; a failure is reported and run again later.

mod common;

use common::*;

/// Copies the new set beside the token file, and shows its own command line on stderr.
const COPY: &str = "cat > \"$ATL_TOKEN_FILE.copy\"; tr '\\0' ' ' < /proc/$$/cmdline >&2; echo >&2";

#[test]
fn a_refresh_runs_the_hook_with_the_new_set_on_stdin() {
    let env = TestEnv::new();
    env.write_env(&format!("ATL_ON_ROTATE='{}'\n", COPY.replace('\'', "'\\''")));
    env.write_token(-10);
    let output = env.run(&["print"]);
    assert_exit(&output, 0);
    let token = env.read_token();
    assert_eq!(
        stdout(&output).trim(),
        token["access_token"].as_str().expect("access"),
        "stdout is the token alone"
    );
    let copy = std::fs::read(env.path("token.json.copy")).expect("the hook wrote its copy");
    assert_eq!(copy, std::fs::read(env.token_file()).expect("token file"), "the set as saved");
    let refresh = token["refresh_token"].as_str().expect("refresh");
    assert!(!stderr(&output).contains(refresh), "not on the hook's command line: {}", stderr(&output));

    // A fresh token: nothing rotated, the hook does not run.
    std::fs::remove_file(env.path("token.json.copy")).expect("rm");
    assert_exit(&env.run(&["print"]), 0);
    assert!(!env.path("token.json.copy").exists());
}

#[test]
fn a_failed_hook_is_reported_and_run_again_until_it_works() {
    let env = TestEnv::new();
    env.write_env("ATL_ON_ROTATE='exit 3'\n");
    env.write_token(-10);
    let output = env.run(&["refresh"]);
    assert_exit(&output, 0);
    assert!(
        stderr(&output).contains("ATL_ON_ROTATE") && stderr(&output).contains("failed"),
        "{}",
        stderr(&output)
    );
    assert!(env.path("token.json.rotate-pending").exists());

    // Mended: the next run, with nothing to refresh, runs it again with the set as it is.
    env.write_env(&format!("ATL_ON_ROTATE='{}'\n", COPY.replace('\'', "'\\''")));
    let again = env.run(&["refresh", "--if-needed"]);
    assert_exit(&again, 0);
    assert_eq!(env.auth.refreshes(), 1, "nothing refreshed");
    assert_eq!(
        std::fs::read(env.path("token.json.copy")).expect("copy"),
        std::fs::read(env.token_file()).expect("token file")
    );
    assert!(!env.path("token.json.rotate-pending").exists(), "done");
}

/// A login's new family goes through the hook too.
#[test]
fn a_login_runs_the_hook() {
    let env = TestEnv::new();
    let hook = "ATL_ON_ROTATE='cat > \"$ATL_TOKEN_FILE.copy\"'\n";
    let login = Login::start_with(&env, hook, &[]);
    let state = login.param("state");
    let page = login.callback(&format!("code={CODE}&state={state}"));
    assert_eq!(status_of(&page), 200, "{page}");
    let (status, _, err) = login.finish();
    assert!(status.success(), "{err}");
    assert_eq!(
        std::fs::read(env.path("token.json.copy")).expect("the hook ran"),
        std::fs::read(env.token_file()).expect("token file")
    );
}

/// atl-token run with `args`, its output collected on a thread, or `None` when it has not
/// ended within `limit` (its hook's group then outlived it).
fn output_within(
    mut command: std::process::Command,
    limit: std::time::Duration,
) -> Option<std::process::Output> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(command.output().expect("run atl-token"));
    });
    receiver.recv_timeout(limit).ok()
}

/// The hook's limit holds for what it forks (the shell's `sleep` kept the pipes open) and
/// for a set too large for the pipe that it never reads (the write blocked before the
/// deadline began). The limit is 2 s here (a debug build's switch); atl-token used to wait
/// 100 s.
#[test]
fn the_hooks_time_limit_holds_for_what_it_forks_and_a_set_it_never_reads() {
    let env = TestEnv::new();
    env.write_env("ATL_ON_ROTATE='sleep 100; true'\n");
    for large in [false, true] {
        env.write_token(-10);
        if large {
            let big = "x".repeat(200 * 1024);
            env.auth.push_fault(Reply::Json(
                200,
                serde_json::json!({"access_token": "at-big", "refresh_token": "rt-big", "expires_in": 3600,
                                   "token_type": "Bearer", "scope": "read:jira-work offline_access", "padding": big}),
            ));
        }
        let mut command = env.command(&["refresh"]);
        command.env("ATL_TOKEN_TEST_ONLY_HOOK_LIMIT", "2");
        let out = output_within(command, std::time::Duration::from_secs(40))
            .unwrap_or_else(|| panic!("large {large}: atl-token still waiting after 40 s"));
        assert_exit(&out, 0);
        assert!(stderr(&out).contains("took longer than 2s and was stopped"), "{}", stderr(&out));
        assert!(env.path("token.json.rotate-pending").exists());
    }
    assert_eq!(env.read_token()["access_token"], "at-big", "the large set was saved");
}

//! Configuration errors: clear, exit 2, and before any network call.

mod common;

use common::*;

#[test]
fn a_missing_key_names_the_key_and_the_file() {
    let env = TestEnv::new();
    std::fs::write(env.path(".env"), format!("ATL_CLIENT_ID=x\nATL_TOKEN_URL={}\n", env.auth.token_url()))
        .expect("write");
    env.write_token(-10);
    let out = env.run(&["refresh"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("ATL_CLIENT_SECRET (or JIRA_CLIENT_SECRET) is not set"), "{err}");
    assert!(err.contains(&env.path(".env").display().to_string()), "{err}");
    assert!(env.auth.token_calls().is_empty());
}

#[test]
fn a_malformed_line_names_the_file_and_line_but_not_its_content() {
    let env = TestEnv::new();
    std::fs::write(env.path(".env"), "ATL_CLIENT_ID=x\nATL_CLIENT_SECRET=\"hunter2\nATL_SCOPE=y\n")
        .expect("write");
    let out = env.run(&["print"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(".env: line 2 is not KEY=value"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn an_unparsable_port_or_url_is_refused_before_the_network() {
    let env = TestEnv::new();
    env.write_token(-10);
    env.write_env("ATL_PORT=80a\n");
    let out = env.run(&["refresh"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("ATL_PORT in"), "{}", stderr(&out));
    env.write_env("ATL_API_URL=api.atlassian.com\n");
    let out = env.run(&["refresh"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("ATL_API_URL"), "{}", stderr(&out));
    assert!(env.auth.token_calls().is_empty());
}

#[test]
fn a_named_env_file_that_is_missing_is_an_error() {
    let env = TestEnv::new();
    let out = env.command(&["print"]).arg("--env-file").arg(env.path("nope.env")).output().expect("run");
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("nope.env (from --env-file) does not exist"), "{}", stderr(&out));
}

#[test]
fn the_environment_overrides_the_file_and_the_config_folder_is_found() {
    let env = TestEnv::new();
    env.write_token(3600);
    // No --env-file and no ./.env: the file under $XDG_CONFIG_HOME/atl-token is used, and the
    // token file is found beside it.
    let config_dir = env.path("xdg/atl-token");
    std::fs::create_dir_all(&config_dir).expect("mkdir");
    std::fs::rename(env.path(".env"), config_dir.join(".env")).expect("move .env");
    std::fs::rename(env.token_file(), config_dir.join("token.json")).expect("move token");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_atl-token"));
    command
        .env_clear()
        .env("XDG_CONFIG_HOME", env.path("xdg"))
        .current_dir(env.dir.path())
        .args(["print", "--refresh"]);
    let out = command.output().expect("run");
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "rt-1\n");

    let out = command.env("ATL_CLIENT_ID", "").env("ATL_TOKEN_FILE", "elsewhere.json").output().expect("run");
    assert_exit(&out, 4);
    assert!(stderr(&out).contains("elsewhere.json"), "{}", stderr(&out));
}

#[test]
fn bad_durations_are_usage_errors() {
    let env = TestEnv::new();
    let out = env.run(&["print", "--min-valid", "10"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("no unit"), "{}", stderr(&out));
}

#[test]
fn help_documents_the_exit_codes() {
    let env = TestEnv::new();
    let out = env.run(&["--help"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("4    no usable token: run `atl-token login`"), "{}", stdout(&out));
}

#[test]
fn a_bad_store_setting_is_refused_before_the_network() {
    let env = TestEnv::new();
    env.write_token(-10);
    for (setting, expected) in [
        ("ATL_STORE=s3:bucket\n", "ATL_STORE in"),
        ("ATL_STORE=aws-secretsmanager:\n", "aws-secretsmanager:NAME"),
        ("ATL_STORE=aws-secretsmanager:team/jira\nATL_STORE_LEASE=1s\n", "must outlast one token request"),
    ] {
        env.write_env(setting);
        let out = env.run(&["refresh"]);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(expected), "{setting}: {}", stderr(&out));
    }
    assert!(env.auth.token_calls().is_empty());
    assert!(env.auth.is_live("rt-1"), "the token file's family was not touched");
}

/// The default build has no AWS client: the setting is refused, with how to get one.
#[cfg(not(feature = "aws"))]
#[test]
fn the_aws_store_without_the_aws_feature_says_how_to_install_it() {
    let env = TestEnv::new();
    env.write_token(-10);
    env.write_env("ATL_STORE=aws-secretsmanager:team/jira\n");
    let out = env.run(&["print"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("built without it"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--features aws"), "{}", stderr(&out));
    assert!(env.auth.token_calls().is_empty());
}

#[test]
fn store_push_needs_a_shared_store() {
    let env = TestEnv::new();
    env.write_token(3600);
    let out = env.run(&["store", "push"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("ATL_STORE is `file`"), "{}", stderr(&out));
}

/// The seed script sources `jira.env`: with no `.env`, atl-token finds it, in the script's
/// own names, with its token file beside it, once trusted (it names the token file).
#[test]
fn the_seed_scripts_jira_env_is_found_when_there_is_no_env_file() {
    let env = TestEnv::new();
    let settings = std::fs::read_to_string(env.path(".env")).expect(".env");
    let seed = settings
        .replace("ATL_CLIENT_ID=", "JIRA_CLIENT_ID=")
        .replace("ATL_CLIENT_SECRET=", "JIRA_CLIENT_SECRET=")
        .replace("ATL_SCOPE=", "JIRA_SCOPE=");
    std::fs::remove_file(env.path(".env")).expect("rm .env");
    std::fs::write(env.path("jira.env"), seed + "TOKEN_FILE_NAME=token.json\n").expect("write jira.env");
    set_mode(&env.path("jira.env"), 0o600);
    env.write_token(3600);
    let expected = env.read_token()["access_token"].as_str().expect("access").to_owned();
    let run = |args: &[&str]| bare_command(env.dir.path()).args(args).output().expect("run");
    let refused = run(&["print"]);
    assert_exit(&refused, 2);
    assert!(stderr(&refused).contains("atl-token trust"), "{}", stderr(&refused));
    assert_exit(&run(&["trust"]), 0);
    for args in [&["print"][..], &["print", "--json"][..]] {
        let output = run(args);
        assert_exit(&output, 0);
        assert!(stdout(&output).contains(&expected), "{}", stdout(&output));
    }
    assert_exit(&run(&["status"]), 0);
}

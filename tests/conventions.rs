//! What a command-line tool is expected to do: `init` by flags for scripts, profiles, help,
//! completions that load in each shell, a man page, `-v` logging with nothing secret in it,
//! and warnings (never failures) about mistakes in the settings.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// atl-token in `dir` with HOME there and no env file named.
fn bare(dir: &Path, args: &[&str]) -> Command {
    let mut command = bare_command(dir);
    command.args(args);
    command
}

fn run(mut command: Command) -> Output {
    command.output().expect("run atl-token")
}

#[test]
fn init_by_flags_writes_a_private_file_refuses_to_overwrite_and_checks_values_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, "s3cret-from-file\n").expect("write");
    let secret = secret_file.to_str().expect("utf8");
    let args = [
        "init",
        "--provider",
        "datacenter",
        "--base-url",
        "https://jira.example.com",
        "--client-id",
        "dc-app",
    ];
    let out =
        run(bare(dir.path(), &[&args[..], &["--client-secret-file", secret, "--port", "8123"]].concat()));
    assert_exit(&out, 0);
    let env_file = dir.path().join(".config/atl-token/.env");
    assert_eq!(mode_of(&env_file), 0o600);
    let text = std::fs::read_to_string(&env_file).expect("read");
    assert!(
        text.contains("ATL_PROVIDER=datacenter\n") && text.contains("ATL_CLIENT_SECRET=s3cret-from-file\n"),
        "{text}"
    );
    assert!(text.contains("ATL_SCOPE=READ\n") && text.contains("ATL_PORT=8123\n"), "{text}");
    let said = stdout(&out);
    assert!(said.contains("http://localhost:8123") && said.contains("atl-token login"), "{said}");
    assert!(!said.contains("s3cret") && !stderr(&out).contains("s3cret"));

    // Found from another folder, as cron would run it.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let mut status = bare(elsewhere.path(), &["status"]);
    status.env("HOME", dir.path());
    let out = run(status);
    assert_exit(&out, 4);
    assert!(
        stderr(&out)
            .contains(&format!("no token in {}", dir.path().join(".config/atl-token/token.json").display()))
    );

    let again = run(bare(dir.path(), &[&args[..], &["--client-secret-file", secret]].concat()));
    assert_exit(&again, 2);
    assert!(stderr(&again).contains("exists already: run with --force"), "{}", stderr(&again));
    let forced = run(bare(dir.path(), &[&args[..], &["--client-secret-file", secret, "--force"]].concat()));
    assert_exit(&forced, 0);
    assert!(!std::fs::read_to_string(&env_file).expect("read").contains("ATL_PORT"), "replaced");

    let bad = ["init", "--profile", "x", "--client-id", "a", "--scope", "read:jira-work,write:jira-work"];
    let out = run(bare(dir.path(), &[&bad[..], &["--client-secret-file", secret]].concat()));
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("nothing was written") && stderr(&out).contains("not commas"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join(".config/atl-token/x").join(".env").exists());

    let out = run(bare(dir.path(), &["init", "--env-file", "other.env", "--client-id", "a"]));
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--client-secret-file is needed"), "{}", stderr(&out));
}

#[test]
fn profiles_keep_accounts_apart_and_are_listed_with_their_health() {
    let env = TestEnv::new();
    let home = tempfile::tempdir().expect("tempdir");
    let settings = std::fs::read_to_string(env.path(".env")).expect("read");
    for name in ["prod", "sandbox"] {
        let dir = home.path().join(".config/atl-token").join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(".env"), &settings).expect("write");
        set_mode(&dir.join(".env"), 0o600);
    }
    env.write_token_at(&home.path().join(".config/atl-token/prod/token.json"), 3000);

    let out = run(bare(home.path(), &["profiles"]));
    assert_exit(&out, 0);
    let listing = stdout(&out);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert!(lines[0].starts_with("prod     OK: "), "{listing}");
    assert!(lines[1].starts_with("sandbox  LOGIN REQUIRED: no token in "), "{listing}");
    assert!(lines[1].ends_with("run `atl-token --profile sandbox login`"), "{listing}");

    let mut print = bare(home.path(), &["print"]);
    print.env("ATL_PROFILE", "prod");
    let out = run(print);
    assert_exit(&out, 0);
    assert!(stdout(&out).starts_with("at-"), "prod's token: {}", stdout(&out));
    let out = run(bare(home.path(), &["--profile", "sandbox", "print"]));
    assert_exit(&out, 4);
    let out = run(bare(home.path(), &["--profile", "../etc", "print"]));
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("is not a profile name"), "{}", stderr(&out));
}

#[test]
fn help_for_help_and_for_each_command_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [&["help", "--help"][..], &["help"], &["help", "login"], &["login", "--help"]] {
        let out = run(bare(dir.path(), args));
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("Usage: atl-token"), "{args:?}: {}", stdout(&out));
    }
    assert!(stdout(&run(bare(dir.path(), &["help", "login"]))).contains("--paste"));
    let out = run(bare(dir.path(), &["help", "lgoin"]));
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("there is no command 'lgoin'"), "{}", stderr(&out));
}

#[test]
fn the_man_page_describes_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(bare(dir.path(), &["man"]));
    assert_exit(&out, 0);
    let page = stdout(&out);
    assert!(page.contains(".TH atl-token 1"), "{page}");
    for command in ["login", "refresh", "print", "status", "api", "init", "profiles", "completions"] {
        assert!(page.contains(&format!("atl\\-token\\-{command}(1)")), "{command}: {page}");
    }
    let out = run(bare(dir.path(), &["man", "login"]));
    assert_exit(&out, 0);
    let login = stdout(&out);
    assert!(login.contains(".TH atl-token-login 1") && login.contains("\\-\\-paste"), "{login}");
}

/// Writes the completion script for `shell` and returns its path.
fn completion_script(dir: &Path, shell: &str) -> std::path::PathBuf {
    let out = run(bare(dir, &["completions", shell]));
    assert_exit(&out, 0);
    let path = dir.join(format!("atl-token.{shell}"));
    std::fs::write(&path, &out.stdout).expect("write");
    path
}

/// Runs `script` in `shell`, with atl-token's folder on PATH; panics (never skips) when the
/// shell is missing.
fn in_shell(shell: &str, args: &[&str], script: &str) -> String {
    let out = Command::new(shell)
        .args(args)
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("{shell} is needed for this test (.ci/run installs it): {e}"));
    assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{shell} complained: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bash_completion_loads_and_completes_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = completion_script(dir.path(), "bash");
    let words = in_shell(
        "bash",
        &["--norc", "-c"],
        &format!(
            "source {}; COMP_WORDS=(atl-token lo); COMP_CWORD=1; COMP_LINE='atl-token lo'; COMP_POINT=12; \
             complete_fn=$(complete -p atl-token | sed -E 's/.*-F ([^ ]+).*/\\1/'); \
             \"$complete_fn\" atl-token lo atl-token; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ),
    );
    assert_eq!(words.split_whitespace().collect::<Vec<_>>(), ["login", "logout"], "{words}");
}

#[test]
#[ignore = "needs zsh: .ci/run installs it and runs this"]
fn zsh_completion_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = completion_script(dir.path(), "zsh");
    let loaded = in_shell(
        "zsh",
        &["-f", "-c"],
        &format!(
            "autoload -Uz compinit && compinit -u -D && source {} && print -r -- $_comps[atl-token]",
            script.display()
        ),
    );
    assert_eq!(loaded.trim(), "_atl-token");
}

#[test]
#[ignore = "needs fish: .ci/run installs it and runs this"]
fn fish_completion_loads_and_completes_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = completion_script(dir.path(), "fish");
    let words = in_shell(
        "fish",
        &["--no-config", "-c"],
        &format!("source {}; complete -C 'atl-token lo'", script.display()),
    );
    let names: Vec<&str> = words.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(names, ["login", "logout"], "{words}");
}

#[test]
fn verbose_logs_each_request_and_nothing_secret() {
    let env = TestEnv::new();
    let refresh = env.write_token(-10);
    env.auth.push_fault(common::Reply::Json(503, serde_json::json!({"error": "busy"})));
    let out = env.run(&["-v", "refresh", "-q"]);
    assert_exit(&out, 0);
    let log = stderr(&out);
    let token_url = env.auth.token_url();
    assert!(log.contains(&format!("atl-token: POST {token_url} -> 503 (")), "{log}");
    assert!(log.contains("atl-token: retrying in "), "{log}");
    assert!(log.contains(&format!("atl-token: POST {token_url} -> 200 (")), "{log}");
    let new = env.read_token();
    for secret in [
        CLIENT_SECRET,
        &refresh,
        new["refresh_token"].as_str().expect("rt"),
        new["access_token"].as_str().expect("at"),
    ] {
        assert!(!log.contains(secret), "{secret} in {log}");
    }
    let quiet = env.run(&["refresh", "-q"]);
    assert_eq!(stderr(&quiet), "", "nothing without -v");
}

#[test]
fn mistakes_in_the_settings_are_explained_and_readable_files_warned_about() {
    let env = TestEnv::new();
    env.write_token(3000);
    set_mode(&env.path(".env"), 0o600);
    set_mode(&env.token_file(), 0o600);
    let clean = env.run(&["print"]);
    assert_exit(&clean, 0);
    assert_eq!(stderr(&clean), "", "no warning for private files");

    env.write_env("ATL_CLIENTID=oops\n");
    set_mode(&env.path(".env"), 0o644);
    set_mode(&env.token_file(), 0o640);
    let out = env.run(&["print"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).starts_with("at-"), "print still works");
    let err = stderr(&out);
    assert!(err.contains("ATL_CLIENTID in ") && err.contains("did you mean ATL_CLIENT_ID?"), "{err}");
    let env_path = env.path(".env").display().to_string();
    assert!(
        err.contains(&format!(
            "the env file {env_path} can be read by other users (mode 644): run `chmod 600 {env_path}`"
        )),
        "{err}"
    );
    assert!(err.contains("the token file ") && err.contains("(mode 640)"), "{err}");

    env.write_env("ATL_SCOPE=read:jira-work read:jira-user\n");
    let out = env.run(&["print"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("the value of ATL_SCOPE has spaces but no quotes")
            && stderr(&out).contains("write ATL_SCOPE=\"read:jira-work read:jira-user\""),
        "{}",
        stderr(&out)
    );

    env.write_env("");
    std::fs::write(env.token_file(), "").expect("empty");
    let out = env.run(&["print"]);
    assert_exit(&out, 4);
    assert!(
        stderr(&out).contains("is empty, so it holds no token: run `atl-token login`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn input_that_cannot_work_is_refused_with_the_fix() {
    let env = TestEnv::new();
    env.write_token(-10);
    let out = env.run(&["print", "--min-valid", "2h"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("--min-valid 2h 0m is as long as the access token's whole lifetime (1h 0m)"),
        "{}",
        stderr(&out)
    );
    assert!(env.auth.token_calls().is_empty(), "no refresh token spent");

    let out = env.run(&["refresh", "--min-valid", "5m"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--if-needed"), "{}", stderr(&out));

    let none = tempfile::tempdir().expect("tempdir");
    let out = run(bare(none.path(), &["print"]));
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("run `atl-token init` to write one"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(".env.example"));
}

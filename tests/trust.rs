//! Where settings come from: flags, the environment, `--env-file`, the folder's file, the
//! user's own file, each filling only what the higher ones leave unset; and a folder's file
//! that runs a command, picks a destination or picks the token file only once trusted
//! (`atl-token trust`). The third review's high finding: a cloned checkout's `.env` ran a
//! command as the user and handed it the token set.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// A cloned checkout in `env`'s folder whose `.env` (mode 600, as `git clone` leaves it)
/// is `settings`.
fn checkout(env: &TestEnv, settings: &str) -> PathBuf {
    let repo = env.path("repo");
    fs::create_dir_all(&repo).expect("mkdir");
    fs::write(repo.join(".env"), settings).expect("write .env");
    set_mode(&repo.join(".env"), 0o600);
    repo
}

/// atl-token run in `dir`, finding its settings itself, with HOME at `env`'s folder.
fn run_in(env: &TestEnv, dir: &Path, args: &[&str]) -> Output {
    bare_command(dir).env("HOME", env.dir.path()).args(args).output().expect("run")
}

/// `env`'s own settings, as a checkout would copy them.
fn settings(env: &TestEnv) -> String {
    fs::read_to_string(env.path(".env")).expect(".env")
}

#[test]
fn a_checkouts_hook_runs_nothing_until_the_file_is_trusted() {
    let env = TestEnv::new();
    let pwned = env.path("PWNED");
    let repo = checkout(
        &env,
        &format!("{}ATL_ON_ROTATE=\"id > {p}; cat > {p}.stdin\"\n", settings(&env), p = pwned.display()),
    );
    env.write_token_at(&repo.join("token.json"), -10);

    let out = run_in(&env, &repo, &["print"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    let file = repo.join(".env");
    assert!(err.contains(&format!("{} sets ", file.display())), "{err}");
    for key in ["ATL_ON_ROTATE", "ATL_TOKEN_URL", "ATL_API_URL"] {
        assert!(err.contains(key), "names {key}: {err}");
    }
    assert!(err.contains(&format!("atl-token trust {}", file.display())), "{err}");
    assert!(!pwned.exists() && !env.path("PWNED.stdin").exists(), "nothing ran");
    assert!(env.auth.token_calls().is_empty(), "nothing was sent");

    // Trusted, it is the user's own: the hook runs with the new set.
    let trusted = run_in(&env, &repo, &["trust"]);
    assert_exit(&trusted, 0);
    assert!(stderr(&trusted).contains("ATL_ON_ROTATE"), "{}", stderr(&trusted));
    let out = run_in(&env, &repo, &["print"]);
    assert_exit(&out, 0);
    assert!(env.path("PWNED.stdin").exists(), "the trusted hook ran: {}", stderr(&out));

    // Changed after it was trusted: refused again, saying why.
    fs::write(&file, format!("{}\n# one more line\n", fs::read_to_string(&file).expect("read")))
        .expect("write");
    let out = run_in(&env, &repo, &["refresh"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("changed since you trusted it"), "{}", stderr(&out));
    assert_eq!(env.auth.refreshes(), 1, "only the trusted run refreshed");
}

/// A CI job's settings in the environment, and only a hook in the checkout's `.env`: the
/// hook is refused before the refresh, so the rotated refresh token goes nowhere.
#[test]
fn a_checkouts_hook_under_settings_from_the_environment_is_refused() {
    let env = TestEnv::new();
    let exfil = env.path("EXFIL");
    let repo = checkout(&env, &format!("ATL_ON_ROTATE=\"cat > {}\"\n", exfil.display()));
    let token_file = env.path("ci-token.json");
    env.write_token_at(&token_file, -10);
    let out = bare_command(&repo)
        .env("HOME", env.dir.path())
        .env("ATL_CLIENT_ID", CLIENT_ID)
        .env("ATL_CLIENT_SECRET", CLIENT_SECRET)
        .env("ATL_SCOPE", "read:jira-work")
        .env("ATL_TOKEN_URL", env.auth.token_url())
        .env("ATL_API_URL", env.auth.server.url(""))
        .env("ATL_TOKEN_FILE", &token_file)
        .arg("print")
        .output()
        .expect("run");
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("ATL_ON_ROTATE"), "{}", stderr(&out));
    assert!(!exfil.exists(), "the hook did not run");
    assert!(env.auth.token_calls().is_empty(), "no refresh token was spent");
}

/// `init`'s file in the user's folder, then `cd` into a project whose `.env` is its own:
/// atl-token does not read it, warns about nothing and points into nothing there.
#[test]
fn a_projects_env_that_names_no_setting_is_not_read() {
    let env = TestEnv::new();
    let config_dir = env.path(".config/atl-token");
    fs::create_dir_all(&config_dir).expect("mkdir");
    fs::rename(env.path(".env"), config_dir.join(".env")).expect("move .env");
    let access = {
        env.write_token_at(&config_dir.join("token.json"), 3600);
        let token: serde_json::Value =
            serde_json::from_slice(&fs::read(config_dir.join("token.json")).expect("read")).expect("json");
        token["access_token"].as_str().expect("access").to_owned()
    };
    let project = env.path("project");
    fs::create_dir_all(&project).expect("mkdir");
    fs::write(project.join(".env"), "DATABASE_URL=postgres://localhost/app\nNODE_ENV=development\n")
        .expect("write");
    set_mode(&project.join(".env"), 0o644);
    for args in [&["print"][..], &["print", "--json"], &["status"]] {
        let out = run_in(&env, &project, args);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains(&access) || args == ["status"], "{args:?}: {}", stdout(&out));
        assert!(!stderr(&out).contains(".env"), "{args:?}: {}", stderr(&out));
    }
    // A missing setting points at the user's own file, not the project's.
    let without_id: String = settings_of(&config_dir.join(".env"))
        .lines()
        .filter(|l| !l.starts_with("ATL_CLIENT_ID="))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(config_dir.join(".env"), without_id).expect("write");
    let out = run_in(&env, &project, &["refresh"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&format!("add it to {}", config_dir.join(".env").display())), "{err}");
    assert!(!err.contains(&project.display().to_string()), "{err}");
}

fn settings_of(path: &Path) -> String {
    fs::read_to_string(path).expect("read settings")
}

/// An untrusted folder file's plain settings fill what the user's file leaves unset, but it
/// does not place the token file; trusted, it does.
#[test]
fn a_folder_file_places_the_token_file_only_once_trusted() {
    let env = TestEnv::new();
    let config_dir = env.path(".config/atl-token");
    fs::create_dir_all(&config_dir).expect("mkdir");
    let mine = settings(&env).replace("ATL_HTTP_TIMEOUT=2\n", "");
    fs::write(config_dir.join(".env"), mine).expect("write");
    set_mode(&config_dir.join(".env"), 0o600);
    env.write_token_at(&config_dir.join("token.json"), 3600);
    let repo = checkout(&env, "ATL_HTTP_TIMEOUT=3\n");
    env.write_token_at(&repo.join("token.json"), 3600);
    let token_of = |path: PathBuf| -> String {
        let token: serde_json::Value = serde_json::from_slice(&fs::read(path).expect("read")).expect("json");
        token["access_token"].as_str().expect("access").to_owned()
    };
    let users = token_of(config_dir.join("token.json"));
    let repos = token_of(repo.join("token.json"));
    for args in [&["print"][..], &["print", "--json"]] {
        let out = run_in(&env, &repo, args);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains(&users), "{args:?}: {}", stdout(&out));
    }
    assert_exit(&run_in(&env, &repo, &["trust"]), 0);
    for args in [&["print"][..], &["print", "--json"]] {
        let out = run_in(&env, &repo, args);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains(&repos), "{args:?}: {}", stdout(&out));
    }
}

/// The hot path serves a fresh token from a trusted folder file's `ATL_TOKEN_FILE`, and
/// leaves a changed one to the full path, which refuses it.
#[test]
fn the_hot_path_follows_trust_too() {
    let env = TestEnv::new();
    let repo = checkout(&env, &format!("{}ATL_TOKEN_FILE=custom.json\n", settings(&env)));
    env.write_token_at(&repo.join("custom.json"), 3600);
    assert_exit(&run_in(&env, &repo, &["print"]), 2);
    assert_exit(&run_in(&env, &repo, &["trust", ".env"]), 0);
    let out = run_in(&env, &repo, &["print", "--access"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).starts_with("at-"), "{}", stdout(&out));
    fs::write(repo.join(".env"), format!("{}ATL_TOKEN_FILE=custom.json\n#\n", settings(&env)))
        .expect("write");
    let out = run_in(&env, &repo, &["print", "--access"]);
    assert_exit(&out, 2);
    assert_eq!(stdout(&out), "", "no token from a changed file");
}

#[test]
fn trust_lists_and_forgets_files() {
    let env = TestEnv::new();
    let repo = checkout(&env, &settings(&env));
    let list = |env: &TestEnv| stdout(&run_in(env, &repo, &["trust", "--list"]));
    assert_eq!(list(&env), "");
    assert_exit(&run_in(&env, &repo, &["trust"]), 0);
    let real = fs::canonicalize(repo.join(".env")).expect("real path");
    assert_eq!(list(&env), format!("{}\ttrusted\n", real.display()));
    let mode = mode_of(&env.path(".config/atl-token/trusted.json"));
    assert_eq!(mode & 0o777, 0o600, "the list is the user's alone");
    fs::write(repo.join(".env"), format!("{}#\n", settings(&env))).expect("write");
    assert!(list(&env).contains("changed since"), "{}", list(&env));

    assert_exit(&run_in(&env, &repo, &["trust", "--remove"]), 0);
    assert_eq!(list(&env), "");
    assert_exit(&run_in(&env, &repo, &["print"]), 2);
    assert_exit(&run_in(&env, &repo, &["trust", "--remove"]), 2);
}

/// The file `trust` records is held to the env file's rules: not another's to change.
#[test]
fn trust_refuses_a_file_others_can_change() {
    let env = TestEnv::new();
    let repo = checkout(&env, &settings(&env));
    set_mode(&repo.join(".env"), 0o666);
    let out = run_in(&env, &repo, &["trust"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("can be changed by other users"), "{}", stderr(&out));
    assert!(!env.path(".config/atl-token/trusted.json").exists());
}

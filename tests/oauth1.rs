//! OAuth 1.0a through an application link, end to end: `keygen`, `login` (callback and
//! `oob`), `print --header --url`, `api`, `refresh`, `status` and `logout`, against a test
//! server that plays Jira's provider and verifies every signature with the public key.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::oauth1::{CONSUMER_KEY, EXPIRES_IN, ISSUES, JiraServer};
use common::{
    StderrLines, assert_exit, atl_command, authorize, browser_get, free_port, mode_of, now, set_mode,
    status_of, stderr, stdout, wait_exit,
};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use serde_json::Value;

/// A folder with a key pair from `keygen`, a Jira test server that knows its public key, and
/// an env file for both.
struct Jira {
    dir: tempfile::TempDir,
    server: JiraServer,
    port: u16,
}

impl Jira {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let keygen =
            atl_command(dir.path(), &["keygen", "--out", ".", "--bits", "2048"]).output().expect("keygen");
        assert_exit(&keygen, 0);
        let public = std::fs::read_to_string(dir.path().join("atl-token-public.pem")).expect("public key");
        let jira = Self { dir, server: JiraServer::start(&public), port: free_port() };
        jira.write_env("");
        jira
    }

    fn write_env(&self, extra: &str) {
        let text = format!(
            "ATL_PROVIDER=oauth1\nATL_BASE_URL={}\nATL_CONSUMER_KEY={CONSUMER_KEY}\n\
             ATL_PRIVATE_KEY_FILE=atl-token-private.pem\nATL_REDIRECT_URI=http://127.0.0.1:{}/callback\n\
             ATL_HTTP_TIMEOUT=2\n{extra}",
            self.server.base_url(),
            self.port
        );
        std::fs::write(self.path(".env"), text).expect("write .env");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        atl_command(self.dir.path(), args).output().expect("run atl-token")
    }

    fn spawn(&self, args: &[&str]) -> Child {
        atl_command(self.dir.path(), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn atl-token")
    }

    /// Starts `login`, and returns it with the authorize URL it printed.
    fn start_login(&self, extra: &[&str]) -> (Child, StderrLines, url::Url) {
        let mut args = vec!["login", "--no-browser", "--timeout", "20s"];
        args.extend_from_slice(extra);
        let mut child = self.spawn(&args);
        let lines = StderrLines::take(&mut child);
        let line = lines.wait_line(|l| l.trim_start().starts_with("http://"));
        let url = url::Url::parse(line.trim()).expect("printed URL parses");
        (child, lines, url)
    }

    /// A complete login through the browser and the listener.
    fn login(&self) {
        let (mut child, lines, url) = self.start_login(&[]);
        lines.wait_line(|l| l.starts_with("Waiting"));
        let page = self.follow(&authorize(&url));
        assert_eq!(status_of(&page), 200, "{page}");
        let status = wait_exit(&mut child, Duration::from_secs(20));
        assert!(status.success(), "{}", lines.all());
    }

    /// The browser following a redirect to the listener.
    fn follow(&self, redirect: &url::Url) -> String {
        let target = format!("{}?{}", redirect.path(), redirect.query().unwrap_or_default());
        browser_get(self.port, &format!("127.0.0.1:{}", self.port), &target)
    }

    fn token(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path("token.json")).expect("token file")).expect("JSON")
    }

    /// A request as a shell script makes it: with the header `print --header` printed.
    fn request_with(
        &self,
        method: &str,
        target: &str,
        header_line: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let (name, value) = header_line.trim().split_once(": ").expect("Name: value");
        assert_eq!(name, "Authorization");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::new();
        let url = format!("{}{target}", self.server.base_url());
        let mut request = client.request(method.parse().expect("method"), url).header(name, value);
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body.to_owned());
        }
        let response = request.send().expect("the server answers");
        (response.status().as_u16(), response.text().expect("body"))
    }
}

#[test]
fn keygen_writes_a_key_pair_that_signs_and_verifies_and_keeps_it() {
    let jira = Jira::new();
    let private = jira.path("atl-token-private.pem");
    let public = jira.path("atl-token-public.pem");
    assert_eq!(mode_of(&private), 0o600);
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(&private).expect("read"))
        .expect("the private key is PKCS#8 RSA");
    let public_key = rsa::RsaPublicKey::from_public_key_pem(&std::fs::read_to_string(&public).expect("read"))
        .expect("SPKI");
    assert_eq!(key.to_public_key(), public_key, "the two files are one key pair");
    use rsa::signature::{SignatureEncoding, Signer, Verifier};
    let signature = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(key).sign(b"GET&x&y");
    let verifier = rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(public_key);
    verifier.verify(b"GET&x&y", &signature).expect("the public key verifies the private key's signature");
    assert!(!signature.to_bytes().is_empty());

    // What to paste, on stdout: the consumer key and name, the public key, the settings.
    let before = std::fs::read(&private).expect("read");
    let again = jira.run(&["keygen", "--bits", "2048"]);
    assert_exit(&again, 2);
    assert!(stderr(&again).contains("atl-token-private.pem exists"), "{}", stderr(&again));
    assert_eq!(std::fs::read(&private).expect("read"), before, "an existing key is kept");

    let forced = jira.run(&["keygen", "--bits", "2048", "--force"]);
    assert_exit(&forced, 0);
    let out = stdout(&forced);
    assert!(out.contains("Consumer Key:   atl-token-") && out.contains("Consumer Name:  atl-token"), "{out}");
    let printed = &out[out.find("-----BEGIN PUBLIC KEY-----").expect("public key")..];
    let printed = &printed[..printed.find("-----END PUBLIC KEY-----").expect("end") + 24];
    assert_eq!(printed, std::fs::read_to_string(&public).expect("read").trim_end());
    assert!(out.contains("ATL_PROVIDER=oauth1") && out.contains("ATL_PRIVATE_KEY_FILE=/"), "{out}");
    assert_ne!(std::fs::read(&private).expect("read"), before, "--force makes a new key");

    let small = jira.run(&["keygen", "--bits", "1024", "--out", "elsewhere"]);
    assert_exit(&small, 2);
    assert!(stderr(&small).contains("--bits 1024"), "{}", stderr(&small));
}

#[test]
fn login_saves_the_access_token_with_its_expiry() {
    let jira = Jira::new();
    let before = now();
    jira.login();
    let token = jira.token();
    let access = token["oauth_token"].as_str().expect("oauth_token");
    assert_eq!(jira.server.access_tokens(), vec![access.to_owned()]);
    let expires_at = token["expires_at"].as_i64().expect("expires_at");
    let five_years = i64::try_from(EXPIRES_IN).expect("fits");
    assert!((before + five_years..=now() + five_years).contains(&expires_at), "{token}");
    assert!(token["token_url"].as_str().expect("token_url").ends_with("/plugins/servlet/oauth/access-token"));
    assert_eq!(token["oauth_session_handle"].as_str().map(|s| s.starts_with("sh-")), Some(true));
    assert_eq!(mode_of(&jira.path("token.json")), 0o600);
    // Each of the two signed requests passed the server's check of its signature.
    let servlet: Vec<_> =
        jira.server.server.requests().into_iter().filter(|r| r.path.contains("-token")).collect();
    assert_eq!(servlet.len(), 2, "{servlet:?}");
    assert!(servlet.iter().all(|r| r.authorization.starts_with("OAuth ")));
}

#[test]
fn a_callback_for_another_request_token_is_refused_and_the_wait_goes_on() {
    let jira = Jira::new();
    let (mut child, lines, url) = jira.start_login(&[]);
    lines.wait_line(|l| l.starts_with("Waiting"));
    let page = browser_get(
        jira.port,
        &format!("127.0.0.1:{}", jira.port),
        "/callback?oauth_token=req-999&oauth_verifier=forged",
    );
    assert_eq!(status_of(&page), 400, "{page}");
    assert!(child.try_wait().expect("try_wait").is_none(), "the login still waits");
    let page = jira.follow(&authorize(&url));
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success(), "{}", lines.all());
    assert!(jira.token()["oauth_token"].is_string());
}

#[test]
fn login_out_of_band_reads_the_verifier_from_stdin() {
    let jira = Jira::new();
    let (mut child, lines, url) = jira.start_login(&["--oob"]);
    lines.wait_line(|l| l.starts_with("Paste the verification code"));
    // The server shows the code rather than redirecting.
    let addr = format!("127.0.0.1:{}", url.port().expect("port"));
    let page = common::http_raw(
        &addr,
        format!("GET {}?{} HTTP/1.1\r\nHost: {addr}\r\n\r\n", url.path(), url.query().unwrap_or_default())
            .as_bytes(),
    )
    .expect("authorize page");
    let code = page.split('\'').nth(1).expect("a quoted code");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "  {code}  ").expect("type the code");
    drop(stdin);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success(), "{}", lines.all());
    assert!(jira.token()["oauth_token"].as_str().is_some_and(|t| t.starts_with("acc-")));
}

#[test]
fn a_denied_consent_or_a_wrong_key_saves_nothing() {
    let jira = Jira::new();
    jira.server.deny();
    let (mut child, lines, url) = jira.start_login(&[]);
    lines.wait_line(|l| l.starts_with("Waiting"));
    let page = jira.follow(&authorize(&url));
    assert_eq!(status_of(&page), 400, "{page}");
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(4), "{}", lines.all());
    assert!(lines.all().contains("access was denied"), "{}", lines.all());
    assert!(!jira.path("token.json").exists());

    // A key that is not the one in the application link.
    let other = jira.run(&["keygen", "--out", "other", "--bits", "2048"]);
    assert_exit(&other, 2); // no such folder yet
    std::fs::create_dir(jira.path("other")).expect("mkdir");
    assert_exit(&jira.run(&["keygen", "--out", "other", "--bits", "2048"]), 0);
    jira.write_env("ATL_PRIVATE_KEY_FILE=other/atl-token-private.pem\n");
    let login = jira.run(&["login", "--no-browser", "--timeout", "5s"]);
    assert_exit(&login, 2);
    let err = stderr(&login);
    assert!(err.contains("oauth_problem=signature_invalid: the signature did not verify"), "{err}");
    assert!(!jira.path("token.json").exists(), "no token file");
    let leftovers: Vec<_> = std::fs::read_dir(jira.dir.path())
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with('.') && n != ".env")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn print_header_signs_one_request_that_the_server_accepts_once() {
    let jira = Jira::new();
    jira.login();
    let target = "/rest/api/2/search?jql=project%20%3D%20ABC&fields=summary,status";
    let header = jira.run(&["print", "--header", "--url", target]);
    assert_exit(&header, 0);
    let line = stdout(&header);
    assert!(
        line.starts_with("Authorization: OAuth ") && line.ends_with('\n') && line.lines().count() == 1,
        "{line}"
    );
    let (status, body) = jira.request_with("GET", target, &line, None);
    assert_eq!(status, 200, "{body}");
    // The same header again is a replay.
    let (status, body) = jira.request_with("GET", target, &line, None);
    assert_eq!((status, body.as_str()), (401, "oauth_problem=nonce_used"));

    // POST, to a full URL, with a JSON body (not signed) and a query string (signed).
    let full = format!("{}/rest/api/2/issue?updateHistory=true", jira.server.base_url());
    let post = jira.run(&["print", "--header", "--method", "post", "--url", &full]);
    assert_exit(&post, 0);
    let (status, body) =
        jira.request_with("POST", "/rest/api/2/issue?updateHistory=true", &stdout(&post), Some("{\"a\":1}"));
    assert_eq!(status, 200, "{body}");
    // Signed for another query string, it fails the signature check.
    let (status, body) =
        jira.request_with("POST", "/rest/api/2/issue?updateHistory=false", &stdout(&post), None);
    assert_eq!((status, body.as_str()), (401, "oauth_problem=signature_invalid"));

    let elsewhere = jira.run(&["print", "--header", "--url", "https://evil.example.com/rest/api/2/myself"]);
    assert_exit(&elsewhere, 2);
}

#[test]
fn print_without_a_request_explains_that_each_request_is_signed() {
    let jira = Jira::new();
    jira.login();
    for args in [
        &["print"][..],
        &["print", "--access"],
        &["print", "--refresh"],
        &["print", "--header"],
        &["print", "--env"],
    ] {
        let out = jira.run(args);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains("OAuth 1.0a needs a signature per request"), "{args:?}: {err}");
        assert!(err.contains("print --header --url") && err.contains("atl-token api"), "{err}");
        assert!(stdout(&out).is_empty());
    }
    let json = jira.run(&["print", "--json"]);
    assert_exit(&json, 0);
    assert_eq!(serde_json::from_str::<Value>(&stdout(&json)).expect("JSON"), jira.token());
    let base = jira.run(&["print", "--api-base"]);
    assert_eq!(stdout(&base), format!("{}\n", jira.server.base_url()));
}

#[test]
fn api_signs_each_request_and_each_page() {
    let jira = Jira::new();
    jira.login();
    let out = jira.run(&["api", "/rest/api/2/myself?expand=groups"]);
    assert_exit(&out, 0);
    let echoed: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!((echoed["method"].as_str(), echoed["query"].as_str()), (Some("GET"), Some("expand=groups")));

    let post = jira.run(&["api", "-X", "PUT", "-d", "{\"name\":\"x\"}", "/rest/api/2/issue/ABC-1"]);
    assert_exit(&post, 0);
    let form = jira.run(&[
        "api",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        "-d",
        "name=a+b&x=%2F",
        "/rest/api/2/form?q=1",
    ]);
    assert_exit(&form, 0);

    let pages = jira.run(&["api", "--paginate", "/rest/api/2/search?jql=project%3DABC"]);
    assert_exit(&pages, 0);
    let items: Value = serde_json::from_str(&stdout(&pages)).expect("JSON array");
    assert_eq!(items.as_array().map(Vec::len), Some(ISSUES), "{items}");
    let calls = jira.server.api_calls();
    let nonces: std::collections::HashSet<_> = calls.iter().map(|c| c.authorization.clone()).collect();
    assert_eq!(nonces.len(), calls.len(), "each request has its own signature");
}

#[test]
fn a_revoked_token_means_log_in_again() {
    let jira = Jira::new();
    jira.login();
    jira.server.revoke_all();
    let out = jira.run(&["api", "/rest/api/2/myself"]);
    assert_exit(&out, 4);
    let err = stderr(&out);
    assert!(err.contains("oauth_problem=token_rejected") && err.contains("atl-token login"), "{err}");
    assert!(jira.path("token.json").exists(), "the file is kept: only a login replaces it");
}

#[test]
fn refresh_touches_nothing_and_status_shows_the_expiry() {
    let jira = Jira::new();
    jira.login();
    let file = jira.path("token.json");
    let (bytes, mtime) = (std::fs::read(&file).expect("read"), modified(&file));
    let refresh = jira.run(&["refresh"]);
    assert_exit(&refresh, 0);
    let err = stderr(&refresh);
    assert!(
        err.contains("OAuth 1.0a access tokens are not refreshed") && err.contains("expires in"),
        "{err}"
    );
    assert_eq!((std::fs::read(&file).expect("read"), modified(&file)), (bytes, mtime));
    assert!(jira.server.server.requests().iter().all(|r| !r.path.starts_with("/rest/")), "no request");

    let status = jira.run(&["status"]);
    assert_exit(&status, 0);
    let out = stdout(&status);
    assert!(out.contains("OAuth 1.0a") && out.contains("access token   valid for"), "{out}");
    let json = jira.run(&["status", "--json"]);
    let doc: Value = serde_json::from_str(&stdout(&json)).expect("JSON");
    assert_eq!(doc["provider"], "oauth1");
    assert_eq!(doc["access_token"]["expires_at"]["unix"], jira.token()["expires_at"]);
    let check = jira.run(&["status", "--check"]);
    assert_exit(&check, 0);
    assert!(stdout(&check).starts_with("OK: the OAuth 1.0a access token expires in"), "{}", stdout(&check));
    // Past the warning window: five years ahead is within 2000 days.
    assert_exit(&jira.run(&["status", "--check", "--warn-days", "2000"]), 3);

    let logout = jira.run(&["logout"]);
    assert_exit(&logout, 0);
    assert!(!file.exists());
    assert!(stderr(&logout).contains("OAuth 1.0a has no endpoint to revoke"), "{}", stderr(&logout));
}

#[test]
fn a_bad_key_file_is_named_before_any_request() {
    let jira = Jira::new();
    let bad = |content: Option<&str>, mode: u32| {
        let key = jira.path("bad.pem");
        let _ = std::fs::remove_file(&key);
        if let Some(content) = content {
            std::fs::write(&key, content).expect("write");
            set_mode(&key, mode);
        }
        jira.write_env("ATL_PRIVATE_KEY_FILE=bad.pem\n");
        let out = jira.run(&["login", "--no-browser", "--timeout", "5s"]);
        assert_exit(&out, 2);
        stderr(&out)
    };
    let missing = bad(None, 0o600);
    assert!(
        missing.contains("bad.pem (ATL_PRIVATE_KEY_FILE in") && missing.contains("does not exist"),
        "{missing}"
    );
    assert!(missing.contains("atl-token keygen"), "{missing}");
    let text = bad(Some("not a key"), 0o600);
    assert!(text.contains("is not a PEM private key"), "{text}");
    let public = std::fs::read_to_string(jira.path("atl-token-public.pem")).expect("read");
    assert!(bad(Some(&public), 0o600).contains("holds a public key"));
    assert!(jira.server.server.requests().is_empty(), "no request was made");

    // Readable by others: a warning with the fix, and it still works.
    set_mode(&jira.path("atl-token-private.pem"), 0o644);
    jira.write_env("");
    let (mut child, lines, _) = jira.start_login(&[]);
    let warning = lines.wait_line(|l| l.starts_with("atl-token: warning: the private key file"));
    assert!(warning.contains("can be read by other users (mode 644): run `chmod 600 "), "{warning}");
    let _ = child.kill();
    let _ = child.wait();
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).expect("metadata").modified().expect("mtime")
}

/// oauthlib, an independent implementation, checks what atl-token signs: the headers
/// `print --header` prints, as a server would, and the known answers the unit tests use.
/// Needs `pip install -r tests/oauth1/requirements.txt`; `.ci/run` runs it.
#[cfg(feature = "e2e")]
#[test]
fn oauthlib_accepts_the_headers_atl_token_signs() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth1");
    let python = |args: &[&str]| {
        std::process::Command::new("python3").args(args).current_dir(&here).output().expect("run python3")
    };
    let known = python(&["known_answers.py", "--check"]);
    assert!(known.status.success(), "{}{}", stdout(&known), stderr(&known));

    let jira = Jira::new();
    jira.login();
    let public = jira.path("atl-token-public.pem");
    let verify = |method: &str, url: &str, header: &str| {
        let out = python(&["verify.py", method, url, header, public.to_str().expect("utf-8"), CONSUMER_KEY]);
        (out.status.success(), stdout(&out))
    };
    let base = jira.server.base_url();
    for (method, target) in [
        ("GET", "/rest/api/2/search?jql=project%20%3D%20%22A%20B%22&fields=summary,status&maxResults=5"),
        ("POST", "/rest/api/2/issue"),
        ("DELETE", "/rest/api/2/issue/ABC-1?deleteSubtasks=true"),
    ] {
        let out = jira.run(&["print", "--header", "--method", method, "--url", target]);
        assert_exit(&out, 0);
        let header = stdout(&out);
        let url = format!("{base}{target}");
        assert_eq!(verify(method, &url, &header), (true, "valid\n".to_owned()), "{method} {url}");
        // The checker can say no: the same header for another request fails.
        let (valid, said) = verify(method, &format!("{url}&extra=1"), &header);
        assert!(!valid, "{said}");
    }
}

//! Talking to the token endpoint: one POST, retried while the failure is transient.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::config::{CaFile, Config, OAuth2};
use crate::exit::Exit;
use crate::oauth::{self, Grant, TokenError};
use crate::provider::{Delivery, Rotation};

/// A current-thread runtime, built only by the paths that make a request or listen.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

/// `-v`: log each request on stderr.
static LOG_REQUESTS: AtomicBool = AtomicBool::new(false);

/// Turns on request logging (`-v`) for the rest of the process.
pub fn log_requests() {
    LOG_REQUESTS.store(true, Ordering::Relaxed);
}

/// Query parameters whose values are never logged.
const SECRET_PARAMS: [&str; 9] = [
    "code",
    "state",
    "access_token",
    "refresh_token",
    "client_secret",
    "token",
    "oauth_token",
    "oauth_verifier",
    "oauth_signature",
];

/// `url` for the log: secret query values and any of `secrets` replaced by `(redacted)`.
pub fn loggable(url: &url::Url, secrets: &[&str]) -> String {
    let mut shown = url.clone();
    if let Some(query) = url.query() {
        let parts: Vec<String> = query
            .split('&')
            .map(|part| {
                let name = part.split('=').next().unwrap_or_default();
                let decoded: String = url::form_urlencoded::parse(name.as_bytes()).map(|(k, _)| k).collect();
                if SECRET_PARAMS.contains(&decoded.as_str()) {
                    format!("{name}=(redacted)")
                } else {
                    part.to_owned()
                }
            })
            .collect();
        shown.set_query(Some(&parts.join("&")));
    }
    oauth::redact(shown.as_str(), secrets)
}

/// `url` for an error message: as [`loggable`] shows it, secret query values replaced.
pub fn shown(url: &url::Url) -> String {
    loggable(url, &[])
}

/// One line on stderr about a request, when `-v` asked for it.
pub fn log(line: impl FnOnce() -> String) {
    if LOG_REQUESTS.load(Ordering::Relaxed) {
        eprintln!("atl-token: {}", line());
    }
}

/// An answer larger than this is not a token answer; reading stops there.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// How hard to try before giving up.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Requests in all, the first included.
    pub attempts: u32,
    /// The wait before the second request; doubled before each further one.
    pub first_backoff: Duration,
    /// No new request starts after this much time.
    pub budget: Duration,
}

/// A refresh token is worth a few tries: losing the race to a 503 means a dead cron job.
pub const REFRESH: Retry =
    Retry { attempts: 4, first_backoff: Duration::from_millis(500), budget: Duration::from_secs(60) };
/// Authorization codes expire within seconds (10 on Data Center): one quick retry at most.
pub const CODE: Retry =
    Retry { attempts: 2, first_backoff: Duration::from_millis(300), budget: Duration::from_secs(8) };

/// The HTTP client for the token endpoint: no redirects followed, no proxy for loopback,
/// and the roots of `ATL_CA_FILE` trusted on top of the system's. Built before anything is
/// spent, so a bad CA file is a configuration error (exit 2), found before any request.
pub fn client(config: &Config) -> anyhow::Result<reqwest::Client> {
    client_trusting(config, None)
}

/// [`client`], trusting the roots of `extra` (a store's own CA file, such as
/// `VAULT_CACERT`) too.
pub fn client_trusting(config: &Config, extra: Option<&CaFile>) -> anyhow::Result<reqwest::Client> {
    // Err means a provider is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut client = reqwest::Client::builder()
        .timeout(config.http_timeout)
        // Shorter than the whole request's limit, so that a connect that hangs ends as a
        // connect failure, which is known to have sent nothing (and may be retried on Data
        // Center), rather than as a timeout of the request, which may have.
        .connect_timeout(config.http_timeout / 2)
        // Never resend the client secret to wherever a redirect points.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("atl-token/", env!("CARGO_PKG_VERSION")));
    // A proxy would see a loopback request, client secret or token included, in plain text,
    // and could not reach this machine's loopback anyway: the environment's proxy is used
    // for every other destination only.
    client = client.no_proxy();
    if let Some(proxy) = environment_proxy() {
        client = client.proxy(proxy);
    }
    for ca in config.ca_file.iter().chain(extra) {
        for root in read_roots(ca)? {
            client = client.add_root_certificate(root);
        }
    }
    client.build().map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {}", chain(&e, &[])))
}

/// The proxy the environment names (`https_proxy`, `http_proxy`, `all_proxy`, in either
/// case, with `NO_PROXY`), for every destination that is not on loopback.
fn environment_proxy() -> Option<reqwest::Proxy> {
    // As curl and reqwest do: under CGI, HTTP_PROXY may come from a request's `Proxy:` header.
    let cgi = std::env::var_os("REQUEST_METHOD").is_some();
    let var = |names: [&str; 4]| {
        names
            .iter()
            .filter(|n| !(cgi && **n == "HTTP_PROXY"))
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    };
    let https = var(["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]);
    let http = var(["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]);
    if https.is_none() && http.is_none() {
        return None;
    }
    let proxy = reqwest::Proxy::custom(move |url| {
        if crate::config::loopback_host(url).is_some() {
            return None;
        }
        if url.scheme() == "https" { https.clone() } else { http.clone() }
    });
    Some(proxy.no_proxy(reqwest::NoProxy::from_env()))
}

/// A CA bundle larger than this is not one (the system's whole bundle is about 200 KiB).
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

/// The certificates of a PEM bundle; at least one, or a usage error naming the file. Like
/// an env file, it must be one nobody else can write: it decides whom atl-token trusts.
fn read_roots(ca: &CaFile) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let path = ca.path.display();
    let bytes = crate::safe_path::read_trusted(&ca.path, &crate::safe_path::CA_FILE, MAX_CA_FILE)
        .map_err(|e| Exit::usage(format!("cannot use {path} ({}): {e:#}", ca.origin)))?
        .ok_or_else(|| Exit::usage(format!("cannot read {path} ({}): no such file", ca.origin)))?;
    match reqwest::Certificate::from_pem_bundle(&bytes) {
        Ok(roots) if !roots.is_empty() => Ok(roots),
        _ => Err(anyhow::Error::from(Exit::usage(format!(
            "{path} ({}) holds no PEM certificate: give the company CA's certificates, each \
             between -----BEGIN CERTIFICATE----- and -----END CERTIFICATE----- lines",
            ca.origin
        )))),
    }
}

/// Trades a grant for tokens at the provider's token endpoint.
pub async fn request_token(
    client: &reqwest::Client,
    config: &Config,
    oauth2: &OAuth2,
    grant: Grant<'_>,
    retry: Retry,
) -> Result<Map<String, Value>, TokenError> {
    let [first, second] = grant.secrets();
    let secrets = [oauth2.client_secret.expose(), first, second];
    let body = oauth::token_request_body(oauth2, &config.redirect.uri, grant);
    let request = Request::post(&oauth2.provider.token_url.url, body, &secrets);
    let rotation = oauth2.provider.rotation();
    send(client, &request, retry, rotation, |status, retry_after, body| {
        oauth::read_answer(status, retry_after, body, &secrets)
    })
    .await
}

/// Revokes a refresh token at the provider's revoke endpoint (RFC 7009). Sending it twice
/// does no harm, so every transient failure is worth another try.
pub async fn revoke(
    client: &reqwest::Client,
    oauth2: &OAuth2,
    revoke_url: &url::Url,
    refresh_token: &str,
) -> Result<(), TokenError> {
    let secrets = [oauth2.client_secret.expose(), refresh_token];
    let body = oauth::revoke_request_body(oauth2, refresh_token);
    let request = Request::post(revoke_url, body, &secrets);
    send(client, &request, REFRESH, Rotation::Grace, |status, retry_after, body| {
        oauth::read_revoke_answer(status, retry_after, body, &secrets)
    })
    .await
}

/// One authorized request, sent once: the caller decides what to retry. `headers` come from
/// the user; `Authorization` is atl-token's (`Bearer ...` or `OAuth ...`), and `secrets`, the
/// tokens in it, never appear in an error.
pub async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &url::Url,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    authorization: &str,
    secrets: &[&str],
) -> Result<Answer, TokenError> {
    let request = Request {
        method,
        url,
        content_type: None,
        authorization: Some(authorization),
        headers,
        body: body.map(<[u8]>::to_vec).unwrap_or_default(),
        secrets,
    };
    perform(client, &request).await
}

/// One GET that carries nothing of the user's (no token, no secret), sent once.
pub async fn get_public(client: &reqwest::Client, url: &url::Url) -> Result<Answer, TokenError> {
    let request = Request {
        method: reqwest::Method::GET,
        url,
        content_type: None,
        authorization: None,
        headers: &[],
        body: Vec::new(),
        secrets: &[],
    };
    perform(client, &request).await
}

/// One request, ready to be sent (again), and the secrets it carries.
struct Request<'a> {
    method: reqwest::Method,
    url: &'a url::Url,
    content_type: Option<&'static str>,
    /// The `Authorization` header's value.
    authorization: Option<&'a str>,
    headers: &'a [(String, String)],
    body: Vec<u8>,
    /// Removed from any error text.
    secrets: &'a [&'a str],
}

impl<'a> Request<'a> {
    /// A POST of a form or JSON body to a token or revoke endpoint.
    fn post(
        url: &'a url::Url,
        (content_type, body): (&'static str, Vec<u8>),
        secrets: &'a [&'a str],
    ) -> Self {
        Self {
            method: reqwest::Method::POST,
            url,
            content_type: Some(content_type),
            authorization: None,
            headers: &[],
            body,
            secrets,
        }
    }
}

/// Sends `request` and reads the answer with `read`, again while the failure is transient,
/// `retry` allows, and `rotation` says a resend after this failure cannot spend a dead token.
async fn send<T>(
    client: &reqwest::Client,
    request: &Request<'_>,
    retry: Retry,
    rotation: Rotation,
    read: impl Fn(u16, Option<&str>, &[u8]) -> Result<T, TokenError>,
) -> Result<T, TokenError> {
    let deadline = Instant::now() + retry.budget;
    let mut backoff = retry.first_backoff;
    let mut attempt = 1;
    loop {
        let result =
            perform(client, request).await.and_then(|a| read(a.status, a.retry_after.as_deref(), &a.body));
        let wait = match &result {
            Err(TokenError::Transient { retry_after, delivery, .. })
                if attempt < retry.attempts && rotation.may_resend(*delivery) =>
            {
                retry_after.unwrap_or(backoff).max(backoff)
            }
            _ => return result,
        };
        if Instant::now() + wait > deadline {
            return result;
        }
        log(|| format!("retrying in {} ({} of {} tries)", human_ms(wait), attempt + 1, retry.attempts));
        tokio::time::sleep(wait).await;
        backoff *= 2;
        attempt += 1;
    }
}

/// `850 ms`, `2.0 s`.
pub fn human_ms(duration: Duration) -> String {
    match duration.as_millis() {
        ms @ 0..1000 => format!("{ms} ms"),
        ms => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// What came back: status, `Retry-After`, and the body (at most [`MAX_ANSWER_BYTES`]).
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

async fn perform(client: &reqwest::Client, request: &Request<'_>) -> Result<Answer, TokenError> {
    let started = Instant::now();
    let result = perform_once(client, request).await;
    log(|| {
        let what = format!("{} {}", request.method, loggable(request.url, request.secrets));
        let took = human_ms(started.elapsed());
        match &result {
            Ok(answer) => format!("{what} -> {} ({took})", answer.status),
            Err(e) => format!("{what} -> failed: {e} ({took})"),
        }
    });
    result
}

async fn perform_once(client: &reqwest::Client, request: &Request<'_>) -> Result<Answer, TokenError> {
    let failed = |e: reqwest::Error| {
        let detail = chain(&e, request.secrets);
        if is_certificate_error(&e) {
            // Asking again will not make the certificate trusted.
            TokenError::Certificate { detail }
        } else {
            // A failed connect (TLS handshake included) sent nothing; any later failure may
            // have come after the server read the request.
            let delivery = if e.is_connect() { Delivery::NotSent } else { Delivery::Unknown };
            TokenError::Transient { detail, retry_after: None, delivery }
        }
    };
    let mut builder = client
        .request(request.method.clone(), request.url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .body(request.body.clone());
    if let Some(content_type) = request.content_type {
        builder = builder.header(reqwest::header::CONTENT_TYPE, content_type);
    }
    for (name, value) in request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if let Some(authorization) = request.authorization {
        builder = builder.header(reqwest::header::AUTHORIZATION, authorization);
    }
    let mut response = builder.send().await.map_err(failed)?;
    let status = response.status().as_u16();
    let retry_after =
        response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER_BYTES {
            return Err(TokenError::Malformed { status, detail: "the answer is larger than 1 MiB".into() });
        }
    }
    Ok(Answer { status, retry_after, body })
}

/// Whether TLS refused the server's certificate, somewhere in the error's causes.
fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref::<rustls::Error>() {
            return true;
        }
        // An io::Error hides the error it wraps from `source()`: step into it instead.
        cause = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// An error and its causes on one line, e.g. "error sending request for url (…): connection
/// refused", with the secrets that were sent removed.
fn chain(err: &dyn std::error::Error, secrets: &[&str]) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    oauth::redact(&text, secrets)
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn logged_urls_hide_codes_tokens_and_secrets() {
        let url = url::Url::parse(
            "http://127.0.0.1:9/cb?code=c0de&state=st&startAt=50&oauth_token=ot&q=my-secret-value",
        )
        .expect("url");
        let shown = loggable(&url, &["my-secret-value"]);
        assert_eq!(
            shown,
            "http://127.0.0.1:9/cb?code=(redacted)&state=(redacted)&startAt=50&oauth_token=(redacted)&q=(redacted)"
        );
        let plain = url::Url::parse("https://api.example.com/rest/api/3/myself").expect("url");
        assert_eq!(loggable(&plain, &[]), "https://api.example.com/rest/api/3/myself");
        assert_eq!(human_ms(Duration::from_millis(850)), "850 ms");
        assert_eq!(human_ms(Duration::from_millis(2000)), "2.0 s");
    }
}

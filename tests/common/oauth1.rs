//! A test server that plays Jira's OAuth 1.0a provider (application links): the request-token,
//! authorize and access-token endpoints, and a protected REST API. It verifies every
//! signature with the consumer's public key, from its own base-string code (not atl-token's),
//! and answers as net.oauth does: `oauth_problem=...` with 400 or 401.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use base64::Engine;
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::json;

use super::{Reply, Request, Server, lock, now};

pub const CONSUMER_KEY: &str = "atl-token-test";
/// What `oauth_expires_in` says: five years, as Jira's default.
pub const EXPIRES_IN: u64 = 5 * 365 * 24 * 3600;
pub const SERVLET: &str = "/plugins/servlet/oauth";
/// The protected listing pages through this many issues, one per page.
pub const ISSUES: usize = 3;

#[derive(Default)]
struct State {
    /// Request tokens issued, and the verifier each one got at consent.
    request_tokens: Vec<(String, Option<String>)>,
    access_tokens: HashSet<String>,
    nonces: HashSet<String>,
    /// Where consent sends the browser: the callback each request token was issued for.
    callbacks: Vec<(String, String)>,
    /// The user says no at consent.
    deny: bool,
    counter: u64,
}

pub struct JiraServer {
    pub server: Server,
    state: Arc<Mutex<State>>,
}

impl JiraServer {
    /// A server that knows the consumer [`CONSUMER_KEY`] with this public key (PEM, SPKI).
    pub fn start(public_pem: &str) -> Self {
        let key = rsa::RsaPublicKey::from_public_key_pem(public_pem).expect("a public key PEM");
        let verifier = rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(key);
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let server = Server::start(move |request| answer(&shared, &verifier, request));
        Self { server, state }
    }

    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    /// The user denies access at the next consent.
    pub fn deny(&self) {
        lock(&self.state).deny = true;
    }

    /// Every access token stops working, as when a user revokes them.
    pub fn revoke_all(&self) {
        lock(&self.state).access_tokens.clear();
    }

    pub fn access_tokens(&self) -> Vec<String> {
        lock(&self.state).access_tokens.iter().cloned().collect()
    }

    /// The requests to the REST API, as received.
    pub fn api_calls(&self) -> Vec<Request> {
        self.server.requests().into_iter().filter(|r| r.path.starts_with("/rest/")).collect()
    }
}

/// RFC 5849 section 3.6, written again here so that the server does not trust atl-token's.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `OAuth` header's parameters, decoded.
fn header_params(authorization: &str) -> Option<Vec<(String, String)>> {
    let rest = authorization.strip_prefix("OAuth ")?;
    rest.split(',')
        .map(|part| {
            let (name, value) = part.trim().split_once('=')?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            let decoded = percent_decode(value)?;
            Some((name.to_owned(), decoded))
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn problem(status: u16, name: &str) -> Reply {
    Reply::Raw {
        status,
        headers: vec![("Content-Type", "application/x-www-form-urlencoded".into())],
        body: format!("oauth_problem={name}").into_bytes(),
    }
}

fn form(body: String) -> Reply {
    Reply::Raw { status: 200, headers: vec![("Content-Type", "text/plain".into())], body: body.into_bytes() }
}

/// Checks a request's signature: the consumer, the method, the time, the nonce, and the
/// RSA-SHA1 signature over the base string of what arrived. Returns the `oauth_*` parameters.
fn verify(
    state: &mut State,
    verifier: &rsa::pkcs1v15::VerifyingKey<sha1::Sha1>,
    request: &Request,
    base: &str,
) -> Result<Vec<(String, String)>, Reply> {
    let oauth = header_params(&request.authorization).ok_or_else(|| problem(401, "parameter_absent"))?;
    let get = |name: &str| oauth.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if get("oauth_consumer_key").as_deref() != Some(CONSUMER_KEY) {
        return Err(problem(401, "consumer_key_unknown"));
    }
    if get("oauth_signature_method").as_deref() != Some("RSA-SHA1") {
        return Err(problem(400, "signature_method_rejected"));
    }
    let timestamp: i64 = get("oauth_timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
    if (timestamp - now()).abs() > 300 {
        return Err(problem(401, "timestamp_refused"));
    }
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .chain(oauth.iter().filter(|(k, _)| k != "oauth_signature" && k != "realm").cloned())
        .collect();
    if request.content_type.starts_with("application/x-www-form-urlencoded") {
        params.extend(url::form_urlencoded::parse(&request.body).into_owned());
    }
    let mut encoded: Vec<String> =
        params.iter().map(|(k, v)| format!("{}={}", percent(k), percent(v))).collect();
    encoded.sort();
    let base_string =
        format!("{}&{}&{}", request.method, percent(&format!("{base}{path}")), percent(&encoded.join("&")));
    let signature = get("oauth_signature")
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .and_then(|bytes| rsa::pkcs1v15::Signature::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| problem(401, "signature_invalid"))?;
    if verifier.verify(base_string.as_bytes(), &signature).is_err() {
        return Err(problem(401, "signature_invalid"));
    }
    // Checked after the signature, as a replay carries a valid one.
    let nonce = get("oauth_nonce").unwrap_or_default();
    if !state.nonces.insert(format!("{timestamp}:{nonce}")) {
        return Err(problem(401, "nonce_used"));
    }
    Ok(oauth)
}

fn answer(
    state: &Mutex<State>,
    verifier: &rsa::pkcs1v15::VerifyingKey<sha1::Sha1>,
    request: &Request,
) -> Reply {
    let base = "http://".to_owned() + &request.host;
    let path = request.path.split('?').next().unwrap_or_default().to_owned();
    let mut state = lock(state);
    if path == format!("{SERVLET}/authorize") {
        return consent(&mut state, request);
    }
    let oauth = match verify(&mut state, verifier, request, &base) {
        Ok(oauth) => oauth,
        Err(reply) => return reply,
    };
    let get = |name: &str| oauth.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    state.counter += 1;
    let n = state.counter;
    if path == format!("{SERVLET}/request-token") && request.method == "POST" {
        let Some(callback) = get("oauth_callback") else { return problem(400, "parameter_absent") };
        let token = format!("req-{n}");
        state.request_tokens.push((token.clone(), None));
        state.callbacks.push((token.clone(), callback));
        return form(format!("oauth_token={token}&oauth_token_secret=rs-{n}&oauth_callback_confirmed=true"));
    }
    if path == format!("{SERVLET}/access-token") && request.method == "POST" {
        let (token, verifier) = (get("oauth_token").unwrap_or_default(), get("oauth_verifier"));
        let Some(i) = state.request_tokens.iter().position(|(t, _)| *t == token) else {
            return problem(401, "token_rejected");
        };
        if state.request_tokens[i].1.is_none() || state.request_tokens[i].1 != verifier {
            return problem(401, "permission_denied");
        }
        // A request token is traded once.
        state.request_tokens.remove(i);
        let access = format!("acc-{n}");
        state.access_tokens.insert(access.clone());
        return form(format!(
            "oauth_token={access}&oauth_token_secret=as-{n}&oauth_expires_in={EXPIRES_IN}&\
             oauth_session_handle=sh-{n}&oauth_authorization_expires_in={EXPIRES_IN}"
        ));
    }
    if path.starts_with("/rest/") {
        if !get("oauth_token").is_some_and(|t| state.access_tokens.contains(&t)) {
            return problem(401, "token_rejected");
        }
        return protected(request, &path);
    }
    Reply::Json(404, json!({"message": "no such endpoint"}))
}

/// The user's consent: to the callback with the verifier, or, for `oob`, a page showing it.
fn consent(state: &mut State, request: &Request) -> Reply {
    let query = request.path.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let token = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "oauth_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let Some(i) = state.request_tokens.iter().position(|(t, _)| *t == token) else {
        return Reply::Json(400, json!({"message": "unknown request token"}));
    };
    let verifier = if state.deny { "denied".to_owned() } else { format!("ver-{token}") };
    state.request_tokens[i].1 = Some(verifier.clone());
    let callback =
        state.callbacks.iter().find(|(t, _)| *t == token).map(|(_, c)| c.clone()).unwrap_or_default();
    if callback == "oob" {
        let page = format!("<html><body>Your verification code is '{verifier}'.</body></html>");
        return Reply::Raw {
            status: 200,
            headers: vec![("Content-Type", "text/html".into())],
            body: page.into_bytes(),
        };
    }
    let mut location = url::Url::parse(&callback).expect("the callback is a URL");
    location.query_pairs_mut().append_pair("oauth_token", &token).append_pair("oauth_verifier", &verifier);
    Reply::Raw { status: 302, headers: vec![("Location", location.to_string())], body: Vec::new() }
}

/// The REST API: `/rest/api/2/search` pages through [`ISSUES`] issues one at a time (Jira's
/// `startAt`); anything else echoes the request.
fn protected(request: &Request, path: &str) -> Reply {
    let query = request.path.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    };
    if path == "/rest/api/2/search" {
        let start: usize = param("startAt").and_then(|s| s.parse().ok()).unwrap_or(0);
        let issues: Vec<_> =
            (start..ISSUES.min(start + 1)).map(|i| json!({"key": format!("ABC-{}", i + 1)})).collect();
        return Reply::Json(
            200,
            json!({"startAt": start, "maxResults": 1, "total": ISSUES, "issues": issues}),
        );
    }
    Reply::Json(
        200,
        json!({
            "method": request.method,
            "path": path,
            "query": query,
            "body": String::from_utf8_lossy(&request.body),
        }),
    )
}

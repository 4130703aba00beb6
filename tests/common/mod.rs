//! Shared test fixtures: a real HTTP authorization server on 127.0.0.1:0, a hermetic
//! environment for the real binary, and a browser played over a raw TCP socket.

#![allow(dead_code, reason = "each test file uses a different part of the fixtures")]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub mod fleet;
pub mod oauth1;
pub mod proxy;

/// A request as the test server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub content_type: String,
    pub authorization: String,
    pub host: String,
    pub body: Vec<u8>,
    /// Every header, as received.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A header's value, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body's parameters, from JSON or a form.
    pub fn params(&self) -> Vec<(String, String)> {
        if self.content_type.starts_with("application/json") {
            let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&self.body) else { return vec![] };
            map.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned())).collect()
        } else {
            url::form_urlencoded::parse(&self.body).into_owned().collect()
        }
    }

    pub fn param(&self, name: &str) -> Option<String> {
        self.params().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// What the test server does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    Json(u16, Value),
    Raw {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Promises `declared` bytes of body, sends `body`, and closes the connection.
    Truncated {
        status: u16,
        body: Vec<u8>,
        declared: usize,
    },
    /// Waits, then closes the connection without a word.
    Hang(Duration),
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 that records every request, over TLS if given a
/// server configuration.
pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    scheme: &'static str,
}

impl Server {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(handler, None)
    }

    pub fn start_with(
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (recorded, counted) = (requests.clone(), connections.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counted.fetch_add(1, Ordering::SeqCst);
                let (handler, recorded, tls) = (handler.clone(), recorded.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve(stream, &*handler, &recorded),
                    Some(tls) => {
                        let Ok(connection) = rustls::ServerConnection::new(tls) else { return };
                        serve(rustls::StreamOwned::new(connection, stream), &*handler, &recorded);
                    }
                });
            }
        });
        Self { addr, requests, connections, scheme }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Connections accepted, whether or not a request came through.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        lock(&self.requests).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One HTTP/1.1 request from `reader`: the request line, every header, and a body of
/// `Content-Length` bytes. `None` when the connection ends first.
pub fn read_request<S: Read>(reader: &mut BufReader<S>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let value = |name: &str| {
        headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let (content_type, authorization, host) = (value("content-type"), value("authorization"), value("host"));
    let mut body = vec![0; value("content-length").parse().unwrap_or(0)];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, content_type, authorization, host, body, headers })
}

fn serve<S: Read + Write>(stream: S, handler: &Handler, recorded: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else { return };
    lock(recorded).push(request.clone());
    let mut stream = reader.into_inner();
    let head = |status: u16, headers: &[(&str, String)], length: usize| {
        let mut head = format!("HTTP/1.1 {status} Test\r\nContent-Length: {length}\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head + "\r\n"
    };
    let bytes = match handler(&request) {
        Reply::Json(status, value) => {
            let body = value.to_string();
            head(status, &[("Content-Type", "application/json".into())], body.len()) + &body
        }
        Reply::Raw { status, headers, body } => {
            let mut out = head(status, &headers, body.len()).into_bytes();
            out.extend_from_slice(&body);
            let _ = stream.write_all(&out);
            return;
        }
        Reply::Truncated { status, body, declared } => {
            let mut out = head(status, &[("Content-Type", "application/json".into())], declared).into_bytes();
            out.extend_from_slice(&body);
            let _ = stream.write_all(&out);
            let _ = stream.flush();
            return;
        }
        Reply::Hang(duration) => {
            std::thread::sleep(duration);
            return;
        }
    };
    let _ = stream.write_all(bytes.as_bytes());
}

/// The one site the test server's token reaches, unless a test sets others.
pub const SITE_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const SITE_URL: &str = "https://example.atlassian.net";
/// Where the test server lists the sites a token reaches.
pub const RESOURCES_PATH: &str = "/oauth/token/accessible-resources";
/// Where a Cloud site names its own cloud id, publicly (served by the [`AuthServer`] too).
pub const TENANT_INFO_PATH: &str = "/_edge/tenant_info";

/// The client the fixtures configure.
pub const CLIENT_ID: &str = "client-1";
pub const CLIENT_SECRET: &str = "secret-1";
/// The code the authorization server hands out through the browser.
pub const CODE: &str = "code-1";

/// Which Atlassian authorization server an [`AuthServer`] plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Atlassian Cloud's token endpoint at `/oauth/token`: JSON or form bodies, the fixed
    /// [`CODE`].
    Cloud,
    /// Data Center's provider at `/rest/oauth2/latest/{authorize,token,revoke}`: form bodies
    /// only, codes issued by the authorize endpoint, bound to a PKCE S256 challenge and dead
    /// after 10 seconds, rotation with no grace period, and revoke.
    DataCenter,
}

/// The Data Center provider's endpoints, below the base URL.
pub const DC_PATH: &str = "/rest/oauth2/latest";

/// A token endpoint that rotates refresh tokens as Atlassian does: each refresh token works
/// once; a spent or unknown one gets HTTP 403 `unauthorized_client` (Cloud) or 400
/// `invalid_grant` (Data Center).
pub struct AuthServer {
    pub server: Server,
    pub mode: Mode,
    state: Arc<Mutex<AuthState>>,
}

/// A code issued by the Data Center authorize endpoint.
struct IssuedCode {
    challenge: String,
    redirect_uri: String,
    issued: Instant,
}

struct AuthState {
    live_refresh: HashSet<String>,
    issued: u64,
    /// Replies served, in order, before normal service.
    faults: VecDeque<Reply>,
    /// Time taken by each normal answer.
    delay: Duration,
    /// `expires_in` of issued access tokens.
    access_ttl: i64,
    /// A rotated refresh token keeps working this long, as on Atlassian Cloud (10 minutes).
    reuse_window: Duration,
    rotated: Vec<(String, Instant)>,
    /// Each answer takes a random time up to this (on top of `delay`).
    jitter: Duration,
    rng: u64,
    /// Data Center: codes issued by the authorize endpoint, and how long they live.
    codes: Vec<(String, IssuedCode)>,
    code_ttl: Duration,
    /// Token requests to handle in full (rotating) and then answer by closing the connection.
    lost_answers: usize,
    /// Refresh tokens revoked through the revoke endpoint.
    revoked: Vec<String>,
    /// Cloud: what `/oauth/token/accessible-resources` lists.
    sites: Value,
    /// When each access token was issued, and for how long.
    access_issued: HashMap<String, (Instant, i64)>,
    /// Refresh grants answered with a new pair.
    refreshes: u64,
    /// Refresh grants that sent a refresh token this server issued but had already rotated.
    superseded: u64,
    /// Requests with an access token (sites, API) to answer with 401 whatever the token.
    bearer_refused: usize,
    /// What API requests (below `/ex/` or `/rest/`) get, once their access token passed.
    api: Option<Arc<Handler>>,
    /// Client-credentials grants answered with an access token.
    credential_grants: u64,
    /// The scopes a client-credentials request may ask for; others get `invalid_scope`.
    credential_scopes: Vec<String>,
}

impl AuthServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// An [`AuthServer`] in Data Center mode.
    pub fn datacenter() -> Self {
        Self::start_in(Mode::DataCenter, None)
    }

    /// An [`AuthServer`] over TLS with this server configuration.
    pub fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Self::start_in(Mode::Cloud, tls)
    }

    pub fn start_in(mode: Mode, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let state = Arc::new(Mutex::new(AuthState {
            live_refresh: HashSet::new(),
            issued: 0,
            faults: VecDeque::new(),
            delay: Duration::ZERO,
            access_ttl: 3600,
            reuse_window: Duration::ZERO,
            rotated: Vec::new(),
            jitter: Duration::ZERO,
            rng: 0x9e37_79b9_7f4a_7c15,
            codes: Vec::new(),
            code_ttl: Duration::from_secs(10),
            lost_answers: 0,
            revoked: Vec::new(),
            sites: json!([{"id": SITE_ID, "url": SITE_URL, "name": "example",
                           "scopes": ["read:jira-work", "offline_access"], "avatarUrl": "https://x/a.png"}]),
            bearer_refused: 0,
            api: None,
            access_issued: HashMap::new(),
            refreshes: 0,
            superseded: 0,
            credential_grants: 0,
            credential_scopes: ["read:jira-work", "write:jira-work", "READ", "WRITE"]
                .map(String::from)
                .to_vec(),
        }));
        let shared = state.clone();
        let server = Server::start_with(move |request| answer(&shared, mode, request), tls);
        Self { server, mode, state }
    }

    /// The Data Center base URL (the server's root).
    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    /// Makes the next `n` token requests rotate as usual, then close the connection instead of
    /// answering: the answer is lost after the server acted on the request.
    pub fn lose_answers(&self, n: usize) {
        lock(&self.state).lost_answers = n;
    }

    /// Data Center: how long an authorization code may wait before it is exchanged.
    pub fn set_code_ttl(&self, ttl: Duration) {
        lock(&self.state).code_ttl = ttl;
    }

    /// Sets what the accessible-resources endpoint lists.
    pub fn set_sites(&self, sites: Value) {
        lock(&self.state).sites = sites;
    }

    /// Serves API requests (paths below `/ex/` or `/rest/` other than OAuth's) with `handler`.
    pub fn set_api(&self, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) {
        lock(&self.state).api = Some(Arc::new(handler));
    }

    /// Requests that reached the API handler (or were refused on their way there).
    pub fn api_calls(&self) -> Vec<Request> {
        self.server.requests().into_iter().filter(|r| is_api(&r.path)).collect()
    }

    /// Makes the next `n` requests with an access token (sites, API) get 401, as for a
    /// revoked token.
    pub fn refuse_access_tokens(&self, n: usize) {
        lock(&self.state).bearer_refused = n;
    }

    /// Requests that reached the accessible-resources endpoint.
    pub fn site_calls(&self) -> Vec<Request> {
        self.server.requests().into_iter().filter(|r| r.path == RESOURCES_PATH).collect()
    }

    /// Refresh tokens revoked through the revoke endpoint.
    pub fn revoked(&self) -> Vec<String> {
        lock(&self.state).revoked.clone()
    }

    /// Issues a token pair directly (as if from an earlier login) and returns
    /// `(access_token, refresh_token)`.
    pub fn issue(&self) -> (String, String) {
        issue(&mut lock(&self.state))
    }

    /// Spends a refresh token, as a refresh whose answer never arrived would have.
    pub fn spend(&self, refresh_token: &str) {
        lock(&self.state).live_refresh.remove(refresh_token);
    }

    pub fn is_live(&self, refresh_token: &str) -> bool {
        lock(&self.state).live_refresh.contains(refresh_token)
    }

    pub fn push_fault(&self, reply: Reply) {
        lock(&self.state).faults.push_back(reply);
    }

    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }

    /// `expires_in` of the access tokens issued from now on.
    pub fn set_access_ttl(&self, seconds: i64) {
        lock(&self.state).access_ttl = seconds;
    }

    /// Client-credentials grants answered with an access token.
    pub fn credential_grants(&self) -> u64 {
        lock(&self.state).credential_grants
    }

    /// Refresh grants answered with a new pair.
    pub fn refreshes(&self) -> u64 {
        lock(&self.state).refreshes
    }

    /// Refresh grants that sent a refresh token this server had already rotated.
    pub fn superseded(&self) -> u64 {
        lock(&self.state).superseded
    }

    /// Whether `access_token` was issued here and had not expired at `at`.
    pub fn access_valid_at(&self, access_token: &str, at: Instant) -> bool {
        let state = lock(&self.state);
        state.access_issued.get(access_token).is_some_and(|(issued, ttl)| {
            at >= *issued
                && at.duration_since(*issued) < Duration::from_secs(u64::try_from(*ttl).unwrap_or(0))
        })
    }

    /// Lets a rotated refresh token work for `window` more, as Atlassian does.
    pub fn set_reuse_window(&self, window: Duration) {
        lock(&self.state).reuse_window = window;
    }

    /// Makes each answer take a random extra time up to `jitter`.
    pub fn set_jitter(&self, jitter: Duration) {
        lock(&self.state).jitter = jitter;
    }

    /// Whether this server ever issued `refresh_token`.
    pub fn issued(&self, refresh_token: &str) -> bool {
        was_issued(&lock(&self.state), refresh_token, "rt-")
    }

    fn token_path(&self) -> String {
        token_path(self.mode)
    }

    pub fn token_url(&self) -> String {
        self.server.url(&self.token_path())
    }

    /// Requests that reached the token endpoint.
    pub fn token_calls(&self) -> Vec<Request> {
        let path = self.token_path();
        self.server.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Requests that reached the revoke endpoint.
    pub fn revoke_calls(&self) -> Vec<Request> {
        let path = format!("{DC_PATH}/revoke");
        self.server.requests().into_iter().filter(|r| r.path == path).collect()
    }
}

/// xorshift64: enough randomness for test timing, no crate needed.
pub fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Whether `token` (`at-N` or `rt-N`, by `prefix`) is one this server handed out.
fn was_issued(state: &AuthState, token: &str, prefix: &str) -> bool {
    let n: Option<u64> = token.strip_prefix(prefix).and_then(|n| n.parse().ok());
    n.is_some_and(|n| (1..=state.issued).contains(&n))
}

fn issue(state: &mut AuthState) -> (String, String) {
    state.issued += 1;
    let pair = (format!("at-{}", state.issued), format!("rt-{}", state.issued));
    state.live_refresh.insert(pair.1.clone());
    let ttl = state.access_ttl;
    state.access_issued.insert(pair.0.clone(), (Instant::now(), ttl));
    pair
}

/// Whether `path` is an API path rather than an OAuth endpoint.
fn is_api(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    (path.starts_with("/ex/") || path.starts_with("/rest/")) && !path.starts_with(DC_PATH)
}

fn token_path(mode: Mode) -> String {
    match mode {
        Mode::Cloud => "/oauth/token".to_owned(),
        Mode::DataCenter => format!("{DC_PATH}/token"),
    }
}

/// The S256 challenge for a verifier, computed here independently of atl-token.
pub fn s256(verifier: &str) -> String {
    use base64::Engine;
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::Json(status, json!({"error": error, "error_description": description}))
}

fn answer(state: &Mutex<AuthState>, mode: Mode, request: &Request) -> Reply {
    let delay = {
        let mut state = lock(state);
        if let Some(fault) = state.faults.pop_front() {
            return fault;
        }
        let jitter = u64::try_from(state.jitter.as_micros()).unwrap_or(u64::MAX);
        let extra = if jitter == 0 { 0 } else { next_random(&mut state.rng) % jitter };
        state.delay + Duration::from_micros(extra)
    };
    std::thread::sleep(delay);
    let mut state = lock(state);
    let path = request.path.split('?').next().unwrap_or_default();
    if mode == Mode::DataCenter && request.method == "GET" && path == format!("{DC_PATH}/authorize") {
        return serve_authorize(&mut state, request);
    }
    if mode == Mode::Cloud && request.method == "GET" && path == TENANT_INFO_PATH {
        // A Cloud site's public tenant info: no token needed.
        return Reply::Json(200, json!({"cloudId": SITE_ID}));
    }
    let sites = mode == Mode::Cloud && request.method == "GET" && path == RESOURCES_PATH;
    if sites || is_api(path) {
        // Any access token this server issued is good; others get 401.
        let token = request.authorization.strip_prefix("Bearer ").unwrap_or_default();
        if !was_issued(&state, token, "at-") || state.bearer_refused > 0 {
            state.bearer_refused = state.bearer_refused.saturating_sub(1);
            return Reply::Json(401, json!({"code": 401, "message": "Unauthorized"}));
        }
        if sites {
            return Reply::Json(200, state.sites.clone());
        }
        let Some(api) = state.api.clone() else { return Reply::Json(404, json!({"error": "no API here"})) };
        drop(state);
        return api(request);
    }
    if request.method != "POST" {
        return Reply::Json(404, json!({"error": "not_found"}));
    }
    if mode == Mode::DataCenter && !request.content_type.starts_with("application/x-www-form-urlencoded") {
        // Data Center reads form bodies only: a JSON body carries no parameters.
        return oauth_error(400, "invalid_request", "Missing parameters: grant_type, client_id");
    }
    let param = |name| request.param(name).unwrap_or_default();
    if param("client_id") != CLIENT_ID || param("client_secret") != CLIENT_SECRET {
        if param("grant_type") == "client_credentials" {
            return oauth_error(401, "invalid_client", "Client authentication failed");
        }
        return oauth_error(401, "access_denied", "Unauthorized");
    }
    if path == token_path(mode) && param("grant_type") == "client_credentials" {
        return client_credentials(&mut state, mode, &param("scope"));
    }
    if mode == Mode::DataCenter && path == format!("{DC_PATH}/revoke") {
        let token = param("token");
        state.live_refresh.remove(&token);
        state.revoked.push(token);
        return Reply::Raw { status: 200, headers: vec![], body: vec![] };
    }
    if path != token_path(mode) {
        return Reply::Json(404, json!({"error": "not_found"}));
    }
    let accepted = match (param("grant_type").as_str(), mode) {
        ("authorization_code", Mode::Cloud) => Ok(param("code") == CODE),
        ("authorization_code", Mode::DataCenter) => exchange_code(&mut state, request),
        ("refresh_token", _) => {
            if mode == Mode::DataCenter && param("redirect_uri").is_empty() {
                return oauth_error(400, "invalid_request", "Missing parameter: redirect_uri");
            }
            let token = param("refresh_token");
            let window = state.reuse_window;
            let in_window = state.rotated.iter().any(|(t, at)| *t == token && at.elapsed() < window);
            if state.live_refresh.remove(&token) {
                state.rotated.push((token, Instant::now()));
                state.refreshes += 1;
                Ok(true)
            } else {
                if was_issued(&state, &token, "rt-") {
                    state.superseded += 1;
                }
                if in_window {
                    state.refreshes += 1;
                }
                Ok(in_window)
            }
        }
        _ => return Reply::Json(400, json!({"error": "unsupported_grant_type"})),
    };
    match (accepted, mode) {
        (Ok(true), _) => {}
        (Ok(false), Mode::Cloud) => {
            return oauth_error(403, "unauthorized_client", "refresh_token is invalid");
        }
        (Ok(false), Mode::DataCenter) => return oauth_error(400, "invalid_grant", "Token is invalid"),
        (Err(reason), _) => return oauth_error(400, "invalid_grant", reason),
    }
    let (access, refresh) = issue(&mut state);
    if state.lost_answers > 0 {
        state.lost_answers -= 1;
        return Reply::Hang(Duration::ZERO);
    }
    let scope = match mode {
        Mode::Cloud => "read:jira-work offline_access",
        Mode::DataCenter => "READ",
    };
    Reply::Json(
        200,
        json!({"access_token": access, "refresh_token": refresh, "expires_in": state.access_ttl,
               "token_type": "Bearer", "scope": scope}),
    )
}

/// A service account's token: an access token and no refresh token. Data Center needs the
/// scopes asked for; on Cloud they are optional. A scope the credential lacks gets
/// `invalid_scope`.
fn client_credentials(state: &mut AuthState, mode: Mode, scope: &str) -> Reply {
    if mode == Mode::DataCenter && scope.is_empty() {
        return oauth_error(400, "invalid_request", "Missing parameter: scope");
    }
    if let Some(bad) = scope.split_whitespace().find(|s| !state.credential_scopes.iter().any(|c| c == s)) {
        return oauth_error(400, "invalid_scope", &format!("scope {bad} is not granted to this client"));
    }
    let (access, refresh) = issue(state);
    state.live_refresh.remove(&refresh);
    state.credential_grants += 1;
    if state.lost_answers > 0 {
        state.lost_answers -= 1;
        return Reply::Hang(Duration::ZERO);
    }
    let granted = if scope.is_empty() { "read:jira-work" } else { scope };
    Reply::Json(
        200,
        json!({"access_token": access, "expires_in": state.access_ttl, "token_type": "Bearer", "scope": granted}),
    )
}

/// Data Center's authorize endpoint, consent included: checks the request and redirects to
/// the client's redirect URI with a new code bound to the PKCE challenge.
fn serve_authorize(state: &mut AuthState, request: &Request) -> Reply {
    let query = request.path.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let bad = |message: &str| Reply::Raw { status: 400, headers: vec![], body: message.as_bytes().to_vec() };
    if param("client_id").as_deref() != Some(CLIENT_ID) || param("response_type").as_deref() != Some("code") {
        return bad("client_id or response_type is wrong");
    }
    if param("audience").is_some() || param("prompt").is_some() {
        return bad("audience and prompt are Atlassian Cloud parameters");
    }
    let (Some(challenge), Some("S256")) =
        (param("code_challenge"), param("code_challenge_method").as_deref())
    else {
        return bad("code_challenge with code_challenge_method=S256 is required");
    };
    let (Some(redirect_uri), Some(state_param)) = (param("redirect_uri"), param("state")) else {
        return bad("redirect_uri and state are required");
    };
    // The provider takes the whole scope value as one scope: "READ WRITE" is no scope it knows.
    if param("scope").is_some_and(|scope| scope.contains(' ')) {
        let mut location = url::Url::parse(&redirect_uri).expect("redirect URI is a URL");
        location
            .query_pairs_mut()
            .append_pair("error", "invalid_scope")
            .append_pair("error_description", "The requested scope is invalid")
            .append_pair("state", &state_param);
        return Reply::Raw { status: 302, headers: vec![("Location", location.to_string())], body: vec![] };
    }
    state.issued += 1;
    let code = format!("dc-code-{}", state.issued);
    state.codes.push((
        code.clone(),
        IssuedCode { challenge, redirect_uri: redirect_uri.clone(), issued: Instant::now() },
    ));
    let mut location = url::Url::parse(&redirect_uri).expect("redirect URI is a URL");
    location.query_pairs_mut().append_pair("code", &code).append_pair("state", &state_param);
    Reply::Raw { status: 302, headers: vec![("Location", location.to_string())], body: vec![] }
}

/// Data Center's code exchange: single use, within the code's lifetime, same redirect URI,
/// and a verifier whose S256 hash is the challenge.
fn exchange_code(state: &mut AuthState, request: &Request) -> Result<bool, &'static str> {
    let param = |name| request.param(name).unwrap_or_default();
    let code = param("code");
    let Some(at) = state.codes.iter().position(|(c, _)| *c == code) else { return Ok(false) };
    let (_, issued) = state.codes.remove(at);
    if issued.issued.elapsed() > state.code_ttl {
        return Err("Authorization code expired");
    }
    if issued.redirect_uri != param("redirect_uri") {
        return Err("redirect_uri does not match");
    }
    if s256(&param("code_verifier")) != issued.challenge {
        return Err("PKCE verification failed");
    }
    Ok(true)
}

/// A temp folder with an env file pointing at an [`AuthServer`], and the binary run in it
/// with a clean environment.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub auth: AuthServer,
}

impl TestEnv {
    pub fn new() -> Self {
        Self::with(AuthServer::start())
    }

    /// A test env whose settings point at `auth`.
    pub fn with(auth: AuthServer) -> Self {
        let env = Self { dir: tempfile::tempdir().expect("tempdir"), auth };
        env.write_env("");
        env
    }

    /// Writes `.env` with the client, the server's URLs (Data Center: its base URL), a short
    /// HTTP timeout and `extra`.
    pub fn write_env(&self, extra: &str) {
        let server = match self.auth.mode {
            Mode::Cloud => format!(
                "ATL_SCOPE=\"read:jira-work\"\nATL_AUTHORIZE_URL={}\nATL_TOKEN_URL={}\nATL_API_URL={}\n",
                self.auth.server.url("/authorize"),
                self.auth.token_url(),
                self.auth.server.url("")
            ),
            Mode::DataCenter => {
                format!("ATL_SCOPE=READ\nATL_PROVIDER=datacenter\nATL_BASE_URL={}\n", self.auth.base_url())
            }
        };
        let text = format!(
            "ATL_CLIENT_ID={CLIENT_ID}\nATL_CLIENT_SECRET={CLIENT_SECRET}\n{server}ATL_HTTP_TIMEOUT=2\n{extra}"
        );
        std::fs::write(self.path(".env"), text).expect("write .env");
        // As `atl-token init` writes it: a file that others can read gets a warning.
        set_mode(&self.path(".env"), 0o600);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn token_file(&self) -> PathBuf {
        self.path("token.json")
    }

    /// Writes a token file as atl-token would, with a pair the server has issued, whose
    /// access token expires `expires_in` seconds from now (negative: already expired).
    /// Returns the refresh token.
    pub fn write_token(&self, expires_in: i64) -> String {
        self.write_token_at(&self.token_file(), expires_in)
    }

    /// [`TestEnv::write_token`] to another path.
    pub fn write_token_at(&self, path: &Path, expires_in: i64) -> String {
        let (access, refresh) = self.auth.issue();
        let now = now();
        let token = json!({"access_token": access, "refresh_token": refresh, "expires_in": 3600,
                           "token_type": "Bearer", "expires_at": now + expires_in, "obtained_at": now,
                           "family_started_at": now - 100});
        std::fs::write(path, serde_json::to_vec_pretty(&token).expect("json")).expect("write");
        set_mode(path, 0o600);
        refresh
    }

    pub fn read_token(&self) -> Value {
        let bytes = std::fs::read(self.token_file()).expect("token file exists");
        serde_json::from_slice(&bytes).expect("token file is JSON")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        atl_command(self.dir.path(), args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run atl-token")
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn atl-token")
    }
}

/// The real binary, run in `dir` with `dir/.env`, a clean environment and no stdin.
pub fn atl_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = bare_command(dir);
    command.arg("--env-file").arg(dir.join(".env")).args(args);
    command
}

/// The real binary, run in `dir` with HOME there, a clean environment, no stdin and no
/// env file named.
pub fn bare_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_atl-token"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

pub fn now() -> i64 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    i64::try_from(secs).expect("time fits")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts the exit code, showing stderr when it differs.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "stderr: {}", stderr(output));
}

/// Polls `condition` every 25 ms until it holds; panics after `limit`.
#[track_caller]
pub fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A loopback port nothing listens on, now or later: below the range the OS hands out for
/// port 0, so that no test server started meanwhile can take it, as one could a
/// [`free_port`]. A connection to it is refused.
pub const CLOSED_PORT: u16 = 1;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Sends one raw HTTP request to `addr`, closes the sending side, and returns the whole
/// response (status line first).
pub fn http_raw(addr: &str, request: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request)?;
    // Nothing more will come: a listener waiting for the rest of a head sees the end at once.
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// A browser's GET of `path` on 127.0.0.1:`port`, with the given Host header.
pub fn browser_get(port: u16, host: &str, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n");
    http_raw(&format!("127.0.0.1:{port}"), request.as_bytes()).expect("listener answers")
}

/// The browser at an authorize URL on a test server: returns where the server redirects.
pub fn authorize(url: &url::Url) -> url::Url {
    let addr = format!("{}:{}", url.host_str().expect("host"), url.port().expect("port"));
    let target = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let response = http_raw(&addr, request.as_bytes()).expect("authorize endpoint answers");
    assert_eq!(status_of(&response), 302, "{response}");
    let location = response.lines().find_map(|l| l.strip_prefix("Location: ")).expect("a Location header");
    url::Url::parse(location.trim()).expect("Location is a URL")
}

/// The `state` of an authorize URL.
pub fn state_of(url: &url::Url) -> String {
    url.query_pairs().find(|(k, _)| k == "state").expect("state").1.into_owned()
}

/// Where the browser is sent after consent, for a login listening on `port`: the address
/// `login --paste` takes.
pub fn redirect_address(port: u16, state: &str) -> String {
    format!("http://127.0.0.1:{port}/callback?code={CODE}&state={state}")
}

/// The status code of a raw response.
pub fn status_of(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Reads the child's stderr on a thread, collecting lines; `wait_line` polls them.
pub struct StderrLines {
    lines: Arc<Mutex<Vec<String>>>,
    /// The reader reached the end of stderr: the process closed it (it exited).
    ended: Arc<AtomicBool>,
}

impl StderrLines {
    pub fn take(child: &mut Child) -> Self {
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(AtomicBool::new(false));
        let (sink, end) = (lines.clone(), ended.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lock(&sink).push(line);
            }
            end.store(true, Ordering::SeqCst);
        });
        Self { lines, ended }
    }

    /// The first line matching `pred`, waiting up to 10 s.
    #[track_caller]
    pub fn wait_line(&self, pred: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        wait_for("a line on stderr", Duration::from_secs(10), || {
            found = lock(&self.lines).iter().find(|l| pred(l)).cloned();
            found.is_some()
        });
        found.expect("found")
    }

    /// Every line so far; once the process has exited, every line it wrote (the reader may
    /// still be catching up, so this waits for it, a few seconds at most).
    pub fn all(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.ended.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        lock(&self.lines).join("\n")
    }
}

/// Waits for the child to exit, killing it after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("atl-token did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// Runs `command`, a login that prints its authorize URL and reads the address the browser
/// was sent to (`--paste`): `check` sees the URL, then the address of a browser that
/// consented is pasted (the redirect URI on `port`). Returns the exit status and stderr.
pub fn paste_login(
    mut command: Command,
    port: u16,
    check: impl FnOnce(&url::Url),
) -> (std::process::ExitStatus, String) {
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let lines = StderrLines::take(&mut child);
    let url =
        url::Url::parse(lines.wait_line(|l| l.trim_start().starts_with("http://")).trim()).expect("URL");
    check(&url);
    let address = redirect_address(port, &state_of(&url));
    writeln!(child.stdin.take().expect("stdin"), "{address}").expect("paste");
    let status = wait_exit(&mut child, Duration::from_secs(30));
    (status, lines.all())
}

/// A login started on a free port; the authorize URL it printed.
pub struct Login {
    pub child: Child,
    pub stderr: StderrLines,
    pub url: url::Url,
    pub port: u16,
}

impl Login {
    /// Starts a login whose redirect URI is `http://127.0.0.1:{port}/callback`.
    pub fn start(env: &TestEnv, extra_args: &[&str]) -> Self {
        Self::start_with(env, "", extra_args)
    }

    /// [`Login::start`] with `extra_env` added to the env file.
    pub fn start_with(env: &TestEnv, extra_env: &str, extra_args: &[&str]) -> Self {
        let port = free_port();
        env.write_env(&format!("ATL_REDIRECT_URI=http://127.0.0.1:{port}/callback\n{extra_env}"));
        Self::spawn(env, port, extra_args)
    }

    /// Starts a login with the env file as it is, listening on `port`.
    pub fn spawn(env: &TestEnv, port: u16, extra_args: &[&str]) -> Self {
        let mut args = vec!["login", "--no-browser"];
        args.extend_from_slice(extra_args);
        let mut child = env.spawn(&args);
        let stderr = StderrLines::take(&mut child);
        let line = stderr.wait_line(|l| l.trim_start().starts_with("http://"));
        let url = url::Url::parse(line.trim()).expect("printed URL parses");
        stderr.wait_line(|l| l.starts_with("Waiting"));
        Self { child, stderr, url, port }
    }

    pub fn param(&self, name: &str) -> String {
        self.url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default()
    }

    /// Plays the browser at a Data Center server: opens the authorize URL, is redirected
    /// with a code, and follows the redirect to the listener. Returns the listener's page.
    pub fn consent(&self) -> String {
        let redirect = authorize(&self.url);
        let target = format!("{}?{}", redirect.path(), redirect.query().unwrap_or_default());
        browser_get(self.port, &format!("127.0.0.1:{}", self.port), &target)
    }

    pub fn callback(&self, query: &str) -> String {
        browser_get(self.port, &format!("127.0.0.1:{}", self.port), &format!("/callback?{query}"))
    }

    pub fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let status = wait_exit(&mut self.child, Duration::from_secs(20));
        let mut stdout = String::new();
        use std::io::Read;
        self.child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
        std::thread::sleep(Duration::from_millis(50));
        (status, stdout, self.stderr.all())
    }
}

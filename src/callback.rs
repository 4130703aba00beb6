//! The loopback listener that catches the browser's redirect after consent.
//!
//! It answers only the redirect URI's path, only with the right `state`, only to a loopback
//! `Host` (against DNS rebinding), reads at most a few KiB per request, and serves each
//! connection in its own task, so a slow or hostile client cannot hold up the real callback.
//! When every slot is taken, the oldest connection makes room for the new one, so another
//! local process holding idle connections cannot lock the browser out.
//!
//! For an `https://` redirect URI it serves TLS, with a self-signed certificate made for this
//! login. A GET of the redirect path with the right `state` and nothing else is the start
//! page: it sends the browser on to the authorize URL, so that the certificate warning is
//! dealt with before consent, not while a code that lives for seconds waits.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::config::{LoopbackHost, Redirect};

/// A request head (request line and headers) larger than this is refused.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A client that has not sent its request head by then is dropped. Browsers send it at once.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that has sent nothing at all by then is dropped sooner: a browser's unused
/// preconnection, or a process holding the slot.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; a new one beyond this closes the oldest. Each costs a few KiB.
const MAX_CONNECTIONS: usize = 256;

/// The query parameters that carry a login's state and its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Must equal the login's own value: OAuth 2.0's `state`; OAuth 1.0a's request token.
    pub state: &'static str,
    /// The result: OAuth 2.0's `code`; OAuth 1.0a's `oauth_verifier`.
    pub code: &'static str,
}

/// OAuth 2.0 (RFC 6749 section 4.1.2).
pub const OAUTH2: Params = Params { state: "state", code: "code" };
/// OAuth 1.0a (RFC 5849 section 2.2): the request token is the state.
pub const OAUTH1: Params = Params { state: "oauth_token", code: "oauth_verifier" };

/// What the redirect must look like.
#[derive(Debug, Clone)]
pub struct Expected {
    pub path: String,
    pub params: Params,
    pub state: String,
    pub port: u16,
    /// Where the start page sends the browser.
    pub authorize_url: String,
}

/// The outcome of consent, as the authorization server reported it through the browser.
#[derive(Debug, PartialEq, Eq)]
pub enum Callback {
    Code(String),
    Denied { error: String, description: Option<String> },
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Callback(Callback),
    /// The start page: on to the authorize URL.
    Start,
    Reject {
        status: u16,
        message: &'static str,
    },
}

/// The parts of a request head the listener looks at.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub host: Option<&'a str>,
}

/// Parses a request head; `None` if it is not HTTP/1.x.
pub fn parse_head(head: &str) -> Option<Head<'_>> {
    let mut lines = head.split("\r\n").flat_map(|l| l.split('\n'));
    let mut request = lines.next()?.split(' ');
    let (method, target, version) = (request.next()?, request.next()?, request.next()?);
    if request.next().is_some() || !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    let host = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("host").then(|| value.trim())
    });
    Some(Head { method, target, host })
}

/// Decides what a request gets. Only a GET of the redirect path with the right state, sent
/// to a loopback host name, reaches the login.
pub fn route(head: &Head<'_>, expected: &Expected) -> Route {
    let reject = |status, message| Route::Reject { status, message };
    if !head.host.is_some_and(|h| host_allowed(h, expected.port)) {
        return reject(400, "This listener only answers requests sent to localhost.");
    }
    let (path, query) = head.target.split_once('?').unwrap_or((head.target, ""));
    if path != expected.path {
        return reject(404, "Not found.");
    }
    if head.method != "GET" {
        return reject(405, "Only GET is answered here.");
    }
    match outcome(query, expected.params, &expected.state) {
        Outcome::Callback(callback) => Route::Callback(callback),
        Outcome::Start => Route::Start,
        Outcome::WrongState => reject(
            400,
            "This request does not belong to the login atl-token started (state does not match). \
             atl-token is still waiting: use the link it printed.",
        ),
        Outcome::Empty => reject(400, "The redirect holds neither a code nor an error."),
    }
}

/// What a redirect's query string says, checked against the login's state.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Callback(Callback),
    /// The right state and nothing else.
    Start,
    WrongState,
    /// The right state, and an empty code.
    Empty,
}

fn outcome(query: &str, params: Params, expected_state: &str) -> Outcome {
    let mut state = None;
    let (mut code, mut error, mut description) = (None, None, None);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            k if k == params.state => state = Some(value),
            k if k == params.code => code = Some(value),
            "error" => error = Some(value),
            "error_description" => description = Some(value),
            _ => {}
        }
    }
    if state.as_deref() != Some(expected_state) {
        return Outcome::WrongState;
    }
    match (code, error) {
        (_, Some(error)) => Outcome::Callback(Callback::Denied {
            error: error.into_owned(),
            description: description.map(|d| d.into_owned()),
        }),
        (Some(code), None) if !code.is_empty() => Outcome::Callback(Callback::Code(code.into_owned())),
        (None, None) => Outcome::Start,
        _ => Outcome::Empty,
    }
}

/// Reads the address the browser was sent to after consent, pasted by the user (`login
/// --paste`), with the same checks as the listener: the login's own state, and a code or an
/// error. With `bare_code`, the code alone (as seed 004 tells people to copy it) is taken
/// too, though its state cannot be checked. Errors say what to paste instead.
pub fn pasted(text: &str, params: Params, state: &str, bare_code: bool) -> Result<Pasted, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("nothing was pasted".to_owned());
    }
    let Ok(url) = url::Url::parse(text) else {
        if crate::token::is_token68(text) {
            if bare_code {
                return Ok(Pasted { callback: Callback::Code(text.to_owned()), state_checked: false });
            }
            return Err(format!(
                "that looks like a bare {}: here the whole address is needed, so that its {} can be \
                 checked (`atl-token login --paste` takes a bare code)",
                params.code, params.state
            ));
        }
        return Err(
            "that is not a URL: copy the whole address from the browser's address bar, starting with http"
                .to_owned(),
        );
    };
    match outcome(url.query().unwrap_or_default(), params, state) {
        Outcome::Callback(callback) => Ok(Pasted { callback, state_checked: true }),
        Outcome::WrongState => Err(format!(
            "that address does not belong to this login (its {} does not match): paste the address \
             the browser went to after opening the URL printed above",
            params.state
        )),
        Outcome::Start | Outcome::Empty => Err(format!(
            "that address holds no {}: paste the address the browser went to after you allowed access",
            params.code
        )),
    }
}

/// What was pasted, and whether its state was checked (not for a bare code).
#[derive(Debug)]
pub struct Pasted {
    pub callback: Callback,
    pub state_checked: bool,
}

fn host_allowed(host: &str, port: u16) -> bool {
    let (name, host_port) = match host.rsplit_once(':') {
        Some((name, p)) if !name.ends_with(':') && !p.contains(']') => (name, p.parse::<u16>().ok()),
        _ => (host, Some(80)),
    };
    let name = name.to_ascii_lowercase();
    host_port == Some(port) && matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]")
}

/// Escapes text for an HTML page.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A whole HTTP response that sends the browser to `location`.
pub fn redirect(location: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nCache-Control: no-store\r\n\
         Referrer-Policy: no-referrer\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The pages' look: one small inline style sheet, no scripts, no external assets.
const STYLE: &str = "body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;\
background:#f4f5f7;color:#172b4d}main{max-width:34rem;margin:12vh auto;padding:2rem 2.5rem;\
background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(9,30,66,.25)}\
h1{font-size:1.4rem;margin:0 0 1rem}.ok h1{color:#216e4e}.fail h1{color:#ae2e24}\
p{margin:.6rem 0}code{font:14px ui-monospace,monospace;background:#f1f2f4;padding:.1rem .3rem;\
border-radius:3px;word-break:break-all}footer{margin-top:1.5rem;font-size:.8rem;color:#626f86}";

/// A whole HTTP response with a short HTML page: a title, and one paragraph per line of
/// `message`. Text between backticks is shown as code (a file, a command).
pub fn page(status: u16, title: &str, message: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let class = if status == 200 { "ok" } else { "fail" };
    let paragraphs: String = message.lines().map(|line| format!("<p>{}</p>", with_code(line))).collect();
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{t} - atl-token</title>\
         <style>{STYLE}</style></head>\n<body class=\"{class}\"><main><h1>{t}</h1>{paragraphs}\
         <footer>atl-token</footer></main></body></html>\n",
        t = html_escape(title),
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Escapes a line, showing text between backticks as `<code>`.
fn with_code(line: &str) -> String {
    line.split('`')
        .enumerate()
        .map(
            |(i, part)| {
                if i % 2 == 1 { format!("<code>{}</code>", html_escape(part)) } else { html_escape(part) }
            },
        )
        .collect()
}

/// A connection to the browser: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A callback that passed every check, with the browser's connection to answer on, when it
/// came to the listener (not when it was pasted).
pub struct Arrival {
    pub callback: Callback,
    pub browser: Option<Box<dyn Io>>,
}

impl Arrival {
    /// A callback the user pasted: there is no browser to answer.
    pub fn pasted(callback: Callback) -> Self {
        Self { callback, browser: None }
    }

    /// Tells the browser how it went. A browser that has gone away is no error.
    pub async fn answer(self, status: u16, title: &str, message: &str) {
        if let Some(mut browser) = self.browser {
            let _ = browser.write_all(&page(status, title, message)).await;
            let _ = browser.shutdown().await;
        }
    }
}

/// The listening sockets; dropping it stops listening.
pub struct Listener {
    arrivals: mpsc::Receiver<Arrival>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The SHA-256 fingerprint of the listener's certificate, when it serves TLS.
    fingerprint: Option<String>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The users (uids) other than this one with a socket listening on TCP `port` where a
/// browser going to `host` may arrive (its loopback addresses, and the wildcard ones), from
/// `/proc/net/tcp` and `/proc/net/tcp6`: whoever holds the redirect port there receives the
/// code the browser brings back. Empty where the tables cannot be read (not Linux).
pub fn other_holders(port: u16, host: LoopbackHost) -> Vec<u32> {
    let me = crate::safe_path::euid();
    let mut uids: Vec<u32> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| listeners(&text, port, host))
        .filter(|uid| *uid != me)
        .collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// The uids of the sockets listening on `port` in a `/proc/net/tcp` or `tcp6` table, on an
/// address a browser going to `host` may reach.
fn listeners(table: &str, port: u16, host: LoopbackHost) -> Vec<u32> {
    /// `st` of a listening socket.
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, uid) = (fields.get(1)?, fields.get(3)?, fields.get(7)?);
            let (address, local_port) = local.rsplit_once(':')?;
            let local_port = u16::from_str_radix(local_port, 16).ok()?;
            let reached = table_address(address).is_some_and(|ip| reaches(ip, host));
            (local_port == port && *state == LISTEN && reached).then(|| uid.parse().ok()).flatten()
        })
        .collect()
}

/// An address as the kernel's tables print it: each 32-bit word of it in hex, as the host
/// reads it from memory.
fn table_address(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| hex.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok());
    match hex.len() {
        8 => Some(IpAddr::from(word(0)?.to_ne_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(i)?.to_ne_bytes());
            }
            Some(IpAddr::from(bytes))
        }
        _ => None,
    }
}

/// Whether a socket on `ip` takes connections to `host`: a loopback address of the family
/// the host resolves to, or a wildcard one.
fn reaches(ip: IpAddr, host: LoopbackHost) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let v4 = matches!(host, LoopbackHost::V4 | LoopbackHost::Localhost);
    let v6 = matches!(host, LoopbackHost::V6 | LoopbackHost::Localhost);
    match ip {
        IpAddr::V4(ip) => v4 && (ip.is_loopback() || ip.is_unspecified()),
        // `[::]` takes IPv4 too, unless the socket is IPv6-only (the tables do not say).
        IpAddr::V6(ip) => (v6 && ip.is_loopback()) || ip.is_unspecified(),
    }
}

impl Listener {
    /// Binds the redirect URI's port on loopback: 127.0.0.1 and/or ::1, with TLS when the
    /// redirect URI is `https://`.
    pub async fn bind(
        redirect: &Redirect,
        params: Params,
        state: String,
        authorize_url: String,
    ) -> Result<Self> {
        let port = redirect.port;
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let in_use = |addr: SocketAddr, e: io::Error| {
            let origin = &redirect.port_origin;
            anyhow!(if e.kind() == io::ErrorKind::AddrInUse {
                format!(
                    "port {port} on {} is in use by another program: stop it, or pick another port \
                     with {origin} and change the callback URL registered for the app to match, \
                     since the server refuses a redirect to any other",
                    addr.ip()
                )
            } else {
                format!("cannot listen on port {port} on {} (port from {origin}): {e}", addr.ip())
            })
        };
        let mut sockets = Vec::new();
        if let Some((ip, _)) = redirect.listen {
            let addr = SocketAddr::from((ip, port));
            sockets.push(TcpListener::bind(addr).await.map_err(|e| in_use(addr, e))?);
            // A browser may take `localhost` to either family: the loopback of the other one
            // is held too, so that nobody else takes the code there. `[::]` takes both.
            let other = match (redirect.host, ip) {
                (_, IpAddr::V6(v6)) if v6.is_unspecified() => None,
                (LoopbackHost::Localhost, IpAddr::V4(_)) => Some(v6),
                (LoopbackHost::Localhost, IpAddr::V6(_)) => Some(v4),
                _ => None,
            };
            if let Some(other) = other {
                match TcpListener::bind(other).await {
                    Ok(socket) => sockets.push(socket),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(in_use(other, e)),
                    Err(_) => {}
                }
            }
        } else {
            match redirect.host {
                LoopbackHost::V4 => sockets.push(TcpListener::bind(v4).await.map_err(|e| in_use(v4, e))?),
                LoopbackHost::V6 => sockets.push(TcpListener::bind(v6).await.map_err(|e| in_use(v6, e))?),
                LoopbackHost::Localhost => {
                    sockets.push(TcpListener::bind(v4).await.map_err(|e| in_use(v4, e))?);
                    // A machine without IPv6 still serves localhost on 127.0.0.1; only a port
                    // taken on ::1 by someone else is an error.
                    match TcpListener::bind(v6).await {
                        Ok(socket) => sockets.push(socket),
                        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(in_use(v6, e)),
                        Err(_) => {}
                    }
                }
            }
        }

        let (tls, fingerprint) = if redirect.tls {
            let (acceptor, fingerprint) = self_signed()?;
            (Some(acceptor), Some(fingerprint))
        } else {
            (None, None)
        };
        let expected = Expected { path: redirect.path.clone(), params, state, port, authorize_url };
        let slots = Arc::new(Mutex::new(Slots::default()));
        let (sender, arrivals) = mpsc::channel(1);
        let serving = Arc::new(Serving { expected, tls, sender });
        let tasks = sockets
            .into_iter()
            .map(|socket| tokio::spawn(accept_loop(socket, serving.clone(), slots.clone())))
            .collect();
        Ok(Self { arrivals, tasks, fingerprint })
    }

    /// The certificate's SHA-256 fingerprint, as browsers show it, when serving TLS.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// The next callback with the right state.
    pub async fn next(&mut self) -> Result<Arrival> {
        self.arrivals.recv().await.context("the loopback listener stopped")
    }
}

/// The connections being served, oldest first.
#[derive(Default)]
struct Slots {
    next_id: u64,
    open: VecDeque<(u64, AbortHandle)>,
}

impl Slots {
    /// Takes a slot for a new connection, closing the oldest one if all are taken.
    fn take(&mut self) -> u64 {
        self.open.retain(|(_, task)| !task.is_finished());
        if self.open.len() >= MAX_CONNECTIONS
            && let Some((_, oldest)) = self.open.pop_front()
        {
            oldest.abort();
        }
        self.next_id += 1;
        self.next_id
    }

    fn release(&mut self, id: u64) {
        self.open.retain(|(open, _)| *open != id);
    }
}

fn lock(slots: &Mutex<Slots>) -> std::sync::MutexGuard<'_, Slots> {
    slots.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A certificate for localhost, 127.0.0.1 and ::1, made now, and its SHA-256 fingerprint.
fn self_signed() -> Result<(tokio_rustls::TlsAcceptor, String)> {
    let names = ["localhost", "127.0.0.1", "::1"].map(str::to_owned);
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).context("cannot make a certificate for the listener")?;
    let fingerprint = fingerprint(cert.der());
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(signing_key.serialize_der());
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(vec![cert.der().clone()], key.into()))
            .context("cannot set up TLS for the listener")?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), fingerprint))
}

/// `AB:CD:…`: SHA-256 of the certificate, as browsers show it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// What each connection's task needs.
struct Serving {
    expected: Expected,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sender: mpsc::Sender<Arrival>,
}

async fn accept_loop(socket: TcpListener, serving: Arc<Serving>, slots: Arc<Mutex<Slots>>) {
    loop {
        let Ok((stream, _)) = socket.accept().await else {
            // Out of file descriptors or similar: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let id = lock(&slots).take();
        let (serving, done) = (serving.clone(), slots.clone());
        let task = tokio::spawn(async move {
            serve(stream, &serving).await;
            lock(&done).release(id);
        });
        // Should it have finished already, the next `take` drops the entry.
        lock(&slots).open.push_back((id, task.abort_handle()));
    }
}

async fn serve(stream: TcpStream, serving: &Serving) {
    // Nothing sent in time, or closed: drop it without a word.
    match tokio::time::timeout(IDLE_TIMEOUT, stream.peek(&mut [0u8; 1])).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    let mut stream: Box<dyn Io> = match &serving.tls {
        None => Box::new(stream),
        // A browser that refuses the certificate ends the handshake: nothing to answer.
        Some(tls) => match tokio::time::timeout(HEAD_TIMEOUT, tls.accept(stream)).await {
            Ok(Ok(tls)) => Box::new(tls),
            _ => return,
        },
    };
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        Ok(Err(status)) => {
            return reply(stream, &page(status, "atl-token", "That request could not be read.")).await;
        }
        Err(_) => return, // too slow: drop it
    };
    let route = match parse_head(&head) {
        Some(head) => route(&head, &serving.expected),
        None => Route::Reject { status: 400, message: "That is not an HTTP request." },
    };
    match route {
        Route::Reject { status, message } => reply(stream, &page(status, "atl-token", message)).await,
        Route::Start => reply(stream, &redirect(&serving.expected.authorize_url)).await,
        Route::Callback(callback) => {
            // Only the first good callback is taken; the login has ended for any later one.
            let _ = serving.sender.try_send(Arrival { callback, browser: Some(stream) });
        }
    }
}

async fn reply(mut stream: Box<dyn Io>, response: &[u8]) {
    let _ = stream.write_all(response).await;
    let _ = stream.shutdown().await;
}

/// Reads up to the blank line that ends the head. Errors carry the HTTP status to answer.
async fn read_head(stream: &mut Box<dyn Io>) -> Result<String, u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        buf.extend_from_slice(&chunk[..n]);
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .or_else(|| buf.windows(2).position(|w| w == b"\n\n"));
        if let Some(end) = end {
            buf.truncate(end);
            return String::from_utf8(buf).map_err(|_| 400);
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(431);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_code_is_taken_only_where_asked_and_then_unchecked() {
        let code = "eyJhbGciOiJIUzI1NiJ9.e30.sig-_x";
        let bare = pasted(&format!("  {code}\n"), OAUTH2, "s-1", true).expect("taken");
        assert!(matches!(&bare.callback, Callback::Code(c) if c == code));
        assert!(!bare.state_checked);
        let refused = pasted_err(code, false);
        assert!(refused.contains("whole address is needed"), "{refused}");
        let address = format!("http://localhost:8014/?state=s-1&code={code}");
        assert!(pasted(&address, OAUTH2, "s-1", false).expect("an address").state_checked);
        assert!(pasted_err("not a code, with spaces", true).contains("not a URL"));
    }

    fn pasted_err(text: &str, bare_code: bool) -> String {
        pasted(text, OAUTH2, "s-1", bare_code).expect_err("refused")
    }

    #[test]
    // The tables as a little-endian machine prints them.
    #[cfg(target_endian = "little")]
    fn the_holders_of_a_port_are_read_from_the_kernels_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                   0: 0100007F:1F4E 00000000:0000 0A 00000000:00000000 00:00000000 00000000  4242        0 1 1\n\
                   1: 0100007F:1F4E 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n\
                   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1\n\
                   3: 0A00000A:1F4E 00000000:0000 0A 00000000:00000000 00:00000000 00000000  4343        0 5 1\n\
                   4: 00000000:1F4E 00000000:0000 0A 00000000:00000000 00:00000000 00000000  4444        0 6 1\n";
        let localhost = LoopbackHost::Localhost;
        assert_eq!(
            listeners(tcp, 8014, localhost),
            [4242, 4444],
            "listening on loopback or 0.0.0.0, on that port"
        );
        assert!(listeners(tcp, 8014, LoopbackHost::V6).is_empty(), "no IPv4 socket takes [::1]");
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                    0: 00000000000000000000000001000000:1F4E 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 4 1\n\
                    1: 0000000000000000FFFF00000100007F:1F4E 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1002        0 7 1\n";
        assert_eq!(listeners(tcp6, 8014, localhost), [1001, 1002]);
        assert_eq!(listeners(tcp6, 8014, LoopbackHost::V4), [1002], "::ffff:127.0.0.1 is IPv4's loopback");
        assert!(listeners("garbage\nmore garbage", 8014, localhost).is_empty());
    }

    fn expected() -> Expected {
        Expected {
            path: "/".into(),
            params: OAUTH2,
            state: "s1".into(),
            port: 8014,
            authorize_url: "https://a/".into(),
        }
    }

    fn route_of(request: &str) -> Route {
        route(&parse_head(request).expect("parses"), &expected())
    }

    const HOST: &str = "\r\nHost: localhost:8014\r\n";

    #[test]
    fn the_right_callback_yields_the_code() {
        let r = route_of(&format!("GET /?code=abc%2F1&state=s1 HTTP/1.1{HOST}"));
        assert_eq!(r, Route::Callback(Callback::Code("abc/1".into())));
        let r = route(
            &parse_head("GET /cb?state=s1&code=x HTTP/1.1\nhost: 127.0.0.1:9\n").expect("parses"),
            &Expected {
                path: "/cb".into(),
                params: OAUTH2,
                state: "s1".into(),
                port: 9,
                authorize_url: String::new(),
            },
        );
        assert_eq!(r, Route::Callback(Callback::Code("x".into())));
    }

    #[test]
    fn oauth1_callbacks_are_checked_by_their_request_token() {
        let expected = Expected { params: OAUTH1, state: "reqtok".into(), ..expected() };
        let route_of = |target: &str| {
            route(&parse_head(&format!("GET {target} HTTP/1.1{HOST}")).expect("parses"), &expected)
        };
        assert_eq!(
            route_of("/?oauth_token=reqtok&oauth_verifier=v%2F1"),
            Route::Callback(Callback::Code("v/1".into()))
        );
        let Route::Reject { status: 400, message } = route_of("/?oauth_token=other&oauth_verifier=v") else {
            panic!("another request token is refused");
        };
        assert!(message.contains("does not belong"), "{message}");
        // `state` means nothing to OAuth 1.0a.
        assert!(matches!(route_of("/?state=reqtok&oauth_verifier=v"), Route::Reject { status: 400, .. }));
        assert_eq!(route_of("/?oauth_token=reqtok"), Route::Start);
    }

    #[test]
    fn a_denial_carries_error_and_description() {
        let r = route_of(&format!(
            "GET /?error=access_denied&error_description=User+said+%3Cno%3E&state=s1 HTTP/1.1{HOST}"
        ));
        assert_eq!(
            r,
            Route::Callback(Callback::Denied {
                error: "access_denied".into(),
                description: Some("User said <no>".into())
            })
        );
    }

    #[test]
    fn wrong_or_missing_state_is_refused() {
        for q in ["code=abc&state=s2", "code=abc", "code=abc&state=", "state=s2", "", "code=&state=s1"] {
            let r = route_of(&format!("GET /?{q} HTTP/1.1{HOST}"));
            assert!(matches!(r, Route::Reject { status: 400, .. }), "{q}: {r:?}");
        }
    }

    #[test]
    fn the_right_state_alone_is_the_start_page() {
        assert_eq!(route_of(&format!("GET /?state=s1 HTTP/1.1{HOST}")), Route::Start);
        let response = String::from_utf8(redirect("https://a/?x=1")).expect("utf8");
        assert!(response.starts_with("HTTP/1.1 302 Found\r\nLocation: https://a/?x=1\r\n"), "{response}");
    }

    #[test]
    fn other_paths_methods_and_hosts_are_refused() {
        assert!(matches!(
            route_of(&format!("GET /favicon.ico HTTP/1.1{HOST}")),
            Route::Reject { status: 404, .. }
        ));
        assert!(matches!(
            route_of(&format!("POST /?code=a&state=s1 HTTP/1.1{HOST}")),
            Route::Reject { status: 405, .. }
        ));
        for host in ["evil.example:8014", "localhost:8015", "localhost", "127.0.0.2:8014", "localhost:8014:1"]
        {
            let r = route_of(&format!("GET /?code=a&state=s1 HTTP/1.1\r\nHost: {host}\r\n"));
            assert!(matches!(r, Route::Reject { status: 400, .. }), "{host}: {r:?}");
        }
        assert!(matches!(route_of("GET /?code=a&state=s1 HTTP/1.1\r\n"), Route::Reject { status: 400, .. }));
        assert!(matches!(
            route_of("GET /?code=a&state=s1 HTTP/1.1\r\nHost: [::1]:8014\r\n"),
            Route::Callback(_)
        ));
    }

    #[test]
    fn garbage_is_not_a_request() {
        for head in
            ["", "GET", "GET /", "GET / FTP/1.0", "GET  / HTTP/1.1", "\u{0}\u{1}", "GET / HTTP/1.1 extra"]
        {
            assert_eq!(parse_head(head), None, "{head:?}");
        }
    }

    #[test]
    fn pages_escape_what_the_server_sent() {
        let page =
            String::from_utf8(page(400, "Login failed", "<script>alert('x')</script> & more")).expect("utf8");
        assert!(page.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
        let (head, body) = page.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    proptest::proptest! {
        #[test]
        fn prop_any_request_head_is_answered_without_panic(head in "\\PC{0,300}", raw in proptest::prelude::any::<String>()) {
            for text in [head, raw] {
                if let Some(parsed) = parse_head(&text) {
                    let _ = route(&parsed, &expected());
                }
            }
        }

        #[test]
        fn prop_only_the_right_path_and_state_reach_the_login(
            state in "[ -~]{0,12}",
            code in "[ -~]{1,40}",
            path in "/[a-z]{0,3}",
        ) {
            for state in [state.as_str(), "s1"] {
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("code", &code)
                    .append_pair("state", state)
                    .finish();
                let head = format!("GET {path}?{query} HTTP/1.1\r\nHost: localhost:8014\r\n");
                let route = route(&parse_head(&head).expect("a well-formed head"), &expected());
                let reached = matches!(&route, Route::Callback(Callback::Code(c)) if *c == code);
                proptest::prop_assert_eq!(reached, path == "/" && state == "s1", "{:?}", route);
                if !reached {
                    proptest::prop_assert!(matches!(route, Route::Reject { .. }), "{:?}", route);
                }
            }
        }
    }
}

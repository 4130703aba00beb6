//! A fault proxy between atl-token and a real store server (moto, OpenBao), for the shared
//! stores' tests. Each store speaks its own dialect ([`Dialect`]): how it says "throttled"
//! and "server error", which calls write a version, and which call a burst of throttling
//! follows. With [`FaultProxy::inject`], a share of all calls meets one of the [`Fault`]s;
//! with [`FaultProxy::arm`], a burst of throttling starts right after a claim is written.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Request, read_request};

/// What a call may meet in the proxy.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// The store's throttling answer, and the server never sees the call.
    Throttling,
    /// A 500, and the server never sees the call.
    ServerError,
    /// The connection closed before the call reaches the server.
    Dropped,
    /// The call is applied by the server, and the connection closed before its answer.
    AnswerLost,
    /// The call waits past the client's time limit, then is applied; its answer is lost.
    Late,
}

impl Fault {
    pub const ALL: [Fault; 5] =
        [Self::Throttling, Self::ServerError, Self::Dropped, Self::AnswerLost, Self::Late];
}

/// An answer the proxy makes up: the status line's code and reason, headers (each ending in
/// CRLF), and the body.
pub struct Answer {
    pub status: &'static str,
    pub headers: &'static str,
    pub body: &'static str,
}

impl Answer {
    fn bytes(&self) -> Vec<u8> {
        let Self { status, headers, body } = self;
        format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// How a store's calls and errors look.
pub struct Dialect {
    /// The answer to a throttled call.
    pub throttled: Answer,
    /// The answer of a server error.
    pub server_error: Answer,
    /// A call that writes a new version (counted; and throttled during a burst).
    pub writes: fn(&Request) -> bool,
    /// A successful call after which an armed burst starts (the claim's write).
    pub arms: fn(&Request) -> bool,
}

/// Rewrites an answer's body, given the request.
pub type Rewrite = fn(&Request, &[u8]) -> Vec<u8>;

#[derive(Default)]
struct State {
    armed: Option<Duration>,
    throttling_until: Option<Instant>,
    throttled: usize,
    /// Version-writing calls passed on.
    writes: usize,
    /// Every call passed on.
    calls: usize,
    /// The share of calls (in percent) that meet a fault, and how long a late one waits.
    faults: Option<(u64, Duration)>,
    /// How many calls met each fault, in [`Fault::ALL`]'s order.
    faulted: [usize; 5],
    random: u64,
    /// Rewrites every answer's body (AWS: lock parameters made to look old).
    rewrite: Option<Rewrite>,
}

impl State {
    /// The fault this call meets, if any: `faults`' share of calls, the kinds at random.
    fn draw(&mut self) -> Option<Fault> {
        let (percent, _) = self.faults?;
        if super::next_random(&mut self.random) % 100 >= percent {
            return None;
        }
        let fault = Fault::ALL[(self.random / 100 % 5) as usize];
        self.faulted[fault as usize] += 1;
        Some(fault)
    }
}

pub struct FaultProxy {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 in front of `upstream` (`http://host:port`), speaking `dialect`.
    pub fn start(upstream: &str, dialect: Dialect) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time");
        let random = (u64::from(seed.subsec_nanos()) ^ seed.as_secs()) | 1;
        let state = Arc::new(Mutex::new(State { random, ..State::default() }));
        let (shared, upstream, dialect) =
            (state.clone(), upstream.trim_end_matches('/').to_owned(), Arc::new(dialect));
        // The client speaks plain HTTP upstream, but reqwest wants a TLS provider chosen.
        let _ = rustls::crypto::ring::default_provider().install_default();
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().no_proxy().build().expect("client");
            for stream in listener.incoming().flatten() {
                let (client, shared, upstream, dialect) =
                    (client.clone(), shared.clone(), upstream.clone(), dialect.clone());
                std::thread::spawn(move || proxy_one(stream, &client, &shared, &upstream, &dialect));
            }
        });
        Self { url, state }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, `percent` of all calls meet a fault; a late one waits `delay`.
    pub fn inject(&self, percent: u64, delay: Duration) {
        self.state().faults = Some((percent, delay));
    }

    /// Rewrites the body of every answer passed back.
    pub fn rewrite(&self, rewrite: Rewrite) {
        self.state().rewrite = Some(rewrite);
    }

    /// How many calls met each fault, in [`Fault::ALL`]'s order.
    pub fn faulted(&self) -> [usize; 5] {
        self.state().faulted
    }

    /// The next successful claim write starts `window` of throttling every version write.
    pub fn arm(&self, window: Duration) {
        self.state().armed = Some(window);
    }

    pub fn throttled(&self) -> usize {
        self.state().throttled
    }

    /// Version-writing calls that reached the server.
    pub fn writes(&self) -> usize {
        self.state().writes
    }

    /// Calls that reached the server.
    pub fn calls(&self) -> usize {
        self.state().calls
    }
}

/// One request (the connection is closed after it): faulted, or passed on.
fn proxy_one(
    stream: TcpStream,
    client: &reqwest::blocking::Client,
    state: &Mutex<State>,
    upstream: &str,
    dialect: &Dialect,
) {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else { return };
    let writes = (dialect.writes)(&request);
    let (fault, delay, rewrite) = {
        let mut state = lock();
        let throttle = writes && state.throttling_until.is_some_and(|until| Instant::now() < until);
        let fault = if throttle { Some(Fault::Throttling) } else { state.draw() };
        state.throttled += usize::from(throttle);
        if !matches!(fault, Some(Fault::Throttling | Fault::ServerError | Fault::Dropped)) {
            state.calls += 1;
            state.writes += usize::from(writes);
        }
        (fault, state.faults.map_or(Duration::ZERO, |(_, delay)| delay), state.rewrite)
    };
    let mut stream = reader.into_inner();
    match fault {
        Some(Fault::Throttling) => {
            let _ = stream.write_all(&dialect.throttled.bytes());
            return;
        }
        Some(Fault::ServerError) => {
            let _ = stream.write_all(&dialect.server_error.bytes());
            return;
        }
        Some(Fault::Dropped) => return,
        Some(Fault::Late) => std::thread::sleep(delay),
        Some(Fault::AnswerLost) | None => {}
    }
    let url = format!("{upstream}{}", request.path);
    let mut forward = client.request(request.method.parse().expect("method"), url).body(request.body.clone());
    for (name, value) in &request.headers {
        if !["host", "connection", "content-length"].contains(&name.to_ascii_lowercase().as_str()) {
            forward = forward.header(name.as_str(), value.as_str());
        }
    }
    let Ok(answer) = forward.send() else { return };
    let status = answer.status();
    let headers: Vec<(String, String)> = answer
        .headers()
        .iter()
        .filter(|(n, _)| !["content-length", "connection", "transfer-encoding"].contains(&n.as_str()))
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let mut body = answer.bytes().unwrap_or_default().to_vec();
    if let Some(rewrite) = rewrite {
        body = rewrite(&request, &body);
    }
    if matches!(fault, Some(Fault::AnswerLost | Fault::Late)) {
        return;
    }
    if status.is_success() && (dialect.arms)(&request) {
        let mut state = lock();
        if let Some(window) = state.armed.take() {
            state.throttling_until = Some(Instant::now() + window);
        }
    }
    let mut reply = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        reply.push_str(&format!("{name}: {value}\r\n"));
    }
    reply.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let mut bytes = reply.into_bytes();
    bytes.extend_from_slice(&body);
    let _ = stream.write_all(&bytes);
}

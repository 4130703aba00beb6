//! `atl-token login` against the test authorization server, with the test as the browser.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;

#[test]
fn login_happy_path_sends_every_parameter_and_saves_the_token() {
    let env = TestEnv::new();
    let login = Login::start(&env, &[]);

    assert_eq!(login.url.as_str().split('?').next(), Some(env.auth.server.url("/authorize").as_str()));
    assert_eq!(login.param("audience"), "api.atlassian.com");
    assert_eq!(login.param("client_id"), CLIENT_ID);
    assert_eq!(login.param("scope"), "read:jira-work offline_access");
    assert_eq!(login.param("redirect_uri"), format!("http://127.0.0.1:{}/callback", login.port));
    assert_eq!(login.param("response_type"), "code");
    assert_eq!(login.param("prompt"), "consent");
    let state = login.param("state");
    let parsed = uuid::Uuid::parse_str(&state).expect("state is a UUID");
    assert_eq!(parsed.get_version_num(), 4);

    let page = login.callback(&format!("code={CODE}&state={state}"));
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(page.contains("You can close this tab"), "{page}");
    assert!(page.contains(&format!("<code>{}</code>", env.token_file().display())), "the token file: {page}");
    assert!(page.contains("Signed in to Atlassian Cloud."), "the site: {page}");
    assert!(!page.contains("http://") && !page.contains("https://"), "no external assets: {page}");

    let (status, stdout, stderr) = login.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "", "stdout stays empty");
    assert!(stderr.contains("note: added `offline_access`"), "{stderr}");
    assert!(stderr.contains(&format!("Token saved to {}", env.token_file().display())), "{stderr}");

    let calls = env.auth.token_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].param("grant_type").as_deref(), Some("authorization_code"));
    assert_eq!(calls[0].param("code").as_deref(), Some(CODE));
    assert_eq!(
        calls[0].param("redirect_uri"),
        Some(format!("http://127.0.0.1:{}/callback", login_port(&calls[0])))
    );
    assert_eq!(calls[0].content_type, "application/json");

    let token = env.read_token();
    assert_eq!(token["access_token"], "at-1");
    assert_eq!(token["refresh_token"], "rt-1");
    assert_eq!(token["scope"], "read:jira-work offline_access", "server fields are kept");
    let now = now();
    let obtained = token["obtained_at"].as_i64().expect("obtained_at");
    assert!((now - 60..=now).contains(&obtained));
    assert_eq!(token["expires_at"].as_i64(), Some(obtained + 3600));
    assert_eq!(token["family_started_at"].as_i64(), Some(obtained));
    assert_eq!(mode_of(&env.token_file()), 0o600);
    assert!(!stderr.contains("at-1") && !stderr.contains("rt-1"), "no token on stderr: {stderr}");
}

fn login_port(call: &Request) -> u16 {
    let uri = call.param("redirect_uri").unwrap_or_default();
    url::Url::parse(&uri).ok().and_then(|u| u.port()).unwrap_or(0)
}

#[test]
fn wrong_state_is_refused_and_the_login_keeps_waiting() {
    let env = TestEnv::new();
    let login = Login::start(&env, &[]);
    let state = login.param("state");

    let wrong = login.callback(&format!("code={CODE}&state=not-{state}"));
    assert_eq!(status_of(&wrong), 400, "{wrong}");
    let missing = login.callback(&format!("code={CODE}"));
    assert_eq!(status_of(&missing), 400, "{missing}");
    let favicon = browser_get(login.port, &format!("127.0.0.1:{}", login.port), "/favicon.ico");
    assert_eq!(status_of(&favicon), 404);
    let rebound = browser_get(
        login.port,
        &format!("evil.example:{}", login.port),
        &format!("/callback?code={CODE}&state={state}"),
    );
    assert_eq!(status_of(&rebound), 400, "a foreign Host header is refused");
    assert!(env.auth.token_calls().is_empty(), "no code was traded yet");

    let page = login.callback(&format!("code={CODE}&state={state}"));
    assert_eq!(status_of(&page), 200, "{page}");
    let (status, _, stderr) = login.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(env.read_token()["refresh_token"], "rt-1");
}

#[test]
fn access_denied_ends_the_login_with_the_servers_message() {
    let env = TestEnv::new();
    let login = Login::start(&env, &[]);
    let state = login.param("state");
    let page = login.callback(&format!(
        "error=access_denied&error_description=User+did+not+%3Cauthorize%3E&state={state}"
    ));
    assert_eq!(status_of(&page), 400);
    assert!(page.contains("User did not &lt;authorize&gt;"), "escaped in the page: {page}");

    let (status, _, stderr) = login.finish();
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("authorization failed: access_denied: User did not <authorize>"), "{stderr}");
    assert!(!env.token_file().exists());
    assert!(env.auth.token_calls().is_empty());
}

#[test]
fn login_gives_up_after_the_timeout() {
    let env = TestEnv::new();
    let login = Login::start(&env, &["--timeout", "1s"]);
    let (status, _, stderr) = login.finish();
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("no answer from the browser within 1s"), "{stderr}");
    assert!(!env.token_file().exists());
}

#[test]
fn a_port_in_use_names_the_port_the_key_and_the_callback_url_to_change() {
    let env = TestEnv::new();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    env.write_env(&format!("ATL_PORT={port}\n"));
    let output = env.run(&["login", "--no-browser", "--timeout", "5s"]);
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert!(err.contains(&format!("port {port} on 127.0.0.1 is in use by another program")), "{err}");
    assert!(err.contains("pick another port with ATL_PORT in"), "{err}");
    assert!(err.contains("change the callback URL registered for the app to match"), "{err}");
    assert!(err.contains("or run `atl-token login --paste`"), "{err}");
    assert_eq!(err.matches("error:").count(), 1, "one message: {err}");

    env.write_env("");
    let _default = TcpListener::bind("127.0.0.1:8014");
    if _default.is_ok() {
        let err = stderr(&env.run(&["login", "--no-browser", "--timeout", "5s"]));
        assert!(err.contains("pick another port with ATL_PORT and change"), "the key to set: {err}");
    }
}

#[test]
fn a_login_stopped_by_a_signal_ends_cleanly_and_leaves_nothing_behind() {
    for (signal, code) in [("TERM", 143), ("HUP", 129), ("INT", 130)] {
        let env = TestEnv::new();
        let login = Login::start(&env, &[]);
        assert_eq!(temp_files(&env), Vec::<String>::new(), "SIG{signal}: nothing is held while waiting");
        let pid = login.child.id().to_string();
        let sent = std::process::Command::new("kill").args(["-s", signal, &pid]).status().expect("kill");
        assert!(sent.success());
        let (status, _, stderr) = login.finish();
        assert_eq!(status.code(), Some(code), "SIG{signal}: {stderr}");
        assert!(stderr.contains("login"), "SIG{signal}: {stderr}");
        assert_eq!(temp_files(&env), Vec::<String>::new(), "SIG{signal}");
        assert!(
            TcpListener::bind(("127.0.0.1", login_port_of(&env))).is_ok(),
            "SIG{signal}: the port is free"
        );
        assert!(!env.token_file().exists());
    }
}

fn temp_files(env: &TestEnv) -> Vec<String> {
    std::fs::read_dir(env.dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

fn login_port_of(env: &TestEnv) -> u16 {
    let text = std::fs::read_to_string(env.path(".env")).expect(".env");
    let uri = text.lines().find_map(|l| l.strip_prefix("ATL_REDIRECT_URI=")).expect("redirect URI");
    url::Url::parse(uri).expect("URL").port().expect("port")
}

#[test]
fn without_a_display_or_browser_the_url_is_printed_and_that_is_said_once() {
    let env = TestEnv::new();
    let port = free_port();
    env.write_env(&format!("ATL_REDIRECT_URI=http://127.0.0.1:{port}/callback\n"));
    // No DISPLAY, WAYLAND_DISPLAY or BROWSER: the test's environment is cleared.
    let output = env.run(&["login", "--timeout", "1s"]);
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert_eq!(err.matches("no display here, so no browser was opened").count(), 1, "{err}");
    assert!(err.contains("`atl-token login --paste`"), "{err}");
    assert!(err.contains(&format!("    {}?", env.auth.server.url("/authorize"))), "the URL: {err}");
}

#[test]
fn a_timeout_of_zero_is_refused() {
    let env = TestEnv::new();
    let output = env.run(&["login", "--no-browser", "--timeout", "0s"]);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("'0s' would give up at once"), "{}", stderr(&output));
}

/// `login --paste`, with its stdin a pipe to paste into, and its stderr.
fn paste_login(env: &TestEnv) -> (std::process::Child, StderrLines) {
    let mut child = env
        .command(&["login", "--paste"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let lines = StderrLines::take(&mut child);
    (child, lines)
}

/// `login --paste` with the address piped in, as over SSH: no listener, the state checked.
#[test]
fn a_pasted_redirect_address_finishes_the_login_and_a_wrong_one_is_refused() {
    use std::io::Write;
    for (paste, expected) in [(true, 0), (false, 2)] {
        let env = TestEnv::new();
        let port = free_port();
        env.write_env(&format!("ATL_REDIRECT_URI=http://127.0.0.1:{port}/callback\n"));
        let (mut child, lines) = paste_login(&env);
        let url =
            url::Url::parse(lines.wait_line(|l| l.trim_start().starts_with("http://")).trim()).expect("URL");
        lines.wait_line(|l| l.contains("paste it here"));
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "no listener with --paste");
        let state = state_of(&url);
        let state = if paste { state } else { "someone-else".to_owned() };
        // Where the browser goes after consent: a page that cannot load, as nothing listens.
        let address = redirect_address(port, &state);
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "  {address}  ").expect("paste");
        drop(stdin);
        let status = wait_exit(&mut child, Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
        let err = lines.all();
        assert_eq!(status.code(), Some(expected), "{err}");
        if paste {
            assert_eq!(env.read_token()["refresh_token"], "rt-1");
            assert_eq!(env.auth.token_calls().len(), 1);
        } else {
            assert!(err.contains("does not belong to this login"), "{err}");
            assert!(env.auth.token_calls().is_empty());
            assert!(!env.token_file().exists());
        }
        assert!(!err.contains(CODE), "the code is not shown: {err}");
    }
}

/// Seed 004 tells people to copy just the code out of the address bar: `--paste` takes it,
/// and says in one line that its state could not be checked.
#[test]
fn a_pasted_bare_code_finishes_the_login_with_a_note() {
    use std::io::Write;
    let env = TestEnv::new();
    let (mut child, lines) = paste_login(&env);
    lines.wait_line(|l| l.contains("paste it here"));
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{CODE}").expect("paste");
    drop(stdin);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let err = lines.all();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("carries no state")).count(), 1, "{err}");
    assert_eq!(env.read_token()["refresh_token"], "rt-1");
}

#[test]
fn the_default_localhost_redirect_is_served_and_codes_failing_exchange_report_it() {
    let env = TestEnv::new();
    let port = free_port();
    env.write_env(&format!("REFRESH_PORT={port}\nATL_CLIENT_SECRET=wrong\n"));
    let login = Login::spawn(&env, port, &[]);
    let state = login.param("state");
    assert_eq!(login.param("redirect_uri"), format!("http://localhost:{port}"));

    let page = browser_get(port, &format!("localhost:{port}"), &format!("/?code={CODE}&state={state}"));
    assert_eq!(status_of(&page), 400, "the page says the sign-in failed: {page}");
    assert!(page.contains("Sign-in failed"));
    assert!(page.contains("See the terminal for what to do."), "{page}");
    let body = page.split_once("\r\n\r\n").expect("a body").1;
    assert!(!body.contains(".."), "one full stop per sentence: {body}");
    let (status, _, text) = login.finish();
    assert_eq!(status.code(), Some(1));
    assert!(text.contains("client credentials rejected"), "{text}");
    assert!(text.contains("ATL_CLIENT_SECRET"), "{text}");
    assert!(!text.contains("wrong"), "the secret is never printed: {text}");
    assert!(!env.token_file().exists());
}

#[test]
fn oversized_and_garbage_requests_do_not_stop_the_login() {
    let env = TestEnv::new();
    let login = Login::start(&env, &[]);
    let addr = format!("127.0.0.1:{}", login.port);
    let huge = format!("GET /callback HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000));
    let answer = http_raw(&addr, huge.as_bytes()).unwrap_or_default();
    assert!(answer.is_empty() || status_of(&answer) == 431, "{answer}");
    let garbage = http_raw(&addr, b"\x00\x01\x02 nonsense\r\n\r\n").expect("answered");
    assert_eq!(status_of(&garbage), 400);

    let state = login.param("state");
    assert_eq!(status_of(&login.callback(&format!("code={CODE}&state={state}"))), 200);
    let (status, _, stderr) = login.finish();
    assert!(status.success(), "{stderr}");
}

#[test]
fn ctrl_c_ends_the_login_cleanly() {
    let env = TestEnv::new();
    let login = Login::start(&env, &[]);
    let pid = login.child.id().to_string();
    let sent = std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill");
    assert!(sent.success());
    let (status, _, stderr) = login.finish();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("login cancelled"), "{stderr}");
    assert!(!env.token_file().exists());
}

/// Writes `bytes` to a new connection; the answer, or an empty string if the listener
/// closed it first.
fn send(addr: &str, bytes: &[u8]) -> String {
    http_raw(addr, bytes).unwrap_or_default()
}

#[test]
fn hostile_clients_do_not_stop_the_real_callback() {
    let env = TestEnv::new();
    let login = Login::start(&env, &["--timeout", "60s"]);
    let addr = format!("127.0.0.1:{}", login.port);
    let state = login.param("state");

    // A client that sends one byte per second, and never finishes its request.
    let slow_addr = addr.clone();
    let slow = std::thread::spawn(move || {
        let Ok(mut stream) = std::net::TcpStream::connect(&slow_addr) else { return 0 };
        let mut sent = 0;
        for byte in b"GET /callback?code=x&state=y HTTP/1.1\r\n" {
            if std::io::Write::write_all(&mut stream, &[*byte]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_secs(1));
            if sent == 3 {
                break;
            }
        }
        sent
    });

    // 200 requests of garbage: random bytes, half of them never ending their head.
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..200 {
        let len = usize::try_from(next_random(&mut rng) % 300).expect("small");
        let mut junk: Vec<u8> = (0..len).map(|_| next_random(&mut rng).to_le_bytes()[0]).collect();
        if i % 2 == 0 {
            junk.extend_from_slice(b"\r\n\r\n");
        }
        let answer = send(&addr, &junk);
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
    }
    // Headers too large, a 10 MB body, a foreign Host, a wrong state.
    let huge = format!("GET /callback HTTP/1.1\r\nHost: {addr}\r\nX-Pad: {}\r\n\r\n", "p".repeat(64 * 1024));
    let answer = send(&addr, huge.as_bytes());
    assert!(answer.is_empty() || status_of(&answer) == 431, "{answer}");
    let mut post =
        format!("POST /callback HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10485760\r\n\r\n").into_bytes();
    post.resize(post.len() + 10 * 1024 * 1024, b'b');
    let answer = send(&addr, &post);
    assert!(answer.is_empty() || status_of(&answer) == 405, "{answer}");
    let rebound =
        browser_get(login.port, "attacker.example", &format!("/callback?code={CODE}&state={state}"));
    assert_eq!(status_of(&rebound), 400);
    assert_eq!(status_of(&login.callback(&format!("code={CODE}&state=wrong"))), 400);
    assert!(env.auth.token_calls().is_empty(), "nothing so far was a callback");

    // The real callback still gets through, while the slow client is still connected.
    let page = login.callback(&format!("code={CODE}&state={state}"));
    assert_eq!(status_of(&page), 200, "{page}");
    let (status, _, stderr) = login.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(env.read_token()["refresh_token"], "rt-1");
    assert!(slow.join().expect("slow client") > 0);
}

#[test]
fn a_slow_client_does_not_hold_the_login_past_its_timeout() {
    let env = TestEnv::new();
    let login = Login::start(&env, &["--timeout", "2s"]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", login.port)).expect("connect");
    std::io::Write::write_all(&mut stream, b"GET /callback?").expect("write");
    let started = std::time::Instant::now();
    let (status, _, stderr) = login.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no answer from the browser within 2s"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "ended at its timeout, not the client's");
    drop(stream);
}

#[test]
fn idle_connections_holding_every_slot_do_not_lock_out_the_callback() {
    use std::io::Read;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let env = TestEnv::new();
    let login = Login::start(&env, &["--timeout", "60s"]);
    let addr = format!("127.0.0.1:{}", login.port);
    let state = login.param("state");

    // Another local process holds more connections than the listener serves at once, and
    // opens a new one for each that is closed.
    let stop = Arc::new(AtomicBool::new(false));
    let reopened = Arc::new(AtomicUsize::new(0));
    let hog = {
        let (stop, reopened, addr) = (stop.clone(), reopened.clone(), addr.clone());
        std::thread::spawn(move || {
            let open = || {
                let stream = std::net::TcpStream::connect(&addr).ok()?;
                stream.set_nonblocking(true).expect("nonblocking");
                Some(stream)
            };
            let mut held: Vec<_> = (0..300).map(|_| open().expect("connect")).collect();
            while !stop.load(Ordering::Relaxed) {
                for stream in &mut held {
                    let closed = match stream.read(&mut [0u8; 64]) {
                        Ok(_) => true,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    };
                    if closed {
                        // Refused once the login has ended and stopped listening.
                        let Some(new) = open() else { return };
                        *stream = new;
                        reopened.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Every slot is taken (300 connections for 256 slots) and the hog keeps them so.
    wait_for("the hog to refill closed slots", Duration::from_secs(10), || {
        reopened.load(Ordering::Relaxed) >= 44
    });
    std::thread::sleep(Duration::from_millis(200));

    let page = login.callback(&format!("code={CODE}&state={state}"));
    stop.store(true, Ordering::Relaxed);
    hog.join().expect("hog");
    assert_eq!(status_of(&page), 200, "the browser got through: {page:?}");
    let (status, _, stderr) = login.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(env.read_token()["refresh_token"], "rt-1");
}

/// In a container, a published port arrives on the container's own address, not on
/// loopback: `ATL_LISTEN=0.0.0.0` listens there too, with one warning. Here the callback
/// arrives on 127.0.0.2 (another address of `lo`), where a loopback-only listener is not;
/// the `Host` and `state` checks stay.
#[test]
fn atl_listen_takes_a_callback_that_arrives_on_another_address() {
    let env = TestEnv::new();
    let login = Login::start_with(&env, "ATL_LISTEN=0.0.0.0\n", &[]);
    let warning = login.stderr.wait_line(|l| l.contains("warning: login listens on 0.0.0.0"));
    assert!(warning.contains("ATL_LISTEN"), "{warning}");
    let state = login.param("state");
    let elsewhere = format!("127.0.0.2:{}", login.port);
    let request = |host: &str| {
        format!("GET /callback?code={CODE}&state={state} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n")
    };
    // The browser went to the redirect URI, so it names that host; any other is refused.
    let wrong_host =
        http_raw(&elsewhere, request(&elsewhere).as_bytes()).expect("the listener answers there");
    assert_ne!(status_of(&wrong_host), 200, "{wrong_host}");
    let page =
        http_raw(&elsewhere, request(&format!("127.0.0.1:{}", login.port)).as_bytes()).expect("answers");
    assert_eq!(status_of(&page), 200, "{page}");
    let (status, _, err) = login.finish();
    assert!(status.success(), "{err}");
    assert_eq!(err.matches("listens on 0.0.0.0").count(), 1, "one warning: {err}");
    assert_eq!(env.read_token()["refresh_token"], "rt-1");
}

/// `ATL_LISTEN=127.0.0.1` with the default `localhost` redirect: `[::1]` is held too, so a
/// browser that takes `localhost` to IPv6 still comes back to this login, and nobody else can
/// take the port there.
#[test]
fn atl_listen_holds_the_other_loopback_family_for_localhost() {
    let env = TestEnv::new();
    let port = free_port();
    env.write_env(&format!("ATL_REDIRECT_URI=http://localhost:{port}/callback\nATL_LISTEN=127.0.0.1\n"));
    let login = Login::spawn(&env, port, &[]);
    let state = login.param("state");
    let request = format!(
        "GET /callback?code={CODE}&state={state} HTTP/1.1\r\nHost: localhost:{}\r\nAccept: */*\r\n\r\n",
        login.port
    );
    let page =
        http_raw(&format!("[::1]:{}", login.port), request.as_bytes()).expect("the listener answers on ::1");
    assert_eq!(status_of(&page), 200, "{page}");
    let (status, _, err) = login.finish();
    assert!(status.success(), "{err}");
    assert_eq!(env.read_token()["refresh_token"], "rt-1");
}

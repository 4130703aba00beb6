//! `atl-token login`: consent in the browser, catch the redirect on loopback, trade the code
//! (OAuth 2.0) or the verifier (OAuth 1.0a, in [`oauth1`]) for tokens, and save them.

mod oauth1;

use anyhow::{Result, anyhow};

use crate::callback::{self, Arrival, Callback, Listener};
use crate::cli::LoginArgs;
use crate::config::{Auth, Config, GRANT, OAuth2, OFFLINE_ACCESS, PROVIDER, SCOPE};
use crate::duration::human;
use crate::exit::Exit;
use crate::http;
use crate::oauth::{self, Grant, Pkce, TokenError, clean};
use crate::provider::Kind;
use crate::store::{self, Slot, TokenStore, When};
use crate::token::Token;
use crate::ui;

pub fn run(config: &Config, args: &LoginArgs) -> Result<()> {
    let oauth2 = match &config.auth {
        Auth::OAuth2(oauth2) => oauth2,
        Auth::OAuth1(consumer) => return oauth1::run(config, consumer, args),
    };
    if oauth2.provider.grant.renewable() {
        return service_account(config);
    }
    if args.oob {
        return Err(Exit::usage(format!(
            "--oob is for OAuth 1.0a ({}={}); OAuth 2.0 logins come back to {}, or use --paste",
            PROVIDER.name,
            crate::provider::OAUTH1,
            config.redirect.uri
        ))
        .into());
    }
    if oauth2.scope.added_offline_access {
        eprintln!("note: added `{OFFLINE_ACCESS}` to {}: without it there is no refresh token", SCOPE.name);
    }
    if let Some(ladder) = &oauth2.scope.ladder {
        eprintln!("atl-token: warning: {ladder}");
    }
    let store = prepare(config)?;
    let client = http::client(config)?;
    announce_custom_endpoints(oauth2);

    let runtime = crate::http::runtime()?;
    runtime.block_on(async {
        let state = uuid::Uuid::new_v4().to_string();
        let pkce = oauth2.provider.pkce.then(Pkce::new);
        let url = oauth::authorize_url(oauth2, &config.redirect.uri, &state, pkce.as_ref());
        let arrival = wait_for_browser(config, args, callback::OAUTH2, &state, url).await?;
        let (slot, arrival) = reserve(store.as_ref(), arrival).await?;
        let verifier = pkce.as_ref().map(Pkce::verifier);
        finish(config, oauth2, &client, store.as_ref(), slot, arrival, verifier).await
    })
}

/// A service account has no consent to give: its first token is fetched, which proves its
/// credentials, and saved as any later one is.
fn service_account(config: &Config) -> Result<()> {
    eprintln!(
        "a service account ({}=client_credentials) needs no login: fetching a token, which also checks \
         its credentials",
        GRANT.name
    );
    let store = store::open(config)?;
    let token = crate::renew::refresh(config, store.as_ref(), When::Always)?.token().clone();
    let valid = token.expires_at().map_or_else(
        || "its expiry is unknown".to_owned(),
        |at| {
            format!(
                "valid for {}",
                human(std::time::Duration::from_secs(at.saturating_sub(crate::token::now())))
            )
        },
    );
    eprintln!(
        "saved to {}: access token {valid}; `atl-token print` fetches the next one when due",
        store.location()
    );
    Ok(())
}

/// The token's store, and proof that a token can be saved there (for the token file: its
/// folder made, space reserved, then let go), before the user goes through the browser.
fn prepare(config: &Config) -> Result<Box<dyn TokenStore>> {
    let store = store::open(config)?;
    drop(store.reserve()?);
    Ok(store)
}

/// Reserves the space for the token once the browser is back, before the code is traded:
/// from then until the token is saved, a full disk cannot lose it. Holding it only from
/// here means no temp file is left behind by a login that was killed while waiting.
async fn reserve(store: &dyn TokenStore, arrival: Arrival) -> Result<(Box<dyn Slot + '_>, Arrival)> {
    match store.reserve() {
        Ok(slot) => Ok((slot, arrival)),
        Err(e) => {
            arrival
                .answer(
                    500,
                    "Sign-in not saved",
                    "atl-token cannot write its token file.\nSee the terminal for what to do.",
                )
                .await;
            Err(e)
        }
    }
}

/// Shows the authorize URL, opens a browser unless told not to, and waits for the browser to
/// come back to the listener, or for the user to paste where it went (`--paste`, or when the
/// listener cannot start on a terminal), until `--timeout` or a signal.
async fn wait_for_browser(
    config: &Config,
    args: &LoginArgs,
    params: callback::Params,
    state: &str,
    url: url::Url,
) -> Result<Arrival> {
    if !args.paste {
        announce_listen(config);
    }
    let listener = if args.paste {
        // The browser may be on another machine (over SSH), where this port is not this one.
        if let Some(warning) = port_holder(config).err() {
            eprintln!("atl-token: warning: if the browser runs on this machine: {warning}");
        }
        None
    } else {
        match Listener::bind(&config.redirect, params, state.to_owned(), url.to_string()).await {
            // Whatever ATL_LISTEN says, nobody else may hold the port on an address the
            // browser may go to, before the browser opens.
            Ok(listener) => {
                port_holder(config)?;
                Some(listener)
            }
            // Before the browser opens, and before the paste is offered instead: the browser
            // would deliver the code to whoever holds the port.
            Err(e) => {
                port_holder(config)?;
                if !ui::stdin_is_terminal() {
                    return Err(anyhow!("{e:#}; or run `atl-token login --paste`"));
                }
                eprintln!("atl-token: {e:#}.\nCarrying on without the listener: paste the address instead.");
                None
            }
        }
    };
    let Some(listener) = listener else {
        show_url(&url, false);
        return wait_for_paste(args, params, state).await;
    };
    // With TLS, the start page comes first, so that the certificate warning is dealt with
    // before consent.
    let open = match listener.fingerprint() {
        Some(fingerprint) => {
            let mut start = url::Url::parse(&config.redirect.uri)?;
            start.query_pairs_mut().append_pair(params.state, state);
            eprintln!(
                "note: {} serves a certificate made for this login, SHA-256 fingerprint\n  \
                 {fingerprint}\nThe browser warns about it: check the fingerprint and accept it, \
                 and it then goes on to sign in.",
                config.redirect.uri
            );
            start
        }
        None => url,
    };
    show_url(&open, !args.no_browser);
    eprintln!(
        "Waiting up to {} for the browser to come back to {} (Ctrl-C to stop)...",
        human(args.timeout),
        config.redirect.uri
    );
    wait(listener, args).await
}

/// Refuses (exit 2) when another user listens on the redirect port.
fn port_holder(config: &Config) -> Result<(), Exit> {
    let port = config.redirect.port;
    match callback::other_holders(port, config.redirect.host).as_slice() {
        [] => Ok(()),
        uids => Err(Exit::usage(format!(
            "port {port} is held by user {}, who would receive the authorization code the browser \
             brings back to {}: set {} to another port, and register that callback URL for the app",
            uids.iter().map(u32::to_string).collect::<Vec<_>>().join(" and user "),
            config.redirect.uri,
            crate::config::PORT.name
        ))),
    }
}

/// The wait itself, with the spinner on a terminal.
async fn wait(mut listener: Listener, args: &LoginArgs) -> Result<Arrival> {
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut spinner = ui::Spinner::on_terminal("Waiting for the browser", deadline);
    let mut tick = tokio::time::interval(ui::SPIN_EVERY);
    let stopped = ui::stopped("login");
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            arrival = listener.next() => return arrival,
            () = tokio::time::sleep_until(deadline) => return Err(timed_out(args)),
            exit = &mut stopped => return Err(exit.into()),
            _ = tick.tick(), if spinner.is_some() => {
                if let Some(spinner) = &mut spinner {
                    spinner.draw();
                }
            }
        }
    }
}

/// `--paste`: reads the address the browser was sent to, and checks it as the listener
/// would. On a terminal a wrong paste can be tried again.
async fn wait_for_paste(args: &LoginArgs, params: callback::Params, state: &str) -> Result<Arrival> {
    eprintln!(
        "After you allow access, the browser goes to an address that may not load (\"this site \
         can't be reached\" is fine).\nCopy that whole address from the address bar, paste it \
         here and press Enter:"
    );
    loop {
        let line = read_line(args, "the address").await?;
        // Only an explicit --paste takes a bare code: when the listener could not start, the
        // port may be someone else's, and the state is the check that is left.
        match callback::pasted(&line, params, state, args.paste) {
            Ok(pasted) => {
                if !pasted.state_checked {
                    eprintln!(
                        "note: a bare code carries no state, so atl-token cannot check that it came from \
                         this login; paste the whole address to have it checked"
                    );
                }
                return Ok(Arrival::pasted(pasted.callback));
            }
            Err(why) if ui::stdin_is_terminal() => eprintln!("{why}. Try again:"),
            Err(why) => return Err(Exit::usage(format!("{why}: run `atl-token login --paste` again")).into()),
        }
    }
}

/// A line from stdin (a terminal or a pipe), within `--timeout`, unless a signal comes first.
async fn read_line(args: &LoginArgs, what: &str) -> Result<String> {
    tokio::select! {
        line = ui::ask_line("login", what) => line,
        () = tokio::time::sleep(args.timeout) => Err(timed_out(args)),
    }
}

/// Prints the URL to open, and opens it in a browser when asked.
fn show_url(url: &url::Url, open: bool) {
    eprintln!("Open this URL in a browser to grant access:\n\n    {url}\n");
    if open {
        open_browser(url.as_str());
    }
}

fn timed_out(args: &LoginArgs) -> anyhow::Error {
    anyhow!(
        "no answer from the browser within {}: run `atl-token login` again (--timeout sets the wait)",
        human(args.timeout)
    )
}

/// Saves the token under the lock, and only then tells the browser (if it came back to the
/// listener) that it worked.
async fn save(
    config: &Config,
    store: &dyn TokenStore,
    slot: Box<dyn Slot + '_>,
    token: &Token,
    arrival: Arrival,
) -> Result<()> {
    let path = store.location();
    let saved = slot.commit(token);
    match &saved {
        Ok(()) => {
            let message = format!(
                "Signed in to {}.\natl-token saved the token to `{path}`.\nYou can close this tab.",
                config.site_label()
            );
            arrival.answer(200, "Signed in", &message).await;
        }
        Err(_) => {
            let message = "atl-token got a token but could not save it.\nSee the terminal for what to do.";
            arrival.answer(500, "Sign-in not saved", message).await;
        }
    }
    saved?;
    crate::hook::rotated(config, token);
    eprintln!("Logged in. Token saved to {path}");
    Ok(())
}

/// Warns, once, when the listener is to take callbacks beyond loopback (`ATL_LISTEN`).
fn announce_listen(config: &Config) {
    if let Some((ip, origin)) = config.redirect.listen.as_ref().filter(|(ip, _)| !ip.is_loopback()) {
        eprintln!(
            "atl-token: warning: login listens on {ip} port {} ({origin}), beyond loopback: fine in a \
             container whose port is published to this host's loopback; elsewhere, anyone who can reach \
             the port can try a callback (only this login's state is accepted)",
            config.redirect.port
        );
    }
}

/// Says, before the browser opens, where the code and the client secret will go when that is
/// not Atlassian Cloud, and which file said so: a cloned repository's `.env` may.
fn announce_custom_endpoints(oauth2: &OAuth2) {
    let provider = &oauth2.provider;
    if provider.kind == Kind::DataCenter
        && let Some(base) = &provider.api_base
    {
        eprintln!("note: signing in to Data Center at {base} ({})", provider.token_url.origin);
    }
    let custom: Vec<String> =
        oauth2.custom_endpoints().iter().map(|e| format!("{} ({})", e.url, e.origin)).collect();
    if !custom.is_empty() {
        eprintln!("note: signing in through endpoints that are not Atlassian's: {}", custom.join(", "));
    }
}

/// Trades the code, saves the token, and only then tells the browser it worked.
async fn finish(
    config: &Config,
    oauth2: &OAuth2,
    client: &reqwest::Client,
    store: &dyn TokenStore,
    slot: Box<dyn Slot + '_>,
    arrival: Arrival,
    verifier: Option<&str>,
) -> Result<()> {
    let code = match &arrival.callback {
        Callback::Code(code) => code.clone(),
        Callback::Denied { error, description } => {
            let error = clean(error);
            let detail = description.as_deref().map(clean).map(|d| format!(": {d}")).unwrap_or_default();
            let message = format!(
                "The server said: {}\nRun `atl-token login` again, and allow access.",
                sentence(&format!("{error}{detail}"))
            );
            arrival.answer(400, "Access was not granted", &message).await;
            if let Some(ladder) = oauth2.scope.ladder.as_ref().filter(|_| error == "invalid_scope") {
                return Err(anyhow!("authorization failed: {error}{detail}. {ladder}"));
            }
            return Err(anyhow!("authorization failed: {error}{detail}"));
        }
    };
    let grant = Grant::AuthorizationCode { code: &code, verifier };
    let answer = match http::request_token(client, config, oauth2, grant, http::CODE).await {
        Ok(answer) => answer,
        Err(e) => {
            let message = format!(
                "The token request failed: {}\nSee the terminal for what to do.",
                sentence(&e.to_string())
            );
            arrival.answer(400, "Sign-in failed", &message).await;
            return Err(explain(&e, config, oauth2));
        }
    };
    let token = crate::renew::issued(answer, None, config);
    save(config, store, slot, &token, arrival).await
}

/// Ends text with exactly one full stop.
fn sentence(text: &str) -> String {
    format!("{}.", text.trim_end().trim_end_matches('.'))
}

fn explain(error: &TokenError, config: &Config, oauth2: &OAuth2) -> anyhow::Error {
    match error {
        TokenError::ClientRejected(_) => crate::renew::client_rejected(error),
        TokenError::GrantRejected(_) => anyhow!(
            "the server refused the authorization code ({error}); it may have expired (a code lives \
             for seconds: 10 on Data Center), or {} may not match the callback URL registered for \
             the app. Run `atl-token login` again",
            config.redirect.uri
        ),
        _ => anyhow!("token endpoint {} failed: {error}", oauth2.provider.token_url),
    }
}

/// Opens the URL in `$BROWSER`, or the desktop's browser where there is one. When none can
/// be started, says so in one line: the URL is already on the screen.
fn open_browser(url: &str) {
    let chosen = std::env::var_os("BROWSER").is_some_and(|b| !b.is_empty());
    let desktop = !cfg!(target_os = "linux")
        || ["DISPLAY", "WAYLAND_DISPLAY", "WSL_DISTRO_NAME"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !chosen && !desktop {
        eprintln!(
            "(no display here, so no browser was opened: open the URL on any machine, and use \
             `atl-token login --paste` if it cannot reach this one)"
        );
        return;
    }
    let url = url.to_owned();
    // Some launchers wait for the browser to exit: a detached thread never holds up the
    // listener, nor the end of the process.
    std::thread::spawn(move || {
        if let Err(e) = webbrowser::open(&url) {
            eprintln!("(could not start a browser: {e}; open the URL yourself)");
        }
    });
}

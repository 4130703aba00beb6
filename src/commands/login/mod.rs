//! `atl-token login`: consent in the browser, catch the redirect on loopback, trade the code
//! (OAuth 2.0) or the verifier (OAuth 1.0a, in [`oauth1`]) for tokens, and save them.

mod oauth1;

use anyhow::{Result, anyhow};

use crate::callback::{self, Arrival, Callback, Listener};
use crate::cli::LoginArgs;
use crate::config::{Auth, Config, OAuth2, OFFLINE_ACCESS, PROVIDER, SCOPE};
use crate::duration::human;
use crate::exit::Exit;
use crate::http;
use crate::oauth::{self, Grant, Pkce, TokenError, clean};
use crate::provider::Kind;
use crate::store::{self, LOCK_WAIT, Reservation, Store};
use crate::token::{self, Token};

pub fn run(config: &Config, args: &LoginArgs) -> Result<()> {
    let oauth2 = match &config.auth {
        Auth::OAuth2(oauth2) => oauth2,
        Auth::OAuth1(consumer) => return oauth1::run(config, consumer, args),
    };
    if args.oob {
        return Err(Exit::usage(format!(
            "--oob is for OAuth 1.0a ({}={}); OAuth 2.0 logins come back to {}",
            PROVIDER.name,
            crate::provider::OAUTH1,
            config.redirect.uri
        ))
        .into());
    }
    if oauth2.scope.added_offline_access {
        eprintln!("note: added `{OFFLINE_ACCESS}` to {}: without it there is no refresh token", SCOPE.name);
    }
    let (store, reservation) = prepare(config)?;
    let client = http::client(config)?;
    announce_custom_endpoints(oauth2);

    let runtime = super::runtime()?;
    runtime.block_on(async {
        let state = uuid::Uuid::new_v4().to_string();
        let pkce = oauth2.provider.pkce.then(Pkce::new);
        let url = oauth::authorize_url(oauth2, &config.redirect.uri, &state, pkce.as_ref());
        let listener =
            Listener::bind(&config.redirect, callback::OAUTH2, state.clone(), url.to_string()).await?;
        let arrival = wait_for_browser(config, args, listener, callback::OAUTH2, &state, url).await?;
        let verifier = pkce.as_ref().map(Pkce::verifier);
        finish(config, oauth2, &client, &store, reservation, arrival, verifier).await
    })
}

/// The token file's store, its folder made, and the space for the token reserved: proof
/// that the token can be saved, before the user goes through the browser.
fn prepare(config: &Config) -> Result<(Store, Reservation)> {
    let store = Store::new(&config.token_file)?;
    store::ensure_dir(&store)?;
    let reservation = store.reserve()?;
    Ok((store, reservation))
}

/// Shows the authorize URL (through the listener's start page when it serves TLS, so that the
/// certificate warning comes first), opens a browser unless told not to, and waits for the
/// callback, `--timeout` or Ctrl-C.
async fn wait_for_browser(
    config: &Config,
    args: &LoginArgs,
    mut listener: Listener,
    params: callback::Params,
    state: &str,
    url: url::Url,
) -> Result<Arrival> {
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
    show_url(&open, args);
    eprintln!(
        "Waiting up to {} for the browser to come back to {} (Ctrl-C to stop)...",
        human(args.timeout),
        config.redirect.uri
    );
    tokio::select! {
        arrival = listener.next() => arrival,
        () = tokio::time::sleep(args.timeout) => Err(timed_out(args)),
        _ = tokio::signal::ctrl_c() => Err(Exit::interrupted("login cancelled").into()),
    }
}

/// Prints the URL to open, and opens it in a browser unless `--no-browser`.
fn show_url(url: &url::Url, args: &LoginArgs) {
    eprintln!("Open this URL in a browser to grant access:\n\n    {url}\n");
    if !args.no_browser {
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
    store: &Store,
    reservation: Reservation,
    token: &Token,
    arrival: Option<Arrival>,
) -> Result<()> {
    let path = store.path().display();
    let saved = store.lock(LOCK_WAIT).and_then(|lock| reservation.commit(token, &lock));
    if let Some(arrival) = arrival {
        match &saved {
            Ok(()) => {
                let message = format!("atl-token saved its token to {path}. You can close this tab.");
                arrival.answer(200, "Signed in", &message).await;
            }
            Err(_) => {
                let message = "atl-token got a token but could not save it. See the terminal for what to do.";
                arrival.answer(500, "Sign-in not saved", message).await;
            }
        }
    }
    saved?;
    eprintln!("Logged in. Token saved to {path}");
    Ok(())
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
    store: &Store,
    reservation: Reservation,
    arrival: Arrival,
    verifier: Option<&str>,
) -> Result<()> {
    let code = match &arrival.callback {
        Callback::Code(code) => code.clone(),
        Callback::Denied { error, description } => {
            let error = clean(error);
            let detail = description.as_deref().map(clean).map(|d| format!(": {d}")).unwrap_or_default();
            arrival.answer(400, "Access was not granted", &format!("{error}{detail}")).await;
            return Err(anyhow!("authorization failed: {error}{detail}"));
        }
    };
    let grant = Grant::AuthorizationCode { code: &code, verifier };
    let answer = match http::request_token(client, config, oauth2, grant, http::CODE).await {
        Ok(answer) => answer,
        Err(e) => {
            arrival
                .answer(400, "Sign-in failed", &format!("The token request failed: {e}. See the terminal."))
                .await;
            return Err(explain(&e, config, oauth2));
        }
    };
    let token = Token::from_response(answer, None, token::now(), oauth2.provider.token_url.url.as_str());
    save(store, reservation, &token, Some(arrival)).await
}

fn explain(error: &TokenError, config: &Config, oauth2: &OAuth2) -> anyhow::Error {
    match error {
        TokenError::ClientRejected(_) => super::refresh::client_rejected(error),
        TokenError::GrantRejected(_) => anyhow!(
            "the server refused the authorization code ({error}); it may have expired (a code lives \
             for seconds: 10 on Data Center), or {} may not match the callback URL registered for \
             the app. Run `atl-token login` again",
            config.redirect.uri
        ),
        _ => anyhow!("token endpoint {} failed: {error}", oauth2.provider.token_url),
    }
}

/// Opens the URL in a browser where there is a screen; failure only means the user copies it.
fn open_browser(url: &str) {
    let has_display = !cfg!(target_os = "linux")
        || ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !has_display {
        return;
    }
    let url = url.to_owned();
    // Some launchers wait for the browser to exit: a detached thread never holds up the
    // listener, nor the end of the process.
    std::thread::spawn(move || {
        if let Err(e) = webbrowser::open(&url) {
            eprintln!("(could not open a browser: {e}; open the URL yourself)");
        }
    });
}

//! The OAuth 1.0a dance (RFC 5849 section 2) with an application link: a request token, the
//! user's consent in the browser, and the access token for the verifier.

use anyhow::{Result, anyhow};
use reqwest::Method;
use url::Url;

use super::{prepare, read_line, reserve, save, show_url, wait_for_browser};
use crate::callback::{self, Arrival, Callback};
use crate::cli::LoginArgs;
use crate::config::{Config, Consumer};
use crate::exit::Exit;
use crate::http;
use crate::oauth::clean;
use crate::oauth1::{self, Extra, PrivateKey, Problem, Signer};
use crate::token::{self, Token};

/// What Atlassian's OAuth 1.0a provider sends as the verifier when the user denies access.
const DENIED: &str = "denied";
/// The callback that asks the server to show the verifier instead of redirecting.
const OUT_OF_BAND: &str = "oob";

pub fn run(config: &Config, consumer: &Consumer, args: &LoginArgs) -> Result<()> {
    // A bad key is a setting to fix: find out before anything is asked of the server.
    let key = oauth1::load_key(&consumer.private_key_file)?;
    let store = prepare(config)?;
    let client = http::client(config)?;
    eprintln!(
        "note: signing in to {} with OAuth 1.0a ({})",
        consumer.base_url, consumer.access_token_url.origin
    );

    let runtime = crate::http::runtime()?;
    runtime.block_on(async {
        let callback_uri = if args.oob { OUT_OF_BAND } else { config.redirect.uri.as_str() };
        let request_token = request_token(&client, consumer, &key, callback_uri).await?;
        let mut url = consumer.authorize_url.url.clone();
        url.query_pairs_mut().append_pair("oauth_token", &request_token);

        let arrival = if args.oob {
            show_url(&url, !args.no_browser);
            eprintln!("Paste the verification code the page shows, then press Enter:");
            let code = read_line(args, "the verification code").await?;
            let code = code.trim();
            if code.is_empty() {
                return Err(
                    Exit::usage("no verification code was given: run `atl-token login --oob` again").into()
                );
            }
            Arrival::pasted(Callback::Code(code.to_owned()))
        } else {
            wait_for_browser(config, args, callback::OAUTH1, &request_token, url).await?
        };
        let (slot, arrival) = reserve(store.as_ref(), arrival).await?;
        let verifier = match &arrival.callback {
            Callback::Code(verifier) if verifier != DENIED => verifier.clone(),
            Callback::Code(_) => {
                arrival
                    .answer(
                        400,
                        "Access was not granted",
                        "You denied access.\nRun `atl-token login` again, and allow access.",
                    )
                    .await;
                return Err(Exit::login_required(
                    "access was denied in the browser: run `atl-token login` again",
                )
                .into());
            }
            Callback::Denied { error, .. } => {
                let error = clean(error);
                let message = format!("The server said: {error}\nRun `atl-token login` again.");
                arrival.answer(400, "Access was not granted", &message).await;
                return Err(anyhow!("authorization failed: {error}"));
            }
        };
        match access_token(&client, config, consumer, &key, &request_token, &verifier).await {
            Ok(token) => save(config, store.as_ref(), slot, &token, arrival).await,
            Err(e) => {
                arrival
                    .answer(
                        400,
                        "Sign-in failed",
                        "The access token request failed.\nSee the terminal for what to do.",
                    )
                    .await;
                Err(e)
            }
        }
    })
}

/// Step 1: a request token, for the callback (or `oob`).
async fn request_token(
    client: &reqwest::Client,
    consumer: &Consumer,
    key: &PrivateKey,
    callback_uri: &str,
) -> Result<String> {
    let signer = Signer { consumer_key: &consumer.consumer_key, key, token: None };
    let extra = Extra { callback: Some(callback_uri), verifier: None };
    let fields = post(client, &consumer.request_token_url.url, &signer, &extra, &[]).await?;
    oauth1::field(&fields, "oauth_token").map(str::to_owned).ok_or_else(|| {
        anyhow!(
            "{} answered without an oauth_token: is ATL_BASE_URL the product's base URL?",
            consumer.request_token_url
        )
    })
}

/// Step 3: the access token for the request token and the verifier, as a token set to save.
async fn access_token(
    client: &reqwest::Client,
    config: &Config,
    consumer: &Consumer,
    key: &PrivateKey,
    request_token: &str,
    verifier: &str,
) -> Result<Token> {
    let signer = Signer { consumer_key: &consumer.consumer_key, key, token: Some(request_token) };
    let extra = Extra { callback: None, verifier: Some(verifier) };
    let url = &consumer.access_token_url.url;
    let fields = post(client, url, &signer, &extra, &[request_token, verifier]).await?;
    if oauth1::field(&fields, "oauth_token").is_none() {
        return Err(anyhow!("{url} answered without an oauth_token; no token was saved"));
    }
    let (token, capped) = Token::from_oauth1(&fields, token::now(), &config.binding_urls());
    if capped {
        eprintln!(
            "atl-token: note: the server said its access token lives longer than 10 years; atl-token \
             counts 10 years"
        );
    }
    Ok(token)
}

/// A signed POST to a request-token or access-token endpoint, sent once: its form-encoded
/// answer, or an error that names the `oauth_problem`.
async fn post(
    client: &reqwest::Client,
    url: &Url,
    signer: &Signer<'_>,
    extra: &Extra<'_>,
    secrets: &[&str],
) -> Result<Vec<(String, String)>> {
    let authorization = signer.header("POST", url, &[], extra)?;
    let answer = http::call(client, Method::POST, url, &[], None, &authorization, secrets)
        .await
        .map_err(|e| anyhow!("{url} failed: {e}"))?;
    if answer.status == 200 {
        return Ok(oauth1::parse_form(&answer.body));
    }
    if let Some(problem) = Problem::of(&answer.body) {
        return Err(problem.error(url.as_str()));
    }
    let body = crate::oauth::redact(&String::from_utf8_lossy(&answer.body), secrets);
    Err(anyhow!("{url} answered HTTP {}: \"{}\"", answer.status, clean(&body)))
}

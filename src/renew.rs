//! Spending the refresh token: the one refresh that every command needing a fresh access
//! token goes through (`refresh`, `print`, `api`, `sites`), and the token set a token
//! endpoint's answer makes. The store says when a refresh token may be spent; this says how.

use std::time::Duration;

use anyhow::{Result, anyhow};

use crate::binding;
use crate::config::{CLIENT_ID, CLIENT_SECRET, Config, OAuth2};
use crate::exit::Exit;
use crate::http;
use crate::oauth::{Grant, TokenError};
use crate::store::{Outcome, Refresh, Stored, TokenStore, When};
use crate::token::{self, Token};

/// The stored OAuth 1.0a token set, checked: issued by the configured server, and not expired.
pub fn oauth1_stored(config: &Config, store: &dyn TokenStore) -> Result<Stored> {
    let stored = store.load_existing()?;
    let path = store.location();
    binding::check(&stored.token, config, &path)?;
    if stored.token.expires_at().is_some_and(|at| at <= token::now()) {
        return Err(Exit::login_required(format!(
            "the OAuth 1.0a access token in {path} has expired: run `atl-token login`"
        ))
        .into());
    }
    Ok(stored)
}

/// Refreshes the stored token set if `when` says so. The store makes sure that no other
/// process spends the same refresh token; this says how to spend it. The refresh token goes
/// only to the endpoint that issued it, and an error answer is never stored.
pub fn refresh(config: &Config, store: &dyn TokenStore, when: When) -> Result<Outcome> {
    let oauth2 = config.oauth2("a refresh")?;
    let location = store.location();
    let check = |token: &Token| binding::check(token, config, &location).map_err(anyhow::Error::from);
    let mut spend = |stored: &Token, budget: Duration| -> Result<Token> {
        let refresh_token = stored.refresh_token().ok_or_else(|| {
            Exit::login_required(format!(
                "{location} holds no refresh token (was `offline_access` in the scope?): run `atl-token login`"
            ))
        })?;
        // Built only when a refresh is due: a fresh token needs no client.
        let client = http::client(config)?;
        let retry = http::Retry { budget, ..http::REFRESH };
        let answer = crate::http::runtime()?
            .block_on(http::request_token(&client, config, oauth2, Grant::RefreshToken(refresh_token), retry))
            .map_err(|e| explain(e, oauth2, &location))?;
        Ok(issued(answer, Some(stored), config))
    };
    store.refresh(Refresh { when, check: &check, spend: &mut spend })
}

/// The token set from a token endpoint's answer, bound to the settings' destinations, with
/// a note when the server said its access token lives longer than atl-token believes.
pub fn issued(
    answer: serde_json::Map<String, serde_json::Value>,
    previous: Option<&Token>,
    config: &Config,
) -> Token {
    let (token, capped) = Token::from_response(answer, previous, token::now(), &config.binding_urls());
    if capped {
        eprintln!(
            "atl-token: note: the server said its access token lives longer than a day; atl-token \
             counts a day, and refreshes it then"
        );
    }
    token
}

/// Turns a failed token request into an error a person can act on, with its exit code.
pub fn explain(error: TokenError, oauth2: &OAuth2, token_file: &str) -> anyhow::Error {
    let url = &oauth2.provider.token_url;
    match error {
        TokenError::GrantRejected(e) => Exit::login_required(format!(
            "the server rejected the refresh token in {token_file} ({e}); it has expired, been revoked \
             or been used already: run `atl-token login`"
        ))
        .into(),
        e @ TokenError::ClientRejected(_) => client_rejected(&e),
        e @ TokenError::Certificate { .. } => {
            anyhow!("token endpoint {url}: {e}. Nothing was sent; the token file was not changed")
        }
        TokenError::Transient { detail, delivery, .. }
            if !oauth2.provider.kind.rotation().may_resend(delivery) =>
        {
            anyhow!(
                "token endpoint {url} failed after the request may have reached it: {detail}. \
                 {} rotates refresh tokens with no grace period, so it was not sent again: the \
                 server may have rotated the token. {token_file} was not changed; run `atl-token \
                 refresh` again, and if that is rejected, `atl-token login`",
                oauth2.provider.kind.title()
            )
        }
        TokenError::Transient { detail, .. } => {
            anyhow!(
                "token endpoint {url} failed, also after retrying: {detail}; the token file was not changed"
            )
        }
        e => anyhow!("token endpoint {url} answered with an error: {e}; the token file was not changed"),
    }
}

/// The message for a wrong client id or secret.
pub fn client_rejected(error: &TokenError) -> anyhow::Error {
    anyhow!("client credentials rejected ({error}): check {} and {}", CLIENT_ID.name, CLIENT_SECRET.name)
}

//! Spending the refresh token: the one refresh that every command needing a fresh access
//! token goes through (`refresh`, `print`, `api`, `sites`), and the token set a token
//! endpoint's answer makes. The store says when a refresh token may be spent; this says how.

use std::time::Duration;

use anyhow::{Result, anyhow};

use crate::binding;
use crate::config::{CLIENT_ID, CLIENT_SECRET, Config, GRANT, OAuth2, SCOPE};
use crate::exit::{self, Code, Exit};
use crate::http;
use crate::oauth::{Grant, TokenError};
use crate::provider::{Grant as ProviderGrant, Kind};
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

/// The stored token set (with `cheap`, as [`TokenStore::peek`] reads it). Where the grant
/// can fetch one with no person (a service account), a missing or unreadable one is
/// fetched; else it is exit 4, asking for a login.
pub fn load(config: &Config, store: &dyn TokenStore, cheap: bool) -> Result<Stored> {
    let read = if cheap { store.peek() } else { store.load() };
    if !config.renewable() {
        return read?.map_or_else(|| store.load_existing(), Ok);
    }
    match read {
        Ok(Some(stored)) => return Ok(stored),
        Ok(None) => {}
        Err(e) if exit::code_for(&e) == Code::LoginRequired => {}
        Err(e) => return Err(e),
    }
    let token = refresh(config, store, When::Always)?.token().clone();
    Ok(Stored { bytes: token.to_bytes(), token, written_at: None })
}

/// The token set with an access token valid for `min_valid` (default: the token's own,
/// [`Token::default_min_valid`]), refreshed first if needed: what `exec` hands on.
pub fn fresh(config: &Config, store: &dyn TokenStore, min_valid: Option<Duration>) -> Result<Token> {
    let stored = load(config, store, true)?;
    let min_valid = min_valid.unwrap_or_else(|| stored.token.default_min_valid());
    if stored.remaining(token::clock()) >= min_valid {
        return Ok(stored.token);
    }
    check_min_valid(min_valid, &stored.token)?;
    Ok(refresh(config, store, When::ExpiresWithin(min_valid))?.token().clone())
}

/// Refuses a `--min-valid` as long as the access token's whole lifetime: every use would
/// get a new token.
pub fn check_min_valid(min_valid: Duration, token: &Token) -> Result<(), Exit> {
    match token.lifetime() {
        Some(lifetime) if min_valid >= lifetime => Err(Exit::usage(format!(
            "--min-valid {} is as long as the access token's whole lifetime ({}), so every use \
             would get a new token: give less, e.g. --min-valid {}, or leave it out (the default \
             adapts to the token)",
            crate::duration::human(min_valid),
            crate::duration::human(lifetime),
            crate::duration::human(lifetime / 3)
        ))),
        _ => Ok(()),
    }
}

/// Refreshes the stored token set if `when` says so. The store makes sure that no other
/// process spends the same refresh token (or, for a service account, that concurrent
/// processes make one request between them); this says how to get a new set. The refresh
/// token goes only to the endpoint that issued it, and an error answer is never stored.
pub fn refresh(config: &Config, store: &dyn TokenStore, when: When) -> Result<Outcome> {
    let oauth2 = config.oauth2("a refresh")?;
    let grant = oauth2.provider.grant;
    let location = store.location();
    let check = |token: &Token| -> Result<()> {
        binding::check(token, config, &location)?;
        if grant.renewable() && token.refresh_token().is_some() {
            return Err(Exit::usage(format!(
                "{location} holds a token family from a login (it has a refresh token), but {} is \
                 client_credentials: a service account's token would replace it. Give the service \
                 account its own ATL_TOKEN_FILE, or run `atl-token logout` first",
                GRANT.name
            ))
            .into());
        }
        Ok(())
    };
    let mut spend = |stored: Option<&Token>, budget: Duration| -> Result<Token> {
        let request = match grant {
            ProviderGrant::AuthorizationCode => {
                let refresh_token = stored.and_then(Token::refresh_token).ok_or_else(|| {
                    let why = if stored.is_some_and(Token::is_client_credentials) {
                        format!(
                            "it holds a service account's token; to use it, set {}=client_credentials",
                            GRANT.name
                        )
                    } else {
                        "was `offline_access` in the scope?".to_owned()
                    };
                    Exit::login_required(format!(
                        "{location} holds no refresh token ({why}): run `atl-token login`"
                    ))
                })?;
                Grant::RefreshToken(refresh_token)
            }
            ProviderGrant::ClientCredentials => Grant::ClientCredentials { scope: &oauth2.scope.value },
        };
        // Built only when a refresh is due: a fresh token needs no client.
        let client = http::client(config)?;
        let retry = http::Retry { budget, ..http::REFRESH };
        let answer = crate::http::runtime()?
            .block_on(http::request_token(&client, config, oauth2, request, retry))
            .map_err(|e| explain(e, oauth2, &location))?;
        let token = issued(answer, stored, config);
        Ok(if grant.renewable() { token.for_service_account() } else { token })
    };
    let outcome =
        store.refresh(Refresh { when, check: &check, renewable: grant.renewable(), spend: &mut spend })?;
    match &outcome {
        Outcome::Refreshed(token) => crate::hook::rotated(config, token),
        Outcome::StillValid { token, .. } => crate::hook::retry_pending(config, token),
    }
    Ok(outcome)
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
    if oauth2.provider.grant == ProviderGrant::ClientCredentials {
        return explain_service_account(error, oauth2, token_file);
    }
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
            if !oauth2.provider.rotation().may_resend(delivery) =>
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

/// [`explain`] for a service account: a rejected credential is exit 4 with where to check
/// it, a rejected scope exit 2 naming the scopes asked for.
fn explain_service_account(error: TokenError, oauth2: &OAuth2, token_file: &str) -> anyhow::Error {
    let url = &oauth2.provider.token_url;
    let page = match oauth2.provider.kind {
        Kind::Cloud => "Atlassian Administration (admin.atlassian.com), Directory, Service accounts",
        Kind::DataCenter => "the product's administration, where the service account's credentials are",
    };
    match error {
        TokenError::ClientRejected(e) | TokenError::GrantRejected(e) => Exit::login_required(format!(
            "the token endpoint {url} rejected the service account's credentials ({e}): check {} and {}, \
             and that the credential has not been revoked or expired, in {page}",
            CLIENT_ID.name, CLIENT_SECRET.name
        ))
        .into(),
        TokenError::Other(e) if e.error == "invalid_scope" => {
            let asked = if oauth2.scope.value.is_empty() { "none" } else { oauth2.scope.value.as_str() };
            Exit::usage(format!(
                "the token endpoint {url} refused the scopes asked for ({e}); {} asks for: {asked}. Ask \
                 only for scopes the service account's credential has (see {page})",
                SCOPE.name
            ))
            .into()
        }
        e @ TokenError::Certificate { .. } => anyhow!("token endpoint {url}: {e}. Nothing was sent"),
        TokenError::Transient { detail, .. } => anyhow!(
            "token endpoint {url} failed, also after retrying: {detail}; {token_file} was not changed"
        ),
        e => anyhow!("token endpoint {url} answered with an error: {e}; {token_file} was not changed"),
    }
}

/// The message for a wrong client id or secret.
pub fn client_rejected(error: &TokenError) -> anyhow::Error {
    anyhow!("client credentials rejected ({error}): check {} and {}", CLIENT_ID.name, CLIENT_SECRET.name)
}

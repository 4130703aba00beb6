//! An authenticated session for API calls, shared by `api` and `sites`: one HTTP client, the
//! credential, and the rules every API call follows. With OAuth 2.0, the access token is
//! refreshed when needed, and a 401 gets one refresh and one more try, then exit 4. With
//! OAuth 1.0a, each request (each try, too) gets its own signature, and a 401 is explained
//! from its `oauth_problem`. 429 and 503 wait as `Retry-After` says.

use std::cell::RefCell;
use std::time::Duration;

use anyhow::{Result, anyhow};
use futures_util::StreamExt;
use reqwest::Method;
use url::Url;

use crate::binding;
use crate::config::{Auth, Config, Consumer};
use crate::exit::Exit;
use crate::http::{self, Answer};
use crate::oauth;
use crate::oauth1::{self, Extra, PrivateKey, Signer};
use crate::renew;
use crate::store::{TokenStore, When};
use crate::token::Token;

/// An access token with less than this left is refreshed before the request.
const MIN_VALID: Duration = Duration::from_secs(60);
/// 429 and 503 are tried again this often at most, within [`BUSY_BUDGET`] of waiting.
const BUSY_TRIES: u32 = 4;
const BUSY_BUDGET: Duration = Duration::from_secs(60);

/// One request's settings, and the credential that authorizes it.
pub struct Session<'a> {
    config: &'a Config,
    store: &'a dyn TokenStore,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    credential: Credential<'a>,
    call: Call,
    /// The parameters of a form-encoded body, which an OAuth 1.0a signature covers.
    form: Vec<(String, String)>,
}

/// What authorizes the requests.
enum Credential<'a> {
    /// An OAuth 2.0 access token, which a 401 replaces.
    Bearer(RefCell<String>),
    /// An OAuth 1.0a access token and the consumer's key, which sign each request.
    OAuth1 { consumer: &'a Consumer, key: Box<PrivateKey>, token: String },
}

/// What every request of a session sends: the method, extra headers and a body.
pub struct Call {
    pub method: Method,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Call {
    pub fn get() -> Self {
        Self { method: Method::GET, headers: Vec::new(), body: None }
    }
}

impl<'a> Session<'a> {
    /// A session for `call`, with the access token refreshed first when it has less than a
    /// minute left. Returns the token set it read, too.
    pub fn open(config: &'a Config, store: &'a dyn TokenStore, call: Call) -> Result<(Self, Token)> {
        let (credential, token) = match &config.auth {
            Auth::OAuth2(_) => {
                // The refresh checks where the family is bound before it does anything.
                let token = renew::refresh(config, store, When::ExpiresWithin(MIN_VALID))?.token().clone();
                let access = token.access_token().ok_or_else(|| no_token(store, "access token"))?;
                (Credential::Bearer(RefCell::new(access.to_owned())), token)
            }
            Auth::OAuth1(consumer) => {
                let (token, access) = oauth1_token(config, store)?;
                let key = oauth1::load_key(&consumer.private_key_file)?;
                (Credential::OAuth1 { consumer, key: Box::new(key), token: access }, token)
            }
        };
        binding::enforce(&token, config, store)?;
        let form = match &call.body {
            Some(body) if is_form(&call.headers) => oauth1::parse_form(body),
            _ => Vec::new(),
        };
        let session = Self {
            config,
            store,
            client: http::client(config)?,
            runtime: crate::http::runtime()?,
            credential,
            call,
            form,
        };
        Ok((session, token))
    }

    /// The token the requests carry, which never appears in a message.
    fn secret(&self) -> String {
        match &self.credential {
            Credential::Bearer(access) => access.borrow().clone(),
            Credential::OAuth1 { token, .. } => token.clone(),
        }
    }

    /// Server text for an error message: cleaned, with the access token removed.
    pub fn excerpt(&self, body: &[u8]) -> String {
        oauth::clean(&oauth::redact(&String::from_utf8_lossy(body), &[self.secret().as_str()]))
    }

    /// The `Authorization` header for one try of a request to `url`.
    fn authorization(&self, url: &Url) -> Result<String> {
        match &self.credential {
            Credential::Bearer(access) => Ok(format!("Bearer {}", access.borrow())),
            Credential::OAuth1 { consumer, key, token } => {
                let signer = Signer { consumer_key: &consumer.consumer_key, key, token: Some(token) };
                signer.header(self.call.method.as_str(), url, &self.form, &Extra::default())
            }
        }
    }

    /// Sends the request to `url`. A 401 gets one refresh and one more try, then exit 4.
    pub fn send(&self, url: &Url) -> Result<Answer> {
        let mut answers = self.send_all(std::slice::from_ref(url), 1)?;
        Ok(answers.remove(0))
    }

    /// Sends the request to each URL, at most `parallel` at once, answers in order. Any 401
    /// gets one refresh, and those URLs one more try.
    pub fn send_all(&self, urls: &[Url], parallel: usize) -> Result<Vec<Answer>> {
        let mut answers = self.fetch(urls, parallel)?;
        let refused: Vec<usize> = (0..answers.len()).filter(|&i| answers[i].status == 401).collect();
        let Some(&first) = refused.first() else {
            return Ok(answers);
        };
        let access = match &self.credential {
            Credential::Bearer(access) => access,
            // Nothing renews an OAuth 1.0a token: say what the server's problem was.
            Credential::OAuth1 { .. } => return Err(oauth1_refused(&urls[first], &answers[first].body)),
        };
        let token = renew::refresh(self.config, self.store, When::Always)?.token().clone();
        *access.borrow_mut() = token.access_token().unwrap_or_default().to_owned();
        let again: Vec<Url> = refused.iter().map(|&i| urls[i].clone()).collect();
        for (i, answer) in refused.into_iter().zip(self.fetch(&again, parallel)?) {
            if answer.status == 401 {
                return Err(Exit::login_required(format!(
                    "{} rejected the access token, also after a refresh: run `atl-token login`",
                    http::shown(&urls[i])
                ))
                .into());
            }
            answers[i] = answer;
        }
        Ok(answers)
    }

    fn fetch(&self, urls: &[Url], parallel: usize) -> Result<Vec<Answer>> {
        let secret = self.secret();
        let requests = urls.iter().map(|url| self.fetch_one(url, &secret));
        let results: Vec<Result<Answer>> =
            self.runtime.block_on(futures_util::stream::iter(requests).buffered(parallel).collect());
        results.into_iter().collect()
    }

    /// One URL, sent again after 429 or 503 as `Retry-After` says, within a bounded wait.
    async fn fetch_one(&self, url: &Url, secret: &str) -> Result<Answer> {
        let (mut waited, mut backoff, mut attempt) = (Duration::ZERO, Duration::from_secs(1), 1);
        loop {
            let Call { method, headers, body } = &self.call;
            let authorization = self.authorization(url)?;
            let secrets = [secret];
            let answer = http::call(
                &self.client,
                method.clone(),
                url,
                headers,
                body.as_deref(),
                &authorization,
                &secrets,
            )
            .await
            .map_err(|e| anyhow!("{} failed: {e}", http::shown(url)))?;
            let busy = matches!(answer.status, 429 | 503);
            let wait = answer.retry_after.as_deref().and_then(oauth::parse_retry_after).unwrap_or(backoff);
            if !busy || attempt >= BUSY_TRIES || waited + wait > BUSY_BUDGET {
                return Ok(answer);
            }
            http::log(|| {
                format!(
                    "HTTP {}: retrying in {} ({} of {BUSY_TRIES} tries)",
                    answer.status,
                    http::human_ms(wait),
                    attempt + 1
                )
            });
            tokio::time::sleep(wait).await;
            waited += wait;
            backoff *= 2;
            attempt += 1;
        }
    }
}

/// "FILE holds no WHAT: run `atl-token login`".
fn no_token(store: &dyn TokenStore, what: &str) -> Exit {
    Exit::login_required(format!("{} holds no {what}: run `atl-token login`", store.location()))
}

/// The stored OAuth 1.0a token set and its access token, checked: issued by the configured
/// server, and not expired.
pub fn oauth1_token(config: &Config, store: &dyn TokenStore) -> Result<(Token, String)> {
    let stored = renew::oauth1_stored(config, store)?;
    let access =
        stored.token.oauth1_token().ok_or_else(|| no_token(store, "OAuth 1.0a access token"))?.to_owned();
    Ok((stored.token, access))
}

/// Whether the request's headers make its body a form.
fn is_form(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type")
            && value.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
    })
}

/// The error for a 401 to a signed request, from its `oauth_problem` when there is one.
fn oauth1_refused(url: &Url, body: &[u8]) -> anyhow::Error {
    match oauth1::Problem::of(body) {
        Some(problem) => problem.error(&http::shown(url)),
        None => Exit::login_required(format!(
            "{} refused the OAuth 1.0a signature (HTTP 401, no oauth_problem): the token may have \
             been revoked; run `atl-token login`",
            http::shown(url)
        ))
        .into(),
    }
}

//! An authenticated session for API calls, shared by `api` and `sites`: one HTTP client, an
//! access token refreshed when needed, and the rules every API call follows. A 401 gets one
//! refresh and one more try, then exit 4; 429 and 503 wait as `Retry-After` says.

use std::cell::RefCell;
use std::time::Duration;

use anyhow::{Result, anyhow};
use futures_util::StreamExt;
use reqwest::Method;
use url::Url;

use crate::commands::refresh::{self, When};
use crate::config::Config;
use crate::exit::Exit;
use crate::http::{self, Answer};
use crate::oauth;
use crate::store::Store;
use crate::token::Token;

/// An access token with less than this left is refreshed before the request.
const MIN_VALID: Duration = Duration::from_secs(60);
/// 429 and 503 are tried again this often at most, within [`BUSY_BUDGET`] of waiting.
const BUSY_TRIES: u32 = 4;
const BUSY_BUDGET: Duration = Duration::from_secs(60);

/// One request's settings, and the access token, which a 401 replaces.
pub struct Session<'a> {
    config: &'a Config,
    store: &'a Store,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    access: RefCell<String>,
    call: Call,
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
    pub fn open(config: &'a Config, store: &'a Store, call: Call) -> Result<(Self, Token)> {
        let token = refresh::refresh(config, store, When::ExpiresWithin(MIN_VALID))?.token().clone();
        let access = token.access_token().ok_or_else(|| {
            Exit::login_required(format!(
                "{} holds no access token: run `atl-token login`",
                store.path().display()
            ))
        })?;
        let session = Self {
            config,
            store,
            client: http::client(config)?,
            runtime: super::runtime()?,
            access: RefCell::new(access.to_owned()),
            call,
        };
        Ok((session, token))
    }

    /// Server text for an error message: cleaned, with the access token removed.
    pub fn excerpt(&self, body: &[u8]) -> String {
        oauth::clean(&oauth::redact(&String::from_utf8_lossy(body), &[self.access.borrow().as_str()]))
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
        if refused.is_empty() {
            return Ok(answers);
        }
        let token = refresh::refresh(self.config, self.store, When::Always)?.token().clone();
        *self.access.borrow_mut() = token.access_token().unwrap_or_default().to_owned();
        let again: Vec<Url> = refused.iter().map(|&i| urls[i].clone()).collect();
        for (i, answer) in refused.into_iter().zip(self.fetch(&again, parallel)?) {
            if answer.status == 401 {
                return Err(Exit::login_required(format!(
                    "{} rejected the access token, also after a refresh: run `atl-token login`",
                    urls[i]
                ))
                .into());
            }
            answers[i] = answer;
        }
        Ok(answers)
    }

    fn fetch(&self, urls: &[Url], parallel: usize) -> Result<Vec<Answer>> {
        let access = self.access.borrow().clone();
        let requests = urls.iter().map(|url| self.fetch_one(url, &access));
        let results: Vec<Result<Answer>> =
            self.runtime.block_on(futures_util::stream::iter(requests).buffered(parallel).collect());
        results.into_iter().collect()
    }

    /// One URL, sent again after 429 or 503 as `Retry-After` says, within a bounded wait.
    async fn fetch_one(&self, url: &Url, access: &str) -> Result<Answer> {
        let (mut waited, mut backoff, mut attempt) = (Duration::ZERO, Duration::from_secs(1), 1);
        loop {
            let Call { method, headers, body } = &self.call;
            let answer = http::call(&self.client, method.clone(), url, headers, body.as_deref(), access)
                .await
                .map_err(|e| anyhow!("{url} failed: {e}"))?;
            let busy = matches!(answer.status, 429 | 503);
            let wait = answer.retry_after.as_deref().and_then(oauth::parse_retry_after).unwrap_or(backoff);
            if !busy || attempt >= BUSY_TRIES || waited + wait > BUSY_BUDGET {
                return Ok(answer);
            }
            tokio::time::sleep(wait).await;
            waited += wait;
            backoff *= 2;
            attempt += 1;
        }
    }
}

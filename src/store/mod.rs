//! Where a token family is kept, behind one small interface, so that the commands do not
//! know whether a file or a secret store holds it.
//!
//! Each store brings its own way of making sure that only one process spends a refresh
//! token at a time: the file store a lock beside the file; the stores a fleet shares one
//! protocol ([`shared`]) over a compare-and-set that each backend implements (AWS Secrets
//! Manager: [`aws`]; see `docs/shared-store.md`). The
//! commands say *how* to spend one ([`Refresh::spend`]); the store says *when* they may.

use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use crate::config::{Config, StoreKind};
use crate::exit::Exit;
use crate::token::Token;

#[cfg(feature = "aws")]
mod aws;
mod file;
#[cfg(feature = "gcp")]
mod gcp;
#[cfg(shared_store)]
mod kept;
#[cfg(feature = "keyring")]
mod keyring;
#[cfg(shared_store)]
mod shared;
#[cfg(feature = "vault")]
mod vault;

pub use file::FileStore;
#[cfg(shared_store)]
pub use kept::fresh_copy;

/// A token set as read from its store.
#[derive(Debug)]
pub struct Stored {
    pub token: Token,
    /// The token set's bytes as stored, for `print --json`.
    pub bytes: Vec<u8>,
    /// When it was written (Unix seconds), for token sets without `expires_at`.
    pub written_at: Option<u64>,
}

impl Stored {
    pub fn remaining(&self, now: Duration) -> Duration {
        self.token.remaining(now, self.written_at)
    }
}

/// When a refresh is due.
#[derive(Debug, Clone, Copy)]
pub enum When {
    Always,
    /// Only if the access token has less than this left (or its expiry is unknown).
    ExpiresWithin(Duration),
}

/// What a refresh did.
#[derive(Debug)]
pub enum Outcome {
    StillValid { token: Token, remaining: Duration },
    Refreshed(Token),
}

impl Outcome {
    pub fn token(&self) -> &Token {
        match self {
            Self::StillValid { token, .. } | Self::Refreshed(token) => token,
        }
    }
}

/// What a refresh asks of a store.
pub struct Refresh<'a> {
    pub when: When,
    /// Refuses a token set that may not be used here (one another server issued), before
    /// anything else is done with it.
    pub check: &'a dyn Fn(&Token) -> Result<()>,
    /// Whether a token set can be fetched from nothing (a service account's): then a store
    /// with no token set, or an unreadable one, fetches one (`spend` gets `None`), and a
    /// rejected request ends no family.
    pub renewable: bool,
    /// Spends the token set's refresh token (or, given `None`, fetches a first set): one
    /// token request (with its retries, none starting after the given time has passed).
    /// Returns the new set, or an error whose exit code is 4 when the server rejected the
    /// refresh token or the credentials.
    pub spend: &'a mut dyn FnMut(Option<&Token>, Duration) -> Result<Token>,
}

/// How a store describes itself to `status`.
pub struct Details {
    /// The JSON field (`token_file`, `store`) and its value.
    pub json: (&'static str, Value),
    /// Lines for the text view: label and value.
    pub lines: Vec<(&'static str, String)>,
}

/// Where a token family is kept.
pub trait TokenStore {
    /// Where, for messages: the token file's path, or `secret NAME`.
    fn location(&self) -> String;

    /// The token set, or `None` when there is none.
    fn load(&self) -> Result<Option<Stored>>;

    /// A copy of the token set that is cheap to read, for `print`'s fast path. It may lack
    /// the refresh token, and may be older than [`TokenStore::load`]'s.
    fn peek(&self) -> Result<Option<Stored>> {
        self.load()
    }

    /// The token set, or exit 4 telling the user to log in.
    fn load_existing(&self) -> Result<Stored> {
        self.load()?.ok_or_else(|| no_token(&self.location()))
    }

    /// Proves that a new token family can be saved, before a login or a push spends
    /// anything, and holds what saving it needs.
    fn reserve(&self) -> Result<Box<dyn Slot + '_>>;

    /// Refreshes the token set if `refresh.when` says so, making sure that no other process
    /// spends the same refresh token, and that the new set is kept before it is used.
    fn refresh(&self, refresh: Refresh<'_>) -> Result<Outcome>;

    /// Changes the stored token set without spending anything (the cloud id cache).
    fn update(&self, change: &mut dyn FnMut(Token) -> Token) -> Result<Token>;

    /// Calls `before` with the live token set (the refresh token revoked there), with no
    /// refresh running, then deletes the family. Returns what was deleted, or `None` when
    /// there was nothing.
    fn remove(&self, before: &mut dyn FnMut(&Stored) -> Result<()>) -> Result<Option<Vec<String>>>;

    /// Where the family is, for `status`.
    fn details(&self) -> Result<Details>;
}

/// Exit 4: there is no token set at `location`.
fn no_token(location: &str) -> anyhow::Error {
    Exit::login_required(format!("no token in {location}: run `atl-token login` first")).into()
}

/// Space for a new token family, held from before a code is traded until it is saved.
pub trait Slot {
    /// Saves `token` as the family, replacing any other.
    fn commit(self: Box<Self>, token: &Token) -> Result<()>;
}

/// The store the settings name.
/// A shared store over `backend`, once the folder of the host's own files (beside the token
/// file: the access token's copy, and a new set not yet in the store) passes the token file's
/// rules: nobody else may write it, and a link is followed only where that is safe.
#[cfg(shared_store)]
fn shared(
    config: &Config,
    settings: &crate::config::SecretSettings,
    backend: Box<dyn shared::Cas>,
) -> Result<Box<dyn TokenStore>> {
    crate::safe_path::resolve(&config.token_file)?;
    Ok(Box::new(shared::SharedStore::new(config, settings, backend)))
}

pub fn open(config: &Config) -> Result<Box<dyn TokenStore>> {
    match &config.store {
        StoreKind::File => Ok(Box::new(FileStore::new(&config.token_file)?)),
        #[cfg(feature = "aws")]
        StoreKind::AwsSecretsManager(settings) => {
            let secret = aws::Secret::new(settings, config.http_timeout);
            shared(config, settings, Box::new(secret))
        }
        #[cfg(feature = "vault")]
        StoreKind::Vault(settings) => {
            let secret = vault::Vault::new(config, settings)?;
            shared(config, settings, Box::new(secret))
        }
        #[cfg(not(feature = "vault"))]
        StoreKind::Vault(settings) => Err(not_built(
            &settings.origin,
            "a Vault secret",
            "vault",
            "see the README's \"Many hosts\" section",
        )),
        #[cfg(feature = "gcp")]
        StoreKind::GcpSecretManager(settings) => {
            let secret = gcp::GcpSecret::new(config, settings);
            shared(config, settings, Box::new(secret))
        }
        #[cfg(not(feature = "gcp"))]
        StoreKind::GcpSecretManager(settings) => Err(not_built(
            &settings.origin,
            "a GCP Secret Manager secret",
            "gcp",
            "see the README's \"Many hosts\" section",
        )),
        #[cfg(feature = "keyring")]
        StoreKind::Keyring(_) => Ok(Box::new(keyring::KeyringStore::new(&config.token_file)?)),
        #[cfg(not(feature = "keyring"))]
        StoreKind::Keyring(origin) => Err(not_built(
            origin,
            "the OS keyring",
            "keyring",
            "on Linux it needs libdbus-1-dev and pkg-config; or keep the token in a file with ATL_STORE=file",
        )),
        #[cfg(not(feature = "aws"))]
        StoreKind::AwsSecretsManager(settings) => Err(not_built(
            &settings.origin,
            "AWS Secrets Manager",
            "aws",
            "see the README's \"Many hosts\" section",
        )),
    }
}

/// Exit 2: `origin` names `what`, a store this build left out; how to install one with
/// `feature`, and `note`.
#[cfg(not(all(feature = "aws", feature = "vault", feature = "gcp", feature = "keyring")))]
fn not_built(origin: &str, what: &str, feature: &str, note: &str) -> anyhow::Error {
    Exit::usage(format!(
        "{origin} names {what}, but this atl-token was built without it: install it with \
         `cargo install --locked --features {feature} --path .` ({note})"
    ))
    .into()
}

/// For a store that refreshes under a lock: the stored set's `check`, then, when the
/// refresh is not due (`when`), the set as it is. `None`: go on and spend.
fn not_due(refresh: &Refresh<'_>, stored: Option<&Stored>) -> Result<Option<Outcome>> {
    let Some(stored) = stored else { return Ok(None) };
    (refresh.check)(&stored.token)?;
    if let When::ExpiresWithin(margin) = refresh.when {
        let remaining = stored.remaining(crate::token::clock());
        if remaining >= margin {
            return Ok(Some(Outcome::StillValid { token: stored.token.clone(), remaining }));
        }
    }
    Ok(None)
}

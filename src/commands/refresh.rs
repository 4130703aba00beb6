//! `atl-token refresh`: trade the refresh token for a new pair (see [`crate::renew`]).

use std::time::Duration;

use anyhow::Result;

use crate::cli::RefreshArgs;
use crate::config::{Auth, Config};
use crate::duration::human;
use crate::renew;
use crate::store::{self, Outcome, TokenStore, When};
use crate::token;

pub fn run(config: &Config, args: &RefreshArgs) -> Result<()> {
    let store = store::open(config)?;
    if let Auth::OAuth1(_) = config.auth {
        return oauth1_expiry(config, store.as_ref(), args.quiet);
    }
    let when = if args.if_needed { When::ExpiresWithin(args.min_valid) } else { When::Always };
    let outcome = renew::refresh(config, store.as_ref(), when)?;
    if !args.quiet {
        let path = store.location();
        match outcome {
            Outcome::StillValid { remaining, .. } => {
                eprintln!("access token in {path} is valid for {}: not refreshed", human(remaining));
            }
            Outcome::Refreshed(token) => match token.expires_at() {
                Some(at) => eprintln!(
                    "refreshed {path}: access token valid for {}",
                    human(Duration::from_secs(at.saturating_sub(token::now())))
                ),
                None => eprintln!("refreshed {path}"),
            },
        }
    }
    Ok(())
}

/// OAuth 1.0a access tokens are not refreshed: they last years, and renewing one takes a new
/// consent. Reads the token file, touches nothing, and says when the token expires.
fn oauth1_expiry(config: &Config, store: &dyn TokenStore, quiet: bool) -> Result<()> {
    let stored = renew::oauth1_stored(config, store)?;
    let path = store.location();
    let remaining = stored.remaining(token::clock());
    if !quiet {
        let until = match stored.token.expires_at() {
            Some(at) => format!("expires in {} ({})", human(remaining), crate::health::rfc3339(at)),
            None => "has no recorded expiry".to_owned(),
        };
        eprintln!("OAuth 1.0a access tokens are not refreshed: the token in {path} {until}; nothing to do");
    }
    Ok(())
}

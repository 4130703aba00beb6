//! The token family's verdict, read from the store alone (no network): what `status` shows
//! and `status --check` and `profiles` say in one line with an exit code.

use anyhow::Result;

use crate::config::{Auth, Config};
use crate::exit::Code;
use crate::health::{self, Health, Renewal, Verdict};
use crate::provider::{Grant, OAUTH1, OAUTH1_TITLE};
use crate::store::{self, Stored};
use crate::token;

const SERVICE_ACCOUNT_SUMMARY: &str =
    "a service account: its credentials fetch each access token when due, and nothing ends";

/// `status --check`'s line, and the exit code that goes with it: OK (0), WARNING (3) or
/// LOGIN REQUIRED (4).
pub fn check(config: &Config, warn_days: u64) -> Result<(Code, String)> {
    let store = store::open(config)?;
    let Some(stored) = store.load()? else {
        if config.renewable() {
            // Nothing of a service account can end: its next `print` fetches a token.
            return Ok((Code::Success, format!("OK: {}", SERVICE_ACCOUNT_SUMMARY)));
        }
        let why = format!("no token in {}: run `atl-token login`", store.location());
        return Ok((Code::LoginRequired, format!("LOGIN REQUIRED: {why}")));
    };
    let health = assess(config, &stored).health;
    let now = token::now();
    Ok(match health.verdict(now, warn_days) {
        Verdict::Healthy => (Code::Success, format!("OK: {}", summary(&health, now))),
        Verdict::EndsSoon(why) => (Code::Warning, format!("WARNING: {why}")),
        Verdict::LoginRequired(why) => {
            (Code::LoginRequired, format!("LOGIN REQUIRED: {why}: run `atl-token login`"))
        }
    })
}

/// What the settings and the token file say about the family.
pub struct Assessed<'a> {
    pub provider: &'static str,
    pub title: &'static str,
    /// How tokens are got (`ATL_GRANT`), for OAuth 2.0.
    pub grant: Option<Grant>,
    pub scope: Option<&'a str>,
    pub health: Health,
}

pub fn assess<'a>(config: &'a Config, stored: &Stored) -> Assessed<'a> {
    match &config.auth {
        Auth::OAuth2(oauth2) => {
            let (kind, grant) = (oauth2.provider.kind, oauth2.provider.grant);
            let scope = oauth2.scope.value.as_str();
            let health = match grant {
                Grant::AuthorizationCode => Health::of(&stored.token, kind, scope, stored.written_at),
                Grant::ClientCredentials => Health::service_account(&stored.token, scope, stored.written_at),
            };
            Assessed {
                provider: kind.name(),
                title: kind.title(),
                grant: Some(grant),
                scope: Some(scope),
                health,
            }
        }
        Auth::OAuth1(_) => Assessed {
            provider: OAUTH1,
            title: OAUTH1_TITLE,
            grant: None,
            scope: None,
            health: Health::oauth1(&stored.token),
        },
    }
}

/// One line for a healthy family: the nearest limits.
fn summary(health: &Health, now: u64) -> String {
    if health.renewal == Renewal::Credentials {
        return SERVICE_ACCOUNT_SUMMARY.to_owned();
    }
    if health.renewal == Renewal::Nothing {
        return match health.access_expires_at {
            Some(at) => {
                format!("the OAuth 1.0a access token expires in {}", health::days(at.saturating_sub(now)))
            }
            None => "an OAuth 1.0a access token with no recorded expiry".to_owned(),
        };
    }
    let mut parts = Vec::new();
    if let Some(at) = health.refresh_expires_at {
        parts.push(format!("the refresh token expires unused in {}", health::days(at.saturating_sub(now))));
    }
    if let Some(at) = health.family_ends_at {
        parts.push(format!("the family ends in {}", health::days(at.saturating_sub(now))));
    }
    if parts.is_empty() { "a refresh token is present".to_owned() } else { parts.join("; ") }
}

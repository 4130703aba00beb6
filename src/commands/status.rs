//! `atl-token status`: the token family's health, read from the token file alone (no
//! network), for a person, as JSON, or as one line and an exit code for monitoring.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::cli::StatusArgs;
use crate::config::{Auth, Config};
use crate::duration::human;
use crate::exit::{Code, Exit};
use crate::health::{self, Health, Verdict};
use crate::provider::{OAUTH1, OAUTH1_TITLE};
use crate::store::{self, Stored};
use crate::token::{self, Bound, Token};

pub fn run(config: &Config, args: &StatusArgs) -> Result<()> {
    if args.check {
        let (code, line) = check(config, args.warn_days)?;
        println!("{}", crate::text::one_line(&line));
        return if code == Code::Success { Ok(()) } else { Err(Exit::silent(code).into()) };
    }
    let store = store::open(config)?;
    let Some(stored) = store.load()? else {
        let location = store.location();
        return Err(Exit::login_required(format!("no token in {location}: run `atl-token login`")).into());
    };
    let details = store.details()?;
    let Assessed { provider, title, scope, health } = assess(config, &stored);
    let now = token::now();
    let verdict = health.verdict(now, args.warn_days);

    let site = stored.token.cloud();
    let out = if args.json {
        let (status, reason) = match &verdict {
            Verdict::Healthy => ("healthy", None),
            Verdict::EndsSoon(why) => ("ends_soon", Some(why)),
            Verdict::LoginRequired(why) => ("login_required", Some(why)),
        };
        let mut document = json!({
            "version": 1,
            "provider": provider,
            "site": match (config.api_base(), site) {
                (None, Some((url, id))) => json!({"url": url, "cloud_id": id}),
                _ => Value::Null,
            },
            "base_url": config.api_base(),
            "scopes": {
                "configured": scope.unwrap_or_default().split_whitespace().collect::<Vec<_>>(),
                "granted": health.granted,
                "not_granted": health.not_granted,
            },
            "access_token": {"expires_at": time(health.access_expires_at), "valid": health.access_expires_at.is_some_and(|t| t > now)},
            "refresh_token": {
                "present": health.has_refresh_token,
                "issued_at": time(health.refresh_issued_at),
                "expires_at": time(health.refresh_expires_at),
            },
            "family": {"started_at": time(health.family_started_at), "ends_at": time(health.family_ends_at)},
            "check": {"status": status, "reason": reason, "warn_days": args.warn_days},
            "bound": Bound::ALL.map(|which| (which.field(), stored.token.bound(which))).into_iter()
                .filter_map(|(field, url)| Some((field.to_owned(), Value::from(url?))))
                .collect::<serde_json::Map<_, _>>(),
        });
        let (field, value) = details.json;
        document[field] = value;
        crate::text::json_for_terminal(
            serde_json::to_string_pretty(&document).context("cannot write the status as JSON")?,
        ) + "\n"
    } else {
        let mut lines = vec![("provider", title.to_owned())];
        match (config.api_base(), site) {
            (Some(base), _) => lines.push(("site", base.to_owned())),
            (None, Some((url, id))) => lines.push(("site", format!("{url} (cloud id {id})"))),
            (None, None) => {
                lines.push(("site", "not looked up yet (`atl-token print --cloud-id`)".to_owned()))
            }
        }
        if let Some(scope) = scope {
            lines.push(("scopes", scopes_line(&health, scope)));
        }
        lines.push((
            "access token",
            match health.access_expires_at {
                Some(at) if at > now => format!(
                    "valid for {} (until {})",
                    human(Duration::from_secs(at - now)),
                    health::rfc3339(at)
                ),
                Some(at) if !health.renewable => {
                    format!("expired {} ago: run `atl-token login`", human(Duration::from_secs(now - at)))
                }
                Some(at) => format!(
                    "expired {} ago; the next `print` refreshes it",
                    human(Duration::from_secs(now - at))
                ),
                None => "expiry unknown".to_owned(),
            },
        ));
        lines.push((
            "refresh token",
            match (health.has_refresh_token, health.refresh_issued_at, health.refresh_expires_at) {
                _ if !health.renewable => {
                    "none: OAuth 1.0a signs each request; the access token lasts until it expires".to_owned()
                }
                (false, ..) => "none: run `atl-token login`".to_owned(),
                (true, Some(issued), Some(expires)) => format!(
                    "last used {} ago; expires unused {}",
                    health::days(now.saturating_sub(issued)),
                    until(now, expires)
                ),
                _ => "present".to_owned(),
            },
        ));
        lines.push((
            "token family",
            match (health.family_started_at, health.family_ends_at) {
                (Some(started), Some(ends)) => {
                    format!(
                        "started {} ago; ends {}",
                        health::days(now.saturating_sub(started)),
                        until(now, ends)
                    )
                }
                (Some(started), None) => {
                    format!("started {} ago; no family limit", health::days(now.saturating_sub(started)))
                }
                (None, _) => "start unknown (a file from before atl-token)".to_owned(),
            },
        ));
        lines.extend(details.lines);
        lines.push(("bound to", bound_line(config, &stored.token, &store.location())));
        lines.push((
            "health",
            match &verdict {
                Verdict::Healthy => format!("ok; nothing ends within {} days", args.warn_days),
                Verdict::EndsSoon(why) => format!("WARNING: {why}"),
                Verdict::LoginRequired(why) => format!("LOGIN REQUIRED: {why}"),
            },
        ));
        // Scopes, sites and lease holders come from servers and other hosts.
        lines.iter().map(|(k, v)| format!("{k:<14} {}\n", crate::text::one_line(v))).collect()
    };
    super::print::write_out(out.as_bytes())
}

/// `status --check`'s line, and the exit code that goes with it: OK (0), WARNING (3) or
/// LOGIN REQUIRED (4).
pub fn check(config: &Config, warn_days: u64) -> Result<(Code, String)> {
    let store = store::open(config)?;
    let Some(stored) = store.load()? else {
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
struct Assessed<'a> {
    provider: &'static str,
    title: &'static str,
    scope: Option<&'a str>,
    health: Health,
}

fn assess<'a>(config: &'a Config, stored: &Stored) -> Assessed<'a> {
    match &config.auth {
        Auth::OAuth2(oauth2) => {
            let kind = oauth2.provider.kind;
            let scope = oauth2.scope.value.as_str();
            Assessed {
                provider: kind.name(),
                title: kind.title(),
                scope: Some(scope),
                health: Health::of(&stored.token, kind, scope, stored.written_at),
            }
        }
        Auth::OAuth1(_) => Assessed {
            provider: OAUTH1,
            title: OAUTH1_TITLE,
            scope: None,
            health: Health::oauth1(&stored.token),
        },
    }
}

/// `{"unix": 1800000000, "utc": "2027-01-15T08:00:00Z"}`, or null.
fn time(unix: Option<u64>) -> Value {
    unix.map_or(Value::Null, |t| json!({"unix": t, "utc": health::rfc3339(t)}))
}

/// `in 80 days (2027-…)` or `on 2027-… (passed)`.
fn until(now: u64, at: u64) -> String {
    if at > now {
        format!("in {} ({})", health::days(at - now), health::rfc3339(at))
    } else {
        format!("on {} (passed)", health::rfc3339(at))
    }
}

/// Where the family may send anything, as its login recorded, and whether the settings agree.
fn bound_line(config: &Config, token: &Token, location: &str) -> String {
    let recorded: Vec<String> = Bound::ALL
        .iter()
        .filter_map(|which| Some(format!("{} {}", which.title(), token.bound(*which)?)))
        .collect();
    let recorded = if recorded.is_empty() {
        "nothing yet: the next use binds it".to_owned()
    } else {
        recorded.join(", ")
    };
    match crate::binding::check(token, config, location) {
        Ok(()) => recorded,
        Err(e) => format!("{recorded}. SETTINGS DIFFER: {e}"),
    }
}

/// The granted scopes, and the configured ones that were not granted.
fn scopes_line(health: &Health, configured: &str) -> String {
    match &health.granted {
        None => format!("{configured} (configured; the server did not list what it granted)"),
        Some(granted) if health.not_granted.is_empty() => granted.join(" "),
        Some(granted) => format!(
            "{}; NOT GRANTED though configured: {} (check the app's permissions, then log in again)",
            granted.join(" "),
            health.not_granted.join(" ")
        ),
    }
}

/// One line for a healthy family: the nearest limits.
fn summary(health: &Health, now: u64) -> String {
    if !health.renewable {
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

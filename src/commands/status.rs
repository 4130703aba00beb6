//! `atl-token status`: the token family's health, read from the token file alone (no
//! network), for a person, as JSON, or as one line and an exit code for monitoring.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::checkup::{self, Assessed, assess};
use crate::cli::StatusArgs;
use crate::config::{Auth, Config};
use crate::duration::human;
use crate::exit::{Code, Exit};
use crate::health::{self, Health, Renewal, Verdict};
use crate::provider::Grant;
use crate::renew;
use crate::store::{self, When};
use crate::token::{self, Bound, Token};

pub fn run(config: &Config, args: &StatusArgs) -> Result<()> {
    if args.online {
        let store = store::open(config)?;
        if let Auth::OAuth1(_) = config.auth {
            return Err(Exit::usage(
                "--online gets a new OAuth 2.0 access token; OAuth 1.0a access tokens are not renewed",
            )
            .into());
        }
        renew::refresh(config, store.as_ref(), When::Always)?;
    }
    if args.check {
        let (code, line) = checkup::check(config, args.warn_days)?;
        println!("{}", crate::text::one_line(&line));
        return if code == Code::Success { Ok(()) } else { Err(Exit::silent(code).into()) };
    }
    let store = store::open(config)?;
    let Some(stored) = store.load()? else {
        let location = store.location();
        if config.renewable() {
            let line = format!("no token in {location} yet: a service account's next `print` fetches one\n");
            return crate::output::write_out(line.as_bytes());
        }
        return Err(Exit::login_required(format!("no token in {location}: run `atl-token login`")).into());
    };
    let details = store.details()?;
    let Assessed { provider, title, grant, scope, health } = assess(config, &stored);
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
            "grant": grant.map(Grant::name),
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
        lines.extend(grant.map(|g| ("grant", g.title().to_owned())));
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
                Some(at) if health.renewal == Renewal::Nothing => {
                    format!("expired {} ago: run `atl-token login`", human(Duration::from_secs(now - at)))
                }
                Some(at) if health.renewal == Renewal::Credentials => format!(
                    "expired {} ago; the next `print` fetches a new one",
                    human(Duration::from_secs(now - at))
                ),
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
                _ if health.renewal == Renewal::Nothing => {
                    "none: OAuth 1.0a signs each request; the access token lasts until it expires".to_owned()
                }
                _ if health.renewal == Renewal::Credentials => {
                    "none: a service account's credentials fetch each access token".to_owned()
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
                _ if health.renewal == Renewal::Credentials => {
                    "none: nothing of a service account ends".to_owned()
                }
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
    crate::output::write_out(out.as_bytes())
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

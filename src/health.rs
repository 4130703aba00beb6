//! How long a token family has left, from the token file alone: the access token's expiry,
//! the refresh token's 90 days, and (on Cloud) the family's year. Pure, so every rule is
//! tested with chosen timestamps.

use crate::provider::Kind;
use crate::token::Token;

const DAY: u64 = 24 * 3600;
/// An unused refresh token expires this long after it was issued (Cloud: 90 days of
/// inactivity; Data Center: 90 days from its creation; both count from the last refresh).
pub const REFRESH_TOKEN_LIFE: u64 = 90 * DAY;
/// Atlassian Cloud ends a token family this long after consent, however often it is used.
pub const CLOUD_FAMILY_LIFE: u64 = 365 * DAY;

/// What the token file says about the family's health.
#[derive(Debug, PartialEq, Eq)]
pub struct Health {
    pub access_expires_at: Option<u64>,
    pub has_refresh_token: bool,
    /// When the refresh token was issued, which is when its predecessor was last used.
    pub refresh_issued_at: Option<u64>,
    pub refresh_expires_at: Option<u64>,
    pub family_started_at: Option<u64>,
    pub family_ends_at: Option<u64>,
    /// The scopes the server granted, if its answer said.
    pub granted: Option<Vec<String>>,
    /// Configured scopes that were not granted: a common silent mistake.
    pub not_granted: Vec<String>,
    /// What renews the access token, which decides what can end it.
    pub renewal: Renewal,
}

/// What renews an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// OAuth 2.0 from a login: a refresh token, whose 90 days and the family's year end it.
    RefreshToken,
    /// A service account: its client credentials fetch each access token. Nothing ends.
    Credentials,
    /// OAuth 1.0a: nothing renews it; its own expiry ends it.
    Nothing,
}

/// What `status --check` concludes.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// A limit comes within the warning window: `why` says which, and when.
    EndsSoon(String),
    /// The family is over, or there is none: `atl-token login`.
    LoginRequired(String),
}

impl Health {
    /// `written_at` (the file's mtime) stands in for a missing `obtained_at`, as in the seed
    /// script's files.
    pub fn of(token: &Token, kind: Kind, configured_scope: &str, written_at: Option<u64>) -> Self {
        let refresh_issued_at = token.obtained_at().or(written_at);
        let family_started_at = token.family_started_at();
        let (granted, not_granted) = scopes(token, configured_scope);
        Self {
            access_expires_at: token.expires_at_or_guess(written_at),
            has_refresh_token: token.refresh_token().is_some(),
            refresh_issued_at,
            refresh_expires_at: refresh_issued_at.map(|t| t.saturating_add(REFRESH_TOKEN_LIFE)),
            family_started_at,
            family_ends_at: match kind {
                Kind::Cloud => family_started_at.map(|t| t.saturating_add(CLOUD_FAMILY_LIFE)),
                Kind::DataCenter => None,
            },
            granted,
            not_granted,
            renewal: Renewal::RefreshToken,
        }
    }

    /// A service account's token set: an access token, fetched again when due.
    pub fn service_account(token: &Token, configured_scope: &str, written_at: Option<u64>) -> Self {
        let (granted, not_granted) = scopes(token, configured_scope);
        Self {
            access_expires_at: token.expires_at_or_guess(written_at),
            has_refresh_token: false,
            refresh_issued_at: None,
            refresh_expires_at: None,
            family_started_at: None,
            family_ends_at: None,
            granted,
            not_granted,
            renewal: Renewal::Credentials,
        }
    }

    /// An OAuth 1.0a token: one access token, used until it expires (about 5 years).
    pub fn oauth1(token: &Token) -> Self {
        Self {
            access_expires_at: token.expires_at(),
            has_refresh_token: false,
            refresh_issued_at: None,
            refresh_expires_at: None,
            family_started_at: token.obtained_at(),
            family_ends_at: token.expires_at(),
            granted: None,
            not_granted: Vec::new(),
            renewal: Renewal::Nothing,
        }
    }

    /// Healthy, ending within `warn_days`, or over.
    pub fn verdict(&self, now: u64, warn_days: u64) -> Verdict {
        if self.renewal == Renewal::Credentials {
            return Verdict::Healthy;
        }
        if self.renewal == Renewal::Nothing {
            let Some(expires_at) = self.access_expires_at else {
                return Verdict::Healthy;
            };
            return limit_verdict(
                now,
                warn_days,
                [(
                    Some(expires_at),
                    "the OAuth 1.0a access token expires",
                    "the OAuth 1.0a access token has expired",
                    "run `atl-token login` before then",
                )],
            );
        }
        if !self.has_refresh_token {
            return Verdict::LoginRequired("the token file holds no refresh token".to_owned());
        }
        // (when, what ends then, what it is called once over, what keeps it from ending)
        let limits = [
            (
                self.refresh_expires_at,
                "the refresh token expires unused",
                "the refresh token has expired",
                "run `atl-token refresh` (a daily cron refresh keeps it alive)",
            ),
            (
                self.family_ends_at,
                "the token family reaches its 365-day limit",
                "the token family has ended",
                "run `atl-token login` before then",
            ),
        ];
        limit_verdict(now, warn_days, limits)
    }
}

/// The scopes the server granted, if its answer said, and the configured ones it did not.
fn scopes(token: &Token, configured: &str) -> (Option<Vec<String>>, Vec<String>) {
    let granted: Option<Vec<String>> =
        token.granted_scope().map(|s| s.split_whitespace().map(str::to_owned).collect());
    let not_granted = match &granted {
        Some(granted) => configured
            .split_whitespace()
            .filter(|s| !granted.iter().any(|g| g == s))
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    (granted, not_granted)
}

/// The verdict from limits `(when, what ends then, what it is called once over, what keeps it
/// from ending)`: over if one has passed, ending soon if the nearest is within `warn_days`.
fn limit_verdict<const N: usize>(
    now: u64,
    warn_days: u64,
    limits: [(Option<u64>, &str, &str, &str); N],
) -> Verdict {
    let mut soonest: Option<(u64, &str, &str)> = None;
    for (at, what, over, fix) in limits {
        let Some(at) = at else { continue };
        if at <= now {
            return Verdict::LoginRequired(format!("{over} ({})", rfc3339(at)));
        }
        if soonest.is_none_or(|(s, ..)| at < s) {
            soonest = Some((at, what, fix));
        }
    }
    match soonest {
        Some((at, what, fix)) if at - now <= warn_days.saturating_mul(DAY) => {
            Verdict::EndsSoon(format!("{what} in {} ({}): {fix}", days(at - now), rfc3339(at)))
        }
        _ => Verdict::Healthy,
    }
}

/// `12 days`, `1 day`, `less than a day`.
pub fn days(secs: u64) -> String {
    match secs / DAY {
        0 => "less than a day".to_owned(),
        1 => "1 day".to_owned(),
        n => format!("{n} days"),
    }
}

/// Unix seconds as RFC 3339 in UTC, e.g. `2026-11-22T15:04:05Z`.
pub fn rfc3339(unix: u64) -> String {
    let (days, secs) = (unix / DAY, unix % DAY);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn token(json: serde_json::Value) -> Token {
        Token::parse(json.to_string().as_bytes()).expect("token")
    }

    fn health(obtained_days_ago: u64, family_days_ago: u64, kind: Kind) -> Health {
        let t = token(serde_json::json!({
            "access_token": "a", "refresh_token": "r", "expires_at": NOW + 600,
            "obtained_at": NOW - obtained_days_ago * DAY, "family_started_at": NOW - family_days_ago * DAY,
            "scope": "read:jira-work offline_access"
        }));
        Health::of(&t, kind, "read:jira-work write:jira-work offline_access", None)
    }

    #[test]
    fn rfc3339_is_utc_and_right_at_the_edges() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn limits_are_counted_from_the_token_files_times() {
        let h = health(10, 100, Kind::Cloud);
        assert_eq!(h.refresh_expires_at, Some(NOW + 80 * DAY));
        assert_eq!(h.family_ends_at, Some(NOW + 265 * DAY));
        assert_eq!(h.not_granted, ["write:jira-work"]);
        assert_eq!(h.verdict(NOW, 30), Verdict::Healthy);
        assert_eq!(health(10, 100, Kind::DataCenter).family_ends_at, None, "no family limit on Data Center");
    }

    #[test]
    fn the_verdict_warns_within_the_window_and_asks_for_login_after() {
        let soon = health(70, 100, Kind::Cloud).verdict(NOW, 30);
        assert_eq!(
            soon,
            Verdict::EndsSoon(format!(
                "the refresh token expires unused in 20 days ({}): run `atl-token refresh` (a daily cron \
                 refresh keeps it alive)",
                rfc3339(NOW + 20 * DAY)
            ))
        );
        assert_eq!(health(70, 100, Kind::Cloud).verdict(NOW, 19), Verdict::Healthy);
        let family = health(1, 360, Kind::Cloud).verdict(NOW, 30);
        assert!(
            matches!(&family, Verdict::EndsSoon(why) if why.starts_with("the token family reaches its 365-day limit in 5 days")),
            "{family:?}"
        );
        assert_eq!(health(1, 360, Kind::DataCenter).verdict(NOW, 30), Verdict::Healthy);
        let gone = health(91, 100, Kind::Cloud).verdict(NOW, 30);
        assert!(
            matches!(&gone, Verdict::LoginRequired(why) if why.starts_with("the refresh token has expired")),
            "{gone:?}"
        );
        let over = health(1, 366, Kind::Cloud).verdict(NOW, 30);
        assert!(
            matches!(&over, Verdict::LoginRequired(why) if why.starts_with("the token family has ended")),
            "{over:?}"
        );
        let none = Health::of(&token(serde_json::json!({"access_token": "a"})), Kind::Cloud, "", None);
        assert!(matches!(none.verdict(NOW, 30), Verdict::LoginRequired(_)));
    }

    #[test]
    fn a_seed_file_counts_from_its_modification_time() {
        let t = token(serde_json::json!({"access_token": "a", "refresh_token": "r", "expires_in": 3600}));
        let h = Health::of(&t, Kind::Cloud, "x", Some(NOW));
        assert_eq!(h.access_expires_at, Some(NOW + 3600));
        assert_eq!(h.refresh_expires_at, Some(NOW + REFRESH_TOKEN_LIFE));
        assert_eq!((h.family_started_at, h.family_ends_at), (None, None));
        assert!(h.not_granted.is_empty(), "unknown grants are not flagged");
    }
}

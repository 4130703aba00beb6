//! Handing a token family to psoxy (Worklytics' proxy, seed 004), which then owns it: the
//! four values it reads, in its formats, under its own lock, where it keeps them.
//!
//! From psoxy's source (`ParameterStoreConfigService`, `SecretsManagerSecretStore`,
//! `OAuthRefreshTokenSourceAuthStrategy`, `AccessTokenDto`, `infra/modules/aws-ssm-secrets`):
//! - names are `{prefix}{NAME}`, prefix `PSOXY_JIRA_CLOUD_` by default, for `CLIENT_ID`,
//!   `CLIENT_SECRET`, `REFRESH_TOKEN` and `ACCESS_TOKEN`; on SSM a prefix with a `/` gets a
//!   leading `/`, as psoxy adds one; Terraform creates them holding `fill me`, which psoxy
//!   reads as "no value";
//! - SSM values are written as `SecureString` with `Overwrite=true`;
//! - `ACCESS_TOKEN` is `{"token": "…", "expirationDate": <epoch ms>}`, nothing else;
//! - psoxy locks a refresh with an SSM `String` parameter holding `locked_<epoch ms>`,
//!   created with `Overwrite=false`, checked by reading it back after a short pause, stale
//!   once its `LastModifiedDate` is 2 minutes old, released by `DeleteParameter`; also when
//!   the values are in Secrets Manager. Its lock id is `OAUTH_REFRESH_TOKEN`. The name has
//!   been `{prefix}lock_OAUTH_REFRESH_TOKEN` in the versions read; the issue (and psoxy's
//!   Terraform notes) say `{prefix}OAUTH_REFRESH_TOKEN_lock`. atl-token takes both, so that
//!   it excludes either version of psoxy.
//!
//! On GCP (`SecretManagerConfigService`): one secret per value, `{prefix}{NAME}` in the
//! project; a new value is a new version, after which the secret's label `latest-version`
//! is set to its number (the other labels kept, the etag sent) and the secret's other
//! enabled versions are destroyed; readers follow the label and fall back to `latest`. The
//! lock is the label `locked` = epoch milliseconds on the secret `{prefix}OAUTH_REFRESH_TOKEN`,
//! set with the etag when missing or stale, and removed to release it.

use std::time::Duration;

use anyhow::Result;

use crate::config::Config;
use crate::exit::Exit;

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "gcp")]
mod gcp;

/// psoxy's default prefix for Jira Cloud.
pub const DEFAULT_PREFIX: &str = "PSOXY_JIRA_CLOUD_";
/// The values psoxy reads.
pub const CLIENT_ID: &str = "CLIENT_ID";
pub const CLIENT_SECRET: &str = "CLIENT_SECRET";
pub const REFRESH_TOKEN: &str = "REFRESH_TOKEN";
pub const ACCESS_TOKEN: &str = "ACCESS_TOKEN";
/// What psoxy's Terraform puts in a parameter before it has a value.
pub const PLACEHOLDER: &str = "fill me";
/// psoxy's lock id, and how old its lock must be to be stale.
#[cfg(any(feature = "aws", feature = "gcp", test))]
pub const LOCK_ID: &str = "OAUTH_REFRESH_TOKEN";
#[cfg(any(feature = "aws", feature = "gcp"))]
pub const LOCK_STALE: Duration = Duration::from_secs(120);
/// The tag (SSM, Secrets Manager) or label (GCP) that records when the family started, for
/// `status`.
#[cfg(any(feature = "aws", feature = "gcp"))]
pub const STARTED_TAG: &str = "atl-token-family-started-at";
/// The scopes seed 004 asks for, with `offline_access`: what `psoxy push --login` logs in with.
pub const SCOPES: &str = "offline_access read:group:jira read:avatar:jira read:user:jira read:account read:jira-user read:jira-work";

/// Where psoxy keeps its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// SSM Parameter Store, names `{prefix}{NAME}`.
    Ssm { prefix: String },
    /// Secrets Manager, secrets `{prefix}{NAME}`; the lock stays in SSM.
    SecretsManager { prefix: String },
    /// GCP Secret Manager: secrets `{prefix}{NAME}` in `project`; the lock a label.
    Gcp { project: String, prefix: String },
}

impl Target {
    /// `aws-ssm:PREFIX`, `aws-secretsmanager:PREFIX` or `gcp:projects/PROJECT[/PREFIX]` (an
    /// empty prefix: psoxy's default).
    pub fn parse(text: &str) -> Result<Self, Exit> {
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        let usage = || {
            Exit::usage(format!(
                "{text}: use aws-ssm:PREFIX, aws-secretsmanager:PREFIX or gcp:projects/PROJECT[/PREFIX] \
                 (default prefix {DEFAULT_PREFIX})"
            ))
        };
        let (project, prefix) = match kind {
            "gcp" => {
                let path = rest.strip_prefix("projects/").ok_or_else(usage)?;
                let (project, prefix) = path.split_once('/').unwrap_or((path, ""));
                let project_ok = !project.is_empty()
                    && project.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                // A secret id is letters, digits, `-` and `_`.
                let prefix_ok = prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !project_ok || !prefix_ok {
                    return Err(Exit::usage(format!(
                        "{text}: use gcp:projects/PROJECT[/PREFIX], a project id and a prefix of letters, \
                         digits, - and _"
                    )));
                }
                (Some(project.to_owned()), prefix)
            }
            _ => (None, rest),
        };
        let prefix = if prefix.is_empty() { DEFAULT_PREFIX.to_owned() } else { prefix.to_owned() };
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Exit::usage(format!("{text}: a prefix has no spaces")));
        }
        match (kind, project) {
            ("aws-ssm", _) => Ok(Self::Ssm { prefix }),
            ("aws-secretsmanager", _) => Ok(Self::SecretsManager { prefix }),
            ("gcp", Some(project)) => Ok(Self::Gcp { project, prefix }),
            _ => Err(usage()),
        }
    }

    #[cfg(any(feature = "aws", test))]
    pub fn prefix(&self) -> &str {
        match self {
            Self::Ssm { prefix } | Self::SecretsManager { prefix } | Self::Gcp { prefix, .. } => prefix,
        }
    }

    /// As given on the command line: `aws-ssm:PSOXY_JIRA_CLOUD_`.
    pub fn label(&self) -> String {
        match self {
            Self::Ssm { prefix } => format!("aws-ssm:{prefix}"),
            Self::SecretsManager { prefix } => format!("aws-secretsmanager:{prefix}"),
            Self::Gcp { project, prefix } => format!("gcp:projects/{project}/{prefix}"),
        }
    }

    /// The name of `what` where psoxy looks for it.
    pub fn name(&self, what: &str) -> String {
        match self {
            Self::Ssm { prefix } => ssm_name(prefix, what),
            Self::SecretsManager { prefix } | Self::Gcp { prefix, .. } => format!("{prefix}{what}"),
        }
    }

    /// The SSM parameters psoxy's lock may be (see the module's notes).
    #[cfg(any(feature = "aws", test))]
    pub fn lock_names(&self) -> [String; 2] {
        let prefix = self.prefix();
        [ssm_name(prefix, &format!("lock_{LOCK_ID}")), ssm_name(prefix, &format!("{LOCK_ID}_lock"))]
    }
}

/// `{prefix}{what}`, with a leading `/` when the prefix has a `/` (SSM wants those names
/// fully qualified, and psoxy adds it).
fn ssm_name(prefix: &str, what: &str) -> String {
    let slash = if prefix.contains('/') && !prefix.starts_with('/') { "/" } else { "" };
    format!("{slash}{prefix}{what}")
}

/// `ACCESS_TOKEN` as psoxy's `AccessTokenDto` reads it.
pub fn access_token_value(token: &str, expires_at: u64) -> String {
    serde_json::json!({"token": token, "expirationDate": expires_at.saturating_mul(1000)}).to_string()
}

/// What `status` learns about one value: when it last changed (Unix seconds), and tags.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub changed_at: Option<u64>,
    /// The family's start, as `push` tagged it on `REFRESH_TOKEN`.
    pub started_at: Option<u64>,
    /// It holds psoxy's placeholder, not a value.
    pub placeholder: bool,
}

/// Where psoxy keeps the family, reached.
pub trait Place {
    /// Takes psoxy's lock, waiting up to `wait`; exit 1 naming the lock when it stays held.
    fn lock(&self, wait: Duration) -> Result<()>;
    /// Releases the lock taken by [`Place::lock`].
    fn unlock(&self) -> Result<()>;
    /// Writes `value` as `what`, in psoxy's form.
    fn put(&self, what: &str, value: &str) -> Result<()>;
    /// Records the family's start on `REFRESH_TOKEN`.
    fn tag_started(&self, started_at: u64) -> Result<()>;
    /// What is known of `what`, never its value; `None` when it does not exist.
    fn describe(&self, what: &str) -> Result<Option<Meta>>;
}

/// Reaches `target`, with the AWS or Google settings of the environment.
pub fn connect(config: &Config, target: &Target, kms_key_id: Option<&str>) -> Result<Box<dyn Place>> {
    match target {
        #[cfg(feature = "gcp")]
        Target::Gcp { .. } if kms_key_id.is_some() => {
            Err(Exit::usage("--kms-key-id is for AWS targets; a GCP secret uses its own encryption settings")
                .into())
        }
        #[cfg(feature = "gcp")]
        Target::Gcp { .. } => Ok(Box::new(gcp::GcpPlace::connect(config, target)?)),
        #[cfg(feature = "aws")]
        Target::Ssm { .. } | Target::SecretsManager { .. } => {
            Ok(Box::new(aws::AwsPlace::connect(config, target, kms_key_id)?))
        }
        #[allow(unreachable_patterns)]
        _ => {
            let _ = (config, kms_key_id);
            let (cloud, feature) = match target {
                Target::Gcp { .. } => ("GCP", "gcp"),
                _ => ("AWS", "aws"),
            };
            Err(Exit::usage(format!(
                "{} is in {cloud}, but this atl-token was built without {cloud}: install it with \
                 `cargo install --locked --features {feature} --path .`",
                target.label()
            ))
            .into())
        }
    }
}

/// psoxy status's verdict from `REFRESH_TOKEN`'s last change and the family's start (Unix
/// seconds): 0 healthy, 3 ending within `warn_days`, 4 over (the refresh token unchanged for
/// 90 days, which means psoxy has not been refreshing, or the family past its year).
pub fn verdict(
    now: u64,
    refresh_changed_at: u64,
    started_at: Option<u64>,
    warn_days: u64,
) -> (crate::exit::Code, String) {
    use crate::exit::Code;
    use crate::health::{CLOUD_FAMILY_LIFE, REFRESH_TOKEN_LIFE, days, rfc3339};
    let idle = now.saturating_sub(refresh_changed_at);
    if idle > REFRESH_TOKEN_LIFE {
        return (
            Code::LoginRequired,
            format!(
                "the refresh token has not changed for {} (since {}): psoxy has not refreshed it, and it has \
                 expired. Log in again and run `atl-token psoxy push`",
                days(idle),
                rfc3339(refresh_changed_at)
            ),
        );
    }
    let Some(started_at) = started_at else {
        return (
            Code::Success,
            format!("the refresh token changed {} ago; the family's start is unknown", days(idle)),
        );
    };
    let ends = started_at.saturating_add(CLOUD_FAMILY_LIFE);
    if ends <= now {
        return (
            Code::LoginRequired,
            format!(
                "the token family reached its 365-day limit on {}: log in again and run `atl-token psoxy push`",
                rfc3339(ends)
            ),
        );
    }
    let left = ends - now;
    if left <= warn_days.saturating_mul(24 * 3600) {
        return (
            Code::Warning,
            format!(
                "the token family ends in {} ({}): log in again and run `atl-token psoxy push` before then",
                days(left),
                rfc3339(ends)
            ),
        );
    }
    (
        Code::Success,
        format!("the refresh token changed {} ago; the family ends in {}", days(idle), days(left)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code;

    const DAY: u64 = 24 * 3600;
    const NOW: u64 = 1_800_000_000;

    #[test]
    fn targets_name_psoxys_values_and_both_lock_forms() {
        let ssm = Target::parse("aws-ssm:").expect("default prefix");
        assert_eq!(ssm.name(REFRESH_TOKEN), "PSOXY_JIRA_CLOUD_REFRESH_TOKEN");
        assert_eq!(
            ssm.lock_names(),
            [
                "PSOXY_JIRA_CLOUD_lock_OAUTH_REFRESH_TOKEN".to_owned(),
                "PSOXY_JIRA_CLOUD_OAUTH_REFRESH_TOKEN_lock".to_owned()
            ]
        );
        let nested = Target::parse("aws-ssm:psoxy/jira/").expect("prefix");
        assert_eq!(nested.name(CLIENT_ID), "/psoxy/jira/CLIENT_ID", "SSM wants it fully qualified");
        let sm = Target::parse("aws-secretsmanager:psoxy/jira/").expect("prefix");
        assert_eq!(sm.name(CLIENT_ID), "psoxy/jira/CLIENT_ID");
        assert_eq!(sm.lock_names()[0], "/psoxy/jira/lock_OAUTH_REFRESH_TOKEN", "the lock stays in SSM");
        let gcp = Target::parse("gcp:projects/my-project").expect("default prefix");
        assert_eq!(gcp.name(REFRESH_TOKEN), "PSOXY_JIRA_CLOUD_REFRESH_TOKEN");
        assert_eq!(gcp.label(), "gcp:projects/my-project/PSOXY_JIRA_CLOUD_");
        let prefixed = Target::parse("gcp:projects/p-1/PSOXY_JIRA_").expect("prefix");
        assert_eq!(prefixed.name(CLIENT_ID), "PSOXY_JIRA_CLIENT_ID");
        assert!(Target::parse("gcp:my-project").is_err(), "projects/ is required");
        assert!(Target::parse("gcp:projects/p/a/b").is_err(), "a prefix has no slash");
        assert!(Target::parse("s3:x").is_err());
    }

    #[test]
    fn the_access_token_is_psoxys_dto_exactly() {
        let value: serde_json::Value =
            serde_json::from_str(&access_token_value("at-1", 1_800_000_000)).expect("JSON");
        assert_eq!(value, serde_json::json!({"token": "at-1", "expirationDate": 1_800_000_000_000_u64}));
    }

    #[test]
    fn status_exit_codes_follow_the_refresh_token_and_the_year() {
        assert_eq!(verdict(NOW, NOW - DAY, Some(NOW - 10 * DAY), 30).0, Code::Success);
        assert_eq!(verdict(NOW, NOW - 91 * DAY, Some(NOW - 100 * DAY), 30).0, Code::LoginRequired);
        assert_eq!(verdict(NOW, NOW - DAY, Some(NOW - 340 * DAY), 30).0, Code::Warning);
        assert_eq!(verdict(NOW, NOW - DAY, Some(NOW - 366 * DAY), 30).0, Code::LoginRequired);
        assert_eq!(verdict(NOW, NOW - DAY, None, 30).0, Code::Success);
    }
}

//! The settings: each key, the name the seed's bash script used for it, what it defaults to,
//! and which unknown `ATL_` name is a misspelling of which.

use std::time::Duration;

/// A configuration key, with the name the seed's bash script used for it, if any.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub alias: Option<&'static str>,
}

const fn key(name: &'static str, alias: Option<&'static str>) -> Key {
    Key { name, alias }
}

pub const CLIENT_ID: Key = key("ATL_CLIENT_ID", Some("JIRA_CLIENT_ID"));
pub const CLIENT_SECRET: Key = key("ATL_CLIENT_SECRET", Some("JIRA_CLIENT_SECRET"));
pub const SCOPE: Key = key("ATL_SCOPE", Some("JIRA_SCOPE"));
pub const SITE: Key = key("ATL_SITE", Some("JIRA_DOMAIN"));
pub const PORT: Key = key("ATL_PORT", Some("REFRESH_PORT"));
pub const REDIRECT_URI: Key = key("ATL_REDIRECT_URI", None);
pub const TOKEN_FILE: Key = key("ATL_TOKEN_FILE", Some("TOKEN_FILE_NAME"));
pub const AUTHORIZE_URL: Key = key("ATL_AUTHORIZE_URL", None);
pub const TOKEN_URL: Key = key("ATL_TOKEN_URL", None);
pub const API_URL: Key = key("ATL_API_URL", None);
pub const TOKEN_BODY: Key = key("ATL_TOKEN_BODY", None);
pub const HTTP_TIMEOUT: Key = key("ATL_HTTP_TIMEOUT", None);
pub const CA_FILE: Key = key("ATL_CA_FILE", None);
pub const PROVIDER: Key = key("ATL_PROVIDER", None);
pub const BASE_URL: Key = key("ATL_BASE_URL", None);
pub const PKCE: Key = key("ATL_PKCE", None);
pub const CONSUMER_KEY: Key = key("ATL_CONSUMER_KEY", None);
pub const PRIVATE_KEY_FILE: Key = key("ATL_PRIVATE_KEY_FILE", None);
pub const STORE: Key = key("ATL_STORE", None);
pub const STORE_LEASE: Key = key("ATL_STORE_LEASE", None);
pub const GRANT: Key = key("ATL_GRANT", None);
pub const ON_ROTATE: Key = key("ATL_ON_ROTATE", None);
pub const LISTEN: Key = key("ATL_LISTEN", None);

/// Every key, for spotting a misspelt one.
pub(super) const KEYS: [Key; 23] = [
    CLIENT_ID,
    CLIENT_SECRET,
    SCOPE,
    SITE,
    PORT,
    REDIRECT_URI,
    TOKEN_FILE,
    AUTHORIZE_URL,
    TOKEN_URL,
    API_URL,
    TOKEN_BODY,
    HTTP_TIMEOUT,
    CA_FILE,
    PROVIDER,
    BASE_URL,
    PKCE,
    CONSUMER_KEY,
    PRIVATE_KEY_FILE,
    STORE,
    STORE_LEASE,
    GRANT,
    ON_ROTATE,
    LISTEN,
];

/// The keys a folder's env file may set only once the user trusts it (`atl-token trust`):
/// those that run a command, choose where a token, a signature or a secret goes, or choose
/// which file holds the family.
pub const GUARDED: [Key; 11] = [
    ON_ROTATE,
    SITE,
    AUTHORIZE_URL,
    TOKEN_URL,
    API_URL,
    BASE_URL,
    REDIRECT_URI,
    LISTEN,
    STORE,
    CA_FILE,
    TOKEN_FILE,
];

/// Whether `name` is a [`GUARDED`] key (or its seed alias), or an `ATL_` name ending in
/// `_URL`: a destination a later setting may add, guarded before it exists.
pub fn guarded(name: &str) -> bool {
    GUARDED.iter().any(|k| k.name == name || k.alias == Some(name))
        || (name.starts_with("ATL_") && name.ends_with("_URL"))
}

/// Whether `name` is a setting atl-token reads (or its seed alias), or any `ATL_` name: what
/// makes a folder's file one of atl-token's.
pub fn names_setting(name: &str) -> bool {
    name.starts_with("ATL_") || KEYS.iter().any(|k| k.alias == Some(name))
}

/// `ATL_*` names in an env file that are no setting, each with the setting it is closest to
/// when one is close: `ATL_CLIENTID` → `ATL_CLIENT_ID`.
pub fn unknown_keys(vars: &[(String, String)]) -> Vec<(&str, Option<&'static str>)> {
    let known =
        |name: &str| KEYS.iter().any(|k| k.name == name) || name == ENV_FILE_VAR || name == PROFILE_VAR;
    let mut unknown: Vec<(&str, Option<&'static str>)> = Vec::new();
    for (name, _) in vars {
        if !name.starts_with("ATL_") || known(name) || unknown.iter().any(|(n, _)| n == name) {
            continue;
        }
        let closest = KEYS
            .iter()
            .map(|k| (edit_distance(name, k.name), k.name))
            .min()
            .filter(|(distance, _)| *distance <= 3)
            .map(|(_, key)| key);
        unknown.push((name, closest));
    }
    unknown
}

/// Levenshtein distance: the fewest one-character edits from `a` to `b`.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// No env file is larger: a few dozen settings. A larger one is refused unread.
pub const MAX_ENV_FILE: u64 = 64 * 1024;

/// The environment variable that names the env file when `--env-file` is not given.
pub const ENV_FILE_VAR: &str = "ATL_ENV_FILE";
/// The environment variable that picks a profile when `--profile` is not given.
pub const PROFILE_VAR: &str = "ATL_PROFILE";

pub(super) const DEFAULT_PORT: u16 = 8014;
pub(super) const DEFAULT_TOKEN_FILE: &str = "token.json";
pub(super) const DEFAULT_AUTHORIZE_URL: &str = "https://auth.atlassian.com/authorize";
pub(super) const DEFAULT_TOKEN_URL: &str = "https://auth.atlassian.com/oauth/token";
pub(super) const DEFAULT_API_URL: &str = "https://api.atlassian.com";
/// One HTTP request, connect included, may take this long.
pub(super) const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Without this scope Atlassian issues no refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// `ATL_STORE`'s value for a secret in AWS Secrets Manager: `aws-secretsmanager:NAME-OR-ARN`.
pub const AWS_SECRETS_MANAGER: &str = "aws-secretsmanager";
/// `ATL_STORE`'s value for a KV version 2 secret in HashiCorp Vault or OpenBao:
/// `vault:MOUNT/PATH`.
pub const VAULT: &str = "vault";
/// `ATL_STORE`'s value for a secret in GCP Secret Manager:
/// `gcp-secretmanager:projects/PROJECT/secrets/NAME`.
pub const GCP_SECRET_MANAGER: &str = "gcp-secretmanager";
/// `ATL_STORE`'s value for the OS keyring.
pub const KEYRING: &str = "keyring";
/// How long a claim to refresh lasts, unless `ATL_STORE_LEASE` says otherwise: longer than
/// the token request's retries (a minute) plus the request itself.
pub(super) const DEFAULT_LEASE: Duration = Duration::from_secs(120);
/// Time a lease keeps for the writes to the store after the token request.
pub const LEASE_SLACK: Duration = Duration::from_secs(1);

//! Configuration: the keys, where each value comes from (flags > process environment >
//! env file > defaults), and their validation into a typed [`Config`].
//!
//! [`load`] is the only part that touches the file system and the environment; [`resolve`]
//! is pure and takes everything it reads as parameters.

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::{Host, Url};

use crate::envfile;
use crate::exit::Exit;
use crate::provider::{self, BodyFormat, Endpoint, Kind, Provider};
use crate::secret::Secret;
use crate::token::Bound;

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

/// Every key, for spotting a misspelt one.
const KEYS: [Key; 20] = [
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
];

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
fn edit_distance(a: &str, b: &str) -> usize {
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
const MAX_ENV_FILE: u64 = 64 * 1024;

/// The environment variable that names the env file when `--env-file` is not given.
pub const ENV_FILE_VAR: &str = "ATL_ENV_FILE";
/// The environment variable that picks a profile when `--profile` is not given.
pub const PROFILE_VAR: &str = "ATL_PROFILE";

const DEFAULT_PORT: u16 = 8014;
const DEFAULT_TOKEN_FILE: &str = "token.json";
const DEFAULT_AUTHORIZE_URL: &str = "https://auth.atlassian.com/authorize";
const DEFAULT_TOKEN_URL: &str = "https://auth.atlassian.com/oauth/token";
const DEFAULT_API_URL: &str = "https://api.atlassian.com";
/// One HTTP request, connect included, may take this long.
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Without this scope Atlassian issues no refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Everything the commands need, validated. Nothing past [`load`] reads the environment.
#[derive(Debug)]
pub struct Config {
    /// How atl-token authenticates: the protocol, the server and the client's credentials.
    pub auth: Auth,
    /// The Atlassian Cloud site, e.g. `https://your-site.atlassian.net`: whose cloud id to use.
    pub site: Option<Url>,
    pub redirect: Redirect,
    pub token_file: PathBuf,
    /// Where API calls go: Cloud's gateway (`ATL_API_URL`), or the Server or Data Center
    /// base URL. The access token and signatures go to this origin only.
    pub api: Endpoint,
    pub http_timeout: Duration,
    /// Extra trusted root certificates (a company CA), on top of the system's.
    pub ca_file: Option<CaFile>,
    /// Where the token family is kept.
    pub store: StoreKind,
}

/// Where the token family is kept (`ATL_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// The token file (the default).
    File,
    /// A secret in AWS Secrets Manager, shared by many hosts.
    AwsSecretsManager(SecretSettings),
}

/// `ATL_STORE=aws-secretsmanager:NAME` and `ATL_STORE_LEASE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSettings {
    /// The secret's name or ARN.
    pub secret_id: String,
    /// How long a host's claim to refresh lasts before another may take it over.
    pub lease: Duration,
    /// E.g. "ATL_STORE in /home/me/jira/.env".
    pub origin: String,
}

/// A PEM bundle of root certificates, read only when a request is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    /// E.g. "ATL_CA_FILE in /home/me/jira/.env".
    pub origin: String,
}

/// The two protocols: OAuth 2.0 (Cloud and Data Center), and OAuth 1.0a (application links).
#[derive(Debug)]
pub enum Auth {
    OAuth2(OAuth2),
    OAuth1(Consumer),
}

/// An OAuth 2.0 client and the authorization server it is registered with.
#[derive(Debug)]
pub struct OAuth2 {
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: Scope,
    /// The authorization server: its endpoints and its rules.
    pub provider: Provider,
}

impl OAuth2 {
    /// The endpoints set by their own keys rather than by the provider.
    pub fn custom_endpoints(&self) -> Vec<&Endpoint> {
        let p = &self.provider;
        [&p.authorize_url, &p.token_url].into_iter().filter(|e| e.custom).collect()
    }
}

/// An OAuth 1.0a consumer registered in a Server or Data Center application link.
#[derive(Debug)]
pub struct Consumer {
    pub consumer_key: String,
    pub private_key_file: KeyFile,
    /// The product's base URL without a trailing slash: `{base}/rest/...`.
    pub base_url: String,
    pub request_token_url: Endpoint,
    pub authorize_url: Endpoint,
    pub access_token_url: Endpoint,
}

/// The consumer's private key file, read only when a request is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub path: PathBuf,
    /// E.g. "ATL_PRIVATE_KEY_FILE in /home/me/jira/.env".
    pub origin: String,
}

impl Config {
    /// The OAuth 2.0 client, or a usage error saying that `what` needs OAuth 2.0.
    pub fn oauth2(&self, what: &str) -> Result<&OAuth2, Exit> {
        match &self.auth {
            Auth::OAuth2(oauth2) => Ok(oauth2),
            Auth::OAuth1(_) => Err(Exit::usage(format!(
                "{what} needs OAuth 2.0, but {} is {} (OAuth 1.0a through an application link)",
                PROVIDER.name,
                provider::OAUTH1
            ))),
        }
    }

    /// The endpoint that issues the tokens in the token file, and the only one a token set
    /// is used with: the OAuth 2.0 token endpoint, or the OAuth 1.0a access-token endpoint.
    pub fn issuer(&self) -> &Endpoint {
        match &self.auth {
            Auth::OAuth2(oauth2) => &oauth2.provider.token_url,
            Auth::OAuth1(consumer) => &consumer.access_token_url,
        }
    }

    /// Every destination a token family from these settings is bound to, and the setting
    /// that chose each: the token file must have recorded the same (see
    /// [`crate::binding`]).
    pub fn bindings(&self) -> Vec<(Bound, &Endpoint)> {
        let revoke = match &self.auth {
            Auth::OAuth2(oauth2) => oauth2.provider.revoke_url.as_ref(),
            Auth::OAuth1(_) => None,
        };
        let mut bindings = vec![(Bound::Token, self.issuer()), (Bound::Api, &self.api)];
        bindings.extend(revoke.map(|r| (Bound::Revoke, r)));
        bindings
    }

    /// [`Config::bindings`] as a token set records them.
    pub fn binding_urls(&self) -> Vec<(Bound, &str)> {
        self.bindings().into_iter().map(|(which, e)| (which, e.url.as_str())).collect()
    }

    /// Where API calls go when that is known without asking a server: the Data Center or
    /// Server base URL, without a trailing slash.
    pub fn api_base(&self) -> Option<&str> {
        match &self.auth {
            Auth::OAuth2(oauth2) => oauth2.provider.api_base.as_deref(),
            Auth::OAuth1(consumer) => Some(&consumer.base_url),
        }
    }

    /// The site a login signs in to, for people: the base URL on Server and Data Center, else
    /// `ATL_SITE`, else Atlassian Cloud.
    pub fn site_label(&self) -> String {
        match (self.api_base(), &self.site) {
            (Some(base), _) => base.to_owned(),
            (None, Some(site)) => site.as_str().trim_end_matches('/').to_owned(),
            (None, None) => "Atlassian Cloud".to_owned(),
        }
    }
}

/// The scopes to ask for, space-separated, duplicates removed.
#[derive(Debug, PartialEq, Eq)]
pub struct Scope {
    pub value: String,
    /// `offline_access` was missing and has been added.
    pub added_offline_access: bool,
}

/// The loopback redirect URI that `login` listens on.
#[derive(Debug, PartialEq, Eq)]
pub struct Redirect {
    /// As configured, byte for byte: the server compares it with the registered callback.
    pub uri: String,
    pub host: LoopbackHost,
    pub port: u16,
    /// The path the listener answers, e.g. `/` or `/callback`.
    pub path: String,
    /// The setting that decides the port, for "port in use" messages: where it was set, or
    /// the key to set.
    pub port_origin: String,
    /// `https://`: the listener serves TLS with a certificate made for this login.
    pub tls: bool,
}

/// The loopback names a redirect URI may use, and so the addresses to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopbackHost {
    /// `localhost`: browsers may resolve it to 127.0.0.1 or ::1, so both are served.
    Localhost,
    V4,
    V6,
}

/// An env file that was found and read.
#[derive(Debug)]
pub struct EnvFile {
    pub path: PathBuf,
    pub vars: Vec<(String, String)>,
}

/// Everything [`resolve`] reads, gathered by [`load`] (or by a test).
pub struct Sources<'a> {
    /// `--token-file`, relative to `cwd`.
    pub token_file_flag: Option<&'a Path>,
    /// The process environment.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The env file, if one was found.
    pub file: Option<&'a EnvFile>,
    /// The env files looked for, when none was found (for messages).
    pub searched: &'a [PathBuf],
    pub cwd: &'a Path,
}

/// A value and where it was found, e.g. "REFRESH_PORT in /home/me/.env".
struct Setting {
    value: String,
    origin: String,
}

impl Sources<'_> {
    /// The value of `key` by precedence: environment before env file, and within each the
    /// key's own name before its alias. Empty values count as unset.
    fn get(&self, key: Key) -> Option<Setting> {
        find(self.env, self.file, key)
    }

    fn require(&self, key: Key) -> Result<Setting, Exit> {
        self.get(key).ok_or_else(|| {
            let alias = key.alias.map(|a| format!(" (or {a})")).unwrap_or_default();
            let place = match (self.file, self.searched) {
                (Some(file), _) => format!("add it to {}", file.path.display()),
                (None, []) => "set it in the environment or an env file".to_owned(),
                (None, searched) => format!(
                    "no env file was found (looked for {}): run `atl-token init` to write one, or use --env-file",
                    display_paths(searched)
                ),
            };
            Exit::usage(format!("{}{alias} is not set: {place}", key.name))
        })
    }
}

/// The value of `key` by precedence: environment before env file, and within each the key's
/// own name before its alias. Empty values count as unset.
fn find(env: &dyn Fn(&str) -> Option<String>, file: Option<&EnvFile>, key: Key) -> Option<Setting> {
    let names = || std::iter::once(key.name).chain(key.alias);
    let from_env = names().find_map(|name| {
        env(name)
            .filter(|v| !v.is_empty())
            .map(|value| Setting { value, origin: format!("{name} in the environment") })
    });
    from_env.or_else(|| {
        let file = file?;
        names().find_map(|name| {
            // The last assignment in a file wins, as when the shell sources it.
            file.vars.iter().rev().find(|(k, v)| k == name && !v.is_empty()).map(|(_, value)| Setting {
                value: value.clone(),
                origin: format!("{name} in {}", file.path.display()),
            })
        })
    })
}

/// [`find`]'s value alone, for the hot path, which needs no origin.
pub fn lookup_value(
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<&EnvFile>,
    key: Key,
) -> Option<String> {
    find(env, file, key).map(|s| s.value)
}

/// The token file: `value` (`ATL_TOKEN_FILE`), else `token.json`, relative to the env file's
/// folder (else `cwd`).
pub fn token_file_in(file: Option<&EnvFile>, cwd: &Path, value: Option<String>) -> PathBuf {
    let base = file.and_then(|f| f.path.parent()).unwrap_or(cwd);
    base.join(value.unwrap_or_else(|| DEFAULT_TOKEN_FILE.to_owned()))
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
}

/// Turns raw settings into a [`Config`], or a usage error naming the key and where it was set.
pub fn resolve(sources: &Sources<'_>) -> Result<Config, Exit> {
    let chosen = sources.get(PROVIDER);
    let oauth1 = chosen.as_ref().is_some_and(|s| s.value.eq_ignore_ascii_case(provider::OAUTH1));
    let auth = if oauth1 { Auth::OAuth1(consumer(sources)?) } else { Auth::OAuth2(oauth2(sources, chosen)?) };
    if let (Some(site), Some(base)) = (sources.get(SITE), sources.get(BASE_URL)) {
        return Err(Exit::usage(format!(
            "{} names an Atlassian Cloud site, but {} sets a Server or Data Center site: remove {}",
            site.origin, base.origin, SITE.name
        )));
    }
    let site = sources.get(SITE).map(|s| parse_url(&s)).transpose()?;
    let redirect = redirect(sources)?;

    let base = sources.file.and_then(|f| f.path.parent()).unwrap_or(sources.cwd);
    let token_file = match sources.token_file_flag {
        Some(flag) => sources.cwd.join(flag),
        None => token_file_in(sources.file, sources.cwd, sources.get(TOKEN_FILE).map(|s| s.value)),
    };
    let ca_file = sources.get(CA_FILE).map(|s| CaFile { path: base.join(s.value), origin: s.origin });
    let api = match (server_base(&auth), sources.get(API_URL)) {
        (Some(base), None) => base,
        (Some(_), Some(setting)) => {
            return Err(Exit::usage(format!(
                "{} is for Atlassian Cloud's API gateway; on Server and Data Center API calls go to {}: \
                 remove {}",
                setting.origin, BASE_URL.name, API_URL.name
            )));
        }
        (None, Some(setting)) => Endpoint { url: parse_url(&setting)?, origin: setting.origin, custom: true },
        (None, None) => Endpoint {
            url: Url::parse(DEFAULT_API_URL).expect("the default URL is valid"),
            origin: "the default".to_owned(),
            custom: false,
        },
    };

    let http_timeout = match sources.get(HTTP_TIMEOUT) {
        None => DEFAULT_HTTP_TIMEOUT,
        Some(s) => match s.value.parse::<u64>() {
            Ok(secs) if secs > 0 => Duration::from_secs(secs),
            _ => crate::duration::parse(&s.value)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| invalid(&s, "use a number of seconds, e.g. 30"))?,
        },
    };

    let store = store(sources, http_timeout)?;
    Ok(Config { auth, site, redirect, token_file, api, http_timeout, ca_file, store })
}

/// The Server or Data Center base URL, where API calls go, and the setting that chose it;
/// `None` on Atlassian Cloud.
fn server_base(auth: &Auth) -> Option<Endpoint> {
    let (base, origin) = match auth {
        Auth::OAuth2(oauth2) => {
            (oauth2.provider.api_base.as_deref()?, &oauth2.provider.revoke_url.as_ref()?.origin)
        }
        Auth::OAuth1(consumer) => (consumer.base_url.as_str(), &consumer.access_token_url.origin),
    };
    Some(Endpoint { url: Url::parse(base).ok()?, origin: origin.clone(), custom: false })
}

/// `ATL_STORE`'s value for a secret in AWS Secrets Manager: `aws-secretsmanager:NAME-OR-ARN`.
pub const AWS_SECRETS_MANAGER: &str = "aws-secretsmanager";
/// How long a claim to refresh lasts, unless `ATL_STORE_LEASE` says otherwise: longer than
/// the token request's retries (a minute) plus the request itself.
const DEFAULT_LEASE: Duration = Duration::from_secs(120);
/// Time a lease keeps for the writes to the store after the token request.
pub const LEASE_SLACK: Duration = Duration::from_secs(1);

fn store(sources: &Sources, http_timeout: Duration) -> Result<StoreKind, Exit> {
    let Some(setting) = sources.get(STORE) else { return Ok(StoreKind::File) };
    let value = setting.value.trim();
    if value == "file" {
        return Ok(StoreKind::File);
    }
    let hint = "use `file` (the default) or `aws-secretsmanager:NAME` (a secret's name or ARN)";
    let Some(secret_id) = value.strip_prefix(AWS_SECRETS_MANAGER).and_then(|rest| rest.strip_prefix(':'))
    else {
        return Err(invalid(&setting, hint));
    };
    if secret_id.is_empty() || secret_id.chars().any(char::is_whitespace) {
        return Err(invalid(&setting, hint));
    }
    let lease = match sources.get(STORE_LEASE) {
        None => DEFAULT_LEASE,
        Some(s) => {
            let lease =
                crate::duration::parse(&s.value).map_err(|_| invalid(&s, "use a duration, e.g. 2m"))?;
            if lease < http_timeout + LEASE_SLACK * 2 {
                return Err(invalid(
                    &s,
                    &format!(
                        "a claim must outlast one token request: give more than ATL_HTTP_TIMEOUT ({}) \
                         plus {}",
                        crate::duration::human(http_timeout),
                        crate::duration::human(LEASE_SLACK * 2)
                    ),
                ));
            }
            lease
        }
    };
    Ok(StoreKind::AwsSecretsManager(SecretSettings {
        secret_id: secret_id.to_owned(),
        lease,
        origin: setting.origin,
    }))
}

/// The OAuth 2.0 client and its provider.
fn oauth2(sources: &Sources<'_>, chosen: Option<Setting>) -> Result<OAuth2, Exit> {
    let client_id = sources.require(CLIENT_ID)?.value;
    let client_secret = Secret::new(sources.require(CLIENT_SECRET)?.value);
    let raw_scope = sources.require(SCOPE)?;
    if raw_scope.value.contains(',') {
        let spaced: Vec<&str> = raw_scope.value.split([',', ' ']).filter(|s| !s.is_empty()).collect();
        return Err(Exit::usage(format!(
            "{}: scopes are separated by spaces, not commas: write {}=\"{}\"",
            raw_scope.origin,
            SCOPE.name,
            spaced.join(" ")
        )));
    }
    let provider = provider(sources, chosen)?;
    let scope = normalize_scope(&raw_scope.value, provider.kind.needs_offline_access());
    Ok(OAuth2 { client_id, client_secret, scope, provider })
}

/// The OAuth 1.0a consumer: `ATL_BASE_URL`, `ATL_CONSUMER_KEY` and `ATL_PRIVATE_KEY_FILE`.
/// The OAuth 2.0 keys that would change where requests go are refused rather than ignored.
fn consumer(sources: &Sources<'_>) -> Result<Consumer, Exit> {
    for key in [AUTHORIZE_URL, TOKEN_URL, TOKEN_BODY, PKCE] {
        if let Some(setting) = sources.get(key) {
            return Err(Exit::usage(format!(
                "{} applies to OAuth 2.0 only, but {} is {}: remove it",
                setting.origin,
                PROVIDER.name,
                provider::OAUTH1
            )));
        }
    }
    let base = sources.get(BASE_URL).ok_or_else(|| {
        Exit::usage(format!(
            "{} is {} but {} is not set: set it to the product's base URL, e.g. https://jira.example.com",
            PROVIDER.name,
            provider::OAUTH1,
            BASE_URL.name
        ))
    })?;
    let url = base_url(&base)?;
    let consumer_key = sources.require(CONSUMER_KEY)?.value;
    let key = sources.require(PRIVATE_KEY_FILE)?;
    let folder = sources.file.and_then(|f| f.path.parent()).unwrap_or(sources.cwd);
    let endpoint = |name: &str| Endpoint {
        url: below_path(&url, provider::OAUTH1_PATH, name),
        origin: base.origin.clone(),
        custom: false,
    };
    Ok(Consumer {
        consumer_key,
        private_key_file: KeyFile { path: folder.join(key.value), origin: key.origin },
        base_url: url.as_str().trim_end_matches('/').to_owned(),
        request_token_url: endpoint("request-token"),
        authorize_url: endpoint("authorize"),
        access_token_url: endpoint("access-token"),
    })
}

/// The provider: `ATL_PROVIDER` and `ATL_BASE_URL` choose the endpoints and the rules, and
/// `ATL_AUTHORIZE_URL`, `ATL_TOKEN_URL`, `ATL_TOKEN_BODY` and `ATL_PKCE` adjust them.
fn provider(sources: &Sources<'_>, chosen: Option<Setting>) -> Result<Provider, Exit> {
    let kind = match &chosen {
        None => Kind::Cloud,
        Some(s) => Kind::from_name(&s.value).ok_or_else(|| invalid(s, "use cloud, datacenter or oauth1"))?,
    };
    let provider_origin = chosen.as_ref().map_or("the default", |s| s.origin.as_str());
    let base = match (kind, sources.get(BASE_URL)) {
        (Kind::DataCenter, Some(setting)) => Some((base_url(&setting)?, setting.origin)),
        (Kind::DataCenter, None) => {
            return Err(Exit::usage(format!(
                "{} is datacenter ({provider_origin}) but {} is not set: set it to the product's \
                 base URL, e.g. https://jira.example.com",
                PROVIDER.name, BASE_URL.name
            )));
        }
        (Kind::Cloud, Some(setting)) => {
            return Err(Exit::usage(format!(
                "{} is set, but {} is cloud ({provider_origin}): for Data Center set {}=datacenter; \
                 for Atlassian Cloud remove {}",
                setting.origin, PROVIDER.name, PROVIDER.name, BASE_URL.name
            )));
        }
        (Kind::Cloud, None) => None,
    };

    // An endpoint from its own key, else below the Data Center base, else Cloud's default.
    let endpoint = |key: Key, name: &str, cloud_default: &str| -> Result<Endpoint, Exit> {
        if let Some(setting) = sources.get(key) {
            return Ok(Endpoint { url: parse_url(&setting)?, origin: setting.origin, custom: true });
        }
        Ok(match &base {
            Some((base, origin)) => {
                Endpoint { url: below(base, name), origin: origin.clone(), custom: false }
            }
            None => Endpoint {
                url: Url::parse(cloud_default).expect("default URLs are valid"),
                origin: "the default".to_owned(),
                custom: false,
            },
        })
    };
    let authorize_url = endpoint(AUTHORIZE_URL, "authorize", DEFAULT_AUTHORIZE_URL)?;
    let token_url = endpoint(TOKEN_URL, "token", DEFAULT_TOKEN_URL)?;
    let revoke_url = base.as_ref().map(|(base, origin)| Endpoint {
        url: below(base, "revoke"),
        origin: origin.clone(),
        custom: false,
    });

    let body = match sources.get(TOKEN_BODY) {
        None => kind.body(),
        Some(s) => match s.value.to_ascii_lowercase().as_str() {
            "json" => BodyFormat::Json,
            "form" => BodyFormat::Form,
            _ => return Err(invalid(&s, "use json or form")),
        },
    };
    let pkce = match sources.get(PKCE) {
        None => kind == Kind::DataCenter,
        Some(s) => match (s.value.to_ascii_lowercase().as_str(), kind) {
            ("on", _) => true,
            ("off", Kind::Cloud) => false,
            ("off", Kind::DataCenter) => {
                return Err(Exit::usage(format!(
                    "{}: PKCE is always on for Data Center ({provider_origin}): remove {}",
                    s.origin, PKCE.name
                )));
            }
            _ => return Err(invalid(&s, "use on or off")),
        },
    };
    let api_base = base.map(|(base, _)| base.as_str().trim_end_matches('/').to_owned());
    Ok(Provider { kind, authorize_url, token_url, revoke_url, body, pkce, api_base })
}

/// A Data Center base URL: where the product answers, perhaps with a context path such as
/// `/jira`.
fn base_url(setting: &Setting) -> Result<Url, Exit> {
    let url = parse_url(setting)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(setting, "give the base URL alone, without ?query or #fragment"));
    }
    Ok(url)
}

/// `{base}/rest/oauth2/latest/{name}`.
fn below(base: &Url, name: &str) -> Url {
    below_path(base, provider::DATACENTER_PATH, name)
}

/// `{base}/{path}/{name}`.
fn below_path(base: &Url, path: &str, name: &str) -> Url {
    let text = format!("{}/{path}/{name}", base.as_str().trim_end_matches('/'));
    Url::parse(&text).expect("a path below a valid URL is valid")
}

fn invalid(setting: &Setting, hint: &str) -> Exit {
    Exit::usage(format!("{}: '{}' is not valid: {hint}", setting.origin, setting.value))
}

/// Splits on whitespace, drops repeats (the seed's example lists `offline_access` twice) and,
/// where the provider needs it for a refresh token, adds `offline_access` when missing.
fn normalize_scope(raw: &str, needs_offline_access: bool) -> Scope {
    let mut scopes: Vec<&str> = Vec::new();
    for scope in raw.split_whitespace() {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let added_offline_access = needs_offline_access && !scopes.contains(&OFFLINE_ACCESS);
    if added_offline_access {
        scopes.push(OFFLINE_ACCESS);
    }
    Scope { value: scopes.join(" "), added_offline_access }
}

/// An absolute http(s) URL; plain http only to a loopback host, since the client secret
/// and tokens travel in these requests.
fn parse_url(setting: &Setting) -> Result<Url, Exit> {
    let url = Url::parse(&setting.value)
        .map_err(|e| invalid(setting, &format!("{e}; write a full URL such as https://example.com/path")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback_host(&url).is_some() => Ok(url),
        "http" => Err(invalid(setting, "plain http is only allowed to a loopback host; use https")),
        _ => Err(invalid(setting, "use an http or https URL")),
    }
}

/// Which loopback name a URL uses, if it is on loopback.
pub fn loopback_host(url: &Url) -> Option<LoopbackHost> {
    match url.host()? {
        Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => Some(LoopbackHost::Localhost),
        Host::Ipv4(ip) if ip.is_loopback() => Some(LoopbackHost::V4),
        Host::Ipv6(ip) if ip.is_loopback() => Some(LoopbackHost::V6),
        _ => None,
    }
}

fn redirect(sources: &Sources<'_>) -> Result<Redirect, Exit> {
    let port = sources
        .get(PORT)
        .map(|s| match s.value.parse::<u16>() {
            Ok(p) if p > 0 => Ok((p, s.origin)),
            _ => Err(invalid(&s, "use a port number from 1 to 65535")),
        })
        .transpose()?;

    let Some(setting) = sources.get(REDIRECT_URI) else {
        let (port, port_origin) = port.unwrap_or((DEFAULT_PORT, PORT.name.to_owned()));
        return Ok(Redirect {
            uri: format!("http://localhost:{port}"),
            host: LoopbackHost::Localhost,
            port,
            path: "/".to_owned(),
            port_origin,
            tls: false,
        });
    };

    let url = Url::parse(&setting.value).map_err(|e| invalid(&setting, &e.to_string()))?;
    let tls = url.scheme() == "https";
    let host = loopback_host(&url).filter(|_| tls || url.scheme() == "http").ok_or_else(|| {
        invalid(
            &setting,
            "the redirect URI must be http or https on a loopback host (localhost, 127.0.0.1 or \
             [::1]), where atl-token listens",
        )
    })?;
    let uri_port = url.port_or_known_default().unwrap_or(80);
    if let Some((port, origin)) = &port
        && *port != uri_port
    {
        return Err(Exit::usage(format!(
            "{origin} says port {port} but {} uses port {uri_port}: remove one or make them agree",
            setting.origin
        )));
    }
    Ok(Redirect {
        uri: setting.value,
        host,
        port: uri_port,
        path: url.path().to_owned(),
        port_origin: setting.origin,
        tls,
    })
}

/// What decides which env file is read: the flags, then the environment.
#[derive(Debug, Default, Clone)]
pub struct Lookup {
    pub env_file_flag: Option<PathBuf>,
    pub profile_flag: Option<String>,
    pub env_file_var: Option<String>,
    pub profile_var: Option<String>,
    pub xdg_config_home: Option<String>,
    pub home: Option<String>,
}

impl Lookup {
    /// The flags, and `ATL_ENV_FILE`, `ATL_PROFILE`, `XDG_CONFIG_HOME` and `HOME` from the
    /// process environment (empty counts as unset).
    pub fn new(env_file_flag: Option<&Path>, profile_flag: Option<&str>) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            env_file_flag: env_file_flag.map(Path::to_path_buf),
            profile_flag: profile_flag.map(str::to_owned),
            env_file_var: env(ENV_FILE_VAR),
            profile_var: env(PROFILE_VAR),
            xdg_config_home: env("XDG_CONFIG_HOME"),
            home: env("HOME"),
        }
    }

    /// atl-token's own folder: `$XDG_CONFIG_HOME/atl-token`, else `~/.config/atl-token`.
    pub fn config_dir(&self) -> Option<PathBuf> {
        let base = match (&self.xdg_config_home, &self.home) {
            (Some(xdg), _) => PathBuf::from(xdg),
            (None, Some(home)) => Path::new(home).join(".config"),
            (None, None) => return None,
        };
        Some(base.join("atl-token"))
    }

    /// The profile asked for: `--profile`, else `ATL_PROFILE` unless `ATL_ENV_FILE` names a
    /// file, with where it came from.
    pub fn profile(&self) -> Option<(&str, &'static str)> {
        match (&self.profile_flag, &self.env_file_var, &self.profile_var) {
            (Some(name), ..) => Some((name, "--profile")),
            (None, None, Some(name)) => Some((name, PROFILE_VAR)),
            _ => None,
        }
    }

    /// A profile's env file, `{config dir}/NAME/.env`, once NAME is checked to be a plain
    /// folder name.
    pub fn profile_env_file(&self, name: &str, origin: &str) -> Result<PathBuf, Exit> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !plain {
            return Err(Exit::usage(format!(
                "{origin} '{name}' is not a profile name: use letters, digits, '.', '_' and '-', e.g. prod"
            )));
        }
        let dir = self.config_dir().ok_or_else(|| {
            Exit::usage(format!("{origin} needs HOME or XDG_CONFIG_HOME to find the profile's folder"))
        })?;
        Ok(dir.join(name).join(".env"))
    }

    /// The env file asked for by name, if one was, and how: `--env-file`, else a profile,
    /// else `$ATL_ENV_FILE` (relative paths against `cwd`).
    pub fn named(&self, cwd: &Path) -> Result<Option<(PathBuf, Named<'_>)>, Exit> {
        if let Some(flag) = &self.env_file_flag {
            return Ok(Some((cwd.join(flag), Named::Flag)));
        }
        if let Some((name, origin)) = self.profile() {
            return Ok(Some((self.profile_env_file(name, origin)?, Named::Profile { name, origin })));
        }
        Ok(self.env_file_var.as_ref().map(|path| (cwd.join(path), Named::Var)))
    }

    /// The env files to try, in order, each with the error to give when it is missing (only
    /// one that was named must exist).
    pub fn candidates(&self, cwd: &Path) -> Result<Vec<(PathBuf, Option<String>)>, Exit> {
        if let Some((path, how)) = self.named(cwd)? {
            let missing = match how {
                Named::Profile { name, origin } => format!(
                    "profile {name} (from {origin}) has no settings, as {} does not exist: run \
                     `atl-token init --profile {name}` to write them",
                    path.display()
                ),
                Named::Flag | Named::Var => format!(
                    "env file {} (from {}) does not exist: run `atl-token init --env-file {}` to write it",
                    path.display(),
                    if matches!(how, Named::Flag) { "--env-file" } else { ENV_FILE_VAR },
                    crate::shell::quote(&path.to_string_lossy())
                ),
            };
            return Ok(vec![(path, Some(missing))]);
        }
        let mut candidates = vec![(cwd.join(".env"), None)];
        if let Some(dir) = self.config_dir() {
            candidates.push((dir.join(".env"), None));
        }
        Ok(candidates)
    }
}

/// How an env file was asked for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named<'a> {
    /// `--env-file`.
    Flag,
    /// `--profile NAME` or `$ATL_PROFILE`.
    Profile { name: &'a str, origin: &'static str },
    /// `$ATL_ENV_FILE`.
    Var,
}

/// The env file found (if any), the files looked for, and the warnings about it.
pub struct EnvSettings {
    pub file: Option<EnvFile>,
    pub searched: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

/// Finds and reads the env file by [`Lookup`]'s order and the rules for files of settings
/// ([`crate::safe_path::read_trusted`]); warnings are returned, not printed.
pub fn read_env_file(lookup: &Lookup, cwd: &Path) -> anyhow::Result<EnvSettings> {
    let candidates = lookup.candidates(cwd)?;
    let home = std::env::var("HOME").ok().filter(|h| !h.is_empty());
    let mut file = None;
    let mut warnings = Vec::new();
    for (path, missing) in &candidates {
        let Some(bytes) = crate::safe_path::read_trusted(path, &crate::safe_path::ENV_FILE, MAX_ENV_FILE)?
        else {
            if let Some(message) = missing {
                return Err(Exit::usage(message.clone()).into());
            }
            continue;
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| Exit::usage(format!("{}: not UTF-8 text", path.display())))?;
        let parsed = envfile::parse(&text, home.as_deref())
            .map_err(|e| Exit::usage(format!("{}: {e}", path.display())))?;
        warnings = warnings_about(path, &parsed);
        file = Some(EnvFile { path: path.clone(), vars: parsed.vars });
        break;
    }
    let searched = candidates.into_iter().map(|(p, _)| p).collect();
    Ok(EnvSettings { file, searched, warnings })
}

/// Reads the env file and the process environment, then [`resolve`]s them.
pub fn load(lookup: &Lookup, token_file_flag: Option<&Path>) -> anyhow::Result<Config> {
    let env = |name: &str| std::env::var(name).ok();
    let cwd =
        std::env::current_dir().map_err(|e| anyhow::anyhow!("cannot read the current directory: {e}"))?;
    let settings = read_env_file(lookup, &cwd)?;
    for warning in &settings.warnings {
        eprintln!("{warning}");
    }
    let config = resolve(&Sources {
        token_file_flag,
        env: &env,
        file: settings.file.as_ref(),
        searched: &settings.searched,
        cwd: &cwd,
    })?;
    Ok(config)
}

/// What in an env file is likely a mistake: a misspelt key, a `$NAME` that is not filled
/// in, and a file that holds the client secret but other users can read.
fn warnings_about(path: &Path, parsed: &envfile::Parsed) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, closest) in unknown_keys(&parsed.vars) {
        let hint = closest.map(|k| format!(": did you mean {k}?")).unwrap_or_default();
        warnings.push(format!(
            "atl-token: warning: {name} in {} is not a setting atl-token knows{hint}",
            path.display()
        ));
    }
    for name in &parsed.kept_dollars {
        warnings.push(format!(
            "atl-token: warning: the value of {name} in {} holds a `$` that is kept as written: atl-token \
             fills in only $HOME, ${{HOME}} and a leading ~, never other variables; write the value itself",
            path.display()
        ));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        warnings.extend(crate::safe_path::shared_warning(path, &meta, "the env file"));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fixture {
        env: HashMap<&'static str, &'static str>,
        file: Option<EnvFile>,
        token_flag: Option<PathBuf>,
    }

    impl Fixture {
        fn new() -> Self {
            Self { env: HashMap::new(), file: None, token_flag: None }
        }

        fn file(mut self, text: &str) -> Self {
            let vars = envfile::parse(text, None).expect("test env file parses").vars;
            self.file = Some(EnvFile { path: PathBuf::from("/etc/atl/.env"), vars });
            self
        }

        fn env(mut self, key: &'static str, value: &'static str) -> Self {
            self.env.insert(key, value);
            self
        }

        fn resolve(&self) -> Result<Config, Exit> {
            let env = |k: &str| self.env.get(k).map(|v| (*v).to_owned());
            resolve(&Sources {
                token_file_flag: self.token_flag.as_deref(),
                env: &env,
                file: self.file.as_ref(),
                searched: &[PathBuf::from("/cwd/.env")],
                cwd: Path::new("/cwd"),
            })
        }

        fn config(&self) -> Config {
            self.resolve().expect("config resolves")
        }

        fn error(&self) -> String {
            self.resolve().expect_err("config is refused").to_string()
        }
    }

    impl Config {
        /// The OAuth 2.0 client of a config that has one.
        fn o(&self) -> &OAuth2 {
            self.oauth2("the test").expect("an OAuth 2.0 config")
        }
    }

    const MINIMAL: &str = "ATL_CLIENT_ID=id\nATL_CLIENT_SECRET=secret\nATL_SCOPE=read:jira-work\n";

    #[test]
    fn defaults_fill_everything_optional() {
        let c = Fixture::new().file(MINIMAL).config();
        assert_eq!(c.o().client_id, "id");
        assert_eq!(c.o().client_secret.expose(), "secret");
        assert_eq!(c.redirect.uri, "http://localhost:8014");
        assert_eq!(c.redirect.port, 8014);
        assert_eq!(c.redirect.path, "/");
        assert_eq!(c.redirect.host, LoopbackHost::Localhost);
        assert_eq!(c.token_file, PathBuf::from("/etc/atl/token.json"));
        let p = &c.o().provider;
        assert_eq!(p.kind, Kind::Cloud);
        assert_eq!(p.authorize_url.url.as_str(), DEFAULT_AUTHORIZE_URL);
        assert_eq!(p.token_url.url.as_str(), DEFAULT_TOKEN_URL);
        assert!(c.o().custom_endpoints().is_empty());
        assert_eq!(p.token_url.origin, "the default");
        assert_eq!(p.body, BodyFormat::Json);
        assert_eq!((p.pkce, &p.revoke_url, &p.api_base), (false, &None, &None));
        assert!(!c.redirect.tls);
        assert_eq!(c.http_timeout, Duration::from_secs(30));
        assert_eq!(c.site, None);
        assert_eq!(c.ca_file, None);
    }

    #[test]
    fn a_ca_file_is_relative_to_the_env_file_and_remembers_its_origin() {
        let c = Fixture::new().file(&format!("{MINIMAL}ATL_CA_FILE=certs/corp.pem\n")).config();
        let ca = c.ca_file.expect("ca file");
        assert_eq!(ca.path, PathBuf::from("/etc/atl/certs/corp.pem"));
        assert_eq!(ca.origin, "ATL_CA_FILE in /etc/atl/.env");
    }

    #[test]
    fn seed_aliases_work_and_the_canonical_name_wins() {
        let seed = "JIRA_CLIENT_ID=\"old\"\nJIRA_CLIENT_SECRET=\"s\"\n\
                    JIRA_DOMAIN=\"https://my-url.atlassian.net\"\n\
                    JIRA_SCOPE=\"offline_access offline_access read:jira-work\"\n\
                    REFRESH_PORT=9001\nTOKEN_FILE_NAME=\"tok.json\"\n";
        let c = Fixture::new().file(seed).config();
        assert_eq!(c.o().client_id, "old");
        assert_eq!(c.site.as_ref().expect("site").as_str(), "https://my-url.atlassian.net/");
        assert_eq!(c.redirect.uri, "http://localhost:9001");
        assert_eq!(c.token_file, PathBuf::from("/etc/atl/tok.json"));
        assert_eq!(c.o().scope.value, "offline_access read:jira-work");
        assert!(!c.o().scope.added_offline_access);

        let both = format!("{seed}ATL_CLIENT_ID=new\n");
        assert_eq!(Fixture::new().file(&both).config().o().client_id, "new");
    }

    #[test]
    fn environment_beats_file_and_flag_beats_both() {
        let mut f = Fixture::new()
            .file(&format!("{MINIMAL}ATL_TOKEN_FILE=from-file.json\nATL_PORT=9000\n"))
            .env("JIRA_CLIENT_ID", "from-env")
            .env("ATL_PORT", "9100")
            .env("ATL_TOKEN_FILE", "from-env.json");
        let c = f.config();
        assert_eq!(c.o().client_id, "from-env");
        assert_eq!(c.redirect.port, 9100);
        assert_eq!(c.redirect.port_origin, "ATL_PORT in the environment");
        assert_eq!(c.token_file, PathBuf::from("/etc/atl/from-env.json"));

        f.token_flag = Some(PathBuf::from("flag.json"));
        assert_eq!(f.config().token_file, PathBuf::from("/cwd/flag.json"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let f = Fixture::new().file(&format!("{MINIMAL}ATL_PORT=9000\n")).env("ATL_PORT", "");
        assert_eq!(f.config().redirect.port, 9000);
        let err = Fixture::new().file("ATL_CLIENT_ID=\"\"\n").error();
        assert!(err.contains("ATL_CLIENT_ID (or JIRA_CLIENT_ID) is not set"), "{err}");
        assert!(err.contains("/etc/atl/.env"), "{err}");
    }

    #[test]
    fn missing_keys_say_where_to_put_them() {
        let err = Fixture::new().error();
        assert!(err.contains("ATL_CLIENT_ID"), "{err}");
        assert!(err.contains("no env file was found (looked for /cwd/.env)"), "{err}");
        let err = Fixture::new().file("ATL_CLIENT_ID=a\nATL_CLIENT_SECRET=b\n").error();
        assert!(err.starts_with("ATL_SCOPE (or JIRA_SCOPE) is not set"), "{err}");
    }

    #[test]
    fn offline_access_is_added_when_missing() {
        let c = Fixture::new().file(MINIMAL).config();
        assert_eq!(c.o().scope.value, "read:jira-work offline_access");
        assert!(c.o().scope.added_offline_access);
    }

    #[test]
    fn bad_values_name_the_key_and_the_file() {
        let bad = |extra: &str| Fixture::new().file(&format!("{MINIMAL}{extra}\n")).error();
        let err = bad("ATL_PORT=http");
        assert!(err.starts_with("ATL_PORT in /etc/atl/.env: 'http' is not valid"), "{err}");
        assert!(bad("REFRESH_PORT=0").contains("REFRESH_PORT"));
        assert!(bad("ATL_PORT=70000").contains("1 to 65535"));
        assert!(bad("ATL_TOKEN_URL=\"not a url\"").starts_with("ATL_TOKEN_URL"));
        assert!(bad("ATL_TOKEN_URL=http://auth.example.com/token").contains("use https"));
        assert!(bad("ATL_TOKEN_URL=ftp://127.0.0.1/").contains("http or https"));
        assert!(bad("ATL_TOKEN_BODY=xml").contains("json or form"));
        assert!(bad("ATL_HTTP_TIMEOUT=0").contains("ATL_HTTP_TIMEOUT"));
        assert!(bad("ATL_REDIRECT_URI=https://example.com/cb").contains("loopback"));
        assert!(bad("ATL_REDIRECT_URI=ftp://localhost:9/cb").contains("loopback"));
        let clash = bad("ATL_PORT=9000\nATL_REDIRECT_URI=http://localhost:9001/cb");
        assert!(clash.contains("port 9000") && clash.contains("9001"), "{clash}");
    }

    #[test]
    fn loopback_http_urls_and_timeouts_with_units_are_accepted() {
        let extra = "ATL_TOKEN_URL=http://127.0.0.1:5000/token\nATL_HTTP_TIMEOUT=2m\nATL_TOKEN_BODY=FORM\n";
        let c = Fixture::new().file(&format!("{MINIMAL}{extra}")).config();
        assert_eq!(c.o().provider.token_url.url.as_str(), "http://127.0.0.1:5000/token");
        assert_eq!(c.o().provider.token_url.origin, "ATL_TOKEN_URL in /etc/atl/.env");
        assert_eq!(c.o().custom_endpoints(), [&c.o().provider.token_url]);
        assert_eq!(c.http_timeout, Duration::from_secs(120));
        assert_eq!(c.o().provider.body, BodyFormat::Form);
    }

    #[test]
    fn a_redirect_uri_keeps_its_exact_text_and_sets_port_and_path() {
        let extra = "ATL_REDIRECT_URI=http://127.0.0.1:7000/callback\n";
        let c = Fixture::new().file(&format!("{MINIMAL}{extra}")).config();
        assert_eq!(c.redirect.uri, "http://127.0.0.1:7000/callback");
        assert_eq!((c.redirect.host, c.redirect.port), (LoopbackHost::V4, 7000));
        assert_eq!(c.redirect.path, "/callback");
        let v6 = "ATL_REDIRECT_URI=http://[::1]:7000\n";
        let c = Fixture::new().file(&format!("{MINIMAL}{v6}")).config();
        assert_eq!(c.redirect.host, LoopbackHost::V6);
    }

    #[test]
    fn an_https_redirect_uri_asks_for_a_tls_listener() {
        let c =
            Fixture::new().file(&format!("{MINIMAL}ATL_REDIRECT_URI=https://localhost:8443/cb\n")).config();
        assert!(c.redirect.tls);
        assert_eq!((c.redirect.port, c.redirect.path.as_str()), (8443, "/cb"));
        let c = Fixture::new().file(&format!("{MINIMAL}ATL_REDIRECT_URI=https://127.0.0.1\n")).config();
        assert_eq!(c.redirect.port, 443);
    }

    const DC: &str = "ATL_PROVIDER=datacenter\nATL_BASE_URL=https://example.com/jira/\n";

    #[test]
    fn datacenter_endpoints_sit_below_the_base_url() {
        let c = Fixture::new().file(&format!("{MINIMAL}{DC}")).config();
        let p = &c.o().provider;
        assert_eq!(p.kind, Kind::DataCenter);
        assert_eq!(p.authorize_url.url.as_str(), "https://example.com/jira/rest/oauth2/latest/authorize");
        assert_eq!(p.token_url.url.as_str(), "https://example.com/jira/rest/oauth2/latest/token");
        let revoke = p.revoke_url.as_ref().expect("revoke endpoint");
        assert_eq!(revoke.url.as_str(), "https://example.com/jira/rest/oauth2/latest/revoke");
        assert_eq!(revoke.origin, "ATL_BASE_URL in /etc/atl/.env");
        assert_eq!(p.api_base.as_deref(), Some("https://example.com/jira"));
        assert_eq!((p.body, p.pkce), (BodyFormat::Form, true));
        assert!(c.o().custom_endpoints().is_empty());
        // Data Center issues a refresh token without it, and does not know the scope.
        assert_eq!(c.o().scope.value, "read:jira-work");
        assert!(!c.o().scope.added_offline_access);

        let root = Fixture::new()
            .file(&format!("{MINIMAL}ATL_PROVIDER=DataCenter\nATL_BASE_URL=https://jira.example.com\n"))
            .config();
        assert_eq!(
            root.o().provider.token_url.url.as_str(),
            "https://jira.example.com/rest/oauth2/latest/token"
        );
    }

    #[test]
    fn the_api_is_the_gateway_on_cloud_and_the_base_url_elsewhere() {
        let cloud = Fixture::new().file(MINIMAL).config();
        assert_eq!(
            (cloud.api.url.as_str(), cloud.api.origin.as_str()),
            ("https://api.atlassian.com/", "the default")
        );
        let dc = Fixture::new().file(&format!("{MINIMAL}{DC}")).config();
        assert_eq!(dc.api.url.as_str(), "https://example.com/jira");
        assert_eq!(dc.api.origin, "ATL_BASE_URL in /etc/atl/.env");
        let urls: Vec<(Bound, &str)> = dc.binding_urls();
        assert_eq!(
            urls,
            [
                (Bound::Token, "https://example.com/jira/rest/oauth2/latest/token"),
                (Bound::Api, "https://example.com/jira"),
                (Bound::Revoke, "https://example.com/jira/rest/oauth2/latest/revoke"),
            ]
        );
        let oauth1 = Fixture::new().file(OAUTH1).config();
        assert_eq!(oauth1.api.url.as_str(), "https://jira.example.com/jira");
        let err = Fixture::new().file(&format!("{MINIMAL}{DC}ATL_API_URL=https://api.example.com\n")).error();
        assert!(
            err.starts_with("ATL_API_URL in /etc/atl/.env is for Atlassian Cloud's API gateway"),
            "{err}"
        );
    }

    #[test]
    fn explicit_keys_override_the_provider() {
        let extra = "ATL_TOKEN_URL=https://proxy.example.com/t\nATL_TOKEN_BODY=json\n";
        let c = Fixture::new().file(&format!("{MINIMAL}{DC}{extra}")).config();
        assert_eq!(c.o().provider.token_url.url.as_str(), "https://proxy.example.com/t");
        assert_eq!(c.o().custom_endpoints(), [&c.o().provider.token_url]);
        assert_eq!(c.o().provider.body, BodyFormat::Json);
        let cloud = Fixture::new().file(&format!("{MINIMAL}ATL_PKCE=on\n")).config();
        assert!(cloud.o().provider.pkce);
        let cloud = Fixture::new().file(&format!("{MINIMAL}ATL_PKCE=off\n")).config();
        assert!(!cloud.o().provider.pkce);
    }

    #[test]
    fn wrong_provider_combinations_name_the_keys() {
        let bad = |extra: &str| Fixture::new().file(&format!("{MINIMAL}{extra}\n")).error();
        let err = bad("ATL_PROVIDER=datacenter");
        assert!(err.contains("ATL_PROVIDER is datacenter (ATL_PROVIDER in /etc/atl/.env)"), "{err}");
        assert!(err.contains("ATL_BASE_URL is not set"), "{err}");
        let err = bad("ATL_BASE_URL=https://jira.example.com");
        assert!(
            err.starts_with("ATL_BASE_URL in /etc/atl/.env is set, but ATL_PROVIDER is cloud (the default)"),
            "{err}"
        );
        let err = bad("ATL_PROVIDER=server");
        assert!(
            err.starts_with(
                "ATL_PROVIDER in /etc/atl/.env: 'server' is not valid: use cloud, datacenter or oauth1"
            ),
            "{err}"
        );
        let err = bad(&format!("{DC}ATL_PKCE=off"));
        assert_eq!(
            err,
            "ATL_PKCE in /etc/atl/.env: PKCE is always on for Data Center (ATL_PROVIDER in /etc/atl/.env): \
             remove ATL_PKCE"
        );
        assert!(bad("ATL_PKCE=maybe").contains("use on or off"));
        let err = bad(&format!("{DC}ATL_SITE=https://x.atlassian.net"));
        assert!(err.starts_with("ATL_SITE in /etc/atl/.env names an Atlassian Cloud site"), "{err}");
        assert!(bad("ATL_PROVIDER=datacenter\nATL_BASE_URL=http://jira.example.com").contains("use https"));
        assert!(
            bad("ATL_PROVIDER=datacenter\nATL_BASE_URL=https://x.example.com/?a=1")
                .contains("without ?query")
        );
    }

    const OAUTH1: &str = "ATL_PROVIDER=oauth1\nATL_BASE_URL=https://jira.example.com/jira/\n\
                          ATL_CONSUMER_KEY=atl-token-host\nATL_PRIVATE_KEY_FILE=keys/private.pem\n";

    #[test]
    fn oauth1_needs_no_client_and_puts_its_endpoints_below_the_base_url() {
        let c = Fixture::new().file(OAUTH1).config();
        let Auth::OAuth1(consumer) = &c.auth else { panic!("OAuth 1.0a: {c:?}") };
        assert_eq!(consumer.consumer_key, "atl-token-host");
        assert_eq!(consumer.private_key_file.path, PathBuf::from("/etc/atl/keys/private.pem"));
        assert_eq!(consumer.private_key_file.origin, "ATL_PRIVATE_KEY_FILE in /etc/atl/.env");
        assert_eq!(consumer.base_url, "https://jira.example.com/jira");
        let url = |e: &Endpoint| e.url.as_str().to_owned();
        assert_eq!(
            url(&consumer.request_token_url),
            "https://jira.example.com/jira/plugins/servlet/oauth/request-token"
        );
        assert_eq!(
            url(&consumer.authorize_url),
            "https://jira.example.com/jira/plugins/servlet/oauth/authorize"
        );
        assert_eq!(
            url(&consumer.access_token_url),
            "https://jira.example.com/jira/plugins/servlet/oauth/access-token"
        );
        assert_eq!(c.issuer(), &consumer.access_token_url);
        assert_eq!(c.api_base(), Some("https://jira.example.com/jira"));
        let err = c.oauth2("`sites`").expect_err("no OAuth 2.0 client");
        assert!(err.to_string().starts_with("`sites` needs OAuth 2.0, but ATL_PROVIDER is oauth1"), "{err}");
    }

    #[test]
    fn oauth1_settings_that_cannot_apply_or_are_missing_name_the_key() {
        let bad = |text: &str| Fixture::new().file(text).error();
        for key in ["ATL_TOKEN_URL=https://x.example.com/t", "ATL_PKCE=on", "ATL_TOKEN_BODY=form"] {
            let err = bad(&format!("{OAUTH1}{key}\n"));
            assert!(
                err.ends_with("applies to OAuth 2.0 only, but ATL_PROVIDER is oauth1: remove it"),
                "{err}"
            );
        }
        let err = bad("ATL_PROVIDER=OAuth1\nATL_CONSUMER_KEY=k\nATL_PRIVATE_KEY_FILE=k.pem\n");
        assert!(err.contains("ATL_BASE_URL is not set"), "{err}");
        let err =
            bad("ATL_PROVIDER=oauth1\nATL_BASE_URL=https://j.example.com\nATL_PRIVATE_KEY_FILE=k.pem\n");
        assert!(err.starts_with("ATL_CONSUMER_KEY is not set"), "{err}");
        let err = bad("ATL_PROVIDER=oauth1\nATL_BASE_URL=https://j.example.com\nATL_CONSUMER_KEY=k\n");
        assert!(err.starts_with("ATL_PRIVATE_KEY_FILE is not set"), "{err}");
        assert!(
            bad(&format!("{OAUTH1}ATL_SITE=https://x.atlassian.net\n"))
                .contains("names an Atlassian Cloud site")
        );
        assert!(bad("ATL_PROVIDER=oauth1\nATL_BASE_URL=http://jira.example.com\n").contains("use https"));
    }

    #[test]
    fn unknown_keys_get_the_closest_known_one() {
        let vars: Vec<(String, String)> = [
            "ATL_CLIENTID",
            "ATL_CLIENT_ID",
            "JIRA_X",
            "ATL_SCOPES",
            "ATL_WHATEVER_ELSE_ENTIRELY",
            "ATL_CLIENTID",
        ]
        .iter()
        .map(|k| ((*k).to_owned(), String::new()))
        .collect();
        assert_eq!(
            unknown_keys(&vars),
            vec![
                ("ATL_CLIENTID", Some("ATL_CLIENT_ID")),
                ("ATL_SCOPES", Some("ATL_SCOPE")),
                ("ATL_WHATEVER_ELSE_ENTIRELY", None)
            ]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn comma_separated_scopes_are_refused_with_the_spaced_form() {
        let err = Fixture::new()
            .file("ATL_CLIENT_ID=id\nATL_CLIENT_SECRET=s\nATL_SCOPE=\"read:jira-work,read:jira-user, offline_access\"\n")
            .error();
        assert!(err.contains("scopes are separated by spaces, not commas"), "{err}");
        assert!(err.contains("write ATL_SCOPE=\"read:jira-work read:jira-user offline_access\""), "{err}");
    }

    #[test]
    fn env_file_search_order() {
        let cwd = Path::new("/w");
        let paths = |lookup: Lookup| -> Vec<(PathBuf, bool)> {
            lookup.candidates(cwd).expect("candidates").into_iter().map(|(p, m)| (p, m.is_some())).collect()
        };
        let base = Lookup {
            xdg_config_home: Some("/xdg".into()),
            home: Some("/home/u".into()),
            ..Lookup::default()
        };
        let flag = Lookup {
            env_file_flag: Some("a.env".into()),
            env_file_var: Some("b".into()),
            profile_flag: Some("prod".into()),
            ..base.clone()
        };
        assert_eq!(paths(flag), vec![(PathBuf::from("/w/a.env"), true)]);
        let profile =
            Lookup { profile_flag: Some("prod".into()), env_file_var: Some("b".into()), ..base.clone() };
        assert_eq!(paths(profile), vec![(PathBuf::from("/xdg/atl-token/prod/.env"), true)]);
        let var =
            Lookup { env_file_var: Some("/x/b.env".into()), profile_var: Some("p".into()), ..base.clone() };
        assert_eq!(paths(var), vec![(PathBuf::from("/x/b.env"), true)]);
        let profile_var = Lookup { profile_var: Some("sandbox".into()), ..base.clone() };
        assert_eq!(paths(profile_var), vec![(PathBuf::from("/xdg/atl-token/sandbox/.env"), true)]);
        assert_eq!(
            paths(base),
            vec![(PathBuf::from("/w/.env"), false), (PathBuf::from("/xdg/atl-token/.env"), false)]
        );
        let home = Lookup { home: Some("/home/u".into()), ..Lookup::default() };
        assert_eq!(paths(home)[1], (PathBuf::from("/home/u/.config/atl-token/.env"), false));
    }

    #[test]
    fn profile_names_are_plain_folder_names() {
        let lookup = Lookup { home: Some("/home/u".into()), ..Lookup::default() };
        for bad in ["", "..", ".hidden", "a/b", "../x", "a b"] {
            let err = lookup.profile_env_file(bad, "--profile").unwrap_err().to_string();
            assert!(err.contains("is not a profile name"), "{bad}: {err}");
        }
        assert_eq!(
            lookup.profile_env_file("prod-2.eu_1", "--profile").expect("plain"),
            PathBuf::from("/home/u/.config/atl-token/prod-2.eu_1/.env")
        );
    }

    #[test]
    fn debug_output_never_holds_the_secret() {
        let c = Fixture::new().file(MINIMAL).config();
        assert!(!format!("{c:?}").contains("secret\""), "{c:?}");
        assert!(format!("{c:?}").contains("(redacted)"));
    }
}

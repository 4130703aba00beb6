//! Configuration: the keys ([`keys`]), where each value comes from ([`sources`]: flags >
//! process environment > the env files' layers > defaults, and [`trust`] for a folder's
//! file), the checks they pass ([`validate`]), and their resolution into a typed [`Config`]
//! ([`resolve`]).
//!
//! [`load`] is the only part that touches the file system and the environment; [`resolve()`]
//! is pure and takes everything it reads as parameters. Imported by everything that needs
//! settings; imports the provider's types, the token's bindings and the env-file parser.

mod keys;
mod resolve;
mod sources;
pub mod trust;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

pub use keys::*;
pub use resolve::resolve;
pub use sources::*;
pub use validate::*;

use crate::exit::Exit;
use crate::provider::{self, Endpoint, Provider};
use crate::secret::Secret;
use crate::token::Bound;

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
    /// `ATL_ON_ROTATE`: run after each new token set is saved.
    pub on_rotate: Option<Hook>,
}

/// A command to run, and the setting that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub command: String,
    /// E.g. "ATL_ON_ROTATE in /home/me/jira/.env".
    pub origin: String,
}

/// Where the token family is kept (`ATL_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// The token file (the default).
    File,
    /// A secret in AWS Secrets Manager, shared by many hosts.
    AwsSecretsManager(SecretSettings),
    /// A KV version 2 secret in HashiCorp Vault or OpenBao (`MOUNT/PATH`), shared by many hosts.
    Vault(SecretSettings),
    /// A secret in GCP Secret Manager (`projects/PROJECT/secrets/NAME`), shared by many hosts.
    GcpSecretManager(SecretSettings),
    /// The OS keyring (Secret Service, Keychain, Credential Manager), and where that was set.
    Keyring(String),
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

    /// Whether a token set can be fetched again with no person (a service account): see
    /// [`provider::Grant::renewable`].
    pub fn renewable(&self) -> bool {
        matches!(&self.auth, Auth::OAuth2(oauth2) if oauth2.provider.grant.renewable())
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
    /// Data Center (a login): more than one scope was given, though its scopes are a ladder
    /// and its provider may take the whole value as one: what to say, naming the highest.
    pub ladder: Option<String>,
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
    /// `ATL_LISTEN`: the one address to listen on instead of the loopback ones (`0.0.0.0` in
    /// a container, whose published port arrives on its own network address), and where it
    /// was set.
    pub listen: Option<(std::net::IpAddr, String)>,
}

/// The loopback names a redirect URI may use, and so the addresses to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopbackHost {
    /// `localhost`: browsers may resolve it to 127.0.0.1 or ::1, so both are served.
    Localhost,
    V4,
    V6,
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
        files: &settings.files,
        searched: &settings.searched,
        cwd: &cwd,
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests;

//! Resolution: raw settings, checked one by one, into a typed [`Config`]. Pure: everything
//! it reads comes in through [`Sources`], so each rule is unit-tested on strings.

use std::time::Duration;

use url::Url;

use super::*;
use crate::exit::Exit;
use crate::provider::{self, BodyFormat, Endpoint, Grant, Kind, Provider};
use crate::secret::Secret;

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

    let token_file = match sources.token_file_flag {
        Some(flag) => sources.cwd.join(flag),
        None => token_file_in(sources.env, sources.files, sources.cwd),
    };
    let ca_file =
        sources.get(CA_FILE).map(|s| CaFile { path: s.base(sources).join(&s.value), origin: s.origin });
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
    let on_rotate = sources.get(ON_ROTATE).map(|s| Hook { command: s.value, origin: s.origin });
    Ok(Config { auth, site, redirect, token_file, api, http_timeout, ca_file, store, on_rotate })
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

fn store(sources: &Sources, http_timeout: Duration) -> Result<StoreKind, Exit> {
    let Some(setting) = sources.get(STORE) else { return Ok(StoreKind::File) };
    let value = setting.value.trim();
    if value == "file" {
        return Ok(StoreKind::File);
    }
    if value == KEYRING {
        return Ok(StoreKind::Keyring(setting.origin));
    }
    let hint = "use `file` (the default), `keyring` (the OS keyring), `aws-secretsmanager:NAME` (a secret's \
                name or ARN), `vault:MOUNT/PATH` (a KV version 2 secret) or \
                `gcp-secretmanager:projects/PROJECT/secrets/NAME`";
    let prefixed = |kind: &str| value.strip_prefix(kind).and_then(|rest| rest.strip_prefix(':'));
    let (kind, secret_id): (fn(SecretSettings) -> StoreKind, &str) =
        match (prefixed(AWS_SECRETS_MANAGER), prefixed(VAULT), prefixed(GCP_SECRET_MANAGER)) {
            (Some(id), ..) => (StoreKind::AwsSecretsManager, id),
            (None, Some(id), _) => (StoreKind::Vault, id),
            (None, None, Some(id)) => (StoreKind::GcpSecretManager, id),
            (None, None, None) => return Err(invalid(&setting, hint)),
        };
    if secret_id.is_empty() || secret_id.chars().any(char::is_whitespace) {
        return Err(invalid(&setting, hint));
    }
    // Vault: a mount and a path below it, plain segments that cannot leave the mount.
    if prefixed(VAULT).is_some() && !vault_secret_path(secret_id) {
        return Err(invalid(
            &setting,
            "use vault:MOUNT/PATH, e.g. vault:secret/atlassian/jira-bot: a mount and a path of \
             '/'-separated names of letters, digits, '.', '_' and '-' (no '.' or '..' name)",
        ));
    }
    // GCP: a secret's full resource name, as gcloud prints it.
    if prefixed(GCP_SECRET_MANAGER).is_some() && !gcp_secret_name(secret_id.trim_matches('/')) {
        return Err(invalid(
            &setting,
            "use gcp-secretmanager:projects/PROJECT/secrets/NAME, e.g. \
             gcp-secretmanager:projects/my-project/secrets/jira-bot",
        ));
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
    Ok(kind(SecretSettings {
        secret_id: secret_id.trim_matches('/').to_owned(),
        lease,
        origin: setting.origin,
    }))
}

/// `projects/PROJECT/secrets/NAME`: a project id and a secret id of the characters Secret
/// Manager allows (letters, digits, `-` and `_`).
fn gcp_secret_name(name: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    matches!(name.split('/').collect::<Vec<_>>().as_slice(),
        ["projects", project, "secrets", secret] if ok(project) && ok(secret))
}

/// The OAuth 2.0 client and its provider.
fn oauth2(sources: &Sources<'_>, chosen: Option<Setting>) -> Result<OAuth2, Exit> {
    let client_id = sources.require(CLIENT_ID)?.value;
    let client_secret = Secret::new(sources.require(CLIENT_SECRET)?.value);
    let grant = match sources.get(GRANT) {
        None => Grant::AuthorizationCode,
        Some(s) => Grant::from_name(s.value.trim())
            .ok_or_else(|| invalid(&s, "use authorization_code (the default) or client_credentials"))?,
    };
    let provider = provider(sources, chosen, grant)?;
    // A Cloud service account's scopes are chosen with its credential: asking is optional.
    let raw_scope = match (grant, provider.kind) {
        (Grant::ClientCredentials, Kind::Cloud) => sources.get(SCOPE),
        _ => Some(sources.require(SCOPE)?),
    };
    if let Some(raw_scope) = raw_scope.as_ref().filter(|s| s.value.contains(',')) {
        let spaced: Vec<&str> = raw_scope.value.split([',', ' ']).filter(|s| !s.is_empty()).collect();
        return Err(Exit::usage(format!(
            "{}: scopes are separated by spaces, not commas: write {}=\"{}\"",
            raw_scope.origin,
            SCOPE.name,
            spaced.join(" ")
        )));
    }
    // Only a refresh token needs `offline_access`; a service account has none.
    let offline = provider.kind.needs_offline_access() && grant == Grant::AuthorizationCode;
    let mut scope = normalize_scope(raw_scope.as_ref().map_or("", |s| s.value.as_str()), offline);
    if provider.kind == Kind::DataCenter && grant == Grant::AuthorizationCode {
        scope.ladder = raw_scope.as_ref().and_then(|s| ladder_advice(&scope.value, &s.origin));
    }
    Ok(OAuth2 { client_id, client_secret, scope, provider })
}

/// Data Center's scopes, lowest first: each includes those below it (Jira and Confluence;
/// then Bitbucket's own).
const LADDERS: [&[&str]; 2] = [
    &["READ", "WRITE", "ADMIN", "SYSTEM_ADMIN"],
    &[
        "PUBLIC_REPOS",
        "ACCOUNT_WRITE",
        "REPO_READ",
        "REPO_WRITE",
        "REPO_ADMIN",
        "PROJECT_ADMIN",
        "ADMIN",
        "SYSTEM_ADMIN",
    ],
];

/// For more than one Data Center scope: a sentence that names the ladder and the single
/// highest scope to give instead.
fn ladder_advice(scope: &str, origin: &str) -> Option<String> {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if scopes.len() < 2 {
        return None;
    }
    let highest = LADDERS.iter().find_map(|ladder| {
        let ranks: Option<Vec<usize>> = scopes.iter().map(|s| ladder.iter().position(|l| l == s)).collect();
        ranks?.into_iter().max().map(|rank| ladder[rank])
    });
    let instead = match highest {
        Some(highest) => format!("give the single highest: {}={highest}", SCOPE.name),
        None => format!("give the single highest scope the link allows in {}", SCOPE.name),
    };
    Some(format!(
        "{origin} names {} scopes, but Data Center's are a ladder (READ < WRITE < ADMIN < SYSTEM_ADMIN; \
         Bitbucket: PUBLIC_REPOS < ACCOUNT_WRITE < REPO_READ < REPO_WRITE < REPO_ADMIN < PROJECT_ADMIN < \
         ADMIN < SYSTEM_ADMIN), each including those below, and its provider may take the whole value as \
         one scope: {instead}",
        scopes.len()
    ))
}

/// The OAuth 1.0a consumer: `ATL_BASE_URL`, `ATL_CONSUMER_KEY` and `ATL_PRIVATE_KEY_FILE`.
/// The OAuth 2.0 keys that would change where requests go are refused rather than ignored.
fn consumer(sources: &Sources<'_>) -> Result<Consumer, Exit> {
    for key in [AUTHORIZE_URL, TOKEN_URL, TOKEN_BODY, PKCE, GRANT] {
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
    let endpoint = |name: &str| Endpoint {
        url: below_path(&url, provider::OAUTH1_PATH, name),
        origin: base.origin.clone(),
        custom: false,
    };
    Ok(Consumer {
        consumer_key,
        private_key_file: KeyFile { path: key.base(sources).join(&key.value), origin: key.origin },
        base_url: url.as_str().trim_end_matches('/').to_owned(),
        request_token_url: endpoint("request-token"),
        authorize_url: endpoint("authorize"),
        access_token_url: endpoint("access-token"),
    })
}

/// The provider: `ATL_PROVIDER` and `ATL_BASE_URL` choose the endpoints and the rules, and
/// `ATL_AUTHORIZE_URL`, `ATL_TOKEN_URL`, `ATL_TOKEN_BODY` and `ATL_PKCE` adjust them.
fn provider(sources: &Sources<'_>, chosen: Option<Setting>, grant: Grant) -> Result<Provider, Exit> {
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
    Ok(Provider { kind, grant, authorize_url, token_url, revoke_url, body, pkce, api_base })
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
    Scope { value: scopes.join(" "), added_offline_access, ladder: None }
}

fn redirect(sources: &Sources<'_>) -> Result<Redirect, Exit> {
    let listen = sources
        .get(LISTEN)
        .map(|s| match s.value.trim().trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => Ok((ip, s.origin)),
            Err(_) => Err(invalid(&s, "use an IP address to listen on, e.g. 0.0.0.0 in a container")),
        })
        .transpose()?;
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
            listen,
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
        listen,
    })
}

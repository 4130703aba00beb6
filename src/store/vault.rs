//! The HashiCorp Vault / OpenBao backend of the shared store ([`super::shared`]): a KV
//! version 2 secret, written with check-and-set. A few REST calls over the reqwest client
//! already in the tree, with no client crate: KV v2's `options.cas` is the whole primitive.
//!
//! - read: `GET /v1/MOUNT/data/PATH`, the document in the field `family`, the version in
//!   `metadata.version`;
//! - swap: `POST /v1/MOUNT/data/PATH` with `options.cas` = the version read: refused with
//!   HTTP 400 "check-and-set parameter did not match" when another write came first. One
//!   step: there is never an unfinished write. An answer lost is settled by reading again.
//!
//! Address and credentials as Vault's own tools take them: `VAULT_ADDR`, `VAULT_TOKEN` (or
//! the token helper's `~/.vault-token`), `VAULT_NAMESPACE`, `VAULT_CACERT`, and AppRole
//! (`VAULT_ROLE_ID`, `VAULT_SECRET_ID`) for machines.

use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use reqwest::Method;
use serde_json::{Value, json};

use super::shared::{Cas, Swapped, Unavailable, Versioned, Write, off_runtime};
use crate::config::{CaFile, Config, SecretSettings};
use crate::exit::Exit;
use crate::secret::Secret;

/// The KV v2 field that holds atl-token's document.
const FIELD: &str = "family";

/// A KV version 2 secret in Vault or OpenBao.
pub struct Vault {
    /// `vault:MOUNT/PATH`, for messages and the files this host keeps.
    id: String,
    addr: String,
    mount: String,
    path: String,
    namespace: Option<String>,
    client: reqwest::Client,
    runtime: OnceLock<tokio::runtime::Runtime>,
    token: OnceLock<Secret>,
    /// Whether the mount was seen to be KV version 2.
    checked: OnceLock<()>,
}

/// An answer: its status, its JSON (null when it had none), and its `errors` as they may
/// be shown (`: one; two`, redacted), or nothing.
struct Answer {
    status: u16,
    body: Value,
    errors: String,
}

impl Vault {
    pub fn new(config: &Config, settings: &SecretSettings) -> Result<Self> {
        let addr = std::env::var("VAULT_ADDR").ok().filter(|a| !a.is_empty()).ok_or_else(|| {
            Exit::usage(format!(
                "{} names a Vault secret, but VAULT_ADDR is not set: set it to the server's address, \
                 e.g. https://vault.example.com:8200",
                settings.origin
            ))
        })?;
        crate::config::store_address("VAULT_ADDR", &addr, "a Vault token")?;
        let ca = std::env::var_os("VAULT_CACERT")
            .filter(|p| !p.is_empty())
            .map(|path| CaFile { path: path.into(), origin: "VAULT_CACERT".to_owned() });
        let client = crate::http::client_trusting(config, ca.as_ref())?;
        let (mount, path) = settings.secret_id.split_once('/').unwrap_or((&settings.secret_id, ""));
        Ok(Self {
            id: format!("{}:{}", crate::config::VAULT, settings.secret_id),
            addr: addr.trim_end_matches('/').to_owned(),
            mount: mount.to_owned(),
            path: path.to_owned(),
            namespace: std::env::var("VAULT_NAMESPACE").ok().filter(|n| !n.is_empty()),
            client,
            runtime: OnceLock::new(),
            token: OnceLock::new(),
            checked: OnceLock::new(),
        })
    }

    /// One request, with the token (unless `anonymous`) and the namespace; the JSON answer.
    /// A failure to get an answer, a 429 or a 5xx is [`Unavailable`].
    fn call(&self, method: Method, path: &str, body: Option<Value>, anonymous: bool) -> Result<Answer> {
        let token = if anonymous { None } else { Some(self.token()?.expose().to_owned()) };
        let mut carried = Vec::new();
        if let Some(body) = &body {
            crate::oauth::secrets_in(body, "", &mut carried);
        }
        let url = format!("{}/v1/{path}", self.addr);
        let mut request = self.client.request(method.clone(), &url).header("X-Vault-Request", "true");
        if let Some(token) = &token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body.to_string());
        }
        let runtime = self.runtime()?;
        let answer = off_runtime(|| {
            runtime.block_on(async {
                let response = request.send().await?;
                let status = response.status().as_u16();
                let bytes = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, bytes))
            })
        })?;
        let shown = format!("{}: Vault {method} {}/v1/{path}", self.id, self.addr);
        let (status, bytes) = answer.map_err(|e| {
            let cause = crate::text::one_line(&crate::text::root_cause(&e));
            anyhow::Error::new(Unavailable(self.redacted(&format!("{shown} failed: {cause}"), &carried)))
        })?;
        crate::http::log(|| format!("{shown}: HTTP {status}"));
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        // Whatever Vault says is shown without the secrets it may echo.
        let errors = self.redacted(&errors_of(&body), &carried);
        if status == 429 || status >= 500 {
            return Err(Unavailable(format!("{shown} answered HTTP {status}{errors}")).into());
        }
        Ok(Answer { status, body, errors })
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(self.runtime.get_or_init(|| runtime))
    }

    /// The token: `VAULT_TOKEN`, else the token helper's `~/.vault-token`, else an AppRole
    /// login with `VAULT_ROLE_ID` and `VAULT_SECRET_ID`.
    fn token(&self) -> Result<&Secret> {
        if let Some(token) = self.token.get() {
            return Ok(token);
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let token = match env("VAULT_TOKEN") {
            Some(token) => Some(token),
            None => helper_token()?,
        };
        let token = match (token, env("VAULT_ROLE_ID"), env("VAULT_SECRET_ID")) {
            (Some(token), ..) => token,
            (None, Some(role_id), Some(secret_id)) => self.approle(&role_id, &secret_id)?,
            _ => {
                return Err(Exit::usage(
                    "no Vault token: set VAULT_TOKEN (or log in with `vault login`, which writes \
                     ~/.vault-token), or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole",
                )
                .into());
            }
        };
        Ok(self.token.get_or_init(|| Secret::new(token)))
    }

    fn approle(&self, role_id: &str, secret_id: &str) -> Result<String> {
        let body = json!({"role_id": role_id, "secret_id": secret_id});
        let answer = self.call(Method::POST, "auth/approle/login", Some(body), true)?;
        answer.body["auth"]["client_token"].as_str().map(str::to_owned).ok_or_else(|| {
            Exit::usage(format!(
                "Vault refused the AppRole login (HTTP {}{}): check VAULT_ROLE_ID and VAULT_SECRET_ID",
                answer.status, answer.errors
            ))
            .into()
        })
    }

    /// Exit 2 unless the mount is KV version 2, whose check-and-set the protocol needs.
    fn check_mount(&self) -> Result<()> {
        if self.checked.get().is_some() {
            return Ok(());
        }
        let answer =
            self.call(Method::GET, &format!("sys/internal/ui/mounts/{}", self.mount), None, false)?;
        let data = &answer.body["data"];
        let version = data["options"]["version"].as_str().unwrap_or("1");
        if answer.status == 200 && (data["type"] != "kv" || version != "2") {
            return Err(Exit::usage(format!(
                "Vault mount {} is {}, not a KV version 2 secrets engine, which atl-token needs for \
                 its check-and-set: enable one with `vault secrets enable -path={} kv-v2`",
                self.mount,
                if data["type"] == "kv" {
                    format!("KV version {version}")
                } else {
                    format!("of type {}", data["type"])
                },
                self.mount
            ))
            .into());
        }
        if answer.status != 200 {
            return Err(self.refused("look up the mount", &answer));
        }
        self.checked.get_or_init(|| ());
        Ok(())
    }

    fn data_path(&self) -> String {
        format!("{}/data/{}", self.mount, self.path)
    }

    /// A write of `text` if the current version is still `cas` (0: none yet): the new
    /// version, or `None` when another write came first.
    fn write(&self, cas: u64, text: &str) -> Result<Option<u64>> {
        self.check_mount()?;
        let body = json!({"options": {"cas": cas}, "data": {FIELD: text}});
        let answer = self.call(Method::POST, &self.data_path(), Some(body), false)?;
        match answer.status {
            200 | 204 => answer.body["data"]["version"]
                .as_u64()
                .map(Some)
                .ok_or_else(|| anyhow!("Vault wrote {} but named no version", self.id)),
            400 if errors_of(&answer.body).contains("check-and-set") => Ok(None),
            _ => Err(self.refused("write", &answer)),
        }
    }

    /// Whether Vault knows the token (`auth/token/lookup-self`, which the default policy
    /// allows); true when that cannot be told.
    fn token_is_known(&self) -> bool {
        self.call(Method::GET, "auth/token/lookup-self", None, false).map_or(true, |a| a.status != 403)
    }

    /// An error for an answer that is neither success nor a lost race.
    fn refused(&self, action: &str, answer: &Answer) -> anyhow::Error {
        let errors = &answer.errors;
        let hint = match answer.status {
            // Vault says "permission denied" for a token it does not know as for a policy
            // that lacks a capability; any live token may look itself up.
            403 if !self.token_is_known() => " (Vault does not know the token: it is wrong or has expired. \
                 Log in again with `vault login`, or check VAULT_TOKEN)"
                .to_owned(),
            403 => format!(
                " (the token's policy must allow read, create and update on {}/data/{} and read on \
                 sys/internal/ui/mounts/{}: see the README's \"Many hosts\" section)",
                self.mount, self.path, self.mount
            ),
            _ => String::new(),
        };
        let message = format!("Vault could not {action} {}: HTTP {}{errors}{hint}", self.id, answer.status);
        if answer.status == 403 || answer.status == 400 {
            Exit::usage(message).into()
        } else {
            anyhow!(message)
        }
    }
}

/// The token helper's `~/.vault-token`, read by the rules for the user's own files (not a
/// link another could plant, nor a FIFO, nor another user's file): `None` when there is none.
fn helper_token() -> Result<Option<String>> {
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else { return Ok(None) };
    let rules = crate::safe_path::Rules { what: "Vault token file", key: "VAULT_TOKEN", root_may_own: false };
    let path = std::path::Path::new(&home).join(".vault-token");
    let Some(bytes) = crate::safe_path::read_trusted(&path, &rules, 64 * 1024)? else { return Ok(None) };
    let text = String::from_utf8(bytes).unwrap_or_default();
    Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty()))
}

impl Vault {
    /// `text` without the store's credentials (the token, AppRole's ids) or `carried`.
    fn redacted(&self, text: &str, carried: &[String]) -> String {
        let env: Vec<String> = ["VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .collect();
        let token = self.token.get().map(|t| t.expose().to_owned());
        let secrets: Vec<&str> = env
            .iter()
            .chain(token.iter())
            .chain(carried)
            .map(String::as_str)
            .filter(|s| s.len() >= 4)
            .collect();
        crate::oauth::redact(text, &secrets)
    }
}

/// `: error one; error two` from Vault's `{"errors": [...]}`, or nothing.
fn errors_of(body: &Value) -> String {
    let errors: Vec<&str> =
        body["errors"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if errors.is_empty() { String::new() } else { format!(": {}", crate::text::one_line(&errors.join("; "))) }
}

impl Cas for Vault {
    fn what(&self) -> String {
        format!("Vault secret {}/{}", self.mount, self.path)
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> (&'static str, &'static str) {
        (crate::config::VAULT, "Vault (KV version 2)")
    }

    fn read(&self) -> Result<Option<Versioned>> {
        self.check_mount()?;
        let answer = self.call(Method::GET, &self.data_path(), None, false)?;
        match answer.status {
            404 => Ok(None),
            200 => {
                let data = &answer.body["data"];
                let version = data["metadata"]["version"].as_u64().unwrap_or(0);
                // A version deleted by hand has no data: nothing of atl-token's.
                let text = data["data"][FIELD].as_str().unwrap_or_default().to_owned();
                Ok(Some(Versioned { version: version.to_string(), text }))
            }
            _ => Err(self.refused("read", &answer)),
        }
    }

    fn create(&self, write: &Write<'_>) -> Result<Option<String>> {
        Ok(self.write(0, write.text)?.map(|v| v.to_string()))
    }

    fn swap(&self, expected: &str, write: &Write<'_>) -> Result<Swapped> {
        let cas: u64 =
            expected.parse().map_err(|_| anyhow!("{}: a version that is not a number", self.id))?;
        match self.write(cas, write.text) {
            Ok(Some(version)) => Ok(Swapped::Won(version.to_string())),
            Ok(None) => Ok(Swapped::Lost),
            // No answer: the write may have been applied. Only a read can tell.
            Err(e) if e.chain().any(|c| c.is::<Unavailable>()) => match self.read() {
                Ok(Some(current)) if current.text == write.text => Ok(Swapped::Won(current.version)),
                Ok(Some(current)) if current.version != expected => Ok(Swapped::Lost),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// KV v2's write is the swap itself: nothing is ever half done.
    fn unfinished(&self, _current: &str) -> Result<Vec<Versioned>> {
        Ok(Vec::new())
    }

    fn finish(&self, _unfinished: &str, _expected: &str) -> Result<bool> {
        Ok(false)
    }
}

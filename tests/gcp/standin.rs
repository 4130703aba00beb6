//! A GCP Secret Manager stand-in on loopback, kept to Google's REST reference
//! (https://cloud.google.com/secret-manager/docs/reference/rest), for the calls atl-token's
//! client makes: secrets (create, get, patch with an `updateMask` and an etag), versions
//! (addVersion, access by number, alias or `latest`, list newest first, get, destroy), and
//! Google's error form `{"error": {"code", "message", "status"}}`.
//!
//! Where it is simpler than the real service (see ../shared/notes/real-peers.md):
//! - no IAM: any `Authorization: Bearer` passes; a test may deny one method, and then the
//!   answer is `PERMISSION_DENIED` naming the permission, as Google's does;
//! - one project, no locations, no replication, no CMEK, no quotas or rate limits;
//! - etags are `"1"`, `"2"`, … (the real ones are opaque strings); an update whose etag is
//!   not the secret's current one is refused with `FAILED_PRECONDITION` (HTTP 400), as the
//!   etag documentation says; `addVersion` does not change the secret's etag;
//! - list pages are never split (the client asks for 100, the tests make fewer);
//! - faults are injected here, not by a proxy: throttling (429 `RESOURCE_EXHAUSTED`), 503
//!   `UNAVAILABLE`, a dropped connection (nothing applied), an answer lost after the call
//!   was applied, and a late call (applied after the client's time limit).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::{Reply, Request, Server};

pub const PROJECT: &str = "atl-test";

/// A fault of the service, injected at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    Throttled,
    Unavailable,
    Dropped,
    AnswerLost,
    Late,
}

const FAULTS: [Fault; 5] =
    [Fault::Throttled, Fault::Unavailable, Fault::Dropped, Fault::AnswerLost, Fault::Late];

#[derive(Debug, Clone)]
struct Version {
    number: u64,
    created: i64,
    state: &'static str,
    data: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct Secret {
    created: i64,
    etag: u64,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    aliases: BTreeMap<String, u64>,
    versions: Vec<Version>,
}

#[derive(Default)]
struct State {
    secrets: HashMap<String, Secret>,
    /// Percent of calls that meet a fault, and how late a late call is.
    faults: u32,
    late: Duration,
    random: u64,
    injected: HashMap<Fault, usize>,
    /// A method (`AddSecretVersion`, …) refused with PERMISSION_DENIED.
    denied: Option<String>,
    /// Every call refused with UNAUTHENTICATED, as for a key Google does not know.
    refuse_credentials: bool,
    /// Throttle every call for this long after the next update of a secret.
    armed: Option<Duration>,
    throttle_until: Option<std::time::Instant>,
    throttled: usize,
}

/// The stand-in: an HTTP server on 127.0.0.1 and the secrets it holds.
pub struct SecretManager {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl SecretManager {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State { random: 0x5eed, ..State::default() }));
        let shared = state.clone();
        let server = Server::start(move |request| handle(&shared, request));
        Self { server, state }
    }

    /// `ATL_GCP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.server.url("")
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on `percent` of calls meet a fault; a late one comes `late` after.
    pub fn inject(&self, percent: u32, late: Duration) {
        let mut state = self.state();
        state.faults = percent;
        state.late = late;
    }

    pub fn injected(&self) -> HashMap<Fault, usize> {
        self.state().injected.clone()
    }

    /// Throttles every call for `length`, starting right after the next update of a secret
    /// (for a refresh, the claim: the refresh token is spent next).
    pub fn arm(&self, length: Duration) {
        self.state().armed = Some(length);
    }

    /// Calls refused by the armed burst.
    pub fn throttled(&self) -> usize {
        self.state().throttled
    }

    /// From now on every call is refused with `UNAUTHENTICATED` (a deleted or wrong key).
    pub fn refuse_credentials(&self) {
        self.state().refuse_credentials = true;
    }

    pub fn deny(&self, method: &str) {
        self.state().denied = Some(method.to_owned());
    }

    /// Calls received, of any kind.
    pub fn calls(&self) -> usize {
        self.server.requests().len()
    }

    /// Versions of `secret` (its id) not destroyed.
    pub fn live_versions(&self, secret: &str) -> usize {
        self.secret(secret, |s| s.versions.iter().filter(|v| v.state != "DESTROYED").count()).unwrap_or(0)
    }

    /// Versions ever added to `secret`.
    pub fn versions_added(&self, secret: &str) -> u64 {
        self.secret(secret, |s| s.versions.len() as u64).unwrap_or(0)
    }

    /// The text of `secret`'s version `version` (a number, an alias, or `latest`).
    pub fn value(&self, secret: &str, version: &str) -> Option<String> {
        self.secret(secret, |s| resolve(s, version).map(|v| String::from_utf8_lossy(&v.data).into_owned()))?
    }

    pub fn labels(&self, secret: &str) -> BTreeMap<String, String> {
        self.secret(secret, |s| s.labels.clone()).unwrap_or_default()
    }

    pub fn exists(&self, secret: &str) -> bool {
        self.secret(secret, |_| ()).is_some()
    }

    /// Creates `secret` holding `value` as version 1 (a test's setup, not a call).
    pub fn put(&self, secret: &str, value: &str, created: i64) {
        let mut state = self.state();
        let entry =
            state.secrets.entry(name(secret)).or_insert_with(|| Secret { created, ..Secret::default() });
        let number = entry.versions.len() as u64 + 1;
        entry.versions.push(Version { number, created, state: "ENABLED", data: value.as_bytes().to_vec() });
        entry.etag += 1;
    }

    /// Sets a label on `secret` (a test's setup, as psoxy would).
    pub fn set_label(&self, secret: &str, key: &str, value: &str) {
        let mut state = self.state();
        let entry = state.secrets.get_mut(&name(secret)).expect("the secret exists");
        entry.labels.insert(key.to_owned(), value.to_owned());
        entry.etag += 1;
    }

    /// Makes every version of every secret `seconds` older.
    pub fn age_versions(&self, seconds: i64) {
        for secret in self.state().secrets.values_mut() {
            for version in &mut secret.versions {
                version.created -= seconds;
            }
        }
    }

    fn secret<T>(&self, secret: &str, read: impl FnOnce(&Secret) -> T) -> Option<T> {
        self.state().secrets.get(&name(secret)).map(read)
    }
}

fn name(secret: &str) -> String {
    format!("projects/{PROJECT}/secrets/{secret}")
}

fn resolve<'a>(secret: &'a Secret, version: &str) -> Option<&'a Version> {
    let number = match version {
        "latest" => secret.versions.iter().rev().find(|v| v.state == "ENABLED")?.number,
        _ => match version.parse::<u64>() {
            Ok(number) => number,
            Err(_) => *secret.aliases.get(version)?,
        },
    };
    secret.versions.iter().find(|v| v.number == number)
}

fn error(code: u16, status: &str, message: &str) -> Reply {
    Reply::Json(code, json!({"error": {"code": code, "message": message, "status": status}}))
}

/// RFC 3339 in UTC, as Google writes timestamps.
pub fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

fn secret_json(name: &str, secret: &Secret) -> Value {
    let aliases: BTreeMap<&String, String> = secret.aliases.iter().map(|(k, v)| (k, v.to_string())).collect();
    let mut value = json!({
        "name": name,
        "replication": {"automatic": {}},
        "createTime": rfc3339(secret.created),
        "etag": format!("\"{}\"", secret.etag),
    });
    if !secret.labels.is_empty() {
        value["labels"] = json!(secret.labels);
    }
    if !secret.annotations.is_empty() {
        value["annotations"] = json!(secret.annotations);
    }
    if !aliases.is_empty() {
        value["versionAliases"] = json!(aliases);
    }
    value
}

fn version_json(name: &str, version: &Version) -> Value {
    json!({
        "name": format!("{name}/versions/{}", version.number),
        "createTime": rfc3339(version.created),
        "state": version.state,
        "etag": format!("\"{}\"", version.number),
    })
}

fn now() -> i64 {
    crate::common::now()
}

/// The method a request calls, for faults, denials and counts.
fn method_of(http: &str, path: &str) -> &'static str {
    match (http, path) {
        ("POST", p) if p.ends_with(":addVersion") => "AddSecretVersion",
        ("POST", p) if p.ends_with(":destroy") => "DestroySecretVersion",
        ("POST", _) => "CreateSecret",
        ("GET", p) if p.ends_with(":access") => "AccessSecretVersion",
        ("GET", p) if p.ends_with("/versions") => "ListSecretVersions",
        ("GET", p) if p.contains("/versions/") => "GetSecretVersion",
        ("GET", _) => "GetSecret",
        ("PATCH", _) => "UpdateSecret",
        _ => "Unknown",
    }
}

fn permission(method: &str) -> &'static str {
    match method {
        "AddSecretVersion" => "secretmanager.versions.add",
        "DestroySecretVersion" => "secretmanager.versions.destroy",
        "CreateSecret" => "secretmanager.secrets.create",
        "AccessSecretVersion" => "secretmanager.versions.access",
        "ListSecretVersions" => "secretmanager.versions.list",
        "GetSecretVersion" => "secretmanager.versions.get",
        "UpdateSecret" => "secretmanager.secrets.update",
        _ => "secretmanager.secrets.get",
    }
}

fn handle(shared: &Mutex<State>, request: &Request) -> Reply {
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let path = path.strip_prefix("/v1/").unwrap_or(path).to_owned();
    let method = method_of(&request.method, &path);
    if !request.header("authorization").is_some_and(|a| a.starts_with("Bearer ")) {
        return error(401, "UNAUTHENTICATED", "Request is missing required authentication credential.");
    }
    let fault = {
        let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
        if state.refuse_credentials {
            return error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or \
                 other valid authentication credential.",
            );
        }
        if state.denied.as_deref() == Some(method) {
            return error(
                403,
                "PERMISSION_DENIED",
                &format!(
                    "Permission '{}' denied for resource '{path}' (or it may not exist).",
                    permission(method)
                ),
            );
        }
        if state.throttle_until.is_some_and(|until| std::time::Instant::now() < until) {
            state.throttled += 1;
            return error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.");
        }
        let roll = crate::common::next_random(&mut state.random);
        let fault = (roll % 100 < u64::from(state.faults)).then(|| FAULTS[(roll / 100 % 5) as usize]);
        if let Some(fault) = fault {
            *state.injected.entry(fault).or_default() += 1;
        }
        fault.map(|f| (f, state.late))
    };
    match fault {
        Some((Fault::Throttled, _)) => return error(429, "RESOURCE_EXHAUSTED", "Quota exceeded."),
        Some((Fault::Unavailable, _)) => return error(503, "UNAVAILABLE", "The service is unavailable."),
        Some((Fault::Dropped, _)) => return Reply::Hang(Duration::ZERO),
        Some((Fault::Late, late)) => std::thread::sleep(late),
        _ => {}
    }
    let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
    let reply = serve(&mut state, request, &path, query);
    if method == "UpdateSecret"
        && matches!(reply, Reply::Json(200, _))
        && let Some(length) = state.armed.take()
    {
        state.throttle_until = Some(std::time::Instant::now() + length);
    }
    if matches!(fault, Some((Fault::AnswerLost, _))) {
        return Reply::Hang(Duration::ZERO);
    }
    reply
}

fn serve(state: &mut State, request: &Request, path: &str, query: &str) -> Reply {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let (resource, verb) = path.split_once(':').unwrap_or((path, ""));
    let parts: Vec<&str> = resource.split('/').collect();
    if parts.len() < 3 || parts[0] != "projects" || parts[1] != PROJECT || parts[2] != "secrets" {
        return error(404, "NOT_FOUND", &format!("Project or resource {resource} not found."));
    }
    if parts.len() == 3 {
        // POST projects/P/secrets?secretId=ID
        let Some(id) = params.get("secretId").filter(|id| !id.is_empty()) else {
            return error(400, "INVALID_ARGUMENT", "secretId is required.");
        };
        let secret_name = format!("{resource}/{id}");
        if state.secrets.contains_key(&secret_name) {
            return error(409, "ALREADY_EXISTS", &format!("Secret [{secret_name}] already exists."));
        }
        if body["replication"].is_null() {
            return error(400, "INVALID_ARGUMENT", "Secret.replication is required.");
        }
        let labels = string_map(&body["labels"]);
        let secret = Secret { created: now(), etag: 1, labels, ..Secret::default() };
        let answer = secret_json(&secret_name, &secret);
        state.secrets.insert(secret_name, secret);
        return Reply::Json(200, answer);
    }
    let secret_name = parts[..4].join("/");
    let Some(secret) = state.secrets.get_mut(&secret_name) else {
        return error(404, "NOT_FOUND", &format!("Secret [{secret_name}] not found or has no versions."));
    };
    match (request.method.as_str(), parts.len(), verb) {
        ("GET", 4, "") => Reply::Json(200, secret_json(&secret_name, secret)),
        ("PATCH", 4, "") => {
            let mask = params.get("updateMask").cloned().unwrap_or_default();
            if mask.is_empty() {
                return error(400, "INVALID_ARGUMENT", "update_mask is required.");
            }
            let sent = body["etag"].as_str().unwrap_or_default();
            if !sent.is_empty() && sent != format!("\"{}\"", secret.etag) {
                return error(
                    400,
                    "FAILED_PRECONDITION",
                    &format!(
                        "The etag provided in the request does not match the etag of secret [{secret_name}]."
                    ),
                );
            }
            let mut next = secret.clone();
            for field in mask.split(',') {
                match field {
                    "labels" => next.labels = string_map(&body["labels"]),
                    "annotations" => next.annotations = string_map(&body["annotations"]),
                    "versionAliases" | "version_aliases" => {
                        let mut aliases = BTreeMap::new();
                        for (alias, number) in body["versionAliases"].as_object().into_iter().flatten() {
                            let number = number.as_str().and_then(|n| n.parse().ok()).or(number.as_u64());
                            match number.filter(|n| secret.versions.iter().any(|v| v.number == *n)) {
                                Some(number) => aliases.insert(alias.clone(), number),
                                None => return error(400, "INVALID_ARGUMENT", "The alias names no version."),
                            };
                        }
                        next.aliases = aliases;
                    }
                    other => {
                        return error(
                            400,
                            "INVALID_ARGUMENT",
                            &format!("Unknown field in update_mask: {other}"),
                        );
                    }
                }
            }
            next.etag += 1;
            *secret = next;
            let answer = secret_json(&secret_name, secret);
            Reply::Json(200, answer)
        }
        ("POST", 4, "addVersion") => {
            let Some(data) = body["payload"]["data"].as_str() else {
                return error(400, "INVALID_ARGUMENT", "payload.data is required.");
            };
            let Ok(data) = base64::engine::general_purpose::STANDARD.decode(data) else {
                return error(400, "INVALID_ARGUMENT", "payload.data is not base64.");
            };
            if data.len() > 64 * 1024 {
                return error(400, "INVALID_ARGUMENT", "Secret payload cannot exceed 65536 bytes.");
            }
            let version =
                Version { number: secret.versions.len() as u64 + 1, created: now(), state: "ENABLED", data };
            let answer = version_json(&secret_name, &version);
            secret.versions.push(version);
            Reply::Json(200, answer)
        }
        ("GET", 5, "") if parts[4] == "versions" => {
            let filter = params.get("filter").cloned().unwrap_or_default();
            let wanted = filter.strip_prefix("state:").map(str::to_owned);
            let versions: Vec<Value> = secret
                .versions
                .iter()
                .rev()
                .filter(|v| wanted.as_deref().is_none_or(|w| w == v.state))
                .map(|v| version_json(&secret_name, v))
                .collect();
            let total = versions.len();
            Reply::Json(200, json!({"versions": versions, "totalSize": total}))
        }
        ("GET", 6, "access") => {
            let Some(version) = resolve(secret, parts[5]) else {
                return error(404, "NOT_FOUND", &format!("Secret Version [{resource}] not found."));
            };
            if version.state != "ENABLED" {
                return error(
                    400,
                    "FAILED_PRECONDITION",
                    &format!("Secret Version [{resource}] is in {} state.", version.state),
                );
            }
            let data = base64::engine::general_purpose::STANDARD.encode(&version.data);
            Reply::Json(
                200,
                json!({"name": format!("{secret_name}/versions/{}", version.number), "payload": {"data": data}}),
            )
        }
        ("GET", 6, "") => match resolve(secret, parts[5]) {
            Some(version) => Reply::Json(200, version_json(&secret_name, version)),
            None => error(404, "NOT_FOUND", &format!("Secret Version [{resource}] not found.")),
        },
        ("POST", 6, "destroy") => {
            let number = resolve(secret, parts[5]).map(|v| v.number);
            let Some(version) = secret.versions.iter_mut().find(|v| Some(v.number) == number) else {
                return error(404, "NOT_FOUND", &format!("Secret Version [{resource}] not found."));
            };
            version.state = "DESTROYED";
            version.data.clear();
            let answer = version_json(&secret_name, version);
            Reply::Json(200, answer)
        }
        _ => error(404, "NOT_FOUND", &format!("No such method: {} {path}", request.method)),
    }
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

//! The AWS Secrets Manager store: one token family shared by many hosts, rotated by
//! compare-and-set on the secret's versions. `docs/aws-secrets-manager.md` sets out the
//! protocol step by step, with what each failure leaves behind.
//!
//! The compare-and-set is `UpdateSecretVersionStage(AWSCURRENT, MoveToVersionId=new,
//! RemoveFromVersionId=old)`, which fails unless `old` still holds `AWSCURRENT`. Nothing
//! else ever moves `AWSCURRENT`: every `PutSecretValue` names one of our own labels.
//!
//! 1. Read `AWSCURRENT`: a [`Document`] with a generation, the token set, maybe a lease.
//! 2. Fresh enough: use it. Someone else's live lease: use its access token if it is good
//!    enough, else wait for the next generation.
//! 3. Otherwise claim: put a copy with a lease for this host (label `atl-claim`), and promote
//!    it from the version read. Only the winner goes on; a loser reads again.
//! 4. Spend the refresh token, within what is left of the lease.
//! 5. Put the new set as generation + 1 (label `atl-next`, an idempotent put), then promote
//!    it from the claim.
//!
//! Recovery: whoever finds a lease (live or not) or a dead mark on the current version
//! looks for an `atl-next` version one generation ahead, and promotes it. An expired lease
//! is taken over by a new claim. A rejected refresh token is checked against a fresh read
//! before the family is marked dead.

use std::cell::RefCell;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Details, Outcome, Refresh, Slot, Stored, TokenStore, When};
use crate::config::{Config, LEASE_SLACK, SecretSettings};
use crate::exit::{self, Code, Exit};
use crate::safe_path::Access;
use crate::token::Token;

const CURRENT: &str = "AWSCURRENT";
/// After a refresh token is spent, the write of the new set is tried again after this long,
/// doubling up to [`DURABLE_MAX_WAIT`], for as long as the lease lasts.
const DURABLE_FIRST_WAIT: Duration = Duration::from_millis(250);
const DURABLE_MAX_WAIT: Duration = Duration::from_secs(4);
/// Before claiming, a host waits a random part of this and reads again.
const CLAIM_LOOK: Duration = Duration::from_millis(250);
/// A dead mark with this reason was written by `logout`: no local rescue brings it back.
const LOGGED_OUT: &str = "logged out";

/// A lease may end this much later than `ATL_STORE_LEASE` from now (clocks differ a little
/// between hosts) before it is taken to come from a wrong clock.
const FUTURE_LEASE_SLACK: Duration = Duration::from_secs(60);

/// Our label for claims, dead marks and cache updates: versions that keep the generation.
const CLAIM: &str = "atl-claim";
/// Our label for a new token set, one generation ahead, until it is promoted.
const NEXT: &str = "atl-next";
/// The document format, in every version atl-token writes.
const FORMAT: u64 = 1;
/// How often a host waiting for another's refresh reads the secret again.
const POLL: Duration = Duration::from_millis(200);
/// A refresh token is spent early, by a random part of this share of the access token's
/// lifetime (at most [`MAX_JITTER`]), so that a fleet does not refresh all at once.
const JITTER_SHARE: u32 = 10;
const MAX_JITTER: Duration = Duration::from_secs(300);
/// Compare-and-set attempts before a write gives up (each one follows a fresh read).
const WRITE_TRIES: usize = 8;
/// No copy of an access token is larger.
const MAX_COPY: u64 = 1024 * 1024;

/// What the secret holds: a format, a generation, and the token set, a lease or a dead mark.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Document {
    atl_token_store: u64,
    /// Goes up by one with each refresh, and with each new family.
    generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<Lease>,
    /// Why the family cannot be refreshed any more; every host then asks for a login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dead: Option<String>,
}

/// A host's claim to spend the refresh token of a generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    holder: String,
    /// Unix milliseconds.
    until_ms: u64,
}

impl Document {
    fn family(token: &Token, generation: u64) -> Self {
        Self {
            atl_token_store: FORMAT,
            generation,
            token: Some(token.fields().clone()),
            lease: None,
            dead: None,
        }
    }

    fn token(&self) -> Option<Token> {
        self.token.clone().map(Token::from_fields)
    }

    fn text(&self) -> String {
        serde_json::to_string(self).expect("a document serializes")
    }
}

/// The version that holds `AWSCURRENT`, and what it says.
#[derive(Debug, Clone)]
struct Current {
    version_id: String,
    doc: Document,
}

/// A secret in AWS Secrets Manager that holds a token family.
pub struct SecretStore {
    secret_id: String,
    lease: Duration,
    http_timeout: Duration,
    /// This process, in leases: `host:pid:random`.
    holder: String,
    /// Where this host keeps a copy of the access token (never the refresh token).
    cache: PathBuf,
    /// Where this host keeps a new token set until it is in the secret.
    next: PathBuf,
    /// A random share of the jitter, chosen once per process.
    jitter: f64,
    /// Made on first use, so that `print` from the cache builds no runtime or client.
    aws: OnceLock<Aws>,
    /// The last version read, for `status`.
    last: RefCell<Option<Current>>,
}

struct Aws {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Aws {
    /// A runtime of its own and the SDK client. Must not run inside another runtime.
    fn connect(secret_id: &str, timeout: Duration) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let client = runtime.block_on(client(secret_id, timeout))?;
        Ok(Self { runtime, client })
    }
}

impl SecretStore {
    pub fn new(config: &Config, settings: &SecretSettings) -> Result<Self> {
        let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
        let random = uuid::Uuid::new_v4();
        let jitter = random_share();
        Ok(Self {
            secret_id: settings.secret_id.clone(),
            lease: settings.lease,
            http_timeout: config.http_timeout,
            holder: format!("{host}:{}:{}", std::process::id(), &random.simple().to_string()[..8]),
            cache: cache_path(&config.token_file),
            next: sibling(&config.token_file, ".next"),
            jitter,
            aws: OnceLock::new(),
            last: RefCell::new(None),
        })
    }

    fn aws(&self) -> Result<&Aws> {
        if let Some(aws) = self.aws.get() {
            return Ok(aws);
        }
        let (secret_id, timeout) = (self.secret_id.as_str(), self.http_timeout);
        let aws = if tokio::runtime::Handle::try_current().is_err() {
            Aws::connect(secret_id, timeout)?
        } else {
            std::thread::scope(|scope| scope.spawn(|| Aws::connect(secret_id, timeout)).join())
                .map_err(|_| anyhow!("setting up the AWS client panicked"))??
        };
        Ok(self.aws.get_or_init(|| aws))
    }

    /// Runs one SDK call to completion. Inside another runtime (a login), on a thread of
    /// its own, as a runtime cannot be blocked on from within one.
    fn block<T: Send, F: Future<Output = T> + Send>(
        &self,
        call: impl FnOnce(Client) -> F + Send,
    ) -> Result<T> {
        let aws = self.aws()?;
        let client = aws.client.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            return Ok(aws.runtime.block_on(call(client)));
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| aws.runtime.block_on(call(client)))
                .join()
                .map_err(|_| anyhow!("an AWS call panicked"))
        })
    }

    fn what(&self) -> String {
        format!("secret {}", self.secret_id)
    }

    /// The version that holds `AWSCURRENT`, or `None` when the secret does not exist.
    fn read(&self) -> Result<Option<Current>> {
        let id = self.secret_id.clone();
        let answer = self.block(|client| async move {
            client.get_secret_value().secret_id(id).version_stage(CURRENT).send().await
        })?;
        let output = match answer {
            Ok(output) => output,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(self.failed("GetSecretValue", &e)),
        };
        let version_id = output.version_id().unwrap_or_default().to_owned();
        let doc = self.parse(output.secret_string().unwrap_or_default())?;
        let current = Current { version_id, doc };
        *self.last.borrow_mut() = Some(current.clone());
        Ok(Some(current))
    }

    fn read_existing(&self) -> Result<Current> {
        self.read()?.ok_or_else(|| {
            Exit::login_required(format!(
                "{} does not exist: run `atl-token login` (it creates it), or `atl-token store push`",
                self.what()
            ))
            .into()
        })
    }

    fn read_version(&self, version_id: &str) -> Result<Document> {
        let (id, version) = (self.secret_id.clone(), version_id.to_owned());
        let answer = self.block(|client| async move {
            client.get_secret_value().secret_id(id).version_id(version).send().await
        })?;
        let output = answer.map_err(|e| self.failed("GetSecretValue", &e))?;
        self.parse(output.secret_string().unwrap_or_default())
    }

    fn parse(&self, text: &str) -> Result<Document> {
        let doc: Document = serde_json::from_str(text).map_err(|_| {
            Exit::usage(format!(
                "{} does not hold an atl-token family (not the JSON atl-token writes): name another \
                 secret in ATL_STORE, or replace it with `atl-token store push --force`",
                self.what()
            ))
        })?;
        if doc.atl_token_store != FORMAT {
            return Err(Exit::usage(format!(
                "{} was written by a newer atl-token (format {}): upgrade atl-token",
                self.what(),
                doc.atl_token_store
            ))
            .into());
        }
        Ok(doc)
    }

    /// The token set of the current version, or exit 4 when the family is dead or empty.
    fn family(&self, current: &Current) -> Result<Token> {
        if let Some(why) = &current.doc.dead {
            return Err(self.dead(why));
        }
        current.doc.token().ok_or_else(|| {
            Exit::login_required(format!("{} holds no token: run `atl-token login`", self.what())).into()
        })
    }

    /// Writes `doc` as a new version under `label` (never `AWSCURRENT`), idempotently.
    fn put(&self, doc: &Document, label: &'static str) -> Result<String> {
        self.put_once(doc, label, uuid::Uuid::new_v4().to_string())
    }

    /// [`SecretStore::put`] for a token set whose refresh token has been spent: tried again,
    /// with backoff, until `deadline` (the end of this host's lease), with the same
    /// `ClientRequestToken`, so that a write that was applied but whose answer was lost is
    /// not written twice. A few seconds of throttling or 500s must not lose a family.
    fn put_durably(&self, doc: &Document, label: &'static str, deadline: Instant) -> Result<String> {
        let request_token = uuid::Uuid::new_v4().to_string();
        let mut wait = DURABLE_FIRST_WAIT;
        loop {
            match self.put_once(doc, label, request_token.clone()) {
                Ok(version) => return Ok(version),
                Err(e) if Instant::now() + wait < deadline => {
                    crate::http::log(|| format!("{e:#}; writing again in {}", crate::http::human_ms(wait)));
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(DURABLE_MAX_WAIT);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn put_once(&self, doc: &Document, label: &'static str, request_token: String) -> Result<String> {
        let (id, text) = (self.secret_id.clone(), doc.text());
        let answer = self.block(|client| async move {
            client
                .put_secret_value()
                .secret_id(id)
                .secret_string(text)
                .client_request_token(request_token)
                .version_stages(label)
                .send()
                .await
        })?;
        let output = answer.map_err(|e| self.failed("PutSecretValue", &e))?;
        output.version_id().map(str::to_owned).ok_or_else(|| anyhow!("PutSecretValue returned no version id"))
    }

    /// Moves `AWSCURRENT` to `to` if `from` still holds it. Any error means "maybe not":
    /// the caller reads again rather than parse the message.
    fn promote(&self, to: &str, from: &str) -> Result<bool> {
        let (id, target, source) = (self.secret_id.clone(), to.to_owned(), from.to_owned());
        let answer = self.block(|client| async move {
            client
                .update_secret_version_stage()
                .secret_id(id)
                .version_stage(CURRENT)
                .move_to_version_id(target)
                .remove_from_version_id(source)
                .send()
                .await
        })?;
        match answer {
            Ok(_) => Ok(true),
            Err(e) => match self.read()? {
                Some(current) if current.version_id == to => Ok(true),
                // Another version was promoted meanwhile: lost.
                Some(current) if current.version_id != from => Ok(false),
                // Nothing moved, so the call itself failed (a policy without
                // UpdateSecretVersionStage, say): trying again would only write more versions.
                _ => Err(self.failed("UpdateSecretVersionStage", &e)),
            },
        }
    }

    /// Promotes a version labelled `atl-next` one generation ahead of the current one,
    /// written by a host that refreshed and then stopped (or lost its lease) before promoting
    /// it. Returns whether there was one.
    fn recover(&self, current: &Current) -> Result<bool> {
        let Some(next) = self.unpromoted_next(current)? else { return Ok(false) };
        self.promote(&next, &current.version_id)?;
        Ok(true)
    }

    fn unpromoted_next(&self, current: &Current) -> Result<Option<String>> {
        let id = self.secret_id.clone();
        let answer =
            self.block(|client| async move { client.describe_secret().secret_id(id).send().await })?;
        let output = answer.map_err(|e| self.failed("DescribeSecret", &e))?;
        let next = output.version_ids_to_stages().and_then(|versions| {
            versions.iter().find(|(_, labels)| labels.iter().any(|l| l == NEXT)).map(|(v, _)| v.clone())
        });
        let Some(next) = next.filter(|v| *v != current.version_id) else { return Ok(None) };
        let doc = self.read_version(&next)?;
        let ahead = doc.generation == current.doc.generation + 1 && doc.token.is_some();
        Ok(ahead.then_some(next))
    }

    /// Whether another host's `lease` still holds at `now` (Unix ms). A lease that ends
    /// further ahead than this host's `ATL_STORE_LEASE` plus a minute could not have been
    /// taken with the settings a fleet shares: a host with a wrong clock (or a hand) wrote
    /// it, and waiting for it would stop every host. It counts as expired, and this says so.
    fn is_live(&self, lease: &Lease, now: u64) -> bool {
        if lease.until_ms <= now {
            return false;
        }
        let furthest = now.saturating_add(millis(self.lease + FUTURE_LEASE_SLACK));
        if lease.until_ms > furthest {
            eprintln!(
                "atl-token: warning: {} holds a lease by {} until {}, further ahead than a lease of {} \
                 can reach: that host's clock is wrong, or the lease was written by hand. It is \
                 treated as expired",
                self.what(),
                crate::text::one_line(&lease.holder),
                crate::health::rfc3339(lease.until_ms / 1000),
                crate::duration::human(self.lease)
            );
            return false;
        }
        true
    }

    /// Keeps a new token set on this host (`token.json.next`, 0600, on disk before anything
    /// else happens), from the moment the server's answer arrives until it is in the secret.
    fn keep_next(&self, doc: &Document) -> Result<()> {
        let kept = json!({"secret": self.secret_id, "document": doc});
        write_private(&self.next, &serde_json::to_vec(&kept).expect("JSON"), true)
    }

    /// Hands over a token set this host kept but could not write to the secret: when the
    /// secret still holds the generation it came from, under a lease or a dead mark (not a
    /// logout), it is written as the next version and promoted by the usual recovery.
    /// Returns whether the secret changed. A kept set the secret has moved past is removed.
    fn hand_over(&self, current: &Current) -> Result<bool> {
        let kept: Option<Document> = read_own(&self.next, "kept token set", &self.secret_id)?
            .and_then(|k| serde_json::from_value(k["document"].clone()).ok());
        let Some(doc) = kept else { return Ok(false) };
        if doc.generation <= current.doc.generation {
            let _ = fs::remove_file(&self.next);
            return Ok(false);
        }
        let logged_out = current.doc.dead.as_deref().is_some_and(|why| why.starts_with(LOGGED_OUT));
        let stranded = current.doc.lease.is_some() || (current.doc.dead.is_some() && !logged_out);
        if doc.generation != current.doc.generation + 1 || !stranded {
            return Ok(false);
        }
        self.put_durably(&doc, NEXT, Instant::now() + self.lease)?;
        let handed = self.recover(current)?;
        if handed {
            let _ = fs::remove_file(&self.next);
            eprintln!(
                "atl-token: note: an earlier run here could not write its new token set to {}; it is \
                 there now",
                self.what()
            );
        }
        Ok(handed)
    }

    /// How long before expiry this host refreshes, for a token set that must be valid for
    /// `margin`: a bit earlier than the others, at random.
    fn margin(&self, margin: Duration, token: &Token) -> Duration {
        margin + spread(token).mul_f64(self.jitter)
    }

    /// Keeps this host's copy of the access token (the refresh token left out), 0600.
    fn keep_copy(&self, current: &Current) {
        let Some(mut token) = current.doc.token.clone() else {
            let _ = fs::remove_file(&self.cache);
            return;
        };
        token.remove("refresh_token");
        let copy = json!({"secret": self.secret_id, "generation": current.doc.generation, "token": token});
        if let Err(e) = write_private(&self.cache, &serde_json::to_vec(&copy).expect("JSON"), false) {
            eprintln!("atl-token: warning: cannot keep the access token in {}: {e:#}", self.cache.display());
        }
    }

    /// Saves a new family (a login or a push) as the next generation, whatever the current
    /// version holds. Creates the secret if it does not exist.
    fn install_family(&self, token: &Token) -> Result<()> {
        if self.read()?.is_none() {
            let doc = Document::family(token, 1);
            // Another host may create it first: then this family replaces that one.
            if let Some(version_id) = self.create(&doc)? {
                self.keep_copy(&Current { version_id, doc });
                return Ok(());
            }
        }
        let written = self.rewrite(&mut |current| Ok(Document::family(token, current.doc.generation + 1)))?;
        self.keep_copy(&written);
        Ok(())
    }

    /// Creates the secret holding `doc`, and returns its version; `None` if another host
    /// created it first.
    fn create(&self, doc: &Document) -> Result<Option<String>> {
        let (id, text) = (self.secret_id.clone(), doc.text());
        let request_token = uuid::Uuid::new_v4().to_string();
        let answer = self.block(|client| async move {
            client
                .create_secret()
                .name(id)
                .secret_string(text)
                .client_request_token(request_token)
                .send()
                .await
        })?;
        match answer {
            Ok(output) => Ok(Some(output.version_id().unwrap_or_default().to_owned())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_exists_exception()) => Ok(None),
            Err(e) => Err(self.failed("CreateSecret", &e)),
        }
    }

    /// Writes `change(current)` as the current version, by compare-and-set, reading again
    /// after each lost race.
    fn rewrite(&self, change: &mut dyn FnMut(&Current) -> Result<Document>) -> Result<Current> {
        for _ in 0..WRITE_TRIES {
            let current = self.read_existing()?;
            let doc = change(&current)?;
            let version = self.put(&doc, CLAIM)?;
            if self.promote(&version, &current.version_id)? {
                return Ok(Current { version_id: version, doc });
            }
        }
        Err(self.busy())
    }

    /// After a promote from `claim` fails, the new set (`next`, one generation ahead) still
    /// wins over any version of the generation it was built on.
    fn promote_next(&self, next: &Current, claim: &str) -> Result<Current> {
        let mut from = claim.to_owned();
        for _ in 0..WRITE_TRIES {
            if self.promote(&next.version_id, &from)? {
                return Ok(next.clone());
            }
            let current = self.read_existing()?;
            if current.doc.generation >= next.doc.generation {
                // Another host's refresh of the same generation was promoted first (on Cloud,
                // where a refresh token may be used twice within a grace period): use it.
                return Ok(current);
            }
            from = current.version_id;
        }
        Err(self.busy())
    }

    /// The server rejected the refresh token of `generation`, spent under our claim. Another
    /// host may have rotated it: read again. Only if nothing newer exists is the family marked
    /// dead. Returns `Ok(())` when there is something newer to use.
    fn after_rejection(&self, generation: u64) -> Result<()> {
        let current = self.read_existing()?;
        if current.doc.generation > generation {
            return Ok(());
        }
        if self.recover(&current)? {
            return Ok(());
        }
        let why = format!(
            "the server rejected its refresh token at {} (seen by {}), and no host had rotated it",
            crate::health::rfc3339(crate::token::now()),
            self.holder
        );
        let dead = Document {
            atl_token_store: FORMAT,
            generation: current.doc.generation,
            token: None,
            lease: None,
            dead: Some(why.clone()),
        };
        let version = self.put(&dead, CLAIM)?;
        if !self.promote(&version, &current.version_id)? {
            // Something changed meanwhile: look again.
            return Ok(());
        }
        let error = self.dead(&why);
        self.keep_copy(&Current { version_id: version, doc: dead });
        Err(error)
    }

    /// Exit 4 for a family marked dead, with the reason.
    fn dead(&self, why: &str) -> anyhow::Error {
        Exit::login_required(format!(
            "the token family in {} is dead: {why}. Run `atl-token login` on one host; every host \
             then uses the new family",
            self.what()
        ))
        .into()
    }

    fn busy(&self) -> anyhow::Error {
        anyhow!(
            "{} changed {WRITE_TRIES} times while atl-token tried to write it: too many hosts are writing \
             at once; try again",
            self.what()
        )
    }

    /// One sentence for a failed AWS call: the operation, the secret, and AWS's error code and
    /// message (or what kept the call from AWS), with what to check. The SDK's full debug
    /// form, a few KiB, goes to `-v`.
    fn failed<E>(&self, action: &str, error: &SdkError<E, HttpResponse>) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        crate::http::log(|| format!("AWS {action} failed: {error:?}"));
        let service = error.as_service_error();
        // An answer the SDK could not read (moto's XML for a bad signature, say) still names
        // its code and message.
        let raw = error.raw_response().and_then(|r| r.body().bytes()).map(String::from_utf8_lossy);
        let tag = |name: &str| {
            let text = raw.as_deref()?;
            let start = text.find(&format!("<{name}>"))? + name.len() + 2;
            Some(text[start..].split('<').next()?.to_owned())
        };
        let (raw_code, raw_message) = (tag("Code"), tag("Message"));
        let code = service.and_then(ProvideErrorMetadata::code).or(raw_code.as_deref()).unwrap_or_default();
        let hint = match code {
            "AccessDeniedException" => {
                " (the IAM policy must allow it on this secret: see the README's \"Many hosts\" section)"
            }
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch" => {
                " (AWS refused the credentials: check AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            }
            _ => "",
        };
        let detail = match (service, error) {
            (Some(service), _) => {
                let message = service.message().or(raw_message.as_deref());
                let message = message.map(|m| format!(": {m}")).unwrap_or_default();
                format!("{}{message}", if code.is_empty() { "an error with no code" } else { code })
            }
            (None, SdkError::TimeoutError(_)) => "no answer in time".to_owned(),
            (None, SdkError::DispatchFailure(_)) => {
                format!("AWS could not be reached ({})", root_cause(error))
            }
            (None, SdkError::ResponseError(_)) => {
                format!("its answer could not be read ({})", root_cause(error))
            }
            (None, _) => root_cause(error),
        };
        anyhow!("AWS Secrets Manager {action} on {} failed: {detail}{hint}", self.secret_id)
    }
}

/// The innermost cause of an error, in its own words: "Connection refused (os error 111)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl TokenStore for SecretStore {
    fn location(&self) -> String {
        self.what()
    }

    fn load(&self) -> Result<Option<Stored>> {
        let Some(current) = self.read()? else { return Ok(None) };
        self.keep_copy(&current);
        let token = self.family(&current)?;
        Ok(Some(stored(token)))
    }

    /// This host's copy of the access token, when it is a copy of this secret's family.
    fn peek(&self) -> Result<Option<Stored>> {
        Ok(read_copy(&self.cache, &self.secret_id, self.jitter)?.map(stored))
    }

    fn reserve(&self) -> Result<Box<dyn Slot + '_>> {
        // Proves that the credentials work and the secret can be read (or does not exist yet),
        // before the user goes through the browser.
        if let Some(current) = self.read()? {
            self.keep_copy(&current);
        }
        Ok(Box::new(SecretSlot { store: self }))
    }

    fn refresh(&self, refresh: Refresh<'_>) -> Result<Outcome> {
        let give_up = Instant::now() + self.lease * 3;
        let mut started_at = None;
        let mut lost_claims = 0;
        let mut looked = false;
        loop {
            let current = self.read_existing()?;
            let started_at = *started_at.get_or_insert(current.doc.generation);
            if (current.doc.lease.is_some() || current.doc.dead.is_some()) && self.recover(&current)? {
                continue;
            }
            if self.hand_over(&current)? {
                continue;
            }
            let token = self.family(&current)?;
            (refresh.check)(&token)?;
            let remaining = token.remaining(crate::token::clock(), None);
            let needed = match refresh.when {
                When::Always => None,
                When::ExpiresWithin(margin) => Some(margin),
            };
            if current.doc.generation > started_at
                && current.doc.lease.is_none()
                && needed.is_none_or(|margin| remaining >= margin)
            {
                // Another host refreshed while this one waited: that is the refresh asked for,
                // if it left enough time (it may have been slow to write it).
                self.keep_copy(&current);
                return Ok(Outcome::StillValid { token, remaining });
            }
            if let Some(margin) = needed
                && remaining >= self.margin(margin, &token)
            {
                self.keep_copy(&current);
                return Ok(Outcome::StillValid { token, remaining });
            }
            let now = now_ms();
            if let Some(lease) = current.doc.lease.as_ref().filter(|l| self.is_live(l, now)) {
                // Another host is refreshing: its access token may do; else wait for its result.
                if let Some(margin) = needed
                    && remaining >= margin
                {
                    self.keep_copy(&current);
                    return Ok(Outcome::StillValid { token, remaining });
                }
                if Instant::now() > give_up {
                    return Err(anyhow!(
                        "{} has been claimed for a refresh by {} for too long; try again later",
                        self.what(),
                        lease.holder
                    ));
                }
                std::thread::sleep(POLL);
                continue;
            }

            // Look before claiming: after a random pause, read again, so that of the hosts
            // that found the token due at the same moment, most see another's claim and wait
            // rather than each write a claim version (the secret keeps only 100 unlabelled).
            if !looked {
                looked = true;
                std::thread::sleep(CLAIM_LOOK.mul_f64(random_share()));
                continue;
            }
            // Claim the generation: only the host whose claim is promoted spends the token.
            let generation = current.doc.generation;
            let mut claim = current.doc.clone();
            claim.lease = Some(Lease { holder: self.holder.clone(), until_ms: now + millis(self.lease) });
            let lease_ends = Instant::now() + self.lease - LEASE_SLACK;
            let claim_version = self.put(&claim, CLAIM)?;
            if !self.promote(&claim_version, &current.version_id)? {
                lost_claims += 1;
                if lost_claims >= WRITE_TRIES {
                    return Err(self.busy());
                }
                continue;
            }
            pause_for_tests("claimed");
            let budget = self.lease.saturating_sub(self.http_timeout + LEASE_SLACK);
            let spent = (refresh.spend)(&token, budget);
            let new = match spent {
                Ok(new) => new,
                Err(e) if exit::code_for(&e) == Code::LoginRequired => {
                    self.after_rejection(generation)?;
                    continue;
                }
                // The lease runs out, and another host takes over: see the protocol.
                Err(e) => return Err(e),
            };
            let doc = Document::family(&new, generation + 1);
            // Kept here first: a host that cannot write the secret hands it over next time.
            let kept = self.keep_next(&doc);
            pause_for_tests("answered");
            let next_version = self.put_durably(&doc, NEXT, lease_ends).with_context(|| {
                let rescue = match &kept {
                    Ok(()) => format!(
                        "it is kept in {}, and the next run on this host writes it there",
                        self.next.display()
                    ),
                    Err(e) => format!("and it could not be kept on this host either ({e:#})"),
                };
                format!(
                    "the new token set could not be written to {}, though the server has rotated the \
                     refresh token: {rescue}. Run `atl-token refresh` here again soon",
                    self.what()
                )
            })?;
            pause_for_tests("put");
            let next = Current { version_id: next_version, doc };
            let installed = self.promote_next(&next, &claim_version)?;
            let _ = fs::remove_file(&self.next);
            self.keep_copy(&installed);
            let token = self.family(&installed)?;
            return Ok(Outcome::Refreshed(token));
        }
    }

    fn update(&self, change: &mut dyn FnMut(Token) -> Token) -> Result<Token> {
        let written = self.rewrite(&mut |current| {
            let token = self.family(current)?;
            let mut doc = current.doc.clone();
            doc.token = Some(change(token).fields().clone());
            Ok(doc)
        })?;
        self.keep_copy(&written);
        self.family(&written)
    }

    /// Marks the family logged out (every host then asks for a login), and deletes this
    /// host's copy of the access token. The secret itself stays, for the next login.
    fn remove(&self, before: &mut dyn FnMut(&Stored) -> Result<()>) -> Result<Option<Vec<String>>> {
        let Some(current) = self.read()? else { return Ok(None) };
        let Some(token) = current.doc.token() else { return Ok(None) };
        if current.doc.dead.is_some() {
            return Ok(None);
        }
        before(&stored(token))?;
        let why =
            format!("{LOGGED_OUT} at {} by {}", crate::health::rfc3339(crate::token::now()), self.holder);
        self.rewrite(&mut |current| {
            Ok(Document {
                atl_token_store: FORMAT,
                generation: current.doc.generation + 1,
                token: None,
                lease: None,
                dead: Some(why.clone()),
            })
        })?;
        let mut removed = vec![format!("the token family in {} (marked logged out)", self.what())];
        if fs::remove_file(&self.cache).is_ok() {
            removed.push(self.cache.display().to_string());
        }
        Ok(Some(removed))
    }

    fn details(&self) -> Result<Details> {
        let current = match self.last.borrow().clone() {
            Some(current) => current,
            None => self.read_existing()?,
        };
        let now = now_ms();
        let lease = current.doc.lease.as_ref().map(|l| {
            let until = crate::health::rfc3339(l.until_ms / 1000);
            let live = self.is_live(l, now);
            let state = if live { "held" } else { "expired" };
            (
                json!({"holder": l.holder, "until": until, "live": live}),
                format!("{state} by {} until {until}", l.holder),
            )
        });
        let (lease_json, lease_line) = lease.unwrap_or((Value::Null, "none".to_owned()));
        Ok(Details {
            json: (
                "store",
                json!({
                    "kind": crate::config::AWS_SECRETS_MANAGER,
                    "secret": self.secret_id,
                    "version_id": current.version_id,
                    "generation": current.doc.generation,
                    "lease": lease_json,
                    "access_token_copy": self.cache.display().to_string(),
                }),
            ),
            lines: vec![
                ("store", format!("AWS Secrets Manager, {}", self.secret_id)),
                ("generation", format!("{} (version {})", current.doc.generation, current.version_id)),
                ("lease", lease_line),
            ],
        })
    }
}

/// A login's or a push's way into the secret.
struct SecretSlot<'a> {
    store: &'a SecretStore,
}

impl Slot for SecretSlot<'_> {
    fn commit(self: Box<Self>, token: &Token) -> Result<()> {
        self.store.install_family(token)
    }
}

/// The SDK client, from the standard AWS settings (`AWS_REGION`, `AWS_PROFILE`,
/// `AWS_ENDPOINT_URL`, …), with HTTPS through rustls and ring, and every call bounded.
async fn client(secret_id: &str, timeout: Duration) -> Result<Client> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeout / 2)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout * 2)
        .build();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts)
        .load()
        .await;
    if sdk.region().is_some() {
        return Ok(Client::new(&sdk));
    }
    // An ARN names its region: use it when the settings name none.
    let Some(region) = secret_id.strip_prefix("arn:").and_then(|rest| rest.split(':').nth(2)) else {
        return Err(Exit::usage(
            "no AWS region for the secret: set AWS_REGION (or a region in the AWS_PROFILE's config), \
             or give the secret's ARN in ATL_STORE",
        )
        .into());
    };
    let config = aws_sdk_secretsmanager::config::Builder::from(&sdk)
        .region(aws_config::Region::new(region.to_owned()))
        .build();
    Ok(Client::from_conf(config))
}

/// A token set from the secret: its bytes are its own JSON, and its expiry is recorded.
fn stored(token: Token) -> Stored {
    Stored { bytes: token.to_bytes(), token, written_at: None }
}

fn not_found<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ResourceNotFoundException")
}

/// Beside where the token file would be: `token.json.access`.
/// How much earlier than its expiry a host may refresh a token set: a share of its lifetime.
fn spread(token: &Token) -> Duration {
    token.lifetime().map_or(Duration::ZERO, |l| (l / JITTER_SHARE).min(MAX_JITTER))
}

/// The copy of the access token at `cache`, if it is a copy of `secret_id`'s family, seen
/// as expiring `jitter`'s share of the spread early, so that the hosts of a fleet go to the
/// secret, and refresh, at different moments. Read as the token file is: never through a
/// link, never another user's file.
fn read_copy(cache: &std::path::Path, secret_id: &str, jitter: f64) -> Result<Option<Token>> {
    let Some(copy) = read_own(cache, "access token copy", secret_id)? else { return Ok(None) };
    let Some(Value::Object(mut fields)) = copy.get("token").cloned() else { return Ok(None) };
    let early = spread(&Token::from_fields(fields.clone())).mul_f64(jitter).as_secs();
    if let Some(at) = fields.get(crate::token::EXPIRES_AT).and_then(Value::as_u64) {
        fields.insert(crate::token::EXPIRES_AT.to_owned(), at.saturating_sub(early).into());
    }
    Ok(Some(Token::from_fields(fields)))
}

/// A file this host keeps for `secret_id` (`{"secret": …, …}`), read as the token file is:
/// never through a link, never another user's file. `None` when there is none, or it is for
/// another secret or not JSON.
fn read_own(path: &std::path::Path, what: &str, secret_id: &str) -> Result<Option<Value>> {
    let Some(opened) = crate::safe_path::open(path, Access::Read, what)? else { return Ok(None) };
    let bytes = crate::safe_path::read_limited(opened, path, MAX_COPY, what)?;
    Ok(serde_json::from_slice::<Value>(&bytes).ok().filter(|kept| kept["secret"] == secret_id))
}

/// A number in [0, 1) drawn for this process: its share of the jitter and of the pause
/// before a claim.
fn random_share() -> f64 {
    f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 256.0
}

/// For the hot path: this host's copy of `secret_id`'s access token beside `token_file`,
/// with a jitter of this process's own, as [`SecretStore::peek`] reads it.
pub fn fresh_copy(token_file: &std::path::Path, secret_id: &str) -> Option<Token> {
    read_copy(&cache_path(token_file), secret_id, random_share()).ok()?
}

fn cache_path(token_file: &std::path::Path) -> PathBuf {
    sibling(token_file, ".access")
}

/// `token.json` + `suffix`, beside it.
fn sibling(token_file: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = token_file.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    token_file.with_file_name(name)
}

/// Replaces `path` with `bytes`, mode 0600, through a temp file and a rename; with
/// `durable`, on disk (file and folder synced) before it returns.
fn write_private(path: &std::path::Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = crate::safe_path::folder_of(path);
    if !dir.exists() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let mut file = tempfile::Builder::new()
        .prefix(".atl-token-access.")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    if durable {
        file.as_file().sync_all()?;
    }
    file.persist(path)?;
    if durable {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, millis)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Set in the environment of a debug build, this stops the refresh at a named step
/// (`claimed`, `answered`, `put`) until the process is killed, so that a test can crash it
/// there, or (`answered+2500ms`) for a while, so that a test can make it slow. Release
/// builds do not contain the switch.
fn pause_for_tests(step: &str) {
    #[cfg(debug_assertions)]
    if let Ok(at) = std::env::var("ATL_TOKEN_TEST_ONLY_PAUSE_AT") {
        // `step`: until killed; `step+2500ms`: that long, then on.
        let (name, pause) = at.split_once('+').map_or((at.as_str(), None), |(n, d)| (n, Some(d)));
        if name == step {
            eprintln!("atl-token: test: paused after step {step}");
            match pause.and_then(|d| crate::duration::parse(d).ok()) {
                Some(pause) => std::thread::sleep(pause),
                None => loop {
                    std::thread::sleep(Duration::from_secs(60));
                },
            }
        }
    }
    let _ = step;
}

//! The protocol by which a fleet of hosts shares one token family in a store that many can
//! write, written once over a small compare-and-set primitive ([`Cas`]) that each backend
//! implements. `docs/shared-store.md` sets it out step by step, with what each crash and
//! fault leaves behind, and how each backend maps onto the primitive.
//!
//! 1. Read the current [`Document`]: a generation, the token set, maybe a lease.
//! 2. Recover: a lease or a dead mark may hide a new set that was written but not made
//!    current ([`Cas::unfinished`]), or that this host kept ([`Kept`]): make it current.
//! 3. Fresh enough: use it. Someone else's live lease: use its access token if it is good
//!    enough, else wait for the next generation.
//! 4. Otherwise look again after a random pause, then claim: swap in a copy with a lease for
//!    this process. Only the winner goes on; a loser reads again.
//! 5. Spend the refresh token, within what is left of the lease.
//! 6. Keep the new set on this host, then swap it in as generation + 1, trying again until
//!    the lease ends.
//!
//! A rejected refresh token is checked against a fresh read before the family is marked
//! dead. A fault of the store (throttling, a 500, a dropped connection, no answer in time)
//! before the spend is tried again for a while; after the spend, until the lease ends.

use std::cell::RefCell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::kept::{self, Kept};
use super::{Details, Outcome, Refresh, Slot, Stored, TokenStore, When};
use crate::config::{Config, LEASE_SLACK, SecretSettings};
use crate::exit::{self, Code, Exit};
use crate::token::Token;

/// A dead mark that starts so was written by `logout`, and a kept set never undoes it.
const LOGGED_OUT: &str = "logged out";
/// A lease further ahead than this host's own lease plus this was not taken with the
/// fleet's settings (a wrong clock, or a hand): it is not honoured.
const FUTURE_LEASE_SLACK: Duration = Duration::from_secs(60);
const FORMAT: u64 = 1;
/// How soon a host waiting for another's refresh reads again: first after this, then twice
/// as long each time, up to [`MAX_POLL`], so that a fleet waiting together does not flood
/// the store with reads (moto's server, standing in for Secrets Manager, fell behind under
/// 15 processes reading five times a second each).
const POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(1);
/// The longest random pause before a claim, after which the store is read again.
const CLAIM_LOOK: Duration = Duration::from_millis(250);
/// Compare-and-set races lost in a row before giving up.
const WRITE_TRIES: usize = 8;
/// How long faults of the store in a row are tried again before a spend.
const FAULT_BUDGET: Duration = Duration::from_secs(10);
/// The waits between tries after a fault: doubling from the first to the most.
const FIRST_WAIT: Duration = Duration::from_millis(250);
const MAX_WAIT: Duration = Duration::from_secs(4);

/// A document as a backend holds it, and the version that holds it.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub version: String,
    pub text: String,
}

/// What a write is for, so that a backend can label it (AWS: `atl-claim`, `atl-next`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A lease, a dead mark, or a change that spends nothing.
    Claim,
    /// A new generation from a spent refresh token.
    Next,
}

/// One write: the document, what it is for, and a key that stays the same across the tries
/// of the same write, so that a write applied whose answer was lost is not applied twice.
pub struct Write<'a> {
    pub text: &'a str,
    /// Vault's one-step write needs neither: it has no labels, and reads again instead.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub purpose: Purpose,
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub key: &'a str,
}

/// Whether a swap made its document current.
#[derive(Debug)]
pub enum Swapped {
    Won(String),
    /// Another write came first: the expected version is no longer current.
    Lost,
}

/// A fault of the store that may pass if tried again: throttling, a 5xx, a dropped
/// connection, no answer in time. Backends wrap such errors in it.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

fn unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<Unavailable>())
}

/// The compare-and-set primitive a shared store is built on.
pub trait Cas {
    /// For messages: `secret team/jira`.
    fn what(&self) -> String;
    /// For the files this host keeps: the same for every host of the fleet.
    fn id(&self) -> &str;
    /// `ATL_STORE`'s kind and a title, for `status`.
    fn kind(&self) -> (&'static str, &'static str);
    /// The current document and its version, or `None` when the store holds none.
    fn read(&self) -> Result<Option<Versioned>>;
    /// Creates the store holding `write`; `Ok(None)` when it exists already.
    fn create(&self, write: &Write<'_>) -> Result<Option<String>>;
    /// Makes `write` the current document if `expected` is still the current version.
    /// A backend whose write takes two steps (write a version, then point at it) keeps the
    /// first step where [`Cas::unfinished`] finds it. A swap whose outcome is unknown (the
    /// answer lost) reads again to find out; an error means it did not happen.
    fn swap(&self, expected: &str, write: &Write<'_>) -> Result<Swapped>;
    /// Documents written but not made current (a host stopped between the two steps of a
    /// swap), newest first, if the backend can have them: the protocol makes current the
    /// first that is the next generation. A backend that can tell a [`Purpose::Next`] write
    /// from a claim (AWS, by its label) gives only that one.
    fn unfinished(&self, current: &str) -> Result<Vec<Versioned>>;
    /// Makes an [`Cas::unfinished`] document current if `expected` still is.
    fn finish(&self, unfinished: &str, expected: &str) -> Result<bool>;
}

/// What the store holds: a format, a generation, and the token set, a lease or a dead mark.
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
        Self::new(generation, Some(token.fields().clone()), None)
    }

    fn dead(generation: u64, why: String) -> Self {
        Self::new(generation, None, Some(why))
    }

    fn new(generation: u64, token: Option<Map<String, Value>>, dead: Option<String>) -> Self {
        Self { atl_token_store: FORMAT, generation, token, lease: None, dead }
    }

    fn token(&self) -> Option<Token> {
        self.token.clone().map(Token::from_fields)
    }

    fn text(&self) -> String {
        serde_json::to_string(self).expect("a document serializes")
    }

    fn logged_out(&self) -> bool {
        self.dead.as_deref().is_some_and(|why| why.starts_with(LOGGED_OUT))
    }
}

/// The current version, and what it says.
#[derive(Debug, Clone)]
struct Current {
    version: String,
    doc: Document,
}

/// A token family in a store shared by many hosts.
pub struct SharedStore {
    backend: Box<dyn Cas>,
    lease: Duration,
    http_timeout: Duration,
    /// This process, in leases: `host:pid:random`.
    holder: String,
    kept: Kept,
    /// A random share of the jitter, chosen once per process.
    jitter: f64,
    /// The last version read, for `status`.
    last: RefCell<Option<Current>>,
}

/// Where a refresh has got to, between its steps.
struct Progress {
    /// The generation first read.
    started_at: Option<u64>,
    lost_claims: usize,
    looked: bool,
    /// Reads made while another host held the lease.
    polls: u32,
    /// Whether a refresh token has been spent (then faults are not tried again here: the
    /// durable write has done that).
    spent: bool,
}

impl SharedStore {
    pub fn new(config: &Config, settings: &SecretSettings, backend: Box<dyn Cas>) -> Self {
        let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self {
            kept: Kept::new(&config.token_file, backend.id()),
            backend,
            lease: settings.lease,
            http_timeout: config.http_timeout,
            holder: format!("{host}:{}:{}", std::process::id(), &random[..8]),
            jitter: kept::random_share(),
            last: RefCell::new(None),
        }
    }

    fn what(&self) -> String {
        self.backend.what()
    }

    fn read(&self) -> Result<Option<Current>> {
        let Some(read) = self.backend.read()? else { return Ok(None) };
        let current = Current { doc: self.parse(&read.text)?, version: read.version };
        *self.last.borrow_mut() = Some(current.clone());
        Ok(Some(current))
    }

    fn read_existing(&self) -> Result<Current> {
        self.read()?.ok_or_else(|| self.missing())
    }

    fn missing(&self) -> anyhow::Error {
        Exit::login_required(format!(
            "{} does not exist: run `atl-token login` (it creates it), or `atl-token store push`",
            self.what()
        ))
        .into()
    }

    fn parse(&self, text: &str) -> Result<Document> {
        let doc: Document = serde_json::from_str(text).map_err(|_| {
            Exit::usage(format!(
                "{} does not hold an atl-token family (not the JSON atl-token writes): name another \
                 one in ATL_STORE, or replace it with `atl-token store push --force`",
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

    /// Swaps `doc` in for `expected`, once, with a key of its own.
    fn swap(&self, expected: &str, doc: &Document, purpose: Purpose) -> Result<Swapped> {
        let (text, key) = (doc.text(), uuid::Uuid::new_v4().to_string());
        self.backend.swap(expected, &Write { text: &text, purpose, key: &key })
    }

    /// Makes `doc`, a generation built on a refresh token already spent, current: tried
    /// again with backoff until `deadline` (the end of this host's lease), with the same key.
    /// A version of an older generation that came first (a claim after this host's lease ran
    /// out, or a dead mark) is replaced; one of the same generation or newer (on Cloud,
    /// another host that reused the token within the grace period; a new login) is used.
    fn swap_durably(&self, expected: &str, doc: Document, deadline: Instant) -> Result<Current> {
        let (text, key) = (doc.text(), uuid::Uuid::new_v4().to_string());
        let write = Write { text: &text, purpose: Purpose::Next, key: &key };
        let mut expected = expected.to_owned();
        let mut wait = FIRST_WAIT;
        let mut lost = 0;
        loop {
            let tried = self.backend.swap(&expected, &write).and_then(|swapped| match swapped {
                Swapped::Won(version) => Ok(Some(Current { version, doc: doc.clone() })),
                Swapped::Lost => {
                    let current = self.read_existing()?;
                    if current.doc.generation >= doc.generation {
                        return Ok(Some(current));
                    }
                    expected = current.version;
                    lost += 1;
                    if lost >= WRITE_TRIES {
                        return Err(self.busy());
                    }
                    Ok(None)
                }
            });
            match tried {
                Ok(Some(current)) => return Ok(current),
                Ok(None) => {}
                Err(e) if Instant::now() + wait < deadline && !is_final(&e) => {
                    crate::http::log(|| format!("{e:#}; writing again in {}", crate::http::human_ms(wait)));
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(MAX_WAIT);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes `change(current)` as the current version, reading again after each lost race.
    fn rewrite(&self, change: &mut dyn FnMut(&Current) -> Result<Document>) -> Result<Current> {
        for _ in 0..WRITE_TRIES {
            let current = self.read_existing()?;
            let doc = change(&current)?;
            if let Swapped::Won(version) = self.swap(&current.version, &doc, Purpose::Claim)? {
                return Ok(Current { version, doc });
            }
        }
        Err(self.busy())
    }

    /// Makes current a new generation hidden behind a lease or a dead mark: one this host
    /// kept but could not write, or one a host wrote but did not make current. Returns
    /// whether the store changed.
    fn recover(&self, current: &Current) -> Result<bool> {
        if current.doc.lease.is_none() && current.doc.dead.is_none() {
            return Ok(false);
        }
        if self.hand_over(current)? {
            return Ok(true);
        }
        if current.doc.dead.is_some() && current.doc.logged_out() {
            return Ok(false);
        }
        let unfinished = self.backend.unfinished(&current.version)?;
        let next = unfinished.iter().find(|written| {
            serde_json::from_str::<Document>(&written.text).is_ok_and(|doc| {
                doc.generation == current.doc.generation + 1 && doc.token.is_some() && doc.dead.is_none()
            })
        });
        let Some(next) = next else { return Ok(false) };
        self.backend.finish(&next.version, &current.version)?;
        Ok(true)
    }

    /// Hands over a token set this host kept but could not write: when the store still
    /// holds the generation it came from, under a lease or a dead mark (not a logout).
    /// A kept set the store has moved past is removed.
    fn hand_over(&self, current: &Current) -> Result<bool> {
        let Some(kept) = self.kept.read_next()? else { return Ok(false) };
        let Ok(doc) = serde_json::from_value::<Document>(kept) else { return Ok(false) };
        if doc.generation <= current.doc.generation {
            self.kept.forget_next();
            return Ok(false);
        }
        if doc.generation != current.doc.generation + 1 || current.doc.logged_out() {
            return Ok(false);
        }
        let installed = self.swap_durably(&current.version, doc, Instant::now() + self.lease)?;
        self.kept.forget_next();
        self.keep_copy(&installed);
        eprintln!(
            "atl-token: note: an earlier run here could not write its new token set to {}; it is \
             there now",
            self.what()
        );
        Ok(true)
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

    /// How long before expiry this host refreshes, for a token set that must be valid for
    /// `margin`: a bit earlier than the others, at random.
    fn margin(&self, margin: Duration, token: &Token) -> Duration {
        margin + kept::spread(token).mul_f64(self.jitter)
    }

    fn keep_copy(&self, current: &Current) {
        self.kept.keep_copy(current.doc.token.as_ref(), current.doc.generation);
    }

    /// Saves a new family (a login or a push) as the next generation, whatever the current
    /// version holds. Creates the store if it does not exist.
    fn install_family(&self, token: &Token) -> Result<()> {
        if self.read()?.is_none() {
            let doc = Document::family(token, 1);
            let (text, key) = (doc.text(), uuid::Uuid::new_v4().to_string());
            // Another host may create it first: then this family replaces that one.
            let write = Write { text: &text, purpose: Purpose::Next, key: &key };
            if let Some(version) = self.backend.create(&write)? {
                self.keep_copy(&Current { version, doc });
                return Ok(());
            }
        }
        let written = self.rewrite(&mut |current| Ok(Document::family(token, current.doc.generation + 1)))?;
        self.keep_copy(&written);
        Ok(())
    }

    /// The server rejected the refresh token of `generation`, spent under our claim. Another
    /// host may have rotated it: read again. Only if nothing newer exists is the family marked
    /// dead. Returns `Ok(())` when there is something newer to use.
    fn after_rejection(&self, generation: u64) -> Result<()> {
        let current = self.read_existing()?;
        if current.doc.generation > generation || self.recover(&current)? {
            return Ok(());
        }
        let why = format!(
            "the server rejected its refresh token at {} (seen by {}), and no host had rotated it",
            crate::health::rfc3339(crate::token::now()),
            self.holder
        );
        let dead = Document::dead(current.doc.generation, why.clone());
        let Swapped::Won(version) = self.swap(&current.version, &dead, Purpose::Claim)? else {
            // Something changed meanwhile: look again.
            return Ok(());
        };
        self.keep_copy(&Current { version, doc: dead });
        Err(self.dead(&why))
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

    /// One step of a refresh: `Some` when it is done, `None` to read again.
    fn step(
        &self,
        refresh: &mut Refresh<'_>,
        progress: &mut Progress,
        give_up: Instant,
    ) -> Result<Option<Outcome>> {
        let current = match self.read()? {
            Some(current) => current,
            None if refresh.renewable => {
                // A service account's first token set: fetched, and the store made.
                progress.spent = true;
                let new = (refresh.spend)(None, self.lease.saturating_sub(self.http_timeout))?;
                self.install_family(&new)?;
                return Ok(Some(Outcome::Refreshed(new)));
            }
            None => return Err(self.missing()),
        };
        let started_at = *progress.started_at.get_or_insert(current.doc.generation);
        if self.recover(&current)? {
            return Ok(None);
        }
        // A service account's token set, dead or missing, is simply fetched again.
        let token = match self.family(&current) {
            Ok(token) => Some(token),
            Err(e) if refresh.renewable && exit::code_for(&e) == Code::LoginRequired => None,
            Err(e) => return Err(e),
        };
        if let Some(token) = &token {
            (refresh.check)(token)?;
        }
        let remaining = token.as_ref().map_or(Duration::ZERO, |t| t.remaining(crate::token::clock(), None));
        let needed = match refresh.when {
            When::Always => None,
            When::ExpiresWithin(margin) => Some(margin),
        };
        let good_for = |margin: Duration| token.is_some() && remaining >= margin;
        let still_valid = || {
            self.keep_copy(&current);
            let token = token.clone().ok_or_else(|| self.missing())?;
            Ok(Some(Outcome::StillValid { token, remaining }))
        };
        if current.doc.generation > started_at && current.doc.lease.is_none() && needed.is_none_or(good_for) {
            // Another host refreshed while this one waited: that is the refresh asked for,
            // if it left enough time (it may have been slow to write it).
            return still_valid();
        }
        if let Some(token) = &token
            && needed.is_some_and(|margin| good_for(self.margin(margin, token)))
        {
            return still_valid();
        }
        let now = now_ms();
        // A claim of this process's own, made current though its answer was lost (or came
        // too late), is this process's to spend while enough of it is left.
        let own = current.doc.lease.as_ref().filter(|l| {
            l.holder == self.holder && l.until_ms > now + millis(self.http_timeout + LEASE_SLACK * 2)
        });
        if own.is_none()
            && let Some(lease) = current.doc.lease.as_ref().filter(|l| self.is_live(l, now))
        {
            // Another host is refreshing: its access token may do; else wait for its result.
            if needed.is_some_and(good_for) {
                return still_valid();
            }
            if Instant::now() > give_up {
                return Err(anyhow!(
                    "{} has been claimed for a refresh by {} for too long; try again later",
                    self.what(),
                    crate::text::one_line(&lease.holder)
                ));
            }
            std::thread::sleep(POLL.saturating_mul(1 << progress.polls.min(3)).min(MAX_POLL));
            progress.polls += 1;
            return Ok(None);
        }
        // Look before claiming: after a random pause, read again, so that of the hosts that
        // found the token due at the same moment, most see another's claim and wait rather
        // than each write a claim version.
        if own.is_none() && !progress.looked {
            progress.looked = true;
            std::thread::sleep(CLAIM_LOOK.mul_f64(kept::random_share()));
            return Ok(None);
        }
        // Claim the generation: only the host whose claim is made current spends the token.
        let generation = current.doc.generation;
        let (claim_version, until_ms) = match own {
            Some(lease) => (current.version.clone(), lease.until_ms),
            None => {
                let mut claim = current.doc.clone();
                let until_ms = now + millis(self.lease);
                claim.lease = Some(Lease { holder: self.holder.clone(), until_ms });
                let Swapped::Won(version) = self.swap(&current.version, &claim, Purpose::Claim)? else {
                    progress.lost_claims += 1;
                    if progress.lost_claims >= WRITE_TRIES {
                        return Err(self.busy());
                    }
                    return Ok(None);
                };
                (version, until_ms)
            }
        };
        let left = Duration::from_millis(until_ms.saturating_sub(now_ms()));
        let lease_ends = Instant::now() + left.saturating_sub(LEASE_SLACK);
        pause_for_tests("claimed");
        progress.spent = true;
        let budget = left.saturating_sub(self.http_timeout + LEASE_SLACK);
        let new = match (refresh.spend)(token.as_ref(), budget) {
            Ok(new) => new,
            Err(e) if refresh.renewable => {
                // Nothing was spent: let the next host try at once rather than wait for the
                // lease to run out.
                let mut released = current.doc.clone();
                released.lease = None;
                let _ = self.swap(&claim_version, &released, Purpose::Claim);
                return Err(e);
            }
            Err(e) if exit::code_for(&e) == Code::LoginRequired => {
                self.after_rejection(generation)?;
                progress.spent = false;
                return Ok(None);
            }
            // The lease runs out, and another host takes over: see the protocol.
            Err(e) => return Err(e),
        };
        let doc = Document::family(&new, generation + 1);
        // Kept here first: a host that cannot write the store hands it over next time.
        let kept = self.kept.keep_next(&serde_json::to_value(&doc).expect("JSON"));
        pause_for_tests("answered");
        let installed = self.swap_durably(&claim_version, doc, lease_ends).with_context(|| {
            let rescue = match &kept {
                Ok(()) => format!(
                    "it is kept in {}, and the next run on this host writes it there",
                    self.kept.next.display()
                ),
                Err(e) => format!("and it could not be kept on this host either ({e:#})"),
            };
            format!(
                "the new token set could not be written to {}, though the server has rotated the \
                 refresh token: {rescue}. Run `atl-token refresh` here again soon",
                self.what()
            )
        })?;
        self.kept.forget_next();
        self.keep_copy(&installed);
        Ok(Some(Outcome::Refreshed(self.family(&installed)?)))
    }
}

/// `work` (which spends nothing), tried again after a fault of the store for up to
/// [`FAULT_BUDGET`] of faults in a row, with backoff: a read that meets one dropped
/// connection or one 429 is read again, as a refresh's steps are.
fn patiently<T>(mut work: impl FnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let mut wait = FIRST_WAIT;
    loop {
        match work() {
            Err(e) if unavailable(&e) && started.elapsed() + wait <= FAULT_BUDGET => {
                crate::http::log(|| format!("{e:#}; reading again in {}", crate::http::human_ms(wait)));
                std::thread::sleep(wait);
                wait = (wait * 2).min(MAX_WAIT);
            }
            done => return done,
        }
    }
}

/// An error that trying again cannot mend: a usage error, or a dead family.
fn is_final(error: &anyhow::Error) -> bool {
    !matches!(exit::code_for(error), Code::Failure)
}

impl TokenStore for SharedStore {
    fn location(&self) -> String {
        self.what()
    }

    fn load(&self) -> Result<Option<Stored>> {
        let Some(current) = patiently(|| self.read())? else { return Ok(None) };
        self.keep_copy(&current);
        let token = self.family(&current)?;
        Ok(Some(stored(token)))
    }

    /// This host's copy of the access token, when it is a copy of this store's family.
    fn peek(&self) -> Result<Option<Stored>> {
        Ok(self.kept.read_copy(self.jitter)?.map(stored))
    }

    fn reserve(&self) -> Result<Box<dyn Slot + '_>> {
        // Proves that the credentials work and the store can be read (or does not exist
        // yet), before the user goes through the browser.
        if let Some(current) = patiently(|| self.read())? {
            self.keep_copy(&current);
        }
        Ok(Box::new(SharedSlot { store: self }))
    }

    fn refresh(&self, mut refresh: Refresh<'_>) -> Result<Outcome> {
        let give_up = Instant::now() + self.lease * 3;
        let mut progress =
            Progress { started_at: None, lost_claims: 0, looked: false, polls: 0, spent: false };
        let mut faults: Option<(Instant, Duration)> = None;
        loop {
            match self.step(&mut refresh, &mut progress, give_up) {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => faults = None,
                // A fault of the store before anything was spent: read again, for a while.
                Err(e) if unavailable(&e) && !progress.spent => {
                    let (since, wait) = faults.get_or_insert((Instant::now(), FIRST_WAIT));
                    if since.elapsed() + *wait > FAULT_BUDGET {
                        return Err(e);
                    }
                    crate::http::log(|| format!("{e:#}; reading again in {}", crate::http::human_ms(*wait)));
                    std::thread::sleep(*wait);
                    *wait = (*wait * 2).min(MAX_WAIT);
                }
                Err(e) => return Err(e),
            }
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
    /// host's copy of the access token. The store itself stays, for the next login.
    fn remove(&self, before: &mut dyn FnMut(&Stored) -> Result<()>) -> Result<Option<Vec<String>>> {
        let Some(current) = self.read()? else { return Ok(None) };
        let Some(token) = current.doc.token() else { return Ok(None) };
        if current.doc.dead.is_some() {
            return Ok(None);
        }
        before(&stored(token))?;
        let why =
            format!("{LOGGED_OUT} at {} by {}", crate::health::rfc3339(crate::token::now()), self.holder);
        self.rewrite(&mut |current| Ok(Document::dead(current.doc.generation + 1, why.clone())))?;
        let mut removed = vec![format!("the token family in {} (marked logged out)", self.what())];
        if std::fs::remove_file(&self.kept.copy).is_ok() {
            removed.push(self.kept.copy.display().to_string());
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
                format!("{state} by {} until {until}", crate::text::one_line(&l.holder)),
            )
        });
        let (lease_json, lease_line) = lease.unwrap_or((Value::Null, "none".to_owned()));
        let (kind, title) = self.backend.kind();
        Ok(Details {
            json: (
                "store",
                json!({
                    "kind": kind,
                    "secret": self.backend.id(),
                    "version_id": current.version,
                    "generation": current.doc.generation,
                    "lease": lease_json,
                    "access_token_copy": self.kept.copy.display().to_string(),
                }),
            ),
            lines: vec![
                ("store", format!("{title}, {}", self.backend.id())),
                ("generation", format!("{} (version {})", current.doc.generation, current.version)),
                ("lease", lease_line),
            ],
        })
    }
}

/// A login's or a push's way into the store.
struct SharedSlot<'a> {
    store: &'a SharedStore,
}

impl Slot for SharedSlot<'_> {
    fn commit(self: Box<Self>, token: &Token) -> Result<()> {
        self.store.install_family(token)
    }
}

/// A token set from the store: its bytes are its own JSON, and its expiry is recorded.
fn stored(token: Token) -> Stored {
    Stored { bytes: token.to_bytes(), token, written_at: None }
}

/// Runs `work` here, or, inside an async runtime (a login), on a thread of its own: a
/// backend's runtime cannot be blocked on from within another.
pub fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(work());
    }
    std::thread::scope(|scope| scope.spawn(work).join()).map_err(|_| anyhow!("a store call panicked"))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, millis)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Set in the environment of a debug build, this stops the refresh at a named step
/// (`claimed`, `answered`, and a backend's own, such as AWS's `put`) until the process is killed, so that a test can crash it
/// there, or (`answered+2500ms`) for a while, so that a test can make it slow. Release
/// builds do not contain the switch.
pub(super) fn pause_for_tests(step: &str) {
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

//! The OS keyring store (`ATL_STORE=keyring`): the token set as one secret in the Secret
//! Service (Linux), the Keychain (macOS) or the Credential Manager (Windows), through the
//! `keyring` crate. A keyring has no compare-and-set, so the file lock beside the token
//! file's path still serializes refreshes, as for the token file. There is no fallback to a
//! file: a keyring that cannot be reached is exit 2, saying why.
//!
//! A new token set that cannot be written to the keyring after its refresh token was spent
//! is kept in `token.json.keyring-rescue` (0600, synced), and written to the keyring by the
//! next run under the lock, as the file store's rescue files are.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

use super::{Details, FileStore, Outcome, Refresh, Slot, Stored, TokenStore};
use crate::config::STORE;
use crate::exit::{self, Code, Exit};
use crate::token::Token;

/// The service every entry is filed under; the account is the token file's path, so that
/// each profile has an entry of its own.
const SERVICE: &str = "atl-token";
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// More than any token set.
const MAX_RESCUE: u64 = 1024 * 1024;

pub struct KeyringStore {
    entry: keyring::Entry,
    account: String,
    /// The token file's path: its lock, and its folder for the rescue file.
    file: FileStore,
    rescue: PathBuf,
}

impl KeyringStore {
    pub fn new(token_file: &std::path::Path) -> Result<Self> {
        let account = token_file.display().to_string();
        let entry = keyring::Entry::new(SERVICE, &account).map_err(|e| unreachable(&e))?;
        let mut name = token_file.file_name().unwrap_or_default().to_os_string();
        name.push(".keyring-rescue");
        Ok(Self {
            entry,
            account,
            file: FileStore::new(token_file)?,
            rescue: token_file.with_file_name(name),
        })
    }

    /// The token set in the keyring: `None` when there is none.
    fn read(&self) -> Result<Option<Stored>> {
        let text = match self.entry.get_password() {
            Ok(text) => text,
            Err(keyring::Error::NoEntry) => return Ok(None),
            Err(e) => return Err(unreachable(&e)),
        };
        let token = Token::parse(text.as_bytes()).map_err(|e| {
            Exit::login_required(format!(
                "{} does not hold a token set ({e}): run `atl-token login` to replace it",
                self.location()
            ))
        })?;
        Ok(Some(Stored { bytes: text.into_bytes(), token, written_at: None }))
    }

    fn write(&self, token: &Token) -> Result<()> {
        let text = String::from_utf8(token.to_bytes()).context("a token set is UTF-8 JSON")?;
        self.entry.set_password(&text).map_err(|e| unreachable(&e))
    }

    /// Writes a token set kept by an earlier run that could not write the keyring, if it is
    /// newer than the keyring's (or the keyring has none). Under the lock, before anything
    /// is spent.
    fn adopt_rescue(&self) -> Result<()> {
        let Some(opened) = crate::safe_path::open_own(&self.rescue, "keyring rescue file", true)? else {
            return Ok(());
        };
        let bytes = crate::safe_path::read_limited(opened, &self.rescue, MAX_RESCUE, "keyring rescue file")?;
        let Ok(kept) = Token::parse(&bytes) else { return Ok(()) };
        let current = self.read()?;
        let newer = current.is_none_or(|c| kept.obtained_at() > c.token.obtained_at());
        if newer {
            self.write(&kept)?;
            eprintln!(
                "atl-token: note: an earlier run could not write its new token set to the keyring; it is \
                 there now (from {})",
                self.rescue.display()
            );
        }
        let _ = std::fs::remove_file(&self.rescue);
        Ok(())
    }

    /// Writes `token`, just issued for a spent refresh token; if the keyring refuses it, keeps
    /// it in the rescue file first, so that the next run writes it.
    fn save_spent(&self, token: &Token) -> Result<()> {
        let Err(e) = self.write(token) else { return Ok(()) };
        let kept = crate::safe_path::write_private(&self.rescue, &token.to_bytes(), true);
        let rescue = match kept {
            Ok(()) => {
                format!("it is kept in {}, and the next run writes it to the keyring", self.rescue.display())
            }
            Err(k) => format!("and it could not be kept in {} either ({k:#})", self.rescue.display()),
        };
        Err(e.context(format!(
            "the new token set could not be written to the keyring, though the server has rotated the \
             refresh token: {rescue}"
        )))
    }

    fn lock(&self) -> Result<super::file::Lock> {
        self.file.ensure_dir()?;
        self.file.lock(LOCK_WAIT)
    }
}

/// Exit 2: the keyring cannot be reached, with why, and the setting that avoids it.
fn unreachable(error: &keyring::Error) -> anyhow::Error {
    let why = match error {
        keyring::Error::NoStorageAccess(_) | keyring::Error::PlatformFailure(_)
            if cfg!(target_os = "linux") && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() =>
        {
            "there is no D-Bus session (DBUS_SESSION_BUS_ADDRESS is not set), so no Secret Service".to_owned()
        }
        keyring::Error::NoStorageAccess(e) => format!("it refused access ({e}); is its collection locked?"),
        e => e.to_string(),
    };
    Exit::usage(format!(
        "the OS keyring cannot be used: {why}. Unlock or start it (a desktop session's keyring, or \
         gnome-keyring-daemon), or keep the token in a file with {}=file",
        STORE.name
    ))
    .into()
}

impl TokenStore for KeyringStore {
    fn location(&self) -> String {
        format!("the OS keyring ({SERVICE}, {})", self.account)
    }

    fn load(&self) -> Result<Option<Stored>> {
        self.read()
    }

    fn reserve(&self) -> Result<Box<dyn Slot + '_>> {
        // Proves the keyring can be reached before the user goes through the browser.
        self.read()?;
        self.file.ensure_dir()?;
        Ok(Box::new(KeyringSlot { store: self }))
    }

    fn refresh(&self, refresh: Refresh<'_>) -> Result<Outcome> {
        let _lock = self.lock()?;
        self.adopt_rescue()?;
        let stored = match self.read() {
            Ok(Some(stored)) => Some(stored),
            Ok(None) if refresh.renewable => None,
            Ok(None) => return Err(super::no_token(&self.location())),
            // A service account's token set can be fetched again.
            Err(e) if refresh.renewable && exit::code_for(&e) == Code::LoginRequired => None,
            Err(e) => return Err(e),
        };
        if let Some(outcome) = super::not_due(&refresh, stored.as_ref())? {
            return Ok(outcome);
        }
        let token = (refresh.spend)(stored.as_ref().map(|s| &s.token), crate::http::REFRESH.budget)?;
        self.save_spent(&token)?;
        Ok(Outcome::Refreshed(token))
    }

    fn update(&self, change: &mut dyn FnMut(Token) -> Token) -> Result<Token> {
        let _lock = self.lock()?;
        self.adopt_rescue()?;
        let token = change(self.load_existing()?.token);
        self.write(&token)?;
        Ok(token)
    }

    fn remove(&self, before: &mut dyn FnMut(&Stored) -> Result<()>) -> Result<Option<Vec<String>>> {
        let _lock = self.lock()?;
        self.adopt_rescue()?;
        let Some(stored) = self.read()? else { return Ok(None) };
        before(&stored)?;
        match self.entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => {}
            Err(e) => return Err(unreachable(&e)),
        }
        Ok(Some(vec![self.location()]))
    }

    fn details(&self) -> Result<Details> {
        Ok(Details {
            json: (
                "store",
                json!({"kind": crate::config::KEYRING, "service": SERVICE, "account": self.account}),
            ),
            lines: vec![("store", format!("the OS keyring, service {SERVICE}, account {}", self.account))],
        })
    }
}

/// A login's or a push's way into the keyring.
struct KeyringSlot<'a> {
    store: &'a KeyringStore,
}

impl Slot for KeyringSlot<'_> {
    fn commit(self: Box<Self>, token: &Token) -> Result<()> {
        let _lock = self.store.lock()?;
        self.store.write(token)?;
        let _ = std::fs::remove_file(&self.store.rescue);
        Ok(())
    }
}

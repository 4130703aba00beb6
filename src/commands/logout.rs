//! `atl-token logout`: revoke the refresh token where the provider can, then delete the file.

use anyhow::{Result, anyhow};

use crate::cli::LogoutArgs;
use crate::config::{Auth, Config};
use crate::http;
use crate::provider::CLOUD_APPS_PAGE;
use crate::store::{LOCK_WAIT, Store};

pub fn run(config: &Config, args: &LogoutArgs) -> Result<()> {
    let store = Store::new(&config.token_file)?;
    let path = store.path().display().to_string();
    // Under the lock, and with a newer rescued token set in place first, so that the token
    // revoked is the live one and no refresh replaces the file while it is deleted.
    let lock = store.lock(LOCK_WAIT)?;
    store.adopt_rescue(&lock)?;
    let Some(stored) = store.load()? else {
        eprintln!("no token in {path}: nothing to log out");
        return Ok(());
    };

    // Where the token can be revoked from here (Data Center's OAuth 2.0), and otherwise where
    // a person revokes it.
    let (revoke_url, by_hand) = match &config.auth {
        Auth::OAuth2(oauth2) => {
            let by_hand = format!(
                "{} has no endpoint to revoke a token from a script: remove the app's access at {CLOUD_APPS_PAGE}",
                oauth2.provider.kind.title()
            );
            (oauth2.provider.revoke_url.as_ref().map(|url| (oauth2, url)), by_hand)
        }
        Auth::OAuth1(consumer) => (
            None,
            format!(
                "OAuth 1.0a has no endpoint to revoke a token from a script: the access token stays \
                 valid until it expires or is revoked in {} (your profile's OAuth access tokens, or \
                 an administrator)",
                consumer.base_url
            ),
        ),
    };
    match (revoke_url, stored.token.refresh_token()) {
        (Some((oauth2, revoke_url)), Some(refresh_token)) => {
            super::refresh::check_issuer(&stored.token, config, &path)?;
            let client = http::client(config)?;
            let revoked =
                super::runtime()?.block_on(http::revoke(&client, oauth2, &revoke_url.url, refresh_token));
            match revoked {
                Ok(()) => eprintln!("revoked the refresh token at {revoke_url}"),
                Err(e) if args.force => eprintln!(
                    "atl-token: warning: could not revoke the refresh token at {revoke_url} ({e}); \
                     deleting {path} anyway (--force). The token stays valid at the server until it \
                     expires or an administrator revokes it"
                ),
                Err(e) => {
                    return Err(anyhow!(
                        "could not revoke the refresh token at {revoke_url}: {e}. {path} was kept: try \
                         again later, or run `atl-token logout --force` to delete it without revoking"
                    ));
                }
            }
        }
        (Some(_), None) => eprintln!("{path} holds no refresh token: nothing to revoke"),
        (None, _) => {}
    }

    for removed in store.remove(&lock)? {
        eprintln!("deleted {}", removed.display());
    }
    if revoke_url.is_none() {
        eprintln!("{by_hand}");
    }
    Ok(())
}

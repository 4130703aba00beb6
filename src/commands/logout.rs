//! `atl-token logout`: revoke the refresh token where the provider can, then delete the file.

use anyhow::{Result, anyhow};

use crate::cli::LogoutArgs;
use crate::config::{Auth, Config, OAuth2};
use crate::http;
use crate::provider::CLOUD_APPS_PAGE;
use crate::provider::Endpoint;
use crate::store::{self, Stored};

pub fn run(config: &Config, args: &LogoutArgs) -> Result<()> {
    let store = store::open(config)?;
    let path = store.location();
    // The store calls this with the live token set, while no refresh can replace it.
    let mut revoke = |stored: &Stored| revoke(config, args, stored, &path);
    let Some(removed) = store.remove(&mut revoke)? else {
        eprintln!("no token in {path}: nothing to log out");
        return Ok(());
    };
    for removed in removed {
        eprintln!("deleted {removed}");
    }
    if revoke_url(config).is_none() {
        eprintln!("{}", by_hand(config));
    }
    Ok(())
}

/// Where the token can be revoked from here (Data Center's OAuth 2.0), if anywhere.
fn revoke_url(config: &Config) -> Option<(&OAuth2, &Endpoint)> {
    match &config.auth {
        Auth::OAuth2(oauth2) => oauth2.provider.revoke_url.as_ref().map(|url| (oauth2, url)),
        Auth::OAuth1(_) => None,
    }
}

/// Where a person revokes a token that cannot be revoked from here.
fn by_hand(config: &Config) -> String {
    match &config.auth {
        Auth::OAuth2(oauth2) => format!(
            "{} has no endpoint to revoke a token from a script: remove the app's access at {CLOUD_APPS_PAGE}",
            oauth2.provider.kind.title()
        ),
        Auth::OAuth1(consumer) => format!(
            "OAuth 1.0a has no endpoint to revoke a token from a script: the access token stays \
             valid until it expires or is revoked in {} (your profile's OAuth access tokens, or \
             an administrator)",
            consumer.base_url
        ),
    }
}

/// Revokes the stored refresh token where the provider can; an error keeps the family,
/// unless `--force`.
fn revoke(config: &Config, args: &LogoutArgs, stored: &Stored, path: &str) -> Result<()> {
    match (revoke_url(config), stored.token.refresh_token()) {
        (Some((oauth2, revoke_url)), Some(refresh_token)) => {
            crate::binding::check(&stored.token, config, path)?;
            let client = http::client(config)?;
            let revoked = crate::http::runtime()?.block_on(http::revoke(
                &client,
                oauth2,
                &revoke_url.url,
                refresh_token,
            ));
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

    Ok(())
}

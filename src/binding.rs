//! Every destination is bound to the family: the login records, in the token set, each
//! origin that may receive something from it (the token endpoint, the revoke endpoint, the
//! API), and nothing from the family is sent anywhere else, whatever the settings say now.
//!
//! A token set with no record of one (the seed script's, or one written by atl-token 0.1) is
//! bound by its first use. Used by the commands; uses the settings, the token and the store.

use anyhow::Result;

use crate::config::Config;
use crate::exit::Exit;
use crate::store::TokenStore;
use crate::token::{Bound, Token, bound_form};

/// Refuses (exit 2) when the settings would send something from `token` to a destination it
/// is not bound to, naming both and the setting that chose the new one.
pub fn check(token: &Token, config: &Config, location: &str) -> Result<(), Exit> {
    if let Some((to, at)) = token.handed_over() {
        return Err(Exit::usage(format!(
            "the token family in {location} was handed over to {to} at {}: that owner refreshes it \
             now, and another refresh here would lock it out. Run `atl-token login` for a family of \
             atl-token's own",
            crate::health::rfc3339(at)
        )));
    }
    for (which, endpoint) in config.bindings() {
        let configured = bound_form(endpoint.url.as_str());
        match token.bound(which) {
            Some(recorded) if bound_form(recorded) != configured => {
                return Err(Exit::usage(format!(
                    "the token in {location} is bound to the {title} {recorded}, but the settings now \
                     name {configured} ({origin}): atl-token sends a token family's tokens, signatures \
                     and secrets only where its login sent them. Remove that setting, or run \
                     `atl-token login` to start a new token family with {configured}",
                    title = which.title(),
                    origin = endpoint.origin,
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// [`check`], then the destinations `token` has no record of yet are recorded in the store:
/// this first use binds them.
pub fn enforce(token: &Token, config: &Config, store: &dyn TokenStore) -> Result<()> {
    check(token, config, &store.location())?;
    let urls = config.binding_urls();
    let missing = |t: &Token| -> Vec<(Bound, &str)> {
        urls.iter().copied().filter(|(which, _)| t.bound(*which).is_none()).collect()
    };
    if !missing(token).is_empty() {
        store.update(&mut |mut stored| {
            // Only what is still missing: a concurrent login may have bound the rest.
            let unbound = missing(&stored);
            stored.bind(&unbound);
            stored
        })?;
    }
    Ok(())
}

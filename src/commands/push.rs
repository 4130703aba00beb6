//! `atl-token store push`: upload a token file's family to the shared store, so that a team
//! moves the family it already has instead of consenting again.

use anyhow::Result;

use crate::cli::PushArgs;
use crate::config::{Config, STORE, StoreKind};
use crate::exit::{self, Code, Exit};
use crate::store::{self, FileStore, TokenStore};

pub fn run(config: &Config, args: &PushArgs) -> Result<()> {
    if config.store == StoreKind::File {
        return Err(Exit::usage(format!(
            "{} is `file` (the default), so there is nowhere to push to: set {}=aws-secretsmanager:NAME \
             first (see the README's \"Many hosts\" section)",
            STORE.name, STORE.name
        ))
        .into());
    }
    let from = args.from.as_deref().unwrap_or(&config.token_file);
    let source = FileStore::new(from)?;
    let Some(stored) = source.load()? else {
        return Err(Exit::usage(format!(
            "no token file at {}: give the one to upload with --from FILE",
            from.display()
        ))
        .into());
    };
    let source_name = source.location();
    crate::binding::check(&stored.token, config, &source_name)?;
    let target = store::open(config)?;
    let location = target.location();
    match target.load() {
        Ok(Some(live)) if live.token.refresh_token() == stored.token.refresh_token() => {
            eprintln!("{location} already holds the family in {source_name}: nothing to do");
            return Ok(());
        }
        Ok(Some(live)) if live.token.refresh_token().is_some() && !args.force => {
            return Err(Exit::usage(format!(
                "{location} already holds a live token family: pushing {source_name} would replace it. \
                 Run `atl-token status` to see it; add --force to replace it anyway"
            ))
            .into());
        }
        Ok(_) => {}
        // A dead or logged-out family may be replaced.
        Err(e) if exit::code_for(&e) == Code::LoginRequired => {}
        Err(e) => return Err(e),
    }
    target.reserve()?.commit(&stored.token)?;
    eprintln!(
        "pushed {source_name} to {location}. Every host with this {} now shares the family; delete \
         {source_name} here, so that nothing spends its refresh token outside the store",
        STORE.name
    );
    Ok(())
}

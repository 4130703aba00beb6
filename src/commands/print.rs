//! `atl-token print`: write a token to stdout, fast, refreshing first only when needed.
//!
//! The common path reads one file and writes one line: no async runtime, no HTTP client.

use std::borrow::Cow;
use std::io::Write;

use anyhow::{Context, Result, anyhow};

use crate::cli::PrintArgs;
use crate::commands::refresh::{self, When};
use crate::config::Config;
use crate::duration::human;
use crate::exit::Exit;
use crate::store::Store;
use crate::token::{self, Token};

pub fn run(config: &Config, args: &PrintArgs) -> Result<()> {
    if args.what.api_base {
        return write_out(api_base(config)?.as_bytes());
    }
    let store = Store::new(&config.token_file)?;
    let stored = store.load_existing()?;
    let remaining = stored.remaining(token::now());

    if remaining >= args.min_valid {
        return output(args, &stored.token, &stored.bytes, &store);
    }
    if args.no_refresh {
        let state = if remaining.is_zero() {
            "has expired (or its expiry is unknown)".to_owned()
        } else {
            format!("expires in {}", human(remaining))
        };
        return Err(anyhow!(
            "the access token in {} {state}, and --no-refresh was given: run `atl-token refresh`",
            store.path().display()
        ));
    }
    let outcome = refresh::refresh(config, &store, When::ExpiresWithin(args.min_valid))?;
    let token = outcome.token();
    output(args, token, &token.to_bytes(), &store)
}

fn output(args: &PrintArgs, token: &Token, file_bytes: &[u8], store: &Store) -> Result<()> {
    let missing = |what: &str| {
        Exit::login_required(format!(
            "{} holds no {what} (it may hold an error answer an older script saved): run `atl-token login`",
            store.path().display()
        ))
    };
    let line = |text: &str| Cow::Owned(format!("{text}\n").into_bytes());
    let out = if args.what.json {
        Cow::Borrowed(file_bytes)
    } else if args.what.refresh {
        line(token.refresh_token().ok_or_else(|| missing("refresh token"))?)
    } else {
        let access = token.access_token().ok_or_else(|| missing("access token"))?;
        if args.what.header { line(&format!("Authorization: Bearer {access}")) } else { line(access) }
    };
    write_out(&out)
}

/// One write, so a reader never sees half a token.
fn write_out(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_all(bytes);
    written.and_then(|()| stdout.flush()).context("cannot write to stdout")
}

/// The API base as a line without a trailing slash, ready for `$(…)/rest/api/2/…`.
fn api_base(config: &Config) -> Result<String, Exit> {
    match &config.provider.api_base {
        Some(base) => Ok(format!("{}\n", base.as_str().trim_end_matches('/'))),
        None => Err(Exit::usage(format!(
            "on {} the API base holds the site's cloud id, which this version of atl-token does \
             not look up: use https://api.atlassian.com/ex/jira/<cloud id>, with the id from \
             https://<your-site>.atlassian.net/_edge/tenant_info",
            config.provider.kind.title()
        ))),
    }
}

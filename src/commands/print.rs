//! `atl-token print`: write a token to stdout, fast, refreshing first only when needed.
//!
//! The common path reads one file and writes one line: no async runtime, no HTTP client.

use std::borrow::Cow;

use anyhow::{Result, anyhow};

use crate::api_base;
use crate::binding;
use crate::cli::PrintArgs;
use crate::config::{Auth, Config, Consumer, PROVIDER};
use crate::duration::human;
use crate::exit::Exit;
use crate::handoff::{self, Style};
use crate::oauth1;
use crate::output::write_out;
use crate::renew;
use crate::shell;
use crate::store::{self, TokenStore, When};
use crate::token::{self, Token};

pub fn run(config: &Config, args: &PrintArgs) -> Result<()> {
    let what = &args.what;
    if what.cloud_id {
        api_base::require_cloud(config, "--cloud-id")?;
    }
    let store = store::open(config)?;
    let store = store.as_ref();
    // Data Center's API base is in the settings: no token is needed, but a family bound to
    // another server is not pointed at this one.
    if what.api_base
        && let Some(base) = config.api_base()
    {
        if let Some(stored) = store.peek()? {
            binding::check(&stored.token, config, &store.location())?;
        }
        return write_out(format!("{base}\n").as_bytes());
    }
    if let Auth::OAuth1(consumer) = &config.auth {
        return oauth1(config, consumer, args, store);
    }
    // The refresh token and the whole set come from the store itself; the access token may
    // come from a copy that is cheaper to read (the AWS store's per-host cache).
    let stored = renew::load(config, store, !(what.json || what.refresh))?;
    if (what.json || what.refresh) && stored.token.handed_over().is_some() {
        // The refresh token belongs to the family's new owner: not handed out here either.
        binding::check(&stored.token, config, &store.location())?;
    }
    if what.cloud_id || what.api_base || what.env {
        // These say where to send the token, or ask the API: only where the family is bound.
        binding::enforce(&stored.token, config, store)?;
    }
    if what.cloud_id {
        // From the cache in the token file; looked up (with a fresh access token) only once.
        let (_, id) = api_base::cloud_site(config, store, &stored.token)?;
        return write_out(format!("{id}\n").as_bytes());
    }
    if what.api_base {
        let base = api_base::api_base(config, store, &stored.token, args.product.name())?;
        return write_out(format!("{base}\n").as_bytes());
    }
    let remaining = stored.remaining(token::clock());
    let min_valid = args.min_valid.unwrap_or_else(|| stored.token.default_min_valid());
    if remaining >= min_valid {
        return output(config, args, &stored.token, &stored.bytes, store);
    }
    if args.no_refresh {
        let state = if remaining.is_zero() {
            "has expired (or its expiry is unknown)".to_owned()
        } else {
            format!("expires in {}", human(remaining))
        };
        return Err(anyhow!(
            "the access token in {} {state}, and --no-refresh was given: run `atl-token refresh`",
            store.location()
        ));
    }
    renew::check_min_valid(min_valid, &stored.token)?;
    let outcome = renew::refresh(config, store, When::ExpiresWithin(min_valid))?;
    let token = outcome.token();
    output(config, args, token, &token.to_bytes(), store)
}

fn output<'a>(
    config: &Config,
    args: &PrintArgs,
    token: &'a Token,
    file_bytes: &[u8],
    store: &dyn TokenStore,
) -> Result<()> {
    let missing = |what: &str| {
        Exit::login_required(format!(
            "{} holds no {what} (it may hold an error answer an older script saved): run `atl-token login`",
            store.location()
        ))
    };
    let line = |text: &str| Cow::Owned(format!("{text}\n").into_bytes());
    // A token that could break out of a header or a shell word is not printed.
    let valid = |token: Option<&'a str>, what: &str| {
        token.filter(|t| token::is_token68(t)).ok_or_else(|| missing(&format!("valid {what}")))
    };
    let out = if args.what.json {
        Cow::Borrowed(file_bytes)
    } else if args.what.refresh {
        line(valid(token.refresh_token(), "refresh token")?)
    } else if args.what.env {
        let access = valid(token.access_token(), "access token")?;
        Cow::Owned(env_lines(config, args, store, token, access)?.into_bytes())
    } else {
        let access = valid(token.access_token(), "access token")?;
        if args.what.header { line(&format!("Authorization: Bearer {access}")) } else { line(access) }
    };
    write_out(&out)
}

/// OAuth 1.0a has no bearer token: `--header --url` signs one request; `--json` shows the file.
fn oauth1(config: &Config, consumer: &Consumer, args: &PrintArgs, store: &dyn TokenStore) -> Result<()> {
    let what = &args.what;
    if what.json {
        let stored = store.load_existing()?;
        return write_out(&stored.bytes);
    }
    let Some(target) = args.url.as_deref().filter(|_| what.header) else {
        let asked = if what.header { "--header without --url" } else { "a bearer token" };
        return Err(Exit::usage(format!(
            "{} is oauth1, which has no bearer token to print ({asked}): OAuth 1.0a needs a signature \
             per request. Use `atl-token print --header --url URL [--method M]` for one request's \
             Authorization header, or `atl-token api PATH` to make the request",
            PROVIDER.name
        ))
        .into());
    };
    let method = reqwest::Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| Exit::usage(format!("--method {}: not an HTTP method", args.method)))?;
    let url = api_base::target(&consumer.base_url, target)?;
    let (_, access) = crate::session::oauth1_token(config, store)?;
    let key = oauth1::load_key(&consumer.private_key_file)?;
    let signer = oauth1::Signer { consumer_key: &consumer.consumer_key, key: &key, token: Some(&access) };
    let header = signer.header(method.as_str(), &url, &[], &oauth1::Extra::default())?;
    write_out(format!("Authorization: {header}\n").as_bytes())
}

/// `export` lines for the access token, the cloud id (Cloud) and the API base, each value
/// quoted so that `eval` yields it exactly.
fn env_lines(
    config: &Config,
    args: &PrintArgs,
    store: &dyn TokenStore,
    token: &Token,
    access: &str,
) -> Result<String> {
    let vars = handoff::variables(config, store, token, access, args.product.name(), Style::Atl)?;
    Ok(vars.iter().map(|(name, value)| format!("export {name}={}\n", shell::quote(value))).collect())
}

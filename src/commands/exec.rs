//! `atl-token exec -- CMD ARGS…`: runs a command with a fresh access token in its
//! environment, in place of atl-token (its exit code is the command's). The token is never
//! on a command line, where other users could see it in `ps`.

use std::os::unix::process::CommandExt;

use anyhow::Result;

use crate::binding;
use crate::cli::{EnvStyle, ExecArgs};
use crate::config::{Auth, Config, PROVIDER};
use crate::exit::{Code, Exit};
use crate::handoff::{self, Style};
use crate::renew;
use crate::store;
use crate::token;

pub fn run(config: &Config, args: &ExecArgs) -> Result<()> {
    if let Auth::OAuth1(_) = config.auth {
        return Err(Exit::usage(format!(
            "{} is oauth1, which has no bearer token to hand on: OAuth 1.0a signs each request; use \
             `atl-token api` or `atl-token print --header --url URL`",
            PROVIDER.name
        ))
        .into());
    }
    let Some((program, rest)) = args.command.split_first() else {
        return Err(Exit::usage("exec needs a command after `--`").into());
    };
    let store = store::open(config)?;
    let store = store.as_ref();
    let token = renew::fresh(config, store, args.min_valid)?;
    // The program is pointed at the API: only where the family is bound.
    binding::enforce(&token, config, store)?;
    let access = token
        .access_token()
        .filter(|t| token::is_token68(t))
        .ok_or_else(|| Exit::login_required(format!("{} holds no valid access token", store.location())))?;
    let style = match args.env_style {
        EnvStyle::Atl => Style::Atl,
        EnvStyle::McpAtlassian => Style::McpAtlassian,
    };
    let vars = handoff::variables(config, store, &token, access, args.product.name(), style)?;
    let error = std::process::Command::new(program).args(rest).envs(vars).exec();
    let shown = program.to_string_lossy();
    let code = match error.kind() {
        std::io::ErrorKind::NotFound => Code::NotFound,
        _ => Code::CannotRun,
    };
    Err(Exit::new(code, format!("cannot run {shown}: {error}")).into())
}

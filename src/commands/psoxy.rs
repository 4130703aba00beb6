//! `atl-token psoxy push TARGET` and `psoxy status TARGET`: seed 004's steps 5 to 9 in two
//! commands. `push` hands a fresh family to psoxy (see [`crate::psoxy`] for its formats and
//! lock) and marks the token file handed over, so that atl-token never spends it again;
//! `status` checks what psoxy holds, for a yearly (or daily) cron check.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::api_base;
use crate::cli::{PsoxyPushArgs, PsoxyStatusArgs};
use crate::config::Config;
use crate::exit::{Code, Exit};
use crate::psoxy::{self, ACCESS_TOKEN, CLIENT_ID, REFRESH_TOKEN, Target};
use crate::store;
use crate::token;

/// A family older than this may have been rotated by someone else since it was read.
const FRESH: u64 = 5 * 60;

pub fn push(mut config: Config, args: &PsoxyPushArgs) -> Result<()> {
    let target = Target::parse(&args.target)?;
    // Read by the rules for a file of the user's before anything is written to psoxy.
    let tfvars = args.tfvars.as_deref().map(Tfvars::read).transpose()?;
    config.oauth2("psoxy push")?;
    if config.api_base().is_some() {
        return Err(Exit::usage("psoxy push is for Jira Cloud (seed 004): ATL_PROVIDER must be cloud").into());
    }
    if args.login {
        login_for_psoxy(&mut config, args)?;
    }
    let config = &config;
    let oauth2 = config.oauth2("psoxy push")?;
    let store = store::open(config)?;
    let store = store.as_ref();
    let stored = store.load_existing()?;
    let location = store.location();
    if let Some((to, at)) = stored.token.handed_over()
        && !args.force
    {
        return Err(Exit::usage(format!(
            "the family in {location} was handed over to {to} at {} already, and psoxy may have rotated it \
             since: run `atl-token login` for a new family and push that (or --force)",
            crate::health::rfc3339(at)
        ))
        .into());
    }
    let age = token::now().saturating_sub(stored.token.obtained_at().unwrap_or(0));
    if age > FRESH && !args.force {
        return Err(Exit::usage(format!(
            "the token set in {location} was obtained {} ago: push a family fresh from `atl-token login` \
             or `atl-token refresh` (or --force), so that nobody has rotated it meanwhile",
            crate::duration::human(std::time::Duration::from_secs(age))
        ))
        .into());
    }
    // The cloud id first: looking it up may refresh the family, which must happen before it
    // is handed over.
    let (site, cloud_id) = api_base::cloud_site(config, store, &stored.token)?;
    let place = psoxy::connect(config, &target, args.kms_key_id.as_deref())?;
    // Marked handed over before psoxy has it: from here on no refresh here spends it, so the
    // family never has two owners. A failed push is then pushed again with --force.
    let at = token::now();
    let token = store.update(&mut |token| token.handed_over_to(&target.label(), at))?;
    place.lock(args.wait)?;
    let written =
        write_values(place.as_ref(), oauth2.client_id.as_str(), oauth2.client_secret.expose(), &token)
            .map_err(|e| {
                // psoxy's store may echo a value it was sent: none of them is shown.
                let values = [
                    oauth2.client_secret.expose(),
                    token.refresh_token().unwrap_or_default(),
                    token.access_token().unwrap_or_default(),
                ];
                let message = crate::oauth::redact_sent(&format!("{e:#}"), "", &values);
                anyhow::Error::new(Exit::new(crate::exit::code_for(&e), message))
            });
    let released = place.unlock();
    written.with_context(|| {
        format!(
            "the family in {location} is marked handed over, but psoxy has not all of it: run `atl-token \
             psoxy push {} --force` again",
            target.label()
        )
    })?;
    released?;
    if let Some(tfvars) = &tfvars {
        tfvars.set("jira_cloud_id", &cloud_id)?;
        eprintln!("set jira_cloud_id in {}", tfvars.path.display());
    }
    eprintln!(
        "handed over to psoxy at {} ({site}): psoxy refreshes the family from now on, and atl-token will not \
         use {location} again. Check it yearly with `atl-token psoxy status {} --check`",
        target.label(),
        target.label()
    );
    crate::output::write_out(format!("{cloud_id}\n").as_bytes())
}

/// A login with the scopes psoxy needs (seed 004's, and `offline_access`), whatever
/// `ATL_SCOPE` says: the family is psoxy's.
fn login_for_psoxy(config: &mut Config, push: &PsoxyPushArgs) -> Result<()> {
    if let crate::config::Auth::OAuth2(oauth2) = &mut config.auth {
        oauth2.scope = crate::config::Scope {
            value: psoxy::SCOPES.to_owned(),
            added_offline_access: false,
            ladder: None,
        };
    }
    let args = crate::cli::LoginArgs {
        no_browser: push.no_browser,
        paste: push.paste,
        oob: false,
        timeout: std::time::Duration::from_secs(5 * 60),
    };
    crate::commands::login::run(config, &args)
}

/// The four values, in psoxy's forms, and the family's start for `status`.
fn write_values(
    place: &dyn psoxy::Place,
    client_id: &str,
    client_secret: &str,
    token: &token::Token,
) -> Result<()> {
    let refresh =
        token.refresh_token().ok_or_else(|| Exit::login_required("the token set has no refresh token"))?;
    let access =
        token.access_token().ok_or_else(|| Exit::login_required("the token set has no access token"))?;
    place.put(CLIENT_ID, client_id)?;
    place.put(psoxy::CLIENT_SECRET, client_secret)?;
    place.put(ACCESS_TOKEN, &psoxy::access_token_value(access, token.expires_at().unwrap_or(0)))?;
    place.put(REFRESH_TOKEN, refresh)?;
    let started = token.family_started_at().or(token.obtained_at()).unwrap_or_else(token::now);
    place.tag_started(started)
}

pub fn status(config: &Config, args: &PsoxyStatusArgs) -> Result<()> {
    let target = Target::parse(&args.target)?;
    let place = psoxy::connect(config, &target, None)?;
    let mut lines = Vec::new();
    let mut missing = Vec::new();
    let mut refresh = None;
    for what in [CLIENT_ID, psoxy::CLIENT_SECRET, REFRESH_TOKEN, ACCESS_TOKEN] {
        let name = target.name(what);
        let line = match place.describe(what)? {
            None => {
                missing.push(name.clone());
                "MISSING".to_owned()
            }
            Some(meta) if meta.placeholder => {
                missing.push(name.clone());
                format!("holds psoxy's placeholder ({:?})", psoxy::PLACEHOLDER)
            }
            Some(meta) => {
                if what == REFRESH_TOKEN {
                    refresh = Some(meta.clone());
                }
                match meta.changed_at {
                    Some(at) => format!("set; changed {}", crate::health::rfc3339(at)),
                    None => "set".to_owned(),
                }
            }
        };
        lines.push(format!("{name:<44} {line}"));
    }
    let (code, verdict) = match (missing.is_empty(), &refresh) {
        (false, _) | (_, None) => (
            Code::LoginRequired,
            format!(
                "psoxy has no usable {}: run `atl-token login`, then `atl-token psoxy push`",
                missing.join(", ")
            ),
        ),
        (true, Some(meta)) => {
            psoxy::verdict(token::now(), meta.changed_at.unwrap_or(0), meta.started_at, args.warn_days)
        }
    };
    let label = match code {
        Code::Success => "OK",
        Code::Warning => "WARNING",
        _ => "LOGIN REQUIRED",
    };
    let out = if args.check {
        format!("{label}: {verdict}\n")
    } else {
        format!("{}\nhealth {label}: {verdict}\n", lines.join("\n"))
    };
    crate::output::write_out(out.as_bytes())?;
    if code == Code::Success { Ok(()) } else { Err(Exit::silent(code).into()) }
}

/// A Terraform variables file (`--tfvars`): where it really is, and what it holds.
struct Tfvars {
    path: PathBuf,
    text: String,
}

/// The file's rules: the user's own regular file (a link only where `safe_path` follows one),
/// opened without waiting on a FIFO, in a folder nobody else can write.
const TFVARS: crate::safe_path::Rules =
    crate::safe_path::Rules { what: "Terraform variables file", key: "--tfvars", root_may_own: false };
/// A variables file is a few KiB; a larger one is refused unread.
const MAX_TFVARS: u64 = 1024 * 1024;

impl Tfvars {
    /// Reads `path` by [`TFVARS`]' rules; a file not there yet is empty.
    fn read(path: &Path) -> Result<Self> {
        let (real, _) = crate::safe_path::resolve_with(path, &TFVARS)?;
        let bytes = crate::safe_path::read_trusted(&real, &TFVARS, MAX_TFVARS)?.unwrap_or_default();
        let text = String::from_utf8(bytes)
            .map_err(|_| Exit::usage(format!("{} is not UTF-8 text: check --tfvars", real.display())))?;
        Ok(Self { path: real, text })
    }

    /// Sets `name = "value"`: see [`set_tfvar`].
    fn set(&self, name: &str, value: &str) -> Result<()> {
        set_tfvar(&self.path, &self.text, name, value)
    }
}

/// Sets `name = "value"` in the Terraform variables file at `path`, which held `text`: the
/// line replaced, or added at the end; every other byte unchanged; written through a temp
/// file and a rename, keeping the file's mode.
fn set_tfvar(path: &Path, text: &str, name: &str, value: &str) -> Result<()> {
    let line = format!("{name} = \"{value}\"");
    let mut found = false;
    let mut out: Vec<String> = text
        .split_inclusive('\n')
        .map(|l| {
            let assigns =
                l.trim_start().strip_prefix(name).is_some_and(|rest| rest.trim_start().starts_with('='));
            if assigns && !found {
                found = true;
                let ending = if l.ends_with("\r\n") {
                    "\r\n"
                } else if l.ends_with('\n') {
                    "\n"
                } else {
                    ""
                };
                format!("{line}{ending}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !found {
        if !text.is_empty() && !text.ends_with('\n') {
            out.push("\n".to_owned());
        }
        out.push(format!("{line}\n"));
    }
    let dir = crate::safe_path::folder_of(path);
    let mut temp = tempfile::Builder::new().prefix(".tfvars.").tempfile_in(dir)?;
    temp.write_all(out.concat().as_bytes())?;
    if let Ok(meta) = std::fs::metadata(path) {
        temp.as_file().set_permissions(meta.permissions())?;
    }
    temp.persist(path).map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cloud_id_line_is_set_and_the_rest_kept_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("terraform.tfvars");
        let before = "environment_name = \"psoxy\"\r\njira_cloud_id  =  \"old\" # mine\nother = 1";
        std::fs::write(&path, before).expect("write");
        Tfvars::read(&path).expect("read").set("jira_cloud_id", "c-1").expect("set");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "environment_name = \"psoxy\"\r\njira_cloud_id = \"c-1\"\nother = 1"
        );
        let fresh = dir.path().join("new.tfvars");
        std::fs::write(&fresh, "a = 1").expect("write");
        Tfvars::read(&fresh).expect("read").set("jira_cloud_id", "c-2").expect("set");
        assert_eq!(std::fs::read_to_string(&fresh).expect("read"), "a = 1\njira_cloud_id = \"c-2\"\n");
    }
}

//! The hot path: `print`, `print --access` and `print --header` on a fresh token in a token
//! file, the command scripts run thousands of times. It does what a ten-line reader does,
//! plus the checks that make it safe (the env file's and the token file's rules, a token that
//! cannot break out of a header or a shell word), and nothing else: no command-line parser,
//! no settings but the few it needs, no async runtime, no HTTP client.
//!
//! A shared store's family is read from this host's copy of its access token, as the store
//! itself reads it. Anything else, and anything that is not plainly fine (a flag it does not
//! know, `--help`, an expiring token, a refused file, OAuth 1.0a), goes to the full path,
//! which says what is wrong. So this path never decides an error, and never warns twice.
//! Imports only the layers below the commands.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{self, Lookup};
use crate::store::FileStore;
use crate::token;

/// What `print` prints on this path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Access,
    Header,
}

/// The command line, when it is one this path serves.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    env_file: Option<PathBuf>,
    profile: Option<String>,
    token_file: Option<PathBuf>,
    shown: Option<Shown>,
}

/// `print`'s own default for `--min-valid` (the longest it adapts to): a token with less left
/// is left to the full path, which decides.
const MIN_VALID: Duration = token::DEFAULT_MIN_VALID;

/// Prints the token if this path can; `false` sends the caller to the full path.
pub fn print(args: &[OsString]) -> bool {
    let Some(args) = parse(args) else { return false };
    let Some(found) = fresh_token(&args) else { return false };
    for warning in &found.warnings {
        eprintln!("{warning}");
    }
    let line = match args.shown.unwrap_or(Shown::Access) {
        Shown::Access => format!("{}\n", found.access),
        Shown::Header => format!("Authorization: Bearer {}\n", found.access),
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe is not an error (as on the full path); there is nothing else to say.
    let _ = stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush());
    true
}

/// The global options the full parser knows (`--env-file`, `--profile`, `--token-file`,
/// before or after `print`, `--opt value` or `--opt=value`), `print`, and `--access` or
/// `--header`. Anything else is the full parser's.
fn parse(raw: &[OsString]) -> Option<Args> {
    let mut args = Args::default();
    let mut saw_print = false;
    let mut words = raw.iter().skip(1);
    while let Some(word) = words.next() {
        let text = word.to_str()?;
        let (name, inline) = match text.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (text, None),
        };
        let mut value =
            || inline.map(OsString::from).or_else(|| words.next().cloned()).filter(|v| !v.is_empty());
        match name {
            "print" if !saw_print && inline.is_none() => saw_print = true,
            "--env-file" if args.env_file.is_none() => args.env_file = Some(value()?.into()),
            "--profile" if args.profile.is_none() => args.profile = Some(value()?.into_string().ok()?),
            "--token-file" if args.token_file.is_none() => args.token_file = Some(value()?.into()),
            "--access" if saw_print && args.shown.is_none() && inline.is_none() => {
                args.shown = Some(Shown::Access)
            }
            "--header" if saw_print && args.shown.is_none() && inline.is_none() => {
                args.shown = Some(Shown::Header)
            }
            _ => return None,
        }
    }
    // The full parser refuses both together.
    (saw_print && !(args.env_file.is_some() && args.profile.is_some())).then_some(args)
}

/// A fresh, printable access token, and the warnings the full path would give on the way.
struct Found {
    access: String,
    warnings: Vec<String>,
}

fn fresh_token(args: &Args) -> Option<Found> {
    let lookup = Lookup::new(args.env_file.as_deref(), args.profile.as_deref());
    let cwd = std::env::current_dir().ok()?;
    let env = |name: &str| std::env::var(name).ok();
    let settings = config::read_env_file(&lookup, &cwd).ok()?;
    let get = |key: config::Key| config::lookup_value(&env, &settings.files, key);
    // OAuth 1.0a has no bearer token.
    if get(config::PROVIDER).is_some_and(|p| p.eq_ignore_ascii_case(crate::provider::OAUTH1)) {
        return None;
    }
    let path = match &args.token_file {
        Some(flag) => cwd.join(flag),
        None => config::token_file_in(&env, &settings.files, &cwd),
    };
    let (access, mut warnings) = match get(config::STORE).as_deref().map(str::trim) {
        None | Some("file") => read_access(&path)?,
        Some(_) => shared_copy(
            &config::Sources {
                token_file_flag: None,
                env: &env,
                files: &settings.files,
                searched: &[],
                cwd: &cwd,
            },
            &path,
        )?,
    };
    let mut all = settings.warnings;
    all.append(&mut warnings);
    Some(Found { access, warnings: all })
}

/// The access token of the token file at `path`, read by the token file's rules
/// ([`FileStore`]), if it has [`MIN_VALID`] left and is a token68.
fn read_access(path: &Path) -> Option<(String, Vec<String>)> {
    let read = FileStore::new(path).ok()?.read_quietly().ok()??;
    // Only the three fields it needs; a file that holds them in another form (seconds as
    // strings, say) is the full path's.
    let fresh: Fresh<'_> = serde_json::from_slice(&read.bytes).ok()?;
    let expires_at = fresh.expires_at.or_else(|| Some(read.written_at?.saturating_add(fresh.expires_in?)))?;
    if Duration::from_secs(expires_at).saturating_sub(token::clock()) < MIN_VALID {
        return None;
    }
    let access = fresh.access_token.filter(|t| token::is_token68(t))?;
    Some((access.to_owned(), read.warning.into_iter().collect()))
}

/// The access token of this host's copy of a shared store's family, if it has
/// [`MIN_VALID`] left (this process's jitter early) and is a token68. The settings pass
/// the full path's checks first (all of them, and the store's address), so that this path
/// never serves where the full path would refuse.
#[cfg(shared_store)]
fn shared_copy(sources: &config::Sources<'_>, token_file: &Path) -> Option<(String, Vec<String>)> {
    let config = config::resolve(sources).ok()?;
    #[cfg(any(feature = "vault", feature = "gcp"))]
    let env = |name: &str| (sources.env)(name).filter(|v| !v.trim().is_empty());
    // The copy names its store as the backend does: the AWS secret's id, or `KIND:NAME` for
    // Vault (`vault:MOUNT/PATH`) and GCP (`gcp-secretmanager:projects/P/secrets/S`).
    let id = match &config.store {
        #[cfg(feature = "aws")]
        config::StoreKind::AwsSecretsManager(secret) => secret.secret_id.clone(),
        #[cfg(feature = "vault")]
        config::StoreKind::Vault(secret) => {
            config::store_address("VAULT_ADDR", &env("VAULT_ADDR")?, "a Vault token").ok()?;
            format!("{}:{}", config::VAULT, secret.secret_id)
        }
        #[cfg(feature = "gcp")]
        config::StoreKind::GcpSecretManager(secret) => {
            if let Some(endpoint) = env(crate::gcp_sdk::ENDPOINT_VAR) {
                config::store_address(crate::gcp_sdk::ENDPOINT_VAR, &endpoint, "Google credentials").ok()?;
            }
            format!("{}:{}", config::GCP_SECRET_MANAGER, secret.secret_id)
        }
        _ => return None,
    };
    let token = crate::store::fresh_copy(token_file, &id)?;
    if token.remaining(token::clock(), None) < MIN_VALID {
        return None;
    }
    let access = token.access_token().filter(|t| token::is_token68(t))?;
    Some((access.to_owned(), Vec::new()))
}

/// A build without a shared store leaves `ATL_STORE` to the full path, which explains.
#[cfg(not(shared_store))]
fn shared_copy(_sources: &config::Sources<'_>, _token_file: &Path) -> Option<(String, Vec<String>)> {
    None
}

/// What the hot path reads of a token file (see [`crate::token::Token`] for the whole).
#[derive(serde::Deserialize)]
struct Fresh<'a> {
    #[serde(borrow)]
    access_token: Option<&'a str>,
    expires_at: Option<u64>,
    expires_in: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Option<Args> {
        let raw: Vec<OsString> =
            std::iter::once("atl-token").chain(words.iter().copied()).map(OsString::from).collect();
        parse(&raw)
    }

    #[test]
    fn only_the_plain_print_forms_take_this_path() {
        assert_eq!(args(&["print"]), Some(Args::default()));
        let header = args(&["--env-file", "a.env", "print", "--header"]).expect("served");
        assert_eq!((header.env_file, header.shown), (Some(PathBuf::from("a.env")), Some(Shown::Header)));
        let after = args(&["print", "--access", "--token-file=t.json", "--profile", "prod"]).expect("served");
        assert_eq!(
            (after.token_file, after.profile),
            (Some(PathBuf::from("t.json")), Some("prod".to_owned()))
        );
        for other in [
            &["print", "--help"][..],
            &["print", "--refresh"],
            &["print", "--access", "--header"],
            &["print", "--min-valid", "5m"],
            &["print", "--json"],
            &["-v", "print"],
            &["refresh"],
            &["print", "print"],
            &["--env-file", "a", "--profile", "p", "print"],
            &["--env-file", "a", "--env-file", "b", "print"],
            &["--env-file"],
            &["--env-file=", "print"],
            &[],
            &["print", "--access=yes"],
        ] {
            assert_eq!(args(other), None, "{other:?}");
        }
    }
}

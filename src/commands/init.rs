//! `atl-token init`: writes an env file, asking on a terminal for what the flags did not give.
//!
//! The values are checked by the same code that reads them later ([`config::resolve`]), so a
//! file `init` writes is one the other commands accept. The client secret is read without
//! echo, or from a file or stdin (`--client-secret-file`), never from a flag.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

use crate::cli::{InitArgs, InitGrant, InitProvider};
use crate::config::{self, EnvFile, Lookup, Named, Sources};
use crate::exit::Exit;
use crate::shell;
use crate::ui;

/// Where Cloud apps are registered.
const DEVELOPER_CONSOLE: &str = "https://developer.atlassian.com/console/myapps/";
const DEFAULT_PORT: u16 = 8014;
const CLOUD_SCOPE: &str = "read:jira-work read:jira-user";
const DATACENTER_SCOPE: &str = "READ";
/// What `keygen` writes.
const KEYGEN_PRIVATE_KEY: &str = "atl-token-private.pem";

pub fn run(lookup: &Lookup, args: &InitArgs) -> Result<()> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let target = target(lookup, &cwd)?;
    if target.path.exists() && !args.force {
        return Err(Exit::usage(format!(
            "{} exists already: run with --force to replace it, or choose another file with \
             --env-file or --profile",
            target.path.display()
        ))
        .into());
    }
    let ask = !args.no_input && ui::stdin_is_terminal();
    let runtime = crate::http::runtime()?;
    let mut vars = runtime.block_on(gather(args, ask, &cwd))?;
    let port = args.port.unwrap_or(DEFAULT_PORT);
    if port != DEFAULT_PORT {
        vars.push((config::PORT.name, port.to_string()));
    }
    check(&target.path, &vars, &cwd)?;
    write(&target.path, &vars, args.force)?;
    report(&target, &vars, port);
    Ok(())
}

/// The file to write, and the flag that finds it again.
struct Target {
    path: PathBuf,
    /// `--profile prod` or `--env-file PATH`, or nothing when it is found by default.
    flag: Option<String>,
}

/// The file asked for by name (`--env-file`, a profile, `$ATL_ENV_FILE`), else atl-token's
/// own folder, where the other commands find it from any folder.
fn target(lookup: &Lookup, cwd: &Path) -> Result<Target> {
    if let Some((path, how)) = lookup.named(cwd)? {
        let flag = match how {
            Named::Flag => Some(format!("--env-file {}", shell::quote(&path.to_string_lossy()))),
            Named::Profile { name, .. } => Some(format!("--profile {name}")),
            Named::Var => None,
        };
        return Ok(Target { path, flag });
    }
    let dir = lookup.config_dir().ok_or_else(|| {
        Exit::usage("neither HOME nor XDG_CONFIG_HOME is set: say where to write with --env-file")
    })?;
    Ok(Target { path: dir.join(".env"), flag: None })
}

/// The settings, from the flags and, when `ask`, from the person at the terminal.
async fn gather(args: &InitArgs, ask: bool, cwd: &Path) -> Result<Vec<(&'static str, String)>> {
    let mut prompt = Prompt { ask };
    let provider = match args.provider {
        Some(provider) => provider,
        None if ask => prompt.provider().await?,
        None => InitProvider::Cloud,
    };
    let mut vars = Vec::new();
    let grant = match (provider, args.grant) {
        (InitProvider::Oauth1, Some(_)) => {
            return Err(Exit::usage("--grant is for OAuth 2.0; OAuth 1.0a has one way to sign in").into());
        }
        (InitProvider::Oauth1, None) => InitGrant::AuthorizationCode,
        (_, Some(grant)) => grant,
        (_, None) if ask => prompt.grant().await?,
        (_, None) => InitGrant::AuthorizationCode,
    };
    let service = grant == InitGrant::ClientCredentials;
    if service {
        vars.push((config::GRANT.name, crate::provider::Grant::ClientCredentials.name().to_owned()));
    }
    match provider {
        InitProvider::Cloud => {
            vars.extend(prompt.client(args).await?);
            // A service account's cloud id comes from its site.
            let site = if service {
                Some(
                    prompt
                        .value(&args.site, "Site, e.g. https://your-team.atlassian.net", "--site", None)
                        .await?,
                )
            } else {
                prompt
                    .optional(&args.site, "Site, e.g. https://your-team.atlassian.net (Enter to skip)")
                    .await?
            };
            if let Some(site) = site {
                vars.push((config::SITE.name, site));
            }
            // A service account's scopes are chosen with its credential.
            let scope = if service {
                prompt.optional(&args.scope, "Scopes (Enter for the credential's own)").await?
            } else {
                Some(prompt.value(&args.scope, "Scopes", "--scope", Some(CLOUD_SCOPE)).await?)
            };
            vars.extend(scope.map(|scope| (config::SCOPE.name, scope)));
        }
        InitProvider::Datacenter => {
            vars.push((config::PROVIDER.name, "datacenter".to_owned()));
            vars.push((config::BASE_URL.name, prompt.base_url(args).await?));
            vars.extend(prompt.client(args).await?);
            let scope = prompt.value(&args.scope, "Scope", "--scope", Some(DATACENTER_SCOPE)).await?;
            vars.push((config::SCOPE.name, scope));
        }
        InitProvider::Oauth1 => {
            vars.push((config::PROVIDER.name, crate::provider::OAUTH1.to_owned()));
            vars.push((config::BASE_URL.name, prompt.base_url(args).await?));
            let key = prompt.value(&args.consumer_key, "Consumer key", "--consumer-key", None).await?;
            vars.push((config::CONSUMER_KEY.name, key));
            let generated = cwd.join(KEYGEN_PRIVATE_KEY);
            let default = generated.exists().then(|| generated.to_string_lossy().into_owned());
            let given = args.private_key_file.as_ref().map(|p| cwd.join(p).to_string_lossy().into_owned());
            let key_file = prompt
                .value(
                    &given,
                    "Private key file (from `atl-token keygen`)",
                    "--private-key-file",
                    default.as_deref(),
                )
                .await?;
            vars.push((config::PRIVATE_KEY_FILE.name, cwd.join(key_file).to_string_lossy().into_owned()));
        }
    }
    Ok(vars)
}

/// Asks on the terminal when allowed; otherwise a missing value names its flag.
struct Prompt {
    ask: bool,
}

impl Prompt {
    async fn provider(&mut self) -> Result<InitProvider> {
        eprintln!(
            "Which site?\n  1  Atlassian Cloud (OAuth 2.0)\n  2  Data Center (OAuth 2.0, incoming \
             application link)\n  3  Server or Data Center (OAuth 1.0a, application link)"
        );
        loop {
            let answer = self.read("Choose 1, 2 or 3 [1]", true).await?;
            match answer.trim() {
                "" | "1" => return Ok(InitProvider::Cloud),
                "2" => return Ok(InitProvider::Datacenter),
                "3" => return Ok(InitProvider::Oauth1),
                _ => eprintln!("Type 1, 2 or 3."),
            }
        }
    }

    async fn grant(&mut self) -> Result<InitGrant> {
        eprintln!(
            "Who signs in?\n  1  A person, once, in a browser (a refresh token keeps it going)\n  2  A \
             service account (its client id and secret; no browser, no refresh token)"
        );
        loop {
            match self.read("Choose 1 or 2 [1]", true).await?.trim() {
                "" | "1" => return Ok(InitGrant::AuthorizationCode),
                "2" => return Ok(InitGrant::ClientCredentials),
                _ => eprintln!("Type 1 or 2."),
            }
        }
    }

    /// A required value: the flag's, else asked for (with `default` on Enter), else the
    /// default, else an error naming the flag.
    async fn value(
        &mut self,
        given: &Option<String>,
        label: &str,
        flag: &str,
        default: Option<&str>,
    ) -> Result<String> {
        if let Some(value) = given.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            return Ok(value.to_owned());
        }
        if !self.ask {
            return default.map(str::to_owned).ok_or_else(|| missing(flag));
        }
        let label = match default {
            Some(default) => format!("{label} [{default}]"),
            None => label.to_owned(),
        };
        loop {
            let answer = self.read(&label, true).await?;
            match (answer.trim(), default) {
                ("", Some(default)) => return Ok(default.to_owned()),
                ("", None) => eprintln!("This one is needed."),
                (value, _) => return Ok(value.to_owned()),
            }
        }
    }

    async fn optional(&mut self, given: &Option<String>, label: &str) -> Result<Option<String>> {
        if given.is_some() || !self.ask {
            return Ok(given.clone().filter(|v| !v.trim().is_empty()));
        }
        let answer = self.read(label, true).await?;
        Ok(Some(answer.trim().to_owned()).filter(|v| !v.is_empty()))
    }

    /// The OAuth 2.0 client: its id, then its secret.
    async fn client(&mut self, args: &InitArgs) -> Result<[(&'static str, String); 2]> {
        let id = self.value(&args.client_id, "Client ID", "--client-id", None).await?;
        let secret = self.secret(args).await?;
        Ok([(config::CLIENT_ID.name, id), (config::CLIENT_SECRET.name, secret)])
    }

    async fn base_url(&mut self, args: &InitArgs) -> Result<String> {
        let label = "Base URL, e.g. https://jira.example.com";
        self.value(&args.base_url, label, "--base-url", None).await
    }

    /// The client secret: from `--client-secret-file` (`-` is stdin), else typed without echo.
    async fn secret(&mut self, args: &InitArgs) -> Result<String> {
        if let Some(file) = &args.client_secret_file {
            let text = if file.as_os_str() == "-" {
                ui::read_line().await.context("cannot read the client secret from stdin")?.unwrap_or_default()
            } else {
                std::fs::read_to_string(file).map_err(|e| {
                    Exit::usage(format!("cannot read the client secret from {}: {e}", file.display()))
                })?
            };
            let secret = text.trim();
            if secret.is_empty() {
                return Err(Exit::usage(format!("{} holds no client secret", file.display())).into());
            }
            return Ok(secret.to_owned());
        }
        if !self.ask {
            return Err(missing("--client-secret-file"));
        }
        loop {
            let answer = self.read("Client secret (not shown as you type)", false).await?;
            match answer.trim() {
                "" => eprintln!("This one is needed."),
                secret => return Ok(secret.to_owned()),
            }
        }
    }

    /// Shows `label` and reads a line, echoed or not, unless Ctrl-C, SIGTERM or SIGHUP comes
    /// first (the terminal's echo is restored either way).
    async fn read(&mut self, label: &str, echo: bool) -> Result<String> {
        eprint!("{label}: ");
        let _ = std::io::stderr().flush();
        let _quiet = (!echo).then(ui::NoEcho::new);
        // An answer that never came leaves the cursor after the question.
        ui::ask_line("init", "every value").await.inspect_err(|_| eprintln!())
    }
}

fn missing(flag: &str) -> anyhow::Error {
    Exit::usage(format!(
        "{flag} is needed (stdin is not a terminal, or --no-input was given, so init cannot ask)"
    ))
    .into()
}

/// Runs the values through the same checks as every other command, before anything is written.
fn check(path: &Path, vars: &[(&'static str, String)], cwd: &Path) -> Result<()> {
    let file = EnvFile {
        path: path.to_owned(),
        vars: vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        layer: config::Layer::User,
    };
    let no_env = |_: &str| None;
    let sources = Sources {
        token_file_flag: None,
        env: &no_env,
        files: std::slice::from_ref(&file),
        searched: &[],
        cwd,
    };
    config::resolve(&sources).map_err(|e| anyhow!(Exit::usage(format!("nothing was written: {e}"))))?;
    Ok(())
}

/// The env file's text: a header, then one `KEY=value` line each, quoted so that both
/// atl-token and the shell read the value back as it is.
pub fn render(vars: &[(&str, String)]) -> String {
    let mut text =
        String::from("# Written by `atl-token init`. It holds the client secret: keep it mode 600.\n");
    for (key, value) in vars {
        let _ = writeln!(text, "{key}={}", quote(value));
    }
    text
}

/// A value as env-file text: bare when it is plain, else in single quotes, else in double
/// quotes with `\`, `"` and `$` escaped (the env-file reader knows no escaped backtick).
fn quote(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:,@%".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        value.to_owned()
    } else if !value.contains(['\'', '\n', '\r', '\\']) {
        format!("'{value}'")
    } else {
        let mut out = String::from("\"");
        for c in value.chars() {
            match c {
                '\\' | '"' | '$' => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' => out.push_str("\\n"),
                _ => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

/// Writes the file with mode 0600 through a temp file, its folder made (0700) if missing.
fn write(path: &Path, vars: &[(&'static str, String)], force: bool) -> Result<()> {
    let dir = crate::safe_path::folder_of(path);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot make the folder {}", dir.display()))?;
    let mut file = tempfile::Builder::new()
        .prefix(".env.")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    file.write_all(render(vars).as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let persisted = if force { file.persist(path).map(drop) } else { file.persist_noclobber(path).map(drop) };
    persisted.map_err(|e| anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// What to do next, on stdout: the callback URL to register, and the command to run.
fn report(target: &Target, vars: &[(&'static str, String)], port: u16) {
    let get = |key: &str| vars.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
    let flag = target.flag.as_deref().map(|f| format!(" {f}")).unwrap_or_default();
    let mut out = format!("Wrote {} (mode 600).\n\n", target.path.display());
    if get(config::GRANT.name).is_some() {
        let _ = writeln!(
            out,
            "A service account needs no callback URL and no sign-in. Check its credentials (this \
             fetches a first token):\n\n    atl-token{flag} login"
        );
        let _ = crate::output::write_out(out.as_bytes());
        return;
    }
    match get(config::PROVIDER.name) {
        Some(crate::provider::OAUTH1) => {
            let _ = writeln!(
                out,
                "In {}: Administration > Applications > Application links, create a link to \
                 atl-token with the consumer key {} and the public key from `atl-token keygen`.",
                get(config::BASE_URL.name).unwrap_or_default(),
                get(config::CONSUMER_KEY.name).unwrap_or_default()
            );
        }
        Some(_) => {
            let _ = writeln!(
                out,
                "In {}: Administration > Applications > Application links, create an incoming \
                 link (External application) with this redirect URL:\n\n    http://localhost:{port}",
                get(config::BASE_URL.name).unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "In the developer console ({DEVELOPER_CONSOLE}), under your app's \
                 Authorization > OAuth 2.0 (3LO), set this callback URL:\n\n    http://localhost:{port}"
            );
        }
    }
    let _ = writeln!(out, "\nThen sign in:\n\n    atl-token{flag} login");
    let _ = crate::output::write_out(out.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_init_writes_reads_back_as_written() {
        let values = [
            "abc-123_XYZ",
            "read:jira-work read:jira-user",
            "https://your-team.atlassian.net",
            "it's $HOME `x` \"q\" \\ back",
            "a'b",
            "",
        ];
        let vars: Vec<(&str, String)> = values.iter().map(|v| ("ATL_X", (*v).to_owned())).collect();
        let text = render(&vars);
        let read = crate::envfile::parse(&text, None).expect("parses").vars;
        let read: Vec<&str> = read.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(read, values);
    }

    proptest::proptest! {
        #[test]
        fn prop_any_printable_value_reads_back_as_written(value in "[ -~]{0,40}") {
            let text = render(&[("ATL_X", value.clone())]);
            let read = crate::envfile::parse(&text, None).expect("parses").vars;
            proptest::prop_assert_eq!(&read[0].1, &value);
        }
    }
}

//! Command-line arguments. The doc comments here are the `--help` text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    network, server or file-system failure (trying again later may work)
  2    usage or configuration error: fix the flag or setting the message names
  3    status --check: the refresh token or the token family ends within --warn-days
  4    no usable token: run `atl-token login`
  129  login or init stopped by SIGHUP (the terminal went away)
  130  interrupted (Ctrl-C)
  143  login or init stopped by SIGTERM";

const EXEC_EXIT_CODES: &str = "\
Exit codes: the command's own once it runs. Before that:
  1    network, server or file-system failure
  2    usage or configuration error
  4    no usable token: run `atl-token login`
  126  the command cannot be run (not executable)
  127  the command was not found";

/// Gets, keeps and hands out OAuth tokens for Atlassian products.
///
/// Settings come in layers, highest first: flags; the process environment; --env-file (or
/// $ATL_ENV_FILE), else the folder's file (./.env, else ./jira.env); your own file
/// (~/.config/atl-token/.env, or a profile's). A lower layer fills only the keys a higher one
/// leaves unset. `atl-token init` writes your own file. A folder's file that sets a command,
/// a destination or the token file is used only once you `atl-token trust` it.
///
/// ATL_GRANT=client_credentials makes it a service account's (Cloud or Data Center): no
/// login and no refresh token; `print` fetches a new access token when the last one is due.
#[derive(Debug, Parser)]
#[command(name = "atl-token", version, after_help = EXIT_CODES, disable_help_subcommand = true)]
pub struct Cli {
    /// The env file to read settings from.
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,

    /// Use the profile NAME: settings in ~/.config/atl-token/NAME/.env (under
    /// $XDG_CONFIG_HOME if set), the token file beside them. Also $ATL_PROFILE.
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "env_file")]
    pub profile: Option<String>,

    /// Log each HTTP request to stderr: method, URL, status, time, retries. Tokens, codes
    /// and secrets are never logged.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// The token file (overrides ATL_TOKEN_FILE); relative to the current folder.
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Each command's arguments are defined only when it runs (`defer`): `print`, run in every
/// script, does not build the other thirteen commands' arguments first.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Sign in through the browser once and save the token file (a service account: fetch a
    /// first token, with no browser).
    #[command(after_help = EXIT_CODES)]
    Login(LoginArgs),
    /// Trade the refresh token for a new token pair (for cron).
    #[command(after_help = EXIT_CODES)]
    Refresh(RefreshArgs),
    /// Print the access token (refreshing it first when it is about to expire).
    #[command(after_help = EXIT_CODES)]
    Print(PrintArgs),
    /// Show the token family's health: scopes, expiries, the limits ahead.
    #[command(after_help = EXIT_CODES)]
    Status(StatusArgs),
    /// Make one authenticated API request (like `gh api`), or page through a listing.
    #[command(after_help = EXIT_CODES)]
    Api(ApiArgs),
    /// List the Atlassian Cloud sites the token reaches, with their cloud ids.
    #[command(after_help = EXIT_CODES)]
    Sites(SitesArgs),
    /// Run a command with a fresh access token in its environment (never on its command line).
    #[command(after_help = EXEC_EXIT_CODES)]
    Exec(ExecArgs),
    /// Revoke the refresh token where the provider allows it (Data Center), then delete the
    /// token file.
    #[command(after_help = EXIT_CODES)]
    Logout(LogoutArgs),
    /// Make an RSA key pair for an OAuth 1.0a application link, and print what to paste into it.
    #[command(after_help = EXIT_CODES)]
    Keygen(KeygenArgs),
    /// Move a token family into the store ATL_STORE names (AWS Secrets Manager).
    #[command(after_help = EXIT_CODES, subcommand)]
    Store(StoreCommand),
    /// Hand the token family to psoxy (Worklytics' proxy), or check the one it holds.
    #[command(subcommand)]
    Psoxy(PsoxyCommand),
    /// Write an env file: asks on a terminal, or takes every value as a flag.
    #[command(after_help = EXIT_CODES)]
    Init(InitArgs),
    /// Trust a folder's env file (./.env or ./jira.env), so that the settings in it that run a
    /// command, choose where tokens go or choose the token file are used. A changed file is
    /// no longer trusted.
    #[command(after_help = EXIT_CODES)]
    Trust(TrustArgs),
    /// List the profiles in ~/.config/atl-token, each with its token's health in one line.
    #[command(after_help = EXIT_CODES)]
    Profiles(ProfilesArgs),
    /// Print a shell completion script: `atl-token completions bash > ~/.local/share/bash-completion/completions/atl-token`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) of atl-token or of one command: `atl-token man login | man -l -`.
    Man(TopicArgs),
    /// Print this message or the help of the given subcommand.
    Help(TopicArgs),
}

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The env file to trust (or forget): by default the folder's, ./.env or else ./jira.env.
    #[arg(value_name = "FILE", conflicts_with = "list")]
    pub file: Option<PathBuf>,
    /// List the files you trust, each with whether it has changed since.
    #[arg(long)]
    pub list: bool,
    /// Forget FILE: its settings that run a command or choose a destination are refused again.
    #[arg(long, conflicts_with = "list")]
    pub remove: bool,
}

#[derive(Debug, Args)]
pub struct TopicArgs {
    /// The subcommand to explain.
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells `completions` writes for (clap_complete's, at build time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Elvish,
}

#[derive(Debug, Args)]
pub struct ProfilesArgs {
    /// How many days ahead a limit counts as ending soon.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub warn_days: u64,
}

/// What `init` sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitProvider {
    /// Atlassian Cloud, OAuth 2.0 (3LO).
    Cloud,
    /// Data Center, OAuth 2.0 through an incoming application link.
    Datacenter,
    /// Server or Data Center, OAuth 1.0a through an application link.
    Oauth1,
}

/// How an OAuth 2.0 client set up by `init` gets its tokens (`ATL_GRANT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitGrant {
    /// A person signs in once in a browser; a rotating refresh token renews the access token.
    AuthorizationCode,
    /// A service account: its client id and secret fetch each access token. No login.
    ClientCredentials,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Which kind of site. Asked for on a terminal when not given.
    #[arg(long, value_enum)]
    pub provider: Option<InitProvider>,

    /// OAuth 2.0: a person's sign-in (the default), or a service account's client
    /// credentials. Asked for on a terminal when not given.
    #[arg(long, value_enum)]
    pub grant: Option<InitGrant>,

    /// OAuth 2.0: the app's client id.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// OAuth 2.0: read the client secret from this file ("-" for stdin) rather than the
    /// terminal. It is never taken as a flag, where other users could see it.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,

    /// Cloud: the site, e.g. https://your-team.atlassian.net (optional).
    #[arg(long, value_name = "URL")]
    pub site: Option<String>,

    /// Data Center and OAuth 1.0a: the product's base URL, e.g. https://jira.example.com.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// OAuth 2.0: the scopes, separated by spaces.
    #[arg(long, value_name = "SCOPES")]
    pub scope: Option<String>,

    /// OAuth 1.0a: the consumer key of the application link.
    #[arg(long, value_name = "KEY")]
    pub consumer_key: Option<String>,

    /// OAuth 1.0a: the private key file, from `atl-token keygen`.
    #[arg(long, value_name = "PATH")]
    pub private_key_file: Option<PathBuf>,

    /// The loopback port login listens on (the callback URL to register is
    /// http://localhost:PORT).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Never ask: fail, naming the flag, when a value is missing.
    #[arg(long)]
    pub no_input: bool,

    /// Replace an existing env file.
    #[arg(long)]
    pub force: bool,
}

/// The key size `keygen` makes unless told otherwise.
pub const DEFAULT_KEY_BITS: usize = 3072;

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The folder for atl-token-private.pem and atl-token-public.pem.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,

    /// The key size in bits (2048 to 8192).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEY_BITS)]
    pub bits: usize,

    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// A path below the API base (e.g. /rest/api/3/myself), or a full URL on the API's host.
    #[arg(value_name = "PATH")]
    pub path: String,

    /// The HTTP method: GET, or POST when there is a body.
    #[arg(short = 'X', long = "method", value_name = "METHOD")]
    pub method: Option<String>,

    /// The request body: text, @FILE, or @- for stdin. Sent as JSON unless -H sets a
    /// Content-Type.
    #[arg(short = 'd', long = "data", value_name = "BODY")]
    pub data: Option<String>,

    /// An extra header, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Follow Atlassian's paging to the last page and print one JSON array of the items.
    #[arg(long)]
    pub paginate: bool,

    /// With --paginate: one JSON document per line instead of an array.
    #[arg(long, requires = "paginate")]
    pub ndjson: bool,

    /// With --paginate: pages fetched at once when the total is known up front (Jira's startAt).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub parallel: u8,

    /// The Cloud product whose API a relative path is below.
    #[arg(long, value_enum, default_value_t = Product::Jira)]
    pub product: Product,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The same, as JSON in a stable shape ("version": 1).
    #[arg(long, conflicts_with = "check")]
    pub json: bool,
    /// For monitoring: one line, and exit 0 (healthy), 3 (ends within --warn-days) or 4 (log in).
    #[arg(long)]
    pub check: bool,
    /// How many days ahead a limit counts as ending soon.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub warn_days: u64,
    /// Get a new access token first (OAuth 2.0), which proves that the refresh token or the
    /// service account's credentials still work; a rejection is exit 4. Without it, status
    /// makes no network call.
    #[arg(long)]
    pub online: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Whose variable names: atl (ATL_ACCESS_TOKEN, ATL_CLOUD_ID, ATL_API_BASE) or
    /// mcp-atlassian (ATLASSIAN_OAUTH_ACCESS_TOKEN, ATLASSIAN_OAUTH_CLOUD_ID, JIRA_URL or
    /// CONFLUENCE_URL).
    #[arg(long, value_enum, default_value_t = EnvStyle::Atl)]
    pub env_style: EnvStyle,

    /// Refresh first when the access token has less than this left. Default: 60s, or a third
    /// of the token's lifetime when that is shorter.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub min_valid: Option<Duration>,

    /// The product whose API the command calls (its API base; on Cloud, Confluence's site URL).
    #[arg(long, value_enum, default_value_t = Product::Jira)]
    pub product: Product,

    /// The command and its arguments, after `--`.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// The names `exec` gives the variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvStyle {
    Atl,
    McpAtlassian,
}

#[derive(Debug, Args)]
pub struct SitesArgs {
    /// JSON for scripts: an array of {name, url, id, product, scopes}.
    #[arg(long)]
    pub json: bool,
}

/// `atl-token psoxy ...`.
#[derive(Debug, Subcommand)]
pub enum PsoxyCommand {
    /// Write the family, the client and the access token where psoxy reads them, under
    /// psoxy's lock; print the cloud id; then never spend the family here again.
    #[command(after_help = EXIT_CODES)]
    Push(PsoxyPushArgs),
    /// Check psoxy's values (never printing them): present, and the family alive.
    #[command(after_help = EXIT_CODES)]
    Status(PsoxyStatusArgs),
}

#[derive(Debug, Args)]
pub struct PsoxyPushArgs {
    /// aws-ssm:PREFIX, aws-secretsmanager:PREFIX or gcp:projects/PROJECT[/PREFIX] (an empty
    /// PREFIX: PSOXY_JIRA_CLOUD_).
    pub target: String,
    /// Log in first (a browser consent, as `login` does) with psoxy's scopes and
    /// offline_access, and push that fresh family.
    #[arg(long)]
    pub login: bool,
    /// With --login: only print the authorization URL; do not open a browser.
    #[arg(long, requires = "login")]
    pub no_browser: bool,
    /// With --login: no listener; paste the address the browser was sent to (over SSH).
    #[arg(long, requires = "login")]
    pub paste: bool,
    /// SSM and Secrets Manager: the KMS key to encrypt with (default: the AWS managed key).
    /// Not for GCP, whose secrets keep their own encryption settings.
    #[arg(long, value_name = "KEY")]
    pub kms_key_id: Option<String>,
    /// Set `jira_cloud_id = "…"` in this Terraform variables file (the rest unchanged).
    #[arg(long, value_name = "FILE")]
    pub tfvars: Option<PathBuf>,
    /// Push a family that was handed over already, or was obtained more than 5 minutes ago.
    #[arg(long)]
    pub force: bool,
    /// How long to wait while psoxy holds its lock.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub wait: Duration,
}

#[derive(Debug, Args)]
pub struct PsoxyStatusArgs {
    /// aws-ssm:PREFIX, aws-secretsmanager:PREFIX or gcp:projects/PROJECT[/PREFIX].
    pub target: String,
    /// For monitoring: one line, and exit 0, 3 (the family ends within --warn-days) or 4.
    #[arg(long)]
    pub check: bool,
    /// How many days ahead the family's end counts as soon.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub warn_days: u64,
}

/// `atl-token store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Upload a token file's family to the store ATL_STORE names, so that every host uses it.
    #[command(after_help = EXIT_CODES)]
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The token file to upload (default: ATL_TOKEN_FILE's).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,

    /// Replace a live family in the store (its refresh token is then no longer used here).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Delete the token file even when the refresh token cannot be revoked.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Only print the authorization URL; do not open a browser.
    #[arg(long)]
    pub no_browser: bool,

    /// No listener: open the URL on any machine, then paste here the address the browser
    /// was sent to (for SSH sessions and containers).
    #[arg(long, conflicts_with = "oob")]
    pub paste: bool,

    /// OAuth 1.0a: no listener; the page shows a verification code to type or paste here.
    #[arg(long)]
    pub oob: bool,

    /// Give up when the browser has not come back after this long (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = positive_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Skip the refresh while the access token is valid for at least --min-valid.
    #[arg(long)]
    pub if_needed: bool,

    /// With --if-needed: the validity left that makes a refresh unnecessary.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration, requires = "if_needed")]
    pub min_valid: Duration,

    /// Print nothing on success (errors still go to stderr).
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct PrintArgs {
    #[command(flatten)]
    pub what: What,

    /// Refresh first when the access token has less than this left. Default: 60s, or a third
    /// of the token's lifetime when that is shorter.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub min_valid: Option<Duration>,

    /// Never refresh: fail (exit 1) when the access token has expired or is about to.
    #[arg(long)]
    pub no_refresh: bool,

    /// The product whose API base --api-base and --env give on Atlassian Cloud.
    #[arg(long, value_enum, default_value_t = Product::Jira)]
    pub product: Product,

    /// With --header: the request the header is for, a full URL or a path below ATL_BASE_URL.
    /// OAuth 1.0a signs each request, query string included; a Bearer header ignores it.
    #[arg(long, value_name = "URL", requires = "header")]
    pub url: Option<String>,

    /// With --url: the request's HTTP method.
    #[arg(long, value_name = "METHOD", default_value = "GET", requires = "url")]
    pub method: String,
}

/// An Atlassian Cloud product, as the API gateway names it: `/ex/{product}/{cloud id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Product {
    Jira,
    Confluence,
}

impl Product {
    pub fn name(self) -> &'static str {
        match self {
            Self::Jira => "jira",
            Self::Confluence => "confluence",
        }
    }
}

/// What `print` writes to stdout. One at most; the access token when none is given.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct What {
    /// The access token (the default).
    #[arg(long)]
    pub access: bool,
    /// The refresh token.
    #[arg(long)]
    pub refresh: bool,
    /// An HTTP header line: `Authorization: Bearer <access token>`, or with OAuth 1.0a
    /// `Authorization: OAuth ...`, signed for the request --url and --method give.
    #[arg(long)]
    pub header: bool,
    /// The token file's JSON.
    #[arg(long)]
    pub json: bool,
    /// Where API calls go: `{ATL_API_URL}/ex/{product}/{cloud id}` on Cloud, the base URL on
    /// Data Center.
    #[arg(long)]
    pub api_base: bool,
    /// The cloud id of ATL_SITE, or of the only site the token reaches (cached in the token file).
    #[arg(long)]
    pub cloud_id: bool,
    /// Shell `export` lines for ATL_ACCESS_TOKEN, ATL_CLOUD_ID and ATL_API_BASE, for
    /// `eval "$(atl-token print --env)"`.
    #[arg(long)]
    pub env: bool,
}

fn duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text)
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match crate::duration::parse(text)? {
        d if d.is_zero() => {
            Err(format!("'{text}' would give up at once: give a wait longer than zero, e.g. 5m"))
        }
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_need_units() {
        let cli = Cli::try_parse_from(["atl-token", "login", "--timeout", "90s"]).expect("parses");
        let Command::Login(login) = cli.command else { panic!("login") };
        assert_eq!(login.timeout, Duration::from_secs(90));
        let err = Cli::try_parse_from(["atl-token", "login", "--timeout", "90"]).unwrap_err();
        assert!(err.to_string().contains("no unit"), "{err}");
    }

    #[test]
    fn print_takes_one_kind_at_most() {
        assert!(Cli::try_parse_from(["atl-token", "print", "--access", "--json"]).is_err());
        let cli = Cli::try_parse_from(["atl-token", "print"]).expect("parses");
        let Command::Print(print) = cli.command else { panic!("print") };
        assert!(!print.what.refresh && !print.what.json && !print.what.header);
        assert_eq!(print.min_valid, None, "the default adapts to the token");
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli =
            Cli::try_parse_from(["atl-token", "refresh", "-q", "--env-file", "/x/.env"]).expect("parses");
        assert_eq!(cli.env_file, Some(PathBuf::from("/x/.env")));
    }
}

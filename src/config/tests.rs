//! The settings' rules, on strings.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::envfile;
use crate::exit::Exit;
use crate::provider::{BodyFormat, Endpoint, Kind};

struct Fixture {
    env: HashMap<&'static str, &'static str>,
    file: Option<EnvFile>,
    token_flag: Option<PathBuf>,
}

impl Fixture {
    fn new() -> Self {
        Self { env: HashMap::new(), file: None, token_flag: None }
    }

    fn file(mut self, text: &str) -> Self {
        let vars = envfile::parse(text, None).expect("test env file parses").vars;
        self.file = Some(EnvFile { path: PathBuf::from("/etc/atl/.env"), vars, layer: Layer::Named });
        self
    }

    fn env(mut self, key: &'static str, value: &'static str) -> Self {
        self.env.insert(key, value);
        self
    }

    fn resolve(&self) -> Result<Config, Exit> {
        let env = |k: &str| self.env.get(k).map(|v| (*v).to_owned());
        resolve(&Sources {
            token_file_flag: self.token_flag.as_deref(),
            env: &env,
            files: self.file.as_slice(),
            searched: &[PathBuf::from("/cwd/.env")],
            cwd: Path::new("/cwd"),
        })
    }

    fn config(&self) -> Config {
        self.resolve().expect("config resolves")
    }

    fn error(&self) -> String {
        self.resolve().expect_err("config is refused").to_string()
    }
}

impl Config {
    /// The OAuth 2.0 client of a config that has one.
    fn o(&self) -> &OAuth2 {
        self.oauth2("the test").expect("an OAuth 2.0 config")
    }
}

const MINIMAL: &str = "ATL_CLIENT_ID=id\nATL_CLIENT_SECRET=secret\nATL_SCOPE=read:jira-work\n";

#[test]
fn defaults_fill_everything_optional() {
    let c = Fixture::new().file(MINIMAL).config();
    assert_eq!(c.o().client_id, "id");
    assert_eq!(c.o().client_secret.expose(), "secret");
    assert_eq!(c.redirect.uri, "http://localhost:8014");
    assert_eq!(c.redirect.port, 8014);
    assert_eq!(c.redirect.path, "/");
    assert_eq!(c.redirect.host, LoopbackHost::Localhost);
    assert_eq!(c.token_file, PathBuf::from("/etc/atl/token.json"));
    let p = &c.o().provider;
    assert_eq!(p.kind, Kind::Cloud);
    assert_eq!(p.authorize_url.url.as_str(), DEFAULT_AUTHORIZE_URL);
    assert_eq!(p.token_url.url.as_str(), DEFAULT_TOKEN_URL);
    assert!(c.o().custom_endpoints().is_empty());
    assert_eq!(p.token_url.origin, "the default");
    assert_eq!(p.body, BodyFormat::Json);
    assert_eq!((p.pkce, &p.revoke_url, &p.api_base), (false, &None, &None));
    assert!(!c.redirect.tls);
    assert_eq!(c.http_timeout, Duration::from_secs(30));
    assert_eq!(c.site, None);
    assert_eq!(c.ca_file, None);
}

#[test]
fn a_ca_file_is_relative_to_the_env_file_and_remembers_its_origin() {
    let c = Fixture::new().file(&format!("{MINIMAL}ATL_CA_FILE=certs/corp.pem\n")).config();
    let ca = c.ca_file.expect("ca file");
    assert_eq!(ca.path, PathBuf::from("/etc/atl/certs/corp.pem"));
    assert_eq!(ca.origin, "ATL_CA_FILE in /etc/atl/.env");
}

#[test]
fn seed_aliases_work_and_the_canonical_name_wins() {
    let seed = "JIRA_CLIENT_ID=\"old\"\nJIRA_CLIENT_SECRET=\"s\"\n\
                JIRA_DOMAIN=\"https://my-url.atlassian.net\"\n\
                JIRA_SCOPE=\"offline_access offline_access read:jira-work\"\n\
                REFRESH_PORT=9001\nTOKEN_FILE_NAME=\"tok.json\"\n";
    let c = Fixture::new().file(seed).config();
    assert_eq!(c.o().client_id, "old");
    assert_eq!(c.site.as_ref().expect("site").as_str(), "https://my-url.atlassian.net/");
    assert_eq!(c.redirect.uri, "http://localhost:9001");
    assert_eq!(c.token_file, PathBuf::from("/etc/atl/tok.json"));
    assert_eq!(c.o().scope.value, "offline_access read:jira-work");
    assert!(!c.o().scope.added_offline_access);

    let both = format!("{seed}ATL_CLIENT_ID=new\n");
    assert_eq!(Fixture::new().file(&both).config().o().client_id, "new");
}

#[test]
fn environment_beats_file_and_flag_beats_both() {
    let mut f = Fixture::new()
        .file(&format!("{MINIMAL}ATL_TOKEN_FILE=from-file.json\nATL_PORT=9000\n"))
        .env("JIRA_CLIENT_ID", "from-env")
        .env("ATL_PORT", "9100")
        .env("ATL_TOKEN_FILE", "from-env.json");
    let c = f.config();
    assert_eq!(c.o().client_id, "from-env");
    assert_eq!(c.redirect.port, 9100);
    assert_eq!(c.redirect.port_origin, "ATL_PORT in the environment");
    assert_eq!(c.token_file, PathBuf::from("/etc/atl/from-env.json"));

    f.token_flag = Some(PathBuf::from("flag.json"));
    assert_eq!(f.config().token_file, PathBuf::from("/cwd/flag.json"));
}

#[test]
fn empty_values_count_as_unset() {
    let f = Fixture::new().file(&format!("{MINIMAL}ATL_PORT=9000\n")).env("ATL_PORT", "");
    assert_eq!(f.config().redirect.port, 9000);
    let err = Fixture::new().file("ATL_CLIENT_ID=\"\"\n").error();
    assert!(err.contains("ATL_CLIENT_ID (or JIRA_CLIENT_ID) is not set"), "{err}");
    assert!(err.contains("/etc/atl/.env"), "{err}");
}

#[test]
fn missing_keys_say_where_to_put_them() {
    let err = Fixture::new().error();
    assert!(err.contains("ATL_CLIENT_ID"), "{err}");
    assert!(err.contains("no env file was found (looked for /cwd/.env)"), "{err}");
    let err = Fixture::new().file("ATL_CLIENT_ID=a\nATL_CLIENT_SECRET=b\n").error();
    assert!(err.starts_with("ATL_SCOPE (or JIRA_SCOPE) is not set"), "{err}");
}

#[test]
fn offline_access_is_added_when_missing() {
    let c = Fixture::new().file(MINIMAL).config();
    assert_eq!(c.o().scope.value, "read:jira-work offline_access");
    assert!(c.o().scope.added_offline_access);
}

#[test]
fn bad_values_name_the_key_and_the_file() {
    let bad = |extra: &str| Fixture::new().file(&format!("{MINIMAL}{extra}\n")).error();
    let err = bad("ATL_PORT=http");
    assert!(err.starts_with("ATL_PORT in /etc/atl/.env: 'http' is not valid"), "{err}");
    assert!(bad("REFRESH_PORT=0").contains("REFRESH_PORT"));
    assert!(bad("ATL_PORT=70000").contains("1 to 65535"));
    assert!(bad("ATL_TOKEN_URL=\"not a url\"").starts_with("ATL_TOKEN_URL"));
    assert!(bad("ATL_TOKEN_URL=http://auth.example.com/token").contains("use https"));
    assert!(bad("ATL_TOKEN_URL=ftp://127.0.0.1/").contains("http or https"));
    assert!(bad("ATL_TOKEN_BODY=xml").contains("json or form"));
    assert!(bad("ATL_HTTP_TIMEOUT=0").contains("ATL_HTTP_TIMEOUT"));
    assert!(bad("ATL_REDIRECT_URI=https://example.com/cb").contains("loopback"));
    assert!(bad("ATL_REDIRECT_URI=ftp://localhost:9/cb").contains("loopback"));
    let clash = bad("ATL_PORT=9000\nATL_REDIRECT_URI=http://localhost:9001/cb");
    assert!(clash.contains("port 9000") && clash.contains("9001"), "{clash}");
}

#[test]
fn loopback_http_urls_and_timeouts_with_units_are_accepted() {
    let extra = "ATL_TOKEN_URL=http://127.0.0.1:5000/token\nATL_HTTP_TIMEOUT=2m\nATL_TOKEN_BODY=FORM\n";
    let c = Fixture::new().file(&format!("{MINIMAL}{extra}")).config();
    assert_eq!(c.o().provider.token_url.url.as_str(), "http://127.0.0.1:5000/token");
    assert_eq!(c.o().provider.token_url.origin, "ATL_TOKEN_URL in /etc/atl/.env");
    assert_eq!(c.o().custom_endpoints(), [&c.o().provider.token_url]);
    assert_eq!(c.http_timeout, Duration::from_secs(120));
    assert_eq!(c.o().provider.body, BodyFormat::Form);
}

#[test]
fn a_redirect_uri_keeps_its_exact_text_and_sets_port_and_path() {
    let extra = "ATL_REDIRECT_URI=http://127.0.0.1:7000/callback\n";
    let c = Fixture::new().file(&format!("{MINIMAL}{extra}")).config();
    assert_eq!(c.redirect.uri, "http://127.0.0.1:7000/callback");
    assert_eq!((c.redirect.host, c.redirect.port), (LoopbackHost::V4, 7000));
    assert_eq!(c.redirect.path, "/callback");
    let v6 = "ATL_REDIRECT_URI=http://[::1]:7000\n";
    let c = Fixture::new().file(&format!("{MINIMAL}{v6}")).config();
    assert_eq!(c.redirect.host, LoopbackHost::V6);
}

#[test]
fn an_https_redirect_uri_asks_for_a_tls_listener() {
    let c = Fixture::new().file(&format!("{MINIMAL}ATL_REDIRECT_URI=https://localhost:8443/cb\n")).config();
    assert!(c.redirect.tls);
    assert_eq!((c.redirect.port, c.redirect.path.as_str()), (8443, "/cb"));
    let c = Fixture::new().file(&format!("{MINIMAL}ATL_REDIRECT_URI=https://127.0.0.1\n")).config();
    assert_eq!(c.redirect.port, 443);
}

const DC: &str = "ATL_PROVIDER=datacenter\nATL_BASE_URL=https://example.com/jira/\n";

#[test]
fn datacenter_endpoints_sit_below_the_base_url() {
    let c = Fixture::new().file(&format!("{MINIMAL}{DC}")).config();
    let p = &c.o().provider;
    assert_eq!(p.kind, Kind::DataCenter);
    assert_eq!(p.authorize_url.url.as_str(), "https://example.com/jira/rest/oauth2/latest/authorize");
    assert_eq!(p.token_url.url.as_str(), "https://example.com/jira/rest/oauth2/latest/token");
    let revoke = p.revoke_url.as_ref().expect("revoke endpoint");
    assert_eq!(revoke.url.as_str(), "https://example.com/jira/rest/oauth2/latest/revoke");
    assert_eq!(revoke.origin, "ATL_BASE_URL in /etc/atl/.env");
    assert_eq!(p.api_base.as_deref(), Some("https://example.com/jira"));
    assert_eq!((p.body, p.pkce), (BodyFormat::Form, true));
    assert!(c.o().custom_endpoints().is_empty());
    // Data Center issues a refresh token without it, and does not know the scope.
    assert_eq!(c.o().scope.value, "read:jira-work");
    assert!(!c.o().scope.added_offline_access);

    let root = Fixture::new()
        .file(&format!("{MINIMAL}ATL_PROVIDER=DataCenter\nATL_BASE_URL=https://jira.example.com\n"))
        .config();
    assert_eq!(root.o().provider.token_url.url.as_str(), "https://jira.example.com/rest/oauth2/latest/token");
}

#[test]
fn the_api_is_the_gateway_on_cloud_and_the_base_url_elsewhere() {
    let cloud = Fixture::new().file(MINIMAL).config();
    assert_eq!(
        (cloud.api.url.as_str(), cloud.api.origin.as_str()),
        ("https://api.atlassian.com/", "the default")
    );
    let dc = Fixture::new().file(&format!("{MINIMAL}{DC}")).config();
    assert_eq!(dc.api.url.as_str(), "https://example.com/jira");
    assert_eq!(dc.api.origin, "ATL_BASE_URL in /etc/atl/.env");
    let urls: Vec<(Bound, &str)> = dc.binding_urls();
    assert_eq!(
        urls,
        [
            (Bound::Token, "https://example.com/jira/rest/oauth2/latest/token"),
            (Bound::Api, "https://example.com/jira"),
            (Bound::Revoke, "https://example.com/jira/rest/oauth2/latest/revoke"),
        ]
    );
    let oauth1 = Fixture::new().file(OAUTH1).config();
    assert_eq!(oauth1.api.url.as_str(), "https://jira.example.com/jira");
    let err = Fixture::new().file(&format!("{MINIMAL}{DC}ATL_API_URL=https://api.example.com\n")).error();
    assert!(err.starts_with("ATL_API_URL in /etc/atl/.env is for Atlassian Cloud's API gateway"), "{err}");
}

#[test]
fn explicit_keys_override_the_provider() {
    let extra = "ATL_TOKEN_URL=https://proxy.example.com/t\nATL_TOKEN_BODY=json\n";
    let c = Fixture::new().file(&format!("{MINIMAL}{DC}{extra}")).config();
    assert_eq!(c.o().provider.token_url.url.as_str(), "https://proxy.example.com/t");
    assert_eq!(c.o().custom_endpoints(), [&c.o().provider.token_url]);
    assert_eq!(c.o().provider.body, BodyFormat::Json);
    let cloud = Fixture::new().file(&format!("{MINIMAL}ATL_PKCE=on\n")).config();
    assert!(cloud.o().provider.pkce);
    let cloud = Fixture::new().file(&format!("{MINIMAL}ATL_PKCE=off\n")).config();
    assert!(!cloud.o().provider.pkce);
}

#[test]
fn wrong_provider_combinations_name_the_keys() {
    let bad = |extra: &str| Fixture::new().file(&format!("{MINIMAL}{extra}\n")).error();
    let err = bad("ATL_PROVIDER=datacenter");
    assert!(err.contains("ATL_PROVIDER is datacenter (ATL_PROVIDER in /etc/atl/.env)"), "{err}");
    assert!(err.contains("ATL_BASE_URL is not set"), "{err}");
    let err = bad("ATL_BASE_URL=https://jira.example.com");
    assert!(
        err.starts_with("ATL_BASE_URL in /etc/atl/.env is set, but ATL_PROVIDER is cloud (the default)"),
        "{err}"
    );
    let err = bad("ATL_PROVIDER=server");
    assert!(
        err.starts_with(
            "ATL_PROVIDER in /etc/atl/.env: 'server' is not valid: use cloud, datacenter or oauth1"
        ),
        "{err}"
    );
    let err = bad(&format!("{DC}ATL_PKCE=off"));
    assert_eq!(
        err,
        "ATL_PKCE in /etc/atl/.env: PKCE is always on for Data Center (ATL_PROVIDER in /etc/atl/.env): \
         remove ATL_PKCE"
    );
    assert!(bad("ATL_PKCE=maybe").contains("use on or off"));
    let err = bad(&format!("{DC}ATL_SITE=https://x.atlassian.net"));
    assert!(err.starts_with("ATL_SITE in /etc/atl/.env names an Atlassian Cloud site"), "{err}");
    assert!(bad("ATL_PROVIDER=datacenter\nATL_BASE_URL=http://jira.example.com").contains("use https"));
    assert!(
        bad("ATL_PROVIDER=datacenter\nATL_BASE_URL=https://x.example.com/?a=1").contains("without ?query")
    );
}

const OAUTH1: &str = "ATL_PROVIDER=oauth1\nATL_BASE_URL=https://jira.example.com/jira/\n\
                      ATL_CONSUMER_KEY=atl-token-host\nATL_PRIVATE_KEY_FILE=keys/private.pem\n";

#[test]
fn oauth1_needs_no_client_and_puts_its_endpoints_below_the_base_url() {
    let c = Fixture::new().file(OAUTH1).config();
    let Auth::OAuth1(consumer) = &c.auth else { panic!("OAuth 1.0a: {c:?}") };
    assert_eq!(consumer.consumer_key, "atl-token-host");
    assert_eq!(consumer.private_key_file.path, PathBuf::from("/etc/atl/keys/private.pem"));
    assert_eq!(consumer.private_key_file.origin, "ATL_PRIVATE_KEY_FILE in /etc/atl/.env");
    assert_eq!(consumer.base_url, "https://jira.example.com/jira");
    let url = |e: &Endpoint| e.url.as_str().to_owned();
    assert_eq!(
        url(&consumer.request_token_url),
        "https://jira.example.com/jira/plugins/servlet/oauth/request-token"
    );
    assert_eq!(url(&consumer.authorize_url), "https://jira.example.com/jira/plugins/servlet/oauth/authorize");
    assert_eq!(
        url(&consumer.access_token_url),
        "https://jira.example.com/jira/plugins/servlet/oauth/access-token"
    );
    assert_eq!(c.issuer(), &consumer.access_token_url);
    assert_eq!(c.api_base(), Some("https://jira.example.com/jira"));
    let err = c.oauth2("`sites`").expect_err("no OAuth 2.0 client");
    assert!(err.to_string().starts_with("`sites` needs OAuth 2.0, but ATL_PROVIDER is oauth1"), "{err}");
}

#[test]
fn oauth1_settings_that_cannot_apply_or_are_missing_name_the_key() {
    let bad = |text: &str| Fixture::new().file(text).error();
    for key in ["ATL_TOKEN_URL=https://x.example.com/t", "ATL_PKCE=on", "ATL_TOKEN_BODY=form"] {
        let err = bad(&format!("{OAUTH1}{key}\n"));
        assert!(err.ends_with("applies to OAuth 2.0 only, but ATL_PROVIDER is oauth1: remove it"), "{err}");
    }
    let err = bad("ATL_PROVIDER=OAuth1\nATL_CONSUMER_KEY=k\nATL_PRIVATE_KEY_FILE=k.pem\n");
    assert!(err.contains("ATL_BASE_URL is not set"), "{err}");
    let err = bad("ATL_PROVIDER=oauth1\nATL_BASE_URL=https://j.example.com\nATL_PRIVATE_KEY_FILE=k.pem\n");
    assert!(err.starts_with("ATL_CONSUMER_KEY is not set"), "{err}");
    let err = bad("ATL_PROVIDER=oauth1\nATL_BASE_URL=https://j.example.com\nATL_CONSUMER_KEY=k\n");
    assert!(err.starts_with("ATL_PRIVATE_KEY_FILE is not set"), "{err}");
    assert!(
        bad(&format!("{OAUTH1}ATL_SITE=https://x.atlassian.net\n")).contains("names an Atlassian Cloud site")
    );
    assert!(bad("ATL_PROVIDER=oauth1\nATL_BASE_URL=http://jira.example.com\n").contains("use https"));
}

#[test]
fn unknown_keys_get_the_closest_known_one() {
    let vars: Vec<(String, String)> = [
        "ATL_CLIENTID",
        "ATL_CLIENT_ID",
        "JIRA_X",
        "ATL_SCOPES",
        "ATL_WHATEVER_ELSE_ENTIRELY",
        "ATL_CLIENTID",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), String::new()))
    .collect();
    assert_eq!(
        unknown_keys(&vars),
        vec![
            ("ATL_CLIENTID", Some("ATL_CLIENT_ID")),
            ("ATL_SCOPES", Some("ATL_SCOPE")),
            ("ATL_WHATEVER_ELSE_ENTIRELY", None)
        ]
    );
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
}

#[test]
fn comma_separated_scopes_are_refused_with_the_spaced_form() {
    let err = Fixture::new()
        .file("ATL_CLIENT_ID=id\nATL_CLIENT_SECRET=s\nATL_SCOPE=\"read:jira-work,read:jira-user, offline_access\"\n")
        .error();
    assert!(err.contains("scopes are separated by spaces, not commas"), "{err}");
    assert!(err.contains("write ATL_SCOPE=\"read:jira-work read:jira-user offline_access\""), "{err}");
}

#[test]
fn env_file_layers_in_order() {
    let cwd = Path::new("/w");
    let paths = |lookup: Lookup| -> Vec<(PathBuf, Layer, bool)> {
        let candidates = lookup.candidates(cwd).expect("candidates");
        candidates.into_iter().map(|c| (c.path, c.layer, c.missing.is_some())).collect()
    };
    let folder = Layer::Folder { trusted: false };
    let base =
        Lookup { xdg_config_home: Some("/xdg".into()), home: Some("/home/u".into()), ..Lookup::default() };
    // A file named replaces the folder's file; the user's own still fills what it leaves unset.
    let below_named = |named: &str| {
        vec![
            (PathBuf::from(named), Layer::Named, true),
            (PathBuf::from("/xdg/atl-token/.env"), Layer::User, false),
        ]
    };
    let flag = Lookup {
        env_file_flag: Some("a.env".into()),
        env_file_var: Some("b".into()),
        profile_flag: Some("prod".into()),
        ..base.clone()
    };
    assert_eq!(paths(flag), below_named("/w/a.env"));
    // A profile is the user's layer, and no folder's file may change the account it names.
    let profile =
        Lookup { profile_flag: Some("prod".into()), env_file_var: Some("b".into()), ..base.clone() };
    assert_eq!(paths(profile), vec![(PathBuf::from("/xdg/atl-token/prod/.env"), Layer::User, true)]);
    let var = Lookup { env_file_var: Some("/x/b.env".into()), profile_var: Some("p".into()), ..base.clone() };
    assert_eq!(paths(var), below_named("/x/b.env"));
    let profile_var = Lookup { profile_var: Some("sandbox".into()), ..base.clone() };
    assert_eq!(paths(profile_var), vec![(PathBuf::from("/xdg/atl-token/sandbox/.env"), Layer::User, true)]);
    assert_eq!(
        paths(base),
        vec![
            (PathBuf::from("/w/.env"), folder, false),
            (PathBuf::from("/w/jira.env"), folder, false),
            (PathBuf::from("/xdg/atl-token/.env"), Layer::User, false),
        ]
    );
    let home = Lookup { home: Some("/home/u".into()), ..Lookup::default() };
    assert_eq!(paths(home)[2], (PathBuf::from("/home/u/.config/atl-token/.env"), Layer::User, false));
}

fn layer(path: &str, text: &str, layer: Layer) -> EnvFile {
    EnvFile { path: PathBuf::from(path), vars: envfile::parse(text, None).expect("parses").vars, layer }
}

#[test]
fn a_lower_layer_fills_only_what_higher_ones_leave_unset() {
    let files = [
        layer("/w/bot.env", "ATL_SCOPE=READ\nATL_CLIENT_ID=\n", Layer::Named),
        layer(
            "/w/.env",
            "ATL_SCOPE=WRITE\nATL_CLIENT_ID=folder\nATL_HTTP_TIMEOUT=5\n",
            Layer::Folder { trusted: false },
        ),
        layer("/home/u/.config/atl-token/.env", "JIRA_CLIENT_ID=user\nATL_CLIENT_SECRET=s\n", Layer::User),
    ];
    let env = |name: &str| (name == "ATL_HTTP_TIMEOUT").then(|| "9".to_owned());
    let value = |key: Key| lookup_value(&env, &files, key);
    assert_eq!(value(SCOPE).as_deref(), Some("READ"), "the named file over the folder's");
    assert_eq!(value(CLIENT_ID).as_deref(), Some("folder"), "empty is unset; the folder's over the user's");
    assert_eq!(value(CLIENT_SECRET).as_deref(), Some("s"), "the user's fills the rest");
    assert_eq!(value(HTTP_TIMEOUT).as_deref(), Some("9"), "the environment over every file");
}

#[test]
fn the_token_file_sits_beside_the_highest_file_of_the_users_choosing() {
    let no_env = |_: &str| None;
    let cwd = Path::new("/w");
    let untrusted = layer("/w/.env", "ATL_SCOPE=x\n", Layer::Folder { trusted: false });
    let trusted = layer("/w/.env", "ATL_TOKEN_FILE=t/custom.json\n", Layer::Folder { trusted: true });
    let user = layer("/home/u/.config/atl-token/.env", "ATL_SCOPE=y\n", Layer::User);
    let user_named = layer("/home/u/.config/atl-token/.env", "ATL_TOKEN_FILE=mine.json\n", Layer::User);
    let at = |files: Vec<EnvFile>| token_file_in(&no_env, &files, cwd);
    assert_eq!(at(vec![]), PathBuf::from("/w/token.json"));
    assert_eq!(at(vec![untrusted]), PathBuf::from("/w/token.json"));
    let untrusted = layer("/w/.env", "ATL_SCOPE=x\n", Layer::Folder { trusted: false });
    assert_eq!(at(vec![untrusted, user]), PathBuf::from("/home/u/.config/atl-token/token.json"));
    assert_eq!(at(vec![trusted]), PathBuf::from("/w/t/custom.json"));
    assert_eq!(at(vec![user_named]), PathBuf::from("/home/u/.config/atl-token/mine.json"));
}

#[test]
fn guarded_keys_are_those_that_run_pick_a_destination_or_the_token_file() {
    for name in [
        "ATL_ON_ROTATE",
        "ATL_TOKEN_URL",
        "JIRA_DOMAIN",
        "TOKEN_FILE_NAME",
        "ATL_STORE",
        "ATL_LISTEN",
        "ATL_CA_FILE",
        "ATL_SOME_NEW_URL",
    ] {
        assert!(guarded(name), "{name}");
    }
    for name in
        ["ATL_CLIENT_ID", "JIRA_CLIENT_SECRET", "ATL_SCOPE", "REFRESH_PORT", "DATABASE_URL", "JIRA_URL"]
    {
        assert!(!guarded(name), "{name}");
    }
    for name in ["ATL_CLIENT_ID", "JIRA_SCOPE", "REFRESH_PORT", "TOKEN_FILE_NAME", "ATL_TYPO"] {
        assert!(names_setting(name), "{name}");
    }
    for name in ["DATABASE_URL", "NODE_ENV", "JIRA_URL", "JIRA_API_TOKEN"] {
        assert!(!names_setting(name), "{name}");
    }
}

#[test]
fn profile_names_are_plain_folder_names() {
    let lookup = Lookup { home: Some("/home/u".into()), ..Lookup::default() };
    for bad in ["", "..", ".hidden", "a/b", "../x", "a b"] {
        let err = lookup.profile_env_file(bad, "--profile").unwrap_err().to_string();
        assert!(err.contains("is not a profile name"), "{bad}: {err}");
    }
    assert_eq!(
        lookup.profile_env_file("prod-2.eu_1", "--profile").expect("plain"),
        PathBuf::from("/home/u/.config/atl-token/prod-2.eu_1/.env")
    );
}

#[test]
fn debug_output_never_holds_the_secret() {
    let c = Fixture::new().file(MINIMAL).config();
    assert!(!format!("{c:?}").contains("secret\""), "{c:?}");
    assert!(format!("{c:?}").contains("(redacted)"));
}

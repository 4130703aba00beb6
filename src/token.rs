//! The token file's content: the token endpoint's answer as the server sent it, plus the
//! times atl-token adds (`expires_at`, `obtained_at`, `family_started_at`).
//!
//! Fields stay at the top level, so `jq -r .access_token token.json` and the seed's bash
//! script keep working on a file atl-token wrote, and atl-token reads the seed's files.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// When the access token stops working (Unix seconds).
pub const EXPIRES_AT: &str = "expires_at";
/// When this token pair was issued (Unix seconds).
pub const OBTAINED_AT: &str = "obtained_at";
/// When the user consented; Atlassian ends a token family a year after it.
pub const FAMILY_STARTED_AT: &str = "family_started_at";
/// The token endpoint that issued the refresh token, and the only one it is ever sent to.
pub const TOKEN_URL: &str = "token_url";
/// The revoke endpoint the login recorded (Data Center), the only one `logout` sends to.
pub const REVOKE_URL: &str = "revoke_url";
/// The API root the login recorded (Cloud's gateway; the Server or Data Center base URL),
/// the only one the access token or a signature is sent to.
pub const API_URL: &str = "api_url";
/// The Cloud site (URL) whose cloud id is cached in [`CLOUD_ID`].
pub const CLOUD_SITE: &str = "cloud_site";
/// The cloud id looked up for [`CLOUD_SITE`], so that printing it needs no network call.
pub const CLOUD_ID: &str = "cloud_id";
/// `client_credentials` for a service account's token set, which holds nothing that cannot
/// be fetched again; absent for a family from a login.
pub const GRANT: &str = "grant";
/// Where and when the family was handed to another owner (`psoxy push`): atl-token never
/// spends it again.
pub const HANDED_OVER: &str = "handed_over";
const ACCESS_TOKEN: &str = "access_token";
const SCOPE: &str = "scope";
const REFRESH_TOKEN: &str = "refresh_token";
const EXPIRES_IN: &str = "expires_in";
const OAUTH_TOKEN: &str = "oauth_token";
const OAUTH_EXPIRES_IN: &str = "oauth_expires_in";

/// The fields atl-token writes itself, which are never taken from a server's answer.
const OWN_FIELDS: [&str; 10] = [
    EXPIRES_AT,
    OBTAINED_AT,
    FAMILY_STARTED_AT,
    TOKEN_URL,
    REVOKE_URL,
    API_URL,
    CLOUD_SITE,
    CLOUD_ID,
    GRANT,
    HANDED_OVER,
];
/// `print`'s `--min-valid` when none is given, for tokens that live three times as long.
pub const DEFAULT_MIN_VALID: Duration = Duration::from_secs(60);
/// An OAuth 2.0 access token said to live longer than this is counted as living this long
/// (Atlassian's live an hour): a server cannot make `print` stop refreshing.
pub const MAX_ACCESS_LIFETIME: u64 = 24 * 3600;
/// An OAuth 1.0a access token said to live longer than this is counted as living this long
/// (Atlassian's live five years).
pub const MAX_OAUTH1_LIFETIME: u64 = 10 * 366 * 24 * 3600;

/// The destinations a token family is bound to: the login records each, and nothing from
/// the family is sent to any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The token endpoint (OAuth 2.0) or access-token endpoint (OAuth 1.0a).
    Token,
    /// Where `logout` revokes the refresh token.
    Revoke,
    /// Where API calls go.
    Api,
}

impl Bound {
    pub const ALL: [Self; 3] = [Self::Token, Self::Api, Self::Revoke];

    /// The token file's field that records it.
    pub fn field(self) -> &'static str {
        match self {
            Self::Token => TOKEN_URL,
            Self::Revoke => REVOKE_URL,
            Self::Api => API_URL,
        }
    }

    /// What to call it in messages.
    pub fn title(self) -> &'static str {
        match self {
            Self::Token => "token endpoint",
            Self::Revoke => "revoke endpoint",
            Self::Api => "API",
        }
    }
}

/// A destination as recorded and compared: the URL without a trailing slash.
pub fn bound_form(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// Whether `text` is an RFC 6750 `b64token` (token68): letters, digits and `-._~+/`, then
/// `=` padding. Anything else (a line break, a space, a quote, a backslash) could break out
/// of the header or shell word it is put in, so it is not accepted as a token.
pub fn is_token68(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Whether `text` can be a cloud id: letters, digits and `-` (Atlassian's are UUIDs).
pub fn is_cloud_id(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Unix seconds now.
pub fn now() -> u64 {
    clock().as_secs()
}

/// The time since the Unix epoch, to the nanosecond: what a token's time left is measured
/// against, so that a margin of one second means one second, not anything down to zero.
pub fn clock() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// A token set as stored. Its `Debug` never shows a token.
#[derive(Clone, PartialEq)]
pub struct Token {
    fields: Map<String, Value>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .field("expires_at", &self.expires_at())
            .finish()
    }
}

/// What is wrong with a token file's content. Never includes the content.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    NotJson {
        line: usize,
        column: usize,
    },
    NotAnObject,
    /// Nothing but white space.
    Empty,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson { line, column } => write!(f, "not valid JSON (line {line}, column {column})"),
            Self::NotAnObject => f.write_str("not a JSON object"),
            Self::Empty => f.write_str("empty"),
        }
    }
}

impl std::error::Error for ParseError {}

impl Token {
    /// Parses a token file. Fields atl-token does not know are kept.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ParseError::Empty);
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ParseError::NotJson { line: e.line(), column: e.column() })?;
        match value {
            Value::Object(fields) => Ok(Self { fields }),
            _ => Err(ParseError::NotAnObject),
        }
    }

    /// The token set's fields, as stored.
    #[cfg_attr(not(shared_store), allow(dead_code))]
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// A token set from stored fields.
    #[cfg_attr(not(shared_store), allow(dead_code))]
    pub fn from_fields(fields: Map<String, Value>) -> Self {
        Self { fields }
    }

    /// A token from a successful answer of the token endpoint (which must hold an access
    /// token), with the times and `bindings` (the destinations of this family) added, and
    /// the previous set's refresh token, family start and cloud id kept. Fields that are
    /// atl-token's own are never taken from the answer, and `expires_in` counts for at most
    /// [`MAX_ACCESS_LIFETIME`]. Returns whether it was capped, too.
    pub fn from_response(
        response: Map<String, Value>,
        previous: Option<&Token>,
        now: u64,
        bindings: &[(Bound, &str)],
    ) -> (Self, bool) {
        let mut fields = response;
        for key in OWN_FIELDS {
            fields.remove(key);
        }
        let keep: &[&str] = match previous {
            Some(_) => &[REFRESH_TOKEN, FAMILY_STARTED_AT, CLOUD_SITE, CLOUD_ID],
            None => &[],
        };
        for key in keep {
            if !fields.contains_key(*key)
                && let Some(value) = previous.and_then(|p| p.fields.get(*key))
            {
                fields.insert((*key).to_owned(), value.clone());
            }
        }
        fields.entry(FAMILY_STARTED_AT).or_insert(now.into());
        let capped = set_expiry(&mut fields, EXPIRES_IN, MAX_ACCESS_LIFETIME, now);
        fields.insert(OBTAINED_AT.to_owned(), now.into());
        let mut token = Self { fields };
        token.bind(bindings);
        (token, capped)
    }

    /// A token set from an OAuth 1.0a access-token answer (`oauth_token`, `oauth_token_secret`,
    /// `oauth_expires_in`, ...), with `expires_at` (counting at most [`MAX_OAUTH1_LIFETIME`]),
    /// `obtained_at` and `bindings` added. Returns whether the lifetime was capped, too.
    pub fn from_oauth1(answer: &[(String, String)], now: u64, bindings: &[(Bound, &str)]) -> (Self, bool) {
        let mut fields = Map::new();
        for (name, value) in answer {
            if !OWN_FIELDS.contains(&name.as_str()) {
                fields.insert(name.clone(), value.clone().into());
            }
        }
        let capped = set_expiry(&mut fields, OAUTH_EXPIRES_IN, MAX_OAUTH1_LIFETIME, now);
        fields.insert(OBTAINED_AT.to_owned(), now.into());
        fields.insert(FAMILY_STARTED_AT.to_owned(), now.into());
        let mut token = Self { fields };
        token.bind(bindings);
        (token, capped)
    }

    /// Records `bindings`, replacing what was recorded for each.
    pub fn bind(&mut self, bindings: &[(Bound, &str)]) {
        for (which, url) in bindings {
            self.fields.insert(which.field().to_owned(), bound_form(url).into());
        }
    }

    /// Records that this set came from a service account's client credentials: nothing in
    /// it is irreplaceable, and it has no family.
    pub fn for_service_account(mut self) -> Self {
        self.fields.insert(GRANT.to_owned(), "client_credentials".into());
        self.fields.remove(FAMILY_STARTED_AT);
        self
    }

    /// Records that the family went to `to` at `at` (Unix seconds): another owner spends it now.
    pub fn handed_over_to(mut self, to: &str, at: u64) -> Self {
        self.fields.insert(HANDED_OVER.to_owned(), serde_json::json!({"to": to, "at": at}));
        self
    }

    /// Where and when the family was handed over, if it was.
    pub fn handed_over(&self) -> Option<(&str, u64)> {
        let record = self.fields.get(HANDED_OVER)?;
        Some((record.get("to")?.as_str()?, record.get("at")?.as_u64()?))
    }

    /// Whether this set came from a service account's client credentials.
    pub fn is_client_credentials(&self) -> bool {
        self.string(GRANT) == Some("client_credentials")
    }

    /// The recorded destination `which`, if the file has one.
    pub fn bound(&self, which: Bound) -> Option<&str> {
        self.string(which.field())
    }

    /// The OAuth 1.0a access token (`oauth_token`), which signed requests carry.
    pub fn oauth1_token(&self) -> Option<&str> {
        self.string(OAUTH_TOKEN)
    }

    pub fn access_token(&self) -> Option<&str> {
        self.string(ACCESS_TOKEN)
    }

    pub fn refresh_token(&self) -> Option<&str> {
        self.string(REFRESH_TOKEN)
    }

    /// When this token set was issued (Unix seconds), as recorded.
    pub fn obtained_at(&self) -> Option<u64> {
        self.fields.get(OBTAINED_AT).and_then(as_seconds)
    }

    /// When the user consented, which started this token family (Unix seconds), as recorded.
    pub fn family_started_at(&self) -> Option<u64> {
        self.fields.get(FAMILY_STARTED_AT).and_then(as_seconds)
    }

    /// The scopes the server granted, as its answer listed them (space-separated).
    pub fn granted_scope(&self) -> Option<&str> {
        self.fields.get(SCOPE).and_then(Value::as_str)
    }

    /// The cached cloud id and the site it belongs to: `(site URL, cloud id)`.
    pub fn cloud(&self) -> Option<(&str, &str)> {
        Some((self.string(CLOUD_SITE)?, self.string(CLOUD_ID)?))
    }

    /// This token set with `(site URL, cloud id)` cached.
    pub fn with_cloud(mut self, site: &str, id: &str) -> Self {
        self.fields.insert(CLOUD_SITE.to_owned(), site.into());
        self.fields.insert(CLOUD_ID.to_owned(), id.into());
        self
    }

    fn string(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// When the access token expires (Unix seconds), as recorded.
    pub fn expires_at(&self) -> Option<u64> {
        self.fields.get(EXPIRES_AT).and_then(as_seconds)
    }

    /// How long an access token lives from when it is issued (`expires_in`, at most
    /// [`MAX_ACCESS_LIFETIME`]).
    pub fn lifetime(&self) -> Option<Duration> {
        self.fields
            .get(EXPIRES_IN)
            .and_then(as_seconds)
            .map(|s| Duration::from_secs(s.min(MAX_ACCESS_LIFETIME)))
    }

    /// How long the access token must still be valid for `print` to use it without a
    /// refresh, when `--min-valid` is not given: [`DEFAULT_MIN_VALID`], or a third of the
    /// token's lifetime when that is shorter (a Data Center admin may set minutes).
    pub fn default_min_valid(&self) -> Duration {
        self.lifetime().map_or(DEFAULT_MIN_VALID, |lifetime| (lifetime / 3).min(DEFAULT_MIN_VALID))
    }

    /// [`Token::expires_at`], or for a file written by the seed's script, which has none,
    /// `expires_in` counted from `written_at` (the file's mtime).
    pub fn expires_at_or_guess(&self, written_at: Option<u64>) -> Option<u64> {
        self.expires_at().or_else(|| {
            let expires_in = self.fields.get(EXPIRES_IN).and_then(as_seconds)?;
            Some(written_at?.saturating_add(expires_in))
        })
    }

    /// How long the access token stays valid from `now` (since the Unix epoch, see
    /// [`clock`]); zero when expired or unknown.
    pub fn remaining(&self, now: Duration, written_at: Option<u64>) -> Duration {
        let expires_at = self.expires_at_or_guess(written_at).unwrap_or(0);
        Duration::from_secs(expires_at).saturating_sub(now)
    }

    /// The file's bytes: pretty JSON, as the seed's `jq` wrote it, and a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(&self.fields).expect("a JSON map always serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Sets `expires_at` from the answer's `key` (seconds), counting at most `max`; without one
/// removes it, since unknown is safer than stale. Returns whether the answer said more.
fn set_expiry(fields: &mut Map<String, Value>, key: &str, max: u64, now: u64) -> bool {
    match fields.get(key).and_then(as_seconds) {
        Some(secs) => {
            fields.insert(EXPIRES_AT.to_owned(), now.saturating_add(secs.min(max)).into());
            secs > max
        }
        None => {
            fields.remove(EXPIRES_AT);
            false
        }
    }
}

/// Seconds as a JSON number or numeric string (some servers send `"3600"`).
fn as_seconds(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "https://auth.example.com/oauth/token";
    const BOUND: &[(Bound, &str)] = &[(Bound::Token, URL), (Bound::Api, "https://api.example.com/")];

    /// The token set from an answer, bound as the tests' settings say.
    fn issued(answer: Value, previous: Option<&Token>, now: u64) -> Token {
        Token::from_response(map(answer), previous, now, BOUND).0
    }

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => panic!("test value is an object"),
        }
    }

    #[test]
    fn a_login_answer_gets_times_and_a_family_start() {
        let answer = map(json!({"access_token": "a1", "refresh_token": "r1", "expires_in": 3600,
                                "scope": "x", "token_type": "Bearer"}));
        let t = Token::from_response(answer, None, 1000, BOUND).0;
        assert_eq!(t.access_token(), Some("a1"));
        assert_eq!(t.bound(Bound::Token), Some(URL));
        assert_eq!(t.bound(Bound::Api), Some("https://api.example.com"));
        assert_eq!(t.bound(Bound::Revoke), None);
        assert_eq!(t.obtained_at(), Some(1000));
        assert_eq!(t.refresh_token(), Some("r1"));
        assert_eq!(t.expires_at(), Some(4600));
        assert_eq!(t.fields[OBTAINED_AT], json!(1000));
        assert_eq!(t.fields[FAMILY_STARTED_AT], json!(1000));
        assert_eq!(t.fields["scope"], json!("x"), "unknown fields are kept");

        let claims_another = map(json!({"access_token": "a", "token_url": "https://evil.example/"}));
        let t = Token::from_response(claims_another, None, 1, BOUND).0;
        assert_eq!(t.bound(Bound::Token), Some(URL), "the server cannot name another issuer");
    }

    #[test]
    fn the_cached_cloud_id_survives_a_refresh_and_the_server_cannot_set_it() {
        let first =
            issued(json!({"access_token": "a1"}), None, 1).with_cloud("https://x.atlassian.net", "id-1");
        let answer = map(json!({"access_token": "a2", "cloud_id": "evil", "cloud_site": "https://evil/"}));
        let second = Token::from_response(answer, Some(&first), 2, BOUND).0;
        assert_eq!(second.cloud(), Some(("https://x.atlassian.net", "id-1")));
        let fresh = issued(json!({"access_token": "a", "cloud_id": "evil"}), None, 1);
        assert_eq!(fresh.cloud(), None);
    }

    #[test]
    fn a_refresh_keeps_the_family_start_and_takes_the_rotated_token() {
        let first = issued(json!({"access_token": "a1", "refresh_token": "r1"}), None, 1000);
        let answer = map(json!({"access_token": "a2", "refresh_token": "r2", "expires_in": "60"}));
        let second = Token::from_response(answer, Some(&first), 2000, BOUND).0;
        assert_eq!(second.refresh_token(), Some("r2"));
        assert_eq!(second.fields[FAMILY_STARTED_AT], json!(1000));
        assert_eq!(second.fields[OBTAINED_AT], json!(2000));
        assert_eq!(second.expires_at(), Some(2060));
    }

    #[test]
    fn an_answer_without_refresh_token_keeps_the_old_one() {
        let first = issued(json!({"access_token": "a1", "refresh_token": "r1"}), None, 1);
        let second = issued(json!({"access_token": "a2"}), Some(&first), 2);
        assert_eq!(second.refresh_token(), Some("r1"));
        assert_eq!(second.access_token(), Some("a2"));
    }

    #[test]
    fn atl_tokens_own_fields_never_come_from_the_answer() {
        let first = issued(json!({"access_token": "a1", "refresh_token": "r1"}), None, 1000);
        let answer = map(json!({"access_token": "a2", "family_started_at": u64::MAX, "obtained_at": 5,
                                "expires_at": u64::MAX, "api_url": "https://evil.example", "revoke_url": "x"}));
        let (second, capped) = Token::from_response(answer, Some(&first), 2000, BOUND);
        assert!(!capped);
        assert_eq!(second.family_started_at(), Some(1000), "the server cannot move the family's start");
        assert_eq!((second.obtained_at(), second.expires_at()), (Some(2000), None));
        assert_eq!(second.bound(Bound::Api), Some("https://api.example.com"));
        assert_eq!(second.bound(Bound::Revoke), None);
        let fresh = issued(json!({"access_token": "a", "family_started_at": 7}), None, 9);
        assert_eq!(fresh.family_started_at(), Some(9));
    }

    #[test]
    fn a_huge_expires_in_counts_for_a_day_and_says_so() {
        let answer = map(json!({"access_token": "a", "expires_in": u64::MAX}));
        let (t, capped) = Token::from_response(answer, None, 1000, BOUND);
        assert!(capped);
        assert_eq!(t.expires_at(), Some(1000 + MAX_ACCESS_LIFETIME));
        assert_eq!(t.lifetime(), Some(Duration::from_secs(MAX_ACCESS_LIFETIME)));
        let answer = [
            ("oauth_token".to_owned(), "t".to_owned()),
            ("oauth_expires_in".to_owned(), u64::MAX.to_string()),
            ("token_url".to_owned(), "https://evil.example".to_owned()),
        ];
        let (t, capped) = Token::from_oauth1(&answer, 10, BOUND);
        assert!(capped);
        assert_eq!(t.expires_at(), Some(10 + MAX_OAUTH1_LIFETIME));
        assert_eq!(t.bound(Bound::Token), Some(URL));
        let normal = [
            ("oauth_token".to_owned(), "t".to_owned()),
            ("oauth_expires_in".to_owned(), "157680000".to_owned()),
        ];
        assert!(!Token::from_oauth1(&normal, 10, BOUND).1);
    }

    #[test]
    fn only_token68_is_a_token_and_only_letters_digits_and_dashes_a_cloud_id() {
        for good in ["abc", "eyJ.a-b_c~d+e/f==", "a="] {
            assert!(is_token68(good), "{good}");
        }
        for bad in ["", "=", "abc\r\nX-Injected: yes", "a b", "a\\", "a'b", "=a", "é"] {
            assert!(!is_token68(bad), "{bad:?}");
        }
        assert!(is_cloud_id("11111111-2222-3333-4444-555555555555"));
        for bad in ["", "x; touch /tmp/pwned; #", "a/b", "a b"] {
            assert!(!is_cloud_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_seed_file_is_read_and_its_expiry_guessed_from_the_write_time() {
        let seed = br#"{
  "access_token": "eyJ",
  "expires_in": 3600,
  "token_type": "Bearer",
  "refresh_token": "eyR",
  "scope": "offline_access read:jira-work"
}
"#;
        let t = Token::parse(seed).expect("seed file parses");
        assert_eq!(t.refresh_token(), Some("eyR"));
        assert_eq!(t.expires_at(), None);
        assert_eq!(t.expires_at_or_guess(Some(500)), Some(4100));
        assert_eq!(t.remaining(Duration::from_secs(4000), Some(500)), Duration::from_secs(100));
        assert_eq!(t.remaining(Duration::from_millis(4_099_500), Some(500)), Duration::from_millis(500));
        assert_eq!(t.remaining(Duration::from_secs(5000), Some(500)), Duration::ZERO);
        assert_eq!(t.remaining(Duration::ZERO, None), Duration::ZERO, "unknown expiry counts as expired");
    }

    #[test]
    fn bytes_round_trip_and_end_with_a_newline() {
        let t = issued(json!({"access_token": "a", "zeta": 1, "alpha": 2}), None, 7);
        let bytes = t.to_bytes();
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert_eq!(Token::parse(&bytes), Ok(t.clone()));
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(text.find("zeta") < text.find("alpha"), "the server's field order is kept");
    }

    #[test]
    fn broken_files_are_described_without_their_content() {
        assert_eq!(Token::parse(b"[1]"), Err(ParseError::NotAnObject));
        let err = Token::parse(b"{\"access_token\": \"secret-ish").unwrap_err();
        assert!(matches!(err, ParseError::NotJson { line: 1, .. }));
        assert!(!err.to_string().contains("secret"));
        assert!(Token::parse(b"").is_err());
    }

    #[test]
    fn debug_hides_the_tokens() {
        let t = issued(json!({"access_token": "AAA", "refresh_token": "RRR"}), None, 1);
        let debug = format!("{t:?}");
        assert!(!debug.contains("AAA") && !debug.contains("RRR"), "{debug}");
    }

    proptest::proptest! {
        #[test]
        fn prop_any_token_file_is_read_or_refused_without_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            if let Ok(token) = Token::parse(&bytes) {
                let _ = (token.remaining(Duration::ZERO, Some(0)), token.refresh_token(), token.to_bytes());
            }
        }
    }
}

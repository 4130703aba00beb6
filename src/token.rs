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
/// The Cloud site (URL) whose cloud id is cached in [`CLOUD_ID`].
pub const CLOUD_SITE: &str = "cloud_site";
/// The cloud id looked up for [`CLOUD_SITE`], so that printing it needs no network call.
pub const CLOUD_ID: &str = "cloud_id";
const ACCESS_TOKEN: &str = "access_token";
const SCOPE: &str = "scope";
const REFRESH_TOKEN: &str = "refresh_token";
const EXPIRES_IN: &str = "expires_in";
const OAUTH_TOKEN: &str = "oauth_token";
const OAUTH_EXPIRES_IN: &str = "oauth_expires_in";

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
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
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// A token set from stored fields.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub fn from_fields(fields: Map<String, Value>) -> Self {
        Self { fields }
    }

    /// A token from a successful answer of the token endpoint `token_url` (which must hold an
    /// access token), with the times and the endpoint added, and the previous set's refresh
    /// token and family start kept when the answer has none.
    pub fn from_response(
        response: Map<String, Value>,
        previous: Option<&Token>,
        now: u64,
        token_url: &str,
    ) -> Self {
        let mut fields = response;
        // What atl-token looked up, not what the server says, survives a refresh.
        for key in [CLOUD_SITE, CLOUD_ID] {
            fields.remove(key);
            if let Some(value) = previous.and_then(|p| p.fields.get(key)) {
                fields.insert(key.to_owned(), value.clone());
            }
        }
        if let Some(prev) = previous {
            for key in [REFRESH_TOKEN, FAMILY_STARTED_AT] {
                if !fields.contains_key(key)
                    && let Some(value) = prev.fields.get(key)
                {
                    fields.insert(key.to_owned(), value.clone());
                }
            }
        } else {
            fields.insert(FAMILY_STARTED_AT.to_owned(), now.into());
        }
        let expires_in = fields.get(EXPIRES_IN).and_then(as_seconds);
        match expires_in {
            Some(secs) => fields.insert(EXPIRES_AT.to_owned(), now.saturating_add(secs).into()),
            // A stale expiry from the server's answer must not survive: unknown is safer.
            None => fields.remove(EXPIRES_AT),
        };
        fields.insert(OBTAINED_AT.to_owned(), now.into());
        fields.insert(TOKEN_URL.to_owned(), token_url.into());
        Self { fields }
    }

    /// A token set from an OAuth 1.0a access-token answer (`oauth_token`, `oauth_token_secret`,
    /// `oauth_expires_in`, ...), with `expires_at`, `obtained_at` and the endpoint added.
    pub fn from_oauth1(answer: &[(String, String)], now: u64, access_token_url: &str) -> Self {
        let mut fields = Map::new();
        for (name, value) in answer {
            fields.insert(name.clone(), value.clone().into());
        }
        let expires_in = fields.get(OAUTH_EXPIRES_IN).and_then(as_seconds);
        if let Some(secs) = expires_in {
            fields.insert(EXPIRES_AT.to_owned(), now.saturating_add(secs).into());
        }
        fields.insert(OBTAINED_AT.to_owned(), now.into());
        fields.insert(FAMILY_STARTED_AT.to_owned(), now.into());
        fields.insert(TOKEN_URL.to_owned(), access_token_url.into());
        Self { fields }
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

    /// The token endpoint that issued this token set; `None` for a file written before
    /// atl-token recorded it, such as the seed script's.
    pub fn token_url(&self) -> Option<&str> {
        self.string(TOKEN_URL)
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

    /// How long an access token lives from when it is issued (`expires_in`), as the server said.
    pub fn lifetime(&self) -> Option<Duration> {
        self.fields.get(EXPIRES_IN).and_then(as_seconds).map(Duration::from_secs)
    }

    /// [`Token::expires_at`], or for a file written by the seed's script, which has none,
    /// `expires_in` counted from `written_at` (the file's mtime).
    pub fn expires_at_or_guess(&self, written_at: Option<u64>) -> Option<u64> {
        self.expires_at().or_else(|| {
            let expires_in = self.fields.get(EXPIRES_IN).and_then(as_seconds)?;
            Some(written_at?.saturating_add(expires_in))
        })
    }

    /// How long the access token stays valid from `now`; zero when expired or unknown.
    pub fn remaining(&self, now: u64, written_at: Option<u64>) -> Duration {
        let expires_at = self.expires_at_or_guess(written_at).unwrap_or(0);
        Duration::from_secs(expires_at.saturating_sub(now))
    }

    /// The file's bytes: pretty JSON, as the seed's `jq` wrote it, and a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(&self.fields).expect("a JSON map always serializes");
        bytes.push(b'\n');
        bytes
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
        let t = Token::from_response(answer, None, 1000, URL);
        assert_eq!(t.access_token(), Some("a1"));
        assert_eq!(t.token_url(), Some(URL));
        assert_eq!(t.obtained_at(), Some(1000));
        assert_eq!(t.refresh_token(), Some("r1"));
        assert_eq!(t.expires_at(), Some(4600));
        assert_eq!(t.fields[OBTAINED_AT], json!(1000));
        assert_eq!(t.fields[FAMILY_STARTED_AT], json!(1000));
        assert_eq!(t.fields["scope"], json!("x"), "unknown fields are kept");

        let claims_another = map(json!({"access_token": "a", "token_url": "https://evil.example/"}));
        let t = Token::from_response(claims_another, None, 1, URL);
        assert_eq!(t.token_url(), Some(URL), "the server cannot name another issuer");
    }

    #[test]
    fn the_cached_cloud_id_survives_a_refresh_and_the_server_cannot_set_it() {
        let first = Token::from_response(map(json!({"access_token": "a1"})), None, 1, URL)
            .with_cloud("https://x.atlassian.net", "id-1");
        let answer = map(json!({"access_token": "a2", "cloud_id": "evil", "cloud_site": "https://evil/"}));
        let second = Token::from_response(answer, Some(&first), 2, URL);
        assert_eq!(second.cloud(), Some(("https://x.atlassian.net", "id-1")));
        let fresh = Token::from_response(map(json!({"access_token": "a", "cloud_id": "evil"})), None, 1, URL);
        assert_eq!(fresh.cloud(), None);
    }

    #[test]
    fn a_refresh_keeps_the_family_start_and_takes_the_rotated_token() {
        let first =
            Token::from_response(map(json!({"access_token": "a1", "refresh_token": "r1"})), None, 1000, URL);
        let answer = map(json!({"access_token": "a2", "refresh_token": "r2", "expires_in": "60"}));
        let second = Token::from_response(answer, Some(&first), 2000, URL);
        assert_eq!(second.refresh_token(), Some("r2"));
        assert_eq!(second.fields[FAMILY_STARTED_AT], json!(1000));
        assert_eq!(second.fields[OBTAINED_AT], json!(2000));
        assert_eq!(second.expires_at(), Some(2060));
    }

    #[test]
    fn an_answer_without_refresh_token_keeps_the_old_one() {
        let first =
            Token::from_response(map(json!({"access_token": "a1", "refresh_token": "r1"})), None, 1, URL);
        let second = Token::from_response(map(json!({"access_token": "a2"})), Some(&first), 2, URL);
        assert_eq!(second.refresh_token(), Some("r1"));
        assert_eq!(second.access_token(), Some("a2"));
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
        assert_eq!(t.remaining(4000, Some(500)), Duration::from_secs(100));
        assert_eq!(t.remaining(5000, Some(500)), Duration::ZERO);
        assert_eq!(t.remaining(0, None), Duration::ZERO, "unknown expiry counts as expired");
    }

    #[test]
    fn bytes_round_trip_and_end_with_a_newline() {
        let t = Token::from_response(map(json!({"access_token": "a", "zeta": 1, "alpha": 2})), None, 7, URL);
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
        let t =
            Token::from_response(map(json!({"access_token": "AAA", "refresh_token": "RRR"})), None, 1, URL);
        let debug = format!("{t:?}");
        assert!(!debug.contains("AAA") && !debug.contains("RRR"), "{debug}");
    }

    proptest::proptest! {
        #[test]
        fn prop_any_token_file_is_read_or_refused_without_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            if let Ok(token) = Token::parse(&bytes) {
                let _ = (token.remaining(0, Some(0)), token.refresh_token(), token.to_bytes());
            }
        }
    }
}

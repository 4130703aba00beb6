//! OAuth 2.0 as Atlassian speaks it: the authorize URL, token request bodies, and what the
//! token endpoint's answers mean. Pure: no I/O, so every rule here is unit-tested.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use crate::config::OAuth2;
use crate::provider::BodyFormat;
use crate::provider::Delivery;

/// An error excerpt longer than this is cut.
const EXCERPT_CHARS: usize = 160;
/// A `Retry-After` longer than this is not worth waiting for in one run.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A PKCE (RFC 7636) verifier and its S256 challenge, made for one login.
pub struct Pkce {
    verifier: String,
}

impl Pkce {
    /// A verifier of 64 hex digits (244 random bits from two v4 UUIDs): within the
    /// `[0-9A-Za-z~-._]{43,128}` that RFC 7636 and Data Center require.
    pub fn new() -> Self {
        let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        Self { verifier }
    }

    pub fn verifier(&self) -> &str {
        &self.verifier
    }

    /// `BASE64URL(SHA256(verifier))`, without padding.
    pub fn challenge(&self) -> String {
        challenge_of(&self.verifier)
    }
}

/// The S256 challenge for a verifier.
pub fn challenge_of(verifier: &str) -> String {
    use base64::Engine;
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The URL the user opens to consent, with every parameter percent-encoded.
///
/// Spaces (between scopes) are sent as `%20`, as Atlassian's documentation writes them,
/// rather than the `+` of form encoding.
pub fn authorize_url(oauth2: &OAuth2, redirect_uri: &str, state: &str, pkce: Option<&Pkce>) -> Url {
    let provider = &oauth2.provider;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("client_id", &oauth2.client_id)
        .append_pair("scope", &oauth2.scope.value)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", state)
        .append_pair("response_type", "code")
        .extend_pairs(provider.kind.authorize_extras());
    if let Some(pkce) = pkce {
        query.append_pair("code_challenge", &pkce.challenge()).append_pair("code_challenge_method", "S256");
    }
    // A literal '+' was encoded as %2B, so every '+' left stands for a space.
    let query = query.finish().replace('+', "%20");
    let mut url = provider.authorize_url.url.clone();
    let query = match url.query() {
        Some(existing) if !existing.is_empty() => format!("{existing}&{query}"),
        _ => query,
    };
    url.set_query(Some(&query));
    url
}

/// What is traded at the token endpoint.
#[derive(Clone, Copy)]
pub enum Grant<'a> {
    /// The code from the browser's redirect, and the PKCE verifier if a challenge was sent.
    AuthorizationCode { code: &'a str, verifier: Option<&'a str> },
    /// The stored refresh token, which Atlassian rotates on every use.
    RefreshToken(&'a str),
    /// Nothing but the client's own credentials (a service account), and the scopes asked
    /// for, if any.
    ClientCredentials { scope: &'a str },
}

impl Grant<'_> {
    /// The code, verifier or refresh token: what, besides the client secret, must never be shown.
    pub fn secrets(&self) -> [&str; 2] {
        match self {
            Self::AuthorizationCode { code, verifier } => [code, verifier.unwrap_or_default()],
            Self::RefreshToken(token) => [token, ""],
            Self::ClientCredentials { .. } => ["", ""],
        }
    }
}

/// Server text with every secret atl-token sent replaced by `(redacted)`, in whatever form a
/// proxy or framework that quotes a request may have written it: as sent, percent- or
/// form-encoded (either case of hex), JSON-escaped (`\/`, `\u002b`), or as HTML character
/// references (`&#43;`, `&#x2b;`, `&amp;`), each character in any of these forms, compared
/// without regard to case.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = redact_one(&text, secret.as_bytes());
    }
    text
}

/// The secrets a JSON value carries, which an answer that echoes it would show: the strings
/// under keys that name a token, a secret or an id (AppRole's), looking into a string that is
/// itself a JSON object (a family document written as a secret's value).
pub fn secrets_in(value: &serde_json::Value, key: &str, out: &mut Vec<String>) {
    use serde_json::Value;
    match value {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(inner @ Value::Object(_)) => secrets_in(&inner, "", out),
            _ if key.ends_with("_id") || key.contains("token") || key.contains("secret") => {
                out.push(text.clone());
            }
            _ => {}
        },
        Value::Object(map) => map.iter().for_each(|(k, v)| secrets_in(v, k, out)),
        Value::Array(items) => items.iter().for_each(|v| secrets_in(v, key, out)),
        _ => {}
    }
}

/// [`redact`]s `text` of `more` and of the secrets in `document`, a value written as JSON
/// text ([`secrets_in`]): for a store's or psoxy's error, which may echo what it was sent.
pub fn redact_sent(text: &str, document: &str, more: &[&str]) -> String {
    let mut secrets = Vec::new();
    secrets_in(&serde_json::Value::String(document.to_owned()), "", &mut secrets);
    let all: Vec<&str> =
        secrets.iter().map(String::as_str).chain(more.iter().copied()).filter(|s| s.len() >= 4).collect();
    redact(text, &all)
}

fn redact_one(text: &str, secret: &[u8]) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let (mut at, mut copied) = (0, 0);
    while at < bytes.len() {
        match echo_at(&bytes[at..], secret) {
            Some(length) => {
                out.extend_from_slice(&bytes[copied..at]);
                out.extend_from_slice(b"(redacted)");
                at += length;
                copied = at;
            }
            None => at += 1,
        }
    }
    out.extend_from_slice(&bytes[copied..]);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The length of the echo of `secret` at the start of `text`, if there is one. A character
/// may match both as itself and as the start of an encoded form (`&` of `&amp;`): both are
/// tried.
fn echo_at(text: &[u8], secret: &[u8]) -> Option<usize> {
    let Some((&c, rest)) = secret.split_first() else { return Some(0) };
    char_echoes(text, c)
        .into_iter()
        .flatten()
        .find_map(|length| Some(length + echo_at(&text[length..], rest)?))
}

/// The lengths at which one byte `c` of a secret is written at the start of `text`: as
/// itself, and in an encoded form that [`redact`] knows.
fn char_echoes(text: &[u8], c: u8) -> [Option<usize>; 2] {
    let Some(&first) = text.first() else { return [None, None] };
    let literal = (first.eq_ignore_ascii_case(&c) || (c == b' ' && first == b'+')).then_some(1);
    [literal, encoded(text, c)]
}

/// The length of `c` written at the start of `text` percent-encoded, JSON-escaped or as an
/// HTML character reference.
fn encoded(text: &[u8], c: u8) -> Option<usize> {
    let hex = |digits: &[u8]| std::str::from_utf8(digits).ok().and_then(|d| u32::from_str_radix(d, 16).ok());
    match text.first()? {
        b'%' if text.len() >= 3 && hex(&text[1..3]) == Some(u32::from(c)) => Some(3),
        b'\\' if text.get(1) == Some(&c) && b"/\"\\".contains(&c) => Some(2),
        b'\\' if text.len() >= 6 && text[1] == b'u' && hex(&text[2..6]) == Some(u32::from(c)) => Some(6),
        b'&' => {
            let end = text.iter().take(12).position(|&b| b == b';')?;
            let name = std::str::from_utf8(&text[1..end]).ok()?.to_ascii_lowercase();
            let value = match name.strip_prefix('#') {
                Some(number) => match number.strip_prefix('x') {
                    Some(digits) => u32::from_str_radix(digits, 16).ok(),
                    None => number.parse().ok(),
                },
                None => [
                    ("amp", b'&'),
                    ("lt", b'<'),
                    ("gt", b'>'),
                    ("quot", b'"'),
                    ("apos", b'\''),
                    ("plus", b'+'),
                    ("sol", b'/'),
                    ("equals", b'='),
                    ("percnt", b'%'),
                ]
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| u32::from(*b)),
            };
            (value == Some(u32::from(c))).then_some(end + 1)
        }
        _ => None,
    }
}

/// The token request's `Content-Type` and body.
pub fn token_request_body(oauth2: &OAuth2, redirect_uri: &str, grant: Grant<'_>) -> (&'static str, Vec<u8>) {
    let mut params = vec![("grant_type", ""), ("client_id", oauth2.client_id.as_str())];
    params.push(("client_secret", oauth2.client_secret.expose()));
    let redirect_uri = ("redirect_uri", redirect_uri);
    match grant {
        Grant::AuthorizationCode { code, verifier } => {
            params[0].1 = "authorization_code";
            params.extend([("code", code), redirect_uri]);
            params.extend(verifier.map(|v| ("code_verifier", v)));
        }
        Grant::RefreshToken(token) => {
            params[0].1 = "refresh_token";
            params.push(("refresh_token", token));
            if oauth2.provider.kind.refresh_sends_redirect_uri() {
                params.push(redirect_uri);
            }
        }
        Grant::ClientCredentials { scope } => {
            params[0].1 = "client_credentials";
            if !scope.is_empty() {
                params.push(("scope", scope));
            }
        }
    }
    form_or_json(oauth2.provider.body, params)
}

/// A revoke request (RFC 7009) for a refresh token: always a form, as the RFC says.
pub fn revoke_request_body(oauth2: &OAuth2, refresh_token: &str) -> (&'static str, Vec<u8>) {
    let params = vec![
        ("token", refresh_token),
        ("token_type_hint", "refresh_token"),
        ("client_id", oauth2.client_id.as_str()),
        ("client_secret", oauth2.client_secret.expose()),
    ];
    form_or_json(BodyFormat::Form, params)
}

fn form_or_json(format: BodyFormat, params: Vec<(&str, &str)>) -> (&'static str, Vec<u8>) {
    match format {
        BodyFormat::Json => {
            let object: Map<String, Value> =
                params.into_iter().map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
            ("application/json", Value::Object(object).to_string().into_bytes())
        }
        BodyFormat::Form => {
            let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
            ("application/x-www-form-urlencoded", body.into_bytes())
        }
    }
}

/// Why the token endpoint gave no token. Never holds a token or the client secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The code or refresh token is unknown, expired, revoked or already used
    /// (`invalid_grant`; Atlassian says `unauthorized_client` with HTTP 403).
    GrantRejected(OAuthError),
    /// The client id or secret is wrong (`access_denied`, `invalid_client`).
    ClientRejected(OAuthError),
    /// Any other OAuth error, e.g. `invalid_scope`.
    Other(OAuthError),
    /// Busy or broken for now: 5xx, 429, or the connection failed. Worth another try where
    /// the provider's rotation allows it after this `delivery`.
    Transient { detail: String, retry_after: Option<Duration>, delivery: Delivery },
    /// An answer that is not a token answer: HTML, truncated or not JSON.
    Malformed { status: u16, detail: String },
    /// TLS did not trust the server's certificate. Not worth another try.
    Certificate { detail: String },
}

/// An OAuth error answer: HTTP status, `error` and `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: String,
    pub description: Option<String>,
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.error)?;
        match &self.description {
            Some(d) => write!(f, ": {d}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GrantRejected(e) | Self::ClientRejected(e) | Self::Other(e) => e.fmt(f),
            Self::Transient { detail, .. } => f.write_str(detail),
            Self::Malformed { status, detail } => write!(f, "HTTP {status}: {detail}"),
            Self::Certificate { detail } => write!(
                f,
                "its certificate is not trusted ({detail}); if the site uses a company certificate \
                 authority, set ATL_CA_FILE to a PEM file of its root certificate"
            ),
        }
    }
}

impl std::error::Error for TokenError {}

/// Reads a token endpoint's answer: the token fields, or why there are none. Server text in
/// the error has `secrets` (what the request sent) removed.
pub fn read_answer(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    secrets: &[&str],
) -> Result<Map<String, Value>, TokenError> {
    let json = serde_json::from_slice::<Value>(body);
    let shown = |text: &str| clean(&redact(text, secrets));
    let oauth_error = match &json {
        Ok(Value::Object(fields)) => fields.get("error").map(|error| OAuthError {
            status,
            error: error.as_str().map_or_else(|| shown(&error.to_string()), shown),
            description: fields.get("error_description").and_then(Value::as_str).map(shown),
        }),
        _ => None,
    };
    let excerpt = || {
        let text = shown(&String::from_utf8_lossy(body));
        if text.is_empty() { " (empty body)".to_owned() } else { format!(": \"{text}\"") }
    };

    if status == 429 || (500..600).contains(&status) {
        let detail = match &oauth_error {
            Some(e) => e.to_string(),
            None => format!("HTTP {status}{}", excerpt()),
        };
        // 429 and 503 say "not now" before the request is handled; other 5xx may come after.
        let delivery = if matches!(status, 429 | 503) { Delivery::TurnedAway } else { Delivery::Unknown };
        let retry_after = retry_after.and_then(parse_retry_after);
        return Err(TokenError::Transient { detail, retry_after, delivery });
    }
    if let Some(e) = oauth_error {
        return Err(match e.error.as_str() {
            "invalid_grant" | "unauthorized_client" => TokenError::GrantRejected(e),
            "access_denied" | "invalid_client" => TokenError::ClientRejected(e),
            _ => TokenError::Other(e),
        });
    }
    let success = (200..300).contains(&status);
    match json {
        Ok(Value::Object(fields)) if success && has_access_token(&fields) => match malformed_token(&fields) {
            None => Ok(fields),
            Some(name) => Err(malformed(
                status,
                &format!(
                    "the answer's {name} is not a token (RFC 6750 allows letters, digits and -._~+/ \
                     followed by =), so it was not saved"
                ),
            )),
        },
        // A success answer may hold tokens, so its content is never quoted.
        Ok(_) if success => Err(malformed(status, "the answer has no access_token")),
        Err(e) if success && e.is_eof() => {
            Err(malformed(status, &format!("the answer was cut off after {} bytes", body.len())))
        }
        Err(_) if success => Err(malformed(status, "the answer is not JSON")),
        _ => Err(malformed(status, &format!("not a token answer{}", excerpt()))),
    }
}

/// Reads a revoke endpoint's answer: any 2xx means revoked (RFC 7009), else why not.
pub fn read_revoke_answer(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    secrets: &[&str],
) -> Result<(), TokenError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    // A non-2xx answer is never a token answer, so this is always the reason.
    read_answer(status, retry_after, body, secrets).map(drop)
}

fn malformed(status: u16, detail: &str) -> TokenError {
    TokenError::Malformed { status, detail: detail.to_owned() }
}

/// The token field of a success answer that is not RFC 6750 token68, if any: one that could
/// carry a line break into a header, or a quote into a shell word.
fn malformed_token(fields: &Map<String, Value>) -> Option<&'static str> {
    ["access_token", "refresh_token"].into_iter().find(|name| match fields.get(*name) {
        None | Some(Value::Null) => false,
        Some(Value::String(token)) => !crate::token::is_token68(token),
        Some(_) => true,
    })
}

fn has_access_token(fields: &Map<String, Value>) -> bool {
    fields.get("access_token").and_then(Value::as_str).is_some_and(|t| !t.is_empty())
}

/// `Retry-After` in seconds (the HTTP-date form is rare from token endpoints and ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// Server text made safe for one line of a terminal: control characters dropped, runs of
/// whitespace collapsed, length capped.
pub fn clean(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let joined: String = words.join(" ").chars().filter(|c| !c.is_control()).collect();
    match joined.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Auth, EnvFile, Sources};
    use std::path::{Path, PathBuf};

    /// An answer to a request that sent no secret worth redacting.
    fn read(status: u16, retry_after: Option<&str>, body: &[u8]) -> Result<Map<String, Value>, TokenError> {
        read_answer(status, retry_after, body, &[])
    }

    /// The default redirect URI.
    const REDIRECT: &str = "http://localhost:8014";

    fn oauth2(extra: &str) -> OAuth2 {
        let text =
            format!("ATL_CLIENT_ID=\"my id\"\nATL_CLIENT_SECRET=s&cret\nATL_SCOPE=read:jira-work\n{extra}");
        let file = EnvFile {
            path: PathBuf::from("/x/.env"),
            vars: crate::envfile::parse(&text, None).expect("parses").vars,
            layer: config::Layer::Named,
        };
        let config = config::resolve(&Sources {
            token_file_flag: None,
            env: &|_| None,
            files: std::slice::from_ref(&file),
            searched: &[],
            cwd: Path::new("/"),
        });
        match config.expect("config").auth {
            Auth::OAuth2(oauth2) => oauth2,
            Auth::OAuth1(_) => panic!("an OAuth 2.0 config"),
        }
    }

    #[test]
    fn authorize_url_has_every_parameter_encoded() {
        let url = authorize_url(&oauth2(""), REDIRECT, "st-1", None);
        assert!(url.as_str().starts_with("https://auth.atlassian.com/authorize?client_id="));
        let expected = [
            ("client_id", "my id"),
            ("scope", "read:jira-work offline_access"),
            ("redirect_uri", "http://localhost:8014"),
            ("state", "st-1"),
            ("response_type", "code"),
            ("audience", "api.atlassian.com"),
            ("prompt", "consent"),
        ];
        assert_eq!(pairs(&url), expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert!(url.as_str().contains("redirect_uri=http%3A%2F%2Flocalhost%3A8014"), "{url}");
        assert!(url.as_str().contains("scope=read%3Ajira-work%20offline_access&"), "{url}");
        assert!(url.as_str().contains("client_id=my%20id&"), "{url}");
    }

    fn pairs(url: &Url) -> Vec<(String, String)> {
        url.query_pairs().into_owned().collect()
    }

    const DC: &str = "ATL_PROVIDER=datacenter\nATL_BASE_URL=https://example.com/jira\n";

    #[test]
    fn datacenter_authorize_url_has_pkce_and_no_cloud_parameters() {
        let pkce = Pkce::new();
        let url = authorize_url(&oauth2(DC), REDIRECT, "st-1", Some(&pkce));
        assert!(url.as_str().starts_with("https://example.com/jira/rest/oauth2/latest/authorize?"), "{url}");
        let challenge = pkce.challenge();
        let expected = [
            ("client_id", "my id"),
            ("scope", "read:jira-work"),
            ("redirect_uri", "http://localhost:8014"),
            ("state", "st-1"),
            ("response_type", "code"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        assert_eq!(pairs(&url), expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }

    #[test]
    fn pkce_verifiers_are_fresh_well_formed_and_hashed_as_rfc_7636_says() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (a, b) = (Pkce::new(), Pkce::new());
        assert_ne!(a.verifier(), b.verifier());
        let allowed = |c: char| c.is_ascii_alphanumeric() || "~-._".contains(c);
        assert!((43..=128).contains(&a.verifier().len()) && a.verifier().chars().all(allowed));
        assert_eq!(a.challenge().len(), 43);
    }

    #[test]
    fn datacenter_bodies_are_forms_with_the_verifier_and_the_redirect_uri() {
        let oauth2 = oauth2(DC);
        let verifier = "v".repeat(43);
        let grant = Grant::AuthorizationCode { code: "c1", verifier: Some(&verifier) };
        let (kind, body) = token_request_body(&oauth2, REDIRECT, grant);
        assert_eq!(kind, "application/x-www-form-urlencoded");
        let text = String::from_utf8(body).expect("utf8");
        assert_eq!(
            text,
            format!(
                "grant_type=authorization_code&client_id=my+id&client_secret=s%26cret&code=c1&\
                 redirect_uri=http%3A%2F%2Flocalhost%3A8014&code_verifier={}",
                "v".repeat(43)
            )
        );
        let (_, body) = token_request_body(&oauth2, REDIRECT, Grant::RefreshToken("r1"));
        assert_eq!(
            String::from_utf8(body).expect("utf8"),
            "grant_type=refresh_token&client_id=my+id&client_secret=s%26cret&refresh_token=r1&\
             redirect_uri=http%3A%2F%2Flocalhost%3A8014"
        );
        let (kind, body) = revoke_request_body(&oauth2, "r/1");
        assert_eq!(kind, "application/x-www-form-urlencoded");
        assert_eq!(
            String::from_utf8(body).expect("utf8"),
            "token=r%2F1&token_type_hint=refresh_token&client_id=my+id&client_secret=s%26cret"
        );
    }

    #[test]
    fn a_revoke_is_done_on_any_2xx() {
        assert_eq!(read_revoke_answer(200, None, b"", &[]), Ok(()));
        assert_eq!(read_revoke_answer(204, None, b"whatever", &[]), Ok(()));
        assert!(matches!(
            read_revoke_answer(401, None, br#"{"error":"invalid_client"}"#, &[]),
            Err(TokenError::ClientRejected(_))
        ));
        assert!(matches!(
            read_revoke_answer(503, None, b"", &[]),
            Err(TokenError::Transient { delivery: Delivery::TurnedAway, .. })
        ));
    }

    #[test]
    fn refresh_body_as_json_and_as_form() {
        let (kind, body) = token_request_body(&oauth2(""), REDIRECT, Grant::RefreshToken("r/1"));
        assert_eq!(kind, "application/json");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"grant_type": "refresh_token", "client_id": "my id",
                               "client_secret": "s&cret", "refresh_token": "r/1"})
        );
        let (kind, body) =
            token_request_body(&oauth2("ATL_TOKEN_BODY=form\n"), REDIRECT, Grant::RefreshToken("r/1"));
        assert_eq!(kind, "application/x-www-form-urlencoded");
        assert_eq!(
            String::from_utf8(body).expect("utf8"),
            "grant_type=refresh_token&client_id=my+id&client_secret=s%26cret&refresh_token=r%2F1"
        );
    }

    #[test]
    fn code_body_carries_code_and_redirect_uri() {
        let grant = Grant::AuthorizationCode { code: "c1", verifier: None };
        let (_, body) = token_request_body(&oauth2(""), REDIRECT, grant);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["grant_type"], "authorization_code");
        assert_eq!(v["code"], "c1");
        assert_eq!(v["redirect_uri"], "http://localhost:8014");
        assert_eq!(v.get("code_verifier"), None);
    }

    #[test]
    fn a_token_answer_is_accepted() {
        let fields = read(200, None, br#"{"access_token":"a","refresh_token":"r","expires_in":3600}"#)
            .expect("token answer");
        assert_eq!(fields["access_token"], "a");
    }

    #[test]
    fn atlassians_rejections_are_told_apart() {
        let body = br#"{"error":"unauthorized_client","error_description":"refresh_token is invalid"}"#;
        let err = read(403, None, body).unwrap_err();
        assert!(matches!(err, TokenError::GrantRejected(_)));
        assert_eq!(err.to_string(), "HTTP 403 unauthorized_client: refresh_token is invalid");
        assert!(matches!(
            read(400, None, br#"{"error":"invalid_grant"}"#),
            Err(TokenError::GrantRejected(_))
        ));
        assert!(matches!(
            read(401, None, br#"{"error":"access_denied"}"#),
            Err(TokenError::ClientRejected(_))
        ));
        assert!(matches!(
            read(401, None, br#"{"error":"invalid_client"}"#),
            Err(TokenError::ClientRejected(_))
        ));
        assert!(matches!(read(400, None, br#"{"error":"invalid_scope"}"#), Err(TokenError::Other(_))));
        assert!(matches!(
            read(200, None, br#"{"error":"invalid_grant"}"#),
            Err(TokenError::GrantRejected(_))
        ));
    }

    fn is_transient(error: &TokenError) -> bool {
        matches!(error, TokenError::Transient { .. })
    }

    #[test]
    fn busy_and_broken_servers_are_transient() {
        let err = read(503, Some("7"), b"Service Unavailable").unwrap_err();
        assert_eq!(
            err,
            TokenError::Transient {
                detail: "HTTP 503: \"Service Unavailable\"".into(),
                retry_after: Some(Duration::from_secs(7)),
                delivery: Delivery::TurnedAway,
            }
        );
        let delivery = |status| match read(status, None, b"") {
            Err(TokenError::Transient { delivery, .. }) => delivery,
            other => panic!("{status}: {other:?}"),
        };
        assert_eq!(delivery(429), Delivery::TurnedAway);
        for status in [500, 502, 504] {
            assert_eq!(delivery(status), Delivery::Unknown, "{status}: may have been handled");
        }
        assert!(is_transient(&read(429, Some("99999"), b"").unwrap_err()));
        assert!(is_transient(&read(500, None, br#"{"error":"server_error"}"#).unwrap_err()));
        assert!(!is_transient(&read(403, None, br#"{"error":"unauthorized_client"}"#).unwrap_err()));
        let TokenError::Transient { retry_after, .. } = read(429, Some("99999"), b"").unwrap_err() else {
            panic!("transient")
        };
        assert_eq!(retry_after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn html_and_truncated_answers_are_described() {
        let html = b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>";
        let err = read(404, None, html).unwrap_err().to_string();
        assert!(
            err.starts_with("HTTP 404: not a token answer: \"<html> <head><title>502 Bad Gateway"),
            "{err}"
        );
        let cut = read(200, None, br#"{"access_token":"eyJhbGciOiJ"#).unwrap_err().to_string();
        assert_eq!(cut, "HTTP 200: the answer was cut off after 28 bytes");
        let html200 = read(200, None, b"<html>login</html>").unwrap_err().to_string();
        assert_eq!(html200, "HTTP 200: the answer is not JSON");
        let empty = read(200, None, br#"{"token_type":"Bearer"}"#).unwrap_err().to_string();
        assert!(empty.contains("no access_token"));
        assert_eq!(
            read(400, None, b"").unwrap_err().to_string(),
            "HTTP 400: not a token answer (empty body)"
        );
    }

    #[test]
    fn secrets_echoed_by_a_server_or_proxy_are_removed() {
        let secrets = ["s&cret/1", "rt \"x\""];
        let form = r#"{"error":"invalid_request","error_description":"bad body: client_secret=s%26cret%2F1&refresh_token=rt+%22x%22"}"#;
        let err = read_answer(400, None, form.as_bytes(), &secrets).unwrap_err().to_string();
        assert_eq!(
            err,
            "HTTP 400 invalid_request: bad body: client_secret=(redacted)&refresh_token=(redacted)"
        );
        let json = r#"<pre>{"client_secret": "s&cret/1", "refresh_token": "rt \"x\""}</pre>"#;
        let err = read_answer(502, None, json.as_bytes(), &secrets).unwrap_err().to_string();
        assert!(!err.contains("s&cret") && !err.contains("rt \\\"x"), "{err}");
        assert!(err.ends_with(r#""refresh_token": "(redacted)"}</pre>""#), "{err}");
        // A secret at the point where the excerpt is cut is removed before the cut.
        let long = format!("{}s&cret/1", "x".repeat(EXCERPT_CHARS - 3));
        let err = read_answer(400, None, long.as_bytes(), &secrets).unwrap_err().to_string();
        assert!(!err.contains("s&c"), "{err}");
    }

    #[test]
    fn every_form_of_an_echoed_secret_is_removed() {
        let secrets = ["ref+resh/tok=en", "s&cret"];
        for echo in [
            "ref%2bresh%2ftok%3den",
            "REF%2BRESH%2FTOK%3DEN",
            "ref+resh\\/tok=en",
            "ref\\u002bresh\\u002ftok\\u003den",
            "ref&#43;resh&#x2F;tok&equals;en",
            "s&amp;cret",
            "s%26cret",
        ] {
            let shown = redact(&format!("<p>got {echo} here</p>"), &secrets);
            assert_eq!(shown, "<p>got (redacted) here</p>", "{echo}");
        }
        assert_eq!(redact("nothing & no %zz \\u12", &secrets), "nothing & no %zz \\u12");
        assert_eq!(redact("é ref+resh/tok=e", &secrets), "é ref+resh/tok=e", "a part is not the secret");
    }

    #[test]
    fn a_token_that_is_not_token68_is_refused_unsaved() {
        let body = br#"{"access_token": "abc\r\nX-Injected: yes", "expires_in": 60}"#;
        let err = read(200, None, body).unwrap_err();
        assert!(matches!(err, TokenError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("access_token is not a token"), "{err}");
        let body = br#"{"access_token": "good", "refresh_token": "a\\"}"#;
        assert!(read(200, None, body).unwrap_err().to_string().contains("refresh_token is not a token"));
        let body = br#"{"access_token": "good", "refresh_token": 5}"#;
        assert!(read(200, None, body).is_err());
        assert!(read(200, None, br#"{"access_token": "a.b-c_d~e+f/g=="}"#).is_ok());
    }

    #[test]
    fn server_text_cannot_drive_the_terminal() {
        assert_eq!(clean("bad\x1b[31m red\r\n  thing"), "bad[31m red thing");
        assert_eq!(clean(&"x".repeat(500)).chars().count(), EXCERPT_CHARS + 1);
    }

    proptest::proptest! {
        #[test]
        fn prop_any_answer_is_read_without_panic(
            status in 100u16..600,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            retry_after in proptest::option::of("\\PC{0,12}"),
        ) {
            let _ = read(status, retry_after.as_deref(), &body);
        }

        #[test]
        fn prop_a_secret_echoed_in_any_form_is_never_shown(
            // Real secrets hold no whitespace, which `clean` would collapse.
            secret in "[!-~]{8,40}",
            before in "[ -~]{0,200}",
            after in "[ -~]{0,200}",
            form in 0usize..3,
            status in 400u16..600,
        ) {
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            let quoted = Value::from(secret.as_str()).to_string();
            let echoed = [secret.clone(), encoded, quoted[1..quoted.len() - 1].to_owned()];
            let body = format!("{before}{}{after}", echoed[form]);
            for body in [body.clone(), Value::from(body).to_string()] {
                let body = format!(r#"{{"error":"invalid_request","error_description":{body}}}"#);
                for text in [body.as_str(), &body[1..]] {
                    let shown = read_answer(status, None, text.as_bytes(), &[&secret]).unwrap_err().to_string();
                    proptest::prop_assert!(!shown.contains(secret.as_str()), "{}", shown);
                }
            }
        }

        #[test]
        fn prop_a_success_answer_is_never_quoted(secret in "[A-Za-z0-9]{32}", cut in 0usize..120) {
            let body = format!(r#"{{"access_token":"{secret}","refresh_token":"{secret}","expires_in":3600}}"#);
            let cut = cut.min(body.len());
            match read(200, None, &body.as_bytes()[..cut]) {
                Ok(fields) => proptest::prop_assert_eq!(fields["access_token"].as_str(), Some(secret.as_str())),
                Err(e) => proptest::prop_assert!(!e.to_string().contains(&secret[..6]), "{}", e),
            }
        }
    }
}

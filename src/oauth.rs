//! OAuth 2.0 as Atlassian speaks it: the authorize URL, token request bodies, and what the
//! token endpoint's answers mean. Pure: no I/O, so every rule here is unit-tested.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use crate::config::{BodyFormat, Config};

/// Atlassian Cloud's API audience, required on its authorize URL.
const AUDIENCE: &str = "api.atlassian.com";
/// An error excerpt longer than this is cut.
const EXCERPT_CHARS: usize = 160;
/// A `Retry-After` longer than this is not worth waiting for in one run.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The URL the user opens to consent, with every parameter percent-encoded.
///
/// Spaces (between scopes) are sent as `%20`, as Atlassian's documentation writes them,
/// rather than the `+` of form encoding.
pub fn authorize_url(config: &Config, state: &str) -> Url {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("audience", AUDIENCE)
        .append_pair("client_id", &config.client_id)
        .append_pair("scope", &config.scope.value)
        .append_pair("redirect_uri", &config.redirect.uri)
        .append_pair("state", state)
        .append_pair("response_type", "code")
        .append_pair("prompt", "consent")
        .finish()
        // A literal '+' was encoded as %2B, so every '+' left stands for a space.
        .replace('+', "%20");
    let mut url = config.authorize_url.url.clone();
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
    /// The code from the browser's redirect, with the redirect URI it was sent to.
    AuthorizationCode { code: &'a str, redirect_uri: &'a str },
    /// The stored refresh token, which Atlassian rotates on every use.
    RefreshToken(&'a str),
}

impl Grant<'_> {
    /// The code or refresh token: what, besides the client secret, must never be shown.
    pub fn secret(&self) -> &str {
        match self {
            Self::AuthorizationCode { code, .. } => code,
            Self::RefreshToken(token) => token,
        }
    }
}

/// Server text with every secret atl-token sent replaced by `(redacted)`: as sent, form-encoded
/// and JSON-escaped, since a proxy or framework that quotes a request may quote it in any of
/// these forms.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let quoted = Value::from(*secret).to_string();
        let json = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap_or(&quoted);
        for variant in [*secret, form.as_str(), json] {
            text = text.replace(variant, "(redacted)");
        }
    }
    text
}

/// The token request's `Content-Type` and body.
pub fn token_request_body(config: &Config, grant: Grant<'_>) -> (&'static str, Vec<u8>) {
    let mut params = vec![("grant_type", ""), ("client_id", config.client_id.as_str())];
    params.push(("client_secret", config.client_secret.expose()));
    match grant {
        Grant::AuthorizationCode { code, redirect_uri } => {
            params[0].1 = "authorization_code";
            params.push(("code", code));
            params.push(("redirect_uri", redirect_uri));
        }
        Grant::RefreshToken(token) => {
            params[0].1 = "refresh_token";
            params.push(("refresh_token", token));
        }
    }
    match config.token_body {
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
    /// Busy or broken for now: 5xx, 429, or the connection failed. Worth another try.
    Transient { detail: String, retry_after: Option<Duration> },
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
        return Err(TokenError::Transient { detail, retry_after: retry_after.and_then(parse_retry_after) });
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
        Ok(Value::Object(fields)) if success && has_access_token(&fields) => Ok(fields),
        // A success answer may hold tokens, so its content is never quoted.
        Ok(_) if success => Err(malformed(status, "the answer has no access_token")),
        Err(e) if success && e.is_eof() => {
            Err(malformed(status, &format!("the answer was cut off after {} bytes", body.len())))
        }
        Err(_) if success => Err(malformed(status, "the answer is not JSON")),
        _ => Err(malformed(status, &format!("not a token answer{}", excerpt()))),
    }
}

fn malformed(status: u16, detail: &str) -> TokenError {
    TokenError::Malformed { status, detail: detail.to_owned() }
}

fn has_access_token(fields: &Map<String, Value>) -> bool {
    fields.get("access_token").and_then(Value::as_str).is_some_and(|t| !t.is_empty())
}

/// `Retry-After` in seconds (the HTTP-date form is rare from token endpoints and ignored).
fn parse_retry_after(value: &str) -> Option<Duration> {
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
    use crate::config::{self, EnvFile, Sources};
    use std::path::{Path, PathBuf};

    /// An answer to a request that sent no secret worth redacting.
    fn read(status: u16, retry_after: Option<&str>, body: &[u8]) -> Result<Map<String, Value>, TokenError> {
        read_answer(status, retry_after, body, &[])
    }

    fn config(extra: &str) -> Config {
        let text =
            format!("ATL_CLIENT_ID=\"my id\"\nATL_CLIENT_SECRET=s&cret\nATL_SCOPE=read:jira-work\n{extra}");
        let file =
            EnvFile { path: PathBuf::from("/x/.env"), vars: crate::envfile::parse(&text).expect("parses") };
        config::resolve(&Sources {
            token_file_flag: None,
            env: &|_| None,
            file: Some(&file),
            searched: &[],
            cwd: Path::new("/"),
        })
        .expect("config")
    }

    #[test]
    fn authorize_url_has_every_parameter_encoded() {
        let url = authorize_url(&config(""), "st-1");
        assert!(url.as_str().starts_with("https://auth.atlassian.com/authorize?audience=api.atlassian.com&"));
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let expected = [
            ("audience", "api.atlassian.com"),
            ("client_id", "my id"),
            ("scope", "read:jira-work offline_access"),
            ("redirect_uri", "http://localhost:8014"),
            ("state", "st-1"),
            ("response_type", "code"),
            ("prompt", "consent"),
        ];
        let expected: Vec<(String, String)> =
            expected.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        assert_eq!(pairs, expected);
        assert!(url.as_str().contains("redirect_uri=http%3A%2F%2Flocalhost%3A8014"), "{url}");
        assert!(url.as_str().contains("scope=read%3Ajira-work%20offline_access&"), "{url}");
        assert!(url.as_str().contains("client_id=my%20id&"), "{url}");
    }

    #[test]
    fn refresh_body_as_json_and_as_form() {
        let (kind, body) = token_request_body(&config(""), Grant::RefreshToken("r/1"));
        assert_eq!(kind, "application/json");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"grant_type": "refresh_token", "client_id": "my id",
                               "client_secret": "s&cret", "refresh_token": "r/1"})
        );
        let (kind, body) = token_request_body(&config("ATL_TOKEN_BODY=form\n"), Grant::RefreshToken("r/1"));
        assert_eq!(kind, "application/x-www-form-urlencoded");
        assert_eq!(
            String::from_utf8(body).expect("utf8"),
            "grant_type=refresh_token&client_id=my+id&client_secret=s%26cret&refresh_token=r%2F1"
        );
    }

    #[test]
    fn code_body_carries_code_and_redirect_uri() {
        let grant = Grant::AuthorizationCode { code: "c1", redirect_uri: "http://localhost:8014" };
        let (_, body) = token_request_body(&config(""), grant);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["grant_type"], "authorization_code");
        assert_eq!(v["code"], "c1");
        assert_eq!(v["redirect_uri"], "http://localhost:8014");
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
                retry_after: Some(Duration::from_secs(7))
            }
        );
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

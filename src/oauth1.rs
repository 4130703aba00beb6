//! OAuth 1.0a with RSA-SHA1 (RFC 5849), as Jira, Confluence, Bamboo and Bitbucket Server and
//! Data Center speak it through application links: the signature base string, the signature,
//! the `Authorization` header, the consumer's key, and the server's form-encoded answers.
//!
//! Every request carries its own signature over its method, URL and parameters, so there is
//! no bearer token to hand out: [`Signer::header`] makes the header for one request.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer as _};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use url::Url;

use crate::config::KeyFile;
use crate::exit::Exit;

/// The only signature method Atlassian's application links accept.
pub const SIGNATURE_METHOD: &str = "RSA-SHA1";
/// A key file larger than this is not a PEM private key.
const MAX_KEY_BYTES: u64 = 64 * 1024;
/// The smallest key `keygen` makes and the smallest it accepts.
pub const MIN_BITS: usize = 2048;

/// RFC 5849 section 3.6: everything but `A-Z a-z 0-9 - . _ ~` as `%XX`, upper case, over UTF-8.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// RFC 5849 section 3.4.1.2: scheme and host in lower case, the port only when it is not the
/// scheme's default, the path, and no query or fragment.
pub fn base_string_uri(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{port}{}", url.scheme(), host.to_ascii_lowercase(), url.path())
}

/// RFC 5849 section 3.4.1: `METHOD&uri&params`, where the parameters are the URL's query, the
/// form body's (if any) and the `oauth_*` ones, each encoded, then sorted by name and value.
pub fn base_string(method: &str, url: &Url, form: &[(String, String)], oauth: &[(&str, &str)]) -> String {
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (encode(&k), encode(&v)))
        .chain(form.iter().map(|(k, v)| (encode(k), encode(v))))
        .chain(oauth.iter().map(|(k, v)| (encode(k), encode(v))))
        .collect();
    params.sort();
    let params: Vec<String> = params.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}&{}&{}", method.to_ascii_uppercase(), encode(&base_string_uri(url)), encode(&params.join("&")))
}

/// The consumer's RSA private key. Its `Debug` shows only the size.
pub struct PrivateKey {
    key: RsaPrivateKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({} bits)", self.bits())
    }
}

impl PrivateKey {
    /// A new key of `bits` bits from the operating system's random source.
    pub fn generate(bits: usize) -> anyhow::Result<Self> {
        // The generator wants an infallible source: prove the fallible one works first.
        getrandom::fill(&mut [0u8; 32])
            .map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
        let mut rng = rsa::rand_core::UnwrapErr(getrandom::SysRng);
        let key = RsaPrivateKey::new(&mut rng, bits)
            .map_err(|e| anyhow::anyhow!("cannot make a {bits}-bit RSA key: {e}"))?;
        Ok(Self { key })
    }

    /// A PEM private key, PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`).
    /// The error says what the text is instead, never what it holds.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let key = if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs1_pem(text.trim()).map_err(|_| KeyError::Malformed("PKCS#1"))?
        } else if text.contains("-----BEGIN PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs8_pem(text.trim()).map_err(|e| match e {
                rsa::pkcs8::Error::PublicKey(rsa::pkcs8::spki::Error::OidUnknown { .. }) => KeyError::NotRsa,
                _ => KeyError::Malformed("PKCS#8"),
            })?
        } else if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(KeyError::Encrypted);
        } else if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
            return Err(KeyError::OpenSsh);
        } else if text.contains("PUBLIC KEY-----") && !text.contains("PRIVATE KEY-----") {
            return Err(KeyError::Public);
        } else if text.contains("PRIVATE KEY-----") {
            return Err(KeyError::NotRsa);
        } else {
            return Err(KeyError::NotPem);
        };
        Ok(Self { key })
    }

    pub fn bits(&self) -> usize {
        rsa::traits::PublicKeyParts::n_bits_precision(&self.key) as usize
    }

    /// PKCS#8 PEM (`BEGIN PRIVATE KEY`), what `keygen` writes.
    pub fn to_pem(&self) -> anyhow::Result<String> {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("cannot encode the key: {e}"))?;
        Ok(pem.as_str().to_owned())
    }

    pub fn public_key(&self) -> RsaPublicKey {
        self.key.to_public_key()
    }

    /// The public key as SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), which the application
    /// link form takes.
    pub fn public_pem(&self) -> anyhow::Result<String> {
        self.public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("cannot encode the public key: {e}"))
    }

    /// The public key as PKCS#1 PEM (`BEGIN RSA PUBLIC KEY`), for tools that want that form.
    #[cfg(test)]
    pub fn public_pkcs1_pem(&self) -> String {
        use rsa::pkcs1::EncodeRsaPublicKey;
        self.public_key().to_pkcs1_pem(LineEnding::LF).expect("a public key encodes")
    }

    /// RSASSA-PKCS1-v1_5 over SHA-1 of `message`, base64: `oauth_signature`.
    pub fn sign(&self, message: &str) -> anyhow::Result<String> {
        let signer = rsa::pkcs1v15::SigningKey::<Sha1>::new(self.key.clone());
        let signature = signer
            .try_sign(message.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot sign the request: {e}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()))
    }
}

/// Why a key file's text is not a usable private key.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    NotPem,
    Malformed(&'static str),
    NotRsa,
    Encrypted,
    OpenSsh,
    Public,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotPem => {
                "is not a PEM private key (no `-----BEGIN PRIVATE KEY-----` or `-----BEGIN RSA \
                 PRIVATE KEY-----` line): point it at the private key, or make one with `atl-token keygen`"
            }
            Self::Malformed("PKCS#1") => {
                "is a damaged PKCS#1 RSA key: make a new one with `atl-token keygen`"
            }
            Self::Malformed(_) => "is a damaged PKCS#8 key: make a new one with `atl-token keygen`",
            Self::NotRsa => {
                "is not an RSA key: application links sign with RSA; make one with `atl-token keygen`"
            }
            Self::Encrypted => {
                "is encrypted with a passphrase, which atl-token cannot ask for: write a plain copy \
                 (mode 0600) with `openssl pkey -in KEY -out KEY.plain`"
            }
            Self::OpenSsh => {
                "is an OpenSSH key: convert it with `ssh-keygen -p -m PEM -f KEY`, or make one with \
                 `atl-token keygen`"
            }
            Self::Public => "holds a public key: ATL_PRIVATE_KEY_FILE needs the private key",
        })
    }
}

/// Reads and checks the private key file, named with the setting that chose it. A key that
/// others can read is used, with a warning; anything else wrong is a usage error naming the file.
pub fn load_key(file: &KeyFile) -> anyhow::Result<PrivateKey> {
    let (path, origin) = (file.path.as_path(), file.origin.as_str());
    let name = path.display();
    let file = std::fs::File::options()
        .read(true)
        // A FIFO planted at the path must not hang the command.
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Exit::usage(format!(
                "the private key file {name} ({origin}) does not exist: make a key pair with \
                 `atl-token keygen` and register its public key in the application link"
            ))
            .into());
        }
        Err(e) => {
            return Err(
                Exit::usage(format!("cannot read the private key file {name} ({origin}): {e}")).into()
            );
        }
    };
    let meta = file.metadata().map_err(|e| Exit::usage(format!("cannot read {name}: {e}")))?;
    if !meta.is_file() {
        return Err(
            Exit::usage(format!("the private key file {name} ({origin}) is not a regular file")).into()
        );
    }
    if meta.len() > MAX_KEY_BYTES {
        return Err(Exit::usage(format!(
            "the private key file {name} ({origin}) is {} bytes, too large for a PEM key: check the path",
            meta.len()
        ))
        .into());
    }
    crate::safe_path::warn_if_shared(path, &meta, "the private key file");
    let mut text = String::new();
    file.by_ref()
        .take(MAX_KEY_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| Exit::usage(format!("cannot read the private key file {name} ({origin}): {e}")))?;
    let key = PrivateKey::from_pem(&text)
        .map_err(|e| Exit::usage(format!("the private key file {name} ({origin}) {e}")))?;
    Ok(key)
}

/// A nonce: 32 random hex digits.
pub fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What signs requests: the consumer key and private key, and the access token once there is one.
#[derive(Debug)]
pub struct Signer<'a> {
    pub consumer_key: &'a str,
    pub key: &'a PrivateKey,
    pub token: Option<&'a str>,
}

/// The `oauth_*` parameters of one request, besides those every request has.
#[derive(Debug, Default)]
pub struct Extra<'a> {
    pub callback: Option<&'a str>,
    pub verifier: Option<&'a str>,
}

impl Signer<'_> {
    /// The `Authorization` header value (`OAuth ...`) for one request, with a fresh nonce and
    /// timestamp. `form` holds the parameters of a form-encoded body; any other body is not
    /// signed (RFC 5849 section 3.4.1.3.1).
    pub fn header(
        &self,
        method: &str,
        url: &Url,
        form: &[(String, String)],
        extra: &Extra<'_>,
    ) -> anyhow::Result<String> {
        self.header_at(method, url, form, extra, &nonce(), crate::token::now())
    }

    /// [`Signer::header`] with a given nonce and timestamp.
    pub fn header_at(
        &self,
        method: &str,
        url: &Url,
        form: &[(String, String)],
        extra: &Extra<'_>,
        nonce: &str,
        timestamp: u64,
    ) -> anyhow::Result<String> {
        let timestamp = timestamp.to_string();
        let mut oauth: Vec<(&str, &str)> = vec![
            ("oauth_consumer_key", self.consumer_key),
            ("oauth_nonce", nonce),
            ("oauth_signature_method", SIGNATURE_METHOD),
            ("oauth_timestamp", &timestamp),
            ("oauth_version", "1.0"),
        ];
        oauth.extend(self.token.map(|t| ("oauth_token", t)));
        oauth.extend(extra.callback.map(|c| ("oauth_callback", c)));
        oauth.extend(extra.verifier.map(|v| ("oauth_verifier", v)));
        let signature = self.key.sign(&base_string(method, url, form, &oauth))?;
        oauth.push(("oauth_signature", &signature));
        oauth.sort();
        let fields: Vec<String> = oauth.iter().map(|(k, v)| format!("{k}=\"{}\"", encode(v))).collect();
        Ok(format!("OAuth {}", fields.join(", ")))
    }
}

/// A form-encoded answer's fields (request-token and access-token answers, and errors).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The value of `name` in form fields.
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// An `oauth_problem` from a 4xx answer, as net.oauth reports it.
#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    pub name: String,
    pub advice: Option<String>,
}

impl Problem {
    /// The problem in a body, if it holds one. Only the problem's name and the server's
    /// advice are kept: nothing else of the body, which may echo parameters.
    pub fn of(body: &[u8]) -> Option<Self> {
        let fields = parse_form(body);
        let name = field(&fields, "oauth_problem")?;
        // The name is searched for, so keep it, but only if it looks like a name.
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || name.len() > 64 {
            return None;
        }
        let advice = field(&fields, "oauth_problem_advice").map(crate::oauth::clean);
        Some(Self { name: name.to_owned(), advice })
    }

    /// The token is revoked or has expired: the user must log in again.
    pub fn needs_login(&self) -> bool {
        matches!(self.name.as_str(), "token_rejected" | "token_expired" | "token_revoked")
    }

    /// The error for this problem, reported by `place` (a URL), with its exit code: 4 where
    /// only a new login helps, 2 where a setting is wrong, 1 otherwise.
    pub fn error(&self, place: &str) -> anyhow::Error {
        let message = format!("{place} refused the request: {self}");
        match self.name.as_str() {
            _ if self.needs_login() || self.name == "permission_denied" => {
                Exit::login_required(message).into()
            }
            "signature_invalid" | "consumer_key_unknown" | "signature_method_rejected" => {
                Exit::usage(message).into()
            }
            _ => anyhow::anyhow!(message),
        }
    }

    /// The likely cause and what to do, for the problems net.oauth's table lists.
    fn cause(&self) -> &'static str {
        match self.name.as_str() {
            "signature_invalid" => {
                "the signature did not verify: the private key is not the one whose public key is in \
                 the application link, or the server sees a different URL (ATL_BASE_URL must be the \
                 product's base URL as the server knows it, including a proxy's scheme, host and port)"
            }
            "timestamp_refused" => {
                "the server refused the timestamp: this machine's clock is off; sync it (NTP)"
            }
            "consumer_key_unknown" => {
                "the server does not know the consumer key: ATL_CONSUMER_KEY must match the incoming \
                 authentication's consumer key in the application link"
            }
            "token_rejected" | "token_expired" | "token_revoked" => {
                "the access token was revoked or has expired: run `atl-token login`"
            }
            "nonce_used" => "the server saw this nonce before: try again",
            "permission_denied" => {
                "the user denied access, or may not use this application link: run `atl-token login` \
                 and allow access"
            }
            "signature_method_rejected" => "the application link does not accept RSA-SHA1 signatures",
            "parameter_absent" | "parameter_rejected" => "the server found a parameter missing or wrong",
            _ => "see the application link's settings and the server's log",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oauth_problem={}: {}", self.name, self.cause())?;
        if let Some(advice) = &self.advice {
            write!(f, " (server's advice: {advice})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers from an independent implementation, oauthlib; see
    /// tests/oauth1/known_answers.py, which wrote this file and which CI runs again.
    const KNOWN: &str = include_str!("../tests/oauth1/known_answers.json");
    const KEY: &str = include_str!("../tests/oauth1/test_key.pem");

    fn known() -> serde_json::Value {
        serde_json::from_str(KNOWN).expect("known answers are JSON")
    }

    #[test]
    fn encoding_follows_rfc_5849() {
        assert_eq!(encode("abcABC123-._~"), "abcABC123-._~");
        assert_eq!(encode("a b+c/d=e&f"), "a%20b%2Bc%2Fd%3De%26f");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("%"), "%25");
    }

    #[test]
    fn the_rfc_5849_section_3_4_1_example_base_string() {
        // RFC 5849 section 3.4.1.1, with the form body `c2&a3=2+q`.
        let url = Url::parse("http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b").expect("url");
        let form = vec![("c2".to_owned(), String::new()), ("a3".to_owned(), "2 q".to_owned())];
        let oauth = [
            ("oauth_consumer_key", "9djdj82h48djs9d2"),
            ("oauth_token", "kkk9d7dh3k39sjv7"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131201"),
            ("oauth_nonce", "7d8f3e4a"),
        ];
        let expected = "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
                        %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9dj\
                        dj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1\
                        %26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7";
        assert_eq!(base_string("post", &url, &form, &oauth), expected);
        assert_eq!(known()["rfc5849_base_string"], expected, "oauthlib agrees with the RFC");
    }

    #[test]
    fn base_string_uris_drop_default_ports_and_keep_others() {
        let uri = |s: &str| base_string_uri(&Url::parse(s).expect("url"));
        assert_eq!(uri("HTTP://Example.COM:80/r%20v/X?id=123"), "http://example.com/r%20v/X");
        assert_eq!(uri("https://www.example.net:8080/?q=1"), "https://www.example.net:8080/");
        assert_eq!(uri("https://jira.example.com:443/jira"), "https://jira.example.com/jira");
    }

    #[test]
    fn signatures_match_oauthlib_for_every_known_request() {
        let key = PrivateKey::from_pem(KEY).expect("the test key loads");
        let cases = known()["requests"].as_array().expect("requests").clone();
        assert!(cases.len() >= 3, "{cases:?}");
        for case in cases {
            let text = |k: &str| case[k].as_str().map(str::to_owned);
            let url = Url::parse(&text("url").expect("url")).expect("url parses");
            let form: Vec<(String, String)> = case["form"]
                .as_array()
                .expect("form")
                .iter()
                .map(|p| (p[0].as_str().expect("k").to_owned(), p[1].as_str().expect("v").to_owned()))
                .collect();
            let token = text("token");
            let signer = Signer {
                consumer_key: &text("consumer_key").expect("key"),
                key: &key,
                token: token.as_deref(),
            };
            let callback = text("callback");
            let verifier = text("verifier");
            let extra = Extra { callback: callback.as_deref(), verifier: verifier.as_deref() };
            let method = text("method").expect("method");
            let nonce = text("nonce").expect("nonce");
            let timestamp = case["timestamp"].as_u64().expect("timestamp");
            let header = signer.header_at(&method, &url, &form, &extra, &nonce, timestamp).expect("signs");

            let mut oauth = vec![
                ("oauth_consumer_key", signer.consumer_key),
                ("oauth_nonce", nonce.as_str()),
                ("oauth_signature_method", SIGNATURE_METHOD),
                ("oauth_version", "1.0"),
            ];
            let ts = timestamp.to_string();
            oauth.push(("oauth_timestamp", &ts));
            oauth.extend(token.as_deref().map(|t| ("oauth_token", t)));
            oauth.extend(callback.as_deref().map(|c| ("oauth_callback", c)));
            oauth.extend(verifier.as_deref().map(|v| ("oauth_verifier", v)));
            let base = base_string(&method, &url, &form, &oauth);
            assert_eq!(base, text("base_string").expect("base"), "{url}");
            let signature = case["signature"].as_str().expect("signature");
            assert_eq!(key.sign(&base).expect("signs"), signature, "{url}");
            assert!(header.contains(&format!("oauth_signature=\"{}\"", encode(signature))), "{header}");
        }
    }

    #[test]
    fn keys_load_from_pkcs1_and_pkcs8_and_bad_text_says_what_it_is() {
        let pkcs1 = PrivateKey::from_pem(KEY).expect("PKCS#1");
        assert_eq!(pkcs1.bits(), 2048);
        let pkcs8 = PrivateKey::from_pem(&pkcs1.to_pem().expect("pem")).expect("PKCS#8");
        assert_eq!(pkcs8.public_key(), pkcs1.public_key());
        assert!(format!("{pkcs8:?}").contains("2048 bits"));

        assert_eq!(PrivateKey::from_pem("hello").unwrap_err(), KeyError::NotPem);
        let public = pkcs1.public_pem().expect("public pem");
        assert_eq!(PrivateKey::from_pem(&public).unwrap_err(), KeyError::Public);
        assert_eq!(PrivateKey::from_pem(&pkcs1.public_pkcs1_pem()).unwrap_err(), KeyError::Public);
        let damaged = KEY.replace("MII", "MIX");
        assert_eq!(PrivateKey::from_pem(&damaged).unwrap_err(), KeyError::Malformed("PKCS#1"));
        let ec = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(PrivateKey::from_pem(ec).unwrap_err(), KeyError::NotRsa);
        // An Ed25519 key in PKCS#8 (RFC 8410's example).
        let ed25519 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                       -----END PRIVATE KEY-----\n";
        assert_eq!(PrivateKey::from_pem(ed25519).unwrap_err(), KeyError::NotRsa);
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(PrivateKey::from_pem(encrypted).unwrap_err(), KeyError::Encrypted);
    }

    #[test]
    fn problems_name_themselves_and_their_cause() {
        let p = Problem::of(b"oauth_problem=signature_invalid&oauth_signature_base_string=GET%26x")
            .expect("problem");
        assert_eq!(p.name, "signature_invalid");
        let text = p.to_string();
        assert!(text.starts_with("oauth_problem=signature_invalid: the signature did not verify"), "{text}");
        assert!(!text.contains("GET&x"), "the echoed base string stays out: {text}");
        assert!(Problem::of(b"oauth_problem=token_rejected").expect("problem").needs_login());
        assert!(!Problem::of(b"oauth_problem=nonce_used").expect("problem").needs_login());
        let advice = Problem::of(b"oauth_problem=timestamp_refused&oauth_problem_advice=clock%20skew")
            .expect("problem")
            .to_string();
        assert!(
            advice.contains("clock is off") && advice.contains("(server's advice: clock skew)"),
            "{advice}"
        );
        assert_eq!(Problem::of(b"{\"error\":\"x\"}"), None);
        assert_eq!(Problem::of(b"oauth_problem=%3Cscript%3E"), None);
    }

    #[test]
    fn a_generated_key_signs_what_its_public_key_verifies() {
        use rsa::signature::Verifier;
        let key = PrivateKey::generate(MIN_BITS).expect("generates");
        assert_eq!(key.bits(), MIN_BITS);
        let signature = key.sign("GET&x&y").expect("signs");
        let bytes = base64::engine::general_purpose::STANDARD.decode(signature).expect("base64");
        let verifier = rsa::pkcs1v15::VerifyingKey::<Sha1>::new(key.public_key());
        let signature = rsa::pkcs1v15::Signature::try_from(bytes.as_slice()).expect("signature");
        verifier.verify(b"GET&x&y", &signature).expect("verifies");
        assert!(verifier.verify(b"GET&x&z", &signature).is_err());
    }
}

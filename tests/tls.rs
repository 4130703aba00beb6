//! HTTPS token endpoints: a company certificate authority trusted through `ATL_CA_FILE`, and a
//! certificate that is not trusted, which is reported once, not retried. And the HTTPS
//! loopback listener, with the certificate it makes for each login.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A certificate authority of the test's own, and a server configuration whose certificate
/// (for 127.0.0.1 and localhost) it signed.
struct CompanyCa {
    pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn company_ca() -> CompanyCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "atl-token test company CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");

    let key = KeyPair::generate().expect("key");
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let leaf = CertificateParams::new(names).expect("params").signed_by(&key, &ca).expect("leaf");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let server =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("server certificate");
    CompanyCa { pem: ca.pem(), server: Arc::new(server) }
}

#[test]
fn a_company_ca_is_trusted_through_ca_file_or_ssl_cert_file() {
    let ca = company_ca();
    let env = TestEnv::with(AuthServer::start_with(Some(ca.server)));
    assert!(env.auth.token_url().starts_with("https://127.0.0.1:"));
    std::fs::write(env.path("corp-ca.pem"), &ca.pem).expect("write");
    env.write_env("ATL_CA_FILE=corp-ca.pem\n");
    env.write_token(-10);

    let out = env.run(&["refresh", "-q"]);
    assert_exit(&out, 0);
    assert!(env.auth.is_live(env.read_token()["refresh_token"].as_str().expect("rt")));
    assert_eq!(env.auth.token_calls().len(), 1);

    // The system's way, SSL_CERT_FILE, keeps working.
    env.write_env("");
    let out =
        env.command(&["refresh", "-q"]).env("SSL_CERT_FILE", env.path("corp-ca.pem")).output().expect("run");
    assert_exit(&out, 0);
    assert_eq!(env.auth.token_calls().len(), 2);
}

#[test]
fn an_untrusted_certificate_is_reported_once_and_not_retried() {
    let ca = company_ca();
    let env = TestEnv::with(AuthServer::start_with(Some(ca.server)));
    let old = env.write_token(-10);
    let before = std::fs::read(env.token_file()).expect("read");

    let out = env.run(&["refresh"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains(&env.auth.token_url()), "names the endpoint: {err}");
    assert!(err.contains("certificate is not trusted") && err.contains("set ATL_CA_FILE"), "{err}");
    assert!(err.contains("Nothing was sent"), "{err}");
    assert_eq!(env.auth.server.connections(), 1, "not retried");
    assert!(env.auth.token_calls().is_empty());
    assert_eq!(std::fs::read(env.token_file()).expect("read"), before);
    assert!(env.auth.is_live(&old));
}

#[test]
fn a_ca_file_that_is_missing_or_holds_no_certificate_is_a_usage_error() {
    let env = TestEnv::new();
    env.write_token(-10);
    env.write_env("ATL_CA_FILE=missing.pem\n");
    let out = env.run(&["refresh"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&env.path("missing.pem").display().to_string()), "{err}");
    assert!(err.contains("ATL_CA_FILE in"), "{err}");

    std::fs::write(env.path("empty.pem"), "not a certificate\n").expect("write");
    env.write_env("ATL_CA_FILE=empty.pem\n");
    let out = env.run(&["refresh"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("holds no PEM certificate"), "{}", stderr(&out));
    assert!(env.auth.token_calls().is_empty());
}

/// Accepts any certificate and keeps the one it was shown, so that the test can check it
/// against the fingerprint atl-token printed before trusting it.
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Option<Vec<u8>>>,
}

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("lock") = Some(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate the listener on `port` presents for `localhost`.
fn listener_certificate(port: u16) -> Vec<u8> {
    let recorder = Arc::new(Recorder::default());
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, socket);
    // A request for a page that does not exist: the handshake is what matters.
    tls.write_all(b"GET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("handshake and send");
    let _ = tls.read_to_end(&mut Vec::new());
    recorder.seen.lock().expect("lock").take().expect("a certificate was presented")
}

#[test]
fn a_login_through_the_https_listener_with_its_own_certificate() {
    let env = TestEnv::with(AuthServer::datacenter());
    let port = free_port();
    env.write_env(&format!("ATL_REDIRECT_URI=https://localhost:{port}/callback\n"));
    let mut child = env.spawn(&["login", "--no-browser"]);
    let stderr = StderrLines::take(&mut child);
    let start = stderr.wait_line(|l| l.trim_start().starts_with("https://localhost")).trim().to_owned();
    let printed = stderr.wait_line(|l| l.trim_start().len() == 95 && l.matches(':').count() == 31);
    stderr.wait_line(|l| l.starts_with("Waiting"));

    // The test's client trusts the certificate atl-token made, after checking that it is the
    // one whose fingerprint was printed, and nothing else.
    let der = listener_certificate(port);
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    let fingerprint: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(printed.trim(), fingerprint.join(":"));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let browser = reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_der(&der).expect("certificate")])
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // The start page sends the browser to the authorize URL, with PKCE.
    let to_authorize = browser.get(&start).send().expect("start page over TLS");
    assert_eq!(to_authorize.status(), 302);
    let location = to_authorize.headers()["location"].to_str().expect("location");
    let authorize_url = url::Url::parse(location).expect("authorize URL");
    assert!(authorize_url.path().ends_with("/rest/oauth2/latest/authorize"), "{authorize_url}");
    assert!(authorize_url.query_pairs().any(|(k, _)| k == "code_challenge"));

    // The server sends it back with a code, over TLS, to the listener.
    let callback = authorize(&authorize_url);
    assert_eq!(callback.scheme(), "https");
    let page = browser.get(callback).send().expect("callback over TLS");
    assert_eq!(page.status(), 200);
    assert!(page.text().expect("page").contains("You can close this tab"));

    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{}", stderr.all());
    let token = env.read_token();
    assert!(env.auth.is_live(token["refresh_token"].as_str().expect("refresh token")));
    assert_eq!(
        env.auth.token_calls()[0].param("redirect_uri"),
        Some(format!("https://localhost:{port}/callback"))
    );
}

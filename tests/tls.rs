//! HTTPS token endpoints: a company certificate authority trusted through `ATL_CA_FILE`, and a
//! certificate that is not trusted, which is reported once, not retried.

mod common;

use std::sync::Arc;

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

//! What every use of the AWS SDK shares: the client settings (the standard AWS environment,
//! HTTPS through rustls and ring, every call bounded) and one sentence for a failed call.
//! Used by the AWS Secrets Manager store and by `psoxy`.

use std::time::Duration;

use anyhow::Result;
use aws_config::{BehaviorVersion, SdkConfig};
// The SDK's error types are the same in every service crate (re-exported from smithy).
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::exit::Exit;

/// AWS error codes that may pass if tried again.
const TRANSIENT: [&str; 7] = [
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
    "RequestTimeout",
];

/// The SDK's settings from the standard AWS environment and files (`AWS_REGION`,
/// `AWS_PROFILE`, `AWS_ENDPOINT_URL`, SSO, roles, …), with HTTPS through rustls and ring and
/// every call bounded by `timeout`. Without a region, `arn`'s is used; without either, exit 2.
pub async fn settings(timeout: Duration, arn: Option<&str>, what: &str) -> Result<SdkConfig> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeout / 2)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout * 2)
        .build();
    let loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http).timeout_config(timeouts);
    let from_arn = arn.and_then(|a| a.strip_prefix("arn:")).and_then(|rest| rest.split(':').nth(2));
    let sdk = loader.load().await;
    if sdk.region().is_some() {
        return Ok(sdk);
    }
    // An ARN names its region: use it when the settings name none.
    let Some(region) = from_arn.filter(|r| !r.is_empty()) else {
        return Err(Exit::usage(format!(
            "no AWS region for {what}: set AWS_REGION (or a region in the AWS_PROFILE's config){}",
            if arn.is_some() { ", or give the secret's ARN" } else { "" }
        ))
        .into());
    };
    Ok(sdk.to_builder().region(aws_config::Region::new(region.to_owned())).build())
}

/// A failed AWS call in one sentence: the service, the operation, the resource, and AWS's
/// error code and message (or what kept the call from AWS), with what to check; and whether
/// trying again may help. The SDK's full debug form, a few KiB, goes to `-v`.
pub struct Failure {
    pub message: String,
    pub passing: bool,
}

pub fn failure<E>(service: &str, action: &str, resource: &str, error: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    crate::http::log(|| format!("AWS {action} failed: {error:?}"));
    let service_error = error.as_service_error();
    // An answer the SDK could not read (moto's XML for a bad signature, say) still names its
    // code and message.
    let raw = error.raw_response().and_then(|r| r.body().bytes()).map(String::from_utf8_lossy);
    let tag = |name: &str| {
        let text = raw.as_deref()?;
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        Some(text[start..].split('<').next()?.to_owned())
    };
    let (raw_code, raw_message) = (tag("Code"), tag("Message"));
    let code = service_error
        .and_then(ProvideErrorMetadata::code)
        .or(raw_code.as_deref())
        .unwrap_or_default()
        .to_owned();
    let hint = match code.as_str() {
        "AccessDeniedException" => {
            format!(" (the IAM policy must allow {action} on {resource}: see the README)")
        }
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch" => {
            " (AWS refused the credentials: check AWS_PROFILE, or AWS_ACCESS_KEY_ID and \
                                     AWS_SECRET_ACCESS_KEY)"
                .to_owned()
        }
        _ => String::new(),
    };
    let detail = match (service_error, error) {
        (Some(e), _) => {
            let message = e.message().or(raw_message.as_deref());
            let message = message.map(|m| format!(": {m}")).unwrap_or_default();
            format!("{}{message}", if code.is_empty() { "an error with no code" } else { &code })
        }
        (None, SdkError::TimeoutError(_)) => "no answer in time".to_owned(),
        (None, SdkError::DispatchFailure(_)) => {
            format!("AWS could not be reached ({})", crate::text::root_cause(error))
        }
        (None, SdkError::ResponseError(_)) => {
            format!("its answer could not be read ({})", crate::text::root_cause(error))
        }
        (None, _) => crate::text::root_cause(error),
    };
    let status = error.raw_response().map(|r| r.status().as_u16());
    let passing = match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        _ => TRANSIENT.contains(&code.as_str()) || status.is_some_and(|s| s == 429 || s >= 500),
    };
    let message = crate::text::one_line(&format!("{service} {action} on {resource} failed: {detail}{hint}"));
    // The credentials never show, whatever an answer echoes.
    let credentials: Vec<String> = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .filter(|v| v.len() >= 4)
        .collect();
    let credentials: Vec<&str> = credentials.iter().map(String::as_str).collect();
    Failure { message: crate::oauth::redact(&message, &credentials), passing }
}

//! The checks every URL setting passes: absolute, http(s), plain http only to a loopback
//! host, and the endpoints below a Server or Data Center base URL.

use url::{Host, Url};

use super::*;
use crate::exit::Exit;
use crate::provider;

/// A Data Center base URL: where the product answers, perhaps with a context path such as
/// `/jira`.
pub(super) fn base_url(setting: &Setting) -> Result<Url, Exit> {
    let url = parse_url(setting)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(setting, "give the base URL alone, without ?query or #fragment"));
    }
    Ok(url)
}

/// `{base}/rest/oauth2/latest/{name}`.
pub(super) fn below(base: &Url, name: &str) -> Url {
    below_path(base, provider::DATACENTER_PATH, name)
}

/// `{base}/{path}/{name}`.
pub(super) fn below_path(base: &Url, path: &str, name: &str) -> Url {
    let text = format!("{}/{path}/{name}", base.as_str().trim_end_matches('/'));
    Url::parse(&text).expect("a path below a valid URL is valid")
}

pub(super) fn invalid(setting: &Setting, hint: &str) -> Exit {
    Exit::usage(format!("{}: '{}' is not valid: {hint}", setting.origin, setting.value))
}

/// An absolute http(s) URL; plain http only to a loopback host, since the client secret
/// and tokens travel in these requests.
pub(super) fn parse_url(setting: &Setting) -> Result<Url, Exit> {
    let url = Url::parse(&setting.value)
        .map_err(|e| invalid(setting, &format!("{e}; write a full URL such as https://example.com/path")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback_host(&url).is_some() => Ok(url),
        "http" => Err(invalid(setting, "plain http is only allowed to a loopback host; use https")),
        _ => Err(invalid(setting, "use an http or https URL")),
    }
}

/// Which loopback name a URL uses, if it is on loopback.
pub fn loopback_host(url: &Url) -> Option<LoopbackHost> {
    match url.host()? {
        Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => Some(LoopbackHost::Localhost),
        Host::Ipv4(ip) if ip.is_loopback() => Some(LoopbackHost::V4),
        Host::Ipv6(ip) if ip.is_loopback() => Some(LoopbackHost::V6),
        _ => None,
    }
}

/// `MOUNT/PATH` of `vault:MOUNT/PATH` (a `/` at either end ignored): a mount and at least
/// one name below it, each of letters, digits, `.`, `_` and `-`, none `.` or `..`, so that
/// the URLs built from them stay in the mount (no `..`, `%2e`, `?` or `#`).
pub fn vault_secret_path(id: &str) -> bool {
    let plain = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    segments.len() >= 2 && segments.into_iter().all(plain)
}

/// A store server's address from the environment (`VAULT_ADDR`, `ATL_GCP_ENDPOINT`), which
/// the store's credentials (`what`) go to: https, or http on a loopback address.
#[cfg(any(feature = "vault", feature = "gcp"))]
pub fn store_address(var: &str, value: &str, what: &str) -> Result<Url, Exit> {
    let url = Url::parse(value.trim()).map_err(|e| Exit::usage(format!("{var} {value}: not a URL ({e})")))?;
    if url.scheme() != "https" && loopback_host(&url).is_none() {
        return Err(Exit::usage(format!(
            "{var} {value} is not https, and {what} would be sent there: use https (http only on loopback)"
        )));
    }
    Ok(url)
}

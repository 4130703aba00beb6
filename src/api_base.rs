//! Where API calls go: the API base (the Server or Data Center base URL, or Cloud's gateway
//! with the site's cloud id, looked up once and cached in the token set), and the URLs below
//! it that a token may be sent to. Used by `api`, `sites` and `print`.

use anyhow::{Context, Result, anyhow};
use url::Url;

use crate::config::{Config, SITE};
use crate::exit::Exit;
use crate::session::{Call, Session};
use crate::sites::{self, Choice, Site};
use crate::store::TokenStore;
use crate::token::Token;

/// The URL for `path`: below `base` when relative, or a full URL on the base's host (the
/// token goes nowhere else).
pub fn target(base: &str, path: &str) -> Result<Url, Exit> {
    let base_url =
        Url::parse(base).map_err(|e| Exit::usage(format!("the API base {base} is not a URL: {e}")))?;
    if path.starts_with("http://") || path.starts_with("https://") {
        let url = Url::parse(path).map_err(|e| Exit::usage(format!("{path} is not a URL: {e}")))?;
        if url.origin() != base_url.origin() {
            return Err(Exit::usage(format!(
                "{path} is not on {}, where the API is: atl-token sends the token to the API's host only",
                base_url.origin().ascii_serialization()
            )));
        }
        return Ok(url);
    }
    let slash = if path.starts_with('/') { "" } else { "/" };
    let url = Url::parse(&format!("{base}{slash}{path}"))
        .map_err(|e| Exit::usage(format!("{path}: not a valid path ({e})")))?;
    // `..` is resolved by the parse: the result must still be below the base.
    let below = base_url.path().trim_end_matches('/');
    let path_now = url.path();
    if url.origin() != base_url.origin()
        || !(path_now == below || path_now.starts_with(&format!("{below}/")) || below.is_empty())
    {
        return Err(Exit::usage(format!(
            "{path} leads out of the API base {base}: atl-token sends the token only below it"
        )));
    }
    Ok(url)
}

/// The command works on Atlassian Cloud only: on Data Center the site is the base URL.
pub fn require_cloud(config: &Config, what: &str) -> Result<(), Exit> {
    match config.api_base() {
        None => Ok(()),
        Some(_) => Err(Exit::usage(format!(
            "{what} is for Atlassian Cloud's cloud ids; on Server and Data Center, API calls go to \
             ATL_BASE_URL (`atl-token print --api-base`)"
        ))),
    }
}

/// The cloud site for `ATL_SITE` (or the only one), from the cache in the token file when it
/// is for that site, else looked up and cached: `(site URL, cloud id)`.
pub fn cloud_site(config: &Config, store: &dyn TokenStore, token: &Token) -> Result<(String, String)> {
    if let Some((site, id)) = token.cloud()
        && crate::token::is_cloud_id(id)
        && config.site.as_ref().is_none_or(|wanted| sites::same_site(site, wanted))
    {
        return Ok((site.to_owned(), id.to_owned()));
    }
    // A service account may reach no site through accessible-resources: its site's own
    // public tenant info names the cloud id.
    let by_tenant_info = config.renewable().then_some(config.site.as_ref()).flatten();
    let list = match look_up(config, store) {
        Ok(list) => list,
        Err(e) if by_tenant_info.is_some() => {
            crate::http::log(|| format!("{e:#}; asking the site instead"));
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let site = match (sites::choose(&list, config.site.as_ref()), by_tenant_info) {
        (Choice::One(site), _) => site.clone(),
        (_, Some(wanted)) => Site {
            name: String::new(),
            url: wanted.as_str().trim_end_matches('/').to_owned(),
            id: tenant_info(config, wanted)?,
            product: "other",
            scopes: Vec::new(),
        },
        (_, None) if config.renewable() => {
            return Err(Exit::usage(format!(
                "a Cloud service account finds its cloud id through its site: set {} to it, e.g. \
                 https://your-team.atlassian.net",
                SITE.name
            ))
            .into());
        }
        (choice, None) => return Err(no_site(config, &list, choice)),
    };
    store.update(&mut |token| token.with_cloud(&site.url, &site.id))?;
    Ok((site.url, site.id))
}

/// Why no one site was chosen.
fn no_site(config: &Config, list: &[Site], choice: Choice<'_>) -> anyhow::Error {
    match choice {
        Choice::NotFound => {
            let wanted = config.site.as_ref().map(Url::as_str).unwrap_or_default();
            Exit::usage(format!(
                "the token does not reach {wanted} ({} says so); it reaches: {}. Fix {}, or log in and \
                 grant access to that site",
                SITE.name,
                list_sites(list),
                SITE.name
            ))
            .into()
        }
        Choice::Several => Exit::usage(format!(
            "the token reaches several sites: {}. Set {} to the one to use",
            list_sites(list),
            SITE.name
        ))
        .into(),
        Choice::None | Choice::One(_) => {
            anyhow!(
                "the token reaches no site: check the app's permissions, then run `atl-token login` \
                 and grant access to a site"
            )
        }
    }
}

/// The cloud id a Cloud site names itself at `{site}/_edge/tenant_info`, a public page: no
/// token is sent there.
fn tenant_info(config: &Config, site: &Url) -> Result<String> {
    let url = site.join("_edge/tenant_info").with_context(|| format!("cannot build a URL from {site}"))?;
    let shown = crate::http::shown(&url);
    let client = crate::http::client(config)?;
    let answer = crate::http::runtime()?
        .block_on(crate::http::get_public(&client, &url))
        .map_err(|e| anyhow!("cannot read the site's cloud id from {shown}: {e}"))?;
    let id = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .filter(|_| (200..300).contains(&answer.status))
        .and_then(|v| v.get("cloudId")?.as_str().map(str::to_owned))
        .filter(|id| crate::token::is_cloud_id(id))
        .ok_or_else(|| {
            anyhow!(
                "{shown} answered HTTP {} without a cloud id: is {} ({}) an Atlassian Cloud site?",
                answer.status,
                site,
                SITE.name
            )
        })?;
    Ok(id)
}

/// Where API calls for `product` go: `{ATL_API_URL}/ex/{product}/{cloud id}` on Cloud (the
/// cloud id from the cache, or looked up), the base URL on Data Center. No trailing slash.
pub fn api_base(config: &Config, store: &dyn TokenStore, token: &Token, product: &str) -> Result<String> {
    if let Some(base) = config.api_base() {
        return Ok(base.to_owned());
    }
    let (_, id) = cloud_site(config, store, token)?;
    Ok(cloud_api_base(config, product, &id))
}

/// `{ATL_API_URL}/ex/{product}/{cloud id}`.
pub fn cloud_api_base(config: &Config, product: &str, id: &str) -> String {
    format!("{}/ex/{product}/{id}", gateway(config))
}

/// `ATL_API_URL` without a trailing slash.
fn gateway(config: &Config) -> &str {
    config.api.url.as_str().trim_end_matches('/')
}

fn list_sites(list: &[Site]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for site in list {
        if !seen.contains(&site.url.as_str()) {
            seen.push(&site.url);
        }
    }
    seen.join(", ")
}

/// The sites the token reaches, with an access token refreshed first when needed, and the
/// session's rules for a 401 and for 429 and 503.
pub fn look_up(config: &Config, store: &dyn TokenStore) -> Result<Vec<Site>> {
    let url = Url::parse(&format!("{}/{}", gateway(config), sites::RESOURCES_PATH))
        .with_context(|| format!("cannot build the sites URL from {}", config.api))?;
    let (session, _) = Session::open(config, store, Call::get())?;
    let answer = session.send(&url)?;
    if !(200..300).contains(&answer.status) {
        let shown = crate::http::shown(&url);
        return Err(anyhow!(
            "{shown} answered HTTP {}: \"{}\"",
            answer.status,
            session.excerpt(&answer.body)
        ));
    }
    sites::parse(&answer.body).map_err(|e| anyhow!("{}: {e}", crate::http::shown(&url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_below_the_base_and_full_urls_stay_on_its_host() {
        let base = "https://api.example.com/ex/jira/c-1";
        assert_eq!(
            target(base, "/rest/api/3/myself").expect("url").as_str(),
            "https://api.example.com/ex/jira/c-1/rest/api/3/myself"
        );
        assert_eq!(
            target(base, "rest/x?a=1").expect("url").as_str(),
            "https://api.example.com/ex/jira/c-1/rest/x?a=1"
        );
        assert!(target(base, "https://api.example.com/other").is_ok());
        let err =
            target(base, "https://evil.example.com/ex/jira/c-1/x").expect_err("another host").to_string();
        assert!(err.contains("sends the token to the API's host only"), "{err}");
        assert!(target(base, "http://api.example.com/x").is_err(), "another scheme is another origin");
        for escape in ["/../../evil", "../x", "/..%2F../x/../../../y", "/a/../../../b"] {
            let err = target(base, escape).map(|u| u.to_string());
            assert!(
                err.as_ref().is_err_and(|e| e.to_string().contains("leads out of the API base"))
                    || err.as_ref().is_ok_and(|u| u.starts_with(&format!("{base}/"))),
                "{escape}: {err:?}"
            );
        }
        assert!(target(base, "/../../evil").is_err());
        assert_eq!(
            target("https://jira.example.com", "/../rest/x").expect("root base").as_str(),
            "https://jira.example.com/rest/x"
        );
    }
}

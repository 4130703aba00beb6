//! `atl-token sites`: the Atlassian Cloud sites the token reaches, and the cloud id that
//! `print` caches in the token file.

use anyhow::{Context, Result, anyhow};
use url::Url;

use crate::cli::{Product, SitesArgs};
use crate::commands::session::{Call, Session};
use crate::config::{Config, SITE};
use crate::exit::Exit;
use crate::sites::{self, Choice, Site};
use crate::store::{self, TokenStore};
use crate::token::Token;

pub fn run(config: &Config, args: &SitesArgs) -> Result<()> {
    require_cloud(config, "sites")?;
    let store = store::open(config)?;
    let list = look_up(config, store.as_ref())?;
    // Listing refreshes the cache, when the settings name one site.
    if let Choice::One(site) = sites::choose(&list, config.site.as_ref()) {
        store.update(&mut |token| token.with_cloud(&site.url, &site.id))?;
    }
    let out = if args.json {
        crate::text::json_for_terminal(
            serde_json::to_string_pretty(&list).context("cannot write the sites as JSON")?,
        ) + "\n"
    } else if list.is_empty() {
        "(no sites: the token reaches no site; check the app's permissions and consent again)\n".to_owned()
    } else {
        sites::table(&list)
    };
    super::print::write_out(out.as_bytes())
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
    let list = look_up(config, store)?;
    let site = match sites::choose(&list, config.site.as_ref()) {
        Choice::One(site) => site.clone(),
        Choice::NotFound => {
            let wanted = config.site.as_ref().map(Url::as_str).unwrap_or_default();
            return Err(Exit::usage(format!(
                "the token does not reach {wanted} ({} says so); it reaches: {}. Fix {}, or log in and \
                 grant access to that site",
                SITE.name,
                list_sites(&list),
                SITE.name
            ))
            .into());
        }
        Choice::Several => {
            return Err(Exit::usage(format!(
                "the token reaches several sites: {}. Set {} to the one to use",
                list_sites(&list),
                SITE.name
            ))
            .into());
        }
        Choice::None => {
            return Err(anyhow!(
                "the token reaches no site: check the app's permissions, then run `atl-token login` \
                 and grant access to a site"
            ));
        }
    };
    store.update(&mut |token| token.with_cloud(&site.url, &site.id))?;
    Ok((site.url, site.id))
}

/// Where API calls for `product` go: `{ATL_API_URL}/ex/{product}/{cloud id}` on Cloud (the
/// cloud id from the cache, or looked up), the base URL on Data Center. No trailing slash.
pub fn api_base(config: &Config, store: &dyn TokenStore, token: &Token, product: Product) -> Result<String> {
    if let Some(base) = config.api_base() {
        return Ok(base.to_owned());
    }
    let (_, id) = cloud_site(config, store, token)?;
    Ok(cloud_api_base(config, product, &id))
}

/// `{ATL_API_URL}/ex/{product}/{cloud id}`.
pub fn cloud_api_base(config: &Config, product: Product, id: &str) -> String {
    format!("{}/ex/{}/{id}", gateway(config), product.name())
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
fn look_up(config: &Config, store: &dyn TokenStore) -> Result<Vec<Site>> {
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

//! The environment another program gets the token in: `print --env`'s `export` lines and
//! `exec`'s environment, in atl-token's names or in those mcp-atlassian reads for a token it
//! is given (bring your own token).

use anyhow::Result;

use crate::api_base;
use crate::config::Config;
use crate::store::TokenStore;
use crate::token::Token;

/// Whose names the variables have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `ATL_ACCESS_TOKEN`, `ATL_CLOUD_ID` (Cloud) and `ATL_API_BASE`.
    Atl,
    /// mcp-atlassian's: `ATLASSIAN_OAUTH_ACCESS_TOKEN`, `ATLASSIAN_OAUTH_CLOUD_ID` (Cloud), and
    /// the site as `JIRA_URL` or `CONFLUENCE_URL`.
    McpAtlassian,
}

/// The variables that hand `access` (the access token of `token`) to a program for
/// `product`'s API, in `style`'s names. On Cloud, the cloud id comes from the token set's
/// cache, or is looked up once.
pub fn variables(
    config: &Config,
    store: &dyn TokenStore,
    token: &Token,
    access: &str,
    product: &str,
    style: Style,
) -> Result<Vec<(&'static str, String)>> {
    let cloud = match config.api_base() {
        Some(_) => None,
        None => Some(api_base::cloud_site(config, store, token)?),
    };
    let access = access.to_owned();
    Ok(match (style, cloud) {
        (Style::Atl, None) => vec![
            ("ATL_ACCESS_TOKEN", access),
            ("ATL_API_BASE", config.api_base().unwrap_or_default().to_owned()),
        ],
        (Style::Atl, Some((_, id))) => {
            let base = api_base::cloud_api_base(config, product, &id);
            vec![("ATL_ACCESS_TOKEN", access), ("ATL_CLOUD_ID", id), ("ATL_API_BASE", base)]
        }
        (Style::McpAtlassian, cloud) => {
            let is_cloud = cloud.is_some();
            let site = match &cloud {
                Some((site, _)) => site.trim_end_matches('/').to_owned(),
                None => config.api_base().unwrap_or_default().to_owned(),
            };
            let mut vars = vec![("ATLASSIAN_OAUTH_ACCESS_TOKEN", access)];
            vars.extend(cloud.map(|(_, id)| ("ATLASSIAN_OAUTH_CLOUD_ID", id)));
            // On Cloud, Confluence lives below the site's /wiki.
            match product {
                "confluence" if is_cloud => vars.push(("CONFLUENCE_URL", format!("{site}/wiki"))),
                "confluence" => vars.push(("CONFLUENCE_URL", site)),
                _ => vars.push(("JIRA_URL", site)),
            }
            vars
        }
    })
}

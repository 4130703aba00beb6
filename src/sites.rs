//! Atlassian Cloud's accessible resources: which sites a 3LO token reaches, their cloud ids,
//! and which one `ATL_SITE` means. Pure: the request is made by the `sites` command.

use serde_json::Value;
use url::Url;

/// Where the sites a token reaches are listed, below the API gateway.
pub const RESOURCES_PATH: &str = "oauth/token/accessible-resources";

/// One accessible resource: a site, for one product. A site with Jira and Confluence is
/// listed twice, with the same cloud id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Site {
    pub name: String,
    pub url: String,
    pub id: String,
    pub product: &'static str,
    pub scopes: Vec<String>,
}

/// Reads the accessible-resources answer: a JSON array of `{id, url, name, scopes}`.
pub fn parse(body: &[u8]) -> Result<Vec<Site>, String> {
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(body) else {
        return Err("the answer is not a JSON array of sites".to_owned());
    };
    let text = |item: &Value, key: &str| item.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    items
        .iter()
        .map(|item| {
            let scopes: Vec<String> = item
                .get("scopes")
                .and_then(Value::as_array)
                .map(|s| s.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            let site = Site {
                name: text(item, "name"),
                url: text(item, "url"),
                id: text(item, "id"),
                product: product_of(&scopes),
                scopes,
            };
            if site.id.is_empty() {
                Err("a site in the answer has no id".to_owned())
            } else if !crate::token::is_cloud_id(&site.id) {
                Err("a site in the answer has a cloud id that is not letters, digits and dashes".to_owned())
            } else {
                Ok(site)
            }
        })
        .collect()
}

/// The product a resource is for, from its scopes (`read:jira-work`, `read:confluence-…`,
/// `read:servicedesk-request`, `read:page:confluence`).
fn product_of(scopes: &[String]) -> &'static str {
    let any = |word: &str| scopes.iter().any(|s| s.contains(word));
    if any("confluence") {
        "confluence"
    } else if any("jira") || any("servicedesk") || any("servicemanagement") {
        "jira"
    } else {
        "other"
    }
}

/// Why no one site could be chosen.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice<'a> {
    One(&'a Site),
    /// `ATL_SITE` names no site the token reaches.
    NotFound,
    /// No `ATL_SITE`, and the token reaches several sites.
    Several,
    /// The token reaches no site at all.
    None,
}

/// The site `wanted` (`ATL_SITE`) names, compared by scheme and host; without it, the only
/// site the token reaches.
pub fn choose<'a>(sites: &'a [Site], wanted: Option<&Url>) -> Choice<'a> {
    let Some(first) = sites.first() else { return Choice::None };
    match wanted {
        Some(wanted) => {
            sites.iter().find(|s| same_site(&s.url, wanted)).map_or(Choice::NotFound, Choice::One)
        }
        None if sites.iter().all(|s| s.id == first.id) => Choice::One(first),
        None => Choice::Several,
    }
}

/// Whether `url` is the site `wanted`: same scheme and host, whatever the path.
pub fn same_site(url: &str, wanted: &Url) -> bool {
    Url::parse(url).is_ok_and(|u| {
        u.scheme() == wanted.scheme()
            && u.host_str().is_some_and(|h| Some(h) == wanted.host_str())
            && u.port_or_known_default() == wanted.port_or_known_default()
    })
}

/// The sites as lines a person reads, one per resource.
pub fn table(sites: &[Site]) -> String {
    let rows: Vec<[String; 5]> = sites
        .iter()
        .map(|s| [&s.name, &s.url, &s.id, s.product, &s.scopes.join(" ")].map(crate::text::one_line))
        .collect();
    let header = ["NAME", "URL", "CLOUD ID", "PRODUCT", "SCOPES"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"[
        {"id": "c-1", "url": "https://a.atlassian.net", "name": "a", "scopes": ["read:jira-work"], "avatarUrl": "x"},
        {"id": "c-1", "url": "https://a.atlassian.net", "name": "a", "scopes": ["read:page:confluence"]},
        {"id": "c-2", "url": "https://b.atlassian.net", "name": "b", "scopes": ["read:servicedesk-request"]}
    ]"#;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    #[test]
    fn resources_are_read_with_their_product() {
        let sites = parse(TWO.as_bytes()).expect("parses");
        assert_eq!(sites.len(), 3);
        assert_eq!(sites[0].product, "jira");
        assert_eq!(sites[1].product, "confluence");
        assert_eq!(sites[2].product, "jira");
        assert_eq!(sites[0].scopes, ["read:jira-work"]);
        assert!(parse(b"{}").is_err());
        assert!(parse(br#"[{"url": "https://x"}]"#).is_err());
        assert_eq!(parse(b"[]"), Ok(vec![]));
        let hostile = br#"[{"id": "x; touch /tmp/pwned; #", "url": "https://x"}]"#;
        assert!(parse(hostile).expect_err("refused").contains("not letters, digits and dashes"));
    }

    #[test]
    fn atl_site_chooses_by_host_and_one_site_needs_no_choice() {
        let sites = parse(TWO.as_bytes()).expect("parses");
        assert_eq!(choose(&sites, Some(&url("https://B.atlassian.net/"))), Choice::One(&sites[2]));
        assert_eq!(choose(&sites, Some(&url("https://c.atlassian.net"))), Choice::NotFound);
        assert_eq!(choose(&sites, None), Choice::Several);
        assert_eq!(choose(&sites[..2], None), Choice::One(&sites[0]), "one site, two products");
        assert_eq!(choose(&[], None), Choice::None);
    }

    #[test]
    fn the_table_shows_no_escape_sequence_a_server_sent() {
        let hostile = r#"[{"id": "c-1", "url": "https://a.atlassian.net\u001b]8;;https://evil/\u0007",
                          "name": "\u001b[2J\u001b[31mHACKED", "scopes": ["read:jira-work\u009b"]}]"#;
        let table = table(&parse(hostile.as_bytes()).expect("parses"));
        assert!(!table.chars().any(|c| c.is_control() && c != '\n'), "{table:?}");
        assert!(table.contains("[2J[31mHACKED"), "{table}");
    }

    #[test]
    fn the_table_lines_up() {
        let sites = parse(TWO.as_bytes()).expect("parses");
        let table = table(&sites[..1]);
        assert_eq!(
            table,
            "NAME  URL                      CLOUD ID  PRODUCT  SCOPES\n\
             a     https://a.atlassian.net  c-1       jira     read:jira-work\n"
        );
    }
}

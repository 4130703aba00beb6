//! `atl-token api`: one authenticated request below the API base, or `--paginate` through a
//! listing in any of Atlassian's paging styles.

use std::io::{IsTerminal, Read};

use anyhow::{Context, Result, anyhow};
use reqwest::Method;
use serde_json::Value;
use url::Url;

use crate::api_base::{self, target};
use crate::cli::ApiArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::http::{self, Answer};
use crate::paging::{self, Next};
use crate::session::{Call, Session};
use crate::store;
use crate::text;

/// A listing longer than this many pages is taken to be a loop, or a server that lies about
/// its total.
const MAX_PAGES: usize = 100_000;
/// `--paginate` without `--ndjson` keeps the array until the last page: no more than this.
const MAX_ARRAY_BYTES: usize = 1024 * 1024 * 1024;

pub fn run(config: &Config, args: &ApiArgs) -> Result<()> {
    // The command line first: a mistake there costs no request.
    let mut headers = parse_headers(&args.headers)?;
    let body = args.data.as_deref().map(read_body).transpose()?;
    if body.is_some() && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    pass_xsrf_check(&mut headers);
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| Exit::usage(format!("-X {m}: not an HTTP method")))?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let store = store::open(config)?;
    let (session, token) = Session::open(config, store.as_ref(), Call { method, headers, body })?;
    let base = api_base::api_base(config, store.as_ref(), &token, args.product.name())?;
    let url = target(&base, &args.path)?;
    if args.paginate {
        return paginate(&session, &base, url, args);
    }
    let answer = session.send(&url)?;
    crate::output::write_out(&shown(&answer.body))?;
    check_status(&answer, &url)
}

/// Jira and Confluence refuse a form post (or `text/plain`) to their REST API as a possible
/// cross-site request forgery unless it says `X-Atlassian-Token: no-check`: a script's post
/// is no forgery, so it says so, unless the user set the header.
fn pass_xsrf_check(headers: &mut Vec<(String, String)>) {
    const XSRF_TYPES: [&str; 3] = ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"];
    let form = headers.iter().any(|(name, value)| {
        let value = value.trim_start().to_ascii_lowercase();
        name.eq_ignore_ascii_case("content-type") && XSRF_TYPES.iter().any(|t| value.starts_with(t))
    });
    if form && !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(XSRF_HEADER)) {
        headers.push((XSRF_HEADER.to_owned(), "no-check".to_owned()));
    }
}

const XSRF_HEADER: &str = "X-Atlassian-Token";

/// `Name: value` headers. `Authorization` is atl-token's to set.
fn parse_headers(raw: &[String]) -> Result<Vec<(String, String)>, Exit> {
    raw.iter()
        .map(|h| {
            let (name, value) =
                h.split_once(':').ok_or_else(|| Exit::usage(format!("-H '{h}': write Name: value")))?;
            let (name, value) = (name.trim(), value.trim());
            let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && reqwest::header::HeaderValue::from_str(value).is_ok();
            if !valid {
                return Err(Exit::usage(format!("-H '{h}': not a valid header")));
            }
            if name.eq_ignore_ascii_case("authorization") {
                return Err(Exit::usage("-H Authorization: atl-token sets it from the token file"));
            }
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// `-d`: the text itself, `@file`, or `@-` for stdin.
fn read_body(data: &str) -> Result<Vec<u8>> {
    match data.strip_prefix('@') {
        Some("-") => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).context("cannot read the body from stdin")?;
            Ok(body)
        }
        Some(file) => std::fs::read(file)
            .map_err(|e| Exit::usage(format!("-d @{file}: cannot read {file}: {e}")).into()),
        None => Ok(data.as_bytes().to_vec()),
    }
}

/// The body as shown: the bytes as they came to a pipe or file (they are data); on a
/// terminal, pretty JSON, or other text with its non-printing bytes escaped, so that
/// nothing a server sent acts on the terminal.
fn shown(body: &[u8]) -> Vec<u8> {
    if !std::io::stdout().is_terminal() {
        return body.to_vec();
    }
    match serde_json::from_slice::<Value>(body).map(|value| serde_json::to_string_pretty(&value)) {
        Ok(Ok(pretty)) => (text::json_for_terminal(pretty) + "\n").into_bytes(),
        _ => text::bytes_for_terminal(body),
    }
}

/// A non-2xx answer: said on stderr, exit 1.
fn check_status(answer: &Answer, url: &Url) -> Result<()> {
    if (200..300).contains(&answer.status) {
        return Ok(());
    }
    Err(anyhow!("{} answered HTTP {}", http::shown(url), answer.status))
}

/// Follows the pages from `first` and prints their items: with `--ndjson` each page's as it
/// comes (in order), else one JSON array at the end, which a failed page leaves unprinted.
fn paginate(session: &Session<'_>, base: &str, first: Url, args: &ApiArgs) -> Result<()> {
    let mut out = Items::new(args.ndjson, std::io::stdout().is_terminal(), MAX_ARRAY_BYTES);
    let mut url = first.clone();
    // Hashes, not URLs: a listing of endless page tokens must not grow memory.
    let mut seen = std::collections::HashSet::new();
    for fetched in 1.. {
        if fetched > MAX_PAGES {
            return Err(anyhow!("the listing goes on past {MAX_PAGES} pages: stopping; narrow the query"));
        }
        let answer = session.send(&url)?;
        let page = read_page(session, &answer, &url)?;
        out.page(page.items)?;
        // Jira's offsets with a total: every remaining page is known, fetched side by side.
        if let (Some(offsets), Next::Query(_)) = (page.offsets, &page.next) {
            let left = offsets.pages_left();
            if left > (MAX_PAGES - fetched) as u64 {
                return Err(anyhow!(
                    "{} says the listing has {} items in pages of {}: {left} more pages, past the limit of \
                     {MAX_PAGES}; narrow the query",
                    http::shown(&url),
                    offsets.total,
                    offsets.page_size
                ));
            }
            // A few rounds of requests at a time, printed in order before the next: memory
            // stays bounded whatever the total.
            let chunk = usize::from(args.parallel) * 4;
            let mut starts = offsets.remaining().peekable();
            while starts.peek().is_some() {
                let urls: Vec<Url> = starts
                    .by_ref()
                    .take(chunk)
                    .map(|start| with_query(&first, &[("startAt".into(), start.to_string())]))
                    .collect();
                for (answer, url) in session.send_all(&urls, usize::from(args.parallel))?.iter().zip(&urls) {
                    out.page(read_page(session, answer, url)?.items)?;
                }
            }
            break;
        }
        url = match page.next {
            Next::Done => break,
            Next::Query(params) => with_query(&first, &params),
            Next::Path(path) => target(base, &path)?,
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(url.as_str(), &mut hasher);
        if !seen.insert(std::hash::Hasher::finish(&hasher)) {
            return Err(anyhow!("the pages lead back to {}: stopping", http::shown(&url)));
        }
    }
    out.finish()
}

/// Where the items of a listing go: each to stdout as a line of its own (`--ndjson`), or
/// into one JSON array, kept as text (smaller than parsed values) up to a limit.
struct Items {
    ndjson: bool,
    pretty: bool,
    array: String,
    count: usize,
    limit: usize,
}

impl Items {
    fn new(ndjson: bool, pretty: bool, limit: usize) -> Self {
        Self { ndjson, pretty, array: String::new(), count: 0, limit }
    }

    fn page(&mut self, items: Vec<Value>) -> Result<()> {
        if self.ndjson {
            let mut lines = String::new();
            for item in &items {
                lines.push_str(&item.to_string());
                lines.push('\n');
            }
            return crate::output::write_out(self.shown(lines).as_bytes());
        }
        for item in &items {
            self.array.push_str(if self.count == 0 { "" } else { "," });
            if self.pretty {
                let text = serde_json::to_string_pretty(item).context("cannot write the items")?;
                self.array.push_str("\n  ");
                self.array.push_str(&text.replace('\n', "\n  "));
            } else {
                self.array.push_str(&item.to_string());
            }
            self.count += 1;
            if self.array.len() > self.limit {
                return Err(anyhow!(
                    "the listing is more than {} MiB as one JSON array: use --ndjson, which prints each \
                     item as its page arrives and keeps none",
                    self.limit / (1024 * 1024)
                ));
            }
        }
        Ok(())
    }

    /// Prints the array (`--ndjson` printed as it went).
    fn finish(self) -> Result<()> {
        if self.ndjson {
            return Ok(());
        }
        let close = if self.pretty && self.count > 0 { "\n]\n" } else { "]\n" };
        let text = format!("[{}{close}", self.array);
        crate::output::write_out(self.shown(text).as_bytes())
    }

    /// On a terminal, nothing in the items acts on it.
    fn shown(&self, json: String) -> String {
        if std::io::stdout().is_terminal() { text::json_for_terminal(json) } else { json }
    }
}

/// A page's items and what follows, or why it is not a page.
fn read_page(session: &Session<'_>, answer: &Answer, url: &Url) -> Result<paging::Page> {
    let url = http::shown(url);
    if !(200..300).contains(&answer.status) {
        let text = session.excerpt(&answer.body);
        return Err(anyhow!("{url} answered HTTP {}: \"{text}\"", answer.status));
    }
    let value: Value =
        serde_json::from_slice(&answer.body).map_err(|e| anyhow!("{url}: the answer is not JSON ({e})"))?;
    paging::read(value).map_err(|e| anyhow!("{url}: {e}"))
}

/// `url` with each of `params` set (replacing any of the same name).
fn with_query(url: &Url, params: &[(String, String)]) -> Url {
    let mut url = url.clone();
    let kept: Vec<(String, String)> =
        url.query_pairs().into_owned().filter(|(k, _)| !params.iter().any(|(p, _)| p == k)).collect();
    url.query_pairs_mut().clear().extend_pairs(kept).extend_pairs(params);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_posts_say_no_check_and_json_posts_need_not() {
        let with = |content_type: &str| {
            let mut headers = vec![("content-type".to_owned(), content_type.to_owned())];
            pass_xsrf_check(&mut headers);
            headers.iter().any(|(n, v)| n == XSRF_HEADER && v == "no-check")
        };
        assert!(with("application/x-www-form-urlencoded"));
        assert!(with("Multipart/Form-Data; boundary=x"));
        assert!(with("text/plain; charset=utf-8"));
        assert!(!with("application/json"));
        let mut own = vec![
            ("Content-Type".to_owned(), "application/x-www-form-urlencoded".to_owned()),
            ("x-atlassian-token".to_owned(), "nocheck".to_owned()),
        ];
        pass_xsrf_check(&mut own);
        assert_eq!(own.len(), 2, "the user's own header stays alone");
    }

    #[test]
    fn headers_are_checked_and_authorization_is_refused() {
        let ok = parse_headers(&["Accept: text/plain".into(), "X-A:b".into()]).expect("headers");
        assert_eq!(ok, [("Accept".to_owned(), "text/plain".to_owned()), ("X-A".to_owned(), "b".to_owned())]);
        assert!(parse_headers(&["no colon".into()]).is_err());
        assert!(parse_headers(&["Bad Name: x".into()]).is_err());
        assert!(parse_headers(&["authorization: Bearer x".into()]).is_err());
    }

    #[test]
    fn the_array_is_the_json_serde_would_write_and_has_a_size_limit() {
        let items = || vec![serde_json::json!({"a": [1, {"b": null}]}), serde_json::json!("x")];
        for pretty in [false, true] {
            let mut out = Items::new(false, pretty, 1000);
            out.page(items()).expect("fits");
            out.page(vec![]).expect("fits");
            out.page(vec![serde_json::json!(3)]).expect("fits");
            let expected = Value::Array([items(), vec![serde_json::json!(3)]].concat());
            let serde = if pretty {
                serde_json::to_string_pretty(&expected)
            } else {
                serde_json::to_string(&expected)
            };
            let close = if pretty { "\n]" } else { "]" };
            assert_eq!(format!("[{}{close}", out.array), serde.expect("json"), "pretty: {pretty}");
        }
        let empty = Items::new(false, true, 10);
        assert_eq!(format!("[{}]", empty.array), "[]");
        let mut small = Items::new(false, false, 10);
        let err = small.page(vec![serde_json::json!("0123456789")]).expect_err("too big").to_string();
        assert!(err.contains("use --ndjson"), "{err}");
    }

    #[test]
    fn next_pages_replace_their_query_parameters() {
        let url = Url::parse("https://x/s?jql=a%20b&startAt=0").expect("url");
        let next = with_query(&url, &[("startAt".into(), "50".into())]);
        assert_eq!(next.as_str(), "https://x/s?jql=a+b&startAt=50");
    }
}

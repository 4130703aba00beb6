//! Atlassian's paging styles: where a page's items are, and how to ask for the next page.
//! Pure: `atl-token api --paginate` does the requests.
//!
//! - Jira's offsets: `startAt`, `maxResults`, `total` (and `isLast`); with a total, the
//!   remaining pages are known up front and may be fetched side by side.
//! - Jira's `nextPageToken` (`/rest/api/3/search/jql`), ended by `isLast` or its absence.
//! - Bitbucket's `isLastPage` and `nextPageStart`.
//! - Confluence's `_links.next`, a path relative to the site (or, on Data Center, to the
//!   base URL), such as `/wiki/api/v2/pages?cursor=…`.

use serde_json::{Map, Value};

/// Item arrays by the names Atlassian's APIs give them, tried when a page holds several.
const ITEM_KEYS: &[&str] = &["issues", "values", "results", "comments", "worklogs", "sprints", "users"];

/// What follows a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The last page.
    Done,
    /// The same request, with these query parameters set.
    Query(Vec<(String, String)>),
    /// A path (with its query) relative to the API base.
    Path(String),
}

/// Jira's offsets, when the page states the total: every later page can be named now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub start_at: u64,
    pub page_size: u64,
    pub total: u64,
}

impl Offsets {
    /// How many pages follow this one, by the page's own word.
    pub fn pages_left(&self) -> u64 {
        match self.start_at.checked_add(self.page_size) {
            Some(next) if self.page_size > 0 && next < self.total => {
                (self.total - next).div_ceil(self.page_size)
            }
            _ => 0,
        }
    }

    /// The `startAt` of every page after this one, in order, made as they are asked for.
    pub fn remaining(&self) -> impl Iterator<Item = u64> + use<> {
        let Self { start_at, page_size, total } = *self;
        let first = if page_size == 0 { None } else { start_at.checked_add(page_size) };
        std::iter::successors(first, move |at| at.checked_add(page_size)).take_while(move |&at| at < total)
    }
}

/// One page: its items, and what follows.
#[derive(Debug, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    pub next: Next,
    /// Set for Jira's offsets with a total.
    pub offsets: Option<Offsets>,
}

/// Reads a page of any of the styles above. A page that is itself an array is its items,
/// and the last page.
pub fn read(page: Value) -> Result<Page, String> {
    let mut fields = match page {
        Value::Array(items) => return Ok(Page { items, next: Next::Done, offsets: None }),
        Value::Object(fields) => fields,
        _ => return Err("the answer is not a JSON object or array, so it cannot be paged".to_owned()),
    };
    let items = take_items(&mut fields)?;
    let count = items.len() as u64;
    let text = |key: &str| fields.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    let number = |key: &str| fields.get(key).and_then(Value::as_u64);
    let is_true = |key: &str| fields.get(key).and_then(Value::as_bool) == Some(true);

    let mut offsets = None;
    let next = if fields.contains_key("nextPageToken")
        || fields.contains_key("isLast") && !fields.contains_key("startAt")
    {
        match text("nextPageToken") {
            Some(token) if !is_true("isLast") => Next::Query(vec![("nextPageToken".into(), token.into())]),
            _ => Next::Done,
        }
    } else if let Some(last) = fields.get("isLastPage").and_then(Value::as_bool) {
        match number("nextPageStart") {
            Some(start) if !last => Next::Query(vec![("start".into(), start.to_string())]),
            _ => Next::Done,
        }
    } else if fields.get("_links").is_some_and(Value::is_object) {
        match fields["_links"].get("next").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => Next::Path(next.to_owned()),
            _ => Next::Done,
        }
    } else if let Some(start_at) = number("startAt") {
        let total = number("total");
        let page_size = number("maxResults").filter(|&m| m > 0).unwrap_or(count);
        if let Some(total) = total {
            offsets = Some(Offsets { start_at, page_size, total });
        }
        match start_at.checked_add(count) {
            Some(end) if !is_true("isLast") && count > 0 && total.is_none_or(|t| end < t) => {
                Next::Query(vec![("startAt".into(), end.to_string())])
            }
            _ => Next::Done,
        }
    } else {
        Next::Done
    };
    Ok(Page { items, next, offsets })
}

/// The page's one top-level array; of several, the one with a well-known name.
fn take_items(fields: &mut Map<String, Value>) -> Result<Vec<Value>, String> {
    let arrays: Vec<String> = fields.iter().filter(|(_, v)| v.is_array()).map(|(k, _)| k.clone()).collect();
    let key = match arrays.as_slice() {
        [] => return Err("the page holds no array of items".to_owned()),
        [one] => one.clone(),
        several => {
            ITEM_KEYS.iter().find(|k| several.iter().any(|s| s == *k)).map(|k| (*k).to_owned()).ok_or_else(
                || format!("the page holds several arrays ({}): which are the items?", several.join(", ")),
            )?
        }
    };
    match fields.remove(&key) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err("the page holds no array of items".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(key: &str, value: &str) -> Next {
        Next::Query(vec![(key.to_owned(), value.to_owned())])
    }

    #[test]
    fn jira_offsets_name_every_remaining_page() {
        let page = read(json!({"startAt": 0, "maxResults": 2, "total": 5, "issues": [{"id": 1}, {"id": 2}]}))
            .expect("page");
        assert_eq!(page.items, [json!({"id": 1}), json!({"id": 2})]);
        assert_eq!(page.next, q("startAt", "2"));
        let offsets = page.offsets.expect("offsets");
        assert_eq!(offsets.remaining().collect::<Vec<_>>(), [2, 4]);
        assert_eq!(offsets.pages_left(), 2);
        let last =
            read(json!({"startAt": 4, "maxResults": 2, "total": 5, "issues": [{"id": 5}]})).expect("page");
        assert_eq!(last.next, Next::Done);
        let is_last =
            read(json!({"startAt": 0, "maxResults": 50, "isLast": true, "values": [1]})).expect("page");
        assert_eq!(is_last.next, Next::Done);
        let no_total =
            read(json!({"startAt": 0, "maxResults": 1, "isLast": false, "values": [1]})).expect("page");
        assert_eq!((no_total.next, no_total.offsets), (q("startAt", "1"), None));
    }

    #[test]
    fn tokens_links_and_bitbucket_pages() {
        let token = read(json!({"issues": [1], "nextPageToken": "abc", "isLast": false})).expect("page");
        assert_eq!(token.next, q("nextPageToken", "abc"));
        assert_eq!(read(json!({"issues": [1], "isLast": true})).expect("page").next, Next::Done);
        assert_eq!(
            read(json!({"issues": [1], "nextPageToken": "x", "isLast": true})).expect("page").next,
            Next::Done
        );

        let bitbucket =
            read(json!({"values": [1], "isLastPage": false, "nextPageStart": 25, "size": 1})).expect("page");
        assert_eq!(bitbucket.next, q("start", "25"));
        assert_eq!(read(json!({"values": [1], "isLastPage": true})).expect("page").next, Next::Done);

        let next = "/wiki/api/v2/pages?cursor=a%3Db";
        let links =
            read(json!({"results": [1], "_links": {"next": next, "base": "https://x"}})).expect("page");
        assert_eq!(links.next, Next::Path(next.to_owned()));
        assert_eq!(read(json!({"results": [], "_links": {}})).expect("page").next, Next::Done);
    }

    #[test]
    fn items_are_the_one_array_or_the_well_known_one() {
        let page = read(json!({"names": {}, "schema": [], "issues": [1, 2]})).expect("page");
        assert_eq!(page.items, [json!(1), json!(2)]);
        assert!(read(json!({"a": [], "b": []})).is_err());
        assert!(read(json!({"total": 3})).is_err());
        assert_eq!(read(json!([1, 2])).expect("array").items.len(), 2);
        assert!(read(json!("text")).is_err());
    }

    #[test]
    fn a_huge_total_is_counted_not_listed() {
        let page = read(json!({"startAt": 0, "maxResults": 1, "total": 100_000_000_000u64, "issues": [1]}))
            .expect("page");
        let offsets = page.offsets.expect("offsets");
        assert_eq!(offsets.pages_left(), 99_999_999_999);
        assert_eq!(offsets.remaining().take(3).collect::<Vec<_>>(), [1, 2, 3]);
        let edge = Offsets { start_at: u64::MAX - 1, page_size: 5, total: u64::MAX };
        assert_eq!((edge.pages_left(), edge.remaining().count()), (0, 0));
        let near = read(json!({"startAt": u64::MAX, "issues": [1, 2]})).expect("no overflow");
        assert_eq!(near.next, Next::Done);
    }

    proptest::proptest! {
        #[test]
        fn prop_any_json_page_is_read_without_panic(text in "\\PC{0,200}") {
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                let _ = read(value);
            }
        }

        #[test]
        fn prop_offsets_cover_the_total_exactly_once(start in 0u64..100, size in 1u64..50, total in 0u64..2000) {
            let offsets = Offsets { start_at: start, page_size: size, total };
            let starts: Vec<u64> = offsets.remaining().collect();
            proptest::prop_assert_eq!(starts.len() as u64, offsets.pages_left());
            for pair in starts.windows(2) {
                proptest::prop_assert_eq!(pair[1] - pair[0], size);
            }
            if let Some(last) = starts.last() {
                proptest::prop_assert!(*last < total && last + size >= total);
            }
        }
    }
}

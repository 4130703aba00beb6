//! `atl-token api`: authenticated requests below the API base, retries on 401 and 429, and
//! `--paginate` over each of Atlassian's paging styles, against the test server.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A Cloud test env with a fresh token whose cloud id is cached, so that the only requests
/// are the ones under test.
fn cloud() -> TestEnv {
    let env = TestEnv::new();
    env.write_token(3600);
    assert_exit(&env.run(&["print", "--cloud-id"]), 0);
    env
}

fn query(request: &Request, name: &str) -> Option<String> {
    let (_, query) = request.path.split_once('?')?;
    url::form_urlencoded::parse(query.as_bytes()).into_owned().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn path_of(request: &Request) -> &str {
    request.path.split('?').next().unwrap_or_default()
}

#[test]
fn a_get_goes_below_the_api_base_with_the_token_and_prints_the_body_as_it_came() {
    let env = cloud();
    env.auth.set_api(|r| Reply::Raw {
        status: 200,
        headers: vec![],
        body: format!("{{\"path\":\"{}\"}}", r.path).into_bytes(),
    });
    let out = env.run(&["api", "/rest/api/3/myself"]);
    assert_exit(&out, 0);
    let expected_path = format!("/ex/jira/{SITE_ID}/rest/api/3/myself");
    assert_eq!(stdout(&out), format!("{{\"path\":\"{expected_path}\"}}"), "the bytes as they came");
    let call = &env.auth.api_calls()[0];
    assert_eq!(call.method, "GET");
    let access = env.read_token()["access_token"].as_str().expect("access").to_owned();
    assert_eq!(call.authorization, format!("Bearer {access}"));

    let confluence = env.run(&["api", "--product", "confluence", "wiki/api/v2/spaces"]);
    assert_exit(&confluence, 0);
    assert!(stdout(&confluence).contains(&format!("/ex/confluence/{SITE_ID}/wiki/api/v2/spaces")));
}

#[test]
fn bodies_from_text_a_file_or_stdin_are_sent_as_json() {
    let env = cloud();
    env.auth.set_api(|_| Reply::Json(201, json!({"id": "10001"})));
    std::fs::write(env.path("issue.json"), r#"{"fields":{"summary":"from a file"}}"#).expect("write");
    assert_exit(&env.run(&["api", "/rest/api/3/issue", "-d", "@issue.json"]), 0);
    assert_exit(&env.run(&["api", "-X", "put", "/rest/api/3/issue/1", "-d", r#"{"a":1}"#]), 0);
    let mut child = env
        .command(&["api", "/rest/api/3/comment", "-d", "@-", "-H", "Content-Type: text/plain"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(b"plain text").expect("write stdin");
    assert!(child.wait().expect("wait").success());

    let calls = env.auth.api_calls();
    assert_eq!((calls[0].method.as_str(), calls[0].content_type.as_str()), ("POST", "application/json"));
    assert_eq!(calls[0].body, br#"{"fields":{"summary":"from a file"}}"#);
    assert_eq!((calls[1].method.as_str(), calls[1].body.as_slice()), ("PUT", br#"{"a":1}"#.as_slice()));
    assert_eq!(
        (calls[2].content_type.as_str(), calls[2].body.as_slice()),
        ("text/plain", b"plain text".as_slice())
    );
}

/// Jira and Confluence refuse form posts to their REST API without `X-Atlassian-Token:
/// no-check` (XSRF protection): `api` sends it with a form, and not with JSON.
#[test]
fn form_posts_carry_the_xsrf_exemption() {
    let env = cloud();
    env.auth.set_api(|r| match r.header("X-Atlassian-Token") {
        Some("no-check") => Reply::Json(200, json!({"ok": true})),
        _ if r.content_type.starts_with("application/x-www-form-urlencoded") => {
            Reply::Json(403, json!({"message": "XSRF check failed"}))
        }
        _ => Reply::Json(200, json!({"ok": true})),
    });
    let form =
        ["api", "/rest/api/2/issue/1/attachments", "-H", "Content-Type: application/x-www-form-urlencoded"];
    assert_exit(&env.run(&[&form[..], &["-d", "a=b"]].concat()), 0);
    assert_exit(&env.run(&["api", "/rest/api/3/issue", "-d", "{}"]), 0);
    let calls = env.auth.api_calls();
    assert_eq!(calls[0].header("X-Atlassian-Token"), Some("no-check"));
    assert_eq!(calls[1].header("X-Atlassian-Token"), None, "a JSON post needs no exemption");
}

#[test]
fn a_401_gets_one_refresh_and_one_retry_then_exit_4() {
    let env = cloud();
    env.auth.set_api(|_| Reply::Json(200, json!({"ok": true})));
    env.auth.refuse_access_tokens(1);
    let out = env.run(&["api", "/rest/api/3/myself"]);
    assert_exit(&out, 0);
    assert_eq!(env.auth.token_calls().len(), 1, "one refresh");
    assert_eq!(env.auth.api_calls().len(), 2, "one retry");

    env.auth.refuse_access_tokens(2);
    let out = env.run(&["api", "/rest/api/3/myself"]);
    assert_exit(&out, 4);
    assert!(stderr(&out).contains("also after a refresh"), "{}", stderr(&out));
    assert_eq!(env.auth.token_calls().len(), 2);
}

#[test]
fn a_429_waits_as_retry_after_says_then_succeeds() {
    let env = cloud();
    env.auth.set_api(|_| Reply::Json(200, json!({"ok": true})));
    env.auth.push_fault(Reply::Raw { status: 429, headers: vec![("Retry-After", "1".into())], body: vec![] });
    let started = std::time::Instant::now();
    let out = env.run(&["api", "/rest/api/3/myself"]);
    assert_exit(&out, 0);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for Retry-After");
    assert_eq!(env.auth.api_calls().len(), 2);
}

#[test]
fn a_non_2xx_answer_is_printed_and_exits_1_and_other_hosts_are_refused() {
    let env = cloud();
    env.auth.set_api(|_| Reply::Json(404, json!({"errorMessages": ["Issue does not exist"]})));
    let out = env.run(&["api", "/rest/api/3/issue/NOPE-1"]);
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("Issue does not exist"));
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));

    let out = env.run(&["api", "https://evil.example.com/rest/api/3/myself"]);
    assert_exit(&out, 2);
    assert_eq!(env.auth.api_calls().len(), 1, "nothing sent elsewhere");
}

/// Seven items, `size` per page, as Jira's offsets page them.
fn jira_offsets(r: &Request) -> Reply {
    let start: u64 = query(r, "startAt").and_then(|s| s.parse().ok()).unwrap_or(0);
    let issues: Vec<Value> = (start..7.min(start + 3)).map(|i| json!({"key": format!("I-{i}")})).collect();
    Reply::Json(200, json!({"startAt": start, "maxResults": 3, "total": 7, "issues": issues}))
}

fn keys(items: &Value) -> Vec<String> {
    items.as_array().expect("array").iter().map(|i| i["key"].as_str().expect("key").to_owned()).collect()
}

#[test]
fn paginate_jira_offsets_in_parallel_keeps_page_order() {
    let env = cloud();
    env.auth.set_api(jira_offsets);
    env.auth.set_jitter(Duration::from_millis(40));
    let out = env.run(&["api", "--paginate", "/rest/api/3/search?jql=project%3DX"]);
    assert_exit(&out, 0);
    let items: Value = serde_json::from_str(&stdout(&out)).expect("one JSON array");
    assert_eq!(keys(&items), ["I-0", "I-1", "I-2", "I-3", "I-4", "I-5", "I-6"]);
    let calls = env.auth.api_calls();
    let mut starts: Vec<String> = calls.iter().filter_map(|c| query(c, "startAt")).collect();
    starts.sort();
    assert_eq!(starts, ["3", "6"], "the first page, then the two others named by the total");
    assert!(calls.iter().all(|c| query(c, "jql").as_deref() == Some("project=X")), "the query is kept");
}

#[test]
fn paginate_jira_next_page_tokens_as_ndjson() {
    let env = cloud();
    env.auth.set_api(|r| {
        let (items, next) = match query(r, "nextPageToken").as_deref() {
            None => (json!([{"key": "A"}, {"key": "B"}]), json!({"nextPageToken": "p2", "isLast": false})),
            Some("p2") => (json!([{"key": "C"}]), json!({"nextPageToken": "p3", "isLast": false})),
            _ => (json!([{"key": "D"}]), json!({"isLast": true})),
        };
        let mut page = next;
        page["issues"] = items;
        Reply::Json(200, page)
    });
    let out = env.run(&["api", "--paginate", "--ndjson", "/rest/api/3/search/jql?jql=x"]);
    assert_exit(&out, 0);
    let lines: Vec<Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(keys(&Value::Array(lines)), ["A", "B", "C", "D"]);
    assert_eq!(env.auth.api_calls().len(), 3);
}

#[test]
fn paginate_confluence_links_through_the_gateway() {
    let env = cloud();
    let prefix = format!("/ex/confluence/{SITE_ID}");
    env.auth.set_api(move |r| {
        assert!(r.path.starts_with(&prefix), "{}", r.path);
        let page = match query(r, "cursor").as_deref() {
            None => json!({"results": [{"key": "P1"}], "_links": {"next": "/wiki/api/v2/pages?cursor=c2", "base": "https://example.atlassian.net/wiki"}}),
            Some("c2") => json!({"results": [{"key": "P2"}], "_links": {"next": "/wiki/api/v2/pages?cursor=c3"}}),
            _ => json!({"results": [{"key": "P3"}], "_links": {}}),
        };
        Reply::Json(200, page)
    });
    let out = env.run(&["api", "--product", "confluence", "--paginate", "/wiki/api/v2/pages"]);
    assert_exit(&out, 0);
    assert_eq!(keys(&serde_json::from_str(&stdout(&out)).expect("array")), ["P1", "P2", "P3"]);
    let paths: Vec<String> = env.auth.api_calls().iter().map(|c| c.path.clone()).collect();
    assert_eq!(paths[2], format!("/ex/confluence/{SITE_ID}/wiki/api/v2/pages?cursor=c3"));
}

#[test]
fn paginate_bitbucket_on_datacenter() {
    let env = TestEnv::with(AuthServer::datacenter());
    env.write_token(3600);
    env.auth.set_api(|r| {
        assert_eq!(path_of(r), "/rest/api/1.0/projects");
        let page = match query(r, "start").as_deref() {
            None => json!({"values": [{"key": "A"}], "isLastPage": false, "nextPageStart": 1, "size": 1}),
            Some("1") => {
                json!({"values": [{"key": "B"}], "isLastPage": false, "nextPageStart": 2, "size": 1})
            }
            _ => json!({"values": [{"key": "C"}], "isLastPage": true, "size": 1}),
        };
        Reply::Json(200, page)
    });
    let out = env.run(&["api", "--paginate", "/rest/api/1.0/projects"]);
    assert_exit(&out, 0);
    assert_eq!(keys(&serde_json::from_str(&stdout(&out)).expect("array")), ["A", "B", "C"]);
    assert!(env.auth.site_calls().is_empty(), "Data Center needs no cloud id");
}

#[test]
fn a_page_that_fails_fails_the_listing() {
    let env = cloud();
    env.auth.set_api(|r| match query(r, "startAt").as_deref() {
        Some("3") => Reply::Json(500, json!({"errorMessages": ["boom"]})),
        _ => jira_offsets(r),
    });
    let out = env.run(&["api", "--paginate", "--parallel", "1", "/rest/api/3/search"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("HTTP 500"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "no partial array");
}

#[test]
fn a_bad_header_or_body_file_is_exit_2_before_any_request() {
    let env = TestEnv::new();
    env.write_token(-5);
    let out = env.run(&["api", "-H", "no colon", "/rest/api/3/myself"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("-H 'no colon'"), "{}", stderr(&out));
    let out = env.run(&["api", "-d", "@missing.json", "/rest/api/3/issue"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("missing.json"), "{}", stderr(&out));
    assert!(env.auth.server.requests().is_empty(), "no refresh, no lookup, no request");
}

//! The floor for the hot path: what any Rust program that prints the access token from
//! `token.json` must do. bench/run.sh builds it with rustc and measures `print --access` beside it.
use std::io::Write;
fn main() {
    let text = std::fs::read_to_string("token.json").expect("token.json");
    let at = text.find("\"access_token\"").expect("access_token");
    let rest = &text[at + 14..];
    let start = rest.find('"').expect("value") + 1;
    let end = start + rest[start..].find('"').expect("end");
    std::io::stdout().write_all(format!("{}\n", &rest[start..end]).as_bytes()).expect("stdout");
}

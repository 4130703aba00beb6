//! Parsing `.env` files: the format the seed's bash script sourced, Windows line endings included.

use std::fmt;

/// A line of an env file that is not `KEY=value`, a comment or blank.
#[derive(Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// `KEY=two words`, unquoted: the key, and the value as it should be quoted (`None`
    /// when the key looks like it holds a secret, which is never shown).
    pub unquoted: Option<(String, Option<String>)>,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.unquoted {
            None => write!(f, "line {} is not KEY=value (or a # comment)", self.line),
            Some((key, value)) => write!(
                f,
                "line {}: the value of {key} has spaces but no quotes, so the shell would read only \
                 its first word: write {key}=\"{}\"",
                self.line,
                value.as_deref().unwrap_or("...")
            ),
        }
    }
}

/// Keys whose values are not shown, even to say how to quote them.
fn looks_secret(key: &str) -> bool {
    ["SECRET", "PASSWORD", "ACCESS_TOKEN", "REFRESH_TOKEN"].iter().any(|s| key.contains(s))
}

/// `KEY=a b` (or `export KEY=a b`) with no quotes: the key and the value.
fn unquoted_spaces(line: &str) -> Option<(String, Option<String>)> {
    let line = line.trim();
    let line = line.strip_prefix("export ").map_or(line, str::trim_start);
    let (key, value) = line.split_once('=')?;
    let valid_key = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    let value = value.split(" #").next().unwrap_or(value).trim();
    let unquoted = !value.starts_with(['"', '\'']) && value.contains(char::is_whitespace);
    (valid_key && unquoted).then(|| {
        let shown = (!looks_secret(key)).then(|| value.replace(['"', '\\'], ""));
        (key.to_owned(), shown)
    })
}

/// Parses env-file text into `(key, value)` pairs, in file order.
///
/// Quotes work as in the shell (`KEY="a b"`, `KEY='$literal'`), `export KEY=value` is
/// accepted, and `\r\n` line endings and a leading byte-order mark are tolerated, since
/// editors on Windows write both. The error names the line but never echoes it, as the
/// line may hold a secret.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, LineError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n");
    let mut pairs = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => pairs.push(pair),
            Err(dotenvy::Error::LineParse(line, _)) => {
                let number = line_number(&text, &line);
                let unquoted = text.lines().nth(number - 1).and_then(unquoted_spaces);
                return Err(LineError { line: number, unquoted });
            }
            // Reading from memory cannot fail, and substitution errors are not raised by
            // dotenvy's iterator; treat anything else as an unparsable first line.
            Err(_) => return Err(LineError { line: 1, unquoted: None }),
        }
    }
    Ok(pairs)
}

/// Where `bad` (as dotenvy reports it: the line, maybe with what follows) starts in `text`.
fn line_number(text: &str, bad: &str) -> usize {
    let first = bad.lines().next().unwrap_or(bad).trim();
    text.lines()
        .position(|line| !first.is_empty() && line.trim() == first)
        .or_else(|| text.find(bad).map(|at| text[..at].matches('\n').count()))
        .map_or(1, |index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).expect("parses")
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_owned(), value.to_owned())
    }

    #[test]
    fn reads_the_seed_scripts_file_unchanged() {
        let seed = "JIRA_CLIENT_ID=\"abc\"\nJIRA_CLIENT_SECRET=\"s3cr3t\"\n\
                    JIRA_DOMAIN=\"https://my-url.atlassian.net\"\n\
                    JIRA_SCOPE=\"offline_access read:jira-work\"\nREFRESH_PORT=8014\n\
                    TOKEN_FILE_NAME=\"token.json\"\n";
        assert_eq!(
            pairs(seed),
            vec![
                pair("JIRA_CLIENT_ID", "abc"),
                pair("JIRA_CLIENT_SECRET", "s3cr3t"),
                pair("JIRA_DOMAIN", "https://my-url.atlassian.net"),
                pair("JIRA_SCOPE", "offline_access read:jira-work"),
                pair("REFRESH_PORT", "8014"),
                pair("TOKEN_FILE_NAME", "token.json"),
            ]
        );
    }

    #[test]
    fn windows_line_endings_and_bom_do_not_end_up_in_values() {
        let text = "\u{feff}A=1\r\nB=\"two words\"\r\n# note\r\nC='x'\r\n";
        assert_eq!(pairs(text), vec![pair("A", "1"), pair("B", "two words"), pair("C", "x")]);
    }

    #[test]
    fn comments_blank_lines_and_export_are_accepted() {
        let text = "# comment\n\nexport A=1\nB=2 # trailing\n";
        assert_eq!(pairs(text), vec![pair("A", "1"), pair("B", "2")]);
    }

    #[test]
    fn a_malformed_line_is_reported_by_number() {
        assert_eq!(parse("A=1\nB=2\nthis is not a pair\nC=3\n"), Err(LineError { line: 3, unquoted: None }));
        assert_eq!(parse("A=1\r\nB=\"unterminated\r\n"), Err(LineError { line: 2, unquoted: None }));
    }

    #[test]
    fn unquoted_spaces_are_explained_with_the_quoted_form() {
        let err = parse("A=1\nB=2\nATL_SCOPE=read:jira-work read:jira-user\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: the value of ATL_SCOPE has spaces but no quotes, so the shell would read only \
             its first word: write ATL_SCOPE=\"read:jira-work read:jira-user\""
        );
        let err = parse("export ATL_CLIENT_SECRET=my secret words\n").unwrap_err();
        assert!(err.to_string().ends_with("write ATL_CLIENT_SECRET=\"...\""), "{err}");
        assert!(!err.to_string().contains("secret words"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn prop_any_text_is_parsed_or_refused_without_panic(text in proptest::prelude::any::<String>()) {
            if let Err(e) = parse(&text) {
                proptest::prop_assert!(e.line >= 1);
                let _ = e.to_string();
            }
        }

        #[test]
        fn prop_quoted_pairs_come_back_as_written(
            pairs in proptest::collection::vec(("[A-Z_][A-Z0-9_]{0,12}", "[A-Za-z0-9 :/._@+=-]{0,30}"), 0..8),
            crlf in proptest::prelude::any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let text: String = pairs.iter().map(|(k, v)| format!("{k}=\"{v}\"{eol}")).collect();
            proptest::prop_assert_eq!(parse(&text).expect("quoted pairs parse"), pairs);
        }
    }
}

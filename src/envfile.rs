//! Parsing `.env` files: the format the seed's bash script sourced, Windows line endings
//! included, read as data: nothing in a value is run or filled in from the environment,
//! except the home folder (`$HOME`, `${HOME}`, a leading `~`).

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

/// An env file's settings, in file order, and the keys whose values hold a `$NAME` or
/// `${NAME}` that was kept as written (only the home folder is filled in).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub vars: Vec<(String, String)>,
    pub kept_dollars: Vec<String>,
}

/// Keys whose values are not shown, even to say how to quote them.
fn looks_secret(key: &str) -> bool {
    ["SECRET", "PASSWORD", "ACCESS_TOKEN", "REFRESH_TOKEN"].iter().any(|s| key.contains(s))
}

/// Parses env-file text into `(key, value)` pairs, in file order.
///
/// Quotes work as in the shell (`KEY="a b"`, `KEY='$literal'`), a quoted value may span
/// lines, `export KEY=value` is accepted, and `\r\n` line endings and a leading byte-order
/// mark are tolerated, since editors on Windows write both. Unlike the shell, no variable is
/// filled in: `$HOME`, `${HOME}` and a leading `~` become `home` (when known), and any other
/// `$NAME` stays as written, its key listed in [`Parsed::kept_dollars`], so that a file
/// someone else wrote cannot copy an environment variable into a URL. The error names the
/// line but never echoes it, as the line may hold a secret.
pub fn parse(text: &str, home: Option<&str>) -> Result<Parsed, LineError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let mut parsed = Parsed::default();
    let mut index = 0;
    while index < lines.len() {
        let start = index;
        let mut logical = lines[index].to_owned();
        index += 1;
        let line = loop {
            match parse_line(&logical, home) {
                Err(Problem::Unterminated) if index < lines.len() => {
                    logical.push('\n');
                    logical.push_str(lines[index]);
                    index += 1;
                }
                Err(Problem::Unterminated | Problem::Bad) => {
                    return Err(LineError { line: start + 1, unquoted: None });
                }
                Err(Problem::UnquotedSpace { key, value }) => {
                    let shown = (!looks_secret(&key)).then(|| value.replace(['"', '\\'], ""));
                    return Err(LineError { line: start + 1, unquoted: Some((key, shown)) });
                }
                Ok(line) => break line,
            }
        };
        if let Some(Line { key, value, kept_dollar }) = line {
            if kept_dollar && !parsed.kept_dollars.contains(&key) {
                parsed.kept_dollars.push(key.clone());
            }
            parsed.vars.push((key, value));
        }
    }
    Ok(parsed)
}

/// One `KEY=value` line.
struct Line {
    key: String,
    value: String,
    /// The value holds a `$NAME` other than `$HOME`, kept as written.
    kept_dollar: bool,
}

/// Why a line is not a setting.
enum Problem {
    /// A quote is still open at the end: the value goes on on the next line.
    Unterminated,
    /// Spaces in an unquoted value, followed by more than a comment.
    UnquotedSpace {
        key: String,
        value: String,
    },
    Bad,
}

/// A key: a letter or `_`, then letters, digits, `_` or `.`.
fn split_key(text: &str) -> Option<(&str, &str)> {
    if !text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return None;
    }
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(text.len());
    Some(text.split_at(end))
}

fn parse_line(line: &str, home: Option<&str>) -> Result<Option<Line>, Problem> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (mut key, mut rest) = split_key(line).ok_or(Problem::Bad)?;
    if key == "export" && !rest.trim_start().starts_with('=') {
        (key, rest) = split_key(rest.trim_start()).ok_or(Problem::Bad)?;
    }
    let raw = rest.trim_start().strip_prefix('=').ok_or(Problem::Bad)?.trim_start();
    let mut line = Line { key: key.to_owned(), value: String::new(), kept_dollar: false };
    if raw.is_empty() || raw.starts_with('#') {
        return Ok(Some(line));
    }
    value(raw, home, &mut line)?;
    Ok(Some(line))
}

/// Reads the value text `raw` into `line.value`: quotes, backslash escapes and the home
/// folder as the shell reads them, and nothing else filled in.
fn value(raw: &str, home: Option<&str>, line: &mut Line) -> Result<(), Problem> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let out = &mut line.value;
    let mut start = 0;
    if let (Some(home), Some(after)) = (home, raw.strip_prefix('~'))
        && (after.is_empty() || after.starts_with('/'))
    {
        out.push_str(home);
        start = 1;
    }
    let mut chars = raw[start..].char_indices().map(|(i, c)| (i + start, c)).peekable();
    while let Some((at, c)) = chars.next() {
        match (&quote, c) {
            (Quote::Single, '\'') => quote = Quote::None,
            (Quote::Single, c) => out.push(c),
            (Quote::Double, '"') => quote = Quote::None,
            (Quote::None, '\'') => quote = Quote::Single,
            (Quote::None, '"') => quote = Quote::Double,
            (_, '\\') => match chars.next() {
                Some((_, c @ ('\\' | '\'' | '"' | '$' | ' '))) => out.push(c),
                Some((_, 'n')) => out.push('\n'),
                _ => return Err(Problem::Bad),
            },
            (_, '$') => {
                let after = &raw[at + 1..];
                let name_follows =
                    after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '{');
                match (home, home_reference(after)) {
                    (Some(home), Some(length)) => {
                        out.push_str(home);
                        for _ in 0..length {
                            chars.next();
                        }
                    }
                    _ => {
                        line.kept_dollar |= name_follows;
                        out.push('$');
                    }
                }
            }
            (Quote::None, ' ' | '\t') => {
                let rest = raw[at..].trim_start();
                if rest.is_empty() || rest.starts_with('#') {
                    return Ok(());
                }
                let value = raw.split(" #").next().unwrap_or(raw).trim().to_owned();
                return Err(Problem::UnquotedSpace { key: line.key.clone(), value });
            }
            (_, c) => out.push(c),
        }
    }
    if quote == Quote::None { Ok(()) } else { Err(Problem::Unterminated) }
}

/// After a `$`: how many characters name the home folder (`HOME` or `{HOME}`), if they do.
fn home_reference(after: &str) -> Option<usize> {
    if after.starts_with("{HOME}") {
        return Some("{HOME}".len());
    }
    let rest = after.strip_prefix("HOME")?;
    (!rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')).then_some("HOME".len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text, None).expect("parses").vars
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
        assert_eq!(
            parse("A=1\nB=2\nthis is not a pair\nC=3\n", None),
            Err(LineError { line: 3, unquoted: None })
        );
        assert_eq!(parse("A=1\r\nB=\"unterminated\r\n", None), Err(LineError { line: 2, unquoted: None }));
    }

    #[test]
    fn unquoted_spaces_are_explained_with_the_quoted_form() {
        let err = parse("A=1\nB=2\nATL_SCOPE=read:jira-work read:jira-user\n", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: the value of ATL_SCOPE has spaces but no quotes, so the shell would read only \
             its first word: write ATL_SCOPE=\"read:jira-work read:jira-user\""
        );
        let err = parse("export ATL_CLIENT_SECRET=my secret words\n", None).unwrap_err();
        assert!(err.to_string().ends_with("write ATL_CLIENT_SECRET=\"...\""), "{err}");
        assert!(!err.to_string().contains("secret words"), "{err}");
    }

    #[test]
    fn no_variable_is_filled_in_but_the_home_folder() {
        let text = "ATL_API_URL=https://evil.example/${AWS_SECRET_ACCESS_KEY}\n\
                    ATL_CONSUMER_KEY=\"ck-$ATL_CLIENT_SECRET\"\n\
                    ATL_TOKEN_FILE=${HOME}/.config/atl-token/token.json\n\
                    ATL_CA_FILE=$HOME/ca.pem\nATL_PRIVATE_KEY_FILE=~/keys/k.pem\n\
                    ATL_CLIENT_SECRET='$ingle quoted'\nA=\"\\$escaped\"\nB=pa$$word\nC=$HOMER\nD=a~b\n";
        let parsed = parse(text, Some("/home/u")).expect("parses");
        assert_eq!(
            parsed.vars,
            vec![
                pair("ATL_API_URL", "https://evil.example/${AWS_SECRET_ACCESS_KEY}"),
                pair("ATL_CONSUMER_KEY", "ck-$ATL_CLIENT_SECRET"),
                pair("ATL_TOKEN_FILE", "/home/u/.config/atl-token/token.json"),
                pair("ATL_CA_FILE", "/home/u/ca.pem"),
                pair("ATL_PRIVATE_KEY_FILE", "/home/u/keys/k.pem"),
                pair("ATL_CLIENT_SECRET", "$ingle quoted"),
                pair("A", "$escaped"),
                pair("B", "pa$$word"),
                pair("C", "$HOMER"),
                pair("D", "a~b"),
            ]
        );
        assert_eq!(parsed.kept_dollars, ["ATL_API_URL", "ATL_CONSUMER_KEY", "B", "C"]);
        let unknown_home = parse("A=$HOME/x\nB=~/y\n", None).expect("parses");
        assert_eq!(unknown_home.vars, vec![pair("A", "$HOME/x"), pair("B", "~/y")]);
        assert_eq!(unknown_home.kept_dollars, ["A"]);
    }

    #[test]
    fn a_quoted_value_may_span_lines() {
        assert_eq!(
            pairs("A=\"one\ntwo\"\nB='x\ny'\nC=3\n"),
            vec![pair("A", "one\ntwo"), pair("B", "x\ny"), pair("C", "3")]
        );
        assert_eq!(pairs("A=\"a\\nb\" # note\n"), vec![pair("A", "a\nb")]);
    }

    proptest::proptest! {
        #[test]
        fn prop_any_text_is_parsed_or_refused_without_panic(text in proptest::prelude::any::<String>()) {
            if let Err(e) = parse(&text, Some("/home/u")) {
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
            proptest::prop_assert_eq!(parse(&text, None).expect("quoted pairs parse").vars, pairs);
        }
    }
}

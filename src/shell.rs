//! Quoting for the shell (POSIX shells and fish), for commands and `export` lines that atl-token prints.

/// `text` as one shell word, for POSIX shells and fish alike: as it is when it holds only
/// characters every shell leaves alone, else in single quotes, with each `'` and `\`
/// written outside them as `\'` and `\\`. Nothing inside single quotes is expanded, and
/// fish, which reads `\'` and `\\` even inside them, never sees either there, so `eval`
/// (or fish's `source`) of the result yields `text` whatever it holds.
pub fn quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if text.is_empty() {
        return "''".to_owned();
    }
    if text.chars().all(plain) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 2);
    let mut open = false;
    for c in text.chars() {
        let special = c == '\'' || c == '\\';
        if special == open {
            out.push('\'');
            open = !open;
        }
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    if open {
        out.push('\'');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(quote("/srv/jira/token.json"), "/srv/jira/token.json");
        assert_eq!(quote("/my dir/it's"), r"'/my dir/it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(rm -rf ~)`x`\n"), "'$(rm -rf ~)`x`\n'");
        assert_eq!(quote("abc\\"), r"'abc'\\");
        assert_eq!(quote(r"a\'b"), r"'a'\\\''b'");
        assert_eq!(quote("'"), r"\'");
    }
}

//! Quoting for the POSIX shell, for commands and `export` lines that atl-token prints.

/// `text` as one shell word: as it is when it holds only characters the shell leaves alone,
/// else in single quotes, each `'` written `'\''`. Nothing inside single quotes is expanded,
/// so `eval` of the result yields `text` whatever it holds.
pub fn quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
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
    }
}

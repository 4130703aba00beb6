//! Text from servers, made safe to show: no control characters or escape sequences reach
//! the terminal, so a server cannot clear the screen, retitle the window, plant a link or
//! reorder what a person reads.

use std::borrow::Cow;

/// Characters that change how text is shown rather than being shown: C0 controls but line
/// breaks and tabs, DEL, C1 controls (U+009B is a one-character escape sequence on some
/// terminals) and the Unicode bidirectional controls.
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` without the characters that [`hidden`] names.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(hidden) {
        Cow::Owned(text.chars().filter(|c| !hidden(*c)).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// [`printable`], on one line: line breaks and tabs become spaces.
pub fn one_line(text: &str) -> String {
    printable(text).replace(['\n', '\r', '\t'], " ")
}

/// JSON text (as serde_json writes it) with DEL, the C1 controls and the bidirectional
/// controls written as `\uXXXX`: the same JSON, but nothing in it acts on a terminal.
/// serde_json already escapes the C0 controls, and outside strings JSON holds none of these.
pub fn json_for_terminal(json: String) -> String {
    if !json.chars().any(hidden) {
        return json;
    }
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Bytes that are not JSON, for a terminal: printable text as it is, line breaks and tabs
/// kept, and every other byte (a control, or one that is not UTF-8) written as `\xNN`.
pub fn bytes_for_terminal(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if hidden(c) {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                }
            } else {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        for b in chunk.invalid() {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
    }
    out
}

/// The innermost cause of an error, in its own words: "Connection refused (os error 111)".
#[cfg(shared_store)]
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_bidi_controls_are_dropped() {
        assert_eq!(printable("\u{1b}[2J\u{1b}[31mHACKED"), "[2J[31mHACKED");
        assert_eq!(printable("\u{1b}]8;;https://evil/\u{7}link\u{1b}]8;;\u{7}"), "]8;;https://evil/link]8;;");
        assert_eq!(printable("a\u{9b}31mb\u{202e}c\u{7f}"), "a31mbc");
        assert_eq!(printable("two\nlines\tand tab"), "two\nlines\tand tab");
        assert!(matches!(printable("plain"), Cow::Borrowed("plain")));
        assert_eq!(one_line("a\nb\r\tc\u{1b}"), "a b c");
    }

    #[test]
    fn json_keeps_its_meaning_and_loses_its_effects() {
        let json =
            serde_json::to_string(&serde_json::json!({"t": "\u{1b}[2J\u{9b}1m\u{202e}"})).expect("json");
        let shown = json_for_terminal(json.clone());
        assert!(!shown.chars().any(hidden), "{shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(back, serde_json::from_str::<serde_json::Value>(&json).expect("json"));
    }

    #[test]
    fn other_bodies_show_their_bytes_escaped() {
        assert_eq!(bytes_for_terminal(b"ok\n\x1b[2J\xff\tend"), b"ok\n\\x1b[2J\\xff\tend");
        assert_eq!(bytes_for_terminal("\u{9b}".as_bytes()), b"\\xc2\\x9b");
    }
}

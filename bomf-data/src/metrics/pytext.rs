//! The few Python string operations the reference scripts rely on, reproduced exactly.
//!
//! The text metrics are defined by Python code, so "whitespace" and "word character" must mean
//! what they mean in Python 3, which differs from Rust's std in small ways.

use std::sync::LazyLock;

use regex::Regex;

/// Python's `str.isspace()` for one character: Unicode `White_Space` (Rust's `is_whitespace`)
/// plus the four ASCII information separators U+001C..U+001F, which Python also splits on.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()` (no argument): runs of whitespace separate, empty pieces are dropped.
pub(crate) fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|piece| !piece.is_empty())
}

/// Python's `s.rstrip()` (no argument).
pub(crate) fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

/// Python's `" ".join(s.split())`: single spaces between words, none at the ends.
pub(crate) fn collapse_whitespace(s: &str) -> String {
    split_whitespace(s).collect::<Vec<_>>().join(" ")
}

/// Runs of Python `re` word characters (`\w` on `str`): letters, numbers and `_`.
///
/// Python's `\w` is `str.isalnum() or "_"`, i.e. Unicode categories L* and N* (Rust's
/// `char::is_alphanumeric` would also count the combining marks in `Other_Alphabetic`).
pub(crate) static WORD_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\p{L}\p{N}_]+").expect("static regex is valid"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace() {
        assert_eq!(
            split_whitespace("a\u{1f}b\u{a0}c  d\n").collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(rstrip("x \u{2003}\n"), "x");
        assert_eq!(collapse_whitespace("  a \t b "), "a b");
    }
}

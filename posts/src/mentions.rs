//! `@handle` mentions in a post's text.
//!
//! A mention is `@` followed by 3–30 characters of `[A-Za-z0-9_]` (a handle's alphabet, any
//! case), where the `@` starts the text or follows a character that is neither a letter (of any
//! script), a digit, `_` nor `@` (so `mail@example.org` mentions nobody), and the name is not
//! followed by a letter or digit of any script (`@café` names no `caf`; too long a name is no
//! handle). Whether the handle names an existing user is
//! the caller's check.

/// Most mentions of one post that notify (the first ones in the text).
pub const MAX_MENTIONS: usize = 10;

/// The handles `text` mentions, lower-cased, distinct, in order of first appearance, at most
/// [`MAX_MENTIONS`].
pub fn handles(text: &str) -> Vec<String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = text.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < bytes.len() && out.len() < MAX_MENTIONS {
        // `i` is at an ASCII `@` here, so a char boundary.
        if bytes[i] != b'@'
            || text[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '@')
        {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        let after = text[end..].chars().next();
        if (3..=30).contains(&(end - start)) && !after.is_some_and(char::is_alphanumeric) {
            // ASCII only between start and end: a valid str slice.
            let h = text[start..end].to_ascii_lowercase();
            if !out.contains(&h) {
                out.push(h);
            }
        }
        i = end.max(start);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_handles_and_nothing_else() {
        assert_eq!(
            handles("hi @Alice and @bob_2, @alice again; mail@example.org @@x12 @ab @caf\u{e9}"),
            vec!["alice", "bob_2"]
        );
        assert_eq!(handles("(@zed) @éé é@abc @abc"), vec!["zed", "abc"]);
        assert!(handles(&format!("@{}", "a".repeat(31))).is_empty());
        let many: String = (0..20).map(|i| format!("@user{i} ")).collect();
        assert_eq!(handles(&many).len(), MAX_MENTIONS);
    }
}

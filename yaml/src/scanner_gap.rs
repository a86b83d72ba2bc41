//! Where libyaml-safer's scanner (libyaml 0.2.5) and go-yaml v2's (kubectl's; libyaml 0.1)
//! read the same text differently, each found by tests/differential.rs, and how kubectl's
//! reading is restored:
//! - `\'` in a double-quoted scalar: go-yaml added the escape (`'`); libyaml refuses it. The
//!   text is rewritten to `'` and read again.
//! - `x:` followed by `,`, `]` or `}` in a flow collection: go-yaml reads the plain scalar `x:`;
//!   libyaml 0.2.5 refuses the `:`. The scalar is rewritten double-quoted and read again.
//! - `[`, `]` or `,` in a tag (`!a,b`): go-yaml's tags may hold them, libyaml 0.2.5's may not
//!   (and libyaml-safer panics on a tag followed by `,` in a flow collection). Before parsing,
//!   they are rewritten to `_` in every tag ([`tags_as_go_yaml_reads_them`]): the tag stays one
//!   go-yaml does not know, so the value stays a string.
//! - `:x` starting a plain scalar in a flow collection: go-yaml reads the `:` as the value
//!   indicator there, libyaml 0.2.5 as the scalar `:x`. After an anchor or tag (`[&a :x]`,
//!   `[{null: x}]` to go-yaml) a space is put after the `:` and the text read again; without
//!   one go-yaml refuses it.
//! - `\/` in a double-quoted scalar: libyaml 0.2.5 added the escape; go-yaml refuses it.
//! - `?` inside a plain scalar in a flow collection: go-yaml ends the scalar there, and the `?`
//!   that follows starts a key where none may be, so kubectl refuses the document; libyaml
//!   0.2.5 reads on.

use libyaml_safer::{Mark, ScalarStyle};

/// A change to the text after which libyaml reads it as go-yaml does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rewrite {
    pub(crate) range: std::ops::Range<usize>,
    pub(crate) with: String,
}

/// What to rewrite, if libyaml-safer's `error` is one of the texts go-yaml reads.
pub(crate) fn rewrite(text: &str, error: &libyaml_safer::Error) -> Option<Rewrite> {
    let at = byte(error.problem_mark()?)?;
    if error.problem().contains("unknown escape character") && text.get(at..)?.starts_with("\\'") {
        return Some(Rewrite {
            range: at..at + 2,
            with: "'".into(),
        });
    }
    if error.problem() == "found unexpected ':'"
        && error.context() == Some("while scanning a plain scalar")
        && matches!(text.as_bytes().get(at + 1), Some(b',' | b']' | b'}'))
    {
        let start = byte(error.context_mark()?)?;
        let scalar = text.get(start..=at)?;
        let quoted = scalar.replace('\\', "\\\\").replace('"', "\\\"");
        return Some(Rewrite {
            range: start..at + 1,
            with: format!("\"{quoted}\""),
        });
    }
    None
}

/// The characters go-yaml reads into a tag after its `!` (libyaml 0.1's URI characters, with
/// the handle's); libyaml 0.2.5 leaves out `,`, `[` and `]`.
fn go_yaml_tag_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_;/?:@&=+$,.!~*'()[]%".contains(&c)
}

/// Whether a tag starting at `at` holds `,`, `[` or `]` as go-yaml reads it.
fn needs_tag_rewrite(bytes: &[u8], at: usize) -> bool {
    bytes.get(at + 1) != Some(&b'<')
        && bytes[at + 1..]
            .iter()
            .take_while(|&&c| go_yaml_tag_char(c))
            .any(|c| b",[]".contains(c))
}

/// The end of the tag go-yaml reads from the `!` at `at`.
fn tag_end(bytes: &[u8], at: usize) -> usize {
    at + 1
        + bytes[at + 1..]
            .iter()
            .take_while(|&&c| go_yaml_tag_char(c))
            .count()
}

/// `,`, `[` and `]` in the tag starting at `at` rewritten to `_`.
fn rewrite_tag(bytes: &mut [u8], at: usize) {
    let end = tag_end(bytes, at);
    for c in &mut bytes[at + 1..end] {
        if b",[]".contains(c) {
            *c = b'_';
        }
    }
}

/// Whether libyaml-safer's scanner scans a tag from `at` in `probe`, which ends with a
/// character a tag may not be followed by (and a line break): it stops there "while scanning a tag" started at
/// `at`.
fn tag_at(probe: &[u8], at: usize) -> bool {
    let mut input = probe;
    let mut scanner = libyaml_safer::Scanner::new();
    scanner.set_input(&mut input);
    for token in scanner {
        if let Err(error) = token {
            // "while scanning a tag", or "while parsing a tag" (a bad %-escape in it).
            return error.context().is_some_and(|c| c.ends_with(" a tag"))
                && error.context_mark().and_then(byte) == Some(at);
        }
    }
    false
}

/// The text with every tag made one libyaml-safer reads as go-yaml reads it (see the module
/// docs), or `None` when no tag needs it. Which `!` start tags (and not text inside a quoted or
/// plain scalar) only a scanner knows: for each candidate in order, libyaml-safer's scans the
/// text as rewritten so far up to the candidate's end, with the candidate rewritten (so that
/// neither it nor an error further on can stop the scan first); the scanner's state at the
/// candidate depends only on the text before it, so what it finds there is what the parse
/// finds.
pub(crate) fn tags_as_go_yaml_reads_them(text: &str) -> Result<Option<String>, TooManyTags> {
    let bytes = text.as_bytes();
    let candidates: Vec<usize> = (0..bytes.len())
        .filter(|&at| bytes[at] == b'!' && needs_tag_rewrite(bytes, at))
        .take(MAX_TAG_CANDIDATES + 1)
        .collect();
    if candidates.len() > MAX_TAG_CANDIDATES {
        return Err(TooManyTags);
    }
    let mut current = bytes.to_vec();
    let mut changed = false;
    for at in candidates {
        let mut probe = current[..tag_end(&current, at)].to_vec();
        rewrite_tag(&mut probe, at);
        // A character no tag may hold, and no blank: if a tag starts at the candidate, the
        // scanner refuses what follows it at once, naming the tag's start (the tokens it holds
        // back while a simple key may be pending would tell nothing).
        // (And a line break, or the scanner may panic at the end of the probe.)
        probe.extend_from_slice(b"`\n");
        if tag_at(&probe, at) {
            rewrite_tag(&mut current, at);
            changed = true;
        }
    }
    Ok(changed.then(|| String::from_utf8(current).expect("ASCII replaced by ASCII")))
}

/// Each candidate costs a scan of the text up to it: far more than any manifest has, few
/// enough that hostile input cannot make reading slow.
const MAX_TAG_CANDIDATES: usize = 256;

/// More `!`-words holding `,`, `[` or `]` than [`MAX_TAG_CANDIDATES`].
#[derive(Debug)]
pub(crate) struct TooManyTags;

/// The rewrite that makes a plain scalar in a flow collection that starts with `:` read as
/// go-yaml reads it; `start` is the byte offset of `source`, the scalar's text with its anchor
/// and tag.
pub(crate) fn leading_colon(
    source: &str,
    start: usize,
    style: ScalarStyle,
    in_flow: bool,
) -> Option<Result<Rewrite, &'static str>> {
    if style != ScalarStyle::Plain || !in_flow {
        return None;
    }
    // Skip the properties (`&anchor`, `!tag`) and the space after each.
    let mut rest = source;
    while rest.starts_with(['&', '!']) {
        let word = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[word..].trim_start();
    }
    if !rest.starts_with(':') {
        return None;
    }
    if rest.len() == source.len() {
        return Some(Err(
            "a plain scalar starting with : in a flow collection: kubectl (go-yaml) reads the : as a value indicator with no key and refuses the document; quote the scalar",
        ));
    }
    let at = start + (source.len() - rest.len());
    Some(Ok(Rewrite {
        range: at..at + 1,
        with: ": ".into(),
    }))
}

/// Why go-yaml refuses a scalar libyaml read, if it does: `source` is its text in the stream,
/// `in_flow` whether it sits in a flow collection.
pub(crate) fn refused(
    source: &str,
    value: &str,
    style: ScalarStyle,
    in_flow: bool,
) -> Option<&'static str> {
    match style {
        ScalarStyle::DoubleQuoted if has_escaped_slash(source) => Some(
            "the escape \\/ in a double-quoted string: kubectl (go-yaml) refuses it; write /",
        ),
        ScalarStyle::Plain if in_flow && value.contains('?') => Some(
            "a ? inside a plain scalar in a flow collection: kubectl (go-yaml) ends the scalar there and refuses the document; quote the scalar",
        ),
        _ => None,
    }
}

/// Whether a double-quoted scalar's source holds the escape `\/` (not `\\/`).
fn has_escaped_slash(source: &str) -> bool {
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.next() == Some('/') {
            return true;
        }
    }
    false
}

/// A mark's byte offset (its column counts characters).
fn byte(mark: Mark) -> Option<usize> {
    usize::try_from(mark.index).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_tags_are_rewritten() {
        let rewrite = |text: &str| tags_as_go_yaml_reads_them(text).unwrap();
        assert_eq!(
            rewrite("a: {!,\n }\nb: \"!,x\"\nc: x!,y\n").as_deref(),
            Some("a: {!_\n }\nb: \"!,x\"\nc: x!,y\n")
        );
        assert_eq!(rewrite("a: !t x\nb: \"!,\"\n"), None);
        assert_eq!(rewrite("a: !<a,b> x\n"), None);
        // Found by fuzzing: an error further on (an unclosed quote) must not hide the tag,
        // and a candidate that is no tag (inside a plain scalar) must not hide the next one.
        assert_eq!(
            rewrite("{\n  \"k\": \"v\n\",!?!*,8\n  \"ki\n").as_deref(),
            Some("{\n  \"k\": \"v\n\",!?!*_8\n  \"ki\n")
        );
        assert_eq!(rewrite("{x: 44!!*,!w,}").as_deref(), Some("{x: 44!!*,!w_}"));
        assert!(tags_as_go_yaml_reads_them(&"- !a,b\n".repeat(300)).is_err());
        // Found by fuzzing: a simple key pending before the tag (a block key that is a flow
        // sequence) must not hide it.
        assert_eq!(
            rewrite("spec:\n[[!,\r[)[\n").as_deref(),
            Some("spec:\n[[!_\r[)[\n")
        );
        // Found by fuzzing: a tag whose text past the rewrite fails otherwise (a bad
        // %-escape) is a tag too.
        assert!(crate::parse("{[!!,%!,x]}").is_err());
        // Found by fuzzing: the probe itself must end with a line break. kubectl reads this
        // as one plain scalar.
        let stream = crate::parse("~[\n!!'n,am.INF\nu\n \n!'niam\n\n\n\n\napnd").unwrap();
        assert_eq!(
            stream.documents[0].to_json(),
            serde_json::json!("~[ !!'n,am.INF u\n!'niam\n\n\n\napnd")
        );
    }

    #[test]
    fn an_escaped_slash_is_found_only_as_an_escape() {
        assert!(has_escaped_slash(r#""a\/b""#));
        assert!(!has_escaped_slash(r#""a\\/b""#));
        assert!(!has_escaped_slash(r#""a/b""#));
        assert!(has_escaped_slash(r#""\\\/""#));
    }
}

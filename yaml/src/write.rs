//! Writing documents back: block-style YAML laid out as kubectl prints it, or pretty JSON.
//!
//! A string is written plain only when every YAML 1.1 and 1.2 reader takes it back as that same
//! string ([`super::resolve::may_resolve_to_non_string`] and the plain-scalar syntax rules);
//! otherwise single-quoted, as a literal block (`|`) when it spans lines, or double-quoted when it
//! holds characters that need escapes.

use std::fmt::Write as _;

use serde_json::Number;

use super::resolve::may_resolve_to_non_string;
use super::Node;

/// Writes the documents as one YAML stream, separated by `---`.
pub fn write_yaml(documents: &[Node], out: &mut String) {
    for (i, document) in documents.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        match document {
            Node::Map(entries) if !entries.is_empty() => write_map(entries, 0, false, out),
            Node::Seq(items) if !items.is_empty() => write_seq(items, 0, false, out),
            other => {
                write_scalar(other, 2, out);
                out.push('\n');
            }
        }
    }
}

/// Writes the documents as pretty-printed JSON objects, one after another (a stream kubectl
/// reads).
pub fn write_json(documents: &[Node], out: &mut String) {
    for document in documents {
        let text = serde_json::to_string_pretty(document)
            .expect("a Node always serialises: string keys, finite numbers");
        out.push_str(&text);
        out.push('\n');
    }
}

/// Mapping entries at `indent`; with `inline_first` the first entry follows a `- ` already
/// written.
fn write_map(entries: &[(String, Node)], indent: usize, inline_first: bool, out: &mut String) {
    for (i, (key, value)) in entries.iter().enumerate() {
        if !(inline_first && i == 0) {
            pad(indent, out);
        }
        let mut key_text = String::new();
        write_inline_string(key, &mut key_text);
        // YAML readers refuse implicit keys over 1024 characters: make such a key explicit.
        let explicit = key_text.chars().count() > 1000;
        if explicit {
            out.push_str("? ");
            out.push_str(&key_text);
            out.push('\n');
            pad(indent, out);
        } else {
            out.push_str(&key_text);
        }
        out.push(':');
        match value {
            Node::Map(entries) if !entries.is_empty() => {
                out.push('\n');
                write_map(entries, indent + 2, false, out);
            }
            // kubectl's layout: a sequence's dashes line up with its key.
            Node::Seq(items) if !items.is_empty() => {
                out.push('\n');
                write_seq(
                    items,
                    if explicit { indent + 2 } else { indent },
                    false,
                    out,
                );
            }
            scalar => {
                out.push(' ');
                write_scalar(scalar, indent + 2, out);
                out.push('\n');
            }
        }
    }
}

fn write_seq(items: &[Node], indent: usize, inline_first: bool, out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if !(inline_first && i == 0) {
            pad(indent, out);
        }
        out.push_str("- ");
        match item {
            Node::Map(entries) if !entries.is_empty() => write_map(entries, indent + 2, true, out),
            Node::Seq(items) if !items.is_empty() => write_seq(items, indent + 2, true, out),
            scalar => {
                write_scalar(scalar, indent + 2, out);
                out.push('\n');
            }
        }
    }
}

/// A scalar, or an empty collection, on the current line. A literal block's lines are indented
/// by `block_indent`.
fn write_scalar(node: &Node, block_indent: usize, out: &mut String) {
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Number(n) => out.push_str(&number_text(n)),
        Node::String(s) if is_literal_block_safe(s) => write_literal(s, block_indent, out),
        Node::String(s) => write_inline_string(s, out),
        Node::Seq(_) => out.push_str("[]"),
        Node::Map(_) => out.push_str("{}"),
    }
}

/// A float always has a `.` and a signed exponent: YAML 1.1 reads `1e300` as a string.
fn number_text(n: &Number) -> String {
    let text = n.to_string();
    if !n.is_f64() {
        return text;
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (text.as_str(), None),
    };
    let mut out = mantissa.to_owned();
    if !out.contains('.') {
        out.push_str(".0");
    }
    if let Some(e) = exponent {
        out.push('e');
        if !e.starts_with(['-', '+']) {
            out.push('+');
        }
        out.push_str(e);
    }
    out
}

fn write_inline_string(s: &str, out: &mut String) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if s.chars().all(is_printable_inline) {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    } else {
        write_double_quoted(s, out);
    }
}

fn write_double_quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if is_printable_inline(c) => out.push(c),
            c if u32::from(c) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if u32::from(c) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
}

/// `|` keeps one final newline, `|-` none.
fn write_literal(s: &str, indent: usize, out: &mut String) {
    let (header, body) = match s.strip_suffix('\n') {
        Some(body) => ("|", body),
        None => ("|-", s),
    };
    out.push_str(header);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(indent, out);
            out.push_str(line);
        }
    }
}

fn pad(indent: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Characters every YAML 1.1 and 1.2 reader takes as themselves inside quotes or a plain scalar:
/// printable, and not one of the line breaks YAML 1.1 adds (NEL, LS, PS) nor a byte-order mark.
fn is_printable_inline(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// Whether `s` can be written without quotes and read back as the same string everywhere.
pub(super) fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let syntax_ok = s.chars().all(is_printable_inline)
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !"?:,[]{}#&*!|>'\"%@`".contains(first)
        && !(first == '-' && (s.len() == 1 || s[1..].starts_with(' ') || s.starts_with("---")))
        && !s.starts_with("...")
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':');
    syntax_ok && !may_resolve_to_non_string(s)
}

/// Whether `s` spans lines and reads back the same as a literal block with an auto-detected
/// indentation: no leading space or blank line (the first line sets the indentation), no
/// whitespace-only line, at most one final newline, nothing that needs an escape.
fn is_literal_block_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && !s.ends_with("\n\n")
        && s.chars().all(|c| c == '\n' || is_printable_inline(c))
        && !s
            .split('\n')
            .any(|line| !line.is_empty() && line.trim_start_matches(' ').is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(node: Node) -> String {
        let mut out = String::new();
        write_yaml(&[Node::Map(vec![("k".into(), node)])], &mut out);
        out
    }

    #[test]
    fn strings_are_quoted_only_when_a_reader_could_mistake_them() {
        let cases = [
            ("nginx", "k: nginx\n"),
            ("on", "k: 'on'\n"),
            ("NO", "k: 'NO'\n"),
            ("12:30", "k: '12:30'\n"),
            ("2024-01-01", "k: '2024-01-01'\n"),
            ("0755", "k: '0755'\n"),
            ("", "k: ''\n"),
            ("~", "k: '~'\n"),
            ("it's", "k: it's\n"),
            ("'quoted'", "k: '''quoted'''\n"),
            ("a: b", "k: 'a: b'\n"),
            ("a #b", "k: 'a #b'\n"),
            ("- item", "k: '- item'\n"),
            ("--flag", "k: --flag\n"),
            ("*ref", "k: '*ref'\n"),
            (" padded", "k: ' padded'\n"),
            ("tab\there", "k: \"tab\\there\"\n"),
            ("bell\u{7}", "k: \"bell\\x07\"\n"),
            ("line\u{2028}sep", "k: \"line\\u2028sep\"\n"),
            ("two\nlines\n", "k: |\n  two\n  lines\n"),
            ("no final\nnewline", "k: |-\n  no final\n  newline\n"),
            ("blank\n\nline", "k: |-\n  blank\n\n  line\n"),
            (" lead\nspace", "k: \" lead\\nspace\"\n"),
            ("two finals\n\n", "k: \"two finals\\n\\n\"\n"),
        ];
        for (value, want) in cases {
            assert_eq!(yaml(Node::String(value.into())), want, "{value:?}");
        }
    }

    #[test]
    fn keys_over_1024_characters_are_written_explicitly() {
        let long = "k".repeat(2000);
        let value = Node::Map(vec![
            (long.clone(), Node::String("v".into())),
            (format!("{long}2"), Node::Seq(vec![Node::Bool(true)])),
            (
                format!("{long}3"),
                Node::Map(vec![("a".into(), Node::Null)]),
            ),
        ]);
        let doc = Node::Map(vec![
            ("seq".into(), Node::Seq(vec![value.clone()])),
            ("map".into(), value),
        ]);
        let mut out = String::new();
        write_yaml(std::slice::from_ref(&doc), &mut out);
        assert!(out.contains(&format!("- ? {long}\n  : v\n")), "{out}");
        assert_eq!(super::super::parse(&out).unwrap().documents, [doc]);
    }

    #[test]
    fn floats_keep_a_dot_and_a_signed_exponent() {
        let n = |f: f64| number_text(&Number::from_f64(f).unwrap());
        assert_eq!(n(1.5), "1.5");
        assert_eq!(n(1e300), "1.0e+300");
        assert_eq!(n(2.5e-7), "2.5e-7");
        assert_eq!(number_text(&Number::from(256)), "256");
    }

    #[test]
    fn collections_use_kubectl_layout() {
        let node = Node::Map(vec![
            (
                "containers".into(),
                Node::Seq(vec![Node::Map(vec![
                    ("name".into(), Node::String("app".into())),
                    ("args".into(), Node::Seq(vec![Node::String("-v".into())])),
                    ("env".into(), Node::Seq(vec![])),
                    ("resources".into(), Node::Map(vec![])),
                ])]),
            ),
            (
                "nested".into(),
                Node::Seq(vec![Node::Seq(vec![Node::Null, Node::Bool(true)])]),
            ),
        ]);
        let mut out = String::new();
        write_yaml(&[node], &mut out);
        assert_eq!(
            out,
            "containers:\n- name: app\n  args:\n  - -v\n  env: []\n  resources: {}\nnested:\n- - null\n  - true\n"
        );
    }
}

//! A YAML stream cut into documents as kubectl cuts it (k8s.io/apimachinery's `YAMLReader`):
//! at every line that starts with `---`, before any YAML is parsed, so a `---` line inside a
//! multi-line flow or quoted scalar cuts too, and text after `---` on its line other than a
//! comment is refused. Each piece is then parsed on its own (and only its first document read,
//! as go-yaml's `Unmarshal` reads it). Its line reader (bufio's `ReadLine`, then `\n`) also ends
//! every line with a bare `\n`: a `\r\n` ending becomes `\n` (so `\r\r\n` is one CR LF), and the
//! last line gets one if it had none.

/// One piece of the stream: its text (lines ended as kubectl's line reader ends them) and the
/// 0-based line of the stream it starts at.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) text: String,
    pub(crate) first_line: usize,
}

/// A separator line with more than a comment after its `---`: (0-based line, what follows).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadSeparator {
    pub(crate) line: usize,
    pub(crate) rest: String,
}

/// The pieces of `text`, in order. A separator line that ends a piece is dropped; one that
/// starts the stream or follows another stays at the start of its piece (`YAMLReader` keeps it
/// there; go-yaml reads it as an explicit document start).
pub(crate) fn pieces(text: &str) -> Result<Vec<Piece>, BadSeparator> {
    let mut pieces = Vec::new();
    let mut current = Piece {
        text: String::new(),
        first_line: 0,
    };
    for (line_number, line) in text.split_inclusive('\n').enumerate() {
        if let Some(rest) = line.strip_prefix("---") {
            // Go's strings.TrimSpace: Unicode white space, \r included.
            let rest = rest.trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                return Err(BadSeparator {
                    line: line_number,
                    rest: rest.to_owned(),
                });
            }
            if !current.text.is_empty() {
                let next = Piece {
                    text: String::new(),
                    first_line: line_number + 1,
                };
                pieces.push(std::mem::replace(&mut current, next));
                continue;
            }
        }
        let content = line
            .strip_suffix("\r\n")
            .or_else(|| line.strip_suffix('\n'))
            .unwrap_or(line);
        current.text.push_str(content);
        current.text.push('\n');
    }
    if !current.text.is_empty() {
        pieces.push(current);
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<(String, usize)> {
        pieces(text)
            .unwrap()
            .into_iter()
            .map(|p| (p.text, p.first_line))
            .collect()
    }

    fn owned<const N: usize>(pieces: [(&str, usize); N]) -> Vec<(String, usize)> {
        pieces.iter().map(|(t, l)| ((*t).to_owned(), *l)).collect()
    }

    #[test]
    fn cuts_at_separator_lines_as_kubectl_does() {
        assert_eq!(
            texts("a: 1\n---\nb: 2\n"),
            owned([("a: 1\n", 0), ("b: 2\n", 2)])
        );
        // A separator that opens a piece stays in it; one that ends a piece is dropped.
        assert_eq!(
            texts("--- # c\na: 1\n---\n---\nb: 2"),
            owned([("--- # c\na: 1\n", 0), ("---\nb: 2\n", 3)])
        );
        // Inside a quoted scalar too: kubectl cuts before parsing.
        assert_eq!(
            texts("a: \"x\n---\ny\"\n"),
            owned([("a: \"x\n", 0), ("y\"\n", 2)])
        );
        // Only at the start of a line, CRLF included; lines end in \n, the last one too, and
        // \r\r\n is one CR LF.
        assert_eq!(
            texts(" ---\r\n---\r\nb"),
            owned([(" ---\n", 0), ("b\n", 2)])
        );
        assert_eq!(texts("a\r\r\nb\rc"), owned([("a\r\nb\rc\n", 0)]));
        assert_eq!(texts(""), []);
    }

    #[test]
    fn refuses_content_after_a_separator() {
        assert_eq!(
            pieces("a: 1\n--- {b: 2}\n"),
            Err(BadSeparator {
                line: 1,
                rest: "{b: 2}".into()
            })
        );
        assert!(pieces("--- |\n  x\n").is_err());
        // `----` starts with `---`: refused as kubectl refuses it.
        assert!(pieces("a\n----\nb\n").is_err());
        assert!(pieces("---   # only a comment\n").is_ok());
    }
}

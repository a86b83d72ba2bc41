//! Reading a stream into [`Node`]s as kubectl reads it: YAML cut into documents at `---` lines
//! ([`super::split`]), each read through `libyaml-safer`'s events (a port of libyaml, which
//! go-yaml v2, and so kubectl, ports too: both scanners accept the same text) up to the end of
//! its first document, with plain scalars typed by YAML 1.1 rules ([`super::resolve`]),
//! anchors, aliases and `<<` merge keys assigned in go-yaml's order ([`super::tree`]); or JSON
//! through `serde_json`'s stream reader.

use std::collections::HashMap;
use std::io::Cursor;

use libyaml_safer::{Event, EventData, MappingStyle, Mark, Parser, ScalarStyle, SequenceStyle};
use serde_json::Number;

use super::resolve::{resolve_plain, Plain};
use super::scanner_gap::{self, Rewrite};
use super::split::pieces;
use super::tree::{go_float32_key, Assignments, Key, Tree};
use super::{Node, ParseError};

/// The prefix of the YAML core schema's tags (`!!str` is `tag:yaml.org,2002:str`).
const CORE_TAG: &str = "tag:yaml.org,2002:";

/// Reads every document of a YAML stream: the pieces kubectl cuts it into, each its first
/// document (an empty piece is [`Node::Null`]).
pub(super) fn parse_yaml(text: &str) -> Result<Vec<Node>, ParseError> {
    let pieces = pieces(text).map_err(|bad| ParseError {
        document: 1,
        line: Some(bad.line + 1),
        message: format!(
            "invalid document separator `--- {}`: only a comment may follow `---` on its line",
            bad.rest
        ),
    })?;
    let mut documents = Vec::with_capacity(pieces.len());
    for (index, piece) in pieces.iter().enumerate() {
        let document = index + 1;
        let shift = |mut error: ParseError| {
            error.document = document;
            error.line = error.line.map(|l| l + piece.first_line);
            error
        };
        documents.push(parse_piece(&piece.text, document).map_err(shift)?);
    }
    Ok(documents)
}

/// The first document of one piece, as go-yaml's `Unmarshal` reads it; lines count from the
/// piece's start.
fn parse_piece(text: &str, document: usize) -> Result<Node, ParseError> {
    // libyaml skips a byte-order mark and leaves it out of its marks' byte offsets, which the
    // rewrites ([`scanner_gap`]) use: it goes first (it mattered only to the split).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Every piece ends with a line break ([`super::split`]), as kubectl's line reader ends it:
    // libyaml-safer would panic on a block scalar whose last line has none.
    let mut text = std::borrow::Cow::Borrowed(text);
    for _ in 0..=MAX_REWRITES {
        // Tags first, on every round: the scan that finds them stops at the first text a
        // rewrite below changes, as the parse does (so it never reaches a tag the scan missed).
        match scanner_gap::tags_as_go_yaml_reads_them(&text) {
            Ok(Some(rewritten)) => text = std::borrow::Cow::Owned(rewritten),
            Ok(None) => {}
            Err(scanner_gap::TooManyTags) => {
                return Err(ParseError {
                    document,
                    line: None,
                    message: "more than 256 tags holding `,`, `[` or `]`".into(),
                })
            }
        }
        match parse_events(&text, document) {
            Err(Retry::Rewrite(change)) => text.to_mut().replace_range(change.range, &change.with),
            Err(Retry::No(error)) => return Err(error),
            Ok(tree) => {
                return tree.into_node().map_err(|(message, line)| ParseError {
                    document,
                    line,
                    message,
                })
            }
        }
    }
    Err(ParseError {
        document,
        line: None,
        message: format!(
            "more than {MAX_REWRITES} places where libyaml and kubectl's go-yaml differ (\\' escapes, `x:,` in flow collections)"
        ),
    })
}

/// Each rewrite ([`scanner_gap`]) costs a parse of the piece up to it: far more than any
/// manifest has, few enough that hostile input cannot make reading slow.
const MAX_REWRITES: usize = 256;

/// Why a parse stopped.
enum Retry {
    /// Text libyaml refuses or reads otherwise than go-yaml: read it again after this change.
    Rewrite(Rewrite),
    /// A real error.
    No(ParseError),
}

/// The events of a piece up to the end of its first document: what follows is never read, as
/// go-yaml never reads it.
fn parse_events(text: &str, document: usize) -> Result<Tree, Retry> {
    // libyaml-safer takes a first byte 0xEF for a broken byte-order mark (U+F000 to U+FFFF
    // start with it in UTF-8); go-yaml checks the whole mark. A real mark in front keeps it
    // from looking, and libyaml leaves a mark out of its offsets, so they still fit `text`.
    let input: std::borrow::Cow<[u8]> = if text.as_bytes().first() == Some(&0xEF) {
        [&b"\xEF\xBB\xBF"[..], text.as_bytes()].concat().into()
    } else {
        text.as_bytes().into()
    };
    let mut parser = Parser::new();
    parser.set_input(Cursor::new(&input[..]));
    let mut reader = Reader {
        text,
        events: parser,
        anchors: HashMap::new(),
        document,
        depth: 0,
        expanded: 0,
        flow: 0,
    };
    loop {
        let event = reader.next()?;
        match event.data {
            EventData::StreamStart { .. } => {}
            EventData::StreamEnd => return Ok(Tree::Node(Node::Null)),
            EventData::DocumentStart { .. } => {
                let event = reader.next()?;
                let root = reader.node(event)?;
                // go-yaml reads the document's end too (its scanner looks one token ahead).
                reader.next()?;
                return Ok(root);
            }
            other => {
                let message = format!("unexpected {other:?}");
                return Err(reader.error(Some(event.start_mark), message));
            }
        }
    }
}

/// A stream of JSON values as far as it reads (kubectl accepts concatenated objects).
pub(super) struct JsonStream {
    pub(super) documents: Vec<Node>,
    /// Where it stopped being JSON: the error, and the byte offset after the last value read.
    pub(super) failure: Option<(ParseError, usize)>,
}

/// Reads a stream of JSON values until its end or the first error.
pub(super) fn parse_json(text: &str) -> JsonStream {
    let mut documents = Vec::new();
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Node>();
    let mut offset = 0;
    while let Some(item) = values.next() {
        match item {
            Ok(node) => {
                documents.push(node);
                offset = values.byte_offset();
            }
            Err(e) => {
                let error = ParseError {
                    document: documents.len() + 1,
                    line: Some(e.line()),
                    message: format!("invalid JSON: {e}"),
                };
                return JsonStream {
                    documents,
                    failure: Some((error, offset)),
                };
            }
        }
    }
    JsonStream {
        documents,
        failure: None,
    }
}

/// Deeper nesting than any manifest has is refused, so the recursive reader cannot overflow.
const MAX_DEPTH: usize = 200;
/// Aliases may copy at most this many nodes per document: a "billion laughs" document is
/// refused instead of exhausting memory (go-yaml refuses them too).
const MAX_ALIASED_NODES: usize = 1_000_000;

struct Reader<'a> {
    text: &'a str,
    events: Parser<Cursor<&'a [u8]>>,
    /// Anchored nodes and their sizes in nodes; `None` while the anchored collection is read.
    anchors: HashMap<String, Option<(Tree, usize)>>,
    document: usize,
    depth: usize,
    /// Nodes copied by aliases so far in this document.
    expanded: usize,
    /// How deep in flow collections the reader is (0: in block context).
    flow: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<Event, Retry> {
        let event = self.events.parse().map_err(|e| {
            if let Some(change) = scanner_gap::rewrite(self.text, &e) {
                return Retry::Rewrite(change);
            }
            let message = match e.context() {
                Some(context) => format!("invalid YAML: {} {context}", e.problem()),
                None => format!("invalid YAML: {}", e.problem()),
            };
            Retry::No(ParseError {
                document: self.document.max(1),
                line: e.problem_mark().map(line_of),
                message,
            })
        })?;
        match &event.data {
            EventData::SequenceStart { style, .. }
                if self.flow > 0 || *style == SequenceStyle::Flow =>
            {
                self.flow += 1;
            }
            EventData::MappingStart { style, .. }
                if self.flow > 0 || *style == MappingStyle::Flow =>
            {
                self.flow += 1;
            }
            EventData::SequenceEnd | EventData::MappingEnd => {
                self.flow = self.flow.saturating_sub(1)
            }
            EventData::Scalar { value, style, .. } => {
                let start = byte(event.start_mark);
                let source = self
                    .text
                    .get(start..byte(event.end_mark))
                    .unwrap_or_default();
                match scanner_gap::leading_colon(source, start, *style, self.flow > 0) {
                    Some(Ok(change)) => return Err(Retry::Rewrite(change)),
                    Some(Err(why)) => return Err(self.error(Some(event.start_mark), why.into())),
                    None => {}
                }
                if let Some(why) = scanner_gap::refused(source, value, *style, self.flow > 0) {
                    return Err(self.error(Some(event.start_mark), why.into()));
                }
            }
            _ => {}
        }
        Ok(event)
    }

    fn error(&self, mark: Option<Mark>, message: String) -> Retry {
        Retry::No(ParseError {
            document: self.document.max(1),
            line: mark.map(line_of),
            message,
        })
    }

    fn node(&mut self, event: Event) -> Result<Tree, Retry> {
        let span = event.start_mark;
        if matches!(
            event.data,
            EventData::SequenceStart { .. } | EventData::MappingStart { .. }
        ) {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                let message = format!("nested deeper than {MAX_DEPTH} levels");
                return Err(self.error(Some(span), message));
            }
        }
        let node = self.node_inner(event);
        self.depth = self.depth.saturating_sub(1);
        node
    }

    fn node_inner(&mut self, event: Event) -> Result<Tree, Retry> {
        let span = event.start_mark;
        let (node, anchor) = match event.data {
            EventData::Scalar {
                value,
                style,
                anchor,
                tag,
                ..
            } => (self.scalar(&value, style, tag.as_deref(), span)?, anchor),
            EventData::SequenceStart { anchor, .. } => {
                self.anchor_in_progress(anchor.as_deref());
                let mut items = Vec::new();
                loop {
                    let event = self.next()?;
                    if matches!(event.data, EventData::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event)?);
                }
                (Tree::Seq(items), anchor)
            }
            EventData::MappingStart { anchor, .. } => {
                self.anchor_in_progress(anchor.as_deref());
                (self.mapping()?, anchor)
            }
            EventData::Alias { anchor } => {
                let Some(anchored) = self.anchors.get(&anchor) else {
                    return Err(self.error(Some(span), "alias to an unknown anchor".into()));
                };
                let Some((node, size)) = anchored else {
                    let message = format!("anchor {anchor:?} contains an alias to itself");
                    return Err(self.error(Some(span), message));
                };
                self.expanded += size;
                if self.expanded > MAX_ALIASED_NODES {
                    let message = format!("aliases expand to more than {MAX_ALIASED_NODES} nodes");
                    return Err(self.error(Some(span), message));
                }
                return Ok(node.clone());
            }
            other => return Err(self.error(Some(span), format!("unexpected {other:?}"))),
        };
        if let Some(anchor) = anchor {
            let size = node.size();
            self.anchors.insert(anchor, Some((node.clone(), size)));
        }
        Ok(node)
    }

    /// go-yaml names an anchor when its collection starts: an alias inside the collection is
    /// to the collection itself (refused), not to an earlier anchor of the same name.
    fn anchor_in_progress(&mut self, anchor: Option<&str>) {
        if let Some(anchor) = anchor {
            self.anchors.insert(anchor.to_owned(), None);
        }
    }

    /// A mapping as kubectl reads it: go-yaml v2 fills a Go map in document order, each pair
    /// and each key a `<<` brings in assigning its key, so a later assignment wins (a duplicate
    /// key too, and a merge after a key written out); sigs.k8s.io/yaml then turns the keys into
    /// strings. The first assignment of a key fixes its place in the order kept here.
    fn mapping(&mut self) -> Result<Tree, Retry> {
        let mut out = Assignments::default();
        loop {
            let event = self.next()?;
            if matches!(event.data, EventData::MappingEnd) {
                break;
            }
            let merge = matches!(
                &event.data,
                EventData::Scalar { value, style: ScalarStyle::Plain, tag: None, .. } if value == "<<"
            );
            let key = if merge { None } else { Some(self.key(event)?) };
            let event = self.next()?;
            let value_span = event.start_mark;
            let value = self.node(event)?;
            match key {
                Some(key) => out.assign(key, value),
                None => {
                    for (k, v) in self.merged(value, value_span)? {
                        out.assign(k, v);
                    }
                }
            }
        }
        Ok(Tree::Map(out.entries))
    }

    /// The assignments a `<<` value makes, in go-yaml's order: a mapping's pairs, or for a
    /// sequence of mappings the last mapping's first, so that the first mapping wins.
    fn merged(&self, value: Tree, span: Mark) -> Result<Vec<(Key, Tree)>, Retry> {
        let not_mapping = || {
            self.error(
                Some(span),
                "a << merge key needs a mapping or a sequence of mappings".into(),
            )
        };
        match value {
            Tree::Map(pairs) => Ok(pairs),
            Tree::Seq(items) => {
                let mut pairs = Vec::new();
                for item in items.into_iter().rev() {
                    match item {
                        Tree::Map(more) => pairs.extend(more),
                        _ => return Err(not_mapping()),
                    }
                }
                Ok(pairs)
            }
            _ => Err(not_mapping()),
        }
    }

    /// A mapping key as go-yaml holds it and sigs.k8s.io/yaml writes it: `on:` becomes
    /// `"true"`, `1e3:` `"1000"` but `1.5e6:` `"1.5e+06"` (a float, formatted as Go formats a
    /// float32); a sequence or mapping as a key is refused at once, as go-yaml refuses it.
    fn key(&mut self, event: Event) -> Result<Key, Retry> {
        let span = event.start_mark;
        if let EventData::Scalar {
            value,
            style,
            tag,
            anchor,
            ..
        } = &event.data
        {
            // An anchored key may be aliased as a value later.
            if let Some(anchor) = anchor {
                let node = self.scalar(value, *style, tag.as_deref(), span)?;
                self.anchors.insert(anchor.clone(), Some((node, 1)));
            }
            return Ok(
                match self.resolve_scalar(value, *style, tag.as_deref(), span)? {
                    Plain::Str => Key::Json(value.clone()),
                    Plain::Bool(b) => Key::Json(b.to_string()),
                    Plain::Int(n) => Key::Json(n.to_string()),
                    Plain::Float(f) => Key::Json(go_float32_key(f)),
                    Plain::Null => Key::Null {
                        line: line_of(span),
                    },
                    Plain::UInt(n) => Key::Unsigned {
                        value: n,
                        line: line_of(span),
                    },
                },
            );
        }
        // An alias, or a collection.
        match self.node(event)? {
            Tree::Node(Node::String(s)) => Ok(Key::Json(s)),
            Tree::Node(Node::Bool(b)) => Ok(Key::Json(b.to_string())),
            Tree::Node(Node::Number(n)) => Ok(Key::Json(n.to_string())),
            Tree::Node(Node::Null) => Ok(Key::Null {
                line: line_of(span),
            }),
            Tree::NotJson { text, .. } => Ok(Key::Json(text)),
            _ => Err(self.error(
                Some(span),
                "a mapping key must be a scalar, not a collection".into(),
            )),
        }
    }

    /// A scalar's value: the plain-scalar rules, or what its tag or quotes say.
    fn resolve_scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&str>,
        span: Mark,
    ) -> Result<Plain, Retry> {
        let core = tag.and_then(|t| t.strip_prefix(CORE_TAG));
        let resolved = match (tag, core) {
            // go-yaml resolves only these tags (its resolvableTag); any other, `!!x` too, keeps
            // the text as a string.
            (_, Some("bool" | "null" | "int" | "float")) => resolve_plain(text),
            (_, Some(_)) => Plain::Str,
            (None, None) if style == ScalarStyle::Plain => resolve_plain(text),
            // Quoted, or a tag of no schema go-yaml knows (`!`, `!Ref`): a string, as in kubectl.
            _ => Plain::Str,
        };
        let fits_tag = match core {
            Some("int") => matches!(resolved, Plain::Int(_) | Plain::UInt(_)),
            Some("float") => matches!(resolved, Plain::Int(_) | Plain::UInt(_) | Plain::Float(_)),
            Some("bool") => matches!(resolved, Plain::Bool(_)),
            Some("null") => matches!(resolved, Plain::Null),
            _ => true,
        };
        if !fits_tag {
            return Err(self.error(
                Some(span),
                format!(
                    "{text:?} does not match its tag {}",
                    tag.unwrap_or_default()
                ),
            ));
        }
        Ok(resolved)
    }

    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&str>,
        span: Mark,
    ) -> Result<Tree, Retry> {
        Ok(Tree::Node(
            match self.resolve_scalar(text, style, tag, span)? {
                Plain::Null => Node::Null,
                Plain::Bool(b) => Node::Bool(b),
                Plain::Int(n) => Node::Number(n.into()),
                Plain::UInt(n) => Node::Number(n.into()),
                Plain::Float(f) => match float_number(f) {
                    Some(n) => Node::Number(n),
                    None => {
                        return Ok(Tree::NotJson {
                            text: text.to_owned(),
                            line: line_of(span),
                        })
                    }
                },
                Plain::Str => Node::String(text.to_owned()),
            },
        ))
    }
}

/// A float as Kubernetes' YAML-to-JSON writes it: integral values become integers (`1e3` is
/// `1000`; Go's encoding/json writes them so), but `-0` stays a float; infinities and NaN
/// have no JSON form.
fn float_number(f: f64) -> Option<Number> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact
    if f.fract() == 0.0 && f.abs() < LIMIT && !(f == 0.0 && f.is_sign_negative()) {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Number::from(f as i64));
    }
    Number::from_f64(f)
}

/// A mark's byte offset (its column counts characters).
fn byte(mark: Mark) -> usize {
    usize::try_from(mark.index).unwrap_or(usize::MAX)
}

/// A mark's 1-based line.
fn line_of(mark: Mark) -> usize {
    usize::try_from(mark.line).map_or(usize::MAX, |l| l.saturating_add(1))
}

//! Reading a stream into [`Node`]s: YAML through `libyaml-safer`'s events (a port of libyaml,
//! which go-yaml v2, and so kubectl, ports too: both scanners accept the same text), with plain
//! scalars typed by YAML 1.1 rules ([`super::resolve`]), anchors, aliases and `<<` merge keys;
//! or JSON through `serde_json`'s stream reader.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;

use libyaml_safer::{Event, EventData, Mark, Parser, ScalarStyle};
use serde_json::Number;

use super::resolve::{resolve_plain, Plain};
use super::{Node, ParseError};

/// The prefix of the YAML core schema's tags (`!!str` is `tag:yaml.org,2002:str`).
const CORE_TAG: &str = "tag:yaml.org,2002:";

/// Reads every document of a YAML stream.
pub(super) fn parse_yaml(text: &str) -> Result<Vec<Node>, ParseError> {
    let mut text = std::borrow::Cow::Borrowed(text);
    for _ in 0..=MAX_ESCAPED_QUOTES {
        match parse_events(&text) {
            Err(Retry::EscapedQuote(at)) => text.to_mut().replace_range(at..at + 2, "'"),
            Err(Retry::No(error)) => return Err(error),
            Ok(documents) => return Ok(documents),
        }
    }
    Err(ParseError {
        document: 1,
        line: None,
        message: format!("more than {MAX_ESCAPED_QUOTES} \\' escapes"),
    })
}

/// Each `\'` costs a parse of the stream up to it: far more than any manifest has, few enough
/// that hostile input cannot make reading slow.
const MAX_ESCAPED_QUOTES: usize = 256;

/// Why a parse stopped.
enum Retry {
    /// `\'` inside a double-quoted scalar at this byte offset: go-yaml reads it as `'`, libyaml
    /// refuses it. The one escape where the two differ, so it is rewritten to the same value.
    EscapedQuote(usize),
    /// A real error.
    No(ParseError),
}

fn parse_events(text: &str) -> Result<Vec<Node>, Retry> {
    let mut parser = Parser::new();
    parser.set_input(Cursor::new(text.as_bytes()));
    let mut reader = Reader {
        text,
        events: parser,
        anchors: HashMap::new(),
        document: 0,
        depth: 0,
        expanded: 0,
    };
    let mut documents = Vec::new();
    loop {
        let event = reader.next()?;
        match event.data {
            EventData::StreamStart { .. } | EventData::DocumentEnd { .. } => {}
            EventData::StreamEnd => return Ok(documents),
            EventData::DocumentStart { .. } => {
                reader.document += 1;
                reader.anchors.clear();
                reader.expanded = 0;
                let event = reader.next()?;
                documents.push(reader.node(event)?);
            }
            other => {
                let message = format!("unexpected {other:?}");
                return Err(reader.error(Some(event.start_mark), message));
            }
        }
    }
}

/// Reads a stream of JSON values (kubectl accepts concatenated objects).
pub(super) fn parse_json(text: &str) -> Result<Vec<Node>, ParseError> {
    let mut documents = Vec::new();
    for item in serde_json::Deserializer::from_str(text).into_iter::<Node>() {
        match item {
            Ok(node) => documents.push(node),
            Err(e) => {
                return Err(ParseError {
                    document: documents.len() + 1,
                    line: Some(e.line()),
                    message: format!("invalid JSON: {e}"),
                })
            }
        }
    }
    Ok(documents)
}

/// Deeper nesting than any manifest has is refused, so the recursive reader cannot overflow.
const MAX_DEPTH: usize = 200;
/// Aliases may copy at most this many nodes per document: a "billion laughs" document is
/// refused instead of exhausting memory (go-yaml refuses them too).
const MAX_ALIASED_NODES: usize = 1_000_000;

struct Reader<'a> {
    text: &'a str,
    events: Parser<Cursor<&'a [u8]>>,
    /// Anchored nodes and their sizes in nodes.
    anchors: HashMap<String, (Node, usize)>,
    document: usize,
    depth: usize,
    /// Nodes copied by aliases so far in this document.
    expanded: usize,
}

/// One entry of a mapping being read: a key and value, or the mappings a `<<` key merges in.
enum Entry {
    Pair(String, Node),
    Merge(Vec<(String, Node)>),
}

impl Reader<'_> {
    fn next(&mut self) -> Result<Event, Retry> {
        self.events.parse().map_err(|e| {
            let mark = e.problem_mark();
            if let Some(at) = mark.and_then(|m| self.escaped_quote(e.problem(), m)) {
                return Retry::EscapedQuote(at);
            }
            let message = match e.context() {
                Some(context) => format!("invalid YAML: {} {context}", e.problem()),
                None => format!("invalid YAML: {}", e.problem()),
            };
            Retry::No(ParseError {
                document: self.document.max(1),
                line: mark.map(line_of),
                message,
            })
        })
    }

    /// The byte offset of a `\'` that libyaml refused as an unknown escape, if that is what
    /// stopped it.
    fn escaped_quote(&self, problem: &str, mark: Mark) -> Option<usize> {
        if !problem.contains("unknown escape character") {
            return None;
        }
        // The mark's index counts bytes (its column counts characters).
        let at = usize::try_from(mark.index).ok()?;
        self.text
            .get(at..)
            .is_some_and(|rest| rest.starts_with("\\'"))
            .then_some(at)
    }

    fn error(&self, mark: Option<Mark>, message: String) -> Retry {
        Retry::No(ParseError {
            document: self.document.max(1),
            line: mark.map(line_of),
            message,
        })
    }

    fn node(&mut self, event: Event) -> Result<Node, Retry> {
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

    fn node_inner(&mut self, event: Event) -> Result<Node, Retry> {
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
                let mut items = Vec::new();
                loop {
                    let event = self.next()?;
                    if matches!(event.data, EventData::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event)?);
                }
                (Node::Seq(items), anchor)
            }
            EventData::MappingStart { anchor, .. } => (self.mapping()?, anchor),
            EventData::Alias { anchor } => {
                let Some((node, size)) = self.anchors.get(&anchor) else {
                    return Err(self.error(Some(span), "alias to an unknown anchor".into()));
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
            let size = size(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok(node)
    }

    fn mapping(&mut self) -> Result<Node, Retry> {
        let mut entries = Vec::new();
        let mut explicit = HashSet::new();
        loop {
            let event = self.next()?;
            if matches!(event.data, EventData::MappingEnd) {
                break;
            }
            let span = event.start_mark;
            let merge = matches!(
                &event.data,
                EventData::Scalar { value, style: ScalarStyle::Plain, tag: None, .. } if value == "<<"
            );
            let key = self.node(event)?;
            let event = self.next()?;
            let value_span = event.start_mark;
            let value = self.node(event)?;
            if merge {
                entries.push(Entry::Merge(self.merged(value, value_span)?));
                continue;
            }
            let key = self.key(key, span)?;
            if !explicit.insert(key.clone()) {
                return Err(self.error(Some(span), format!("duplicate mapping key {key:?}")));
            }
            entries.push(Entry::Pair(key, value));
        }
        // Keys written in the mapping win over merged ones; among merged mappings the first wins.
        let mut out: Vec<(String, Node)> = Vec::with_capacity(entries.len());
        let mut merged = HashSet::new();
        for entry in entries {
            match entry {
                Entry::Pair(k, v) => out.push((k, v)),
                Entry::Merge(pairs) => {
                    for (k, v) in pairs {
                        if !explicit.contains(&k) && merged.insert(k.clone()) {
                            out.push((k, v));
                        }
                    }
                }
            }
        }
        Ok(Node::Map(out))
    }

    /// The pairs a `<<` value brings in: a mapping, or a sequence of mappings.
    fn merged(&self, value: Node, span: Mark) -> Result<Vec<(String, Node)>, Retry> {
        let not_mapping = || {
            self.error(
                Some(span),
                "a << merge key needs a mapping or a sequence of mappings".into(),
            )
        };
        match value {
            Node::Map(pairs) => Ok(pairs),
            Node::Seq(items) => {
                let mut pairs: Vec<(String, Node)> = Vec::new();
                for item in items {
                    let Node::Map(more) = item else {
                        return Err(not_mapping());
                    };
                    for (k, v) in more {
                        if !pairs.iter().any(|(p, _)| *p == k) {
                            pairs.push((k, v));
                        }
                    }
                }
                Ok(pairs)
            }
            _ => Err(not_mapping()),
        }
    }

    /// A mapping key as Kubernetes' YAML-to-JSON conversion writes it (`on:` becomes `"true"`).
    fn key(&self, key: Node, span: Mark) -> Result<String, Retry> {
        match key {
            Node::String(s) => Ok(s),
            Node::Bool(b) => Ok(b.to_string()),
            Node::Number(n) => Ok(n.to_string()),
            Node::Null => Ok("null".into()),
            Node::Seq(_) | Node::Map(_) => Err(self.error(
                Some(span),
                format!("a mapping key must be a scalar, not {}", key.type_name()),
            )),
        }
    }

    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&str>,
        span: Mark,
    ) -> Result<Node, Retry> {
        let core = tag.and_then(|t| t.strip_prefix(CORE_TAG));
        let resolved = match (tag, core) {
            (_, Some("str" | "binary" | "timestamp")) => Plain::Str,
            (_, Some(_)) => resolve_plain(text),
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
        Ok(match resolved {
            Plain::Null => Node::Null,
            Plain::Bool(b) => Node::Bool(b),
            Plain::Int(n) => Node::Number(n.into()),
            Plain::UInt(n) => Node::Number(n.into()),
            Plain::Float(f) => Node::Number(float_number(f).ok_or_else(|| {
                self.error(
                    Some(span),
                    format!("{text:?} is not a number JSON can hold"),
                )
            })?),
            Plain::Str => Node::String(text.to_owned()),
        })
    }
}

/// A float as Kubernetes' YAML-to-JSON writes it: integral values become integers (`1e3` is
/// `1000`), infinities and NaN have no JSON form.
fn float_number(f: f64) -> Option<Number> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact
    if f.fract() == 0.0 && f.abs() < LIMIT {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Number::from(f as i64));
    }
    Number::from_f64(f)
}

/// How many nodes a node holds, itself included.
fn size(node: &Node) -> usize {
    1 + match node {
        Node::Seq(items) => items.iter().map(size).sum(),
        Node::Map(entries) => entries.iter().map(|(_, v)| size(v)).sum(),
        _ => 0,
    }
}

/// A mark's 1-based line.
fn line_of(mark: Mark) -> usize {
    usize::try_from(mark.line).map_or(usize::MAX, |l| l.saturating_add(1))
}

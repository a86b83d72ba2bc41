//! Reading a stream into [`Node`]s: YAML through `saphyr-parser`'s events, with plain scalars
//! typed by YAML 1.1 rules ([`super::resolve`]), anchors, aliases and `<<` merge keys; or JSON
//! through `serde_json`'s stream reader.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span, StrInput, Tag};
use serde_json::Number;

use super::resolve::{resolve_plain, Plain};
use super::{Node, ParseError};

/// Reads every document of a YAML stream.
pub(super) fn parse_yaml(text: &str) -> Result<Vec<Node>, ParseError> {
    let mut reader = Reader {
        events: Parser::new_from_str(text),
        anchors: HashMap::new(),
        document: 0,
        depth: 0,
        expanded: 0,
    };
    let mut documents = Vec::new();
    loop {
        let (event, _) = reader.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Ok(documents),
            Event::DocumentStart(_) => {
                reader.document += 1;
                reader.anchors.clear();
                reader.expanded = 0;
                let (event, span) = reader.next()?;
                documents.push(reader.node(event, span)?);
            }
            other => return Err(reader.error(None, format!("unexpected {other:?}"))),
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
    events: Parser<'a, StrInput<'a>>,
    /// Anchored nodes and their sizes in nodes.
    anchors: HashMap<usize, (Node, usize)>,
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

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), ParseError> {
        match self.events.next() {
            Some(Ok(event)) => Ok(event),
            Some(Err(e)) => Err(ParseError {
                document: self.document.max(1),
                line: Some(e.marker().line()),
                message: format!("invalid YAML: {}", e.info()),
            }),
            None => Err(self.error(None, "unexpected end of input".into())),
        }
    }

    fn error(&self, span: Option<Span>, message: String) -> ParseError {
        ParseError {
            document: self.document.max(1),
            line: span.map(|s| s.start.line()),
            message,
        }
    }

    fn node(&mut self, event: Event<'a>, span: Span) -> Result<Node, ParseError> {
        if matches!(event, Event::SequenceStart(..) | Event::MappingStart(..)) {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                let message = format!("nested deeper than {MAX_DEPTH} levels");
                return Err(self.error(Some(span), message));
            }
        }
        let node = self.node_inner(event, span);
        self.depth = self.depth.saturating_sub(1);
        node
    }

    fn node_inner(&mut self, event: Event<'a>, span: Span) -> Result<Node, ParseError> {
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                (self.scalar(&text, style, tag.as_deref(), span)?, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span)?);
                }
                (Node::Seq(items), anchor)
            }
            Event::MappingStart(anchor, _) => (self.mapping()?, anchor),
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id) else {
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
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size(&node)));
        }
        Ok(node)
    }

    fn mapping(&mut self) -> Result<Node, ParseError> {
        let mut entries = Vec::new();
        let mut explicit = HashSet::new();
        loop {
            let (event, span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let merge =
                matches!(&event, Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<");
            let key = self.node(event, span)?;
            let (event, value_span) = self.next()?;
            let value = self.node(event, value_span)?;
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
    fn merged(&self, value: Node, span: Span) -> Result<Vec<(String, Node)>, ParseError> {
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
    fn key(&self, key: Node, span: Span) -> Result<String, ParseError> {
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
        tag: Option<&Tag>,
        span: Span,
    ) -> Result<Node, ParseError> {
        let core = tag
            .filter(|t| t.is_yaml_core_schema())
            .map(|t| t.suffix.as_str());
        let resolved = match core {
            Some("str" | "binary" | "timestamp") => Plain::Str,
            Some(_) => resolve_plain(text),
            None if style == ScalarStyle::Plain => resolve_plain(text),
            None => Plain::Str,
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
                    tag.map(ToString::to_string).unwrap_or_default()
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

#![doc = include_str!("../README.md")]

mod read;
mod resolve;
mod write;

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Number, Value};

pub use write::{write_json, write_yaml};

/// A parsed value that keeps mapping key order (unlike `serde_json::Value` without the
/// `preserve_order` feature, which this workspace does not turn on for everyone).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null`, `~`, or nothing.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer or a finite float.
    Number(Number),
    /// A string.
    String(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order. Keys are strings, as Kubernetes' YAML-to-JSON turns them.
    Map(Vec<(String, Node)>),
}

/// Which syntax the input used; the output uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (any stream that does not start with `{`).
    Yaml,
    /// One or more JSON objects.
    Json,
}

/// A stream of documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// The input's syntax.
    pub format: Format,
    /// The documents, in order; empty YAML documents are [`Node::Null`].
    pub documents: Vec<Node>,
}

/// Input that cannot be read, with the (1-based) document it is in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ParseError {
    /// 1-based index of the document in the stream.
    pub document: usize,
    /// 1-based line in the input, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Reads a YAML or JSON stream. Like kubectl, input whose first character is `{` is JSON (a
/// stream of objects); if it is not valid JSON but is valid YAML (a flow mapping), it is YAML.
pub fn parse(text: &str) -> Result<Stream, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        match read::parse_json(text) {
            Ok(documents) => {
                return Ok(Stream {
                    format: Format::Json,
                    documents,
                })
            }
            Err(json_error) => {
                return read::parse_yaml(text)
                    .map(|documents| Stream {
                        format: Format::Yaml,
                        documents,
                    })
                    .map_err(|_| json_error)
            }
        }
    }
    Ok(Stream {
        format: Format::Yaml,
        documents: read::parse_yaml(text)?,
    })
}

impl Node {
    /// What kind of node this is, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Seq(_) => "a sequence",
            Node::Map(_) => "a mapping",
        }
    }

    /// The same data as a JSON value (key order is then the JSON map's).
    pub fn to_json(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::String(s) => Value::String(s.clone()),
            Node::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Node::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// `value` as a node, ordering each mapping's keys as in `hint` (the same place in the
    /// original document) and putting keys the hint lacks after them. Only the order comes from
    /// the hint; every value comes from `value`. Sequence items are paired with the hint's by
    /// their `name` field when they have one, else by position.
    pub fn from_json_ordered(value: &Value, hint: Option<&Node>) -> Node {
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(n.clone()),
            Value::String(s) => Node::String(s.clone()),
            Value::Array(items) => {
                let hints = match hint {
                    Some(Node::Seq(h)) => h.as_slice(),
                    _ => &[],
                };
                let items = items.iter().enumerate().map(|(i, item)| {
                    let by_name = item.get("name").and_then(Value::as_str).and_then(|name| {
                        hints
                            .iter()
                            .find(|h| h.get("name") == Some(&Node::String(name.into())))
                    });
                    let hint = match item.get("name") {
                        Some(_) => by_name,
                        None => hints.get(i),
                    };
                    Node::from_json_ordered(item, hint)
                });
                Node::Seq(items.collect())
            }
            Value::Object(map) => {
                let mut entries = Vec::with_capacity(map.len());
                let mut hinted = HashSet::new();
                if let Some(Node::Map(hints)) = hint {
                    for (key, h) in hints {
                        if let Some(v) = map.get(key) {
                            entries.push((key.clone(), Node::from_json_ordered(v, Some(h))));
                            hinted.insert(key.as_str());
                        }
                    }
                }
                let mut added: Vec<(&String, &Value)> = map
                    .iter()
                    .filter(|(key, _)| !hinted.contains(key.as_str()))
                    .collect();
                // Keys the hint lacks: the identifying ones first, as people write them.
                let rank = |key: &str| {
                    ["name", "apiVersion", "kind", "metadata"]
                        .iter()
                        .position(|k| *k == key)
                        .unwrap_or(usize::MAX)
                };
                added.sort_by_key(|(key, _)| rank(key));
                for (key, v) in added {
                    let node = Node::from_json_ordered(v, None);
                    // A new `metadata` (a pod template's annotations) goes before `spec`.
                    let before_spec = (key == "metadata")
                        .then(|| entries.iter().position(|(k, _)| k == "spec"))
                        .flatten();
                    match before_spec {
                        Some(at) => entries.insert(at, (key.clone(), node)),
                        None => entries.push((key.clone(), node)),
                    }
                }
                Node::Map(entries)
            }
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::Number(n) => n.serialize(serializer),
            Node::String(s) => serializer.serialize_str(s),
            Node::Seq(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// JSON input: keeps key order and refuses duplicate keys (as YAML input does).
impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(Node::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Node, E> {
        Number::from_f64(f)
            .map(Node::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }
    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(Node::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Node, E> {
        Ok(Node::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        let mut seen = HashSet::new();
        while let Some((key, value)) = map.next_entry::<String, Node>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml_json(text: &str) -> Vec<Value> {
        let stream = parse(text).unwrap();
        assert_eq!(stream.format, Format::Yaml);
        stream.documents.iter().map(Node::to_json).collect()
    }

    /// Both shapes are in the Kubernetes documentation's own examples, and kubectl reads them.
    #[test]
    fn a_flow_sequence_closed_at_its_keys_column_is_read_as_kubectl_reads_it() {
        let docs = yaml_json(
            "spec:\n  containers:\n  - name: app\n    command: [\n      \"sh\", \"-c\"\n    ]\n    args: [\"x\"]\n",
        );
        assert_eq!(
            docs,
            [
                json!({"spec": {"containers": [{"name": "app", "command": ["sh", "-c"], "args": ["x"]}]}})
            ]
        );
    }

    #[test]
    fn an_escaped_single_quote_in_double_quotes_is_a_quote_as_in_go_yaml() {
        // Non-ASCII before it: the scanner counts characters, the rewrite works on bytes.
        let docs = yaml_json("é: \"ü\\'s\"\nb: ['a\\b', \"\\'\\'\"]\n");
        assert_eq!(docs, [json!({"é": "ü's", "b": ["a\\b", "''"]})]);
        // Any other unknown escape is still refused, with its line.
        let err = parse("a: 1\nb: \"\\q\"\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("unknown escape"), "{err}");
    }

    #[test]
    fn a_tag_go_yaml_does_not_know_makes_a_string() {
        let docs = yaml_json("a: !Ref 12\nb: ! true\nc: !!int \"7\"\n");
        assert_eq!(docs, [json!({"a": "12", "b": "true", "c": 7})]);
    }

    #[test]
    fn plain_scalars_are_read_as_yaml_1_1_and_quoted_ones_as_strings() {
        let docs = yaml_json(
            "defaultMode: 0400\non: yes\nquoted: 'on'\ndouble: \"0400\"\nt: 12:30\nd: 2024-01-01\n\
             nul: ~\ne:\nf: 1.5\ni: 1e3\nbig: 18446744073709551615\ns: !!str 0755\nyy: Y\n",
        );
        assert_eq!(
            docs,
            [json!({
                "defaultMode": 256, "true": true, "quoted": "on", "double": "0400", "t": "12:30",
                "d": "2024-01-01", "nul": null, "e": null, "f": 1.5, "i": 1000,
                "big": 18446744073709551615u64, "s": "0755", "yy": true,
            })]
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys_are_expanded() {
        let docs = yaml_json(
            "base: &b {a: 1, b: 2}\nmerged:\n  <<: *b\n  b: 3\nlist: [*b]\nquoted:\n  '<<': x\n",
        );
        assert_eq!(
            docs[0],
            json!({"base": {"a": 1, "b": 2}, "merged": {"a": 1, "b": 3}, "list": [{"a": 1, "b": 2}], "quoted": {"<<": "x"}})
        );
    }

    #[test]
    fn documents_keep_key_order_and_empty_documents_are_null() {
        let stream = parse("---\nz: 1\na: 2\n---\n# only a comment\n---\nb: 1\n").unwrap();
        assert_eq!(stream.documents.len(), 3);
        let Node::Map(first) = &stream.documents[0] else {
            panic!("not a map")
        };
        assert_eq!(first[0].0, "z");
        assert_eq!(stream.documents[1], Node::Null);
    }

    #[test]
    fn errors_name_the_document_and_line() {
        let err = parse("a: 1\n---\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(err.document, 2, "{err}");
        assert!(err.to_string().starts_with("document 2 (line "), "{err}");
        let err = parse("a: 1\n---\nb: 1\nb: 2\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 2 (line 4): duplicate mapping key \"b\""
        );
        let err = parse("x: .inf\n").unwrap_err();
        assert!(
            err.to_string().contains("not a number JSON can hold"),
            "{err}"
        );
        let err = parse("? [a]\n: 1\n").unwrap_err();
        assert!(err.to_string().contains("must be a scalar"), "{err}");
        let err = parse("a: !!int abc\n").unwrap_err();
        assert!(err.to_string().contains("does not match its tag"), "{err}");
    }

    #[test]
    fn deep_nesting_and_alias_bombs_are_refused_not_crashed_on() {
        let deep_block: String = (0..5_000)
            .map(|i| format!("{}- \n", "  ".repeat(i)))
            .collect();
        let err = parse(&deep_block).unwrap_err();
        assert!(
            err.to_string().contains("nested deeper than 200 levels"),
            "{err}"
        );
        let nested_150: String = (0..150)
            .map(|i| format!("{}- \n", "  ".repeat(i)))
            .collect();
        assert!(
            parse(&nested_150).is_ok(),
            "a negative control: 150 levels are fine"
        );
        let deep_flow = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&deep_flow).is_err());
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in b'b'..=b'i' {
            let prev = char::from(level - 1);
            let refs = vec![format!("*{prev}"); 10].join(", ");
            bomb.push_str(&format!(
                "{}: &{} [{refs}]\n",
                char::from(level),
                char::from(level)
            ));
        }
        let err = parse(&bomb).unwrap_err();
        assert!(
            err.to_string().contains("aliases expand to more than"),
            "{err}"
        );
        // A negative control: a few aliases are fine.
        assert!(parse("a: &a [x]\nb: [*a, *a]\n").is_ok());
        let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&format!("{{\"a\": {deep_json}}}")).is_err());
    }

    #[test]
    fn json_streams_keep_order_and_refuse_duplicates() {
        let stream =
            parse("{\"kind\": \"Pod\", \"apiVersion\": \"v1\"}\n{\"a\": [1, 2.5, \"on\"]}")
                .unwrap();
        assert_eq!(stream.format, Format::Json);
        assert_eq!(stream.documents.len(), 2);
        let Node::Map(first) = &stream.documents[0] else {
            panic!("not a map")
        };
        assert_eq!(first[0].0, "kind");
        assert_eq!(stream.documents[1].to_json(), json!({"a": [1, 2.5, "on"]}));
        let err = parse("{\"a\": 1}\n{\"a\": 1, \"a\": 2}").unwrap_err();
        assert_eq!(err.document, 2);
        // Not JSON but a YAML flow mapping: read as YAML, as a person would expect.
        let stream = parse("{kind: Pod, x: on}").unwrap();
        assert_eq!(stream.format, Format::Yaml);
        assert_eq!(
            stream.documents[0].to_json(),
            json!({"kind": "Pod", "x": true})
        );
    }

    #[test]
    fn written_strings_read_back_as_the_same_strings() {
        let strings = [
            "on",
            "yes",
            "NO",
            "off",
            "y",
            "12:30",
            "2024-01-01",
            "0755",
            "",
            "~",
            "null",
            "42",
            "1.5",
            "1e3",
            "0x1F",
            ".inf",
            "<<",
            "=",
            "a: b",
            "#x",
            "- x",
            "it's",
            "tab\tx",
            "multi\nline\n",
            "multi\nline",
            "\u{85}nel",
            " lead",
            "trail ",
            "\"dq\"",
            "back\\slash",
            "ünïcödé",
            "emoji 🚀",
            "{a}",
            "[b]",
            "*alias",
            "&anchor",
            "!tag",
            "%dir",
            "@at",
            "`bt",
            "|pipe",
            ">fold",
            "---",
            "...",
            "?",
            ":",
            "-",
            "a\u{0}b",
            "a\r\nb",
        ];
        let entries = strings
            .iter()
            .map(|s| (s.to_string(), Node::String(s.to_string())))
            .collect::<Vec<_>>();
        let doc = Node::Map(vec![
            ("map".into(), Node::Map(entries)),
            (
                "seq".into(),
                Node::Seq(
                    strings
                        .iter()
                        .map(|s| Node::String(s.to_string()))
                        .collect(),
                ),
            ),
        ]);
        let mut text = String::new();
        write_yaml(std::slice::from_ref(&doc), &mut text);
        let back = parse(&text).unwrap();
        assert_eq!(back.documents, [doc], "{text}");
    }

    mod round_trip {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            const WORDS: [&str; 23] = [
                "on",
                "yes",
                "NO",
                "off",
                "y",
                "12:30",
                "2024-01-01",
                "0755",
                "",
                "~",
                "null",
                "1e3",
                ".5",
                "<<",
                "-",
                "---",
                "? x",
                "a: b",
                "#",
                "|",
                ">",
                "0x1F",
                "+1",
            ];
            prop_oneof![
                "[a-zA-Z0-9 :#'\"\\.,{}*&!|>%@`?~_+=<\\[\\]\t\n\r\u{85}\u{2028}\u{feff}\u{0}é🚀-]{0,12}",
                prop::sample::select(&WORDS[..]).prop_map(String::from),
            ]
        }

        fn node() -> impl Strategy<Value = Node> {
            let leaf = prop_oneof![
                Just(Node::Null),
                any::<bool>().prop_map(Node::Bool),
                any::<i64>().prop_map(|n| Node::Number(n.into())),
                any::<u64>().prop_map(|n| Node::Number(n.into())),
                any::<f64>()
                    .prop_filter("a float that stays a float", |f| {
                        f.is_finite() && f.fract() != 0.0
                    })
                    .prop_map(|f| Node::Number(Number::from_f64(f).unwrap())),
                text().prop_map(Node::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Node::Seq),
                    prop::collection::btree_map(text(), inner, 0..5)
                        .prop_map(|m| Node::Map(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            /// Whatever we write, we read back the same (and kubectl's reader agrees with ours:
            /// see `webhook/tests/yaml-readers/`).
            #[test]
            fn written_yaml_reads_back_the_same(docs in prop::collection::vec(node(), 1..4)) {
                let mut text = String::new();
                write_yaml(&docs, &mut text);
                let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                prop_assert_eq!(back.documents, docs, "{}", text);
            }

            /// JSON output reads back the same too.
            #[test]
            fn written_json_reads_back_the_same(entries in prop::collection::btree_map(text(), node(), 0..5)) {
                let docs = vec![Node::Map(entries.into_iter().collect())];
                let mut text = String::new();
                write_json(&docs, &mut text);
                prop_assert_eq!(parse(&text).unwrap().documents, docs);
            }
        }
    }
}

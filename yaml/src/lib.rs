#![doc = include_str!("../README.md")]

mod guard;
mod read;
mod resolve;
mod scanner_gap;
mod split;
mod tree;
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
/// A byte-order mark makes it YAML, as in kubectl (and hides a `---` on the first line from
/// kubectl's document split).
pub fn parse(text: &str) -> Result<Stream, ParseError> {
    guard::catching(|| parse_stream(text)).unwrap_or_else(|panic| {
        Err(ParseError {
            document: 1,
            line: None,
            message: format!("the YAML parser failed on this text ({panic}); please report it"),
        })
    })
}

/// kubectl's `YAMLOrJSONDecoder`: a stream that starts with `{` is read as JSON; where that
/// fails after at most one value, it is read on as YAML from after that value (and the white
/// space up to the next line break), and if that fails too, the JSON error is the answer; after
/// two values or more, the JSON error is.
fn parse_stream(text: &str) -> Result<Stream, ParseError> {
    if !text.trim_start().starts_with('{') {
        return Ok(Stream {
            format: Format::Yaml,
            documents: read::parse_yaml(text)?,
        });
    }
    let json = read::parse_json(text);
    let Some((json_error, offset)) = json.failure else {
        return Ok(Stream {
            format: Format::Json,
            documents: json.documents,
        });
    };
    if json.documents.len() > 1 {
        return Err(json_error);
    }
    let mut start = if json.documents.is_empty() { 0 } else { offset };
    for c in text[start..].chars() {
        if !c.is_whitespace() {
            break;
        }
        start += c.len_utf8();
        if c == '\n' {
            break;
        }
    }
    let mut documents = json.documents;
    documents.extend(read::parse_yaml(&text[start..]).map_err(|_| json_error)?);
    Ok(Stream {
        format: Format::Yaml,
        documents,
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

/// JSON input: keeps key order; a duplicate key keeps its place and takes the last value, as
/// kubectl (Go's encoding/json) reads it, and as YAML input does.
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
        let mut out = tree::Assignments::default();
        while let Some((key, value)) = map.next_entry::<String, Node>()? {
            out.assign(key, value);
        }
        Ok(Node::Map(out.entries))
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

    /// go-yaml v2 assigns in document order (kubectl's reading, checked against it by
    /// tests/differential.rs): the last assignment of a key wins, a merge after a key written
    /// out too, and among merged mappings the first.
    #[test]
    fn duplicates_and_merges_assign_in_document_order_as_go_yaml_does() {
        let docs = yaml_json(concat!(
            "dup: {a: 1, b: 2, a: 3}\n",
            "after: {a: 1, <<: {a: 2, c: 3}}\n",
            "before: {<<: {a: 2, c: 3}, a: 1}\n",
            "list: {<<: [{a: 1}, {a: 2, b: 2}]}\n",
            "typed: {on: 1, yes: 2, 0x10: x, 1e3: \"y\", 1.5e6: z, 0.5: w, 12:30: v}\n",
        ));
        assert_eq!(
            docs[0],
            json!({
                "dup": {"a": 3, "b": 2},
                "after": {"a": 2, "c": 3},
                "before": {"a": 1, "c": 3},
                "list": {"a": 1, "b": 2},
                "typed": {"true": 2, "16": "x", "1000": "y", "1.5e+06": "z", "0.5": "w", "12:30": "v"},
            })
        );
        for refused in ["? 9223372036854775808\n: x\n", "null: x\n", "? [a]\n: 1\n"] {
            assert!(parse(refused).is_err(), "{refused:?}");
        }
    }

    /// Found by tests/differential.rs: libyaml-safer panicked (and the release build, which
    /// aborts on a panic, would have crashed) on a block scalar ending the stream without a line
    /// break; kubectl reads its last line as if it had one.
    #[test]
    fn a_block_scalar_without_a_final_line_break_reads_as_kubectl_reads_it() {
        for (text, value) in [
            ("args: |\n  '", "'\n"),
            ("args: |+\n  x", "x\n"),
            ("args: |-\n  x", "x"),
            ("args: >\n  x\n  y", "x y\n"),
            ("args: |\r\n  x\r\n  y", "x\ny\n"),
        ] {
            assert_eq!(yaml_json(text)[0], json!({"args": value}), "{text:?}");
        }
    }

    /// Found by tests/differential.rs: kubectl's document split does not see a `---` behind a
    /// byte-order mark, and a BOM before `{` makes the stream YAML.
    #[test]
    fn a_byte_order_mark_is_read_as_kubectl_reads_it() {
        assert_eq!(yaml_json("\u{feff}a: 1\n"), [json!({"a": 1})]);
        assert_eq!(yaml_json("\u{feff}{\"a\": 1}"), [json!({"a": 1})]);
        // Not a separator line for kubectl: go-yaml reads the first document, `{a: 1}`.
        assert_eq!(yaml_json("\u{feff}--- {a: 1}\nb: 2\n"), [json!({"a": 1})]);
        assert!(parse("--- {a: 1}\nb: 2\n").is_err());
        // Found by fuzzing: a first character from U+F000 to U+FFFF (UTF-8 0xEF ..) is no
        // broken mark.
        assert_eq!(yaml_json("\u{f6ff}: x\n"), [json!({"\u{f6ff}": "x"})]);
        assert_eq!(yaml_json("{\u{f6ff},}"), [json!({"\u{f6ff}": null})]);
        // The rewrites' byte offsets do not count it.
        assert_eq!(
            yaml_json("\u{feff}a: \"\\'\"\nb: [x:]\n"),
            [json!({"a": "'", "b": ["x:"]})]
        );
    }

    /// Found by tests/differential.rs: libyaml 0.2.5 and go-yaml v2 (libyaml 0.1) scan a few
    /// texts differently; kubectl's reading wins.
    #[test]
    fn texts_libyaml_and_go_yaml_scan_differently_are_read_as_kubectl_reads_them() {
        assert_eq!(
            yaml_json("a: [x:, y:]\nb: {k: v:}\nc: \"it\\'s\"\nd: !a,b x\n"),
            [json!({"a": ["x:", "y:"], "b": {"k": "v:"}, "c": "it's", "d": "x"})]
        );
        // libyaml-safer panicked on a tag followed by `,` in a flow collection; go-yaml reads
        // the `,` into the tag.
        assert_eq!(yaml_json("m: [a, !x, b]\n"), [json!({"m": ["a", "b"]})]);
        // go-yaml reads a `:` starting a plain scalar in a flow collection as the value
        // indicator.
        assert_eq!(
            yaml_json("e: {\"1.5\": [&a0 :x, \"y\"], \"1.5\": \"-\"}\n"),
            [json!({"e": {"1.5": "-"}})]
        );
        // go-yaml names an anchor when its collection starts: an alias inside it is to itself.
        assert!(parse("a: &x 1\nb: &x\n  c: *x\n").is_err());
        assert_eq!(
            yaml_json("a: &x 1\nb: &x [2]\nc: *x\n"),
            [json!({"a": 1, "b": [2], "c": [2]})]
        );
        // An anchored key is an anchor like any other.
        assert_eq!(
            yaml_json("m: {&k a: 1, b: *k}\np: {&e : x}\np: 1\no: *e\n"),
            [json!({"m": {"a": 1, "b": "a"}, "p": 1, "o": null})]
        );
        for refused in ["e: [&a0 :x]\n", "e: [a, :x]\n", "d: {k: :v}\n"] {
            assert!(parse(refused).is_err(), "{refused:?}");
        }
        // A core tag go-yaml does not resolve keeps the text, an empty one too.
        assert_eq!(
            yaml_json("a: !!x\nb: !!x 1\nc: !!int 1\n"),
            [json!({"a": "", "b": "1", "c": 1})]
        );
        assert_eq!(
            yaml_json("l: {\n yes: {!,\n }\n}\n"),
            [json!({"l": {"true": {"": null}}})]
        );
        for refused in [
            "a: \"\\/\"\n",
            "a: [http://x?y]\n",
            "a: {k: a?b}\n",
            "m: [a, !x,]\n",
        ] {
            assert!(parse(refused).is_err(), "{refused:?}");
        }
        // Outside flow collections a ? is an ordinary character.
        assert_eq!(yaml_json("a: http://x?y\n"), [json!({"a": "http://x?y"})]);
    }

    #[test]
    fn a_panic_in_the_parser_is_an_error() {
        let caught = guard::catching(|| -> u8 { panic!("TODO: What is expected here?") });
        assert_eq!(caught, Err("TODO: What is expected here?".into()));
        assert_eq!(guard::catching(|| 7), Ok(7));
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
        let err = parse("a: 1\n---\n~: 1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 2 (line 3): a mapping key cannot be null (kubectl refuses it)"
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
    fn json_streams_keep_order_and_take_the_last_of_duplicates() {
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
        // A duplicate key keeps its place and takes the last value, as Go's encoding/json does.
        let stream = parse("{\"a\": 1, \"b\": 2, \"a\": 3}").unwrap();
        assert_eq!(stream.documents[0].to_json(), json!({"a": 3, "b": 2}));
        let Node::Map(pairs) = &stream.documents[0] else {
            panic!("not a map")
        };
        assert_eq!(pairs[0].0, "a");
        // kubectl reads on as YAML after one JSON value, never after two.
        assert_eq!(
            parse("{\"a\": 1}\nb: 2\n").unwrap().documents[1].to_json(),
            json!({"b": 2})
        );
        assert!(parse("{\n }y: {\n },\n}\n").is_err());
        assert!(parse("{\n} true: \"--\",\n}\n").is_err());
        assert!(parse("{}\n{}\nb: 2\n").is_err());
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

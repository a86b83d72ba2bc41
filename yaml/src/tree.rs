//! What go-yaml builds before sigs.k8s.io/yaml turns it into JSON: a tree whose mapping keys are
//! still Go values and whose leaves may have no JSON form. kubectl refuses a null key, a key
//! beyond int64 or a NaN or infinite value only when converting, so only when it is still in
//! the document after every later assignment (a duplicate key or a merge may have replaced the
//! mapping holding it): [`Tree::into_node`] checks at that point, as kubectl does.

use std::collections::HashMap;

use super::Node;

/// A mapping key as go-yaml holds it, as far as it matters: one that becomes a JSON key, or
/// one kubectl cannot convert (with the 1-based line it was written on, which is not part of
/// its identity: every null key is the same Go map key).
#[derive(Debug, Clone)]
pub(crate) enum Key {
    /// The JSON key it becomes (`on:` is `"true"`, `0x10:` `"16"`).
    Json(String),
    /// `~:`, `null:` or an empty key.
    Null { line: usize },
    /// An integer above `i64::MAX`, which go-yaml holds as a uint64.
    Unsigned { value: u64, line: usize },
}

impl Key {
    /// What identifies it in a Go map.
    fn identity(&self) -> (u8, &str, u64) {
        match self {
            Key::Json(s) => (0, s, 0),
            Key::Null { .. } => (1, "", 0),
            Key::Unsigned { value, .. } => (2, "", *value),
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

/// A document being read.
#[derive(Debug, Clone)]
pub(crate) enum Tree {
    /// A scalar (or the null of an empty document): collections are always `Seq` or `Map`.
    Node(Node),
    Seq(Vec<Tree>),
    Map(Vec<(Key, Tree)>),
    /// A value JSON cannot carry (`.nan`, `.inf`), with its 1-based line.
    NotJson {
        text: String,
        line: usize,
    },
}

/// Why a document has no JSON form: the message and the 1-based line, if known.
pub(crate) type Unconvertible = (String, Option<usize>);

impl Tree {
    /// How many nodes it holds, itself included (aliases are bounded by it).
    pub(crate) fn size(&self) -> usize {
        1 + match self {
            Tree::Seq(items) => items.iter().map(Tree::size).sum(),
            Tree::Map(entries) => entries.iter().map(|(_, v)| v.size()).sum(),
            Tree::Node(_) | Tree::NotJson { .. } => 0,
        }
    }

    /// The document as JSON would hold it, or the first part kubectl could not convert.
    pub(crate) fn into_node(self) -> Result<Node, Unconvertible> {
        match self {
            Tree::Node(node) => Ok(node),
            Tree::Seq(items) => items
                .into_iter()
                .map(Tree::into_node)
                .collect::<Result<_, _>>()
                .map(Node::Seq),
            Tree::Map(entries) => {
                let mut pairs = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    let key = match key {
                        Key::Json(key) => key,
                        Key::Null { line } => {
                            return Err((
                                "a mapping key cannot be null (kubectl refuses it)".into(),
                                Some(line),
                            ))
                        }
                        Key::Unsigned { value, line } => {
                            return Err((
                                format!(
                                    "the mapping key {value} is beyond int64 (kubectl refuses it)"
                                ),
                                Some(line),
                            ))
                        }
                    };
                    pairs.push((key, value.into_node()?));
                }
                Ok(Node::Map(pairs))
            }
            Tree::NotJson { text, line } => Err((
                format!("{text:?} is not a number JSON can hold"),
                Some(line),
            )),
        }
    }
}

/// A mapping's pairs as a Go map receives them: assigning a key already there keeps its place
/// and replaces its value, so the last assignment wins.
#[derive(Debug)]
pub(crate) struct Assignments<K, V> {
    pub(crate) entries: Vec<(K, V)>,
    places: HashMap<K, usize>,
}

impl<K, V> Default for Assignments<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            places: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + std::hash::Hash, V> Assignments<K, V> {
    pub(crate) fn assign(&mut self, key: K, value: V) {
        match self.places.get(&key) {
            Some(&at) => self.entries[at].1 = value,
            None => {
                self.places.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }
}

/// A float mapping key as sigs.k8s.io/yaml writes it: Go's `strconv.FormatFloat(f, 'g', -1,
/// 32)` (the shortest digits of the float32, an exponent from 1e6 or below 1e-4), and go-yaml's
/// names for the infinities and NaN.
pub(crate) fn go_float32_key(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    #[allow(clippy::cast_possible_truncation)]
    let single = f as f32;
    if single.is_infinite() {
        return if single > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    // `{:e}` is the shortest round-trip form: `1.5e6`, `-2e-5`.
    let scientific = format!("{single:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("`{:e}` has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    if (-4..6).contains(&exponent) || single == 0.0 {
        format!("{single}")
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats_float_keys_as_float32() {
        for (f, key) in [
            (1.5e6, "1.5e+06"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123_456.0, "123456"),
            (1_234_567.0, "1.234567e+06"),
            (std::f64::consts::PI, "3.1415927"),
            (-0.0, "-0"),
            (f64::INFINITY, ".inf"),
            (f64::NAN, ".nan"),
            (1e300, ".inf"),
        ] {
            assert_eq!(go_float32_key(f), key, "{f}");
        }
    }

    #[test]
    fn a_later_assignment_replaces_a_value_in_its_first_place() {
        let mut map = Assignments::default();
        map.assign("a", Tree::Node(Node::Bool(true)));
        map.assign("b", Tree::Node(Node::Null));
        map.assign(
            "a",
            Tree::NotJson {
                text: ".nan".into(),
                line: 1,
            },
        );
        assert_eq!(map.entries.len(), 2);
        assert_eq!(map.entries[0].0, "a");
        assert!(matches!(map.entries[0].1, Tree::NotJson { .. }));
    }
}

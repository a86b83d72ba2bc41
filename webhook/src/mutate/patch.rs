//! Builds an RFC 6902 patch of targeted `add` operations against the document *as the patch has
//! changed it so far*: a missing array or map is created once, later indexes see earlier inserts,
//! and JSON-pointer tokens are escaped by construction.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use serde_json::Value;

/// A patch under construction together with the document it produces.
#[derive(Debug, Clone)]
pub struct PatchBuilder {
    doc: Value,
    ops: Vec<PatchOperation>,
    failure: Option<String>,
}

/// A path as tokens (unescaped); `pointer` escapes them.
pub type Path<'a> = &'a [&'a str];

fn pointer(path: Path<'_>) -> PointerBuf {
    PointerBuf::from_tokens(path.iter().copied())
}

/// Looks up `path` in `doc` (tokens unescaped; array indexes as decimal strings).
pub fn get<'v>(doc: &'v Value, path: Path<'_>) -> Option<&'v Value> {
    path.iter().try_fold(doc, |node, token| match node {
        Value::Object(map) => map.get(*token),
        Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

impl PatchBuilder {
    /// Starts from a copy of the request's document.
    pub fn new(doc: &Value) -> Self {
        Self::from_owned(doc.clone())
    }

    /// Starts from the request's document itself (no copy: the admission path owns it).
    pub fn from_owned(doc: Value) -> Self {
        Self {
            doc,
            ops: Vec::new(),
            failure: None,
        }
    }

    /// The document with every operation so far applied.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// The operations, or why one of them did not apply.
    pub fn into_patch(self) -> Result<Patch, String> {
        match self.failure {
            None => Ok(Patch(self.ops)),
            Some(why) => Err(why),
        }
    }

    /// Every operation is applied to the document as it is recorded, so the patch is known to
    /// apply to the request before anyone answers with it. One that does not (a bug) makes the
    /// whole patch unusable: the caller fails open.
    fn apply(&mut self, op: PatchOperation) {
        if self.failure.is_some() {
            return;
        }
        // No undo log: after a failure the document is never used again.
        match json_patch::patch_unsafe(&mut self.doc, std::slice::from_ref(&op)) {
            Ok(()) => self.ops.push(op),
            Err(err) => self.failure = Some(err.to_string()),
        }
    }

    /// `add` at `path`.
    pub fn add(&mut self, path: Path<'_>, value: Value) {
        self.apply(PatchOperation::Add(AddOperation {
            path: pointer(path),
            value,
        }));
    }

    /// `replace` at `path` (only for the explicit opt-ins `wrap` and `chain`).
    pub fn replace(&mut self, path: Path<'_>, value: Value) {
        self.apply(PatchOperation::Replace(ReplaceOperation {
            path: pointer(path),
            value,
        }));
    }

    /// Creates an empty object at `path` unless something is there.
    pub fn ensure_object(&mut self, path: Path<'_>) {
        if get(&self.doc, path).is_none_or(Value::is_null) {
            self.add(path, Value::Object(Default::default()));
        }
    }

    /// Creates an empty array at `path` unless something is there.
    pub fn ensure_array(&mut self, path: Path<'_>) {
        if get(&self.doc, path).is_none_or(Value::is_null) {
            self.add(path, Value::Array(Vec::new()));
        }
    }

    /// Appends `value` to the array at `path`, creating the array if needed.
    pub fn push(&mut self, path: Path<'_>, value: Value) {
        self.ensure_array(path);
        let mut end: Vec<&str> = path.to_vec();
        end.push("-");
        self.add(&end, value);
    }

    /// Inserts `value` at the front of the array at `path`, creating the array if needed.
    pub fn insert_first(&mut self, path: Path<'_>, value: Value) {
        self.ensure_array(path);
        let mut first: Vec<&str> = path.to_vec();
        first.push("0");
        self.add(&first, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_operation_that_does_not_apply_spoils_the_whole_patch() {
        let mut b = PatchBuilder::new(&json!({"spec": {}}));
        b.add(&["spec", "a"], json!(1));
        b.add(&["missing", "parent"], json!(2));
        b.add(&["spec", "b"], json!(3));
        assert!(b.into_patch().is_err());
    }

    #[test]
    fn missing_parents_are_created_once_and_tokens_are_escaped() {
        let doc = json!({"metadata": {}});
        let mut b = PatchBuilder::new(&doc);
        b.ensure_object(&["metadata", "annotations"]);
        b.ensure_object(&["metadata", "annotations"]);
        b.add(
            &["metadata", "annotations", "k8s-deputy.io/status"],
            json!("x"),
        );
        b.push(&["spec_list"], json!(1));
        b.push(&["spec_list"], json!(2));
        let out = b.doc().clone();
        let patch = serde_json::to_value(b.into_patch().unwrap()).unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "add", "path": "/metadata/annotations", "value": {}},
                {"op": "add", "path": "/metadata/annotations/k8s-deputy.io~1status", "value": "x"},
                {"op": "add", "path": "/spec_list", "value": []},
                {"op": "add", "path": "/spec_list/-", "value": 1},
                {"op": "add", "path": "/spec_list/-", "value": 2},
            ])
        );
        assert_eq!(out["metadata"]["annotations"]["k8s-deputy.io/status"], "x");
    }
}

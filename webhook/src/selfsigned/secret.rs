//! The Secret's side of `--tls-secret`: reading what it holds ([`observe`]), watching it, and
//! writing a new content with a `replace` that carries the `resourceVersion` read, so that of two
//! replicas taking the same step only the first gets through.

use std::collections::BTreeMap;

use futures::Stream;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};

use super::controller::LookError;
use super::pki;
use super::plan::{Contents, Observed};

/// Annotation a user sets (any new value) on the Secret to ask for a new CA, through the same
/// overlapping steps as a scheduled renewal.
pub const ROTATE_ANNOTATION: &str = "k8s-deputy.io/rotate";
/// The last `k8s-deputy.io/rotate` value acted on.
pub const ROTATED_ANNOTATION: &str = "k8s-deputy.io/rotated";

/// The one Secret, through the API server.
pub(super) struct SecretStore {
    api: Api<Secret>,
    name: String,
}

/// How a write ended, when the API server answered.
pub(super) enum Replaced {
    /// The Secret as written.
    Written(Box<Secret>),
    /// Another replica wrote it first (`409 Conflict`): its Secret comes through the watch.
    Conflict,
}

impl SecretStore {
    /// The Secret `name` in `namespace`.
    pub(super) fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
        }
    }

    /// Every change of the Secret (None: it does not exist), retried with backoff.
    pub(super) fn watch(
        &self,
    ) -> impl Stream<Item = Result<Option<Secret>, watcher::Error>> + Send + 'static {
        watcher::watch_object(self.api.clone(), &self.name).default_backoff()
    }

    /// The Secret as the API server has it now; None if it does not exist.
    pub(super) async fn get_opt(&self) -> Result<Option<Secret>, LookError> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(LookError::ReadSecret)
    }

    /// The Secret as the API server has it now, again (a watch may lag).
    pub(super) async fn reread(&self) -> Result<Secret, LookError> {
        self.api
            .get(&self.name)
            .await
            .map_err(LookError::ReReadSecret)
    }

    /// Replaces the Secret with `new`, if it is still the version `new` was made from.
    pub(super) async fn replace(&self, new: &Secret) -> Result<Replaced, LookError> {
        match self
            .api
            .replace(&self.name, &PostParams::default(), new)
            .await
        {
            Ok(written) => Ok(Replaced::Written(Box::new(written))),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Replaced::Conflict),
            Err(err) => Err(LookError::WriteSecret(err)),
        }
    }
}

/// The Secret's `tls.crt` and `tls.key` as they are (empty when missing).
pub(super) fn serving_pair(secret: &Secret) -> (Vec<u8>, Vec<u8>) {
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.0.clone())
            .unwrap_or_default()
    };
    (field("tls.crt"), field("tls.key"))
}

/// Reads what the Secret holds; missing or unreadable parts are empty.
pub(super) fn observe(secret: &Secret) -> Observed {
    let text = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .unwrap_or_default()
    };
    let annotation = |key: &str| {
        secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    let (cert, key) = (text("tls.crt"), text("tls.key"));
    let requested = annotation(ROTATE_ANNOTATION);
    Observed {
        cas: pki::parse_bundle(&text("ca.crt")),
        ca_key: text("ca.key"),
        leaf: (!cert.is_empty() && !key.is_empty()).then_some(pki::PemPair { cert, key }),
        rotation_requested: requested.is_some() && requested != annotation(ROTATED_ANNOTATION),
    }
}

/// `secret` with the new content (its `resourceVersion` kept, for the `replace`), and the
/// rotation request marked handled if the write answers it.
pub(super) fn with_contents(
    secret: &Secret,
    contents: Contents,
    handles_rotation_request: bool,
) -> Secret {
    let mut new = secret.clone();
    let data = new.data.get_or_insert_with(BTreeMap::new);
    for (key, value) in [
        ("ca.crt", contents.ca_bundle),
        ("ca.key", contents.ca_key),
        ("tls.crt", contents.leaf.cert),
        ("tls.key", contents.leaf.key),
    ] {
        data.insert(key.to_owned(), ByteString(value.into_bytes()));
    }
    let annotations = new.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if handles_rotation_request {
        if let Some(token) = annotations.get(ROTATE_ANNOTATION).cloned() {
            annotations.insert(ROTATED_ANNOTATION.to_owned(), token);
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_request_is_pending_until_marked_handled() {
        let secret = |annotations: serde_json::Value| -> Secret {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "tls", "annotations": annotations},
                "data": {"tls.crt": "", "ca.key": "a2V5"}
            }))
            .unwrap()
        };
        assert!(!observe(&secret(serde_json::json!({}))).rotation_requested);
        let requested = observe(&secret(serde_json::json!({ROTATE_ANNOTATION: "1"})));
        assert!(requested.rotation_requested);
        assert_eq!(requested.ca_key, "key");
        assert!(requested.leaf.is_none(), "an empty tls.crt is no pair");
        let handled = serde_json::json!({ROTATE_ANNOTATION: "1", ROTATED_ANNOTATION: "1"});
        assert!(!observe(&secret(handled)).rotation_requested);
        let again = serde_json::json!({ROTATE_ANNOTATION: "2", ROTATED_ANNOTATION: "1"});
        assert!(observe(&secret(again)).rotation_requested);
    }
}

//! k8s-deputy in operation on a real node (issue 5, scenarios 5–9), one test binary with a module
//! per topic: skips explained to the client (`warnings`), a second mutating webhook with
//! reinvocation (`reinvocation`), the webhook down, failing open (`outage`), its CA rotated under
//! load (`rotation`), its TLS Secret re-applied, refilled, and the readiness net (`tls_secret`), a
//! Deployment's rolling update (`rollout`); a creation burst of 300+ Pods while the webhook is
//! rolled, a replica SIGKILLed or the API server restarted (`burst`); and a latency benchmark
//! (`bench`).
//!
//! Needs the stack `scripts/e2e-deploy.sh` deploys (`make e2e-test` runs it first). Each test
//! works in namespaces of its own. The tests that take the webhook down, rotate its certificate,
//! break its trust or measure it hold [`WEBHOOK`] for writing; the others hold it for reading, so
//! none of them sees another's outage. Figures are recorded with `deputy_e2e::figures`, which
//! `harness.sh test` summarises at the end.

mod bench;
mod burst;
mod outage;
mod reinvocation;
mod rollout;
mod rotation;
mod tls_secret;
mod warnings;

use tokio::sync::RwLock;

/// Held for reading by tests that need the webhook serving as deployed, for writing by those
/// that take it down, rotate its certificate or measure it.
///
/// A lock of this process only: every test that takes it must stay in this binary (cargo runs
/// the test binaries one after the other, the tests of one binary at the same time).
static WEBHOOK: RwLock<()> = RwLock::const_new(());

//! Termination under faults on the real node (issue 13, part 1), one test binary with a module per
//! kind of fault: an app that crashes inside its callback or ignores `terminate` (`callback`), a
//! container restarted by its liveness probe or by the OOM killer, with a process deliberately
//! given the old instance's PID (`restart`), the kubelet restarted while a relay runs (`kubelet`),
//! and many Pods at once: evicted under a PodDisruptionBudget, deleted together (`scale`); and
//! the isolation of the IPC volume between containers, its size and its memory (`isolation`).
//!
//! Needs the stack `scripts/e2e-deploy.sh` deploys (`make e2e-test` runs it first). Each test
//! works in namespaces of its own. Tests that restart a daemon, cordon the node or fill it hold
//! [`NODE`] for writing; the others hold it for reading. Figures are recorded with
//! `deputy_e2e::figures` (topic `faults`), which `harness.sh test` summarises at the end.

mod callback;
mod isolation;
mod kubelet;
mod restart;
mod scale;

use tokio::sync::RwLock;

/// Held for reading by tests that need the node as it is, for writing by those that restart its
/// kubelet, cordon it, or run tens of Pods (the kubelet runs at most 110).
///
/// A lock of this process only: every test that takes it must stay in this binary (cargo runs
/// the test binaries one after the other, the tests of one binary at the same time).
static NODE: RwLock<()> = RwLock::const_new(());

//! Whether this replica should get the API server's calls: one value, created by the server and
//! fed by every reason it should not (no certificate yet, draining after a signal, a `caBundle`
//! that does not trust the certificate served). `/readyz` reads only it.

use std::sync::atomic::{AtomicU8, Ordering};

/// A reason not to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// SIGTERM or SIGINT came: in-flight requests finish, new ones go to other replicas.
    Draining,
    /// No valid serving pair was loaded yet: every handshake would fail.
    NoCertificate,
    /// `--tls-secret`: the webhook configuration's `caBundle` does not trust the pair served, so
    /// every call the API server sent here would fail.
    Untrusted,
}

impl NotReady {
    /// Every reason, in the order `/readyz` reports the first that holds.
    pub const ALL: [NotReady; 3] = [Self::Draining, Self::NoCertificate, Self::Untrusted];

    /// What `/readyz` answers (without the line end).
    pub fn explanation(self) -> &'static str {
        match self {
            Self::Draining => "stopping",
            Self::NoCertificate => "no serving certificate loaded yet",
            Self::Untrusted => {
                "the webhook configuration's caBundle does not trust the serving certificate"
            }
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Draining => 1,
            Self::NoCertificate => 2,
            Self::Untrusted => 4,
        }
    }
}

/// The set of reasons that hold now; ready when it is empty. Cheap to read and update from any
/// thread.
#[derive(Debug)]
pub struct Readiness {
    reasons: AtomicU8,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// Not ready until a serving pair is loaded.
    pub fn new() -> Self {
        Self {
            reasons: AtomicU8::new(NotReady::NoCertificate.bit()),
        }
    }

    /// Records whether `reason` holds; returns whether it held before.
    pub fn set(&self, reason: NotReady, holds: bool) -> bool {
        let before = if holds {
            self.reasons.fetch_or(reason.bit(), Ordering::SeqCst)
        } else {
            self.reasons.fetch_and(!reason.bit(), Ordering::SeqCst)
        };
        before & reason.bit() != 0
    }

    /// The first reason that holds, in [`NotReady::ALL`]'s order; None when ready.
    pub fn not_ready(&self) -> Option<NotReady> {
        let reasons = self.reasons.load(Ordering::SeqCst);
        NotReady::ALL
            .into_iter()
            .find(|reason| reasons & reason.bit() != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_until_a_certificate_then_draining_is_reported_first() {
        let readiness = Readiness::new();
        assert_eq!(readiness.not_ready(), Some(NotReady::NoCertificate));
        assert!(readiness.set(NotReady::NoCertificate, false));
        assert_eq!(readiness.not_ready(), None);
        assert!(!readiness.set(NotReady::Untrusted, true));
        assert!(!readiness.set(NotReady::Draining, true));
        assert_eq!(readiness.not_ready(), Some(NotReady::Draining));
        assert!(readiness.set(NotReady::Untrusted, false));
        assert!(!readiness.set(NotReady::Untrusted, false));
        assert_eq!(readiness.not_ready(), Some(NotReady::Draining));
    }
}

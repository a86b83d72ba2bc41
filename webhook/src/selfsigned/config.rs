//! The `--tls-secret` settings, checked once: the rules the rotation schedule ([`super::plan`])
//! relies on (names the certificate can carry, lifetimes it can schedule within, an overlap short
//! enough for every step of a CA change to fit) live here, beside it. The command line only
//! parses the flags and hands them over; every error names the flag to fix.

use std::time::Duration;

use humantime::format_duration;

use super::plan::Settings;

/// The longest CA lifetime accepted.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The `--tls-secret` flags as given, not yet checked.
#[derive(Debug, Clone)]
pub struct TlsSecretFlags {
    /// `--tls-secret`: the Secret's name.
    pub secret: String,
    /// `--namespace`: the webhook's own, where the Secret and the Service are.
    pub namespace: Option<String>,
    /// `--webhook-configuration`.
    pub webhook_configuration: Option<String>,
    /// `--service`.
    pub service: Option<String>,
    /// `--ca-validity`.
    pub ca_validity: Duration,
    /// `--cert-validity`.
    pub cert_validity: Duration,
    /// `--rotation-overlap`.
    pub rotation_overlap: Duration,
}

/// Why the `--tls-secret` flags cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSecretConfigError {
    /// No namespace to find the Secret and the Service in.
    #[error("--tls-secret needs --namespace (the Secret's and the Service's)")]
    MissingNamespace,
    /// No configuration to publish the CA in, or no Service to name the certificate for.
    #[error("--tls-secret needs --webhook-configuration and --service")]
    MissingConfigurationOrService,
    /// A name that goes into the certificate's DNS names is not a DNS label.
    #[error("{flag} {value:?} is not a DNS label (lowercase letters, digits and '-', at most 63)")]
    NotDnsLabel {
        /// `--service` or `--namespace`.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// A CA lifetime over a century, or a serving certificate that would never be valid.
    #[error("--ca-validity must be at most 100 years and --cert-validity more than 0s")]
    ValidityOutOfBounds,
    /// A serving certificate that would outlive the CA that signs it.
    #[error(
        "--cert-validity ({}) must not exceed --ca-validity ({})",
        format_duration(*.cert_validity),
        format_duration(*.ca_validity)
    )]
    CertOutlivesCa {
        /// `--cert-validity`.
        cert_validity: Duration,
        /// `--ca-validity`.
        ca_validity: Duration,
    },
    /// An overlap of zero, or too long for the three steps of a CA change to fit in a serving
    /// certificate's life.
    #[error(
        "--rotation-overlap ({}) must be more than 0s and at most a sixth of --cert-validity ({})",
        format_duration(*.rotation_overlap),
        format_duration(*.cert_validity)
    )]
    OverlapOutOfBounds {
        /// `--rotation-overlap`.
        rotation_overlap: Duration,
        /// `--cert-validity`.
        cert_validity: Duration,
    },
}

/// Where the pair lives and how it is made: checked, so that the schedule can rely on it.
#[derive(Debug, Clone)]
pub struct TlsSecretConfig {
    namespace: String,
    secret: String,
    webhook_configuration: String,
    settings: Settings,
}

impl TlsSecretConfig {
    /// Checks the flags: DNS labels for the names the certificate carries, lifetimes within
    /// bounds, and an overlap of at most a sixth of the serving certificate's life.
    pub fn new(flags: TlsSecretFlags) -> Result<Self, TlsSecretConfigError> {
        let TlsSecretFlags {
            secret,
            namespace,
            webhook_configuration,
            service,
            ca_validity,
            cert_validity,
            rotation_overlap,
        } = flags;
        let namespace = namespace.ok_or(TlsSecretConfigError::MissingNamespace)?;
        let (Some(webhook_configuration), Some(service)) = (webhook_configuration, service) else {
            return Err(TlsSecretConfigError::MissingConfigurationOrService);
        };
        for (flag, value) in [("--service", &service), ("--namespace", &namespace)] {
            if !is_dns_label(value) {
                return Err(TlsSecretConfigError::NotDnsLabel {
                    flag,
                    value: value.clone(),
                });
            }
        }
        if ca_validity > CENTURY || cert_validity.is_zero() {
            return Err(TlsSecretConfigError::ValidityOutOfBounds);
        }
        if cert_validity > ca_validity {
            return Err(TlsSecretConfigError::CertOutlivesCa {
                cert_validity,
                ca_validity,
            });
        }
        if rotation_overlap.is_zero()
            || rotation_overlap
                .checked_mul(6)
                .is_none_or(|six| six > cert_validity)
        {
            return Err(TlsSecretConfigError::OverlapOutOfBounds {
                rotation_overlap,
                cert_validity,
            });
        }
        let dns_names = vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
            format!("{service}.{namespace}"),
            service,
        ];
        Ok(Self {
            namespace,
            secret,
            webhook_configuration,
            settings: Settings {
                ca_validity,
                leaf_validity: cert_validity,
                overlap: rotation_overlap,
                dns_names,
            },
        })
    }

    /// The namespace of the Secret (the webhook's own).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Secret's name.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The MutatingWebhookConfiguration whose every entry gets the `caBundle`.
    pub fn webhook_configuration(&self) -> &str {
        &self.webhook_configuration
    }

    /// Lifetimes, overlap and names, for the schedule.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// An RFC 1123 label, as Service and namespace names are.
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> TlsSecretFlags {
        TlsSecretFlags {
            secret: "tls".into(),
            namespace: Some("deputy-system".into()),
            webhook_configuration: Some("deputy-webhook".into()),
            service: Some("deputy-webhook".into()),
            ca_validity: Duration::from_secs(365 * 24 * 3600),
            cert_validity: Duration::from_secs(30 * 24 * 3600),
            rotation_overlap: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_certificate_is_for_the_service_name_the_api_server_dials_first() {
        let config = TlsSecretConfig::new(flags()).unwrap();
        assert_eq!(
            config.settings().dns_names,
            [
                "deputy-webhook.deputy-system.svc",
                "deputy-webhook.deputy-system.svc.cluster.local",
                "deputy-webhook.deputy-system",
                "deputy-webhook",
            ]
        );
        assert_eq!(config.settings().overlap, Duration::from_secs(30));
    }

    #[test]
    fn an_overlap_of_exactly_a_sixth_is_accepted_and_a_second_more_is_not() {
        let mut sixth = flags();
        sixth.cert_validity = Duration::from_secs(60);
        sixth.rotation_overlap = Duration::from_secs(10);
        assert!(TlsSecretConfig::new(sixth.clone()).is_ok());
        sixth.rotation_overlap = Duration::from_secs(11);
        assert!(matches!(
            TlsSecretConfig::new(sixth),
            Err(TlsSecretConfigError::OverlapOutOfBounds { .. })
        ));
    }

    #[test]
    fn dns_labels_are_lowercase_without_edge_hyphens() {
        for good in ["a", "web-1", &"x".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}

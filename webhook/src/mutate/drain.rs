//! The drain a Pod's relay starts with: the app keeps serving while Services and load balancers
//! stop sending it new connections (`deputy-agent terminate --drain [--drain-quiet]`).
//!
//! Where it comes from, first match wins: the Pod's `k8s-deputy.io/drain` /
//! `k8s-deputy.io/drain-quiet` annotations (read exactly as the agent reads its flags: `drain`
//! alone is fixed, with `drain-quiet` adaptive, `drain-quiet` alone takes the default maximum);
//! a chained `preStop.sleep` (a fixed drain of that length: one wait, one deadline rule); the
//! webhook's `--drain`/`--drain-quiet` defaults. Whatever it is, it must leave the relay its
//! time inside `--timeout`, the same rule the agent applies: a longer drain is shortened here,
//! with a warning, so the hook's arguments say what will happen.

use std::time::Duration;

use serde_json::Value;

use super::{get, warning};
use crate::config::{keys, InjectionConfig};

/// The relay keeps this much of the hook's deadline, or half of it if that is less (as
/// `deputy-agent terminate` does).
const RELAY_RESERVE: Duration = Duration::from_secs(5);
/// Kubernetes' `periodSeconds` when a probe sets none.
const DEFAULT_PROBE_PERIOD: Duration = Duration::from_secs(10);

/// A drain as the agent's flags express it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// The fixed drain, or the adaptive drain's maximum.
    pub max: Duration,
    /// Adaptive: relay once no new inbound connection arrived for this long.
    pub quiet: Option<Duration>,
}

impl Drain {
    /// None for a drain of zero; a quiet period of zero (or not below the maximum) is fixed.
    pub fn new(max: Duration, quiet: Option<Duration>) -> Option<Self> {
        (!max.is_zero()).then_some(Self {
            max,
            quiet: quiet.filter(|q| !q.is_zero() && *q < max),
        })
    }

    /// `--drain 15s [--drain-quiet 3s]`.
    pub fn args(self) -> Vec<String> {
        let mut args = vec!["--drain".to_owned(), agent_duration(self.max)];
        if let Some(quiet) = self.quiet {
            args.extend(["--drain-quiet".to_owned(), agent_duration(quiet)]);
        }
        args
    }
}

/// The drain of the Pod's app containers, before a chained `sleep` is considered: from its
/// annotations, else the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodDrain {
    /// What applies.
    pub drain: Option<Drain>,
    /// Whether the Pod's annotations chose it (they win over a chained `sleep`).
    pub annotated: bool,
}

/// Reads the annotations; a value that is not a duration is ignored with a warning.
pub fn pod_drain(pod: &Value, config: &InjectionConfig, warnings: &mut Vec<String>) -> PodDrain {
    let read = |key: &str, warnings: &mut Vec<String>| -> Option<Duration> {
        let text = get(pod, &["metadata", "annotations", key])?.as_str()?;
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(_) => {
                warnings.push(warning(format_args!(
                    "{key}: {text:?} is not a duration such as 15s (0s turns it off); ignored"
                )));
                None
            }
        }
    };
    let max = read(keys::DRAIN, warnings);
    let quiet = read(keys::DRAIN_QUIET, warnings);
    let (max, quiet) = match (max, quiet) {
        (None, None) => {
            return PodDrain {
                drain: Drain::new(config.drain, config.drain_quiet),
                annotated: false,
            }
        }
        (Some(max), quiet) => (max, quiet),
        (None, Some(quiet)) => (config.drain, Some(quiet)),
    };
    if quiet.is_some_and(|q| !q.is_zero() && q >= max) {
        warnings.push(warning(format_args!(
            "{}: {} is not shorter than the drain of {}, so the drain is fixed",
            keys::DRAIN_QUIET,
            agent_duration(quiet.unwrap_or_default()),
            agent_duration(max)
        )));
    }
    PodDrain {
        drain: Drain::new(max, quiet),
        annotated: true,
    }
}

/// Shortens `drain` so the relay keeps its reserve of `timeout`, saying so.
pub fn within_deadline(
    drain: Drain,
    timeout: Duration,
    container: &str,
    warnings: &mut Vec<String>,
) -> Option<Drain> {
    let budget = timeout.saturating_sub(RELAY_RESERVE.min(timeout / 2));
    if drain.max <= budget {
        return Some(drain);
    }
    // Whole milliseconds, as the agent's flags are written.
    let budget = Duration::from_millis(budget.as_millis() as u64);
    warnings.push(warning(format_args!(
        "container {container:?}: the drain of {} would leave the relay less than {} of its {} deadline; shortened to {} (raise terminationGracePeriodSeconds or {} for a longer one)",
        agent_duration(drain.max),
        agent_duration(timeout - budget),
        agent_duration(timeout),
        agent_duration(budget),
        keys::TERMINATE_TIMEOUT
    )));
    Drain::new(budget, drain.quiet)
}

/// Warns when a readiness probe that opens a connection runs as often as the quiet period:
/// every probe is a new inbound connection, so the drain would always wait its maximum.
pub fn check_probes(pod: &Value, drain: Option<Drain>, warnings: &mut Vec<String>) {
    let Some(Drain {
        max,
        quiet: Some(quiet),
    }) = drain
    else {
        return;
    };
    let lists = ["containers", "initContainers"];
    let containers = lists
        .iter()
        .filter_map(|list| get(pod, &["spec", list])?.as_array())
        .flatten();
    for container in containers {
        let probe = &container["readinessProbe"];
        let connects = ["httpGet", "tcpSocket", "grpc"]
            .iter()
            .any(|kind| probe[kind].is_object());
        if !connects {
            continue;
        }
        let period = probe["periodSeconds"]
            .as_u64()
            .map_or(DEFAULT_PROBE_PERIOD, Duration::from_secs);
        if period <= quiet {
            warnings.push(warning(format_args!(
                "container {:?}: its readinessProbe connects every {}, within the drain's quiet period of {}; each probe is a new inbound connection, so the drain will wait its full {} (set {} below {} or a fixed {})",
                container["name"].as_str().unwrap_or_default(),
                agent_duration(period),
                agent_duration(quiet),
                agent_duration(max),
                keys::DRAIN_QUIET,
                agent_duration(period),
                keys::DRAIN
            )));
        }
    }
}

/// `15s`, `1500ms`: what the agent's duration flags read back exactly.
pub fn agent_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn config() -> InjectionConfig {
        InjectionConfig {
            drain: s(15),
            drain_quiet: Some(s(3)),
            ..InjectionConfig::default()
        }
    }

    fn annotated(annotations: Value) -> (PodDrain, Vec<String>) {
        let pod = json!({"metadata": {"annotations": annotations}, "spec": {}});
        let mut warnings = Vec::new();
        (pod_drain(&pod, &config(), &mut warnings), warnings)
    }

    #[test]
    fn annotations_read_as_the_agent_reads_its_flags() {
        let (d, w) = annotated(json!({}));
        assert_eq!(d.drain, Drain::new(s(15), Some(s(3))));
        assert!(!d.annotated && w.is_empty());
        let (d, _) = annotated(json!({"k8s-deputy.io/drain": "10s"}));
        assert_eq!(d.drain, Drain::new(s(10), None), "drain alone is fixed");
        assert!(d.annotated);
        let (d, _) = annotated(json!({"k8s-deputy.io/drain-quiet": "1s"}));
        assert_eq!(d.drain, Drain::new(s(15), Some(s(1))));
        let (d, _) = annotated(json!({"k8s-deputy.io/drain": "0s"}));
        assert_eq!(d.drain, None, "0s turns it off");
        let (d, w) =
            annotated(json!({"k8s-deputy.io/drain": "5s", "k8s-deputy.io/drain-quiet": "9s"}));
        assert_eq!(d.drain, Drain::new(s(5), None));
        assert!(w[0].contains("not shorter"), "{w:?}");
        let (d, w) = annotated(json!({"k8s-deputy.io/drain": "soon"}));
        assert_eq!(
            d.drain,
            Drain::new(s(15), Some(s(3))),
            "a bad value is ignored"
        );
        assert!(w[0].contains("k8s-deputy.io/drain: \"soon\""), "{w:?}");
    }

    #[test]
    fn a_drain_that_would_crowd_out_the_relay_is_shortened_with_a_warning() {
        let mut w = Vec::new();
        let drain = Drain::new(s(15), Some(s(3))).unwrap();
        assert_eq!(within_deadline(drain, s(28), "app", &mut w), Some(drain));
        assert!(w.is_empty());
        assert_eq!(
            within_deadline(drain, s(8), "app", &mut w),
            Drain::new(s(4), Some(s(3)))
        );
        assert!(w[0].contains("shortened to 4s"), "{w:?}");
        assert_eq!(
            within_deadline(drain, Duration::from_millis(1500), "app", &mut w),
            Drain::new(Duration::from_millis(750), None),
            "a quiet period not below the maximum is a fixed drain"
        );
    }

    #[test]
    fn frequent_readiness_probes_are_named() {
        let pod = json!({"spec": {"containers": [
            {"name": "web", "readinessProbe": {"httpGet": {"port": 8080}, "periodSeconds": 2}},
            {"name": "slow", "readinessProbe": {"tcpSocket": {"port": 9000}}},
            {"name": "exec", "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}
        ]}});
        let mut w = Vec::new();
        check_probes(&pod, Drain::new(s(15), Some(s(3))), &mut w);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("\"web\"") && w[0].contains("every 2s"),
            "{w:?}"
        );
        w.clear();
        check_probes(&pod, Drain::new(s(15), None), &mut w);
        assert!(w.is_empty(), "a fixed drain does not care");
    }

    #[test]
    fn durations_are_written_as_the_agent_reads_them() {
        assert_eq!(agent_duration(s(15)), "15s");
        assert_eq!(agent_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(
            Drain::new(s(15), Some(s(3))).unwrap().args(),
            ["--drain", "15s", "--drain-quiet", "3s"]
        );
    }
}

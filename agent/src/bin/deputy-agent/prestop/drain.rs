//! The drain phase: the app keeps serving while Services, ingress controllers and load
//! balancers stop sending it new connections, and only then is it asked to terminate.
//!
//! A Pod's deletion starts its preStop hooks and the removal of its endpoints at the same moment;
//! whatever routes traffic keeps opening connections to it until it has caught up. A fixed drain
//! waits a given time (what `preStop: sleep N` does). An adaptive drain watches the Pod's own
//! network namespace and stops once no new inbound TCP connection has arrived for a quiet
//! period, bounded by a maximum.
//!
//! The signal is the namespace's `Tcp: PassiveOpens` counter (`/proc/net/snmp`): the kernel
//! counts every connection a listening socket completes, IPv4 and IPv6, loopback included, when
//! its handshake completes. Unlike a sample of `/proc/net/tcp`, it cannot miss a connection that
//! opened and closed between two looks. It counts connections, not requests: a request over a
//! keep-alive connection opened before the drain is not seen.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the kernel publishes the TCP counters of the reader's network namespace.
pub const SNMP_PATH: &str = "/proc/net/snmp";
/// How often the adaptive drain reads the counter; a connection is noticed within this.
const POLL: Duration = Duration::from_millis(50);
/// The relay keeps at least this much of the hook's deadline (or half of it, if less): the
/// app's own shutdown needs time after the drain.
const RELAY_RESERVE: Duration = Duration::from_secs(5);

/// What `--drain` and `--drain-quiet` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainPlan {
    /// The whole drain (fixed), or its maximum (adaptive).
    pub max: Duration,
    /// Adaptive: stop once no new connection has arrived for this long.
    pub quiet: Option<Duration>,
}

/// Why the drain stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A fixed drain ran its course.
    Elapsed,
    /// Adaptive: no new connection for the quiet period.
    Quiet,
    /// Adaptive: connections kept arriving until the maximum.
    Maximum,
}

/// How the drain went, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// How long it waited.
    pub waited: Duration,
    /// New inbound connections seen while waiting; None when the counter could not be read.
    pub connections: Option<u64>,
    /// How long before the end the last new connection arrived (None: none arrived).
    pub last_connection_ago: Option<Duration>,
    /// Why it stopped.
    pub stopped: Stopped,
}

/// The part of the hook's deadline the drain may use: all of it but the relay's reserve.
pub fn budget(timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| t.saturating_sub(RELAY_RESERVE.min(t / 2)))
}

/// A counter of completed inbound TCP connections in this network namespace.
pub trait InboundConnections {
    /// The counter's current value.
    fn read(&mut self) -> io::Result<u64>;
    /// Where it is read from, for the log.
    fn describe(&self) -> String;
}

/// `Tcp: PassiveOpens` in `/proc/net/snmp` (or another file of that format).
#[derive(Debug, Clone)]
pub struct PassiveOpens {
    path: PathBuf,
}

impl PassiveOpens {
    /// Reads the counter of the calling process's network namespace.
    pub fn new() -> Self {
        Self::at(SNMP_PATH)
    }

    /// Reads `path`.
    pub fn at(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_owned(),
        }
    }
}

impl InboundConnections for PassiveOpens {
    fn read(&mut self) -> io::Result<u64> {
        let text = std::fs::read_to_string(&self.path)?;
        passive_opens(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "no Tcp: PassiveOpens counter in it",
            )
        })
    }

    fn describe(&self) -> String {
        format!("PassiveOpens in {}", self.path.display())
    }
}

/// The `PassiveOpens` value of the `Tcp:` header/value line pair of `/proc/net/snmp`.
pub fn passive_opens(snmp: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let header = tcp.next()?;
    let values = tcp.next()?;
    let column = header
        .split_whitespace()
        .position(|n| n == "PassiveOpens")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

/// Waits as `plan` says, leaving the relay its reserve of `timeout` (counted from `started`,
/// the hook's start); `say` gets the log lines as they happen.
pub fn drain(
    plan: DrainPlan,
    started: Instant,
    timeout: Option<Duration>,
    counter: &mut dyn InboundConnections,
    say: &mut dyn FnMut(fmt::Arguments<'_>),
) -> Outcome {
    let max = match (budget(timeout), timeout) {
        (Some(budget), Some(timeout)) if budget < plan.max => {
            say(format_args!(
                "the drain of {} is shortened to {}: the relay keeps {} of the {} deadline",
                show(plan.max),
                show(budget),
                show(timeout - budget),
                show(timeout)
            ));
            // Counted from the hook's start, like the deadline.
            budget.saturating_sub(started.elapsed())
        }
        _ => plan.max,
    };
    let quiet = plan.quiet.filter(|q| !q.is_zero() && *q < max);
    let first = match counter.read() {
        Ok(value) => Some(value),
        Err(err) => {
            say(format_args!(
                "cannot read {} ({err}); draining for the full {}",
                counter.describe(),
                show(max)
            ));
            None
        }
    };
    match quiet {
        Some(quiet) if first.is_some() => say(format_args!(
            "draining for up to {}: relaying once no new inbound connection has reached the Pod for {} ({})",
            show(max),
            show(quiet),
            counter.describe()
        )),
        _ => say(format_args!(
            "draining for {} before relaying (the app keeps serving)",
            show(max)
        )),
    };
    let begin = Instant::now();
    let end = begin + max;
    // The latest reading; None once the counter cannot be read (the drain then runs to its end).
    let mut seen = first;
    let mut last_change: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if let (Some(quiet), Some(_)) = (quiet, seen) {
            if now.duration_since(last_change.unwrap_or(begin)) >= quiet {
                return outcome(begin, first, seen, last_change, Stopped::Quiet);
            }
        }
        std::thread::sleep(POLL.min(end - now));
        let Some(previous) = seen else { continue };
        match counter.read() {
            Ok(value) => {
                if value != previous {
                    last_change = Some(Instant::now());
                }
                seen = Some(value);
            }
            Err(err) => {
                say(format_args!(
                    "{} stopped being readable ({err}); draining for the full {}",
                    counter.describe(),
                    show(max)
                ));
                seen = None;
            }
        }
    }
    let stopped = match (quiet, seen) {
        (Some(_), Some(_)) => Stopped::Maximum,
        _ => Stopped::Elapsed,
    };
    outcome(begin, first, seen, last_change, stopped)
}

fn outcome(
    begin: Instant,
    first: Option<u64>,
    last: Option<u64>,
    last_change: Option<Instant>,
    stopped: Stopped,
) -> Outcome {
    let now = Instant::now();
    Outcome {
        waited: now.duration_since(begin),
        connections: first.zip(last).map(|(a, b)| b.wrapping_sub(a)),
        last_connection_ago: last_change.map(|at| now.duration_since(at)),
        stopped,
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "drained for {}", show(self.waited))?;
        match self.stopped {
            Stopped::Elapsed => f.write_str(" (fixed)")?,
            Stopped::Quiet => f.write_str(": no new inbound connection for the quiet period")?,
            Stopped::Maximum => f.write_str(": new connections kept arriving until the maximum")?,
        }
        match (self.connections, self.last_connection_ago) {
            (None, _) => f.write_str("; connections not counted"),
            (Some(n), Some(ago)) => write!(
                f,
                "; {n} new inbound connection{} while draining, the last {} before the end",
                if n == 1 { "" } else { "s" },
                show(ago)
            ),
            (Some(n), None) => write!(f, "; {n} new inbound connections while draining"),
        }
    }
}

/// `1.5s`, `250ms`, `15s`: short and exact enough for a log line.
pub fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 4242
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs
Tcp: 1 200 120000 -1 3317 1593 12 562 0 156949
Udp: InDatagrams NoPorts
Udp: 10 0
";

    #[test]
    fn passive_opens_is_read_by_its_column_name() {
        assert_eq!(passive_opens(SNMP), Some(1593));
        let reordered = "Tcp: PassiveOpens ActiveOpens\nTcp: 7 9\n";
        assert_eq!(passive_opens(reordered), Some(7));
        assert_eq!(passive_opens("Ip: 1\nIp: 2\n"), None);
        assert_eq!(passive_opens("Tcp: PassiveOpens\n"), None);
        assert_eq!(passive_opens("Tcp: PassiveOpens\nTcp: lots\n"), None);
    }

    #[test]
    fn the_budget_leaves_the_relay_five_seconds_or_half_the_deadline() {
        assert_eq!(budget(None), None);
        let s = Duration::from_secs;
        assert_eq!(budget(Some(s(28))), Some(s(23)));
        assert_eq!(budget(Some(s(10))), Some(s(5)));
        assert_eq!(budget(Some(s(4))), Some(s(2)));
    }

    /// A counter that goes up on a schedule (offsets from its creation).
    struct Scripted {
        born: Instant,
        arrivals: Vec<Duration>,
        fail: bool,
    }

    impl InboundConnections for Scripted {
        fn read(&mut self) -> io::Result<u64> {
            if self.fail {
                return Err(io::Error::other("no /proc here"));
            }
            let age = self.born.elapsed();
            Ok(self.arrivals.iter().filter(|a| **a <= age).count() as u64)
        }
        fn describe(&self) -> String {
            "a script".into()
        }
    }

    fn run(
        plan: DrainPlan,
        timeout: Option<Duration>,
        counter: &mut Scripted,
    ) -> (Outcome, String) {
        let mut log = String::new();
        let outcome = drain(plan, Instant::now(), timeout, counter, &mut |line| {
            log.push_str(&line.to_string());
            log.push('\n');
        });
        (outcome, log)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_adaptive_drain_stops_after_the_quiet_period_following_the_last_connection() {
        let mut counter = Scripted {
            born: Instant::now(),
            arrivals: vec![ms(100), ms(200), ms(300)],
            fail: false,
        };
        let plan = DrainPlan {
            max: Duration::from_secs(5),
            quiet: Some(ms(300)),
        };
        let (outcome, log) = run(plan, None, &mut counter);
        assert_eq!(outcome.stopped, Stopped::Quiet, "{log}");
        assert_eq!(outcome.connections, Some(3));
        assert!(outcome.waited >= ms(600), "{outcome:?}");
        assert!(outcome.waited < ms(1500), "{outcome:?}");
        assert!(log.contains("up to 5s"), "{log}");
    }

    #[test]
    fn an_adaptive_drain_with_steady_traffic_waits_its_maximum() {
        let mut counter = Scripted {
            born: Instant::now(),
            arrivals: (1..40).map(|i| ms(i * 25)).collect(),
            fail: false,
        };
        let plan = DrainPlan {
            max: ms(700),
            quiet: Some(ms(200)),
        };
        let (outcome, _) = run(plan, None, &mut counter);
        assert_eq!(outcome.stopped, Stopped::Maximum);
        assert!(outcome.waited >= ms(700));
    }

    #[test]
    fn an_unreadable_counter_turns_the_adaptive_drain_into_the_full_wait() {
        let mut counter = Scripted {
            born: Instant::now(),
            arrivals: vec![],
            fail: true,
        };
        let plan = DrainPlan {
            max: ms(400),
            quiet: Some(ms(100)),
        };
        let (outcome, log) = run(plan, None, &mut counter);
        assert_eq!(outcome.stopped, Stopped::Elapsed);
        assert_eq!(outcome.connections, None);
        assert!(outcome.waited >= ms(400));
        assert!(log.contains("cannot read a script"), "{log}");
    }

    #[test]
    fn a_drain_is_shortened_to_its_budget_and_says_so() {
        let mut counter = Scripted {
            born: Instant::now(),
            arrivals: vec![],
            fail: false,
        };
        let plan = DrainPlan {
            max: Duration::from_secs(30),
            quiet: None,
        };
        let (outcome, log) = run(plan, Some(ms(600)), &mut counter);
        assert!(
            outcome.waited >= ms(300) && outcome.waited < ms(600),
            "{outcome:?}"
        );
        assert!(log.contains("shortened to 300ms"), "{log}");
        assert!(log.contains("keeps 300ms of the 600ms deadline"), "{log}");
        assert_eq!(outcome.stopped, Stopped::Elapsed);
    }

    #[test]
    fn durations_show_short() {
        assert_eq!(show(Duration::from_secs(15)), "15s");
        assert_eq!(show(ms(250)), "250ms");
        assert_eq!(show(ms(1500)), "1.5s");
    }
}

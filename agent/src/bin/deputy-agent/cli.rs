//! Command-line parsing: raw arguments in, one validated [`Command`] out. Kept lean (lexopt, no
//! clap) because this binary is copied into every injected Pod.

use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::prestop::drain::DrainPlan;

/// What the user asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `install <DIR>`.
    Install {
        /// Where to put `deputy-agent`.
        dir: PathBuf,
    },
    /// `terminate ...`: the preStop side.
    Terminate(TerminateArgs),
    /// `run ... -- CMD`: the supervisor.
    Run(RunArgs),
    /// `status`.
    Status,
    /// `--help` or `help [COMMAND]`.
    Help(Option<String>),
    /// `--version`.
    Version,
}

/// Options of `terminate`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TerminateArgs {
    /// Target PID instead of the entrypoint.
    pub pid: Option<i32>,
    /// Give up (and exit non-zero) after this long.
    pub timeout: Option<Duration>,
    /// Return once the request is delivered.
    pub no_wait: bool,
    /// Keep the app serving this long (or until quiet) before anything else.
    pub drain: Option<DrainPlan>,
    /// Run this command first (a chained `exec` preStop handler), within the same deadline.
    pub first_command: Vec<OsString>,
}

/// Options of `run`.
#[derive(Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// Sent to the child on termination when no descendant registered a socket.
    pub signal: Signal,
    /// SIGKILL this long after termination starts.
    pub grace: Option<Duration>,
    /// Signal the child's whole process group.
    pub process_group: bool,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// A usage error: the message says what is wrong; the caller prints help and exits 2.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<lexopt::Error> for UsageError {
    fn from(err: lexopt::Error) -> Self {
        UsageError(err.to_string())
    }
}

/// Parses `args` (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_iter(std::iter::once(OsString::new()).chain(args));
    let subcommand = match parser.next()? {
        None => return Ok(Command::Help(None)),
        Some(Short('h') | Long("help")) => return Ok(Command::Help(None)),
        Some(Short('V') | Long("version")) => return Ok(Command::Version),
        Some(Value(value)) => value.string()?,
        Some(other) => return Err(other.unexpected().into()),
    };
    match subcommand.as_str() {
        "install" => parse_install(&mut parser),
        "terminate" => parse_terminate(&mut parser),
        "run" => parse_run(&mut parser),
        "status" => parse_status(&mut parser),
        "help" => match parser.next()? {
            None => Ok(Command::Help(None)),
            Some(Value(topic)) => Ok(Command::Help(Some(topic.string()?))),
            Some(other) => Err(other.unexpected().into()),
        },
        other => Err(UsageError(format!(
            "unknown command {other:?}; expected install, terminate, run or status"
        ))),
    }
}

fn parse_install(parser: &mut lexopt::Parser) -> Result<Command, UsageError> {
    use lexopt::prelude::*;
    let mut dir = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(Some("install".into()))),
            Value(value) if dir.is_none() => dir = Some(PathBuf::from(value)),
            other => return Err(other.unexpected().into()),
        }
    }
    let dir = dir.ok_or_else(|| UsageError("install needs a directory: install <DIR>".into()))?;
    Ok(Command::Install { dir })
}

fn parse_terminate(parser: &mut lexopt::Parser) -> Result<Command, UsageError> {
    use lexopt::prelude::*;
    let mut args = TerminateArgs::default();
    let mut drain: Option<(&str, Duration)> = None;
    let mut quiet = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(Some("terminate".into()))),
            Long("pid") => {
                let value = parser.value()?.string()?;
                args.pid = Some(pid_arg(&value)?);
            }
            Long("timeout") => args.timeout = Some(duration("--timeout", parser.value()?)?),
            Long("no-wait") => args.no_wait = true,
            // `--sleep-first` is what webhooks before the drain wrote for a chained `sleep`
            // handler; Pods admitted then still carry it, so it stays, as a fixed drain.
            Long(flag @ ("drain" | "sleep-first")) => {
                let flag = if flag == "drain" {
                    "--drain"
                } else {
                    "--sleep-first"
                };
                if let Some((earlier, _)) = drain {
                    return Err(UsageError(format!(
                        "{flag} given after {earlier}: give one"
                    )));
                }
                drain = Some((flag, duration(flag, parser.value()?)?));
            }
            Long("drain-quiet") => quiet = Some(duration("--drain-quiet", parser.value()?)?),
            Value(value) => {
                args.first_command.push(value);
                args.first_command.extend(parser.raw_args()?);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    args.drain = drain_plan(drain, quiet)?;
    Ok(Command::Terminate(args))
}

/// `--drain` alone is fixed; with `--drain-quiet` it is the adaptive drain's maximum.
fn drain_plan(
    drain: Option<(&str, Duration)>,
    quiet: Option<Duration>,
) -> Result<Option<DrainPlan>, UsageError> {
    match (drain, quiet) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(UsageError(
            "--drain-quiet needs --drain, the longest the drain may take: --drain 15s --drain-quiet 3s"
                .into(),
        )),
        (Some(("--sleep-first", _)), Some(_)) => Err(UsageError(
            "--drain-quiet goes with --drain, not --sleep-first".into(),
        )),
        (Some((_, max)), Some(quiet)) if !quiet.is_zero() && quiet >= max => Err(UsageError(format!(
            "--drain-quiet {} must be shorter than --drain {} (the maximum)",
            humantime::format_duration(quiet),
            humantime::format_duration(max)
        ))),
        (Some((_, max)), quiet) => Ok((!max.is_zero()).then_some(DrainPlan {
            max,
            quiet: quiet.filter(|q| !q.is_zero()),
        })),
    }
}

fn parse_run(parser: &mut lexopt::Parser) -> Result<Command, UsageError> {
    use lexopt::prelude::*;
    let mut signal = Signal::SIGTERM;
    let mut grace = None;
    let mut process_group = false;
    let mut command = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(Some("run".into()))),
            Long("signal") | Short('s') => signal = parse_signal(&parser.value()?.string()?)?,
            Long("grace") => grace = Some(duration("--grace", parser.value()?)?),
            Long("process-group") | Short('g') => process_group = true,
            Value(value) => {
                // Everything from the first non-option (or after `--`) is the command.
                command.push(value);
                command.extend(parser.raw_args()?);
                break;
            }
            other => return Err(other.unexpected().into()),
        }
    }
    if command.is_empty() {
        return Err(UsageError(
            "run needs a command: run [OPTIONS] -- <CMD> [ARGS...]".into(),
        ));
    }
    Ok(Command::Run(RunArgs {
        signal,
        grace,
        process_group,
        command,
    }))
}

fn parse_status(parser: &mut lexopt::Parser) -> Result<Command, UsageError> {
    use lexopt::prelude::*;
    match parser.next()? {
        None => Ok(Command::Status),
        Some(Short('h') | Long("help")) => Ok(Command::Help(Some("status".into()))),
        Some(other) => Err(other.unexpected().into()),
    }
}

fn pid_arg(value: &str) -> Result<i32, UsageError> {
    deputy_agent::protocol::parse_pid(value)
        .ok_or_else(|| UsageError(format!("--pid {value:?} is not a positive PID")))
}

/// `500ms`, `25s`, `2m`, `1m30s`; a bare number is refused (which unit?).
fn duration(flag: &str, value: OsString) -> Result<Duration, UsageError> {
    let value = value
        .into_string()
        .map_err(|v| UsageError(format!("{flag} {v:?} is not valid text")))?;
    humantime::parse_duration(value.trim()).map_err(|err| {
        UsageError(format!(
            "{flag} {value:?} is not a duration ({err}); write e.g. 500ms, 25s or 2m"
        ))
    })
}

/// `TERM`, `SIGTERM`, `term` or `15`.
pub fn parse_signal(value: &str) -> Result<Signal, UsageError> {
    let bad = || UsageError(format!("--signal {value:?} is not a signal name or number"));
    if let Ok(number) = value.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| bad());
    }
    let upper = value.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn terminate_takes_pid_timeout_and_no_wait() {
        assert_eq!(
            parse_str(&["terminate", "--pid", "7", "--timeout", "500ms", "--no-wait"]),
            Ok(Command::Terminate(TerminateArgs {
                pid: Some(7),
                timeout: Some(Duration::from_millis(500)),
                no_wait: true,
                ..Default::default()
            }))
        );
        assert_eq!(
            parse_str(&["terminate", "--timeout=2m"]),
            Ok(Command::Terminate(TerminateArgs {
                timeout: Some(Duration::from_secs(120)),
                ..Default::default()
            }))
        );
    }

    #[test]
    fn terminate_takes_a_chained_handler_to_run_first() {
        let parsed = parse_str(&[
            "terminate",
            "--timeout",
            "28s",
            "--drain",
            "5s",
            "--",
            "nginx",
            "-s",
            "quit",
        ]);
        assert_eq!(
            parsed,
            Ok(Command::Terminate(TerminateArgs {
                timeout: Some(Duration::from_secs(28)),
                drain: Some(DrainPlan {
                    max: Duration::from_secs(5),
                    quiet: None
                }),
                first_command: ["nginx", "-s", "quit"].map(OsString::from).to_vec(),
                ..Default::default()
            }))
        );
    }

    #[test]
    fn drain_flags_make_a_fixed_or_an_adaptive_drain() {
        let drain_of = |args: &[&str]| match parse_str(args) {
            Ok(Command::Terminate(t)) => Ok(t.drain),
            Ok(other) => panic!("{other:?}"),
            Err(err) => Err(err.0),
        };
        let s = Duration::from_secs;
        assert_eq!(
            drain_of(&["terminate", "--drain", "15s", "--drain-quiet", "3s"]),
            Ok(Some(DrainPlan {
                max: s(15),
                quiet: Some(s(3))
            }))
        );
        // What webhooks before the drain wrote for a chained sleep is a fixed drain.
        assert_eq!(
            drain_of(&["terminate", "--sleep-first", "5s"]),
            Ok(Some(DrainPlan {
                max: s(5),
                quiet: None
            }))
        );
        // Zero turns either off.
        assert_eq!(drain_of(&["terminate", "--drain", "0s"]), Ok(None));
        assert_eq!(
            drain_of(&["terminate", "--drain", "5s", "--drain-quiet", "0s"]),
            Ok(Some(DrainPlan {
                max: s(5),
                quiet: None
            }))
        );
        for bad in [
            &["terminate", "--drain-quiet", "3s"][..],
            &["terminate", "--drain", "3s", "--drain-quiet", "3s"],
            &["terminate", "--drain", "3s", "--sleep-first", "3s"],
            &["terminate", "--sleep-first", "3s", "--drain-quiet", "1s"],
            &["terminate", "--drain", "soon"],
        ] {
            let err = drain_of(bad).unwrap_err();
            assert!(
                err.contains("--drain") || err.contains("--sleep-first"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn bad_values_are_usage_errors_that_name_the_flag() {
        let err = parse_str(&["terminate", "--timeout", "25"]).unwrap_err();
        assert!(err.0.contains("--timeout"), "{err}");
        let err = parse_str(&["terminate", "--pid", "0"]).unwrap_err();
        assert!(err.0.contains("--pid"), "{err}");
        let err = parse_str(&["run", "--signal", "NOPE", "--", "true"]).unwrap_err();
        assert!(err.0.contains("--signal"), "{err}");
        assert!(parse_str(&["run"]).is_err());
        assert!(parse_str(&["install"]).is_err());
        assert!(parse_str(&["frobnicate"]).is_err());
    }

    #[test]
    fn run_keeps_the_command_and_its_options_verbatim() {
        let parsed = parse_str(&[
            "run",
            "-g",
            "--signal",
            "INT",
            "--grace",
            "3s",
            "--",
            "sh",
            "-c",
            "echo --help",
        ]);
        assert_eq!(
            parsed,
            Ok(Command::Run(RunArgs {
                signal: Signal::SIGINT,
                grace: Some(Duration::from_secs(3)),
                process_group: true,
                command: ["sh", "-c", "echo --help"].map(OsString::from).to_vec(),
            }))
        );
        let parsed = parse_str(&["run", "app", "--flag"]).unwrap();
        let Command::Run(run) = parsed else { panic!() };
        assert_eq!(run.command, ["app", "--flag"].map(OsString::from).to_vec());
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigusr1"), Ok(Signal::SIGUSR1));
        assert_eq!(parse_signal("2"), Ok(Signal::SIGINT));
    }
}

//! `--help` texts, one per subcommand, each with an example.

const MAIN: &str = "\
deputy-agent: graceful termination for Kubernetes workloads (K8sDeputy.jl-compatible)

Usage: deputy-agent <COMMAND> [OPTIONS]

Commands:
  install <DIR>    Copy this binary to <DIR>/deputy-agent (init container)
  terminate        Ask the registered app to terminate and wait for it (preStop hook)
  run -- <CMD>     Run <CMD> under a correct PID 1 that relays termination
  status           List the registered processes
  help [COMMAND]   Show help for a command

Options:
  -h, --help       Show this help
  -V, --version    Show the version

Environment:
  DEPUTY_IPC_DIR   Directory of the registration sockets and entrypoint file (default /run)

Examples:
  deputy-agent install /deputy/bin
  deputy-agent terminate --timeout 28s
  deputy-agent run -- julia --project server.jl
";

const INSTALL: &str = "\
Usage: deputy-agent install <DIR>

Copies this executable to <DIR>/deputy-agent (temp file, fsync, rename; mode 0755).
Idempotent. <DIR> must exist and be writable (an emptyDir).

Example:
  deputy-agent install /deputy/bin
";

const TERMINATE: &str = "\
Usage: deputy-agent terminate [--pid <PID>] [--timeout <DURATION>] [--no-wait]
                              [--drain <DURATION> [--drain-quiet <DURATION>]]
                              [-- <CMD> [ARGS...]]

Drains first if asked: the app keeps serving while Services and load balancers stop
sending it new connections. Then asks the registered process to terminate over its socket in $DEPUTY_IPC_DIR and waits
until it has exited. The target is the entrypoint (deputy-entrypoint.pid, else
julia-entrypoint.pid) unless --pid names one. The listener must be that very process
(SO_PEERCRED, pidfd): a stale file never makes us act on another process.
Log lines go to stderr and to the target's stdout (so they appear in kubectl logs).

Options:
  --pid <PID>           Target this registered process instead of the entrypoint
  --timeout <DURATION>  Give up after this long (e.g. 500ms, 25s, 2m); default: wait
  --no-wait             Return once the request is delivered
  --drain <DURATION>    Wait this long before relaying (a fixed drain; 0s: none)
  --drain-quiet <DUR>   With --drain: relay as soon as no new inbound TCP connection has
                        reached this network namespace for this long (counted by the
                        kernel: Tcp PassiveOpens in /proc/net/snmp); --drain is then the
                        maximum. The drain always leaves the relay 5s (or half of
                        --timeout, if less) of --timeout. --sleep-first <DUR> is an old
                        name of a fixed --drain
  -- <CMD> [ARGS...]    Run CMD after the drain (a chained `exec` preStop handler); it
                        counts against --timeout, and the relay follows even if CMD fails

Exit status: 0 when the target exited, or when nothing is registered (Kubernetes then
sends SIGTERM as usual); 1 on timeout or when the target refuses; 2 on a usage error.

Examples (preStop hook):
  /deputy/bin/deputy-agent terminate --timeout 28s
  /deputy/bin/deputy-agent terminate --timeout 28s --drain 15s --drain-quiet 3s
  /deputy/bin/deputy-agent terminate --timeout 28s --drain 5s -- nginx -s quit
";

const RUN: &str = "\
Usage: deputy-agent run [--signal <SIG>] [--grace <DURATION>] [-g] -- <CMD> [ARGS...]

Runs <CMD> as the child of a correct PID 1: reaps zombies (as PID 1 or as a child
subreaper), forwards TERM, INT, HUP, QUIT, USR1, USR2 and WINCH, and registers itself as
the entrypoint. On a terminate request or on SIGTERM it relays terminate to a registered
descendant (a K8sDeputy.jl or deputy library app, even under sh -c) or else sends the
child --signal. It exits with the child's status (128+N if killed by signal N) after
telling the preStop client, so Kubernetes never reports FailedPreStopHook.

Options:
  -s, --signal <SIG>      Signal for the child when no descendant registered (default TERM)
  --grace <DURATION>      Send SIGKILL this long after termination starts (default: never)
  -g, --process-group     Signal the child's whole process group

Exit status: the child's; 127 if <CMD> is not found, 126 if it cannot run, 2 on a usage error.

Example:
  deputy-agent run --grace 25s -- sh -c 'exec my-server --port 8080'
";

const STATUS: &str = "\
Usage: deputy-agent status

Lists the registrations in $DEPUTY_IPC_DIR: PID, alive, entrypoint, socket.

Example:
  kubectl exec my-pod -- /deputy/bin/deputy-agent status
";

/// Prints help for `topic` (or the overview); returns the exit status.
pub fn print(topic: Option<&str>) -> i32 {
    let text = match topic {
        None => MAIN,
        Some("install") => INSTALL,
        Some("terminate") => TERMINATE,
        Some("run") => RUN,
        Some("status") => STATUS,
        Some(other) => {
            eprintln!("deputy-agent: no help for unknown command {other:?}\n\n{MAIN}");
            return 2;
        }
    };
    print!("{text}");
    0
}

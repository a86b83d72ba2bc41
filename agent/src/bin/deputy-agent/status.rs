//! `deputy-agent status`: lists the registrations of the IPC directory, for humans debugging a
//! Pod (`kubectl exec ... -- /deputy/bin/deputy-agent status`).

use std::io::Write;

use anyhow::{Context, Result};
use deputy_agent::process::ProcStat;
use deputy_agent::protocol::IpcDir;

/// Prints one line per registered process, then the entrypoint.
pub fn status(dir: &IpcDir, out: &mut impl Write) -> Result<()> {
    let entrypoint = dir.read_entrypoint().ok().flatten();
    let registrations = dir
        .registrations()
        .with_context(|| format!("cannot list {}", dir.path().display()))?;
    writeln!(out, "IPC directory: {}", dir.path().display())?;
    match &entrypoint {
        Some((pid, file)) => writeln!(out, "entrypoint: PID {pid} (from {})", file.display())?,
        None => writeln!(out, "entrypoint: none registered")?,
    }
    writeln!(
        out,
        "{:>8}  {:<6}  {:<10}  SOCKET",
        "PID", "ALIVE", "ENTRYPOINT"
    )?;
    for (pid, path) in &registrations {
        let alive = ProcStat::read(*pid).is_some_and(|stat| !stat.is_exited());
        let is_entrypoint = entrypoint.as_ref().is_some_and(|(e, _)| e == pid);
        writeln!(
            out,
            "{:>8}  {:<6}  {:<10}  {}",
            pid,
            if alive { "yes" } else { "no" },
            if is_entrypoint { "yes" } else { "" },
            path.display()
        )?;
    }
    if registrations.is_empty() {
        writeln!(out, "(no registered process)")?;
    }
    Ok(())
}

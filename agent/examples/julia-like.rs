//! An app speaking K8sDeputy.jl's protocol exactly as `src/graceful_termination.jl` does, for the
//! end-to-end tests and the demo image (a Julia runtime is not available there): it writes
//! `julia-entrypoint.pid`, binds `graceful-terminator.<pid>.socket` with the umask's mode, reads
//! one line per connection, never replies, and on `terminate` runs a callback that exits.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;

fn main() {
    let dir = std::env::var("DEPUTY_IPC_DIR").unwrap_or_else(|_| "/run".into());
    let pid = std::process::id();
    std::fs::write(format!("{dir}/julia-entrypoint.pid"), format!("{pid}\n")).unwrap_or_else(|e| {
        eprintln!("julia-like: cannot write {dir}/julia-entrypoint.pid: {e}");
        std::process::exit(1)
    });
    let path = format!("{dir}/graceful-terminator.{pid}.socket");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap_or_else(|e| {
        eprintln!("julia-like: cannot bind {path}: {e}");
        std::process::exit(1)
    });
    say(&format!("julia-like: registered pid={pid}"));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
        if line.trim() == "terminate" {
            say("julia-like: graceful termination callback ran");
            std::process::exit(0);
        }
        say(&format!("julia-like: invalid request {:?}", line.trim()));
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

//! `deputy-agent`: the static in-container agent of k8s-deputy. `main` only parses and dispatches.

mod cli;
mod help;
mod install;
mod prestop;
mod status;
mod supervise;

use std::process::ExitCode;

use deputy_agent::protocol::IpcDir;

use cli::Command;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("deputy-agent: {err}\n\nRun 'deputy-agent --help' for usage.");
            return ExitCode::from(2);
        }
    };
    let dir = IpcDir::from_env();
    let code = match command {
        Command::Help(topic) => help::print(topic.as_deref()),
        Command::Version => {
            println!("deputy-agent {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Install { dir: target } => match install::install(&target) {
            Ok(path) => {
                println!("deputy-agent: installed {}", path.display());
                0
            }
            Err(err) => {
                eprintln!("deputy-agent install: {err:#}");
                1
            }
        },
        Command::Terminate(args) => prestop::terminate(&dir, &args),
        Command::Run(args) => supervise::run(args, &dir),
        Command::Status => match status::status(&dir, &mut std::io::stdout().lock()) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("deputy-agent status: {err:#}");
                1
            }
        },
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

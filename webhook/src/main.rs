//! `deputy-webhook` binary: parses arguments and runs a subcommand (see [`deputy_webhook::cli`]).

fn main() -> std::process::ExitCode {
    deputy_webhook::cli::Args::parse_and_run()
}

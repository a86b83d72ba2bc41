//! `deputy-webhook` binary: parses arguments and runs a subcommand.

fn main() {
    eprintln!("deputy-webhook: under construction (serve and inject land with the webhook issue)");
    std::process::exit(2);
}

//! `deputy-webhook` binary: parses arguments and runs a subcommand (see [`deputy_webhook::cli`]).

/// mimalloc instead of glibc's malloc: the review is allocation-heavy (JSON values), and glibc's
/// malloc and free were about a third of its profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    deputy_webhook::cli::Args::parse_and_run()
}

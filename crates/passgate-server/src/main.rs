//! The `passgate` binary.

use std::process::ExitCode;

use clap::Parser;

/// Every request allocates (JSON, headers, SQL parameters); mimalloc's
/// per-thread free lists spent about half the time glibc's allocator did in
/// the login benchmark's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = passgate_server::cli::Cli::parse();
    match passgate_server::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

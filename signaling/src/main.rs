//! `confab-signal`: the signaling server alone, without the GUI or media crates.

use clap::Parser;
use confab_signaling::{serve_until_signal, SignalCli};

// The entry point: `#[tokio::main]` waits on the runtime, which is what an entry point is for.
#[allow(clippy::disallowed_methods)]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match serve_until_signal(SignalCli::parse().serve).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("confab-signal: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

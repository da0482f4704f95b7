//! `confab-signal`: the signaling server alone, without the GUI or media crates.

use clap::Parser;
use confab_signaling::{ServeArgs, Server, ServerConfig};

/// Confab's signaling server: matches room codes and relays SDP and ICE candidates.
#[derive(Parser)]
#[command(name = "confab-signal", version)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

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
    let cli = Cli::parse();
    match run(cli.serve).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("confab-signal: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig::try_from(args)?;
    let server = Server::start(config).await?;
    // The one line scripts wait for; everything else goes to the log on stderr.
    println!("listening on {}", server.ws_url());
    server.run_until_signal().await?;
    Ok(())
}

//! `confab`: the desktop app, and its command-line modes (see `confab --help`).

mod capture;
mod codec;
mod media;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use confab_signaling::{ServeArgs, Server, ServerConfig};

/// Confab: video calls straight from one computer to another.
///
/// With no command, opens the app window.
#[derive(Parser)]
#[command(name = "confab", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the signaling server that matches room codes and relays SDP and ICE candidates.
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Serve(args)) => serve(args),
        None => Err(anyhow::anyhow!(
            "the app window is not built yet; see `confab --help`"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("confab: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig::try_from(args)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let server = Server::start(config).await?;
        println!("listening on {}", server.ws_url());
        server.run_until_signal().await?;
        anyhow::Ok(())
    })
}

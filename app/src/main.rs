//! `confab`: the desktop app, and its command-line modes (see `confab --help`).

mod call;
mod capture;
mod cli;
mod codec;
mod devices;
mod join;
mod media;
mod ui;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};
use confab_signaling::{ServeArgs, Server, ServerConfig};

/// Our own progress at info; the WebRTC stack's chatter only when it is an error.
const DEFAULT_LOG: &str = "warn,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_sctp=error,webrtc=error,confab=info,confab_signaling=info";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Join(args)) if args.headless => join::run(args),
        Some(Command::Join(args)) => open_window(Some(args)),
        Some(Command::Devices { json }) => devices::run(json),
        None => open_window(None),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("confab: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The app window; with `join` arguments, straight into that call.
fn open_window(join: Option<cli::JoinArgs>) -> anyhow::Result<()> {
    let start = match join {
        Some(args) => Some(ui::StartCall {
            room: match args.room.trim() {
                "new" => None,
                text => Some(confab_protocol::RoomCode::parse(text)?),
            },
            server: Some(args.server),
            camera: Some(args.camera),
            mic: Some(args.mic),
            speaker: Some(args.speaker),
            name: args.name,
        }),
        None => None,
    };
    ui::run(start)
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

//! Confab's signaling server: matches room codes, relays SDP offers/answers and trickled ICE
//! candidates between the peers of a room, and hands every client the STUN/TURN servers to use
//! (minting short-lived TURN credentials per room member when given coturn's shared secret).
//!
//! It never sees media or media keys: peers talk DTLS-SRTP directly. Built as a library so the
//! desktop app can host it in-process (`confab serve`, or the app's "host on this computer") and as
//! the lean `confab-signal` binary that links no GUI or media crates.

mod address_limits;
mod config;
mod connection;
mod hub;
mod rate_limit;
mod resume;
mod server;
pub mod tls;
pub mod turn;
mod web;

pub use config::{ConfigError, ServeArgs, ServerConfig, TurnAuth, OUTBOUND_QUEUE_BYTES};
pub use hub::Hub;
pub use rate_limit::TokenBucket;
pub use server::{RunningServer, ServeError, Server};

/// `confab-signal`'s command line: the standalone binary, and `confab` called by that name.
#[derive(clap::Parser)]
#[command(
    name = "confab-signal",
    version,
    about = "Confab's signaling server: matches room codes and relays SDP and ICE candidates."
)]
pub struct SignalCli {
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Serves with `args` until Ctrl-C or SIGTERM, after printing the one line scripts wait for
/// (`listening on URL`; everything else goes to the log on stderr).
pub async fn serve_until_signal(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig::try_from(args)?;
    let server = Server::start(config).await?;
    println!("listening on {}", server.ws_url());
    server.run_until_signal().await?;
    Ok(())
}

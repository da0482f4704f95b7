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

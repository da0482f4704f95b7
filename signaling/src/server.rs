//! The HTTP side: binds the socket (plain or TLS), routes `/ws` to the signaling protocol (within
//! the connection caps per address and in total) and `/healthz` to a health report, and shuts
//! down gracefully.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use confab_protocol::{MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::address_limits::{AddressKey, ConnectionCaps};
use crate::connection::serve_socket;
use crate::web;
use crate::{Hub, ServerConfig};

/// Frames and messages above the protocol's limit are refused by the WebSocket layer as soon as
/// their header announces the length, before the payload is read (an `error` and close 1009).
const HARD_FRAME_LIMIT: usize = MAX_MESSAGE_BYTES;

/// What a client refused by a connection cap is told to wait before retrying, in seconds.
const RETRY_AFTER_SECS: &str = "30";

/// Connections waiting to be accepted (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: u32 = 4096;

/// Bytes read from a socket at a time.
const READ_BUFFER: usize = 4 * 1024;

/// How long connections get to finish when the server shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How long upgraded WebSocket connections get to say goodbye (the shutdown error, the close
/// frame and the client's answer to it) when the server shuts down.
const WEBSOCKET_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot load TLS certificate {cert} / key {key}: {source}")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        source: io::Error,
    },
    #[error("server stopped: {0}")]
    Io(#[from] io::Error),
}

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    caps: Arc<ConnectionCaps>,
    shutdown: watch::Receiver<bool>,
    same_origin_only: bool,
    /// The upgraded WebSocket connections: hyper hands them off, so the HTTP server's graceful
    /// shutdown does not wait for them.
    websockets: TaskTracker,
}

/// Builds and starts signaling servers.
pub struct Server;

/// A server that is accepting connections.
pub struct RunningServer {
    local_addr: SocketAddr,
    tls: bool,
    /// SHA-256 of the TLS certificate (lowercase hex), for clients to pin.
    cert_sha256: Option<String>,
    hub: Arc<Hub>,
    handle: Handle,
    shutdown_tx: watch::Sender<bool>,
    websockets: TaskTracker,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    /// Binds `config.listen` and starts serving on the current tokio runtime.
    pub async fn start(config: ServerConfig) -> Result<RunningServer, ServeError> {
        let listener = bind(config.listen).map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = listener.local_addr()?;
        raise_open_file_limit();
        let tls = match &config.tls {
            Some((cert, key)) => {
                // ring is the one TLS provider compiled in (webrtc uses it too); install it explicitly.
                let _ = rustls::crypto::ring::default_provider().install_default();
                Some(
                    RustlsConfig::from_pem_file(cert, key)
                        .await
                        .map_err(|source| ServeError::Tls {
                            cert: cert.clone(),
                            key: key.clone(),
                            source,
                        })?,
                )
            }
            None => None,
        };
        let cert_sha256 = config
            .tls
            .as_ref()
            .and_then(|(cert, _)| cert_fingerprint(cert));
        let caps = Arc::new(ConnectionCaps::new(
            config.max_conns_per_ip,
            config.max_conns,
        ));
        let same_origin_only = config.same_origin_only;
        let hub = Arc::new(Hub::new(Arc::new(config)));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let websockets = TaskTracker::new();
        let app = router(AppState {
            hub: hub.clone(),
            caps,
            shutdown: shutdown_rx,
            same_origin_only,
            websockets: websockets.clone(),
        });
        let handle = Handle::new();
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let task = match tls.clone() {
            Some(tls) => tokio::spawn(
                axum_server::from_tcp_rustls(listener, tls)
                    .handle(handle.clone())
                    .serve(service),
            ),
            None => tokio::spawn(
                axum_server::from_tcp(listener)
                    .handle(handle.clone())
                    .serve(service),
            ),
        };
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        tracing::info!(%local_addr, scheme, "signaling server listening");
        Ok(RunningServer {
            local_addr,
            tls: tls.is_some(),
            cert_sha256,
            hub,
            handle,
            shutdown_tx,
            websockets,
            task,
        })
    }
}

/// A listening socket with a deep accept queue: std's default backlog of 128 drops SYNs when
/// thousands of clients connect at once (they then wait a second for the retransmit).
fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(LISTEN_BACKLOG)?.into_std()?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Every client is a socket: lift the soft open-file limit (often 1024) to the hard limit.
fn raise_open_file_limit() {
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(err) => tracing::warn!(%err, "cannot raise the open-file limit"),
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(ws_upgrade))
        .route("/healthz", get(healthz))
        // The web client, so a browser can join a room from a link.
        .route("/", get(web::index))
        .route("/join/{code}", get(web::index))
        .route("/confab.js", get(web::script))
        .route("/style.css", get(web::style))
        .with_state(state)
}

async fn ws_upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    if state.same_origin_only && !same_origin(&headers) {
        tracing::info!(%remote, origin = ?headers.get(header::ORIGIN), "refused: another origin");
        return (
            StatusCode::FORBIDDEN,
            "this server takes no connections from other web pages",
        )
            .into_response();
    }
    // Refused before the upgrade, as plain HTTP: a refusal costs no WebSocket state.
    let slot = match state.caps.admit(remote.ip()) {
        Ok(slot) => slot,
        Err(exceeded) => {
            tracing::info!(%remote, %exceeded, "connection refused");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, RETRY_AFTER_SECS)],
                exceeded.to_string(),
            )
                .into_response();
        }
    };
    let address = AddressKey::of(remote.ip());
    // Small buffers: signaling messages are small, and tungstenite's 128 KiB defaults would cost
    // that much per idle connection. Outbound frames are bounded by the queue (`Hub`), inbound
    // ones by the protocol's message limit.
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_MESSAGE_BYTES)
        .max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .on_upgrade(move |socket| {
            let serve = serve_socket(socket, state.hub, address, slot, state.shutdown);
            state.websockets.track_future(serve)
        })
}

/// No `Origin` (a native client), or an `Origin` naming the host the request was sent to (the
/// web client this server served). Any other page, or an opaque origin ("null"), is refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let (rooms, peers) = state.hub.counts();
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": PROTOCOL_VERSION,
        "rooms": rooms,
        "peers": peers,
    }))
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The WebSocket URL of this server, e.g. `ws://127.0.0.1:8443/ws`; an unspecified listen
    /// address (0.0.0.0) is shown as loopback.
    pub fn ws_url(&self) -> String {
        let mut addr = self.local_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("{}://{addr}/ws", if self.tls { "wss" } else { "ws" })
    }

    /// The SHA-256 of the certificate a wss:// server shows (lowercase hex), for pinning.
    pub fn cert_sha256(&self) -> Option<&str> {
        self.cert_sha256.as_deref()
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Tells every client the server is going away, then stops within a few seconds, once every
    /// connection has been told (or its grace is over).
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.shutdown_tx.send(true);
        self.handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        self.websockets.close();
        let websockets = self.websockets.clone();
        let result = self.wait().await;
        if tokio::time::timeout(WEBSOCKET_GRACE, websockets.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = websockets.len(),
                "connections still open after the shutdown grace"
            );
        }
        result
    }

    /// Runs until the server stops by itself (an accept error).
    pub async fn wait(self) -> Result<(), ServeError> {
        flatten(self.task.await)
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(mut self) -> Result<(), ServeError> {
        tokio::select! {
            () = shutdown_signal() => tracing::info!("shutting down"),
            result = &mut self.task => return flatten(result),
        }
        self.shutdown().await
    }
}

/// SHA-256 of the first certificate in a PEM file.
fn cert_fingerprint(path: &std::path::Path) -> Option<String> {
    use rustls::pki_types::pem::PemObject as _;
    use sha2::Digest as _;
    let der = rustls::pki_types::CertificateDer::from_pem_file(path).ok()?;
    Some(
        sha2::Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

fn flatten(result: Result<io::Result<()>, tokio::task::JoinError>) -> Result<(), ServeError> {
    match result {
        Ok(result) => Ok(result?),
        Err(join) => Err(ServeError::Io(io::Error::other(join))),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

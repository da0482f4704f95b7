//! The signaling server the app runs for its user ("Host on this computer"). It starts only when
//! the person hosts a call (makes or starts a room), on the app's tokio runtime, and reports back
//! through a one-shot channel that the UI polls each frame: the window shows "starting" meanwhile
//! and never waits for it. It serves wss:// with a self-signed certificate whose SHA-256 travels
//! in the address it shares (`wss://IP:PORT/ws#sha256=HEX`), so another Confab pins it.

use confab_signaling::RunningServer;
use tokio::sync::oneshot;

use super::hooks::StartServer;

/// A running hosted server and the addresses others use to reach it.
pub struct Hosted {
    pub server: RunningServer,
    /// What another Confab on the network types (`wss://192.168.1.5:8443/ws#sha256=...`).
    pub lan_url: String,
    /// Link for a browser (`https://192.168.1.5:8443/join/`); it warns about the certificate.
    pub lan_http: String,
}

pub enum HostState {
    Off,
    Starting(oneshot::Receiver<Result<Hosted, String>>),
    Running(Hosted),
    Failed(String),
}

/// What the lobby shows about the hosted server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostStatus {
    Off,
    Starting,
    Running { lan_url: String, lan_http: String },
    Failed(String),
}

/// `url#sha256=HEX` when the server has a certificate to pin.
fn pinned(url: String, server: &RunningServer) -> String {
    match server.cert_sha256() {
        Some(sha) => format!("{url}#sha256={sha}"),
        None => url,
    }
}

impl HostState {
    /// Starts the server on `runtime`; `ctx` is woken when it is up (or could not start).
    pub fn start(
        runtime: &tokio::runtime::Handle,
        start_server: &StartServer,
        port: u16,
        config_dir: Option<std::path::PathBuf>,
        ctx: egui::Context,
    ) -> Self {
        let (tx, rx) = oneshot::channel();
        let starting = start_server(port, config_dir);
        runtime.spawn(async move {
            let hosted = starting.await.map(|server| {
                let port = server.local_addr().port();
                let ip = local_ip_address::local_ip()
                    .map_or_else(|_| "127.0.0.1".to_owned(), |ip| ip.to_string());
                let (ws, http) = if server.ws_url().starts_with("wss://") {
                    ("wss", "https")
                } else {
                    ("ws", "http")
                };
                Hosted {
                    lan_url: pinned(format!("{ws}://{ip}:{port}/ws"), &server),
                    lan_http: format!("{http}://{ip}:{port}/join/"),
                    server,
                }
            });
            // The app is gone when nobody listens: the server then stops with `hosted`.
            let _ = tx.send(hosted);
            ctx.request_repaint();
        });
        Self::Starting(rx)
    }

    /// Takes the result of a start in progress, if it has come.
    pub fn poll(&mut self) {
        if let Self::Starting(rx) = self {
            match rx.try_recv() {
                Ok(Ok(hosted)) => *self = Self::Running(hosted),
                Ok(Err(e)) => *self = Self::Failed(e),
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => {
                    *self = Self::Failed("the local server stopped while starting".into())
                }
            }
        }
    }

    /// Whether a server is running or on its way (so none needs starting).
    pub fn is_wanted_already(&self) -> bool {
        matches!(self, Self::Starting(_) | Self::Running(_))
    }

    /// The address this app's own calls use, or why there is none yet.
    pub fn ws_url(&self) -> Result<String, String> {
        match self {
            Self::Running(h) => Ok(pinned(h.server.ws_url(), &h.server)),
            Self::Starting(_) => Err("the local server is still starting".into()),
            Self::Failed(e) => Err(e.clone()),
            Self::Off => Err("the local server is not running".into()),
        }
    }

    pub fn status(&self) -> HostStatus {
        match self {
            Self::Off => HostStatus::Off,
            Self::Starting(_) => HostStatus::Starting,
            Self::Running(h) => HostStatus::Running {
                lan_url: h.lan_url.clone(),
                lan_http: h.lan_http.clone(),
            },
            Self::Failed(e) => HostStatus::Failed(e.clone()),
        }
    }
}

#[cfg(test)]
// `#[tokio::test]` is each test's entry point: it may wait on the runtime it drives.
#[allow(clippy::disallowed_methods)]
mod tests {
    use confab_engine::server_trust::ServerTrust;
    use confab_engine::signaling_client::SignalingClient;
    use confab_engine::CallError;

    use super::super::hooks::Hooks;
    use super::*;

    async fn join(url: &str, trust: &ServerTrust) -> Result<(), CallError> {
        SignalingClient::join(url, None, "tester", trust)
            .await
            .map(drop)
    }

    #[tokio::test]
    async fn another_confab_pins_the_hosted_server_and_refuses_an_impostor() {
        let dir = tempfile::tempdir().unwrap();
        let server = (Hooks::default().start_server)(0, Some(dir.path().to_owned()))
            .await
            .expect("the hosted server starts");
        let sha = server.cert_sha256().expect("it serves TLS").to_owned();
        let url = pinned(server.ws_url(), &server);
        assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
        assert!(url.ends_with(&format!("/ws#sha256={sha}")), "{url}");

        // The address it shares carries the pin: accepted.
        join(&url, &ServerTrust::default()).await.expect("pinned");
        // The same pin given as a flag (`--server-cert-sha256`), with colons.
        let colons = sha
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let flag = ServerTrust {
            pin_sha256: Some(colons),
            ca_file: None,
        };
        join(&server.ws_url(), &flag).await.expect("pinned by flag");
        // Its own certificate as a CA file (`--server-ca`): the name must match, so localhost.
        let ca = ServerTrust {
            pin_sha256: None,
            ca_file: Some(dir.path().join("hosted-cert.pem")),
        };
        let by_name = server.ws_url().replace("127.0.0.1", "localhost");
        join(&by_name, &ca)
            .await
            .expect("trusted through --server-ca");

        // A wrong pin: refused, saying why.
        let wrong = format!("{}#sha256={}", server.ws_url(), "00".repeat(32));
        let err = join(&wrong, &ServerTrust::default()).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not the pinned one"), "{text}");
        assert!(
            text.contains(&sha),
            "the message names what was seen: {text}"
        );
        // No pin at all: a self-signed certificate is not trusted.
        let err = join(&server.ws_url(), &ServerTrust::default())
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::ServerUnreachable { .. }), "{err}");
        server.shutdown().await.unwrap();

        // The next run keeps the certificate, so shared addresses stay valid.
        let again = (Hooks::default().start_server)(0, Some(dir.path().to_owned()))
            .await
            .unwrap();
        assert_eq!(again.cert_sha256(), Some(sha.as_str()));
        again.shutdown().await.unwrap();
    }
}

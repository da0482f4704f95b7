//! The signaling server the app runs for its user ("Host on this computer"). It starts on the
//! app's tokio runtime and reports back through a one-shot channel that the UI polls each frame:
//! the window shows "starting" meanwhile and never waits for it.

use confab_signaling::RunningServer;
use tokio::sync::oneshot;

use super::hooks::StartServer;

/// A running hosted server and the addresses others use to reach it.
pub struct Hosted {
    pub server: RunningServer,
    /// What others on the network type (`ws://192.168.1.5:8443`).
    pub lan_url: String,
    /// Link for a browser (`http://192.168.1.5:8443/join/`).
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

impl HostState {
    /// Starts the server on `runtime`; `ctx` is woken when it is up (or could not start).
    pub fn start(
        runtime: &tokio::runtime::Handle,
        start_server: &StartServer,
        port: u16,
        ctx: egui::Context,
    ) -> Self {
        let (tx, rx) = oneshot::channel();
        let starting = start_server(port);
        runtime.spawn(async move {
            let hosted = starting.await.map(|server| {
                let port = server.local_addr().port();
                let ip = local_ip_address::local_ip()
                    .map_or_else(|_| "127.0.0.1".to_owned(), |ip| ip.to_string());
                Hosted {
                    server,
                    lan_url: format!("ws://{ip}:{port}"),
                    lan_http: format!("http://{ip}:{port}/join/"),
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
            Self::Running(h) => Ok(h.server.ws_url()),
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

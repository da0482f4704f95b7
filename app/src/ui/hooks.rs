//! Where the window gets its slow things from: cameras and the hosted signaling server. The app
//! uses the real ones; the UI tests swap in synthetic ones that take their time, to show that
//! the window keeps drawing while they do.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use confab_devices::{CaptureError, VideoSource, VideoSpec};
use confab_signaling::{RunningServer, Server, ServerConfig};

/// Opens a camera as `confab_devices::open_camera` does (runs on a device thread, never the UI's).
pub type OpenCamera = Arc<
    dyn Fn(&VideoSpec, u32, u32, u32) -> Result<Option<Box<dyn VideoSource>>, CaptureError>
        + Send
        + Sync,
>;

/// A server start in progress (runs on the app's tokio runtime, never the UI thread).
pub type ServerStart = Pin<Box<dyn Future<Output = Result<RunningServer, String>> + Send>>;

/// Starts the hosted signaling server on a port.
pub type StartServer = Arc<dyn Fn(u16) -> ServerStart + Send + Sync>;

#[derive(Clone)]
pub struct Hooks {
    pub open_camera: OpenCamera,
    pub start_server: StartServer,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            open_camera: Arc::new(confab_devices::open_camera),
            start_server: Arc::new(|port| Box::pin(start_hosted_server(port))),
        }
    }
}

/// Listens on every interface at `port`, or on any free port when that one is taken (another
/// Confab?).
async fn start_hosted_server(port: u16) -> Result<RunningServer, String> {
    match Server::start(ServerConfig::new(([0, 0, 0, 0], port).into())).await {
        Ok(server) => Ok(server),
        Err(_) => Server::start(ServerConfig::new(([0, 0, 0, 0], 0).into()))
            .await
            .map_err(|e| e.to_string()),
    }
}

//! Where the window gets its slow things from: cameras, microphones, speakers and the hosted signaling server. The app
//! uses the real ones; the UI tests swap in synthetic ones that take their time, to show that
//! the window keeps drawing while they do.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use confab_devices::{AudioSink, AudioSource, CaptureError, VideoSource, VideoSpec};
use confab_signaling::{RunningServer, Server, ServerConfig};

/// Opens a camera as `confab_devices::open_camera` does (runs on a device thread, never the UI's).
pub type OpenCamera = Arc<
    dyn Fn(&VideoSpec, u32, u32, u32) -> Result<Option<Box<dyn VideoSource>>, CaptureError>
        + Send
        + Sync,
>;

/// Opens a microphone as `confab_devices::open_mic` does (on a device thread).
pub type OpenMic =
    Arc<dyn Fn(&VideoSpec) -> Result<Option<Box<dyn AudioSource>>, CaptureError> + Send + Sync>;

/// Opens a speaker as `confab_devices::open_speaker` does (on a device thread).
pub type OpenSpeaker = Arc<dyn Fn(&str) -> Result<Box<dyn AudioSink>, CaptureError> + Send + Sync>;

/// A server start in progress (runs on the app's tokio runtime, never the UI thread).
pub type ServerStart = Pin<Box<dyn Future<Output = Result<RunningServer, String>> + Send>>;

/// Starts the hosted signaling server on a port, keeping its certificate in a config folder.
pub type StartServer = Arc<dyn Fn(u16, Option<PathBuf>) -> ServerStart + Send + Sync>;

#[derive(Clone)]
pub struct Hooks {
    pub open_camera: OpenCamera,
    pub open_mic: OpenMic,
    pub open_speaker: OpenSpeaker,
    pub start_server: StartServer,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            open_camera: Arc::new(confab_devices::open_camera),
            open_mic: Arc::new(confab_devices::open_mic),
            open_speaker: Arc::new(confab_devices::open_speaker),
            start_server: Arc::new(|port, dir| Box::pin(start_hosted_server(port, dir))),
        }
    }
}

/// Listens on every interface at `port`, or on any free port when that one is taken (another
/// Confab?): wss:// with the certificate kept in `dir` (made on first use), and only for native
/// clients and the web client it serves itself (no other web page may use it).
async fn start_hosted_server(port: u16, dir: Option<PathBuf>) -> Result<RunningServer, String> {
    let dir = dir
        .or_else(super::settings::config_dir)
        .ok_or("no config folder to keep the server's certificate in")?;
    let identity = tokio::task::spawn_blocking(move || confab_signaling::tls::self_signed(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot make the server's certificate: {e}"))?;
    let config = |port: u16| {
        let mut config = ServerConfig::new(([0, 0, 0, 0], port).into());
        config.tls = Some((identity.cert.clone(), identity.key.clone()));
        config.same_origin_only = true;
        config
    };
    match Server::start(config(port)).await {
        Ok(server) => Ok(server),
        Err(_) => Server::start(config(0)).await.map_err(|e| e.to_string()),
    }
}

//! What the app remembers between runs, in the OS config folder (`settings.json` under
//! `directories::ProjectDirs`): name, devices, server choice, ICE servers.

use std::path::PathBuf;

use confab_codecs::apm::ApmSettings;
use confab_protocol::RoomCode;
use serde::{Deserialize, Serialize};

use crate::call_config::{CallConfig, VideoChoice};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMode {
    /// Run the signaling server inside the app, for people on the same network.
    Host,
    /// Use a signaling server somewhere else.
    Remote,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub name: String,
    /// Device specs as the command line takes them (`default`, a name, `test`, `none`).
    pub camera: String,
    pub mic: String,
    pub speaker: String,
    pub server_mode: ServerMode,
    pub server_url: String,
    pub host_port: u16,
    /// One URL per line: stun:HOST:PORT.
    pub stun: String,
    /// turn:HOST:PORT?transport=udp
    pub turn: String,
    pub turn_user: String,
    pub turn_pass: String,
    pub relay_only: bool,
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    /// The lobby's toggles: whether a call starts with the microphone and camera on.
    pub mic_on: bool,
    pub camera_on: bool,
    pub last_room: String,
    /// Where received files go; empty for the OS Downloads folder.
    pub download_dir: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name: std::env::var("USER")
                .or_else(|_| std::env::var("USERNAME"))
                .unwrap_or_default(),
            camera: "default".into(),
            mic: "default".into(),
            speaker: "default".into(),
            server_mode: ServerMode::Host,
            server_url: String::new(),
            host_port: 8443,
            stun: String::new(),
            turn: String::new(),
            turn_user: String::new(),
            turn_pass: String::new(),
            relay_only: false,
            echo_cancellation: true,
            noise_suppression: true,
            mic_on: true,
            camera_on: true,
            last_room: String::new(),
            download_dir: String::new(),
        }
    }
}

/// Where settings live: `$CONFAB_CONFIG_DIR`, or the OS config folder.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CONFAB_CONFIG_DIR") {
        return Some(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("app", "Confab", "Confab").map(|d| d.config_dir().to_owned())
}

impl Settings {
    /// Settings from `dir` (the config folder when `None`); defaults when there are none.
    pub fn load(dir: Option<&std::path::Path>) -> Self {
        let Some(path) = dir
            .map(ToOwned::to_owned)
            .or_else(config_dir)
            .map(|d| d.join("settings.json"))
        else {
            return Self::default();
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|err| {
                tracing::warn!(%err, path = %path.display(), "settings unreadable; using defaults");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    pub fn save(&self, dir: Option<&std::path::Path>) -> std::io::Result<()> {
        let dir = dir
            .map(ToOwned::to_owned)
            .or_else(config_dir)
            .ok_or_else(|| std::io::Error::other("no config folder"))?;
        std::fs::create_dir_all(&dir)?;
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        // Write then rename: a crash mid-write never leaves half a file.
        let tmp = dir.join("settings.json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, dir.join("settings.json"))
    }

    /// The call these settings make, to `room` (a new room when `None`).
    pub fn call_config(&self, room: Option<RoomCode>) -> CallConfig {
        CallConfig {
            room,
            server_url: match self.server_mode {
                ServerMode::Host => None,
                ServerMode::Remote => Some(self.server_url.trim().to_owned()),
            },
            name: Some(self.display_name()),
            camera: self.camera.clone(),
            mic: self.mic.clone(),
            speaker: self.speaker.clone(),
            screen: None,
            video: VideoChoice::default(),
            apm: ApmSettings {
                echo_cancellation: self.echo_cancellation,
                noise_suppression: self.noise_suppression,
                gain_control: true,
                high_pass_filter: true,
            },
            extra_ice_servers: self.ice_servers(),
            relay_only: self.relay_only,
            bind: Vec::new(),
            receive_dir: self.receive_dir(),
            auto_accept_files: false,
            max_file_bytes: confab_engine::data_link::DEFAULT_MAX_FILE_BYTES,
            eager_offer: false,
            server_trust: Default::default(),
        }
    }

    /// The name others see: the one entered, or "Guest".
    pub fn display_name(&self) -> String {
        match self.name.trim() {
            "" => "Guest".into(),
            name => name.to_owned(),
        }
    }

    /// Where received files go; `None` for the Downloads folder.
    pub fn receive_dir(&self) -> Option<PathBuf> {
        match self.download_dir.trim() {
            "" => None,
            dir => Some(PathBuf::from(dir)),
        }
    }

    /// ICE servers from the STUN/TURN settings.
    pub fn ice_servers(&self) -> Vec<confab_protocol::IceServer> {
        let mut servers: Vec<confab_protocol::IceServer> = self
            .stun
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|url| confab_protocol::IceServer {
                urls: vec![url.to_owned()],
                username: None,
                credential: None,
            })
            .collect();
        if !self.turn.trim().is_empty() {
            servers.push(confab_protocol::IceServer {
                urls: vec![self.turn.trim().to_owned()],
                username: Some(self.turn_user.clone()),
                credential: Some(self.turn_pass.clone()),
            });
        }
        servers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let at = Some(dir.path());
        let s = Settings {
            name: "Ada".into(),
            stun: "stun:a:3478\n\n stun:b:3478 ".into(),
            turn: "turn:t:3478".into(),
            ..Settings::default()
        };
        s.save(at).unwrap();
        let loaded = Settings::load(at);
        assert_eq!(loaded, s);
        let servers = loaded.ice_servers();
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[1].urls, vec!["stun:b:3478"]);
        // A damaged file falls back to defaults instead of failing.
        std::fs::write(dir.path().join("settings.json"), "{not json").unwrap();
        assert_eq!(Settings::load(at), Settings::default());
        // Unknown and missing fields are fine (older or newer versions of the app).
        std::fs::write(
            dir.path().join("settings.json"),
            r#"{"name":"Bob","future":1}"#,
        )
        .unwrap();
        assert_eq!(Settings::load(at).name, "Bob");
    }
}

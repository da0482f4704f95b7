//! `CallConfig`: everything that shapes one call, built from the `join` flags or from the app's
//! settings, and the one place where it becomes the engine's `SessionConfig`. The headless join
//! and the window both go through it, so a flag honoured by one is honoured by the other.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::anyhow;
use confab_codecs::apm::ApmSettings;
use confab_codecs::h264::{default_bitrate_bps, EncoderSettings};
use confab_engine::peer::NetworkSettings;
use confab_engine::session::{ServerTrust, SessionConfig};
use confab_protocol::{IceServer, RoomCode};

use crate::cli::{parse_ice_server, JoinArgs, VideoSize};

/// Opus bitrate for every call.
const AUDIO_BITRATE_BPS: i32 = 32_000;

/// The video we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoChoice {
    pub size: VideoSize,
    pub fps: u32,
    /// `None`: chosen from size and frame rate.
    pub bitrate_kbps: Option<u32>,
}

impl Default for VideoChoice {
    fn default() -> Self {
        Self {
            size: VideoSize {
                width: 1280,
                height: 720,
            },
            fps: 30,
            bitrate_kbps: None,
        }
    }
}

impl VideoChoice {
    pub fn bitrate_bps(&self) -> u32 {
        self.bitrate_kbps.map_or_else(
            || default_bitrate_bps(self.size.width, self.size.height, self.fps),
            |k| k * 1000,
        )
    }
}

/// One call, as the person asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallConfig {
    /// `None` asks the server for a new room.
    pub room: Option<RoomCode>,
    /// `None`: the signaling server the app hosts itself.
    pub server_url: Option<String>,
    /// `None`: the login name (or "Guest").
    pub name: Option<String>,
    /// Device specs as the command line takes them (`default`, a name or index, `test`, `none`).
    pub camera: String,
    pub mic: String,
    pub speaker: String,
    /// Share this screen or window from the start instead of the camera.
    pub screen: Option<String>,
    pub video: VideoChoice,
    pub apm: ApmSettings,
    pub extra_ice_servers: Vec<IceServer>,
    pub relay_only: bool,
    /// Empty: all interfaces and loopback.
    pub bind: Vec<SocketAddr>,
    /// `None`: the Downloads folder.
    pub receive_dir: Option<PathBuf>,
    /// Received files are saved without asking (`--accept-files`: nobody is there to click
    /// Accept); otherwise the window asks, and a headless call declines.
    pub auto_accept_files: bool,
    /// Larger received files are declined before anything is written.
    pub max_file_bytes: u64,
    pub eager_offer: bool,
    /// A pinned server certificate or a CA file (`--server-cert-sha256`, `--server-ca`).
    pub server_trust: ServerTrust,
}

impl CallConfig {
    /// The call `confab join` asks for; files are accepted without asking only with
    /// `--accept-files`.
    pub fn from_join_args(args: &JoinArgs) -> anyhow::Result<Self> {
        let room = match args.room.trim() {
            "new" => None,
            text => Some(RoomCode::parse(text)?),
        };
        let extra_ice_servers = args
            .ice_server
            .iter()
            .map(|s| parse_ice_server(s).map_err(|e| anyhow!(e)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Some(pin) = &args.server_cert_sha256 {
            confab_engine::server_trust::parse_fingerprint(pin)?;
        }
        Ok(Self {
            room,
            server_url: Some(args.server.clone()),
            name: args.name.clone(),
            camera: args.camera.clone(),
            mic: args.mic.clone(),
            speaker: args.speaker.clone(),
            screen: args.screen.clone(),
            video: VideoChoice {
                size: args.video_size,
                fps: args.fps,
                bitrate_kbps: args.video_bitrate,
            },
            apm: ApmSettings {
                echo_cancellation: !args.no_aec,
                noise_suppression: !args.no_ns,
                gain_control: !args.no_agc,
                high_pass_filter: !args.no_hpf,
            },
            extra_ice_servers,
            relay_only: args.relay_only,
            bind: args.bind.clone(),
            receive_dir: args.receive_dir.clone(),
            auto_accept_files: args.accept_files,
            max_file_bytes: args.max_file_mb.saturating_mul(1024 * 1024),
            eager_offer: args.eager_offer,
            server_trust: ServerTrust {
                pin_sha256: args.server_cert_sha256.clone(),
                ca_file: args.server_ca.clone(),
            },
        })
    }

    /// The engine's view of this call, signaling through `server_url`.
    pub fn session_config(&self, server_url: String) -> SessionConfig {
        let bind = if self.bind.is_empty() {
            default_bind(&server_url)
        } else {
            self.bind.clone()
        };
        SessionConfig {
            server_url,
            server_trust: self.server_trust.clone(),
            room: self.room.clone(),
            name: self.name.clone().unwrap_or_else(default_name),
            extra_ice_servers: self.extra_ice_servers.clone(),
            relay_only: self.relay_only,
            bind,
            video: EncoderSettings {
                bitrate_bps: self.video.bitrate_bps(),
                max_fps: self.video.fps as f32,
                screen: false,
            },
            audio_bitrate_bps: AUDIO_BITRATE_BPS,
            apm: self.apm,
            receive_dir: self.receive_dir.clone().unwrap_or_else(default_receive_dir),
            auto_accept_files: self.auto_accept_files,
            max_file_bytes: self.max_file_bytes,
            eager_offer: self.eager_offer,
            test: Default::default(),
        }
    }
}

/// The login name, or "Guest".
/// Where to gather candidates when no `--bind` is given: every interface, and loopback too only
/// when the signaling server is on this machine (a call between two local processes). A loopback
/// candidate offered to someone elsewhere only earns TURN "403 Forbidden IP" errors.
pub fn default_bind(server_url: &str) -> Vec<std::net::SocketAddr> {
    let host = server_url
        .split("://")
        .nth(1)
        .unwrap_or(server_url)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    // "[::1]:8443", "127.0.0.1:8443", "localhost:8443": strip the port.
    let host = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        NetworkSettings::default_bind()
    } else {
        vec!["0.0.0.0:0"
            .parse()
            .expect("invariant: a valid socket address")]
    }
}

pub fn default_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "Guest".to_owned())
}

/// The Downloads folder (the current one when there is none).
pub fn default_receive_dir() -> PathBuf {
    directories::UserDirs::new()
        .and_then(|d| d.download_dir().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn join_args(args: &[&str]) -> JoinArgs {
        let cli = crate::cli::Cli::try_parse_from(args).expect("the test's flags parse");
        match cli.command {
            Some(crate::cli::Command::Join(args)) => args,
            _ => panic!("not a join"),
        }
    }

    #[test]
    fn loopback_candidates_only_for_a_server_on_this_machine() {
        let all: Vec<std::net::SocketAddr> = vec!["0.0.0.0:0".parse().unwrap()];
        for (url, local) in [
            ("ws://127.0.0.1:8443", true),
            ("wss://localhost:8443/ws", true),
            ("ws://[::1]:9000", true),
            ("ws://127.9.9.9", true),
            ("wss://confab.example.org:8443", false),
            ("ws://192.168.1.20:8443", false),
            ("ws://[2001:db8::1]:8443", false),
        ] {
            let bind = default_bind(url);
            if local {
                assert_eq!(bind, NetworkSettings::default_bind(), "{url}");
            } else {
                assert_eq!(bind, all, "{url}");
            }
        }
    }

    #[test]
    fn defaults_match_what_the_headless_join_always_used() {
        let config = CallConfig::from_join_args(&join_args(&["confab", "join", "new"])).unwrap();
        assert_eq!(config.room, None);
        let s = config.session_config("ws://127.0.0.1:8443".into());
        assert_eq!(s.bind, NetworkSettings::default_bind());
        assert_eq!(s.video.bitrate_bps, default_bitrate_bps(1280, 720, 30));
        assert_eq!(s.video.max_fps, 30.0);
        assert_eq!(s.audio_bitrate_bps, 32_000);
        assert!(s.apm.echo_cancellation && s.apm.noise_suppression);
        assert!(s.apm.gain_control && s.apm.high_pass_filter);
        assert_eq!(s.receive_dir, default_receive_dir());
        assert_eq!(s.name, default_name());
        assert!(!s.auto_accept_files && !s.relay_only && !s.eager_offer);
    }

    #[test]
    fn files_are_accepted_only_when_asked_and_within_the_cap() {
        let plain =
            CallConfig::from_join_args(&join_args(&["confab", "join", "new", "--headless"]))
                .unwrap();
        assert!(!plain.auto_accept_files, "headless alone accepts nothing");
        assert_eq!(plain.max_file_bytes, 2048 * 1024 * 1024);
        let asked = CallConfig::from_join_args(&join_args(&[
            "confab",
            "join",
            "new",
            "--headless",
            "--accept-files",
            "--max-file-mb",
            "3",
        ]))
        .unwrap();
        let s = asked.session_config("ws://127.0.0.1:8443".into());
        assert!(s.auto_accept_files);
        assert_eq!(s.max_file_bytes, 3 * 1024 * 1024);
    }

    #[test]
    fn bad_flags_are_refused() {
        for args in [
            &["confab", "join", "not a code"][..],
            &["confab", "join", "new", "--ice-server", "http://x"][..],
        ] {
            assert!(
                CallConfig::from_join_args(&join_args(args)).is_err(),
                "{args:?}"
            );
        }
    }
}

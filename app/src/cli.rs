//! The command line of `confab`, a contract scripts rely on (README, "Using it"). `confab --help`
//! documents every flag.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use confab_signaling::ServeArgs;

/// Confab: video calls straight from one computer to another.
///
/// With no command, opens the app window; with a confab://join/CODE link, opens it in that room
/// (or hands the link to the Confab already running).
#[derive(Parser)]
#[command(
    name = "confab",
    version,
    propagate_version = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A confab://join/CODE?server=URL link to open (what the desktop passes when one is clicked).
    #[arg(value_name = "LINK")]
    pub link: Option<String>,
    /// Keep no window: only take links handed over by later launches and print them (for tests).
    #[arg(long, hide = true)]
    pub listen_links: bool,
}

// Parsed once at start: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Join a room (a code like kfq-wmzt-pxd, a link, or `new` for a new room).
    Join(JoinArgs),
    /// Run the signaling server that matches room codes and relays SDP and ICE candidates.
    Serve(ServeArgs),
    /// Read the frame stamp of the test pattern out of a screenshot (for the window tests).
    #[command(hide = true)]
    DebugStamp {
        /// A PNG screenshot.
        image: std::path::PathBuf,
        /// Where the video is in it: X,Y,W,H in pixels.
        #[arg(long)]
        rect: String,
        /// The size of the video that was sent.
        #[arg(long)]
        size: VideoSize,
    },
    /// List cameras (with their formats), microphones, speakers, screens and windows.
    Devices {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// A video size like 1280x720.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSize {
    pub width: u32,
    pub height: u32,
}

impl std::str::FromStr for VideoSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (w, h) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("{s:?} is not a size like 1280x720"))?;
        let (width, height): (u32, u32) = (
            w.trim().parse().map_err(|_| format!("{s:?}: bad width"))?,
            h.trim().parse().map_err(|_| format!("{s:?}: bad height"))?,
        );
        if !(16..=3840).contains(&width)
            || !(16..=2160).contains(&height)
            || width % 2 == 1
            || height % 2 == 1
        {
            return Err(format!(
                "{s:?}: width and height must be even, 16..3840 x 16..2160"
            ));
        }
        Ok(Self { width, height })
    }
}

#[derive(Debug, Clone, Args)]
pub struct JoinArgs {
    /// Room code (kfq-wmzt-pxd), a link ending in one (a confab://join/CODE?server=URL link also
    /// sets the server), or `new` to have the server make a room.
    pub room: String,
    /// Signaling server, ws:// or wss:// (the /ws path is added when missing).
    #[arg(
        long,
        value_name = "URL",
        default_value = "ws://127.0.0.1:8443",
        env = "CONFAB_SERVER"
    )]
    pub server: String,
    /// Accept only the server certificate with this SHA-256 (hex; a self-signed team server or
    /// another Confab's hosted server). An address ending in `#sha256=HEX` pins the same way.
    #[arg(long, value_name = "HEX")]
    pub server_cert_sha256: Option<String>,
    /// Trust the CA certificates in this PEM file (instead of the web's) for a wss:// server.
    #[arg(long, value_name = "FILE.pem")]
    pub server_ca: Option<PathBuf>,
    /// Your name as the other person sees it.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// No window: run the call from the command line (for scripts, tests and benchmarks).
    #[arg(long)]
    pub headless: bool,
    /// Camera: a device name or index, `test` (stamped test pattern), `file:PATH.y4m`, or `none`.
    #[arg(long, value_name = "SPEC", default_value = "default")]
    pub camera: String,
    /// Microphone: a device name or index, `test` (test signal; `test:2` its second voice, for a
    /// second peer), `file:PATH.wav`, or `none`.
    #[arg(long, value_name = "SPEC", default_value = "default")]
    pub mic: String,
    /// Speaker: a device name or index, `file:PATH.wav`, or `null`.
    #[arg(long, value_name = "SPEC", default_value = "default")]
    pub speaker: String,
    /// Share a screen instead of the camera: a screen index or name, or `window:TITLE` (a window
    /// whose title, or else whose application's name, contains TITLE).
    #[arg(long, value_name = "SPEC")]
    pub screen: Option<String>,
    /// Turn off echo cancellation.
    #[arg(long)]
    pub no_aec: bool,
    /// Turn off noise suppression.
    #[arg(long)]
    pub no_ns: bool,
    /// Turn off automatic gain control.
    #[arg(long)]
    pub no_agc: bool,
    /// Turn off the high-pass filter.
    #[arg(long)]
    pub no_hpf: bool,
    /// Size of the video you send.
    #[arg(long, value_name = "WxH", default_value = "1280x720")]
    pub video_size: VideoSize,
    /// Frame rate of the video you send.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub fps: u32,
    /// Video bitrate in kbit/s (default: chosen from size and frame rate).
    #[arg(long, value_name = "KBPS", value_parser = clap::value_parser!(u32).range(50..=20_000))]
    pub video_bitrate: Option<u32>,
    /// Leave the call after this many seconds in it.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Give up if nobody is connected within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub wait: f64,
    /// Write call statistics as JSON to FILE when leaving.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Record the received video to FILE.y4m.
    #[arg(long, value_name = "FILE.y4m")]
    pub record_video: Option<PathBuf>,
    /// Record the received audio to FILE.wav.
    #[arg(long, value_name = "FILE.wav")]
    pub record_audio: Option<PathBuf>,
    /// Send a chat message once connected (repeatable; sent in order).
    #[arg(long, value_name = "TEXT")]
    pub chat: Vec<String>,
    /// Send a file once connected (repeatable).
    #[arg(long, value_name = "PATH")]
    pub send_file: Vec<PathBuf>,
    /// Save files the other person sends without asking (headless calls decline them otherwise).
    #[arg(long)]
    pub accept_files: bool,
    /// Decline received files larger than this many MiB (and any that would fill the disk).
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    pub max_file_mb: u64,
    /// Where received files are saved (default: your Downloads folder).
    #[arg(long, value_name = "DIR")]
    pub receive_dir: Option<PathBuf>,
    /// Extra STUN/TURN server: stun:HOST:PORT or turn:USER:PASS@HOST:PORT (repeatable).
    #[arg(long, value_name = "URL")]
    pub ice_server: Vec<String>,
    /// Only connect through a TURN relay.
    #[arg(long)]
    pub relay_only: bool,
    /// Local UDP address to gather ICE candidates on (repeatable; default: all interfaces and loopback).
    #[arg(long, value_name = "ADDR")]
    pub bind: Vec<SocketAddr>,
    /// Send an offer as soon as the other person joins, even if they offer too (negotiation tests).
    #[arg(long, hide = true)]
    pub eager_offer: bool,
    /// Test hook: hold encoded video this long before sending (capture timestamps kept).
    #[arg(long, hide = true, value_name = "MS", default_value_t = 0)]
    pub test_video_delay_ms: u64,
    /// Test hook: hold encoded audio this long before sending (capture timestamps kept).
    #[arg(long, hide = true, value_name = "MS", default_value_t = 0)]
    pub test_audio_delay_ms: u64,
    /// Test hook: encoding a 720p frame takes MS longer (in proportion to a frame's pixels), as
    /// on a slower computer.
    #[arg(long, hide = true, value_name = "MS", default_value_t = 0)]
    pub test_slow_encoder_ms: u64,
    /// Test hook: decoding a 720p frame takes MS longer (in proportion to a frame's pixels), as
    /// on a slower computer.
    #[arg(long, hide = true, value_name = "MS", default_value_t = 0)]
    pub test_slow_decoder_ms: u64,
    /// Test hook: never ask the other side for less video, however far behind the decoder is
    /// (to measure what asking does).
    #[arg(long, hide = true)]
    pub test_no_video_limit: bool,
    /// Test hook: play received audio and video as they come, without lip sync.
    #[arg(long, hide = true)]
    pub no_lip_sync: bool,
    /// Test hook: MS milliseconds after connecting, switch the camera to SPEC (as `--camera`).
    #[arg(long, hide = true, value_name = "MS:SPEC")]
    pub test_switch_camera: Option<String>,
    /// Test hook: MS milliseconds after connecting, switch the microphone to SPEC (as `--mic`).
    #[arg(long, hide = true, value_name = "MS:SPEC")]
    pub test_switch_mic: Option<String>,
    /// Test hook: MS milliseconds after connecting, switch the speaker to SPEC (as `--speaker`).
    #[arg(long, hide = true, value_name = "MS:SPEC")]
    pub test_switch_speaker: Option<String>,
}

/// `turn:user:pass@host:port?transport=udp` -> (`turn:host:port?transport=udp`, user, pass).
pub fn parse_ice_server(spec: &str) -> Result<confab_protocol::IceServer, String> {
    let (scheme, rest) = spec
        .split_once(':')
        .ok_or_else(|| format!("{spec:?} is not a stun: or turn: URL"))?;
    if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") {
        return Err(format!("{spec:?} is not a stun: or turn: URL"));
    }
    let (credentials, host) = match rest.rsplit_once('@') {
        Some((creds, host)) => (Some(creds), host),
        None => (None, rest),
    };
    if host.is_empty() {
        return Err(format!("{spec:?} has no host"));
    }
    let (username, credential) = match credentials {
        Some(c) => {
            let (u, p) = c
                .split_once(':')
                .ok_or_else(|| format!("{spec:?}: credentials are USER:PASS"))?;
            (Some(u.to_owned()), Some(p.to_owned()))
        }
        None if scheme.starts_with("turn") => {
            return Err(format!("{spec:?}: TURN needs USER:PASS@"))
        }
        None => (None, None),
    };
    Ok(confab_protocol::IceServer {
        urls: vec![format!("{scheme}:{host}")],
        username,
        credential,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(
            "640x360".parse::<VideoSize>(),
            Ok(VideoSize {
                width: 640,
                height: 360
            })
        );
        for bad in ["640", "641x360", "0x0", "99999x2", "axb"] {
            assert!(bad.parse::<VideoSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ice_servers() {
        let s = parse_ice_server("turn:alice:secret@10.0.0.1:3478?transport=udp").unwrap();
        assert_eq!(s.urls, vec!["turn:10.0.0.1:3478?transport=udp"]);
        assert_eq!(
            (s.username.as_deref(), s.credential.as_deref()),
            (Some("alice"), Some("secret"))
        );
        let s = parse_ice_server("stun:stun.example:3478").unwrap();
        assert_eq!(
            (s.urls[0].as_str(), s.username),
            ("stun:stun.example:3478", None)
        );
        for bad in ["http://x", "turn:host:3478", "turn:nouser@h", "stun:"] {
            assert!(parse_ice_server(bad).is_err(), "{bad}");
        }
    }
}

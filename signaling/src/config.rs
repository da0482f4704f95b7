//! Command-line flags of `confab serve` / `confab-signal`, and the validated server configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use confab_protocol::IceServer;

/// Flags shared by `confab serve` and `confab-signal`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free one; the chosen address is printed).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM). With --tls-key, serves wss:// and https:// instead of ws://.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// STUN server handed to clients, e.g. stun:stun.example.org:3478 (repeatable).
    #[arg(long = "stun", value_name = "URL")]
    pub stun: Vec<String>,
    /// TURN server handed to clients, e.g. turn:turn.example.org:3478?transport=udp (repeatable).
    /// Needs --turn-user and --turn-pass, or --turn-secret.
    #[arg(long = "turn", value_name = "URL")]
    pub turn: Vec<String>,
    /// Static TURN username (coturn --user).
    #[arg(
        long,
        value_name = "U",
        requires = "turn_pass",
        conflicts_with = "turn_secret"
    )]
    pub turn_user: Option<String>,
    /// Static TURN password.
    #[arg(long, value_name = "P", requires = "turn_user")]
    pub turn_pass: Option<String>,
    /// coturn's shared secret (--use-auth-secret --static-auth-secret): each client gets its own
    /// time-limited credentials (username = expiry:name, password = base64(HMAC-SHA1)).
    #[arg(
        long,
        value_name = "S",
        env = "CONFAB_TURN_SECRET",
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,
    /// Lifetime of minted TURN credentials, in seconds. coturn checks the expiry only when an
    /// allocation is made, so a call that started keeps its relay; a short lifetime only means a
    /// leaked credential is soon worthless. Clients ask for fresh ones before an ICE restart.
    #[arg(long, value_name = "SECS", default_value_t = 10 * 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub turn_ttl: u64,
    /// TURN credentials handed out per client address a minute (a burst of as many is allowed).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub turn_rate: u32,
    /// People per room.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=64))]
    pub room_size: u16,
    /// Messages per second a client may send on average (bursts of 4x are allowed).
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: u32,
    /// Bytes per second a client may send on average (bursts of 4x are allowed; at least 16384,
    /// so that a burst holds the largest message).
    #[arg(long, value_name = "BYTES", default_value_t = 32 * 1024, value_parser = clap::value_parser!(u32).range(16 * 1024..))]
    pub byte_rate_limit: u32,
    /// Seconds of silence (no message, no pong) after which a client is dropped and its seat freed.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Seconds a connection may stay outside a room (after connecting or leaving) before it is
    /// closed.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub join_timeout: u64,
    /// WebSocket connections from one address (an IPv6 /64 counts as one address). Behind a
    /// reverse proxy every client has the proxy's address: raise it there.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns_per_ip: u32,
    /// WebSocket connections in total.
    #[arg(long, value_name = "N", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns: u32,
    /// Key that signs resume tokens: a server restarted with the same key gives clients their
    /// seats back. Without it a random key is made at start (resumes then need the same run).
    #[arg(
        long,
        value_name = "KEY",
        env = "CONFAB_RESUME_KEY",
        hide_env_values = true
    )]
    pub resume_key: Option<String>,
    /// Seconds a seat is kept after its socket drops, for the client to resume (0: freed at once).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub resume_grace: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--turn {0} needs credentials: --turn-user and --turn-pass, or --turn-secret")]
    TurnWithoutCredentials(String),
    #[error("TURN credentials were given but no --turn URL")]
    CredentialsWithoutTurn,
    #[error("{flag} {url:?} is not a {scheme} URL (expected e.g. {example})")]
    BadUrl {
        flag: &'static str,
        url: String,
        scheme: &'static str,
        example: &'static str,
    },
}

/// How clients authenticate to TURN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnAuth {
    Static {
        username: String,
        password: String,
    },
    /// coturn's REST API scheme: per-client credentials from a shared secret.
    SharedSecret {
        secret: String,
        ttl: Duration,
    },
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub stun: Vec<String>,
    pub turn: Vec<String>,
    pub turn_auth: Option<TurnAuth>,
    pub room_size: usize,
    pub rate_per_sec: u32,
    /// Average bytes a second one client may send (bursts of 4x).
    pub byte_rate_per_sec: u32,
    pub idle_timeout: Duration,
    /// How long a connection may stay outside a room.
    pub join_timeout: Duration,
    /// TURN credentials handed out per client address a minute.
    pub turn_mints_per_minute: u32,
    pub max_conns_per_ip: usize,
    pub max_conns: usize,
    /// Bytes of messages waiting for one client's socket; beyond it the client is cut off.
    pub outbound_queue_bytes: usize,
    /// Refuse /ws to a browser page from another origin (a page the server did not serve):
    /// the hosted server sets it, so no web page a person visits can use it.
    pub same_origin_only: bool,
    /// Signs resume tokens.
    pub resume_key: Vec<u8>,
    /// How long a dropped client's seat is kept for it to resume.
    pub resume_grace: Duration,
}

/// A key for resume tokens that lives as long as this server.
fn random_key() -> Vec<u8> {
    use std::hash::{BuildHasher as _, Hasher as _};
    // Two std SipHash keys (random per process) are 128 bits no one outside this process knows.
    (0..4)
        .flat_map(|i: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i);
            h.finish().to_le_bytes()
        })
        .collect()
}

/// Bytes of messages that may wait for one client's socket (16 of the largest messages).
pub const OUTBOUND_QUEUE_BYTES: usize = 1024 * 1024;

impl ServerConfig {
    /// A plain ws:// server on `listen` with the default limits and no ICE servers.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            tls: None,
            stun: Vec::new(),
            turn: Vec::new(),
            turn_auth: None,
            room_size: 2,
            rate_per_sec: 50,
            byte_rate_per_sec: 32 * 1024,
            idle_timeout: Duration::from_secs(30),
            join_timeout: Duration::from_secs(10),
            turn_mints_per_minute: 10,
            max_conns_per_ip: 64,
            max_conns: 20_000,
            outbound_queue_bytes: OUTBOUND_QUEUE_BYTES,
            same_origin_only: false,
            resume_key: random_key(),
            resume_grace: Duration::from_secs(30),
        }
    }

    /// Whether clients get TURN servers (with credentials) from this server.
    pub fn has_turn(&self) -> bool {
        !self.turn.is_empty() && self.turn_auth.is_some()
    }

    /// The ICE servers that need no credentials (STUN), for a client not yet entitled to TURN.
    pub fn stun_servers(&self) -> Vec<IceServer> {
        if self.stun.is_empty() {
            return Vec::new();
        }
        vec![IceServer {
            urls: self.stun.clone(),
            username: None,
            credential: None,
        }]
    }

    /// The ICE servers that a client with `name` should use, with fresh TURN credentials.
    pub fn ice_servers_for(&self, name: &str, now_unix: u64) -> Vec<IceServer> {
        let mut servers = self.stun_servers();
        if let (false, Some(auth)) = (self.turn.is_empty(), &self.turn_auth) {
            let (username, credential) = match auth {
                TurnAuth::Static { username, password } => (username.clone(), password.clone()),
                TurnAuth::SharedSecret { secret, ttl } => {
                    crate::turn::mint_credentials(secret, name, now_unix + ttl.as_secs())
                }
            };
            servers.push(IceServer {
                urls: self.turn.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        servers
    }
}

fn check_urls(
    urls: &[String],
    flag: &'static str,
    schemes: &[&str],
    scheme: &'static str,
    example: &'static str,
) -> Result<(), ConfigError> {
    for url in urls {
        let ok = schemes.iter().any(|s| {
            url.strip_prefix(s)
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|host| !host.is_empty())
        });
        if !ok {
            return Err(ConfigError::BadUrl {
                flag,
                url: url.clone(),
                scheme,
                example,
            });
        }
    }
    Ok(())
}

impl TryFrom<ServeArgs> for ServerConfig {
    type Error = ConfigError;

    fn try_from(args: ServeArgs) -> Result<Self, Self::Error> {
        check_urls(
            &args.stun,
            "--stun",
            &["stun", "stuns"],
            "stun:",
            "stun:host:3478",
        )?;
        check_urls(
            &args.turn,
            "--turn",
            &["turn", "turns"],
            "turn:",
            "turn:host:3478?transport=udp",
        )?;
        let turn_auth = match (args.turn_user, args.turn_pass, args.turn_secret) {
            (Some(username), Some(password), None) => Some(TurnAuth::Static { username, password }),
            (None, None, Some(secret)) => Some(TurnAuth::SharedSecret {
                secret,
                ttl: Duration::from_secs(args.turn_ttl),
            }),
            // clap's `requires`/`conflicts_with` rule out the other combinations.
            _ => None,
        };
        match (&turn_auth, args.turn.first()) {
            (None, Some(url)) => return Err(ConfigError::TurnWithoutCredentials(url.clone())),
            (Some(_), None) => return Err(ConfigError::CredentialsWithoutTurn),
            _ => {}
        }
        Ok(Self {
            listen: args.listen,
            tls: args.tls_cert.zip(args.tls_key),
            stun: args.stun,
            turn: args.turn,
            turn_auth,
            room_size: usize::from(args.room_size),
            rate_per_sec: args.rate_limit,
            byte_rate_per_sec: args.byte_rate_limit,
            idle_timeout: Duration::from_secs(args.idle_timeout),
            join_timeout: Duration::from_secs(args.join_timeout),
            turn_mints_per_minute: args.turn_rate,
            max_conns_per_ip: args.max_conns_per_ip as usize,
            max_conns: args.max_conns as usize,
            outbound_queue_bytes: OUTBOUND_QUEUE_BYTES,
            same_origin_only: false,
            resume_key: args.resume_key.map_or_else(random_key, |k| k.into_bytes()),
            resume_grace: Duration::from_secs(args.resume_grace),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<ServerConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        ServerConfig::try_from(cli.serve).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_sensible() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(config.room_size, 2);
        assert!(config.tls.is_none());
        assert!(config.ice_servers_for("x", 0).is_empty());
        let defaults = ServerConfig::new(config.listen);
        assert_eq!(config.join_timeout, defaults.join_timeout);
        assert_eq!(config.join_timeout, Duration::from_secs(10));
        assert_eq!(config.byte_rate_per_sec, defaults.byte_rate_per_sec);
        assert_eq!(config.turn_mints_per_minute, 10);
        assert_eq!(config.max_conns_per_ip, 64);
        assert_eq!(config.max_conns, 20_000);
        let minted = parse(&["--turn", "turn:t", "--turn-secret", "s"]).unwrap();
        assert_eq!(
            minted.turn_auth,
            Some(TurnAuth::SharedSecret {
                secret: "s".into(),
                ttl: Duration::from_secs(600)
            }),
            "credentials live minutes, not a day"
        );
    }

    #[test]
    fn bad_flag_combinations_are_refused_with_a_reason() {
        let cases: &[(&[&str], &str)] = &[
            (&["--turn", "turn:t:3478"], "needs credentials"),
            (&["--turn-secret", "s"], "no --turn URL"),
            (&["--turn", "turn:t", "--turn-user", "u"], "--turn-pass"),
            (&["--stun", "http://x"], "not a stun: URL"),
            (
                &["--turn", "stun:x", "--turn-secret", "s"],
                "not a turn: URL",
            ),
            (&["--tls-cert", "a.pem"], "--tls-key"),
            (
                &[
                    "--turn",
                    "turn:t",
                    "--turn-user",
                    "u",
                    "--turn-pass",
                    "p",
                    "--turn-secret",
                    "s",
                ],
                "cannot be used with",
            ),
            (&["--room-size", "1"], "not in 2..=64"),
            (&["--byte-rate-limit", "100"], "not in 16384.."),
            (&["--max-conns-per-ip", "0"], "not in 1.."),
            (&["--turn-ttl", "0"], "not in 1.."),
        ];
        for (args, expected) in cases {
            let err = parse(args).map(|_| ()).unwrap_err();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }

    #[test]
    fn ice_servers_carry_static_or_minted_credentials() {
        let config = parse(&[
            "--stun",
            "stun:s:3478",
            "--turn",
            "turn:t:3478",
            "--turn-user",
            "u",
            "--turn-pass",
            "p",
        ])
        .unwrap();
        let servers = config.ice_servers_for("ada", 0);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, vec!["stun:s:3478"]);
        assert_eq!(servers[1].username.as_deref(), Some("u"));
        assert_eq!(servers[1].credential.as_deref(), Some("p"));

        let config = parse(&[
            "--turn",
            "turn:t:3478",
            "--turn-secret",
            "s",
            "--turn-ttl",
            "60",
        ])
        .unwrap();
        let servers = config.ice_servers_for("ada", 1_000);
        assert_eq!(servers[0].username.as_deref(), Some("1060:ada"));
        assert!(crate::turn::verify_credentials(
            "s",
            "1060:ada",
            servers[0].credential.as_deref().unwrap(),
            1_000
        ));
    }
}

//! The `confab-signal` binary as users run it: prints its address, serves, documents its flags,
//! refuses bad flags with a reason, and stops cleanly on SIGTERM.

// Each test is its own entry point: it may wait on the runtime it drives.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_pair_meets, Client};
use confab_protocol::ErrorCode;

const BIN: &str = env!("CARGO_BIN_EXE_confab-signal");

/// Kills the child on drop, so a failing test leaves no server behind.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serves_then_stops_on_sigterm() {
    let mut child = Child(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("address line")
        .to_owned();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/ws"),
        "{url}"
    );

    assert_pair_meets(&url).await;
    let mut waiting = Client::connect(&url).await;
    waiting.join_ok(None, "Ada").await;

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    waiting.expect_error(ErrorCode::ServerShutdown).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--tls-cert",
        "--tls-key",
        "--stun",
        "--turn",
        "--turn-user",
        "--turn-pass",
        "--turn-secret",
        "--turn-ttl",
        "--room-size",
        "--rate-limit",
        "--idle-timeout",
        "--turn-rate",
        "--byte-rate-limit",
        "--join-timeout",
        "--max-conns-per-ip",
        "--max-conns",
        "--version",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_flags_fail_with_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["--turn", "turn:x:3478"], "needs credentials"),
        (&["--listen", "nowhere"], "invalid socket address"),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                "/no/cert.pem",
                "--tls-key",
                "/no/key.pem",
            ],
            "cannot load TLS certificate",
        ),
    ];
    for (args, expected) in cases {
        let out = Command::new(BIN)
            .args(*args)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

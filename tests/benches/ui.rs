//! Window benchmark (a program, not a test): CPU of the real `confab` window under Xvfb, idle in
//! the lobby, and in a call showing the other person's 1280x720@30 video (received, decoded,
//! converted and drawn; the window itself sends nothing, to isolate that cost).
//!
//!     cargo bench -p confab-e2e --bench ui -- [SECONDS]

use std::process::{Command, Stdio};
use std::time::Duration;

use confab_e2e::services::Xvfb;
use confab_e2e::{bin, room_code, test_media, Peer, Proc, Server};

fn cpu_seconds(pid: u32) -> f64 {
    confab_e2e::cpu_seconds(pid).unwrap_or(0.0)
}

fn rss_mib(pid: u32) -> f64 {
    confab_e2e::memory_kib(pid, "VmRSS").unwrap_or(0) as f64 / 1024.0
}

/// CPU cores used by `pid` over `secs`, after a settling second.
fn measure(pid: u32, secs: u64) -> (f64, f64) {
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(secs));
    ((cpu_seconds(pid) - before) / secs as f64, rss_mib(pid))
}

fn window(display: &str, config: &std::path::Path, args: &[&str]) -> Proc {
    let child = Command::new(bin("confab"))
        .args(args)
        .env("DISPLAY", display)
        .env("CONFAB_CONFIG_DIR", config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("confab window");
    Proc {
        child,
        name: "confab window".into(),
    }
}

fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let x = Xvfb::start(1280, 800);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("settings.json"),
        r#"{"camera":"none","mic":"none","speaker":"null","server_mode":"Remote","server_url":"ws://127.0.0.1:9"}"#,
    )
    .unwrap();
    let idle = window(&x.display, dir.path(), &[]);
    std::thread::sleep(Duration::from_secs(2));
    let (cores, rss) = measure(idle.pid(), secs);
    println!(
        "idle lobby: {cores:.3} cores ({:.1} % of one), RSS {rss:.0} MiB",
        cores * 100.0
    );
    drop(idle);

    let server = Server::start(&[]);
    let room = room_code(81);
    let call = window(
        &x.display,
        dir.path(),
        &[
            "join",
            &room,
            "--server",
            &server.url,
            "--camera",
            "none",
            "--mic",
            "none",
            "--speaker",
            "null",
        ],
    );
    let peer = Peer::start(
        dir.path(),
        "peer",
        &server.url,
        &room,
        &test_media(
            "1280x720",
            &["--duration", &(secs + 8).to_string(), "--wait", "30"],
        ),
    );
    std::thread::sleep(Duration::from_secs(3));
    let (cores, rss) = measure(call.pid(), secs);
    println!(
        "window showing a 1280x720@30 call: {cores:.3} cores ({:.0} % of one), RSS {rss:.0} MiB",
        cores * 100.0
    );
    let peer = peer.finish(Duration::from_secs(60));
    if let Some(stats) = peer.stats {
        println!(
            "(the peer sent {} frames)",
            stats["video_send"]["frames_encoded"]
        );
    }
}

//! Startup benchmark (a program, not a test): cold start of the `confab` window to its first
//! drawn frame under Xvfb, and the installed size of the Linux packages.
//!
//!     cargo bench -p confab-e2e --bench startup -- [RUNS]
//!
//! eframe keeps the window hidden until it has painted its first frame, then maps it: the time
//! from spawning `confab` to the window being viewable (polled with xdotool every 5 ms) is the
//! time to the first drawn frame. Measured with no camera or microphone and a remote server
//! (files warm in the page cache after the first run, which is printed apart), then with a fresh
//! install's settings (default devices, the hosted server).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confab_e2e::services::Xvfb;
use confab_e2e::{bin, Proc};

/// Milliseconds from spawning the window to its first frame on screen.
fn first_frame_ms(display: &str, config: &Path) -> f64 {
    let start = Instant::now();
    let child = confab_e2e::command(bin("confab"))
        .env("DISPLAY", display)
        .env("CONFAB_CONFIG_DIR", config)
        .env("CONFAB_INSTANCE_SOCKET", config.join("instance.sock"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(config.join("window.stderr")).expect("stderr file"))
        .spawn()
        .expect("confab window");
    let mut window = Proc {
        child,
        name: "confab window".into(),
    };
    loop {
        if let Ok(Some(status)) = window.child.try_wait() {
            panic!(
                "the window exited ({status}): {}",
                std::fs::read_to_string(config.join("window.stderr")).unwrap_or_default()
            );
        }
        let found = Command::new("xdotool")
            .args(["search", "--onlyvisible", "--name", "^Confab$"])
            .env("DISPLAY", display)
            .stderr(Stdio::null())
            .output()
            .expect("xdotool (scripts/setup.sh --test installs it)");
        if found.status.success() && !found.stdout.is_empty() {
            return start.elapsed().as_secs_f64() * 1000.0;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no window within 30 s: {}",
            std::fs::read_to_string(config.join("window.stderr")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn tree_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("staged tree")
        .map(|e| {
            let e = e.expect("dir entry");
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                tree_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let x = Xvfb::start(1280, 800);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("settings.json"),
        r#"{"camera":"none","mic":"none","speaker":"null","server_mode":"Remote","server_url":"ws://127.0.0.1:9"}"#,
    )
    .expect("settings");
    // The X server takes connections a moment after its socket appears.
    let ready = Instant::now();
    while !Command::new("xdotool")
        .arg("getdisplaygeometry")
        .env("DISPLAY", &x.display)
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "Xvfb never ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Xvfb resets when its last client leaves, and refuses connections meanwhile: one client
    // stays connected (waiting for a window that never comes) between the runs.
    let _keeper = Proc {
        child: confab_e2e::command("xdotool")
            .args(["search", "--sync", "--name", "^no window has this name$"])
            .env("DISPLAY", &x.display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xdotool"),
        name: "xdotool".into(),
    };
    let first = first_frame_ms(&x.display, dir.path());
    let mut warm: Vec<f64> = (0..runs)
        .map(|_| first_frame_ms(&x.display, dir.path()))
        .collect();
    warm.sort_by(f64::total_cmp);
    println!(
        "window start to first drawn frame (no devices, remote server): first run {first:.0} ms; then over {runs} runs median {:.0} ms, min {:.0}, max {:.0}",
        warm[runs / 2],
        warm[0],
        warm[runs - 1]
    );
    // A fresh install's settings: default devices (the lobby preview opens them) and the hosted
    // signaling server.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).expect("fresh config dir");
    let mut defaults: Vec<f64> = (0..runs)
        .map(|_| first_frame_ms(&x.display, &fresh))
        .collect();
    defaults.sort_by(f64::total_cmp);
    println!(
        "window start to first drawn frame (fresh settings: default devices, hosted server): median {:.0} ms, min {:.0}, max {:.0}",
        defaults[runs / 2],
        defaults[0],
        defaults[runs - 1]
    );

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let staged = dir.path().join("staged");
    let status = Command::new("bash")
        .arg(repo.join("packaging/linux/stage.sh"))
        .arg(&staged)
        .status()
        .expect("bash");
    assert!(status.success(), "stage.sh");
    let mb = |p: &Path| tree_bytes(p) as f64 / 1e6;
    println!(
        "installed size (deb, rpm and tar.gz alike): {:.1} MB: confab {:.1} MB (stripped; confab-signal is a link to it); unstripped confab {:.1} MB",
        mb(&staged),
        std::fs::metadata(staged.join("usr/bin/confab")).map_or(0, |m| m.len()) as f64 / 1e6,
        std::fs::metadata(bin("confab")).map_or(0, |m| m.len()) as f64 / 1e6,
    );
}

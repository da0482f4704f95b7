//! Window benchmark (a program, not a test): CPU of the real `confab` window under Xvfb, idle in
//! the lobby, and in a call showing the other person's 1280x720@30 video (received, decoded,
//! converted and drawn; the window itself sends nothing, to isolate that cost), for each video
//! path (shader or CPU conversion) and renderer (glow, wgpu), interleaved, with the busiest threads
//! and how many frames a second the window drew; then a two-way call, the window also sending its
//! test camera and showing it in the self view.
//!
//!     cargo bench -p confab-e2e --bench ui -- [SECONDS] [--runs N] [--only TEXT]

use std::process::Stdio;
use std::time::{Duration, Instant};

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

/// CPU seconds of each thread of `pid`, summed by thread name.
fn thread_cpu_seconds(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        *by_name.entry(comm.trim().to_string()).or_insert(0.0) += ticks / 100.0;
    }
    by_name
}

/// Like `measure`, and the cores of the busiest threads (by name) over the same time.
fn measure_threads(pid: u32, secs: u64) -> (f64, f64, Vec<(String, f64)>) {
    std::thread::sleep(Duration::from_secs(2));
    let (before, threads_before) = (cpu_seconds(pid), thread_cpu_seconds(pid));
    std::thread::sleep(Duration::from_secs(secs));
    let (after, threads_after) = (cpu_seconds(pid), thread_cpu_seconds(pid));
    let mut threads: Vec<(String, f64)> = threads_after
        .into_iter()
        .map(|(name, t)| {
            let used = t - threads_before.get(&name).copied().unwrap_or(0.0);
            (name, used / secs as f64)
        })
        .filter(|(_, cores)| *cores >= 0.01)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    threads.truncate(6);
    ((after - before) / secs as f64, rss_mib(pid), threads)
}

fn window(display: &str, config: &std::path::Path, args: &[&str]) -> Proc {
    window_with(display, config, args, &[])
}

/// The window's log: where it says how many frames a second it drew (`confab::paint`).
fn log_path(config: &std::path::Path) -> std::path::PathBuf {
    config.join("window.log")
}

fn window_with(
    display: &str,
    config: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Proc {
    let log = std::fs::File::create(log_path(config)).expect("window log");
    let child = confab_e2e::command(bin("confab"))
        .args(args)
        .envs(envs.iter().copied())
        .env("DISPLAY", display)
        .env("CONFAB_CONFIG_DIR", config)
        .env("RUST_LOG", "warn,confab::paint=debug")
        .stdout(Stdio::null())
        .stderr(log)
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

    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let server = Server::start(&[]);
    // The video path (CONFAB_VIDEO=cpu: the RGBA conversion the window did before the shader)
    // and the renderer, each combination once per run, interleaved.
    // Last, the window sending too: its self view is a second video drawn.
    let config = |label, envs, sends| WindowConfig { label, envs, sends };
    let configs = [
        config(
            "glow, CPU conversion",
            &[("CONFAB_RENDERER", "glow"), ("CONFAB_VIDEO", "cpu")],
            Sends::Nothing,
        ),
        config(
            "glow, shader",
            &[("CONFAB_RENDERER", "glow")],
            Sends::Nothing,
        ),
        config(
            "wgpu, CPU conversion",
            &[("CONFAB_RENDERER", "wgpu"), ("CONFAB_VIDEO", "cpu")],
            Sends::Nothing,
        ),
        config(
            "wgpu, shader",
            &[("CONFAB_RENDERER", "wgpu")],
            Sends::Nothing,
        ),
        config(
            "glow, shader, two-way with the self view",
            &[("CONFAB_RENDERER", "glow")],
            Sends::TestCamera,
        ),
    ];
    // `--only TEXT`: the cases whose label contains it.
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    for run in 0..runs {
        for (n, config) in configs.iter().enumerate() {
            if only
                .as_ref()
                .is_some_and(|only| !config.label.contains(only.as_str()))
            {
                continue;
            }
            let room = room_code(81 + (run * configs.len() + n) as u64);
            call_cores(&x.display, dir.path(), &server.url, &room, secs, config);
        }
        if only
            .as_ref()
            .is_none_or(|only| "minimized".contains(only.as_str()))
        {
            let room = room_code(181 + run as u64);
            minimized_cores(&x, dir.path(), &server.url, &room, secs);
        }
    }
}

/// The glow window receiving 1280x720@30, shown and then minimized (by openbox, through
/// xdotool): the window's cores and the sending peer's, over `secs` each. Minimized, the window
/// draws nothing and asks the peer for the least video (180p20).
fn minimized_cores(x: &Xvfb, dir: &std::path::Path, server_url: &str, room: &str, secs: u64) {
    let _wm = x.window_manager();
    let args = [
        "join",
        room,
        "--server",
        server_url,
        "--camera",
        "none",
        "--mic",
        "none",
        "--speaker",
        "null",
    ];
    let call = window_with(&x.display, dir, &args, &[("CONFAB_RENDERER", "glow")]);
    let started = Instant::now();
    let peer = sending_peer(dir, server_url, room, 2 * secs + 12);
    std::thread::sleep(Duration::from_secs(3));
    // Each state's cores, and its seconds in the peer's timeline (from when it started).
    let mut states = Vec::new();
    let mut both = |what: &'static str| {
        std::thread::sleep(Duration::from_secs(2));
        let from = started.elapsed().as_secs_f64();
        let (window, peer_before) = (cpu_seconds(call.pid()), cpu_seconds(peer.proc.pid()));
        std::thread::sleep(Duration::from_secs(secs));
        let window = (cpu_seconds(call.pid()) - window) / secs as f64;
        let sent = (cpu_seconds(peer.proc.pid()) - peer_before) / secs as f64;
        states.push((what, window, sent, from..started.elapsed().as_secs_f64()));
    };
    both("shown");
    let xdotool = |args: &[&str]| {
        std::process::Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &x.display)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let id = xdotool(&["search", "--name", "Confab"])
        .and_then(|ids| ids.lines().next().map(str::to_owned));
    if let Some(id) = &id {
        xdotool(&["windowminimize", id]);
        both("minimized");
    } else {
        println!("(no window to minimize: xdotool found none)");
    }
    drop(call);
    let stats = peer.finish(Duration::from_secs(60)).stats;
    for (what, window, sent, seconds) in states {
        // The peer's video bitrate over the state's whole seconds, median.
        let kbps = stats.as_ref().and_then(|s| {
            let mut kbps: Vec<f64> = s["timeline"]
                .as_array()?
                .iter()
                .filter(|x| {
                    x["t_s"]
                        .as_f64()
                        .is_some_and(|t| t - 1.0 >= seconds.start && t <= seconds.end)
                })
                .filter_map(|x| x["send_kbps"].as_f64())
                .collect();
            kbps.sort_by(f64::total_cmp);
            kbps.get(kbps.len() / 2).copied()
        });
        println!(
            "window receiving a 1280x720@30 call, {what}: the window {window:.3} cores, the peer \
             sending to it {sent:.3} cores and {} kbit/s of video",
            kbps.map_or("?".into(), |k| format!("{k:.0}"))
        );
    }
}

/// One way the window is run: its renderer and video path (environment), and what it sends.
struct WindowConfig {
    label: &'static str,
    envs: &'static [(&'static str, &'static str)],
    sends: Sends,
}

/// What the window sends in the call.
#[derive(Clone, Copy)]
enum Sends {
    Nothing,
    /// The 1280x720@30 test pattern, shown small in its self view.
    TestCamera,
}

/// The medians of what the window's log reported (`confab::paint`) as `field` a second,
/// skipping the first report (the call's start).
fn paint_rate(config: &std::path::Path, field: &str) -> Option<f64> {
    let log = std::fs::read_to_string(log_path(config)).ok()?;
    let key = format!("{field}=");
    let mut rates: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("window drawn"))
        .filter_map(|l| l.split(&key).nth(1)?.split_whitespace().next())
        .filter_map(|v| v.parse().ok())
        .skip(1)
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied()
}

/// The headless peer the window calls: it sends the 1280x720@30 test pattern for `secs`.
fn sending_peer(dir: &std::path::Path, server_url: &str, room: &str, secs: u64) -> Peer {
    Peer::start(
        dir,
        &format!("peer-{room}"),
        server_url,
        room,
        &test_media(
            "1280x720",
            &["--duration", &secs.to_string(), "--wait", "30"],
        ),
    )
}

/// The window in a call with a peer sending 1280x720@30: its cores, RSS and busiest threads.
fn call_cores(
    display: &str,
    dir: &std::path::Path,
    server_url: &str,
    room: &str,
    secs: u64,
    config: &WindowConfig,
) {
    let WindowConfig { label, envs, sends } = config;
    let mut args = vec!["join", room, "--server", server_url];
    args.extend_from_slice(&match sends {
        Sends::Nothing => ["--camera", "none", "--video-size", "1280x720"],
        Sends::TestCamera => ["--camera", "test", "--video-size", "1280x720"],
    });
    args.extend_from_slice(&["--mic", "none", "--speaker", "null"]);
    let call = window_with(display, dir, &args, envs);
    let peer = sending_peer(dir, server_url, room, secs + 8);
    std::thread::sleep(Duration::from_secs(3));
    let (cores, rss, threads) = measure_threads(call.pid(), secs);
    let threads: Vec<String> = threads
        .iter()
        .map(|(name, cores)| format!("{name} {cores:.2}"))
        .collect();
    drop(call);
    let rate = |field| paint_rate(dir, field).map_or("?".into(), |f| format!("{f:.1}"));
    println!(
        "window showing a 1280x720@30 call ({label}): {cores:.3} cores ({:.0} % of one), RSS {rss:.0} MiB; \
         a second: {} frames drawn, {} of {} video frames received shown; threads: {}",
        cores * 100.0,
        rate("frames_per_s"),
        rate("video_shown_per_s"),
        rate("video_received_per_s"),
        threads.join(", ")
    );
    let peer = peer.finish(Duration::from_secs(60));
    if let Some(stats) = peer.stats {
        println!(
            "(the peer sent {} frames)",
            stats["video_send"]["frames_encoded"]
        );
    }
}

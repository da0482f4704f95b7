//! Window benchmark (a program, not a test): CPU of the real `confab` window under Xvfb, idle in
//! the lobby, and in a call showing the other person's 1280x720@30 video (received, decoded,
//! converted and drawn; the window itself sends nothing, to isolate that cost), for each video
//! path (shader or CPU conversion) and renderer (glow, wgpu), interleaved, with the busiest threads.
//!
//!     cargo bench -p confab-e2e --bench ui -- [SECONDS] [--runs N]

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

fn window_with(
    display: &str,
    config: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Proc {
    let child = Command::new(bin("confab"))
        .args(args)
        .envs(envs.iter().copied())
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

    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let server = Server::start(&[]);
    // The video path (CONFAB_VIDEO=cpu: the RGBA conversion the window did before the shader)
    // and the renderer, each combination once per run, interleaved.
    let configs: [(&str, &[(&str, &str)]); 4] = [
        (
            "glow, CPU conversion",
            &[("CONFAB_RENDERER", "glow"), ("CONFAB_VIDEO", "cpu")],
        ),
        ("glow, shader", &[("CONFAB_RENDERER", "glow")]),
        (
            "wgpu, CPU conversion",
            &[("CONFAB_RENDERER", "wgpu"), ("CONFAB_VIDEO", "cpu")],
        ),
        ("wgpu, shader", &[("CONFAB_RENDERER", "wgpu")]),
    ];
    for run in 0..runs {
        for (n, (label, envs)) in configs.iter().enumerate() {
            let room = room_code(81 + (run * configs.len() + n) as u64);
            call_cores(
                &x.display,
                dir.path(),
                &server.url,
                &room,
                secs,
                label,
                envs,
            );
        }
    }
}

/// The window in a call with a peer sending 1280x720@30: its cores, RSS and busiest threads.
fn call_cores(
    display: &str,
    dir: &std::path::Path,
    server_url: &str,
    room: &str,
    secs: u64,
    label: &str,
    envs: &[(&str, &str)],
) {
    let call = window_with(
        display,
        dir,
        &[
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
        ],
        envs,
    );
    let peer = Peer::start(
        dir,
        &format!("peer-{room}"),
        server_url,
        room,
        &test_media(
            "1280x720",
            &["--duration", &(secs + 8).to_string(), "--wait", "30"],
        ),
    );
    std::thread::sleep(Duration::from_secs(3));
    let (cores, rss, threads) = measure_threads(call.pid(), secs);
    let threads: Vec<String> = threads
        .iter()
        .map(|(name, cores)| format!("{name} {cores:.2}"))
        .collect();
    println!(
        "window showing a 1280x720@30 call ({label}): {cores:.3} cores ({:.0} % of one), RSS {rss:.0} MiB; threads: {}",
        cores * 100.0,
        threads.join(", ")
    );
    drop(call);
    let peer = peer.finish(Duration::from_secs(60));
    if let Some(stats) = peer.stats {
        println!(
            "(the peer sent {} frames)",
            stats["video_send"]["frames_encoded"]
        );
    }
}

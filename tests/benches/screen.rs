//! Screen-sharing benchmark (a program, not a test): what sharing a screen costs the sharing
//! peer, with the X server read directly (the default on X11) and through xcap
//! (`CONFAB_SCREEN_CAPTURE=xcap`), alternated round by round in one run.
//!
//!     cargo bench -p confab-e2e --bench screen -- [SECONDS] [WxH] [ROUNDS] [window]
//!
//! Defaults: 10 s calls, a 3840x2160 display, 2 rounds. Each call is a private Xvfb of that size
//! showing a picture (a gradient with text and shapes, static), `confab serve`, peer a sharing
//! screen 0 (no camera, no microphone) and peer b receiving. With `window`, the picture is a
//! WxH window (on a display 200 pixels larger each way, openbox managing it) and peer a shares
//! that window. Prints per call: a's cores over the
//! call, frames captured and encoded a second, CPU ms per captured frame, and the X server's cores
//! (it copies each frame out to the client).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use confab_e2e::services::Xvfb;
use confab_e2e::{cpu_seconds, num, room_code, Peer, Server};

struct Call {
    cores: f64,
    captured_fps: f64,
    encoded_fps: f64,
    cpu_ms_per_frame: f64,
    x_cores: f64,
}

fn picture(path: &Path, width: u32, height: u32) {
    let font = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    let size = format!("{width}x{height}");
    let text = (height / 20).to_string();
    let status = Command::new("convert")
        .args(["-size", &size, "gradient:#203050-#d0a040", "-fill", "white"])
        .args(["-font", font, "-pointsize", &text])
        .args(["-annotate", "+60+200", "Confab screen sharing benchmark"])
        .args(["-annotate", "+60+400", "Quarterly numbers: 42, 17, 3.14"])
        .args(["-fill", "#c03030", "-draw"])
        .arg(format!(
            "rectangle {} {} {} {}",
            width / 2,
            height / 2,
            width * 3 / 4,
            height * 3 / 4
        ))
        .arg(path)
        .status()
        .expect("convert (ImageMagick)");
    assert!(status.success(), "convert failed");
}

fn call(
    secs: u64,
    (width, height): (u32, u32),
    window: bool,
    xcap: bool,
    round: u32,
) -> Option<Call> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let png = dir.path().join("screen.png");
    picture(&png, width, height);
    let margin = if window { 200 } else { 0 };
    let x = Xvfb::start(width + margin, height + margin);
    let (_wm, _shown) = if window {
        (Some(x.window_manager()), x.show_window(&png, "shared"))
    } else {
        (None, x.show(&png))
    };
    let server = Server::start(&[]);
    let room = room_code(70 + u64::from(round));
    let duration = secs.to_string();
    let mut env = vec![("DISPLAY".to_owned(), x.display.clone())];
    if xcap {
        env.push(("CONFAB_SCREEN_CAPTURE".to_owned(), "xcap".to_owned()));
    }
    let quiet = ["--camera", "none", "--mic", "none", "--speaker", "null"];
    let timing = ["--duration", &duration, "--wait", "30"];
    let mut a_args = vec!["--screen", if window { "window:shared" } else { "0" }];
    a_args.extend(quiet.iter().chain(&timing));
    let b_args: Vec<&str> = quiet.iter().chain(&timing).copied().collect();
    let x_before = cpu_seconds(x.pid())?;
    let started = Instant::now();
    let a = Peer::start_with_env(dir.path(), "a", &server.url, &room, &a_args, &env);
    let b = Peer::start(dir.path(), "b", &server.url, &room, &b_args);
    let pid = a.proc.pid();
    let mut cpu = 0.0;
    while let Some(now) = cpu_seconds(pid) {
        cpu = now;
        if started.elapsed() > Duration::from_secs(secs + 40) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let x_cpu = cpu_seconds(x.pid())? - x_before;
    let (a, b) = (
        a.finish(Duration::from_secs(30)),
        b.finish(Duration::from_secs(30)),
    );
    let Some(stats) = a.stats else {
        println!("a left no stats ({}): {}", a.status, a.stderr);
        return None;
    };
    if !b.status.success() {
        println!("b: {}", b.stderr);
    }
    let call_secs = num(&stats, "/duration_s").max(1.0);
    let captured = num(&stats, "/video_send/frames_captured");
    Some(Call {
        cores: cpu / call_secs,
        captured_fps: captured / call_secs,
        encoded_fps: num(&stats, "/video_send/frames_encoded") / call_secs,
        cpu_ms_per_frame: cpu * 1000.0 / captured.max(1.0),
        x_cores: x_cpu / started.elapsed().as_secs_f64(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let secs = args.first().and_then(|s| s.parse().ok()).unwrap_or(10u64);
    let (width, height) = args
        .get(1)
        .and_then(|s| s.split_once('x'))
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .unwrap_or((3840u32, 2160u32));
    let rounds = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2u32);
    let window = args.iter().any(|a| a == "window");
    let what = if window { "window" } else { "display" };
    println!(
        "screen sharing benchmark: a {width}x{height} {what} shared at 10 fps, {secs} s calls, \
         {rounds} rounds (the sharing peer's process; CPU over the whole call, start included)"
    );
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut per_frame = [0.0; 2];
        for xcap in order {
            let how = if xcap { "xcap  " } else { "direct" };
            let Some(c) = call(secs, (width, height), window, xcap, round) else {
                continue;
            };
            println!(
                "round {round} {how}: {:.3} cores, {:.1} frames captured/s, {:.1} encoded/s, \
                 {:.1} CPU ms per captured frame; the X server {:.3} cores",
                c.cores, c.captured_fps, c.encoded_fps, c.cpu_ms_per_frame, c.x_cores
            );
            per_frame[usize::from(xcap)] = c.cpu_ms_per_frame;
        }
        if per_frame.iter().all(|&c| c > 0.0) {
            ratios.push(per_frame[0] / per_frame[1]);
        }
    }
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "direct / xcap CPU per captured frame, round by round: {}",
        if shown.is_empty() {
            "none (a call failed)".to_owned()
        } else {
            shown.join(", ")
        }
    );
}

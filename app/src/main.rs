//! `confab`: the desktop app, and its command-line modes (see `confab --help`).

mod call_config;
mod cli;
mod devices;
mod instance;
mod join;
mod link;
mod ui;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};
use confab_signaling::{ServeArgs, SignalCli};

/// Our own progress at info; the WebRTC stack's chatter only when it is an error. The
/// `pulseaudio` crate under cpal logs an error each time a connection closes, even ours on
/// purpose (every device listing closes one); a real failure reaches us through cpal.
const DEFAULT_LOG: &str = "warn,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_sctp=error,webrtc=error,pulseaudio=off,confab=info,confab_signaling=info";

/// glibc gives threads that allocate at once heaps of their own ("arenas", up to 8 a core), and
/// each keeps what was freed in it: the frames the capture, encode and decode threads pass
/// along. Two arenas keep 2-4 MB less of a 720p call resident, at no CPU a call shows (NOTES.md,
/// "Memory"). `MALLOC_ARENA_MAX` in the environment still decides.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn fewer_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: sets one of the allocator's tunables, before any other thread is started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fewer_malloc_arenas() {}

fn main() -> ExitCode {
    fewer_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG.into()),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal; plain text for a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if invoked_as_server() {
        return exit_code(serve(SignalCli::parse().serve), "confab-signal");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Join(args)) => match join_link(args) {
            Ok(args) if args.headless => join::run(args),
            Ok(args) => open_window(Some(args), None),
            Err(err) => Err(err),
        },
        Some(Command::Devices { json }) => devices::run(json),
        Some(Command::DebugStamp { image, rect, size }) => debug_stamp(&image, &rect, size),
        None if cli.listen_links => listen_links(),
        None => match cli.link.as_deref().map(link::JoinLink::parse).transpose() {
            Ok(link) => open_window(None, link),
            Err(err) => Err(anyhow::anyhow!(err)),
        },
    };
    exit_code(result, "confab")
}

fn exit_code(result: anyhow::Result<()>, program: &str) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The packages install `confab-signal` as a link to this binary (one copy of the code instead
/// of two): called by that name, the app is the server.
fn invoked_as_server() -> bool {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_stem()
                .map(|stem| stem == "confab-signal")
        })
        .unwrap_or(false)
}

/// `confab join confab://join/CODE?server=URL`: the link's room, and its server when it names one.
fn join_link(mut args: cli::JoinArgs) -> anyhow::Result<cli::JoinArgs> {
    if link::looks_like_link(&args.room) {
        let link = link::JoinLink::parse(&args.room)?;
        args.room = link.room.to_string();
        if let Some(server) = link.server {
            args.server = server;
        }
    }
    Ok(args)
}

/// The app window; with `join` arguments, straight into that call; with a link, into that room.
/// When a Confab is running already, the link goes to it instead and this launch ends.
fn open_window(join: Option<cli::JoinArgs>, link: Option<link::JoinLink>) -> anyhow::Result<()> {
    let inbox = match instance::claim(link.as_ref())? {
        instance::Claim::HandedOver => {
            eprintln!("confab: the link went to the Confab already running");
            return Ok(());
        }
        instance::Claim::First(listener) => listener.and_then(|l| {
            l.serve()
                .map_err(|err| tracing::warn!(%err, "cannot listen for links"))
                .ok()
        }),
    };
    let start = match join {
        Some(args) => Some(window_call(&args)?),
        None => None,
    };
    ui::run(start, link, inbox)
}

/// `confab --listen-links`: the first instance without a window, printing each link it is
/// handed (the tests of the hand-over use it, where no display is).
fn listen_links() -> anyhow::Result<()> {
    let instance::Claim::First(Some(listener)) = instance::claim(None)? else {
        anyhow::bail!("another Confab is listening for links already");
    };
    let inbox = listener.serve()?;
    println!("listening");
    for link in inbox.links.iter() {
        println!("{link}");
    }
    Ok(())
}

/// The call `confab join` (without `--headless`) starts in the window: every call flag counts;
/// the flags that script a headless run are named when given, since the window ignores them.
fn window_call(args: &cli::JoinArgs) -> anyhow::Result<call_config::CallConfig> {
    let scripted = [
        ("--duration", args.duration.is_some()),
        ("--stats-json", args.stats_json.is_some()),
        ("--record-video", args.record_video.is_some()),
        ("--record-audio", args.record_audio.is_some()),
        ("--chat", !args.chat.is_empty()),
        ("--send-file", !args.send_file.is_empty()),
    ];
    for (flag, given) in scripted {
        if given {
            eprintln!("confab: {flag} only applies with --headless; the window ignores it");
        }
    }
    call_config::CallConfig::from_join_args(args)
}

/// Crops the video out of a screenshot, scales it back to the size it was sent at, and prints the
/// stamp it carries (JSON), or fails when there is none.
fn debug_stamp(path: &std::path::Path, rect: &str, size: cli::VideoSize) -> anyhow::Result<()> {
    use confab_media::convert::{packed_to_i420, scale, Packed};
    let image = image::open(path)?.to_rgba8();
    let numbers = rect
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<Vec<_>, _>>()?;
    let [x, y, w, h] =
        <[f32; 4]>::try_from(numbers).map_err(|_| anyhow::anyhow!("--rect is X,Y,W,H"))?;
    let (x, y) = (x.round().max(0.0) as u32, y.round().max(0.0) as u32);
    let (w, h) = (
        (w.round() as u32).min(image.width().saturating_sub(x)),
        (h.round() as u32).min(image.height().saturating_sub(y)),
    );
    let crop = image::imageops::crop_imm(&image, x, y, w, h).to_image();
    let frame = packed_to_i420(crop.as_raw(), w, h, w as usize * 4, Packed::Rgba, 0)?;
    let frame = scale(&frame, size.width, size.height);
    let stamp = confab_media::stamp::read(&frame)
        .ok_or_else(|| anyhow::anyhow!("no readable stamp in that part of {}", path.display()))?;
    let age_ms = confab_media::clock::now_us().saturating_sub(stamp.capture_ts_us) as f64 / 1000.0;
    println!(
        "{}",
        serde_json::json!({"index": stamp.index, "capture_ts_us": stamp.capture_ts_us, "age_ms": age_ms})
    );
    Ok(())
}

// `confab serve` is this process's entry point: waiting on the server is what it is for.
#[allow(clippy::disallowed_methods)]
fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(confab_signaling::serve_until_signal(args))
}

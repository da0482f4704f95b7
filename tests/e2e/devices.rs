//! Real device paths, driven through virtual devices: PulseAudio null sinks as microphones and
//! speakers (cpal through PulseAudio's protocol), a call where one peer's speaker feeds its own microphone (AEC on
//! and off), screen sharing of an Xvfb display compared with a screenshot (read from the X server
//! directly, and through xcap), device listing, and
//! camera, microphone and speaker switched mid-call.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use confab_e2e::services::{Pulse, Xvfb};
use confab_e2e::{num, room_code, serial, test_media, Peer, Server};
use confab_media::VideoFrame;

/// 16-bit mono WAV samples as f32 (the header is skipped by finding the `data` chunk).
fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    let data = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk")
        + 8;
    let samples = bytes[data..]
        .chunks_exact(2)
        .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
        .collect();
    (rate, samples)
}

fn goertzel(x: &[f32], hz: f64, rate: u32) -> f64 {
    confab_media::audio::tone_power(x, hz, rate)
}

fn level_dbfs(x: &[f32]) -> f64 {
    confab_media::audio::rms_dbfs(x)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 16-bit 48 kHz mono WAV of a `hz` sine at 0.3 of full scale, `seconds` long (sox's length
/// syntax), then the sox `effects`.
fn sine(path: &Path, hz: u32, seconds: &str, effects: &[&str]) {
    run(Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "1", "-b", "16"])
        .arg(path)
        .args(["synth", seconds, "sine", &hz.to_string(), "vol", "0.3"])
        .args(effects));
}

fn tone(path: &Path, hz: u32, secs: u32) {
    sine(path, hz, &secs.to_string(), &[]);
}

/// A `hz` tone in 200 ms bursts with 200 ms pauses, for `secs` (whole seconds): a microphone
/// through audio processing. A steady tone is what noise suppression learns as noise and removes
/// (a 1 kHz tone falls from -14 to -33 dBFS within 2.5 s); bursts with pauses, like speech, pass.
fn tone_bursts(path: &Path, hz: u32, secs: u32) {
    let repeats = (secs * 5 / 2 - 1).to_string();
    sine(path, hz, "0.2", &["pad", "0", "0.2", "repeat", &repeats]);
}

#[test]
fn audio_flows_both_ways_through_pulseaudio_devices() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(&["spk_a", "spk_b", "mic_a", "mic_b"]);
    let (tone_a, tone_b) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
    tone(&tone_a, 440, 20);
    tone(&tone_b, 660, 20);
    let _feed_a = pulse.play("mic_a", &tone_a);
    let _feed_b = pulse.play("mic_b", &tone_b);
    let (heard_a, heard_b) = (
        dir.path().join("heard-a.wav"),
        dir.path().join("heard-b.wav"),
    );
    let mut rec_a = pulse.record("spk_a.monitor", &heard_a);
    let mut rec_b = pulse.record("spk_b.monitor", &heard_b);

    let server = Server::start(&[]);
    let room = room_code(21);
    // Audio processing off: steady tones are what noise suppression removes and what confuses an
    // echo canceller; this test is about the devices (the next one is about AEC).
    let args = [
        "--camera",
        "none",
        "--mic",
        "default",
        "--speaker",
        "default",
        "--no-aec",
        "--no-ns",
        "--no-agc",
        "--duration",
        "8",
        "--wait",
        "30",
    ];
    // a goes through ALSA (its pulse plugin), cpal's way when no PulseAudio server answers, and
    // takes the default devices its environment sets; b goes through PulseAudio's protocol and
    // names its devices by their PulseAudio names.
    let mut a_env = pulse.env(Some("spk_a"), Some("mic_a.monitor"));
    a_env.push(("CONFAB_AUDIO_HOST".to_owned(), "alsa".to_owned()));
    let a = Peer::start_with_env(dir.path(), "a", &server.url, &room, &args, &a_env);
    let mut b_args = args;
    b_args[3] = "mic_b.monitor";
    b_args[5] = "spk_b";
    let b = Peer::start_with_env(
        dir.path(),
        "b",
        &server.url,
        &room,
        &b_args,
        &pulse.env(None, None),
    );
    let (a, b) = (
        a.finish(Duration::from_secs(60)),
        b.finish(Duration::from_secs(60)),
    );
    let _ = Command::new("kill")
        .args(["-INT", &rec_a.pid().to_string(), &rec_b.pid().to_string()])
        .status();
    rec_a.wait(Duration::from_secs(5));
    rec_b.wait(Duration::from_secs(5));
    assert!(a.status.success(), "a: {}", a.stderr);
    assert!(b.status.success(), "b: {}", b.stderr);
    for (name, said, mic, speaker) in [
        (
            "a",
            &a.stderr,
            "host=\"ALSA\" period=Default",
            "host=\"ALSA\" period=Default",
        ),
        (
            "b",
            &b.stderr,
            "host=\"PulseAudio\" period=Fixed(480)",
            "host=\"PulseAudio\" period=Fixed(240)",
        ),
    ] {
        // Both devices through the host asked for: b's through PulseAudio's own protocol, the
        // microphone in 10 ms periods and the speaker in 5 ms ones, a's through ALSA at the
        // device's own.
        let opened = |noun: &str| -> Vec<&str> {
            said.lines()
                .filter(|l| l.contains("audio device open") && l.contains(noun))
                .collect()
        };
        let (mics, speakers) = (opened("microphone"), opened("speaker"));
        assert_eq!((mics.len(), speakers.len()), (1, 1), "{name}: {said}");
        // Closing a PulseAudio connection on purpose (each listing does) is no error to show.
        assert!(!said.contains("Reactor error"), "{name}: {said}");
        assert!(mics[0].contains(mic), "{name}: {}", mics[0]);
        assert!(speakers[0].contains(speaker), "{name}: {}", speakers[0]);
    }
    for (name, s) in [("a", a.stats.unwrap()), ("b", b.stats.unwrap())] {
        assert!(
            num(&s, "/audio_send/frames_encoded") > 250.0,
            "{name} captured from its microphone: {s:#}"
        );
        assert!(
            num(&s, "/audio_recv/frames_decoded") > 250.0,
            "{name} received audio: {s:#}"
        );
        // What the devices hold is measured and counted in mouth to ear: the speaker's queue
        // and its device's buffering for every frame heard, the microphone's age.
        let speaker_ms = num(&s, "/audio_recv/speaker_delay_ms/p50");
        eprintln!(
            "{name}: speaker and device {speaker_ms:.1} ms, microphone device {:?} ms, mouth to \
             ear (sender reports) {:.1} ms",
            s["audio_send"]["mic_device_ms"].as_f64(),
            num(&s, "/audio_recv/latency_estimated_ms/p50"),
        );
        assert!(
            num(&s, "/audio_recv/speaker_delay_ms/count") > 250.0
                && (5.0..150.0).contains(&speaker_ms),
            "{name}: the speaker's delay is measured: {s:#}"
        );
        assert!(
            s["audio_send"]["mic_device_ms"].as_f64().is_some(),
            "{name}: the microphone's delay is measured: {s:#}"
        );
        assert!(
            num(&s, "/audio_recv/latency_estimated_ms/p50") > speaker_ms + 10.0,
            "{name}: mouth to ear includes the speaker: {s:#}"
        );
    }
    // What each virtual speaker played is the other side's tone.
    for (path, want, other, who) in [
        (&heard_b, 440.0, 660.0, "b hears a"),
        (&heard_a, 660.0, 440.0, "a hears b"),
    ] {
        let (rate, samples) = read_wav(path);
        // A monitor records only while its sink plays: seconds 1 to 5 of the call's audio.
        let r = rate as usize;
        let tail = &samples[r.min(samples.len())..(5 * r).min(samples.len())];
        let (p_want, p_other) = (goertzel(tail, want, rate), goertzel(tail, other, rate));
        let level = level_dbfs(tail);
        eprintln!(
            "{who}: level {level:.1} dBFS, {want} Hz / {other} Hz power ratio {:.1} dB",
            10.0 * (p_want / p_other).log10()
        );
        assert!(level > -30.0, "{who}: speaker level {level:.1} dBFS");
        assert!(p_want > 100.0 * p_other, "{who}: the right tone dominates");
    }
}

#[test]
fn a_call_goes_on_when_the_audio_devices_vanish() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(&["spk_a", "mic_a"]);
    let server = Server::start(&[]);
    let room = room_code(23);
    let a_args = [
        "--camera",
        "test",
        "--mic",
        "default",
        "--speaker",
        "default",
        "--video-size",
        "320x180",
        "--duration",
        "8",
        "--wait",
        "30",
    ];
    let b_args = test_media("320x180", &["--duration", "8", "--wait", "30"]);
    let a = Peer::start_with_env(
        dir.path(),
        "a",
        &server.url,
        &room,
        &a_args,
        &pulse.env(Some("spk_a"), Some("mic_a.monitor")),
    );
    let b = Peer::start(dir.path(), "b", &server.url, &room, &b_args);
    // Three seconds in, the sound server (A's microphone and speaker) goes away: "unplugged".
    std::thread::sleep(Duration::from_secs(3));
    drop(pulse);
    let (a, b) = (
        a.finish(Duration::from_secs(60)),
        b.finish(Duration::from_secs(60)),
    );
    assert!(a.status.success(), "the call went on: {}", a.stderr);
    assert!(b.status.success(), "{}", b.stderr);
    assert!(
        a.stderr.contains("audio is off"),
        "A was told its microphone stopped: {}",
        a.stderr
    );
    // Video kept flowing both ways for the whole call.
    let (sa, sb) = (a.stats.unwrap(), b.stats.unwrap());
    assert!(num(&sb, "/video_recv/frames_decoded") > 150.0, "{sb:#}");
    assert!(num(&sa, "/video_recv/frames_decoded") > 150.0, "{sa:#}");
}

#[test]
fn echo_cancellation_stops_a_peers_voice_coming_back() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let speech = dir.path().join("speech.wav");
    run(Command::new("espeak-ng").args(["-v", "en-us", "-s", "150", "-w"]).arg(&speech).arg(
        "This is the far end talking. I am reading a long paragraph so that the echo canceller on the other side \
         has time to learn the room. The quick brown fox jumps over the lazy dog, and then it jumps back again. \
         We keep talking for a while: one, two, three, four, five, six, seven, eight, nine, ten. Thank you.",
    ));
    let mut levels = Vec::new();
    let mut details = Vec::new();
    for aec in [true, false] {
        let pulse = Pulse::start(&["spk_a", "spk_b", "mic_b"]);
        let _talk = pulse.play("mic_b", &speech);
        let server = Server::start(&[]);
        let room = room_code(if aec { 31 } else { 32 });
        let back = dir.path().join(format!("back-{aec}.wav"));
        let mut a_args = vec![
            "--camera",
            "none",
            "--mic",
            "default",
            "--speaker",
            "default",
            "--no-ns",
            "--no-agc",
            "--duration",
            "14",
            "--wait",
            "30",
        ];
        if !aec {
            a_args.push("--no-aec");
        }
        let b_args = [
            "--camera",
            "none",
            "--mic",
            "default",
            "--speaker",
            "default",
            "--no-ns",
            "--no-agc",
            "--duration",
            "14",
            "--wait",
            "30",
            "--record-audio",
            back.to_str().unwrap(),
        ];
        // A's microphone is its own speaker's output: everything A plays, A hears.
        let a = Peer::start_with_env(
            dir.path(),
            "a",
            &server.url,
            &room,
            &a_args,
            &pulse.env(Some("spk_a"), Some("spk_a.monitor")),
        );
        let b = Peer::start_with_env(
            dir.path(),
            "b",
            &server.url,
            &room,
            &b_args,
            &pulse.env(Some("spk_b"), Some("mic_b.monitor")),
        );
        let (a, b) = (
            a.finish(Duration::from_secs(60)),
            b.finish(Duration::from_secs(60)),
        );
        assert!(a.status.success(), "a: {}", a.stderr);
        assert!(b.status.success(), "b: {}", b.stderr);
        // B's own voice coming back, after A's canceller had 6 s to converge, while B talks.
        let (rate, samples) = read_wav(&back);
        let window = &samples
            [(rate as usize * 6).min(samples.len())..(rate as usize * 13).min(samples.len())];
        levels.push(level_dbfs(window));
        // What A's canceller reported, and how A's playout went: the first place to look when the
        // echo comes back louder than it should.
        let stats = a.stats.unwrap_or_default();
        let field = |path: &str| stats.pointer(path).cloned().unwrap_or_default();
        let per_second: Vec<String> = window
            .chunks(rate as usize)
            .map(|s| format!("{:.0}", level_dbfs(s)))
            .collect();
        details.push(format!(
            "AEC {}: level per second {} dBFS; canceller ERLE {} dB, delay {} ms; A concealed {} and stretched {} of {} frames; \
             A's speaker dropped {} and ran dry for {} samples, its microphone lost {}",
            if aec { "on" } else { "off" },
            per_second.join(" "),
            field("/audio_send/aec_erle_db"),
            field("/audio_send/aec_delay_ms"),
            field("/audio_recv/frames_concealed"),
            field("/audio_recv/frames_stretched"),
            field("/audio_recv/frames_decoded"),
            field("/audio_recv/speaker_samples_dropped"),
            field("/audio_recv/speaker_underrun_samples"),
            field("/audio_send/mic_samples_dropped"),
        ));
    }
    let (on, off) = (levels[0], levels[1]);
    let details = details.join("\n");
    eprintln!(
        "echo of B's voice returning from A: {on:.1} dBFS with AEC, {off:.1} dBFS without: {:.1} dB less\n{details}",
        off - on
    );
    assert!(
        off > -45.0,
        "without AEC the echo must be audible ({off:.1} dBFS), or the test proves nothing"
    );
    assert!(
        off - on >= 15.0,
        "AEC removed only {:.1} dB of echo\n{details}",
        off - on
    );
}

/// Y plane of the last frame of a y4m file, with its size.
fn last_y4m_frame(path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let header_end = bytes.iter().position(|&b| b == b'\n').unwrap();
    let header = String::from_utf8_lossy(&bytes[..header_end]).to_string();
    let field = |tag: char| -> u32 {
        header
            .split_whitespace()
            .find_map(|f| f.strip_prefix(tag))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let (w, h) = (field('W'), field('H'));
    let frame_len = 6 + (w * h * 3 / 2) as usize;
    let frames = (bytes.len() - header_end - 1) / frame_len;
    assert!(frames > 0, "no frames recorded");
    let start = header_end + 1 + (frames - 1) * frame_len + 6;
    (w, h, bytes[start..start + (w * h) as usize].to_vec())
}

/// A slide for the screen tests: a gradient of `size` with shapes drawn on it, each an
/// ImageMagick fill colour and `-draw` primitive.
fn slide(dir: &Path, size: &str, gradient: &str, shapes: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("slide.png");
    let mut convert = Command::new("convert");
    convert.args(["-size", size, &format!("gradient:{gradient}")]);
    for (fill, shape) in shapes {
        convert.args(["-fill", fill, "-draw", shape]);
    }
    run(convert.arg(&path));
    path
}

/// A display of `width` x `height` showing a `slide` full screen, and its luma as a screenshot
/// reads it: what a screen share of it should deliver.
struct SlideOnScreen {
    dir: tempfile::TempDir,
    x: Xvfb,
    _shown: confab_e2e::Proc,
    screen: Vec<u8>,
}

fn slide_on_screen(
    width: u32,
    height: u32,
    gradient: &str,
    shapes: &[(&str, &str)],
) -> SlideOnScreen {
    let dir = tempfile::tempdir().unwrap();
    let x = Xvfb::start(width, height);
    let slide = slide(dir.path(), &format!("{width}x{height}"), gradient, shapes);
    let shown = x.show(&slide);
    let screen = screenshot_luma(&x.display, dir.path());
    SlideOnScreen {
        dir,
        x,
        _shown: shown,
        screen,
    }
}

fn screenshot_luma(display: &str, dir: &Path) -> Vec<u8> {
    let shot = dir.join("shot.rgb");
    run(Command::new("import")
        .args(["-display", display, "-window", "root", "-depth", "8"])
        .arg(format!("rgb:{}", shot.display())));
    confab_media::convert::rgb_luma(&std::fs::read(&shot).unwrap())
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    confab_media::quality::psnr(a, b).expect("two planes of the same size")
}

/// The last frame of the `received` recording is `size` and its luma within 30 dB of `want`
/// (PSNR); prints the PSNR under `what`.
fn arrived_as(received: &Path, size: (u32, u32), want: &[u8], what: &str) {
    let (w, h, got) = last_y4m_frame(received);
    assert_eq!((w, h), size, "{what}: the size sent");
    let db = psnr(want, &got);
    eprintln!("{what}: PSNR {db:.1} dB");
    assert!(db >= 30.0, "{what}: PSNR {db:.1} dB");
}

#[test]
fn a_shared_screen_arrives_as_it_looks() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let x = Xvfb::start(1280, 720);
    let font = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    let (first, second) = (dir.path().join("first.png"), dir.path().join("second.png"));
    run(Command::new("convert")
        .args([
            "-size",
            "1280x720",
            "gradient:#203050-#d0a040",
            "-fill",
            "white",
            "-font",
            font,
            "-pointsize",
            "40",
        ])
        .args([
            "-annotate",
            "+60+120",
            "Confab screen sharing test",
            "-annotate",
            "+60+220",
            "Quarterly numbers: 42, 17, 3.14",
        ])
        .args(["-fill", "#c03030", "-draw", "rectangle 700,300 1100,600"])
        .arg(&first));
    run(Command::new("convert")
        .args([
            "-size",
            "1280x720",
            "xc:#f4f4f0",
            "-fill",
            "#202020",
            "-font",
            font,
            "-pointsize",
            "28",
        ])
        .args([
            "-annotate",
            "+40+80",
            "fn main() { println!(\"the second slide\"); }",
            "-annotate",
            "+40+140",
            "Small text must stay legible: 0123456789",
        ])
        .args(["-fill", "#3060c0", "-draw", "circle 900,450 1000,550"])
        .arg(&second));
    let shown = x.show(&first);
    let first_luma = screenshot_luma(&x.display, dir.path());

    let (a, b, received, _second_shown) = share_screen(dir.path(), &x, "0", 41, 7, &[], || {
        // Half way through the call the screen changes: what arrives must follow it.
        std::thread::sleep(Duration::from_secs(3));
        let second_shown = x.show(&second);
        drop(shown);
        second_shown
    });
    assert!(
        a.stderr
            .contains("from the X server directly shared_memory=true"),
        "on Xvfb the screen is read from the X server through shared memory: {}",
        a.stderr
    );

    let second_luma = screenshot_luma(&x.display, dir.path());
    let (w, h, got) = last_y4m_frame(&received);
    assert_eq!((w, h), (1280, 720));
    let (now, before) = (psnr(&second_luma, &got), psnr(&first_luma, &got));
    eprintln!("screen share: received 1280x720; PSNR {now:.1} dB against the screen at the end, {before:.1} dB against the earlier screen");
    assert!(now >= 30.0, "PSNR {now:.1} dB");
    assert!(
        before < 20.0,
        "the received picture followed the change ({before:.1} dB against the old screen)"
    );
    let stats = b.stats.unwrap();
    assert!(
        num(&stats, "/video_recv/frames_decoded") >= 2.0,
        "{stats:#}"
    );
}

/// A call of `secs` in which peer a shares `what` of `x` (`--screen`: `0`, `window:TITLE`; with
/// `env` added to its environment and its devices' debug log on) and peer b records what
/// arrives; `during` runs while the call is on, and what it returns is handed back. Both peers
/// must end well.
fn share_screen<T>(
    dir: &Path,
    x: &Xvfb,
    what: &str,
    salt: u64,
    secs: u32,
    env: &[(String, String)],
    during: impl FnOnce() -> T,
) -> (
    confab_e2e::Outcome,
    confab_e2e::Outcome,
    std::path::PathBuf,
    T,
) {
    let server = Server::start(&[]);
    let room = room_code(salt);
    let received = dir.join("received.y4m");
    let secs = secs.to_string();
    let both = [
        "--camera",
        "none",
        "--mic",
        "none",
        "--duration",
        &secs,
        "--wait",
        "30",
    ];
    let mut a_env = vec![
        ("DISPLAY".to_owned(), x.display.clone()),
        ("RUST_LOG".to_owned(), "confab_devices=debug".to_owned()),
    ];
    a_env.extend_from_slice(env);
    let mut a_args = vec!["--screen", what];
    a_args.extend(both);
    let a = Peer::start_with_env(dir, "a", &server.url, &room, &a_args, &a_env);
    let mut b_args = both.to_vec();
    b_args.extend(["--record-video", received.to_str().unwrap()]);
    let b = Peer::start(dir, "b", &server.url, &room, &b_args);
    let kept = during();
    let (a, b) = (
        a.finish(Duration::from_secs(60)),
        b.finish(Duration::from_secs(60)),
    );
    assert!(a.status.success(), "a: {}", a.stderr);
    assert!(b.status.success(), "b: {}", b.stderr);
    (a, b, received, kept)
}

/// On X11 a monitor is read from the X server directly; xcap stays the way for windows, other
/// systems, and when the direct read fails or is turned off. This keeps xcap's path honest too.
#[test]
fn a_screen_shared_through_xcap_arrives_as_it_looks() {
    let _machine = serial();
    let shown = slide_on_screen(
        640,
        360,
        "#f0e0c0-#304060",
        &[("#20a040", "rectangle 40,40 300,200")],
    );

    let xcap = [("CONFAB_SCREEN_CAPTURE".to_owned(), "xcap".to_owned())];
    let (a, _, received, ()) = share_screen(shown.dir.path(), &shown.x, "0", 43, 3, &xcap, || ());
    assert!(
        !a.stderr.contains("from the X server directly"),
        "CONFAB_SCREEN_CAPTURE=xcap must keep the direct read off: {}",
        a.stderr
    );
    arrived_as(
        &received,
        (640, 360),
        &shown.screen,
        "screen share through xcap, against the screen",
    );
}

/// A screen larger than what is sent (1440p) arrives scaled to fit 1920x1080: captured into the
/// full-size frame the source keeps between captures, then scaled, frame after frame.
#[test]
fn a_screen_larger_than_1080p_arrives_scaled_to_fit() {
    let _machine = serial();
    let shown = slide_on_screen(
        2560,
        1440,
        "#304060-#f0e0c0",
        &[
            ("#c03030", "rectangle 200,200 1400,900"),
            ("#20a040", "circle 1900,1000 2200,1200"),
        ],
    );
    // The screen's luma scaled as the sender scales it (chroma does not change luma's scale).
    let full = VideoFrame {
        width: 2560,
        height: 1440,
        data: [shown.screen.clone(), vec![128; 2 * 1280 * 720]].concat(),
        capture_ts_us: 0,
    };
    let want = confab_media::convert::scale(&full, 1920, 1080);

    let (a, _, received, ()) = share_screen(shown.dir.path(), &shown.x, "0", 46, 3, &[], || ());
    assert!(
        a.stderr
            .contains("from the X server directly shared_memory=true"),
        "{}",
        a.stderr
    );
    let what = "1440p screen share, against the screen scaled";
    arrived_as(&received, (1920, 1080), want.y(), what);
}

/// One window shared, where a window manager put it: only its pixels arrive, read from the X
/// server directly (through shared memory), and through xcap when that is turned off. The second
/// call names the window by its application (ImageMagick's class, `Display-im6.q16` on Debian 12)
/// instead of its title.
#[test]
fn a_shared_window_arrives_as_it_looks() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let x = Xvfb::start(1280, 720);
    let _wm = x.window_manager();
    let slide = slide(
        dir.path(),
        "480x270",
        "#f0e0c0-#304060",
        &[("#20a040", "rectangle 40,40 200,150")],
    );
    let rgb = dir.path().join("slide.rgb");
    run(Command::new("convert")
        .arg(&slide)
        .args(["-depth", "8"])
        .arg(format!("rgb:{}", rgb.display())));
    let want = confab_media::convert::rgb_luma(&std::fs::read(&rgb).unwrap());
    let _shown = x.show_window(&slide, "confab slide");

    let direct: [(String, String); 0] = [];
    let xcap = [("CONFAB_SCREEN_CAPTURE".to_owned(), "xcap".to_owned())];
    for (how, env, spec, salt) in [
        ("directly", &direct[..], "window:confab slide", 44),
        (
            "through xcap, by application",
            &xcap[..],
            "window:display-im",
            45,
        ),
    ] {
        let (a, _, received, ()) = share_screen(dir.path(), &x, spec, salt, 3, env, || ());
        let read_directly = a
            .stderr
            .contains("reading the window from the X server directly shared_memory=true");
        assert_eq!(read_directly, env.is_empty(), "{how}: {}", a.stderr);
        let what = format!("window share {how}, against the window's picture");
        arrived_as(&received, (480, 270), &want, &what);
    }
}

#[test]
fn devices_are_listed_and_missing_ones_explained() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(&["spk"]);
    let x = Xvfb::start(800, 600);
    let mut env = pulse.env(Some("spk"), Some("spk.monitor"));
    env.push(("DISPLAY".to_owned(), x.display.clone()));
    let out = Command::new(confab_e2e::bin("confab"))
        .args(["devices", "--json"])
        .envs(env.clone())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !said.contains("jack server"),
        "listing must not wake libjack when no JACK server runs:\n{said}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["cameras"],
        serde_json::json!([]),
        "no camera here, and that is not an error"
    );
    assert!(
        json["microphones"]
            .as_array()
            .is_some_and(|m| !m.is_empty()),
        "{json:#}"
    );
    // PulseAudio's devices by their descriptions; the one PULSE_SINK names is the default.
    let named = |list: &str, name: &str| {
        json[list]
            .as_array()
            .and_then(|l| l.iter().find(|d| d["name"] == name))
            .cloned()
    };
    assert_eq!(
        named("speakers", "spk").map(|d| d["default"].clone()),
        Some(serde_json::json!(true)),
        "{json:#}"
    );
    // Each with PulseAudio's own name for it, which a SPEC may give.
    assert_eq!(
        named("microphones", "Monitor of spk").map(|d| d["id"].clone()),
        Some(serde_json::json!("spk.monitor")),
        "{json:#}"
    );
    assert_eq!(json["screens"][0]["width"], 800);
    // An audio system asked for that is not there is explained, and the listing goes on.
    let out = Command::new(confab_e2e::bin("confab"))
        .args(["devices", "--json"])
        .envs(env.clone())
        .env("CONFAB_AUDIO_HOST", "nope")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains("CONFAB_AUDIO_HOST=\"nope\" cannot be used"),
        "{said}"
    );

    // A default speaker the environment names but the server lacks is explained, and the call
    // goes on without sound.
    let server = Server::start(&[]);
    let alone = |name: &str, room: u64, args: &[&str], env: &[(String, String)]| {
        Peer::start_with_env(dir.path(), name, &server.url, &room_code(room), args, env)
            .finish(Duration::from_secs(20))
    };
    let mut no_sink = pulse.env(Some("gone"), Some("spk.monitor"));
    no_sink.push(("DISPLAY".to_owned(), x.display.clone()));
    let args = ["--camera", "none", "--speaker", "default", "--wait", "1"];
    let p = alone("nosink", 52, &args, &no_sink);
    assert!(
        p.stderr.contains("\"gone\" (PULSE_SINK / PULSE_SOURCE)")
            && p.stderr.contains("it has: spk")
            && p.stderr.contains("continuing without a speaker"),
        "{}",
        p.stderr
    );

    // Asking for a camera that is not there says so, and the call goes on without video.
    let p = alone(
        "nocam",
        51,
        &["--camera", "default", "--mic", "none", "--wait", "1"],
        &env,
    );
    assert!(
        p.stderr.contains("no camera found") && p.stderr.contains("continuing without video"),
        "{}",
        p.stderr
    );
    // Without a display, the screens are unavailable, and the listing says why.
    let text = Command::new(confab_e2e::bin("confab"))
        .arg("devices")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Cameras:") && text.contains("(none)"),
        "{text}"
    );
    assert!(
        text.contains("neither DISPLAY nor WAYLAND_DISPLAY is set"),
        "{text}"
    );
}

/// The mono samples of a finished WAV file (hound checks the header's lengths: a file whose sink
/// was never finished reads as empty).
fn finished_wav(path: &Path) -> Vec<f32> {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("a sample")) / 32768.0)
        .collect()
}

#[test]
fn devices_switched_mid_call_are_what_the_other_side_gets() {
    let _machine = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[]);
    let room = room_code(29);
    // Bob's other camera is square (the first one is 16:9), his other microphone 1 kHz tone
    // bursts (the test signal is 440 Hz).
    let square = dir.path().join("square.y4m");
    confab_e2e::browser::write_pattern_y4m(&square, 240, 240, 60);
    let tone_wav = dir.path().join("tone.wav");
    tone_bursts(&tone_wav, 1000, 4);
    let (first_wav, second_wav) = (dir.path().join("a1.wav"), dir.path().join("a2.wav"));
    let camera_switch = format!("1500:file:{}", square.display());
    let mic_switch = format!("3000:file:{}", tone_wav.display());
    let first_speaker = format!("file:{}", first_wav.display());
    let speaker_switch = format!("2000:file:{}", second_wav.display());
    let a_args = [
        "--camera",
        "test",
        "--mic",
        "test",
        "--speaker",
        &first_speaker,
        "--video-size",
        "320x180",
        "--duration",
        "6",
        "--test-switch-speaker",
        &speaker_switch,
    ];
    let b_args = test_media(
        "320x180",
        &[
            "--duration",
            "6",
            "--test-switch-camera",
            &camera_switch,
            "--test-switch-mic",
            &mic_switch,
        ],
    );
    let a = Peer::start(dir.path(), "a", &server.url, &room, &a_args);
    let b = Peer::start(dir.path(), "b", &server.url, &room, &b_args);
    let (a, b) = (
        a.finish(Duration::from_secs(60)),
        b.finish(Duration::from_secs(60)),
    );
    assert!(a.status.success(), "{}", a.stderr);
    assert!(b.status.success(), "{}", b.stderr);
    for what in ["square.y4m", "tone.wav"] {
        assert!(
            b.stderr.contains("switching to file:") && b.stderr.contains(what),
            "B switched to {what}: {}",
            b.stderr
        );
    }
    // The last frames Alice decoded came from the square camera.
    let sa = a.stats.unwrap();
    let (w, h) = (
        num(&sa, "/video_recv/width"),
        num(&sa, "/video_recv/height"),
    );
    assert!(w > 0.0 && w == h, "square frames last: {w}x{h}");
    // Alice's first speaker (finished when the second took over) heard the test signal only;
    // the second one heard the tone bursts at the end.
    let first = finished_wav(&first_wav);
    assert!(
        first.len() > 48_000,
        "a second or more on the first speaker"
    );
    let rate = 48_000;
    assert!(
        goertzel(&first, 440.0, rate) > 10.0 * goertzel(&first, 1000.0, rate),
        "the test signal on the first speaker"
    );
    let second = finished_wav(&second_wav);
    assert!(
        second.len() > 96_000,
        "two seconds or more on the second speaker"
    );
    // A second that ends half a second before the call does (the end may be silence).
    let last = &second[second.len() - 72_000..second.len() - 24_000];
    assert!(level_dbfs(last) > -30.0, "sound: {} dBFS", level_dbfs(last));
    assert!(
        goertzel(last, 1000.0, rate) > 10.0 * goertzel(last, 440.0, rate),
        "the new microphone's tone at the end"
    );
}

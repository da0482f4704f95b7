//! `confab devices [--json]`: what Confab can capture from and play to. Each kind is listed
//! independently, so a failure (no display, no audio system) is reported without hiding the rest.

use serde::Serialize;

use confab_devices::audio_device::{self, AudioDeviceDescription};
use confab_devices::camera::{self, CameraDescription};
use confab_devices::screen::{self, ScreenDescription, WindowDescription};
use confab_devices::CaptureError;

/// One kind of device: the list, or why it could not be listed.
#[derive(Serialize)]
#[serde(untagged)]
enum Listing<T> {
    Devices(Vec<T>),
    Error { error: String },
}

impl<T> From<Result<Vec<T>, CaptureError>> for Listing<T> {
    fn from(result: Result<Vec<T>, CaptureError>) -> Self {
        match result {
            Ok(list) => Self::Devices(list),
            Err(e) => Self::Error {
                error: e.to_string(),
            },
        }
    }
}

#[derive(Serialize)]
struct Devices {
    cameras: Listing<CameraDescription>,
    microphones: Listing<AudioDeviceDescription>,
    speakers: Listing<AudioDeviceDescription>,
    screens: Listing<ScreenDescription>,
    windows: Listing<WindowDescription>,
}

fn section<T>(title: &str, listing: &Listing<T>, line: impl Fn(&T) -> String) {
    println!("{title}:");
    match listing {
        Listing::Devices(list) if list.is_empty() => println!("  (none)"),
        Listing::Devices(list) => list.iter().for_each(|d| println!("  {}", line(d))),
        Listing::Error { error } => println!("  unavailable: {error}"),
    }
}

pub fn run(json: bool) -> anyhow::Result<()> {
    let devices = Devices {
        cameras: camera::describe().into(),
        microphones: audio_device::describe(true).into(),
        speakers: audio_device::describe(false).into(),
        screens: screen::screens().into(),
        windows: screen::windows().into(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
        return Ok(());
    }
    section("Cameras", &devices.cameras, |c| {
        let formats = if c.formats.is_empty() {
            c.error.clone().unwrap_or_default()
        } else {
            c.formats.join(", ")
        };
        format!("{}: {} [{formats}]", c.index, c.name)
    });
    let audio = |d: &AudioDeviceDescription| {
        format!(
            "{}: {}{}{} ({} Hz, {} ch, {})",
            d.index,
            d.name,
            if d.id.is_empty() || d.id == d.name {
                String::new()
            } else {
                format!(" [{}]", d.id)
            },
            if d.default { " (default)" } else { "" },
            d.sample_rate_hz.map_or("?".into(), |r| r.to_string()),
            d.channels.map_or("?".into(), |c| c.to_string()),
            d.sample_format.clone().unwrap_or_else(|| "?".into())
        )
    };
    section("Microphones", &devices.microphones, audio);
    section("Speakers", &devices.speakers, audio);
    section("Screens", &devices.screens, |s| {
        format!(
            "{}: {} {}x{}{}",
            s.index,
            s.name,
            s.width,
            s.height,
            if s.primary { " (primary)" } else { "" }
        )
    });
    section("Windows", &devices.windows, |w| {
        format!("window:{} ({}, {}x{})", w.name(), w.app, w.width, w.height)
    });
    Ok(())
}

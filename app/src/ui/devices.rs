//! Device lists for the pickers, gathered on a background thread at start (enumerating audio
//! devices and cameras can take a moment; the window must not wait for it).

use std::sync::{Arc, Mutex};

use confab_devices::{audio_device, camera, screen};

/// A choice in a picker: what the user sees, and the SPEC it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub label: String,
    pub spec: String,
}

impl Choice {
    fn new(label: impl Into<String>, spec: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            spec: spec.into(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeviceLists {
    pub cameras: Vec<Choice>,
    pub mics: Vec<Choice>,
    pub speakers: Vec<Choice>,
    pub screens: Vec<Choice>,
    pub loaded: bool,
}

impl DeviceLists {
    pub fn gather() -> Self {
        let mut cameras = vec![Choice::new("Default camera", "default")];
        if let Ok(list) = camera::list() {
            cameras.extend(
                list.iter()
                    .map(|c| Choice::new(c.human_name(), c.human_name())),
            );
        }
        cameras.push(Choice::new("Test pattern", "test"));
        cameras.push(Choice::new("No camera", "none"));
        let audio = |input: bool, default: &str, test: Option<Choice>, none: Choice| {
            let mut list = vec![Choice::new(default, "default")];
            if let Ok(devices) = audio_device::describe(input) {
                list.extend(
                    devices
                        .into_iter()
                        .map(|d| Choice::new(d.name.clone(), d.spec())),
                );
            }
            list.extend(test);
            list.push(none);
            list
        };
        let mics = audio(
            true,
            "Default microphone",
            Some(Choice::new("Test signal", "test")),
            Choice::new("No microphone", "none"),
        );
        let speakers = audio(
            false,
            "Default speaker",
            None,
            Choice::new("No sound", "null"),
        );
        let mut screens: Vec<Choice> = screen::screens()
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                Choice::new(
                    format!("Screen {} ({}x{})", s.index + 1, s.width, s.height),
                    s.index.to_string(),
                )
            })
            .collect();
        screens.extend(
            screen::windows()
                .unwrap_or_default()
                .into_iter()
                .filter(|w| !w.name().is_empty())
                .map(|w| {
                    Choice::new(
                        format!("Window: {}", w.name()),
                        format!("window:{}", w.name()),
                    )
                }),
        );
        Self {
            cameras,
            mics,
            speakers,
            screens,
            loaded: true,
        }
    }

    /// Starts gathering on a thread; the lists fill in when done.
    pub fn gather_in_background(ctx: egui::Context) -> Arc<Mutex<DeviceLists>> {
        let lists = Arc::new(Mutex::new(DeviceLists::default()));
        let out = lists.clone();
        let spawned = std::thread::Builder::new()
            .name("device-scan".into())
            .spawn(move || {
                let found = DeviceLists::gather();
                *out.lock().unwrap_or_else(|p| p.into_inner()) = found;
                ctx.request_repaint();
            });
        if let Err(err) = spawned {
            tracing::warn!(%err, "cannot scan devices");
        }
        lists
    }

    /// The label for a spec (or the spec itself when it is not in the list).
    pub fn label<'a>(choices: &'a [Choice], spec: &'a str) -> &'a str {
        choices
            .iter()
            .find(|c| c.spec == spec)
            .map_or(spec, |c| c.label.as_str())
    }
}

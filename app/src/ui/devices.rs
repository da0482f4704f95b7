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

/// The SPEC a picked microphone or speaker is saved as: its audio system's own name for it, which
/// still finds it after other devices came or went; its place in the list when it has none.
fn audio_spec(d: &audio_device::AudioDeviceDescription) -> String {
    if d.id.is_empty() || d.id == "default" {
        d.index.to_string()
    } else {
        d.id.clone()
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
                        .map(|d| Choice::new(d.name.clone(), audio_spec(&d))),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn described(index: usize, id: &str) -> audio_device::AudioDeviceDescription {
        audio_device::AudioDeviceDescription {
            index,
            name: "Built-in Audio Analog Stereo".into(),
            id: id.into(),
            default: false,
            sample_rate_hz: Some(48_000),
            channels: Some(2),
            sample_format: Some("f32".into()),
        }
    }

    #[test]
    fn a_picked_audio_device_is_saved_by_its_systems_name() {
        let id = "alsa_output.pci-0000_00_1f.3.analog-stereo";
        assert_eq!(audio_spec(&described(3, id)), id);
        // No name of its own, or one that a SPEC reads as the system's default: its place.
        assert_eq!(audio_spec(&described(3, "")), "3");
        assert_eq!(audio_spec(&described(4, "default")), "4");
    }
}

//! Where frames and samples come from and where received audio goes: one trait per device kind,
//! each with real and synthetic implementations. `open_*` turn a command-line SPEC (`test`,
//! `test:2`, `file:PATH`, `none`, or a device) into a source or sink.
//!
//! Sources block until their next frame or block is due (they pace themselves); they never touch
//! the network or the codecs.

pub mod audio_device;
pub mod camera;
pub mod screen;
pub mod test_sources;
pub mod wav;
#[cfg(target_os = "linux")]
mod x11_shm;
pub mod y4m;

pub use confab_media::{
    AudioSink, AudioSource, CaptureError, EchoReference, Pacer, Room, VideoOut, VideoSource,
};

/// What a video SPEC asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSpec {
    None,
    Test,
    /// `test:2`: the test signal's second voice, for a second peer (a camera shows the test
    /// pattern, as with `test`).
    TestSecondVoice,
    File(std::path::PathBuf),
    Device(String),
}

impl VideoSpec {
    pub fn parse(spec: &str) -> Self {
        match spec.trim() {
            "" | "none" => Self::None,
            "test" => Self::Test,
            "test:2" => Self::TestSecondVoice,
            s => match s.strip_prefix("file:") {
                Some(path) => Self::File(path.into()),
                None => Self::Device(s.to_owned()),
            },
        }
    }
}

/// Opens the video source a `--camera` SPEC names.
pub fn open_camera(
    spec: &VideoSpec,
    width: u32,
    height: u32,
    fps: u32,
) -> Result<Option<Box<dyn VideoSource>>, CaptureError> {
    Ok(match spec {
        VideoSpec::None => None,
        VideoSpec::Test | VideoSpec::TestSecondVoice => {
            Some(Box::new(test_sources::TestPattern::new(width, height, fps)))
        }
        VideoSpec::File(path) => Some(Box::new(y4m::Y4mSource::open(path)?)),
        VideoSpec::Device(name) => Some(Box::new(camera::CameraSource::open(
            name, width, height, fps,
        )?)),
    })
}

/// Opens the screen (or window) a `--screen` SPEC names.
pub fn open_screen(spec: &str, fps: u32) -> Result<Box<dyn VideoSource>, CaptureError> {
    Ok(Box::new(screen::ScreenSource::open(
        &screen::ScreenSpec::parse(spec),
        fps,
    )?))
}

/// Opens the audio source a `--mic` SPEC names.
pub fn open_mic(spec: &VideoSpec) -> Result<Option<Box<dyn AudioSource>>, CaptureError> {
    Ok(match spec {
        VideoSpec::None => None,
        VideoSpec::Test => Some(Box::new(test_sources::TestSignal::new())),
        VideoSpec::TestSecondVoice => Some(Box::new(test_sources::TestSignal::with_voice(
            confab_media::test_signal::Voice::Second,
        ))),
        VideoSpec::File(path) => Some(Box::new(wav::WavSource::open(path)?)),
        VideoSpec::Device(name) => Some(Box::new(audio_device::MicSource::open(name)?)),
    })
}

/// Opens the sink a `--speaker` SPEC names (`null`, `file:X.wav`).
pub fn open_speaker(spec: &str) -> Result<Box<dyn AudioSink>, CaptureError> {
    match spec.trim() {
        "" | "null" | "none" => Ok(Box::new(wav::NullSink)),
        s => match s.strip_prefix("file:") {
            Some(path) => Ok(Box::new(wav::WavSink::create(std::path::Path::new(path))?)),
            None => Ok(Box::new(audio_device::SpeakerSink::open(s)?)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(VideoSpec::parse("test"), VideoSpec::Test);
        assert_eq!(VideoSpec::parse("test:2"), VideoSpec::TestSecondVoice);
        assert_eq!(VideoSpec::parse("none"), VideoSpec::None);
        assert_eq!(
            VideoSpec::parse("file:/a b.y4m"),
            VideoSpec::File("/a b.y4m".into())
        );
        assert_eq!(VideoSpec::parse("0"), VideoSpec::Device("0".into()));
    }
}

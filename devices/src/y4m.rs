//! YUV4MPEG2 files: `--camera file:X.y4m` plays one in a loop at its own frame rate, and
//! `--record-video X.y4m` writes received frames to one. Only 4:2:0 is read (what Confab sends).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use confab_media::{clock, VideoFrame};
use confab_media::{CaptureError, Pacer, VideoSource};

/// Header fields of a y4m stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Y4mHeader {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
}

/// Parses `YUV4MPEG2 W640 H360 F30:1 Ip A1:1 C420jpeg`.
pub fn parse_header(line: &str) -> Result<Y4mHeader, String> {
    let mut fields = line.split_ascii_whitespace();
    if fields.next() != Some("YUV4MPEG2") {
        return Err("does not start with YUV4MPEG2".into());
    }
    let (mut width, mut height, mut fps) = (None, None, 30.0);
    for field in fields {
        let (tag, value) = field.split_at(1);
        match tag {
            "W" => width = value.parse::<u32>().ok(),
            "H" => height = value.parse::<u32>().ok(),
            "F" => {
                let (n, d) = value.split_once(':').ok_or("bad frame rate")?;
                let (n, d): (f64, f64) = (
                    n.parse().map_err(|_| "bad frame rate")?,
                    d.parse().map_err(|_| "bad frame rate")?,
                );
                if n <= 0.0 || d <= 0.0 || n / d > 240.0 {
                    return Err(format!("frame rate {value} is out of range"));
                }
                fps = n / d;
            }
            "C" if !value.starts_with("420") => {
                return Err(format!(
                    "colour space C{value} is not supported (only 4:2:0)"
                ))
            }
            _ => {}
        }
    }
    let (width, height) = (width.ok_or("no width")?, height.ok_or("no height")?);
    if width == 0
        || height == 0
        || width % 2 == 1
        || height % 2 == 1
        || width > 7680
        || height > 4320
    {
        return Err(format!(
            "size {width}x{height} is not even and within 7680x4320"
        ));
    }
    Ok(Y4mHeader { width, height, fps })
}

/// Plays a y4m file in a loop, paced at its frame rate.
pub struct Y4mSource {
    path: PathBuf,
    reader: BufReader<File>,
    header: Y4mHeader,
    data_start: u64,
    pacer: Pacer,
    name: String,
}

impl Y4mSource {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let bad = |reason: String| CaptureError::BadFile {
            path: path.to_owned(),
            kind: "y4m",
            reason,
        };
        let file = File::open(path).map_err(|source| CaptureError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        reader
            .by_ref()
            .take(1024)
            .read_line(&mut line)
            .map_err(|e| bad(e.to_string()))?;
        let header = parse_header(line.trim_end()).map_err(bad)?;
        let data_start = line.len() as u64;
        let mut source = Self {
            path: path.to_owned(),
            reader,
            header,
            data_start,
            pacer: Pacer::new(Duration::from_secs_f64(1.0 / header.fps)),
            name: format!(
                "{} ({}x{}@{:.0})",
                path.display(),
                header.width,
                header.height,
                header.fps
            ),
        };
        // A file without a single whole frame cannot be played.
        match source.read_frame() {
            Ok(Some(_)) => {}
            Ok(None) => return Err(bad("it holds no whole frame".into())),
            Err(e) => return Err(bad(e.to_string())),
        }
        source.rewind()?;
        Ok(source)
    }

    #[cfg(test)]
    pub fn header(&self) -> Y4mHeader {
        self.header
    }

    fn rewind(&mut self) -> Result<(), CaptureError> {
        self.reader
            .seek(SeekFrom::Start(self.data_start))
            .map(|_| ())
            .map_err(|source| CaptureError::Read {
                path: self.path.clone(),
                source,
            })
    }

    /// Reads the next frame; `Ok(None)` at the end of the file.
    fn read_frame(&mut self) -> std::io::Result<Option<VideoFrame>> {
        let mut line = Vec::new();
        let n = self
            .reader
            .by_ref()
            .take(256)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if !line.starts_with(b"FRAME") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "missing FRAME marker",
            ));
        }
        // Read into spare capacity: no zeroing of a 1.4 MB (720p) buffer each frame first.
        let len = VideoFrame::i420_len(self.header.width, self.header.height);
        let mut data = Vec::with_capacity(len);
        self.reader
            .by_ref()
            .take(len as u64)
            .read_to_end(&mut data)?;
        // A truncated last frame ends the file.
        let whole = data.len() == len;
        Ok(whole.then_some(VideoFrame {
            width: self.header.width,
            height: self.header.height,
            data,
            capture_ts_us: 0,
        }))
    }
}

impl VideoSource for Y4mSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_frame(&mut self) -> Result<VideoFrame, CaptureError> {
        self.pacer.wait();
        let read_err = |path: &Path, source| CaptureError::Read {
            path: path.to_owned(),
            source,
        };
        let frame = match self.read_frame().map_err(|e| read_err(&self.path, e))? {
            Some(frame) => frame,
            None => {
                self.rewind()?;
                self.read_frame()
                    .map_err(|e| read_err(&self.path, e))?
                    .ok_or_else(|| CaptureError::Stopped(self.name.clone()))?
            }
        };
        Ok(VideoFrame {
            capture_ts_us: clock::now_us(),
            ..frame
        })
    }
}

/// Writes frames to a y4m file; frames of another size than the first are skipped and counted.
pub struct Y4mWriter {
    path: PathBuf,
    out: BufWriter<File>,
    size: Option<(u32, u32)>,
    fps: u32,
    pub skipped: u64,
}

impl Y4mWriter {
    pub fn create(path: &Path, fps: u32) -> Result<Self, CaptureError> {
        let file = File::create(path).map_err(|source| CaptureError::Write {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::new(file),
            size: None,
            fps: fps.max(1),
            skipped: 0,
        })
    }

    pub fn write(&mut self, frame: &VideoFrame) -> Result<(), CaptureError> {
        let size = (frame.width, frame.height);
        let result = match self.size {
            None => {
                self.size = Some(size);
                writeln!(
                    self.out,
                    "YUV4MPEG2 W{} H{} F{}:1 Ip A1:1 C420jpeg",
                    frame.width, frame.height, self.fps
                )
                .and_then(|()| self.write_frame(frame))
            }
            Some(first) if first == size => self.write_frame(frame),
            Some(_) => {
                self.skipped += 1;
                Ok(())
            }
        };
        result.map_err(|source| CaptureError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn write_frame(&mut self, frame: &VideoFrame) -> std::io::Result<()> {
        self.out.write_all(b"FRAME\n")?;
        self.out.write_all(&frame.data)
    }

    pub fn finish(&mut self) -> Result<(), CaptureError> {
        self.out.flush().map_err(|source| CaptureError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_media::pattern;

    #[test]
    fn headers() {
        let h = parse_header("YUV4MPEG2 W640 H360 F30000:1001 Ip A1:1 C420jpeg").unwrap();
        assert_eq!((h.width, h.height), (640, 360));
        assert!((h.fps - 29.97).abs() < 0.01);
        assert_eq!(parse_header("YUV4MPEG2 W64 H48").unwrap().fps, 30.0);
        for bad in [
            "RIFF",
            "YUV4MPEG2 H48",
            "YUV4MPEG2 W63 H48",
            "YUV4MPEG2 W64 H48 C444",
            "YUV4MPEG2 W64 H48 F0:1",
            "YUV4MPEG2 W99999 H48",
        ] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }

    /// Writes `count` 64x48 pattern frames; returns them.
    fn write_pattern(writer: &mut Y4mWriter, count: u32) -> Vec<VideoFrame> {
        let frames: Vec<_> = (0..count).map(|i| pattern::render(i, 64, 48, 0)).collect();
        for f in &frames {
            writer.write(f).unwrap();
        }
        frames
    }

    #[test]
    fn write_then_play_back_in_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.y4m");
        let mut writer = Y4mWriter::create(&path, 100).unwrap();
        let frames = write_pattern(&mut writer, 3);
        writer.write(&pattern::render(0, 32, 32, 0)).unwrap();
        assert_eq!(writer.skipped, 1);
        writer.finish().unwrap();
        drop(writer);

        let mut source = Y4mSource::open(&path).unwrap();
        assert_eq!(
            source.header(),
            Y4mHeader {
                width: 64,
                height: 48,
                fps: 100.0
            }
        );
        for i in 0..7 {
            let got = source.next_frame().unwrap();
            assert_eq!(got.data, frames[i % 3].data, "frame {i}");
            assert!(got.capture_ts_us > 0);
        }
    }

    #[test]
    fn a_truncated_last_frame_ends_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.y4m");
        let mut writer = Y4mWriter::create(&path, 100).unwrap();
        let frames = write_pattern(&mut writer, 2);
        writer.finish().unwrap();
        drop(writer);
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 100]).unwrap();
        let mut source = Y4mSource::open(&path).unwrap();
        for i in 0..3 {
            assert_eq!(
                source.next_frame().unwrap().data,
                frames[0].data,
                "frame {i}"
            );
        }
    }

    #[test]
    fn bad_files_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Y4mSource::open(&dir.path().join("nope.y4m"))
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("cannot read"), "{missing}");
        let empty = dir.path().join("empty.y4m");
        std::fs::write(&empty, b"YUV4MPEG2 W64 H48 F30:1\n").unwrap();
        let err = Y4mSource::open(&empty).err().unwrap().to_string();
        assert!(err.contains("not a usable y4m file"), "{err}");
        let garbage = dir.path().join("garbage.y4m");
        std::fs::write(&garbage, vec![0xFFu8; 5000]).unwrap();
        assert!(Y4mSource::open(&garbage).is_err());
    }
}

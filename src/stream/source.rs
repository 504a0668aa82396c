//! Where frames come from: `--source` parsed into a [`SourceSpec`], opened into a
//! [`FrameSource`] that the capture thread pulls from.

use super::command::CommandSource;
use super::mjpeg::{MjpegSplitter, Split};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a source yields, one call at a time.
#[derive(Debug)]
pub enum Captured {
    Frame {
        data: super::FrameData,
        /// A name for messages (a file path), when frames have one.
        name: Option<String>,
    },
    /// A frame that was read but is unusable; the reason names where it broke.
    Corrupt(String),
    /// The source has ended normally.
    End,
    /// The source cannot deliver frames at all (a capture command that cannot run, a camera
    /// that cannot be reopened): the stream ends with this reason as its error.
    Failed(String),
}

/// A source of frames, pulled by the capture thread.
pub trait FrameSource: Send {
    fn next(&mut self) -> Captured;
    /// True when frames arrive at their own pace (a camera, a pipe) and the newest should win;
    /// false when every frame can wait to be classified (files).
    fn is_live(&self) -> bool;
    /// Something to call when the stream stops while the capture thread may still be blocked
    /// in a read (a capture command to kill).
    fn stopper(&self) -> Option<Box<dyn Fn() + Send + Sync>> {
        None
    }
}

/// Where `raw:` and `mjpeg:` read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

/// A parsed `--source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// `dir:PATH`: the images of a folder, in name order.
    Dir(PathBuf),
    /// `mjpeg:-` / `mjpeg:FILE`: concatenated JPEG frames.
    Mjpeg(Input),
    /// `raw:WxH:rgb24:-` / `raw:WxH:rgb24:FILE`: packed RGB frames of one size.
    Raw {
        width: u32,
        height: u32,
        input: Input,
    },
    /// `cmd:COMMAND`: a capture command run by `sh -c`, its standard output read as MJPEG.
    Cmd(String),
    /// `v4l2:/dev/videoN`: a V4L2 camera.
    V4l2(PathBuf),
}

/// The syntax, for error messages and `--help`.
pub const SOURCE_SYNTAX: &str =
    "dir:PATH | mjpeg:-|FILE | raw:WxH:rgb24:-|FILE | cmd:COMMAND | v4l2:/dev/videoN";

fn input(s: &str) -> Input {
    if s == "-" {
        Input::Stdin
    } else {
        Input::File(PathBuf::from(s))
    }
}

impl std::str::FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: expected KIND:..., one of {SOURCE_SYNTAX}"))?;
        if rest.is_empty() {
            return Err(format!("`{s}`: nothing after `{kind}:` ({SOURCE_SYNTAX})"));
        }
        match kind {
            "dir" => Ok(SourceSpec::Dir(PathBuf::from(rest))),
            "mjpeg" => Ok(SourceSpec::Mjpeg(input(rest))),
            "cmd" => Ok(SourceSpec::Cmd(rest.to_string())),
            "v4l2" => Ok(SourceSpec::V4l2(PathBuf::from(rest))),
            "raw" => {
                let mut parts = rest.splitn(3, ':');
                let (size, format, from) = (parts.next(), parts.next(), parts.next());
                let (Some(size), Some(format), Some(from)) = (size, format, from) else {
                    return Err(format!("`{s}`: expected raw:WxH:rgb24:-|FILE"));
                };
                if format != "rgb24" {
                    return Err(format!(
                        "`{s}`: pixel format `{format}` is not supported (rgb24 is)"
                    ));
                }
                let parsed = size
                    .split_once('x')
                    .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
                match parsed {
                    Some((width, height))
                        if width > 0
                            && height > 0
                            && (width as usize) * (height as usize) <= crate::jpeg::MAX_PIXELS =>
                    {
                        Ok(SourceSpec::Raw {
                            width,
                            height,
                            input: input(from),
                        })
                    }
                    _ => Err(format!(
                        "`{s}`: frame size `{size}` is not WxH with a sensible width and height"
                    )),
                }
            }
            other => Err(format!(
                "`{s}`: unknown source kind `{other}` (expected {SOURCE_SYNTAX})"
            )),
        }
    }
}

/// How a `cmd:` source is kept alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restarts {
    /// How often the command is started again after it exits (`None`: for ever).
    pub max_restarts: Option<u32>,
    /// Kill (and restart) the command after this long without a byte (`None`: never).
    pub stall_timeout: Option<std::time::Duration>,
}

impl Default for Restarts {
    fn default() -> Self {
        Restarts {
            max_restarts: None,
            stall_timeout: Some(super::command::DEFAULT_STALL_TIMEOUT),
        }
    }
}

impl SourceSpec {
    /// Opens the source; `restarts` applies to a `cmd:` source.
    pub fn open(&self, restarts: Restarts) -> anyhow::Result<Box<dyn FrameSource>> {
        Ok(match self {
            SourceSpec::Dir(dir) => Box::new(DirSource::open(dir)?),
            SourceSpec::Mjpeg(from) => {
                let (reader, live) = open_input(from)?;
                Box::new(MjpegSource::new(reader, live))
            }
            SourceSpec::Raw {
                width,
                height,
                input,
            } => {
                let (reader, live) = open_input(input)?;
                Box::new(RawSource::new(reader, *width, *height, live))
            }
            SourceSpec::Cmd(command) => Box::new(
                CommandSource::new(command, restarts.max_restarts)
                    .with_stall_timeout(restarts.stall_timeout),
            ),
            SourceSpec::V4l2(device) => super::v4l2::open(device)?,
        })
    }
}

/// Opens standard input or a file; live unless it is a regular file.
fn open_input(from: &Input) -> anyhow::Result<(Box<dyn Read + Send>, bool)> {
    use anyhow::Context;
    use std::os::unix::fs::FileTypeExt;
    let (reader, meta): (Box<dyn Read + Send>, _) = match from {
        Input::Stdin => (
            Box::new(std::io::stdin()),
            std::fs::metadata("/dev/stdin").ok(),
        ),
        Input::File(p) => {
            let f =
                std::fs::File::open(p).with_context(|| format!("{}: cannot open", p.display()))?;
            let meta = f.metadata().ok();
            (Box::new(f), meta)
        }
    };
    let live = meta.is_none_or(|m| {
        let t = m.file_type();
        t.is_fifo() || t.is_char_device() || t.is_socket()
    });
    Ok((reader, live))
}

/// `dir:`: each image file of a folder (recursively, in name order), read when its turn comes.
pub struct DirSource {
    files: std::vec::IntoIter<PathBuf>,
}

impl DirSource {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        if !dir.is_dir() {
            anyhow::bail!("{}: not a directory", dir.display());
        }
        let (files, errors) = crate::inputs::collect(&[dir.to_path_buf()]);
        for (p, e) in errors {
            log::warn!("{}: {e}", p.display());
        }
        if files.is_empty() {
            anyhow::bail!("{}: no .jpg/.jpeg/.png images in it", dir.display());
        }
        Ok(DirSource {
            files: files.into_iter(),
        })
    }
}

impl FrameSource for DirSource {
    fn next(&mut self) -> Captured {
        let Some(p) = self.files.next() else {
            return Captured::End;
        };
        let name = p.display().to_string();
        match std::fs::read(&p) {
            Ok(bytes) => Captured::Frame {
                data: super::FrameData::Encoded(bytes),
                name: Some(name),
            },
            Err(e) => Captured::Corrupt(format!("{name}: cannot read: {e}")),
        }
    }

    fn is_live(&self) -> bool {
        false
    }
}

/// `mjpeg:`: JPEG frames split out of a byte stream.
pub struct MjpegSource<R> {
    splitter: MjpegSplitter<R>,
    live: bool,
    garbage_reported: u64,
}

impl<R: Read + Send> MjpegSource<R> {
    pub fn new(reader: R, live: bool) -> Self {
        MjpegSource {
            splitter: MjpegSplitter::new(reader),
            live,
            garbage_reported: 0,
        }
    }

    /// The next frame of the stream; an I/O error ends it (logged).
    pub fn next_split(&mut self) -> Captured {
        let r = self.splitter.next_frame();
        let garbage = self.splitter.garbage_bytes();
        if garbage > self.garbage_reported {
            log::warn!(
                "skipped {} bytes between frames",
                garbage - self.garbage_reported
            );
            self.garbage_reported = garbage;
        }
        match r {
            Ok(Split::Frame(bytes)) => Captured::Frame {
                data: super::FrameData::Encoded(bytes),
                name: None,
            },
            Ok(Split::Corrupt(why)) => Captured::Corrupt(why),
            Ok(Split::End) => Captured::End,
            Err(e) => {
                log::error!("reading the stream failed: {e}");
                Captured::End
            }
        }
    }
}

impl<R: Read + Send> FrameSource for MjpegSource<R> {
    fn next(&mut self) -> Captured {
        self.next_split()
    }

    fn is_live(&self) -> bool {
        self.live
    }
}

/// `raw:`: packed RGB frames of a known size.
pub struct RawSource {
    reader: Box<dyn Read + Send>,
    width: u32,
    height: u32,
    live: bool,
}

impl RawSource {
    /// Frames of `width` x `height` packed RGB from `reader`; `live` as [`FrameSource::is_live`].
    pub fn new(reader: Box<dyn Read + Send>, width: u32, height: u32, live: bool) -> Self {
        RawSource {
            reader,
            width,
            height,
            live,
        }
    }
}

impl FrameSource for RawSource {
    fn next(&mut self) -> Captured {
        let len = self.width as usize * self.height as usize * 3;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.reader.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::error!("reading the stream failed: {e}");
                    break;
                }
            }
        }
        match got {
            0 => Captured::End,
            n if n < len => Captured::Corrupt(format!(
                "truncated: the input ended after {n} of the frame's {len} bytes"
            )),
            _ => match image::RgbImage::from_raw(self.width, self.height, buf) {
                Some(img) => Captured::Frame {
                    data: super::FrameData::Rgb(img),
                    name: None,
                },
                None => Captured::Corrupt("frame buffer of the wrong size".into()),
            },
        }
    }

    fn is_live(&self) -> bool {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_source_kind_and_names_what_is_wrong() {
        assert_eq!(
            "dir:photos".parse::<SourceSpec>().unwrap(),
            SourceSpec::Dir("photos".into())
        );
        assert_eq!(
            "mjpeg:-".parse::<SourceSpec>().unwrap(),
            SourceSpec::Mjpeg(Input::Stdin)
        );
        assert_eq!(
            "raw:640x480:rgb24:/tmp/f".parse::<SourceSpec>().unwrap(),
            SourceSpec::Raw {
                width: 640,
                height: 480,
                input: Input::File("/tmp/f".into())
            }
        );
        assert_eq!(
            "cmd:rpicam-vid -t 0 --codec mjpeg -o -"
                .parse::<SourceSpec>()
                .unwrap(),
            SourceSpec::Cmd("rpicam-vid -t 0 --codec mjpeg -o -".into())
        );
        assert_eq!(
            "v4l2:/dev/video0".parse::<SourceSpec>().unwrap(),
            SourceSpec::V4l2("/dev/video0".into())
        );
        for (bad, says) in [
            ("photos", "expected KIND"),
            ("tcp:1.2.3.4", "unknown source kind `tcp`"),
            ("raw:640x480:yuyv:-", "`yuyv` is not supported"),
            ("raw:640:rgb24:-", "frame size `640`"),
            ("raw:0x480:rgb24:-", "frame size"),
            ("raw:640x480", "expected raw:WxH"),
            ("dir:", "nothing after"),
        ] {
            let e = bad.parse::<SourceSpec>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn raw_frames_and_a_truncated_tail() {
        let mut bytes: Vec<u8> = (0..2 * 12).map(|i| i as u8).collect();
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut src = RawSource {
            reader: Box::new(std::io::Cursor::new(bytes)),
            width: 2,
            height: 2,
            live: true,
        };
        for first in [0u8, 12] {
            match src.next() {
                Captured::Frame {
                    data: crate::stream::FrameData::Rgb(img),
                    ..
                } => assert_eq!(img.as_raw()[0], first),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(src.next(), Captured::Corrupt(w) if w.contains("3 of the frame's 12")));
        assert!(matches!(src.next(), Captured::End));
    }
}

//! `--source`: its syntax parsed into a [`SourceSpec`], and the source it names opened.

use super::source::FrameSource;
use super::sources::command::{CommandSource, Restarts};
use super::sources::dir::DirSource;
use super::sources::mjpeg::MjpegSource;
use super::sources::raw::RawSource;
use std::io::Read;
use std::path::PathBuf;

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
            SourceSpec::V4l2(device) => super::sources::v4l2::open(device)?,
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
}

//! Image in, network input out, exactly as the mmcls test pipeline computes it — the pipeline the
//! published accuracies assume: decode to RGB (EXIF orientation applied, as OpenCV's `imread`
//! does), resize the shorter side with OpenCV's fixed-point `INTER_LINEAR`, center crop,
//! normalize per channel, planar `[3, crop, crop]`.
//!
//! OpenCV's uint8 bilinear resize works in fixed point: 11-bit weights (`round(w * 2048)`), a
//! horizontal pass in integers, and a vertical pass its SIMD code computes as
//! `(((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2`. A float bilinear resize
//! differs from it by one grey level in about 12 % of pixels, which a network notices; this
//! module reproduces the fixed-point arithmetic, and only computes the pixels the crop keeps.

use crate::metadata::Preprocessing;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::io::Cursor;
use std::path::Path;

/// An image that could not be decoded, with the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{what}: cannot decode image: {source}")]
    Decode {
        what: String,
        source: image::ImageError,
    },
    #[error("{what}: cannot decode JPEG: {reason}")]
    Jpeg { what: String, reason: String },
    #[error("{what}: {width}x{height} pixels is outside the supported size (at most {max} pixels)", max = crate::jpeg::MAX_PIXELS)]
    TooLarge {
        what: String,
        width: u32,
        height: u32,
    },
}

/// Decodes an image file to RGB, EXIF orientation applied.
pub fn decode_file(path: &Path) -> Result<RgbImage, DecodeError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DecodeError::Open {
        path: shown.clone(),
        source,
    })?;
    decode_bytes(&bytes, &shown)
}

/// Decodes an encoded image held in memory; `what` names it in errors. JPEGs go through
/// libjpeg-turbo (see [`crate::jpeg`]), other formats (PNG) through `image`.
pub fn decode_bytes(bytes: &[u8], what: &str) -> Result<RgbImage, DecodeError> {
    if crate::jpeg::is_jpeg(bytes) {
        return crate::jpeg::decode(bytes).map_err(|reason| DecodeError::Jpeg {
            what: what.to_string(),
            reason,
        });
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Decode {
            what: what.to_string(),
            source: e.into(),
        })?;
    let err = |source| DecodeError::Decode {
        what: what.to_string(),
        source,
    };
    let mut decoder = reader.into_decoder().map_err(err)?;
    // The header's size is checked before any pixel memory exists: a 100-byte PNG can claim
    // 65535x65535 (a decompression bomb).
    let (width, height) = decoder.dimensions();
    if width == 0
        || height == 0
        || (width as u64) * (height as u64) > crate::jpeg::MAX_PIXELS as u64
    {
        return Err(DecodeError::TooLarge {
            what: what.to_string(),
            width,
            height,
        });
    }
    let orientation = decoder.orientation().map_err(err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(err)?;
    img.apply_orientation(orientation);
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

/// One output coordinate of a bilinear axis: two source indices and their 11-bit weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: i32,
    w1: i32,
}

/// OpenCV's `INTER_LINEAR` taps of destination indices `range` when resizing `src` to `dst`:
/// half-pixel centres, edge clamping, weights rounded to 1/2048.
fn axis_taps(src: usize, dst: usize, range: std::ops::Range<usize>) -> Vec<Tap> {
    let scale = src as f64 / dst as f64;
    range
        .map(|d| {
            let f = (d as f64 + 0.5) * scale - 0.5;
            let fl = f.floor();
            let mut w1 = f - fl;
            let i = fl as i64;
            if i < 0 || i >= src as i64 - 1 {
                w1 = 0.0;
            }
            let i0 = i.clamp(0, src as i64 - 1) as usize;
            let i1 = (i0 + 1).min(src - 1);
            Tap {
                i0,
                i1,
                w0: ((1.0 - w1) * 2048.0).round_ties_even() as i32,
                w1: (w1 * 2048.0).round_ties_even() as i32,
            }
        })
        .collect()
}

/// Size after resizing the shorter side to `short`, computed as mmcls does in Python
/// (`int(short * long / short_side)`).
pub fn resized_size(width: usize, height: usize, short: usize) -> (usize, usize) {
    if height < width {
        (
            (short as f64 * width as f64 / height as f64) as usize,
            short,
        )
    } else {
        (
            short,
            (short as f64 * height as f64 / width as f64) as usize,
        )
    }
}

/// Offset of a centered crop, rounded as Python's `round` does (half to even).
pub fn crop_offset(size: usize, crop: usize) -> usize {
    ((size - crop) as f64 / 2.0).round_ties_even() as usize
}

/// Turns decoded images into network input. Holds its scratch rows, so one instance per thread
/// preprocesses any number of frames without allocating.
#[derive(Clone, Debug)]
pub struct Preprocessor {
    config: Preprocessing,
    row0: Vec<i32>,
    row1: Vec<i32>,
}

impl Preprocessor {
    pub fn new(config: Preprocessing) -> Self {
        Preprocessor {
            config,
            row0: Vec::new(),
            row1: Vec::new(),
        }
    }

    pub fn config(&self) -> &Preprocessing {
        &self.config
    }

    /// Values per image: `3 * crop * crop`.
    pub fn input_len(&self) -> usize {
        3 * self.config.crop * self.config.crop
    }

    /// Resized and cropped RGB pixels, interleaved, `crop * crop * 3` bytes: the integer stage,
    /// before normalization.
    pub fn resize_crop_into(&mut self, img: &RgbImage, out: &mut [u8]) {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let crop = self.config.crop;
        assert_eq!(
            out.len(),
            crop * crop * 3,
            "output buffer of the wrong size"
        );
        assert!(w > 0 && h > 0, "empty image");
        let (nw, nh) = resized_size(w, h, self.config.resize);
        let (x0, y0) = (crop_offset(nw, crop), crop_offset(nh, crop));
        let xs = axis_taps(w, nw, x0..x0 + crop);
        let ys = axis_taps(h, nh, y0..y0 + crop);
        let src = img.as_raw();
        let stride = w * 3;
        self.row0.resize(crop * 3, 0);
        self.row1.resize(crop * 3, 0);
        let horizontal = |row: &[u8], dst: &mut [i32]| {
            for (t, d) in xs.iter().zip(dst.chunks_exact_mut(3)) {
                let (p0, p1) = (&row[t.i0 * 3..t.i0 * 3 + 3], &row[t.i1 * 3..t.i1 * 3 + 3]);
                for c in 0..3 {
                    d[c] = p0[c] as i32 * t.w0 + p1[c] as i32 * t.w1;
                }
            }
        };
        for (ty, out_row) in ys.iter().zip(out.chunks_exact_mut(crop * 3)) {
            horizontal(&src[ty.i0 * stride..(ty.i0 + 1) * stride], &mut self.row0);
            horizontal(&src[ty.i1 * stride..(ty.i1 + 1) * stride], &mut self.row1);
            for ((o, &r0), &r1) in out_row.iter_mut().zip(&self.row0).zip(&self.row1) {
                let v = (((ty.w0 * (r0 >> 4)) >> 16) + ((ty.w1 * (r1 >> 4)) >> 16) + 2) >> 2;
                *o = v.clamp(0, 255) as u8;
            }
        }
    }

    /// Normalizes interleaved RGB pixels into planar `[3, crop, crop]` floats:
    /// `(pixel - mean) / std` per channel, in f32 as numpy computes it.
    pub fn normalize_into(&self, pixels: &[u8], out: &mut [f32]) {
        let plane = self.config.crop * self.config.crop;
        assert_eq!(pixels.len(), plane * 3);
        assert_eq!(out.len(), plane * 3);
        let (mean, std) = (self.config.mean, self.config.std);
        for (i, px) in pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (px[c] as f32 - mean[c]) / std[c];
            }
        }
    }

    /// The whole pipeline on a decoded image, into `out` (`3 * crop * crop` floats).
    pub fn preprocess_into(&mut self, img: &RgbImage, pixels: &mut Vec<u8>, out: &mut [f32]) {
        pixels.resize(self.input_len(), 0);
        self.resize_crop_into(img, pixels);
        self.normalize_into(pixels, out);
    }

    /// Convenience: decode nothing, allocate the output.
    pub fn preprocess(&mut self, img: &RgbImage) -> Vec<f32> {
        let mut out = vec![0f32; self.input_len()];
        let mut pixels = Vec::new();
        self.preprocess_into(img, &mut pixels, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 69-byte PNG whose header claims 65535x65535 grey pixels (4 GiB), with valid CRCs and
    /// a 64-byte image stream (made with Python's `zlib`).
    const PNG_BOMB: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\xff\xff\x00\x00\xff\xff\x08\x00\x00\x00\x00\x93\x6e\x86\x8c\x00\x00\x00\x0cIDAT\x78\x9c\x63\x60\xa0\x0c\x00\x00\x00\x40\x00\x01\xb7\x34\x7c\xef\x00\x00\x00\x00IEND\xae\x42\x60\x82";

    #[test]
    fn a_png_claiming_65535_squared_pixels_is_refused_before_decoding() {
        assert_eq!(PNG_BOMB.len(), 69);
        let e = decode_bytes(PNG_BOMB, "bomb.png").unwrap_err();
        if cfg!(target_pointer_width = "64") {
            assert!(
                matches!(
                    e,
                    DecodeError::TooLarge {
                        width: 65535,
                        height: 65535,
                        ..
                    }
                ),
                "{e}"
            );
            assert!(
                e.to_string().starts_with("bomb.png: 65535x65535 pixels"),
                "{e}"
            );
        } else {
            // 32-bit: `image`'s own allocation limit refuses the header first.
            assert_eq!(
                e.to_string(),
                "bomb.png: cannot decode image: Memory limit exceeded"
            );
        }
    }

    #[test]
    fn a_jpeg_claiming_a_huge_frame_is_refused_before_decoding() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/images/chelsea.jpg"
        );
        let mut jpeg = std::fs::read(path).unwrap();
        // SOF0: FF C0, length (2), precision (1), height (2), width (2).
        let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xff, 0xdc, 0xff, 0xdc]);
        let e = decode_bytes(&jpeg, "bomb.jpg").unwrap_err();
        assert!(
            e.to_string().contains("65500x65500 pixels is outside"),
            "{e}"
        );
    }

    #[test]
    fn sizes_and_offsets_round_like_python() {
        assert_eq!(resized_size(640, 480, 256), (341, 256));
        assert_eq!(resized_size(300, 451, 256), (256, 384));
        assert_eq!(resized_size(256, 256, 256), (256, 256));
        // round(16.5) == 16 in Python; round(17.5) == 18.
        assert_eq!(crop_offset(257, 224), 16);
        assert_eq!(crop_offset(259, 224), 18);
        assert_eq!(crop_offset(341, 224), 58);
    }

    #[test]
    fn taps_clamp_at_the_edges_and_sum_to_one() {
        let t = axis_taps(10, 20, 0..20);
        assert_eq!(
            t[0],
            Tap {
                i0: 0,
                i1: 1,
                w0: 2048,
                w1: 0
            }
        );
        assert_eq!(
            t[19],
            Tap {
                i0: 9,
                i1: 9,
                w0: 2048,
                w1: 0
            }
        );
        assert_eq!((t[1].i0, t[1].w0, t[1].w1), (0, 1536, 512)); // f = 0.25
        assert!(t.iter().all(|t| t.w0 + t.w1 == 2048));
    }

    #[test]
    fn identity_size_keeps_pixels() {
        // A 224x224 image resized to 224 and cropped to 224 is unchanged.
        let img = RgbImage::from_fn(224, 224, |x, y| {
            image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        });
        let mut p = Preprocessor::new(Preprocessing {
            resize: 224,
            ..Default::default()
        });
        let mut px = vec![0u8; p.input_len()];
        p.resize_crop_into(&img, &mut px);
        assert_eq!(&px[..], img.as_raw().as_slice());
    }

    #[test]
    fn uniform_image_stays_uniform_and_normalizes() {
        let img = RgbImage::from_pixel(333, 517, image::Rgb([200, 100, 7]));
        let mut p = Preprocessor::new(Preprocessing::default());
        let out = p.preprocess(&img);
        let plane = 224 * 224;
        assert!(out[..plane]
            .iter()
            .all(|&v| v == (200.0 - 123.675) / 58.395));
        assert!(out[plane..2 * plane]
            .iter()
            .all(|&v| v == (100.0 - 116.28) / 57.12));
        assert!(out[2 * plane..]
            .iter()
            .all(|&v| v == (7.0 - 103.53) / 57.375));
    }

    #[test]
    fn corrupt_bytes_are_a_decode_error_naming_the_input() {
        let e = decode_bytes(b"\xff\xd8\xff\xe0 not really a jpeg", "frame 7").unwrap_err();
        assert!(
            e.to_string().starts_with("frame 7: cannot decode JPEG"),
            "{e}"
        );
        let e = decode_bytes(b"\x89PNG\r\n\x1a\n truncated", "frame 8").unwrap_err();
        assert!(
            e.to_string().starts_with("frame 8: cannot decode image"),
            "{e}"
        );
    }
}

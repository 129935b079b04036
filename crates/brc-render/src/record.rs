//! Animated GIF writing with a fixed palette, changed-rectangle frames and an atomic replace.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gif::{DisposalMethod, Encoder, Frame, Repeat};

use crate::{palette, Image, RenderError};

/// The fixed 256-entry GIF palette: the exact colours the renderer draws, a 16-level grey ramp
/// and a 6 × 6 × 6 colour cube for anti-aliased edges.
fn gif_palette() -> &'static [[u8; 3]] {
    static PALETTE: OnceLock<Vec<[u8; 3]>> = OnceLock::new();
    PALETTE.get_or_init(|| {
        let mut p: Vec<[u8; 3]> = Vec::with_capacity(256);
        let mut add = |c: [u8; 3]| {
            if !p.contains(&c) {
                p.push(c);
            }
        };
        palette::ALL.iter().for_each(|&c| add(c));
        for i in 0..16u8 {
            add([i * 17, i * 17, i * 17]);
        }
        for r in 0..6u8 {
            for g in 0..6u8 {
                for b in 0..6u8 {
                    add([r * 51, g * 51, b * 51]);
                }
            }
        }
        p.truncate(TRANSPARENT as usize);
        // Pad up to and including the transparent slot (never a nearest colour).
        p.resize(TRANSPARENT as usize + 1, [255, 0, 255]);
        p
    })
}

/// The palette slot used for "unchanged since the previous frame".
const TRANSPARENT: u8 = 255;

/// Index of an RGB colour reduced to 5 bits per channel.
fn key(r: u8, g: u8, b: u8) -> usize {
    (usize::from(r >> 3) << 10) | (usize::from(g >> 3) << 5) | usize::from(b >> 3)
}

/// RGB555 → palette index: the nearest palette colour (never the transparent slot) to each
/// cell's centre, except that the
/// renderer's exact colours map to themselves.
fn lut() -> &'static [u8] {
    static LUT: OnceLock<Vec<u8>> = OnceLock::new();
    LUT.get_or_init(|| {
        let pal = gif_palette();
        let mut lut = vec![0u8; 1 << 15];
        for (k, slot) in lut.iter_mut().enumerate() {
            let c = [(k >> 10) & 31, (k >> 5) & 31, k & 31].map(|v| (v * 8 + 4) as i32);
            let nearest = pal
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| (0..3).map(|i| (c[i] - i32::from(p[i])).pow(2)).sum::<i32>());
            *slot = nearest.map_or(0, |(i, _)| i as u8);
        }
        for &c in palette::ALL.iter() {
            if let Some(i) = pal.iter().position(|&p| p == c) {
                lut[key(c[0], c[1], c[2])] = i as u8;
            }
        }
        lut
    })
}

/// Maps RGBA pixels to palette indices.
fn quantize(rgba: &[u8], out: &mut Vec<u8>) {
    let lut = lut();
    out.clear();
    // Frames are mostly long runs of one colour: remember the last pixel's index.
    let (mut last, mut index) = (0u32, lut[0]);
    out.extend(rgba.chunks_exact(4).map(|p| {
        let rgb = u32::from_le_bytes([p[0], p[1], p[2], 0]);
        if rgb != last {
            last = rgb;
            index = lut[key(p[0], p[1], p[2])];
        }
        index
    }));
}

/// The smallest rectangle `(left, top, width, height)` holding every pixel where `a` and `b`
/// differ, or `None` when they are equal.
fn changed_rect(a: &[u8], b: &[u8], width: usize) -> Option<(usize, usize, usize, usize)> {
    let rows_differ = |y: usize| a[y * width..(y + 1) * width] != b[y * width..(y + 1) * width];
    let height = a.len() / width;
    let top = (0..height).find(|&y| rows_differ(y))?;
    let bottom = (top..height).rev().find(|&y| rows_differ(y))?;
    let (mut left, mut right) = (width, 0);
    for y in top..=bottom {
        let (ra, rb) = (
            &a[y * width..(y + 1) * width],
            &b[y * width..(y + 1) * width],
        );
        if let Some(l) = (0..left).find(|&x| ra[x] != rb[x]) {
            left = l;
        }
        if let Some(r) = (right..width).rev().find(|&x| ra[x] != rb[x]) {
            right = right.max(r);
        }
    }
    Some((left, top, right + 1 - left, bottom + 1 - top))
}

/// Writes rendered frames to an animated GIF (looping forever).
///
/// Frames go to a temporary file beside the target; [`finish`](Self::finish) renames it over
/// the target, so a crash or an error never leaves a half-written GIF in its place. Dropping a
/// recorder without finishing removes the temporary file.
pub struct GifRecorder {
    path: PathBuf,
    tmp: PathBuf,
    encoder: Option<Encoder<BufWriter<File>>>,
    width: u32,
    height: u32,
    delay: u16,
    frames: usize,
    previous: Vec<u8>,
    current: Vec<u8>,
    patch: Vec<u8>,
    /// Set once the file has been renamed into place; otherwise `Drop` removes the temp file.
    done: bool,
}

impl GifRecorder {
    /// Starts a GIF of `width` × `height` pixels at `fps` frames per second.
    ///
    /// GIF delays count hundredths of a second and players treat delays under 2 as slow, so
    /// the delay is `round(100 / fps)` clamped to at least 2: 50 fps (the env's rate) is exact,
    /// faster rates play at 50 fps.
    pub fn create(
        path: impl AsRef<Path>,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Self, RenderError> {
        let path = path.as_ref().to_path_buf();
        let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
            (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
            _ => {
                return Err(RenderError::Invalid(format!(
                    "size {width}x{height}, GIF allows 1..=65535 per side"
                )))
            }
        };
        if fps == 0 {
            return Err(RenderError::Invalid("frame rate 0".into()));
        }
        let delay = ((100 + fps / 2) / fps).max(2) as u16;
        let io_err = |source| RenderError::Io {
            path: path.clone(),
            source,
        };
        let name = path.file_name().ok_or_else(|| {
            io_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "path has no file name",
            ))
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let file = File::create(&tmp).map_err(io_err)?;
        let mut rec = Self {
            path,
            tmp,
            encoder: None,
            width,
            height,
            delay,
            frames: 0,
            previous: Vec::new(),
            current: Vec::new(),
            patch: Vec::new(),
            done: false,
        };
        let flat: Vec<u8> = gif_palette().iter().flatten().copied().collect();
        let mut enc = Encoder::new(BufWriter::new(file), w, h, &flat).map_err(|e| rec.enc(e))?;
        enc.set_repeat(Repeat::Infinite).map_err(|e| rec.enc(e))?;
        rec.encoder = Some(enc);
        Ok(rec)
    }

    fn enc(&self, source: gif::EncodingError) -> RenderError {
        RenderError::Encode {
            path: self.path.clone(),
            source,
        }
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Appends one frame. Only the rectangle that changed since the previous frame is stored.
    pub fn push(&mut self, image: &Image) -> Result<(), RenderError> {
        if (image.width, image.height) != (self.width, self.height)
            || image.pixels.len() != (self.width * self.height * 4) as usize
        {
            return Err(RenderError::SizeMismatch {
                expected: (self.width, self.height),
                got: (image.width, image.height),
            });
        }
        quantize(&image.pixels, &mut self.current);
        let w = self.width as usize;
        let rect = if self.frames == 0 {
            Some((0, 0, w, self.height as usize))
        } else {
            changed_rect(&self.previous, &self.current, w)
        };
        // An unchanged frame still needs a (1-pixel) frame to carry its delay.
        let (left, top, rw, rh) = rect.unwrap_or((0, 0, 1, 1));
        // Inside the rectangle, unchanged pixels are transparent (they keep the previous
        // frame's colour): long runs of one index are cheap to compress.
        self.patch.clear();
        let first = self.frames == 0;
        for y in top..top + rh {
            let row = y * w + left..y * w + left + rw;
            if first {
                self.patch.extend_from_slice(&self.current[row]);
            } else {
                let (cur, prev) = (&self.current[row.clone()], &self.previous[row]);
                self.patch.extend(
                    cur.iter()
                        .zip(prev)
                        .map(|(&c, &p)| if c == p { TRANSPARENT } else { c }),
                );
            }
        }
        let frame = Frame {
            delay: self.delay,
            dispose: DisposalMethod::Keep,
            left: left as u16,
            top: top as u16,
            width: rw as u16,
            height: rh as u16,
            transparent: (!first).then_some(TRANSPARENT),
            buffer: Cow::Borrowed(&self.patch),
            ..Frame::default()
        };
        let result = match self.encoder.as_mut() {
            Some(enc) => enc.write_frame(&frame),
            None => Err(gif::EncodingError::Io(std::io::Error::other(
                "recorder already closed",
            ))),
        };
        result.map_err(|e| self.enc(e))?;
        std::mem::swap(&mut self.previous, &mut self.current);
        self.frames += 1;
        Ok(())
    }

    /// Writes the GIF trailer, flushes to disk and renames the file into place.
    pub fn finish(mut self) -> Result<(), RenderError> {
        // On error, `Drop` removes the temporary file.
        self.close()?;
        self.done = true;
        Ok(())
    }

    fn close(&mut self) -> Result<(), RenderError> {
        let io_err = |source| RenderError::Io {
            path: self.path.clone(),
            source,
        };
        let Some(enc) = self.encoder.take() else {
            return Err(self.enc(gif::EncodingError::Io(std::io::Error::other(
                "recorder already closed",
            ))));
        };
        let mut writer = enc.into_inner().map_err(|e| self.enc(e))?;
        writer.flush().map_err(io_err)?;
        let file = writer.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(io_err)
    }
}

impl Drop for GifRecorder {
    fn drop(&mut self) {
        if !self.done {
            drop(self.encoder.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_has_at_most_256_colours_and_maps_exact_colours_exactly() {
        let pal = gif_palette();
        assert!(pal.len() <= 256);
        let mut out = Vec::new();
        for c in palette::ALL {
            quantize(&[c[0], c[1], c[2], 255], &mut out);
            assert_eq!(pal[out[0] as usize], c);
        }
        // Anti-aliasing shades land near their colour.
        quantize(&[100, 90, 180, 255], &mut out);
        let p = pal[out[0] as usize];
        let d: i32 = (0..3)
            .map(|i| (i32::from(p[i]) - [100, 90, 180][i]).abs())
            .sum();
        assert!(d < 80, "{p:?}");
    }

    #[test]
    fn changed_rect_bounds_the_differences() {
        let a = vec![0u8; 20];
        let mut b = a.clone();
        assert_eq!(changed_rect(&a, &b, 5), None);
        b[5 + 1] = 1; // (1, 1)
        b[3 * 5 + 3] = 1; // (3, 3)
        assert_eq!(changed_rect(&a, &b, 5), Some((1, 1, 3, 3)));
    }
}

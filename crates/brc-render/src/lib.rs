//! Software rendering of LunarLander frames, and animated GIF recording.
//!
//! [`render`] draws a [`brc_envs::Scene`] at Gymnasium's 600 × 400 pixels and 30 pixels per
//! metre, with Gymnasium's look: a black sky, the white moon surface, the helipad's two flags
//! (white poles, yellow pennants), the lander and its legs in purple with a dark outline. On top
//! of Gymnasium's picture it adds cosmetic engine flames (deterministic, no physics), a wind
//! arrow for windy tasks and a text overlay (task, step, return, action) in an embedded 8 × 8
//! bitmap font. Everything is pure Rust: no system fonts, no C libraries.
//!
//! [`GifRecorder`] writes frames to an animated GIF with a fixed palette (the exact colours
//! drawn plus a colour cube for anti-aliased edges), only the changed rectangle of each frame,
//! and an atomic replace of the target file when [`GifRecorder::finish`] succeeds.
//!
//! ```no_run
//! use brc_envs::{Env, LunarLander, TaskSpec};
//! use brc_render::{render, FrameInfo, GifRecorder};
//!
//! let mut env = LunarLander::new(TaskSpec::windy()).unwrap();
//! env.reset(0);
//! let mut gif = GifRecorder::create("episode.gif", 600, 400, 50).unwrap();
//! let mut info = FrameInfo { task: "windy".into(), ..FrameInfo::default() };
//! for step in 0..100 {
//!     let s = env.step(2).unwrap();
//!     info.step = step + 1;
//!     info.episode_return += s.reward;
//!     info.action = Some(2);
//!     gif.push(&render(&env.scene(), &info)).unwrap();
//! }
//! gif.finish().unwrap();
//! ```

mod draw;
mod record;

pub use draw::{palette, render, render_into, to_pixels};
pub use record::GifRecorder;

use std::path::PathBuf;

/// Width of a rendered frame in pixels (Gymnasium's `VIEWPORT_W`).
pub const WIDTH: u32 = brc_envs::VIEWPORT_W as u32;
/// Height of a rendered frame in pixels (Gymnasium's `VIEWPORT_H`).
pub const HEIGHT: u32 = brc_envs::VIEWPORT_H as u32;

/// The env's rate (Gymnasium's `FPS`): a GIF at this rate plays in real time (delay 2/100 s).
pub const DEFAULT_FPS: u32 = 50;

/// The text overlay of one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameInfo {
    /// Task name (e.g. `windy`).
    pub task: String,
    /// Steps taken so far in the episode.
    pub step: usize,
    /// Undiscounted return so far.
    pub episode_return: f64,
    /// The action of the last step (`None` before the first step).
    pub action: Option<usize>,
}

/// An RGBA image, 8 bits per channel, rows top to bottom, fully opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes, RGBA, row-major from the top-left corner.
    pub pixels: Vec<u8>,
}

impl Image {
    /// The RGB colour at pixel `(x, y)` (from the top-left corner), `None` outside the image.
    pub fn rgb(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = ((y * self.width + x) * 4) as usize;
        let p = self.pixels.get(i..i + 3)?;
        Some([p[0], p[1], p[2]])
    }
}

/// Errors from GIF recording. Rendering itself cannot fail.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Creating, writing or renaming the GIF file failed.
    #[error("cannot write GIF {}: {source}", path.display())]
    Io {
        /// The GIF being written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The GIF encoder rejected a frame or failed to write it.
    #[error("cannot encode GIF {}: {source}", path.display())]
    Encode {
        /// The GIF being written.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: gif::EncodingError,
    },
    /// A pushed image's size differs from the GIF's.
    #[error("frame is {got:?} pixels but the GIF is {expected:?}")]
    SizeMismatch {
        /// The GIF's `(width, height)`.
        expected: (u32, u32),
        /// The pushed image's `(width, height)`.
        got: (u32, u32),
    },
    /// Width or height outside GIF's 1..=65535, or a frame rate of 0.
    #[error("invalid GIF parameters: {0}")]
    Invalid(String),
}

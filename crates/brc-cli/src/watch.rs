//! Watching episodes: GIF recording (`--record`) and a live window (`--render`, feature
//! `window`), both fed from the env's read-only scene after reset and every step.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use brc_envs::{EpisodeProgress, LunarLander};
use std::sync::mpsc;

use brc_envs::Scene;
use brc_render::{render_into, FrameInfo, GifRecorder, Image, HEIGHT, WIDTH};

/// The watching options `brc evaluate` and `brc env play` share.
#[derive(clap::Args)]
pub struct WatchArgs {
    /// Record an animated GIF (`out.gif`; `out-<task>.gif` when several tasks run).
    #[arg(long, value_name = "GIF")]
    record: Option<PathBuf>,
    /// Play live in a window (needs the `window` feature).
    #[arg(long)]
    render: bool,
    /// GIF frames per second.
    #[arg(long, default_value_t = 50)]
    fps: u32,
    /// Draw every N-th step (and each episode's first and last state).
    #[arg(long, default_value_t = 1)]
    every: usize,
}

impl WatchArgs {
    /// A watcher for `task` (`several`: whether other tasks get GIFs of their own).
    pub fn watcher(&self, task: &str, several: bool) -> Result<Watcher> {
        let gif = self
            .record
            .as_ref()
            .map(|base| gif_path(base, task, several));
        Watcher::new(task, gif, self.fps, self.every, self.render)
    }
}

/// Where frames go.
pub struct Watcher {
    task: String,
    gif_path: Option<PathBuf>,
    every: usize,
    gif: Option<GifWorker>,
    window: Option<window::Live>,
    /// Reused frame buffer for the window: no allocation per drawn step.
    image: Option<Image>,
    failure: Option<anyhow::Error>,
}

/// `out.gif` for one task, `out-<task>.gif` when several tasks are recorded.
fn gif_path(base: &Path, task: &str, several: bool) -> PathBuf {
    if !several {
        return base.to_path_buf();
    }
    let stem = base
        .file_stem()
        .map_or("episodes".into(), |s| s.to_string_lossy());
    let ext = base
        .extension()
        .map_or("gif".into(), |e| e.to_string_lossy());
    base.with_file_name(format!("{stem}-{task}.{ext}"))
}

/// Renders and encodes GIF frames on a thread of its own: drawing and LZW-compressing a frame
/// costs far more than an evaluation step, so the evaluation only hands over the scene (a few
/// hundred bytes) and runs on; the two overlap on two cores.
struct GifWorker {
    frames: Option<mpsc::SyncSender<(Scene, FrameInfo)>>,
    handle: std::thread::JoinHandle<Result<usize>>,
}

impl GifWorker {
    fn start(path: &Path, fps: u32) -> Result<Self> {
        let mut recorder = GifRecorder::create(path, WIDTH, HEIGHT, fps)?;
        // A bounded queue: a slow disk makes the evaluation wait instead of filling memory.
        let (tx, rx) = mpsc::sync_channel::<(Scene, FrameInfo)>(256);
        let handle = std::thread::spawn(move || -> Result<usize> {
            let mut image = blank();
            for (scene, info) in rx {
                render_into(&scene, &info, &mut image);
                recorder.push(&image)?;
            }
            let frames = recorder.frames();
            recorder.finish()?;
            Ok(frames)
        });
        Ok(Self {
            frames: Some(tx),
            handle,
        })
    }

    /// Queues a frame; `false` when the worker has stopped (its error comes with `finish`).
    fn push(&self, scene: Scene, info: FrameInfo) -> bool {
        self.frames
            .as_ref()
            .is_some_and(|tx| tx.send((scene, info)).is_ok())
    }

    fn finish(mut self) -> Result<usize> {
        drop(self.frames.take());
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the GIF writer thread panicked"))?
    }
}

fn blank() -> Image {
    Image {
        width: WIDTH,
        height: HEIGHT,
        pixels: vec![0; (WIDTH * HEIGHT * 4) as usize],
    }
}

impl Watcher {
    /// Records into `gif` (at `fps`) and/or shows a window; every `every`-th step is drawn
    /// (plus each episode's first and last state).
    fn new(task: &str, gif: Option<PathBuf>, fps: u32, every: usize, live: bool) -> Result<Self> {
        if every == 0 {
            bail!("--every must be at least 1");
        }
        let window = if live {
            Some(window::Live::open(task)?)
        } else {
            None
        };
        let worker = match &gif {
            Some(path) => Some(GifWorker::start(path, fps)?),
            None => None,
        };
        Ok(Self {
            task: task.to_string(),
            gif_path: gif,
            every,
            gif: worker,
            window,
            image: None,
            failure: None,
        })
    }

    /// Draws the env's current state if this step is due.
    pub fn observe(&mut self, env: &LunarLander, progress: &EpisodeProgress) {
        let active = self.gif.is_some() || self.window.is_some();
        let due = progress.step.is_multiple_of(self.every) || progress.done;
        if !active || !due || self.failure.is_some() {
            return;
        }
        let info = FrameInfo {
            task: self.task.clone(),
            step: progress.step,
            episode_return: progress.episode_return,
            action: progress.action,
        };
        let scene = env.scene();
        if let Some(w) = &mut self.window {
            let image = self.image.get_or_insert_with(blank);
            render_into(&scene, &info, image);
            if let Err(e) = w.show(image, self.every) {
                self.failure = Some(e);
                return;
            }
        }
        if let Some(gif) = &self.gif {
            if !gif.push(scene, info) {
                self.failure = Some(anyhow::anyhow!("the GIF writer stopped"));
            }
        }
    }

    /// Finishes the GIF (written atomically), says where it went, and reports the first
    /// failure, if any.
    pub fn finish(self) -> Result<()> {
        // The writer's own error explains a stopped writer better than our note of it.
        let frames = self.gif.map(GifWorker::finish).transpose()?;
        if let Some(e) = self.failure {
            return Err(e);
        }
        if let (Some(frames), Some(path)) = (frames, self.gif_path) {
            eprintln!("recorded {frames} frames to {}", path.display());
        }
        Ok(())
    }
}

#[cfg(feature = "window")]
mod window {
    use anyhow::{anyhow, Result};
    use brc_render::Image;
    use std::time::{Duration, Instant};

    /// A window that plays frames at the env's real time (50 steps per second).
    pub struct Live {
        window: minifb::Window,
        buffer: Vec<u32>,
        next: Instant,
    }

    impl Live {
        pub fn open(task: &str) -> Result<Self> {
            let window = minifb::Window::new(
                &format!("brc — {task}"),
                brc_render::WIDTH as usize,
                brc_render::HEIGHT as usize,
                minifb::WindowOptions::default(),
            )
            .map_err(|e| anyhow!("cannot open a window (is a display available?): {e}"))?;
            Ok(Self {
                window,
                buffer: Vec::new(),
                next: Instant::now(),
            })
        }

        pub fn show(&mut self, image: &Image, steps: usize) -> Result<()> {
            if !self.window.is_open() {
                return Err(anyhow!("window closed"));
            }
            self.buffer.clear();
            self.buffer.extend(
                image
                    .pixels
                    .chunks_exact(4)
                    .map(|p| (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2])),
            );
            // Real time: each drawn frame stands for `steps` env steps of 20 ms.
            self.next += Duration::from_millis(20 * steps as u64);
            if let Some(wait) = self.next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            } else {
                self.next = Instant::now();
            }
            self.window
                .update_with_buffer(&self.buffer, image.width as usize, image.height as usize)
                .map_err(|e| anyhow!("window: {e}"))
        }
    }
}

#[cfg(not(feature = "window"))]
mod window {
    use anyhow::{bail, Result};
    use brc_render::Image;

    /// Stand-in when the `window` feature is not compiled in.
    pub struct Live;

    impl Live {
        pub fn open(_task: &str) -> Result<Self> {
            bail!(
                "--render needs a window: rebuild with `--features window` \
                 (e.g. cargo run --release -p brc-cli --features window -- ...), or use --record"
            )
        }

        pub fn show(&mut self, _image: &Image, _steps: usize) -> Result<()> {
            Ok(())
        }
    }
}

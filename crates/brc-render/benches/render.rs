//! Cost per frame of `render_into` (buffer reused), and of it plus GIF encoding, on a windy episode.
//!
//! `cargo bench -p brc-render --bench render [-- FRAMES]` (release profile). Prints the median
//! of 5 repetitions after a warm-up, in µs per frame, and the GIF's size per frame.

use std::time::Instant;

use brc_envs::{Env, LunarLander, Scene, TaskSpec};
use brc_render::{render_into, FrameInfo, GifRecorder, Image};

/// `n` consecutive frames of the heuristic pilot on the windy task, episodes back to back.
fn scenes(n: usize) -> Vec<(Scene, FrameInfo)> {
    let mut env = LunarLander::new(TaskSpec::windy()).unwrap();
    let mut obs = env.reset(0);
    let mut info = FrameInfo {
        task: "windy".into(),
        ..FrameInfo::default()
    };
    let mut out = Vec::with_capacity(n);
    let mut episode = 0;
    while out.len() < n {
        let a = brc_envs::heuristic_action(&obs);
        let s = env.step(a).unwrap();
        obs = s.obs;
        info.step += 1;
        info.episode_return += s.reward;
        info.action = Some(a);
        out.push((env.scene(), info.clone()));
        if s.terminated() || info.step >= 1000 {
            episode += 1;
            obs = env.reset(episode);
            info.step = 0;
            info.episode_return = 0.0;
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    let frames = scenes(n);
    let dir = std::env::temp_dir().join(format!("brc-render-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gif = dir.join("bench.gif");

    let mut img = Image {
        width: 0,
        height: 0,
        pixels: Vec::new(),
    };
    let mut render_us = Vec::new();
    let mut gif_us = Vec::new();
    let mut bytes = 0;
    for rep in 0..6 {
        let t = Instant::now();
        for (scene, info) in &frames {
            render_into(scene, info, &mut img);
            std::hint::black_box(&img);
        }
        let r = t.elapsed().as_secs_f64() * 1e6 / n as f64;

        let t = Instant::now();
        let mut rec = GifRecorder::create(&gif, 600, 400, 50).unwrap();
        for (scene, info) in &frames {
            render_into(scene, info, &mut img);
            rec.push(&img).unwrap();
        }
        rec.finish().unwrap();
        let g = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        bytes = std::fs::metadata(&gif).unwrap().len();
        if rep > 0 {
            render_us.push(r);
            gif_us.push(g);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    println!("frames: {n} (windy task, heuristic pilot)");
    println!("render:              {:8.1} µs/frame", median(render_us));
    println!("render + GIF encode: {:8.1} µs/frame", median(gif_us));
    println!(
        "GIF size:            {:8.1} KiB/frame ({:.1} MiB total)",
        bytes as f64 / 1024.0 / n as f64,
        bytes as f64 / 1048576.0
    );
}

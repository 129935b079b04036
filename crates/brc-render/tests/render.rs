//! Rendering and GIF recording on real LunarLander scenes; expected pixels come from the
//! scene's geometry.

use std::collections::HashSet;

use brc_envs::{Env, LunarLander, Scene, TaskSpec};
use brc_render::{palette, render, to_pixels, FrameInfo, GifRecorder, Image, RenderError};

/// A windy scene a little into the episode (the lander starts at the top edge, so let it fall
/// into view), ending with main-engine steps so the main flame shows.
fn windy_scene() -> (Scene, FrameInfo) {
    let mut env = LunarLander::new(TaskSpec::windy()).unwrap();
    env.reset(3);
    let mut info = FrameInfo {
        task: "windy".into(),
        ..FrameInfo::default()
    };
    for i in 0..33 {
        let a = if i < 30 { 0 } else { 2 };
        let s = env.step(a).unwrap();
        assert!(!s.terminated());
        info.step += 1;
        info.episode_return += s.reward;
        info.action = Some(a);
    }
    (env.scene(), info)
}

fn px(img: &Image, p: [f32; 2]) -> [u8; 3] {
    img.rgb(p[0].floor() as u32, p[1].floor() as u32)
        .unwrap_or_else(|| panic!("{p:?} outside the image"))
}

fn centroid(poly: &[[f32; 2]]) -> [f32; 2] {
    let n = poly.len() as f32;
    let s = poly
        .iter()
        .fold([0.0, 0.0], |a, p| [a[0] + p[0], a[1] + p[1]]);
    [s[0] / n, s[1] / n]
}

#[test]
fn colours_follow_the_scene_geometry() {
    let (scene, info) = windy_scene();
    let img = render(&scene, &info);
    assert_eq!((img.width, img.height), (600, 400));
    assert_eq!(img.pixels.len(), 600 * 400 * 4);

    // Inside the hull.
    let hull = to_pixels(centroid(&scene.lander));
    assert!(hull[1] > 20.0, "lander still at the top edge: {hull:?}");
    assert_eq!(px(&img, hull), palette::LANDER);
    // Inside each leg.
    for leg in &scene.legs {
        assert_eq!(px(&img, to_pixels(centroid(leg))), palette::LANDER);
    }

    // Well below the helipad's surface: moon.
    let [x1, x2, hy] = scene.helipad;
    assert_eq!(
        px(&img, to_pixels([(x1 + x2) / 2.0, hy / 2.0])),
        palette::MOON
    );

    // Flag at x1: the pennant hangs from the pole's top (helipad_y + 50 px) to the right.
    let top = to_pixels([x1, hy + 50.0 / 30.0]);
    assert_eq!(px(&img, [top[0] + 6.0, top[1] + 5.0]), palette::FLAG);
    // The pole, halfway up, at x2.
    let mid = to_pixels([x2, hy + 25.0 / 30.0]);
    assert_eq!(px(&img, mid), palette::POLE);

    // Sky near the top middle, away from the lander (text is left, wind arrow right).
    let x = [260.0f32, 300.0, 340.0, 380.0, 420.0]
        .into_iter()
        .find(|x| (x - hull[0]).abs() > 60.0)
        .unwrap();
    assert_eq!(px(&img, [x, 3.0]), palette::SKY);

    // Main flame just below the hull's bottom edge (LANDER_POLY vertices 2 and 3).
    let bottom = to_pixels(centroid(&scene.lander[2..4]));
    let (s, c) = scene.lander_angle.sin_cos();
    let below = [bottom[0] + s * 6.0, bottom[1] + c * 6.0];
    assert!(scene.engines.main);
    assert_eq!(px(&img, below), palette::FLAME_CORE);

    // Overlay text and the wind arrow are drawn.
    let colours: HashSet<[u8; 3]> = img.pixels.chunks(4).map(|p| [p[0], p[1], p[2]]).collect();
    assert!(scene.wind != 0.0);
    for c in [
        palette::TEXT,
        palette::WIND,
        palette::LANDER_EDGE,
        palette::FLAME,
    ] {
        assert!(colours.contains(&c), "{c:?} missing");
    }
    assert!(colours.len() > 10, "only {} colours", colours.len());
}

#[test]
fn windless_scene_has_no_wind_arrow_and_is_deterministic() {
    let mut env = LunarLander::new(TaskSpec::standard()).unwrap();
    env.reset(1);
    for _ in 0..10 {
        env.step(1).unwrap();
    }
    let scene = env.scene();
    assert_eq!(scene.wind, 0.0);
    let info = FrameInfo::default();
    let img = render(&scene, &info);
    assert!(!img.pixels.chunks(4).any(|p| p[..3] == palette::WIND));
    assert_eq!(img, render(&scene, &info));
}

fn episode_frames(n: usize) -> Vec<Image> {
    let mut env = LunarLander::new(TaskSpec::windy()).unwrap();
    env.reset(7);
    let mut info = FrameInfo {
        task: "windy".into(),
        ..FrameInfo::default()
    };
    let mut frames = vec![render(&env.scene(), &info)];
    while frames.len() < n {
        let a = frames.len() % 4;
        let s = env.step(a).unwrap();
        info.step += 1;
        info.episode_return += s.reward;
        info.action = Some(a);
        frames.push(render(&env.scene(), &info));
    }
    frames
}

#[test]
fn gif_round_trips_through_the_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("episode.gif");
    let frames = episode_frames(6);
    let mut rec = GifRecorder::create(&path, 600, 400, 50).unwrap();
    for f in &frames {
        rec.push(f).unwrap();
    }
    // An identical frame (e.g. a pause) is still a frame.
    rec.push(frames.last().unwrap()).unwrap();
    assert_eq!(rec.frames(), 7);
    rec.finish().unwrap();

    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::RGBA);
    let mut dec = opts.read_info(std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!((dec.width(), dec.height()), (600, 400));
    let mut canvas = vec![0u8; 600 * 400 * 4];
    let mut count = 0;
    while let Some(f) = dec.read_next_frame().unwrap() {
        assert_eq!(f.delay, 2);
        for y in 0..f.height as usize {
            let row = &f.buffer[y * f.width as usize * 4..(y + 1) * f.width as usize * 4];
            let at = ((f.top as usize + y) * 600 + f.left as usize) * 4;
            for (dst, src) in canvas[at..at + row.len()].chunks_mut(4).zip(row.chunks(4)) {
                // Transparent pixels keep the previous frame's colour.
                if src[3] != 0 {
                    dst.copy_from_slice(src);
                }
            }
        }
        count += 1;
        // Every exactly-drawn colour survives quantisation and frame differencing.
        let img = &frames[(count - 1).min(frames.len() - 1)];
        for (a, b) in img.pixels.chunks(4).zip(canvas.chunks(4)) {
            if palette::ALL.contains(&[a[0], a[1], a[2]]) {
                assert_eq!(a[..3], b[..3]);
            }
        }
    }
    assert_eq!(count, 7);
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn unwritable_path_and_bad_sizes_are_errors() {
    let err = GifRecorder::create("/proc/x/y.gif", 600, 400, 50)
        .err()
        .unwrap();
    assert!(matches!(err, RenderError::Io { .. }), "{err}");
    assert!(GifRecorder::create("/tmp/z.gif", 0, 400, 50).is_err());
    assert!(GifRecorder::create("/tmp/z.gif", 70_000, 400, 50).is_err());
    assert!(GifRecorder::create("/tmp/z.gif", 600, 400, 0).is_err());

    let dir = tempfile::tempdir().unwrap();
    let mut rec = GifRecorder::create(dir.path().join("a.gif"), 600, 400, 50).unwrap();
    let small = Image {
        width: 10,
        height: 10,
        pixels: vec![0; 400],
    };
    assert!(matches!(
        rec.push(&small),
        Err(RenderError::SizeMismatch { .. })
    ));
}

#[test]
fn unfinished_recording_leaves_the_old_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.gif");
    std::fs::write(&path, b"old").unwrap();
    let frames = episode_frames(2);
    {
        let mut rec = GifRecorder::create(&path, 600, 400, 25).unwrap();
        rec.push(&frames[0]).unwrap();
        // Dropped without finish, as on an error or a crash.
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let mut rec = GifRecorder::create(&path, 600, 400, 25).unwrap();
    for f in &frames {
        rec.push(f).unwrap();
    }
    rec.finish().unwrap();
    assert_eq!(&std::fs::read(&path).unwrap()[..6], b"GIF89a");
}

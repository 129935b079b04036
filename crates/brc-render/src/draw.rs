//! Rasterising a [`Scene`] with tiny-skia, and the bitmap-font text overlay.

use brc_envs::Scene;
use tiny_skia::{Color, FillRule, LineCap, Paint, PathBuilder, Pixmap, Shader, Stroke, Transform};

use crate::{FrameInfo, Image, HEIGHT, WIDTH};

/// Pixels per metre (Gymnasium's `SCALE`).
const SCALE: f32 = 30.0;

/// The colours [`render`] draws with (RGB). Gymnasium's own, plus the additions it lacks.
///
/// Gymnasium fills the sky black and leaves the ground white; that already is the "dark sky"
/// the renderer should show, so both are kept exactly.
pub mod palette {
    /// Sky: Gymnasium's black.
    pub const SKY: [u8; 3] = [0, 0, 0];
    /// Moon surface (ground polygon): Gymnasium's white.
    pub const MOON: [u8; 3] = [255, 255, 255];
    /// Lander hull and legs fill: Gymnasium's `color1`.
    pub const LANDER: [u8; 3] = [128, 102, 230];
    /// Lander hull and legs outline: Gymnasium's `color2`.
    pub const LANDER_EDGE: [u8; 3] = [77, 77, 128];
    /// Flag poles: Gymnasium's white.
    pub const POLE: [u8; 3] = [255, 255, 255];
    /// Flag pennants: Gymnasium's yellow.
    pub const FLAG: [u8; 3] = [204, 204, 0];
    /// Outer engine flame (Gymnasium's fresh particles are this red-orange).
    pub const FLAME: [u8; 3] = [255, 110, 60];
    /// Engine flame core.
    pub const FLAME_CORE: [u8; 3] = [255, 220, 120];
    /// Wind arrow and its label.
    pub const WIND: [u8; 3] = [110, 200, 255];
    /// Overlay text.
    pub const TEXT: [u8; 3] = [230, 230, 230];
    /// Shadow behind overlay text, for legibility over the lander or the moon.
    pub const TEXT_SHADOW: [u8; 3] = [0, 0, 0];
    /// Every colour above, for building a GIF palette.
    pub const ALL: [[u8; 3]; 11] = [
        SKY,
        MOON,
        LANDER,
        LANDER_EDGE,
        POLE,
        FLAG,
        FLAME,
        FLAME_CORE,
        WIND,
        TEXT,
        TEXT_SHADOW,
    ];
}

/// Maps a world point (metres) to pixel coordinates (x right, y down from the top-left corner).
pub fn to_pixels(p: [f32; 2]) -> [f32; 2] {
    [p[0] * SCALE, HEIGHT as f32 - p[1] * SCALE]
}

/// Renders one 600 × 400 frame of `scene` with the overlay `info`.
pub fn render(scene: &Scene, info: &FrameInfo) -> Image {
    let mut image = Image {
        width: WIDTH,
        height: HEIGHT,
        pixels: Vec::new(),
    };
    render_into(scene, info, &mut image);
    image
}

/// [`render`] into an existing image, reusing its pixel buffer (no 960 KB allocation per
/// frame); the image is resized to 600 × 400 if needed.
pub fn render_into(scene: &Scene, info: &FrameInfo, image: &mut Image) {
    let mut buf = std::mem::take(&mut image.pixels);
    buf.resize((WIDTH * HEIGHT * 4) as usize, 0);
    let size = tiny_skia::IntSize::from_wh(WIDTH, HEIGHT).expect("nonzero constant size");
    let mut pm = Pixmap::from_vec(buf, size).expect("buffer sized for the pixmap");
    pm.fill(color(palette::SKY));

    // The moon: the polygon below the 11 surface points.
    let mut ground: Vec<[f32; 2]> = scene.terrain.iter().map(|&p| to_pixels(p)).collect();
    if let (Some(first), Some(last)) = (ground.first().copied(), ground.last().copied()) {
        ground.push([last[0], HEIGHT as f32 + 1.0]);
        ground.push([first[0], HEIGHT as f32 + 1.0]);
    }
    fill(&mut pm, &ground, palette::MOON);

    flags(&mut pm, scene);
    flames(&mut pm, scene, info.step);

    for leg in &scene.legs {
        body(&mut pm, leg);
    }
    body(&mut pm, &scene.lander);

    if scene.wind != 0.0 && scene.wind.is_finite() {
        wind_arrow(&mut pm, scene.wind);
    }
    overlay(&mut pm, info);

    image.width = WIDTH;
    image.height = HEIGHT;
    image.pixels = pm.take();
}

fn color(c: [u8; 3]) -> Color {
    Color::from_rgba8(c[0], c[1], c[2], 255)
}

fn paint(c: [u8; 3]) -> Paint<'static> {
    Paint {
        shader: Shader::SolidColor(color(c)),
        anti_alias: true,
        ..Paint::default()
    }
}

fn polygon(points: &[[f32; 2]]) -> Option<tiny_skia::Path> {
    let (first, rest) = points.split_first()?;
    let mut pb = PathBuilder::new();
    pb.move_to(first[0], first[1]);
    for p in rest {
        pb.line_to(p[0], p[1]);
    }
    pb.close();
    pb.finish()
}

/// Fills a polygon given in pixel coordinates; degenerate or non-finite polygons draw nothing.
fn fill(pm: &mut Pixmap, points: &[[f32; 2]], c: [u8; 3]) {
    if let Some(path) = polygon(points) {
        pm.fill_path(
            &path,
            &paint(c),
            FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
}

fn stroke(pm: &mut Pixmap, points: &[[f32; 2]], closed: bool, width: f32, c: [u8; 3]) {
    // A path of zero length (a calm wind's arrow shaft) has nothing to stroke, and tiny-skia
    // would log a failure for it.
    let extent = points
        .windows(2)
        .map(|w| (w[1][0] - w[0][0]).abs() + (w[1][1] - w[0][1]).abs())
        .sum::<f32>();
    if extent.is_nan() || extent <= 1e-3 {
        return;
    }
    let path = if closed {
        polygon(points)
    } else {
        let mut pb = PathBuilder::new();
        if let Some((first, rest)) = points.split_first() {
            pb.move_to(first[0], first[1]);
            for p in rest {
                pb.line_to(p[0], p[1]);
            }
        }
        pb.finish()
    };
    if let Some(path) = path {
        let s = Stroke {
            width,
            line_cap: LineCap::Butt,
            ..Stroke::default()
        };
        pm.stroke_path(&path, &paint(c), &s, Transform::identity(), None);
    }
}

/// A lander part (hull or leg): fill, then Gymnasium's darker outline.
fn body(pm: &mut Pixmap, world: &[[f32; 2]]) {
    let px: Vec<[f32; 2]> = world.iter().map(|&p| to_pixels(p)).collect();
    fill(pm, &px, palette::LANDER);
    stroke(pm, &px, true, 1.0, palette::LANDER_EDGE);
}

/// Gymnasium's flags: a 50 px white pole at each helipad end, a 25 × 10 px yellow pennant on top.
fn flags(pm: &mut Pixmap, scene: &Scene) {
    let [x1, x2, y] = scene.helipad;
    for x in [x1, x2] {
        let [px, base] = to_pixels([x, y]);
        let top = base - 50.0;
        // Centre the 1 px pole on a pixel column so it stays crisp.
        let pole_x = px.floor() + 0.5;
        stroke(
            pm,
            &[[pole_x, base], [pole_x, top]],
            false,
            1.0,
            palette::POLE,
        );
        fill(
            pm,
            &[[px, top], [px, top + 10.0], [px + 25.0, top + 5.0]],
            palette::FLAG,
        );
    }
}

/// The lander's frame: maps lander-local pixel offsets (x right, y up, Gymnasium's
/// `LANDER_POLY` units) to screen pixels.
struct LanderFrame {
    origin: [f32; 2],
    right: [f32; 2],
    up: [f32; 2],
}

impl LanderFrame {
    fn new(scene: &Scene) -> Option<Self> {
        if scene.lander.is_empty() {
            return None;
        }
        let n = scene.lander.len() as f32;
        let c = scene
            .lander
            .iter()
            .fold([0.0, 0.0], |a, p| [a[0] + p[0], a[1] + p[1]]);
        let centroid = to_pixels([c[0] / n, c[1] / n]);
        let (s, co) = scene.lander_angle.sin_cos();
        // Screen y points down, so the world's up (−sin a, cos a) becomes (−sin a, −cos a).
        let right = [co, -s];
        let up = [-s, -co];
        // The vertex mean of Gymnasium's hull polygon sits 7/3 px above the body origin.
        let off = 7.0 / 3.0;
        let origin = [centroid[0] - up[0] * off, centroid[1] - up[1] * off];
        Some(Self { origin, right, up })
    }

    fn at(&self, x: f32, y: f32) -> [f32; 2] {
        [
            self.origin[0] + self.right[0] * x + self.up[0] * y,
            self.origin[1] + self.right[1] * x + self.up[1] * y,
        ]
    }
}

/// Cosmetic flames for the engines that fired in the last step; they flicker with `step`
/// (deterministic, no RNG). Side flames come out where Gymnasium's particles do: action 1's on
/// the lander's right, action 3's on its left.
fn flames(pm: &mut Pixmap, scene: &Scene, step: usize) {
    let Some(f) = LanderFrame::new(scene) else {
        return;
    };
    let flicker = ((step.wrapping_mul(7) % 5) as f32) * 1.5;
    if scene.engines.main {
        let len = 24.0 + flicker;
        fill(
            pm,
            &[f.at(-8.0, -9.0), f.at(8.0, -9.0), f.at(0.0, -10.0 - len)],
            palette::FLAME,
        );
        fill(
            pm,
            &[
                f.at(-4.5, -9.0),
                f.at(4.5, -9.0),
                f.at(0.0, -10.0 - 0.55 * len),
            ],
            palette::FLAME_CORE,
        );
    }
    for (fired, side) in [(scene.engines.left, 1.0f32), (scene.engines.right, -1.0)] {
        if fired {
            let len = 11.0 + flicker * 0.5;
            fill(
                pm,
                &[
                    f.at(side * 14.0, 9.0),
                    f.at(side * 13.0, 17.0),
                    f.at(side * (15.0 + len), 13.0),
                ],
                palette::FLAME,
            );
            fill(
                pm,
                &[
                    f.at(side * 14.0, 11.0),
                    f.at(side * 13.5, 15.0),
                    f.at(side * (15.0 + 0.5 * len), 13.0),
                ],
                palette::FLAME_CORE,
            );
        }
    }
}

/// Centre of the wind arrow, near the top-right corner.
const WIND_AT: [f32; 2] = [WIDTH as f32 - 50.0, 20.0];
/// Arrow length at a 20 N wind.
const WIND_LEN_20N: f32 = 40.0;

/// An arrow whose length is ∝ |wind| / 20 N (capped at 1.5×) pointing the wind's way.
fn wind_arrow(pm: &mut Pixmap, wind: f32) {
    let dir = wind.signum();
    let len = WIND_LEN_20N * (wind.abs() / 20.0).min(1.5);
    let [cx, cy] = WIND_AT;
    let tail = cx - dir * len / 2.0;
    let head = cx + dir * len / 2.0;
    let head_len = 7.0f32.min(len);
    stroke(
        pm,
        &[[tail, cy], [head - dir * head_len, cy]],
        false,
        2.0,
        palette::WIND,
    );
    fill(
        pm,
        &[
            [head, cy],
            [head - dir * head_len, cy - 4.5],
            [head - dir * head_len, cy + 4.5],
        ],
        palette::WIND,
    );
    text(
        pm,
        "wind",
        (cx - 16.0) as i32,
        (cy + 10.0) as i32,
        1,
        palette::WIND,
    );
}

/// Scale of the overlay font (8 × 8 glyphs drawn at 16 × 16 pixels).
const TEXT_SCALE: i32 = 2;

fn overlay(pm: &mut Pixmap, info: &FrameInfo) {
    let action = match info.action {
        None => "-".to_string(),
        Some(a) => {
            let name = ["noop", "left", "main", "right"].get(a).copied();
            format!("{a} {}", name.unwrap_or("?"))
        }
    };
    let lines = [
        format!("task   {}", info.task),
        format!("step   {}", info.step),
        format!("return {:.1}", info.episode_return),
        format!("action {action}"),
    ];
    let line_h = 8 * TEXT_SCALE + 2;
    for (i, line) in lines.iter().enumerate() {
        text(
            pm,
            line,
            6,
            6 + i as i32 * line_h,
            TEXT_SCALE,
            palette::TEXT,
        );
    }
}

/// Draws `s` with its top-left corner at `(x, y)` in the embedded 8 × 8 font, each font pixel
/// a `scale` × `scale` square, over a 1-pixel drop shadow. Non-ASCII characters draw as `?`;
/// anything outside the image is clipped.
fn text(pm: &mut Pixmap, s: &str, x: i32, y: i32, scale: i32, c: [u8; 3]) {
    for (dx, col) in [(1, palette::TEXT_SHADOW), (0, c)] {
        let mut gx = x + dx;
        for ch in s.chars() {
            let code = if ch.is_ascii() {
                ch as usize
            } else {
                '?' as usize
            };
            let glyph = font8x8::legacy::BASIC_LEGACY[code];
            for (row, bits) in glyph.iter().enumerate() {
                for bit in 0..8 {
                    if bits & (1 << bit) != 0 {
                        let px = gx + bit * scale;
                        let py = y + dx + row as i32 * scale;
                        put_square(pm, px, py, scale, col);
                    }
                }
            }
            gx += 8 * scale;
            if gx >= WIDTH as i32 {
                break;
            }
        }
    }
}

fn put_square(pm: &mut Pixmap, x: i32, y: i32, size: i32, c: [u8; 3]) {
    let (w, h) = (pm.width() as i32, pm.height() as i32);
    let data = pm.data_mut();
    for yy in y.max(0)..(y + size).min(h) {
        for xx in x.max(0)..(x + size).min(w) {
            let i = ((yy * w + xx) * 4) as usize;
            data[i..i + 4].copy_from_slice(&[c[0], c[1], c[2], 255]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_draws_glyph_pixels_and_clips() {
        let mut pm = Pixmap::new(20, 10).unwrap();
        text(&mut pm, "A", 0, 0, 1, [255, 0, 0]);
        assert!(pm.data().chunks(4).any(|p| p[..3] == [255, 0, 0]));
        // Far outside: no panic.
        text(&mut pm, "é long text", -50, -50, 3, [255, 0, 0]);
        text(&mut pm, "x", 1000, 1000, 1, [255, 0, 0]);
    }

    #[test]
    fn empty_scene_renders_without_panicking() {
        let scene = Scene {
            terrain: vec![],
            helipad: [f32::NAN, 1.0, 1.0],
            lander: vec![],
            legs: [vec![], vec![]],
            leg_contact: [false; 2],
            engines: Default::default(),
            wind: 0.0,
            lander_angle: 0.0,
        };
        let img = render(&scene, &FrameInfo::default());
        assert_eq!(img.pixels.len(), (WIDTH * HEIGHT * 4) as usize);
    }
}

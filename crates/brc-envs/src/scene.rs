//! Read-only scene geometry, so renderers can draw an episode without touching Box2D.

use serde::Serialize;

/// Which engines fired during the last step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EngineFiring {
    /// Main (bottom) engine, action 2.
    pub main: bool,
    /// Left orientation engine, action 1 (pushes the lander's nose to the right).
    pub left: bool,
    /// Right orientation engine, action 3.
    pub right: bool,
}

/// Everything a renderer needs to draw the current frame, in world coordinates (metres;
/// the viewport spans x ∈ [0, 20], y ∈ [0, 13.3], 30 pixels per metre).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scene {
    /// The moon's surface: 11 points from x = 0 to x = 20; the ground lies below them.
    pub terrain: Vec<[f32; 2]>,
    /// Helipad `[x1, x2, y]`: flat ground between the two flags at x1 and x2.
    pub helipad: [f32; 3],
    /// The lander's hull polygon (6 points).
    pub lander: Vec<[f32; 2]>,
    /// The two leg boxes (4 points each); `legs[0]` is the leg at +x (observation 6).
    pub legs: [Vec<[f32; 2]>; 2],
    /// Per-leg ground contact, as in observations 6 and 7.
    pub leg_contact: [bool; 2],
    /// Engines fired by the last step.
    pub engines: EngineFiring,
    /// Lateral wind force applied in the last step (0 for windless tasks).
    pub wind: f32,
    /// The lander's angle in radians (for drawing flames along its axis).
    pub lander_angle: f32,
}

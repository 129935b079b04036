//! Gymnasium's LunarLander-v3 (discrete actions) ported to box2d-rs, with task variants.
//!
//! The port follows `gymnasium/envs/box2d/lunar_lander.py` (Gymnasium 1.4.0) line by line:
//! Box2D sees f32 values, while the Python side (terrain, engine offsets, observation
//! scaling, reward shaping) computes in f64, so the same split is kept here. Gymnasium's own
//! wind option is not ported; our wind is the task's uniform lateral force
//! (see [`TaskSpec::wind_power`]). Cosmetic engine particles have no effect on the lander
//! (they collide only with the ground) and are left out.

use std::cell::RefCell;
use std::rc::Rc;

use box2d_rs::b2_body::{B2body, B2bodyDef, B2bodyType, BodyPtr};
use box2d_rs::b2_contact::B2contactDynTrait;
use box2d_rs::b2_fixture::{B2filter, B2fixtureDef};
use box2d_rs::b2_joint::B2JointDefEnum;
use box2d_rs::b2_math::B2vec2;
use box2d_rs::b2_world::{B2world, B2worldPtr};
use box2d_rs::b2_world_callbacks::B2contactListener;
use box2d_rs::b2rs_common::UserDataType;
use box2d_rs::joints::b2_revolute_joint::B2revoluteJointDef;
use box2d_rs::shapes::b2_edge_shape::B2edgeShape;
use box2d_rs::shapes::b2_polygon_shape::B2polygonShape;

use crate::rng::NumpyRng;
use crate::scene::{EngineFiring, Scene};
use crate::task::TaskSpec;
use crate::{Env, EnvError, Observation, Step, Termination, NUM_ACTIONS};

// Gymnasium's constants, same names.
const FPS: f64 = 50.0;
/// Pixels per metre.
pub(crate) const SCALE: f64 = 30.0;
const MAIN_ENGINE_POWER: f64 = 13.0;
const SIDE_ENGINE_POWER: f64 = 0.6;
const INITIAL_RANDOM: f64 = 1000.0;
pub(crate) const LANDER_POLY: [(f64, f64); 6] = [
    (-14.0, 17.0),
    (-17.0, 0.0),
    (-17.0, -10.0),
    (17.0, -10.0),
    (17.0, 0.0),
    (14.0, 17.0),
];
const LEG_AWAY: f64 = 20.0;
const LEG_DOWN: f64 = 18.0;
pub(crate) const LEG_W: f64 = 2.0;
pub(crate) const LEG_H: f64 = 8.0;
const LEG_SPRING_TORQUE: f64 = 40.0;
const SIDE_ENGINE_HEIGHT: f64 = 14.0;
const SIDE_ENGINE_AWAY: f64 = 12.0;
const MAIN_ENGINE_Y_LOCATION: f64 = 4.0;
/// Viewport width in pixels (the world is `VIEWPORT_W / SCALE` = 20 m wide).
pub const VIEWPORT_W: f64 = 600.0;
/// Viewport height in pixels (the world is `VIEWPORT_H / SCALE` ≈ 13.3 m high).
pub const VIEWPORT_H: f64 = 400.0;
const CHUNKS: usize = 11;
// Box2D solver iterations Gymnasium uses: the velocity iterations dominate the cost.
const VELOCITY_ITERATIONS: i32 = 6 * 30;
const POSITION_ITERATIONS: i32 = 2 * 30;

/// What a fixture belongs to, so the contact listener can tell lander, legs and ground apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Part {
    #[default]
    Ground,
    Lander,
    Leg(usize),
}

/// box2d-rs user-data types: fixtures carry their [`Part`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tags;

impl UserDataType for Tags {
    type Fixture = Part;
    type Body = ();
    type Joint = ();
}

/// Contact flags written by the listener during `world.step`, read by the env after it.
#[derive(Debug, Default)]
struct ContactFlags {
    game_over: bool,
    /// Per leg: a boolean set on begin-contact and cleared on end-contact, as in Gymnasium
    /// (not a counter, so a leg touching two terrain edges loses contact when either ends).
    leg_contact: [bool; 2],
}

struct ContactDetector {
    flags: Rc<RefCell<ContactFlags>>,
}

impl ContactDetector {
    fn parts(contact: &dyn B2contactDynTrait<Tags>) -> [Part; 2] {
        let base = contact.get_base();
        let a = base
            .get_fixture_a()
            .borrow()
            .get_user_data()
            .unwrap_or_default();
        let b = base
            .get_fixture_b()
            .borrow()
            .get_user_data()
            .unwrap_or_default();
        [a, b]
    }
}

impl B2contactListener<Tags> for ContactDetector {
    fn begin_contact(&mut self, contact: &mut dyn B2contactDynTrait<Tags>) {
        let mut flags = self.flags.borrow_mut();
        for part in Self::parts(contact) {
            match part {
                Part::Lander => flags.game_over = true,
                Part::Leg(i) => flags.leg_contact[i] = true,
                Part::Ground => {}
            }
        }
    }

    fn end_contact(&mut self, contact: &mut dyn B2contactDynTrait<Tags>) {
        let mut flags = self.flags.borrow_mut();
        for part in Self::parts(contact) {
            if let Part::Leg(i) = part {
                flags.leg_contact[i] = false;
            }
        }
    }
}

/// One random draw as Gymnasium's `np_random.uniform(low, high)` makes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    /// Lower bound passed to `uniform`.
    pub low: f64,
    /// Upper bound passed to `uniform`.
    pub high: f64,
    /// The value drawn.
    pub value: f64,
}

/// LunarLander with discrete actions (0 noop, 1 left engine, 2 main engine, 3 right engine).
///
/// Owns its Box2D world and its one RNG; `reset(seed)` rebuilds both, so episodes are
/// independent and reproducible. box2d-rs worlds are `Rc<RefCell<…>>`, hence `!Send`:
/// build each env inside the thread that uses it.
pub struct LunarLander {
    task: TaskSpec,
    rng: NumpyRng,
    world: B2worldPtr<Tags>,
    lander: BodyPtr<Tags>,
    legs: [BodyPtr<Tags>; 2],
    flags: Rc<RefCell<ContactFlags>>,
    helipad_y: f64,
    /// Smoothed terrain heights at the chunk boundaries (for the scene).
    terrain_y: [f64; CHUNKS],
    prev_shaping: Option<f64>,
    last_engines: EngineFiring,
    last_wind: f64,
    draw_log: Option<Vec<Draw>>,
}

impl LunarLander {
    /// A lander for `task`, already reset with seed 0 so that `step` is always valid.
    pub fn new(task: TaskSpec) -> Result<Self, EnvError> {
        task.validate().map_err(EnvError::InvalidTask)?;
        let flags = Rc::new(RefCell::new(ContactFlags::default()));
        let (world, lander, legs, helipad_y, terrain_y) =
            build_world(&task, &mut NumpyRng::from_seed(0), &flags, &mut None);
        let mut env = Self {
            task,
            rng: NumpyRng::from_seed(0),
            world,
            lander,
            legs,
            flags,
            helipad_y,
            terrain_y,
            prev_shaping: None,
            last_engines: EngineFiring::default(),
            last_wind: 0.0,
            draw_log: None,
        };
        env.reset(0);
        Ok(env)
    }

    /// The task this env runs.
    pub fn task(&self) -> &TaskSpec {
        &self.task
    }

    /// Start (or stop, with `false`) recording every random draw, for fidelity checks
    /// against Gymnasium's recorded draw sequences. Off by default: it allocates.
    pub fn record_draws(&mut self, on: bool) {
        self.draw_log = on.then(Vec::new);
    }

    /// The draws recorded since the last `reset` (empty when recording is off).
    pub fn draws(&self) -> &[Draw] {
        self.draw_log.as_deref().unwrap_or(&[])
    }

    /// Read-only geometry of the current state, in world coordinates (metres), for renderers.
    pub fn scene(&self) -> Scene {
        let w = VIEWPORT_W / SCALE;
        let chunk_x = |i: usize| (w / (CHUNKS - 1) as f64 * i as f64) as f32;
        let terrain = (0..CHUNKS)
            .map(|i| [chunk_x(i), self.terrain_y[i] as f32])
            .collect();
        let world_poly = |body: &BodyPtr<Tags>, pts: &[(f64, f64)]| -> Vec<[f32; 2]> {
            let b = body.borrow();
            pts.iter()
                .map(|&(x, y)| {
                    let p = b.get_world_point(B2vec2::new((x / SCALE) as f32, (y / SCALE) as f32));
                    [p.x, p.y]
                })
                .collect()
        };
        let (hx, hy) = (LEG_W, LEG_H);
        let leg_box = [(-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)];
        let flags = self.flags.borrow();
        Scene {
            terrain,
            helipad: [
                chunk_x(CHUNKS / 2 - 1),
                chunk_x(CHUNKS / 2 + 1),
                self.helipad_y as f32,
            ],
            lander: world_poly(&self.lander, &LANDER_POLY),
            legs: [
                world_poly(&self.legs[0], &leg_box),
                world_poly(&self.legs[1], &leg_box),
            ],
            leg_contact: flags.leg_contact,
            engines: self.last_engines,
            wind: self.last_wind as f32,
            lander_angle: self.lander.borrow().get_angle(),
        }
    }

    fn uniform(&mut self, low: f64, high: f64) -> f64 {
        let value = self.rng.uniform(low, high);
        if let Some(log) = &mut self.draw_log {
            log.push(Draw { low, high, value });
        }
        value
    }

    /// Gymnasium's `step` with our wind in front of it; `action` is already validated.
    fn physics_step(&mut self, action: usize) -> Step {
        if self.task.wind_power > 0.0 {
            let w = self.uniform(-self.task.wind_power, self.task.wind_power);
            let airborne = {
                let flags = self.flags.borrow();
                !(flags.leg_contact[0] || flags.leg_contact[1])
            };
            self.last_wind = 0.0;
            if airborne || !self.task.wind_airborne_only {
                self.last_wind = w;
                self.lander
                    .borrow_mut()
                    .apply_force_to_center(B2vec2::new(w as f32, 0.0), true);
            }
        }

        let angle = f64::from(self.lander.borrow().get_angle());
        let tip = (angle.sin(), angle.cos());
        let side = (-tip.1, tip.0);
        let dispersion = [
            self.uniform(-1.0, 1.0) / SCALE,
            self.uniform(-1.0, 1.0) / SCALE,
        ];

        let mut m_power = 0.0;
        if action == 2 {
            m_power = 1.0;
            let ox = tip.0 * (MAIN_ENGINE_Y_LOCATION / SCALE + 2.0 * dispersion[0])
                + side.0 * dispersion[1];
            let oy = -tip.1 * (MAIN_ENGINE_Y_LOCATION / SCALE + 2.0 * dispersion[0])
                - side.1 * dispersion[1];
            self.apply_engine_impulse(ox, oy, (ox, oy), MAIN_ENGINE_POWER * m_power);
        }

        let mut s_power = 0.0;
        if action == 1 || action == 3 {
            s_power = 1.0;
            let direction = action as f64 - 2.0;
            let lateral = 3.0 * dispersion[1] + direction * SIDE_ENGINE_AWAY / SCALE;
            let ox = tip.0 * dispersion[0] + side.0 * lateral;
            let oy = -tip.1 * dispersion[0] - side.1 * lateral;
            let at = (
                ox - tip.0 * 17.0 / SCALE,
                oy + tip.1 * SIDE_ENGINE_HEIGHT / SCALE,
            );
            self.apply_engine_impulse(ox, oy, at, SIDE_ENGINE_POWER * s_power);
        }
        self.last_engines = EngineFiring {
            main: action == 2,
            left: action == 1,
            right: action == 3,
        };

        self.world
            .borrow_mut()
            .step((1.0 / FPS) as f32, VELOCITY_ITERATIONS, POSITION_ITERATIONS);

        let (pos, vel, angle, angular_velocity, awake) = {
            let l = self.lander.borrow();
            (
                l.get_position(),
                l.get_linear_velocity(),
                l.get_angle(),
                l.get_angular_velocity(),
                l.is_awake(),
            )
        };
        let flags = self.flags.borrow();
        let half_w = VIEWPORT_W / SCALE / 2.0;
        let half_h = VIEWPORT_H / SCALE / 2.0;
        let state: [f64; 8] = [
            (f64::from(pos.x) - half_w) / half_w,
            (f64::from(pos.y) - (self.helipad_y + LEG_DOWN / SCALE)) / half_h,
            f64::from(vel.x) * half_w / FPS,
            f64::from(vel.y) * half_h / FPS,
            f64::from(angle),
            20.0 * f64::from(angular_velocity) / FPS,
            if flags.leg_contact[0] { 1.0 } else { 0.0 },
            if flags.leg_contact[1] { 1.0 } else { 0.0 },
        ];

        let shaping = -100.0 * (state[0] * state[0] + state[1] * state[1]).sqrt()
            - 100.0 * (state[2] * state[2] + state[3] * state[3]).sqrt()
            - 100.0 * state[4].abs()
            + 10.0 * state[6]
            + 10.0 * state[7];
        let mut reward = match self.prev_shaping {
            Some(prev) => shaping - prev,
            None => 0.0,
        };
        self.prev_shaping = Some(shaping);
        reward -= m_power * 0.30;
        reward -= s_power * 0.03;

        // Same precedence as Gymnasium: a sleeping lander overrides a crash in the same step.
        let mut termination = None;
        if flags.game_over {
            termination = Some(Termination::Crash);
            reward = -100.0;
        } else if state[0].abs() >= 1.0 {
            termination = Some(Termination::OutOfBounds);
            reward = -100.0;
        }
        if !awake {
            termination = Some(Termination::Rest);
            reward = 100.0;
        }
        Step {
            obs: state.map(|v| v as f32),
            reward,
            termination,
        }
    }

    /// Pushes the lander opposite to the exhaust `(ox, oy)`, at `lander position + at`.
    fn apply_engine_impulse(&mut self, ox: f64, oy: f64, at: (f64, f64), power: f64) {
        let mut lander = self.lander.borrow_mut();
        let pos = lander.get_position();
        let point = B2vec2::new(
            (f64::from(pos.x) + at.0) as f32,
            (f64::from(pos.y) + at.1) as f32,
        );
        let impulse = B2vec2::new((-ox * power) as f32, (-oy * power) as f32);
        lander.apply_linear_impulse(impulse, point, true);
    }
}

impl Env for LunarLander {
    fn reset(&mut self, seed: u64) -> Observation {
        self.rng = NumpyRng::from_seed(seed);
        if let Some(log) = &mut self.draw_log {
            log.clear();
        }
        *self.flags.borrow_mut() = ContactFlags::default();
        let (world, lander, legs, helipad_y, terrain_y) =
            build_world(&self.task, &mut self.rng, &self.flags, &mut self.draw_log);
        self.world = world;
        self.lander = lander;
        self.legs = legs;
        self.helipad_y = helipad_y;
        self.terrain_y = terrain_y;
        self.prev_shaping = None;
        // Gymnasium ends reset with one step(0): it consumes draws and sets prev_shaping;
        // its reward and termination are discarded.
        self.physics_step(0).obs
    }

    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        if action >= NUM_ACTIONS {
            return Err(EnvError::InvalidAction(action));
        }
        Ok(self.physics_step(action))
    }
}

type World = (
    B2worldPtr<Tags>,
    BodyPtr<Tags>,
    [BodyPtr<Tags>; 2],
    f64,
    [f64; CHUNKS],
);

/// Gymnasium's `reset` up to (not including) its final `step(0)`: a fresh world with terrain,
/// lander (with the random initial push) and legs. Draws 12 heights and 2 force components.
fn build_world(
    task: &TaskSpec,
    rng: &mut NumpyRng,
    flags: &Rc<RefCell<ContactFlags>>,
    draw_log: &mut Option<Vec<Draw>>,
) -> World {
    let mut uniform = |low: f64, high: f64| {
        let value = rng.uniform(low, high);
        if let Some(log) = draw_log {
            log.push(Draw { low, high, value });
        }
        value
    };
    let v = |x: f64, y: f64| B2vec2::new(x as f32, y as f32);

    let world = B2world::<Tags>::new(B2vec2::new(0.0, task.gravity as f32));
    let listener = Rc::new(RefCell::new(ContactDetector {
        flags: flags.clone(),
    }));
    world.borrow_mut().set_contact_listener(listener);

    let w = VIEWPORT_W / SCALE;
    let h = VIEWPORT_H / SCALE;
    let mut height = [0.0f64; CHUNKS + 1];
    for y in &mut height {
        *y = uniform(0.0, h / 2.0);
    }
    let chunk_x: [f64; CHUNKS] = std::array::from_fn(|i| w / (CHUNKS - 1) as f64 * i as f64);
    let helipad_y = h / 4.0;
    for y in &mut height[CHUNKS / 2 - 2..=CHUNKS / 2 + 2] {
        *y = helipad_y;
    }
    // Python's height[i - 1] at i = 0 is height[-1], the last (12th) height.
    let smooth_y: [f64; CHUNKS] = std::array::from_fn(|i| {
        let prev = if i == 0 {
            height[CHUNKS]
        } else {
            height[i - 1]
        };
        0.33 * (prev + height[i] + height[i + 1])
    });

    let moon = B2world::create_body(world.clone(), &B2bodyDef::default());
    // The bottom edge uses the default fixture def (friction 0.2); terrain edges 0.1.
    let edge_fixture = |a: B2vec2, b: B2vec2, friction: f32| {
        let mut edge = B2edgeShape::default();
        edge.set_two_sided(a, b);
        B2fixtureDef {
            shape: Some(Rc::new(RefCell::new(edge))),
            friction,
            user_data: Some(Part::Ground),
            ..Default::default()
        }
    };
    B2body::create_fixture(moon.clone(), &edge_fixture(v(0.0, 0.0), v(w, 0.0), 0.2));
    for i in 0..CHUNKS - 1 {
        let def = edge_fixture(
            v(chunk_x[i], smooth_y[i]),
            v(chunk_x[i + 1], smooth_y[i + 1]),
            0.1,
        );
        B2body::create_fixture(moon.clone(), &def);
    }

    let initial_x = VIEWPORT_W / SCALE / 2.0;
    let initial_y = VIEWPORT_H / SCALE;
    let dynamic_body = |x: f64, y: f64, angle: f64| {
        let def = B2bodyDef {
            body_type: B2bodyType::B2DynamicBody,
            position: v(x, y),
            angle: angle as f32,
            ..Default::default()
        };
        B2world::create_body(world.clone(), &def)
    };
    // Lander and legs collide only with the ground (category 1), never with each other.
    let ground_only = |category_bits: u16| B2filter {
        category_bits,
        mask_bits: 0x001,
        group_index: 0,
    };

    let lander = dynamic_body(initial_x, initial_y, 0.0);
    let mut hull = B2polygonShape::default();
    let hull_points: Vec<B2vec2> = LANDER_POLY
        .iter()
        .map(|&(x, y)| v(x / SCALE, y / SCALE))
        .collect();
    hull.set(&hull_points);
    B2body::create_fixture(
        lander.clone(),
        &B2fixtureDef {
            shape: Some(Rc::new(RefCell::new(hull))),
            density: 5.0,
            friction: 0.1,
            restitution: 0.0,
            filter: ground_only(0x0010),
            user_data: Some(Part::Lander),
            ..Default::default()
        },
    );
    let push = v(
        uniform(-INITIAL_RANDOM, INITIAL_RANDOM),
        uniform(-INITIAL_RANDOM, INITIAL_RANDOM),
    );
    lander.borrow_mut().apply_force_to_center(push, true);

    let legs: [BodyPtr<Tags>; 2] = [-1.0f64, 1.0].map(|i| {
        let leg_index = if i < 0.0 { 0 } else { 1 };
        let leg = dynamic_body(initial_x - i * LEG_AWAY / SCALE, initial_y, i * 0.05);
        let mut shape = B2polygonShape::default();
        shape.set_as_box((LEG_W / SCALE) as f32, (LEG_H / SCALE) as f32);
        B2body::create_fixture(
            leg.clone(),
            &B2fixtureDef {
                shape: Some(Rc::new(RefCell::new(shape))),
                density: 1.0,
                restitution: 0.0,
                filter: ground_only(0x0020),
                user_data: Some(Part::Leg(leg_index)),
                ..Default::default()
            },
        );
        let (lower, upper) = if i < 0.0 {
            (0.9 - 0.5, 0.9)
        } else {
            (-0.9, -0.9 + 0.5)
        };
        let mut rjd = B2revoluteJointDef::<Tags>::default();
        rjd.base.body_a = Some(lander.clone());
        rjd.base.body_b = Some(leg.clone());
        rjd.local_anchor_a = v(0.0, 0.0);
        rjd.local_anchor_b = v(i * LEG_AWAY / SCALE, LEG_DOWN / SCALE);
        // pybox2d sets referenceAngle = bodyB.angle − bodyA.angle implicitly; box2d-rs keeps 0.
        rjd.reference_angle = leg.borrow().get_angle() - lander.borrow().get_angle();
        rjd.enable_motor = true;
        rjd.enable_limit = true;
        rjd.max_motor_torque = LEG_SPRING_TORQUE as f32;
        rjd.motor_speed = (0.3 * i) as f32;
        rjd.lower_angle = lower as f32;
        rjd.upper_angle = upper as f32;
        world
            .borrow_mut()
            .create_joint(&B2JointDefEnum::RevoluteJoint(rjd));
        leg
    });

    (world, lander, legs, helipad_y, smooth_y)
}

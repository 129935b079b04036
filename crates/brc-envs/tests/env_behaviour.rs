//! Behaviour of the env API: errors, determinism, robustness, task variants and scene geometry.

use brc_envs::rng::NumpyRng;
use brc_envs::{
    heuristic_action, run_episode, Env, EnvError, LunarLander, Outcome, TaskSpec, NUM_ACTIONS,
};

#[test]
fn out_of_range_action_is_an_error_and_changes_nothing() {
    let mut env = LunarLander::new(TaskSpec::standard()).unwrap();
    let mut twin = LunarLander::new(TaskSpec::standard()).unwrap();
    env.reset(3);
    twin.reset(3);
    assert_eq!(env.step(4), Err(EnvError::InvalidAction(4)));
    assert_eq!(
        env.step(usize::MAX),
        Err(EnvError::InvalidAction(usize::MAX))
    );
    assert_eq!(env.step(2).unwrap(), twin.step(2).unwrap());
}

#[test]
fn invalid_task_is_an_error() {
    let task = TaskSpec {
        gravity: 5.0,
        ..TaskSpec::standard()
    };
    assert!(matches!(
        LunarLander::new(task),
        Err(EnvError::InvalidTask(_))
    ));
}

#[test]
fn same_seed_same_episode_and_seeds_differ() {
    let run = |seed| {
        let mut env = LunarLander::new(TaskSpec::windy()).unwrap();
        let mut obs = vec![env.reset(seed)];
        for t in 0..200 {
            match env.step(t % NUM_ACTIONS).unwrap() {
                s if s.terminated() => break,
                s => obs.push(s.obs),
            }
        }
        obs
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7)[0], run(8)[0]);
    // Resetting a used env gives the same episode as a fresh one.
    let mut env = LunarLander::new(TaskSpec::windy()).unwrap();
    env.reset(1);
    env.step(2).unwrap();
    let fresh = LunarLander::new(TaskSpec::windy()).unwrap().reset(7);
    assert_eq!(env.reset(7), fresh);
}

fn random_steps(total: usize, seed: u64) {
    let mut action_rng = NumpyRng::from_seed(seed);
    let mut done = 0;
    for (episode, task) in TaskSpec::defaults().into_iter().cycle().enumerate() {
        let mut env = LunarLander::new(task.clone()).unwrap();
        let obs = env.reset(seed.wrapping_mul(1000).wrapping_add(episode as u64));
        assert!(obs.iter().all(|v| v.is_finite()));
        for _ in 0..task.max_episode_steps {
            let action = (action_rng.random() * NUM_ACTIONS as f64) as usize;
            let step = env.step(action).unwrap();
            done += 1;
            assert!(
                step.obs.iter().all(|v| v.is_finite()) && step.reward.is_finite(),
                "non-finite step {step:?}"
            );
            if step.terminated() || done >= total {
                break;
            }
        }
        if done >= total {
            return;
        }
    }
}

#[test]
fn random_steps_stay_finite() {
    random_steps(200_000, 1);
}

/// 10M random steps; run with `cargo test --release -p brc-envs -- --ignored soak`.
#[test]
#[ignore = "long soak: ~3 minutes in release"]
fn soak_ten_million_random_steps() {
    random_steps(10_000_000, 2);
}

fn heuristic_rests(task: TaskSpec, seeds: u64) -> usize {
    let mut env = LunarLander::new(task.clone()).unwrap();
    (0..seeds)
        .filter(|&s| {
            run_episode(&mut env, s, task.max_episode_steps, heuristic_action)
                .unwrap()
                .outcome
                == Outcome::Rest
        })
        .count()
}

#[test]
fn airborne_only_wind_lets_the_lander_rest() {
    let ground_wind = heuristic_rests(TaskSpec::windy(), 20);
    let airborne = TaskSpec {
        wind_airborne_only: true,
        ..TaskSpec::windy()
    };
    let airborne_rests = heuristic_rests(airborne, 20);
    assert_eq!(ground_wind, 0, "wind on the ground keeps the lander awake");
    assert!(airborne_rests >= 5, "only {airborne_rests}/20 rests");
}

#[test]
fn custom_strong_wind_draws_wider_forces() {
    let strong = TaskSpec {
        name: "windy_strong".into(),
        wind_power: 30.0,
        ..TaskSpec::windy()
    };
    let mut env = LunarLander::new(strong).unwrap();
    env.record_draws(true);
    env.reset(0);
    for _ in 0..50 {
        env.step(0).unwrap();
    }
    let winds: Vec<f64> = env
        .draws()
        .iter()
        .filter(|d| d.high == 30.0)
        .map(|d| d.value)
        .collect();
    assert_eq!(winds.len(), 51, "one wind draw per step, reset's included");
    assert!(winds.iter().any(|w| w.abs() > 20.0));
    assert!(winds.iter().all(|w| w.abs() <= 30.0));
}

#[test]
fn heavy_gravity_falls_faster() {
    let fall = |task| {
        let mut env = LunarLander::new(task).unwrap();
        env.reset(5);
        let mut vy = 0.0;
        for _ in 0..20 {
            vy = env.step(0).unwrap().obs[3];
        }
        vy
    };
    let standard = fall(TaskSpec::standard());
    let heavy = fall(TaskSpec::heavy());
    // Same seed, same push: only gravity differs, 1.25× as strong.
    assert!(
        heavy < standard - 0.1,
        "heavy vy {heavy} vs standard {standard}"
    );
}

#[test]
fn scene_geometry_follows_the_lander() {
    let mut env = LunarLander::new(TaskSpec::windy()).unwrap();
    let obs = env.reset(11);
    let scene = env.scene();
    assert_eq!(scene.terrain.len(), 11);
    assert_eq!(scene.terrain[0][0], 0.0);
    assert!((scene.terrain[10][0] - 20.0).abs() < 1e-5);
    // The helipad is flat ground between chunks 4 and 6 at H/4.
    let [x1, x2, y] = scene.helipad;
    assert!((x1 - 8.0).abs() < 1e-5 && (x2 - 12.0).abs() < 1e-5);
    assert!((y - 400.0 / 30.0 / 4.0).abs() < 1e-5);
    // The hull's centroid is near the body origin, which obs 0 normalises.
    let cx = scene.lander.iter().map(|p| p[0]).sum::<f32>() / 6.0;
    let x = obs[0] * 10.0 + 10.0;
    assert!((cx - x).abs() < 0.1, "hull centre {cx} vs body x {x}");
    assert_eq!(scene.legs[0].len(), 4);
    // legs[0] hangs at +x of the hull.
    assert!(scene.legs[0][0][0] > scene.legs[1][0][0]);
    env.step(2).unwrap();
    let scene = env.scene();
    assert!(scene.engines.main && !scene.engines.left && !scene.engines.right);
    assert!(scene.wind != 0.0);
}

#[test]
fn observed_episodes_show_every_state_once() {
    let mut env = LunarLander::new(TaskSpec::heavy()).unwrap();
    let mut seen = Vec::new();
    let summary = brc_envs::run_episode_observed(&mut env, 4, 800, heuristic_action, |e, p| {
        seen.push((p.step, p.done, e.scene().engines.main));
    })
    .unwrap();
    assert_eq!(seen.len(), summary.length + 1, "reset plus one per step");
    assert_eq!(seen[0], (0, false, false));
    assert!(seen.last().unwrap().1 && seen.iter().filter(|s| s.1).count() == 1);
    let plain = run_episode(&mut env, 4, 800, heuristic_action).unwrap();
    assert_eq!(plain, summary);
}

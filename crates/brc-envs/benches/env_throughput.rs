//! Env steps per second with uniform-random actions, resets included, one env per thread.
//!
//! `cargo bench -p brc-envs --bench env_throughput [-- STEPS]` (release profile). Prints the
//! median of 5 repetitions after a warm-up for 1 thread and for every thread count up to the
//! number of cores, with the scaling ratio against one thread measured in the same run.

use std::time::Instant;

use brc_envs::rng::NumpyRng;
use brc_envs::{Env, LunarLander, TaskSpec, NUM_ACTIONS};

/// Runs `steps` random steps on `task` (episodes cut at the task's time limit) and returns
/// steps per second.
fn steps_per_second(task: &TaskSpec, steps: usize, seed: u64) -> f64 {
    // The env is built here, inside the thread that uses it: box2d-rs worlds are !Send.
    let mut env = LunarLander::new(task.clone()).unwrap();
    let mut actions = NumpyRng::from_seed(seed);
    let start = Instant::now();
    let mut episode = 0;
    let mut t = 0;
    env.reset(seed);
    for _ in 0..steps {
        let a = (actions.random() * NUM_ACTIONS as f64) as usize;
        let step = env.step(a).unwrap();
        t += 1;
        if step.terminated() || t == task.max_episode_steps {
            episode += 1;
            t = 0;
            env.reset(seed * 100_000 + episode);
        }
    }
    steps as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let steps: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let task = TaskSpec::standard();
    steps_per_second(&task, steps / 10, 999); // warm-up

    println!("env steps/s, random actions, resets included, {steps} steps per thread, median of 5");
    for t in TaskSpec::defaults() {
        let runs = (0..5).map(|r| steps_per_second(&t, steps, r)).collect();
        println!("  1 thread  {:<9} {:>9.0}", t.name, median(runs));
    }
    let mut single = 0.0;
    for threads in 1..=cores.max(2) {
        let runs: Vec<f64> = (0..5)
            .map(|r| {
                std::thread::scope(|s| {
                    let handles: Vec<_> = (0..threads)
                        .map(|i| {
                            let task = &task;
                            s.spawn(move || steps_per_second(task, steps, r * 10 + i as u64))
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).sum()
                })
            })
            .collect();
        let total = median(runs);
        if threads == 1 {
            single = total;
        }
        println!(
            "  {threads} thread(s) standard total {total:>9.0}  scaling {:.2}x of 1 thread",
            total / single
        );
    }
}

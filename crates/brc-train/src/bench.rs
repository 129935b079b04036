//! `brc bench`: the numbers users compare — env steps, replay sampling, agent updates and
//! actions, and short end-to-end training slices — one thread each, median of repetitions.

use std::collections::BTreeMap;
use std::time::Instant;

use brc_agents::{
    build_agent, AgentConfig, AgentContext, BrcConfig, Exploration, IndependentDqnConfig,
    ReplaySource, SharedDqnConfig,
};
use brc_buffer::{Batch, ReplayBuffer, Transition};
use brc_envs::rng::NumpyRng;
use brc_envs::{heuristic_action, Env, LunarLander, TaskSpec, NUM_ACTIONS};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg32;
use serde::Serialize;

use crate::trainer::TrainError;
use crate::{parse_config, train, TrainOptions};

/// Median and spread of repeated measurements.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Measure {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Measure {
    fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Self {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

/// How much work each measurement does.
#[derive(Debug, Clone, Copy)]
pub struct BenchSize {
    /// Repetitions of every measurement (after one warm-up).
    pub repetitions: usize,
    /// Env steps per env measurement.
    pub env_steps: usize,
    /// Updates per BRC measurement (MLP agents do 10×).
    pub brc_updates: usize,
    /// Episodes per task of each end-to-end slice.
    pub e2e_episodes_per_task: usize,
}

impl BenchSize {
    /// The default: about a minute on a laptop core.
    pub fn full() -> Self {
        Self {
            repetitions: 5,
            env_steps: 50_000,
            brc_updates: 40,
            e2e_episodes_per_task: 2,
        }
    }

    /// Seconds, for tests and smoke checks (numbers are noisy).
    pub fn quick() -> Self {
        Self {
            repetitions: 2,
            env_steps: 1_000,
            brc_updates: 2,
            e2e_episodes_per_task: 1,
        }
    }
}

/// Per-agent figures.
#[derive(Debug, Clone, Serialize)]
pub struct AgentBench {
    /// One update at batch 64, µs.
    pub update_us: Measure,
    /// One batch-1 greedy action, µs.
    pub act_us: Measure,
    /// Trainable parameters.
    pub parameters: usize,
}

/// Env figures.
#[derive(Debug, Clone, Serialize)]
pub struct EnvBench {
    /// Random actions, resets included, steps per second.
    pub steps_per_s: Measure,
    /// Gymnasium's heuristic pilot, steps per second.
    pub heuristic_steps_per_s: Measure,
}

/// End-to-end training slice figures.
#[derive(Debug, Clone, Serialize)]
pub struct E2eBench {
    /// Env steps (each followed by an update) per second of the whole loop.
    pub steps_per_s: Measure,
    /// Updates per second of the whole loop.
    pub updates_per_s: Measure,
}

/// Everything `brc bench` measures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Env throughput.
    pub env: EnvBench,
    /// Sampling a batch of 64 from a full 100,000-slot buffer, µs.
    pub replay_sample_us: Measure,
    /// Per agent kind.
    pub agents: BTreeMap<String, AgentBench>,
    /// Per agent kind.
    pub e2e: BTreeMap<String, E2eBench>,
}

fn repeat(size: &BenchSize, mut f: impl FnMut() -> f64) -> Measure {
    f();
    Measure::of((0..size.repetitions).map(|_| f()).collect())
}

fn env_rate(steps: usize, heuristic: bool) -> f64 {
    let tasks = TaskSpec::defaults();
    let mut envs: Vec<LunarLander> = tasks
        .iter()
        .map(|t| LunarLander::new(t.clone()).expect("default tasks are valid"))
        .collect();
    let mut actions = NumpyRng::from_seed(1);
    let start = Instant::now();
    let (mut done, mut episode) = (0, 0u64);
    while done < steps {
        let task = episode as usize % tasks.len();
        let env = &mut envs[task];
        let mut obs = env.reset(episode);
        for _ in 0..tasks[task].max_episode_steps {
            let a = if heuristic {
                heuristic_action(&obs)
            } else {
                (actions.random() * NUM_ACTIONS as f64) as usize
            };
            let step = env.step(a).expect("valid action");
            obs = step.obs;
            done += 1;
            if step.terminated() || done >= steps {
                break;
            }
        }
        episode += 1;
    }
    steps as f64 / start.elapsed().as_secs_f64()
}

fn filled_buffer() -> ReplayBuffer {
    let mut rng = Pcg32::seed_from_u64(0);
    let mut buffer = ReplayBuffer::new(100_000).expect("capacity > 0");
    for i in 0..100_000 {
        let obs: [f32; 8] = std::array::from_fn(|_| rng.random_range(-1.0..1.0));
        let t = Transition {
            obs,
            action: rng.random_range(0..4),
            reward: rng.random_range(-10.0..10.0),
            next_obs: obs,
            terminated: i % 50 == 0,
            task: i % 3,
        };
        buffer.push(&t).expect("task < 256");
    }
    buffer
}

fn configs() -> [(&'static str, AgentConfig); 3] {
    [
        (
            "independent_dqn",
            AgentConfig::IndependentDqn(IndependentDqnConfig::default()),
        ),
        (
            "shared_dqn",
            AgentConfig::SharedDqn(SharedDqnConfig::default()),
        ),
        ("brc", AgentConfig::Brc(BrcConfig::default())),
    ]
}

/// Runs every measurement (single-threaded; the caller sets candle's thread count).
pub fn run_bench(size: &BenchSize) -> Result<BenchReport, TrainError> {
    let env = EnvBench {
        steps_per_s: repeat(size, || env_rate(size.env_steps, false)),
        heuristic_steps_per_s: repeat(size, || env_rate(size.env_steps, true)),
    };
    let buffer = filled_buffer();
    let mut rng = Pcg32::seed_from_u64(1);
    let mut batch = Batch::with_capacity(64);
    let replay_sample_us = repeat(size, || {
        let start = Instant::now();
        for _ in 0..1000 {
            buffer
                .sample_uniform(&mut rng, &mut batch, 64)
                .expect("buffer is full");
        }
        start.elapsed().as_secs_f64() * 1e3
    });

    let ctx = AgentContext {
        task_names: TaskSpec::defaults().into_iter().map(|t| t.name).collect(),
        gamma: 0.99,
        exploration: Exploration {
            start: 0.0,
            end: 0.0,
            decay: 1.0,
        },
        target_update_episodes: 10,
        min_replay: 64,
        total_episodes: 1500,
        seed: 0,
        device: brc_nn::Device::Cpu,
    };
    let mut agents = BTreeMap::new();
    let mut e2e = BTreeMap::new();
    for (name, config) in configs() {
        let mut agent = build_agent(&config, &ctx)?;
        let updates = if name == "brc" {
            size.brc_updates
        } else {
            10 * size.brc_updates
        };
        let mut failure = None;
        let update_us = repeat(size, || {
            let start = Instant::now();
            for _ in 0..updates {
                let sampled = match agent.replay_source(0) {
                    ReplaySource::Uniform => buffer.sample_uniform(&mut rng, &mut batch, 64),
                    ReplaySource::Task(t) => buffer.sample_task(&mut rng, &mut batch, 64, t),
                };
                if let Err(e) = sampled
                    .map_err(TrainError::from)
                    .and_then(|_| agent.update(&batch).map(|_| ()).map_err(TrainError::from))
                {
                    failure.get_or_insert(e);
                }
            }
            start.elapsed().as_secs_f64() * 1e6 / updates as f64
        });
        let obs = [0.1f32; 8];
        let act_us = repeat(size, || {
            let start = Instant::now();
            for _ in 0..1000 {
                if let Err(e) = agent.greedy_action(&obs, 1) {
                    failure.get_or_insert(e.into());
                }
            }
            start.elapsed().as_secs_f64() * 1e3
        });
        if let Some(e) = failure {
            return Err(e);
        }
        agents.insert(
            name.to_string(),
            AgentBench {
                update_us,
                act_us,
                parameters: agent.num_params(),
            },
        );
        e2e.insert(name.to_string(), e2e_slice(name, size)?);
    }
    Ok(BenchReport {
        env,
        replay_sample_us,
        agents,
        e2e,
    })
}

/// A short training run of the agent's shipped defaults with updates from the 65th step.
fn e2e_slice(kind: &str, size: &BenchSize) -> Result<E2eBench, TrainError> {
    let text = format!(
        "[run]\nname = \"bench\"\n[agent]\nkind = \"{kind}\"\n[training]\n\
         episodes_per_task = {}\nmin_replay = 64\n[evaluation]\ninterval_episodes = 1000000\n\
         final_episodes = 1\ngradient_conflict_interval = 0\n[checkpoints]\n\
         interval_episodes = 1000000\nsave_replay = false\n",
        size.e2e_episodes_per_task
    );
    let config = parse_config(&text, "bench", &[])?;
    let dir = std::env::temp_dir().join(format!("brc-bench-{}-{kind}", std::process::id()));
    let mut rates = Vec::new();
    for _ in 0..size.repetitions.min(3) {
        let opts = TrainOptions {
            run_dir: dir.clone(),
            force: true,
            resume: false,
        };
        let summary = train(&config, &opts, &mut ())?;
        rates.push((
            summary.env_steps as f64 / summary.wall_seconds,
            summary.updates as f64 / summary.wall_seconds,
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(E2eBench {
        steps_per_s: Measure::of(rates.iter().map(|r| r.0).collect()),
        updates_per_s: Measure::of(rates.iter().map(|r| r.1).collect()),
    })
}

//! `brc bench`: the numbers users compare — env steps, replay sampling, agent updates and
//! actions, and short end-to-end training slices — one thread each, median of repetitions.

use std::collections::BTreeMap;
use std::time::Instant;

use brc_agents::{
    build_agent, AgentConfig, AgentContext, BrcConfig, Exploration, GradientMethod,
    IndependentDqnConfig, ReplaySource, SharedDqnConfig, VarShareConfig,
};
use brc_buffer::{Batch, ReplayBuffer, Transition};
use brc_envs::rng::NumpyRng;
use brc_envs::{heuristic_action, Env, LunarLander, TaskSpec, NUM_ACTIONS};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg32;
use serde::Serialize;

use crate::error::TrainError;
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
    /// One update, µs: batch 64, or `rows` for the balanced and per-task cases.
    pub update_us: Measure,
    /// One batch-1 greedy action, µs.
    pub act_us: Measure,
    /// Trainable parameters.
    pub parameters: usize,
    /// Rows of the measured update's batch.
    pub rows: usize,
    /// BRC: floating-point operations of one update (forward on s and s′ with the online
    /// network, s′ with the target, backward ≈ two forwards) and the rate the median reaches,
    /// GFLOP/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflop_per_s: Option<f64>,
}

/// The CPU and the matrix-product kernel the measurements ran on.
#[derive(Debug, Clone, Serialize)]
pub struct CpuInfo {
    /// `model name` from /proc/cpuinfo (or "unknown").
    pub model: String,
    /// The `gemm` kernel family in use ([`brc_nn::kernels::matmul_kernel`]).
    pub matmul_kernel: String,
}

impl CpuInfo {
    /// This machine.
    pub fn detect() -> Self {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            model,
            matmul_kernel: brc_nn::kernels::matmul_kernel().into(),
        }
    }
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
    /// Where it was measured.
    pub cpu: CpuInfo,
    /// Compute threads of the pool it ran in (`brc bench --threads`; 1 by default).
    pub threads: usize,
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

/// What one agent measurement updates on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum UpdateKind {
    /// `update` on 64 rows from the agent's replay source.
    Plain,
    /// `update` on 3 × 64 rows, 64 from each task (balanced sampling: one mean loss, or the
    /// agent's gradient surgery).
    Balanced,
    /// `task_gradients` on 3 × 64 rows: the three task losses' separate gradients.
    TaskGradients,
}

/// The tuned BRC of configs/brc_tuned.toml with one critic (changes 1–3: 101 atoms on ±20,
/// scaled rewards, Polyak target). The case keeps its name so that its timings stay comparable
/// with the PyTorch reference's `brc_tuned`; today's config is `brc_tuned_critics2`.
fn brc_tuned() -> BrcConfig {
    BrcConfig {
        num_atoms: 101,
        v_min: -20.0,
        v_max: 20.0,
        reward_scale: 0.03,
        target_tau: 0.005,
        ..BrcConfig::default()
    }
}

/// The measured agents: name, config, what an update is, whether to run a training slice.
fn cases() -> Vec<(&'static str, AgentConfig, UpdateKind, bool)> {
    use UpdateKind::*;
    let brc = || AgentConfig::Brc(BrcConfig::default());
    vec![
        (
            "independent_dqn",
            AgentConfig::IndependentDqn(IndependentDqnConfig::default()),
            Plain,
            true,
        ),
        (
            "shared_dqn",
            AgentConfig::SharedDqn(SharedDqnConfig::default()),
            Plain,
            true,
        ),
        ("brc", brc(), Plain, true),
        ("brc_tuned", AgentConfig::Brc(brc_tuned()), Plain, false),
        // The 2-critic ensemble, configs/brc_tuned.toml's change 4: about twice the update.
        (
            "brc_tuned_critics2",
            AgentConfig::Brc(BrcConfig {
                critics: 2,
                ..brc_tuned()
            }),
            Plain,
            false,
        ),
        // VarShare on the same batches as `brc` / `brc_tuned` / `shared_dqn` (each on its CPU
        // path: ResidualBroNetCpu, ResidualMlpCpu).
        (
            "brc_varshare",
            AgentConfig::Brc(BrcConfig {
                varshare: Some(VarShareConfig::default()),
                ..BrcConfig::default()
            }),
            Plain,
            false,
        ),
        (
            "brc_tuned_varshare",
            AgentConfig::Brc(BrcConfig {
                varshare: Some(VarShareConfig::default()),
                ..brc_tuned()
            }),
            Plain,
            false,
        ),
        (
            "shared_dqn_varshare",
            AgentConfig::SharedDqn(SharedDqnConfig {
                varshare: Some(VarShareConfig::default()),
                ..SharedDqnConfig::default()
            }),
            Plain,
            false,
        ),
        ("brc_balanced", brc(), Balanced, false),
        ("brc_task_gradients", brc(), TaskGradients, false),
        (
            "brc_pcgrad",
            AgentConfig::Brc(BrcConfig {
                gradient: GradientMethod::Pcgrad,
                ..BrcConfig::default()
            }),
            Balanced,
            false,
        ),
        (
            "brc_cagrad",
            AgentConfig::Brc(BrcConfig {
                gradient: GradientMethod::Cagrad,
                ..BrcConfig::default()
            }),
            Balanced,
            false,
        ),
        (
            "shared_dqn_balanced",
            AgentConfig::SharedDqn(SharedDqnConfig::default()),
            Balanced,
            false,
        ),
        (
            "shared_dqn_pcgrad",
            AgentConfig::SharedDqn(SharedDqnConfig {
                gradient: GradientMethod::Pcgrad,
                ..SharedDqnConfig::default()
            }),
            Balanced,
            false,
        ),
        (
            "shared_dqn_cagrad",
            AgentConfig::SharedDqn(SharedDqnConfig {
                gradient: GradientMethod::Cagrad,
                ..SharedDqnConfig::default()
            }),
            Balanced,
            false,
        ),
    ]
}

/// Floating-point operations of one BroNet update on `rows` rows: forward passes on s and s′
/// (online) and s′ (target), and a backward pass (≈ two forwards) on s: 10 × rows × MACs.
fn brc_update_flops(config: &BrcConfig, rows: usize) -> f64 {
    let (h, d_in) = (config.hidden_dim, 8 + config.embedding_dim);
    let out = NUM_ACTIONS * config.num_atoms;
    let macs = d_in * h + config.num_blocks * 2 * h * h + h * out;
    10.0 * (rows * macs * config.critics) as f64
}

/// Fills `batch` with 64 transitions from each task in turn.
fn balanced_batch(buffer: &ReplayBuffer, rng: &mut Pcg32, batch: &mut Batch, parts: &mut [Batch]) {
    for (t, part) in parts.iter_mut().enumerate() {
        buffer
            .sample_task(rng, part, 64, t)
            .expect("every task has transitions");
    }
    *batch = Batch::with_capacity(64 * parts.len());
    for p in parts.iter() {
        batch.obs.extend_from_slice(&p.obs);
        batch.actions.extend_from_slice(&p.actions);
        batch.rewards.extend_from_slice(&p.rewards);
        batch.next_obs.extend_from_slice(&p.next_obs);
        batch.terminated.extend_from_slice(&p.terminated);
        batch.tasks.extend_from_slice(&p.tasks);
    }
}

/// The agent cases `brc bench` measures, in order.
pub fn case_names() -> Vec<&'static str> {
    cases().into_iter().map(|(name, ..)| name).collect()
}

/// Runs every measurement in the current rayon pool (one thread unless the caller installs a
/// larger pool; the caller sets candle's thread count).
pub fn run_bench(size: &BenchSize) -> Result<BenchReport, TrainError> {
    run_bench_cases(size, None)
}

/// [`run_bench`] with only the agent cases named in `only` (all when `None`; names from
/// [`case_names`], others are ignored).
pub fn run_bench_cases(
    size: &BenchSize,
    only: Option<&[String]>,
) -> Result<BenchReport, TrainError> {
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
    let mut parts = vec![Batch::with_capacity(64); 3];
    for (name, config, kind, slice) in cases() {
        if only.is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        let mut agent = build_agent(&config, &ctx)?;
        let updates = match &config {
            AgentConfig::Brc(_) => size.brc_updates,
            _ => 10 * size.brc_updates,
        };
        let mut failure = None;
        let update_us = repeat(size, || {
            let start = Instant::now();
            for _ in 0..updates {
                let sampled = match (kind, agent.replay_source(0)) {
                    (UpdateKind::Plain, ReplaySource::Uniform) => {
                        buffer.sample_uniform(&mut rng, &mut batch, 64)
                    }
                    (UpdateKind::Plain, ReplaySource::Task(t)) => {
                        buffer.sample_task(&mut rng, &mut batch, 64, t)
                    }
                    _ => {
                        balanced_batch(&buffer, &mut rng, &mut batch, &mut parts);
                        Ok(())
                    }
                };
                let result = sampled.map_err(TrainError::from).and_then(|_| {
                    if kind == UpdateKind::TaskGradients {
                        agent.task_gradients(&parts).map(|_| ())
                    } else {
                        agent.update(&batch).map(|_| ())
                    }
                    .map_err(TrainError::from)
                });
                if let Err(e) = result {
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
        let rows = if kind == UpdateKind::Plain { 64 } else { 192 };
        let gflop_per_s = match (&config, kind) {
            (AgentConfig::Brc(c), UpdateKind::Plain | UpdateKind::Balanced) => {
                Some(brc_update_flops(c, rows) / update_us.median / 1e3)
            }
            _ => None,
        };
        agents.insert(
            name.to_string(),
            AgentBench {
                update_us,
                act_us,
                parameters: agent.num_params(),
                rows,
                gflop_per_s,
            },
        );
        if slice {
            e2e.insert(name.to_string(), e2e_slice(name, size)?);
        }
    }
    Ok(BenchReport {
        cpu: CpuInfo::detect(),
        threads: rayon::current_num_threads(),
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

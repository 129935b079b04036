//! Per-agent cost of one update at batch 64 and of one batch-1 greedy action, one thread.
//!
//! `cargo bench -p brc-agents --bench agent_step` (release). Prints the median of 7
//! repetitions after a warm-up, in microseconds.

use std::time::Instant;

use brc_agents::{
    build_agent, AgentConfig, AgentContext, BrcConfig, Exploration, IndependentDqnConfig,
    ReplaySource, SharedDqnConfig,
};
use brc_buffer::{Batch, ReplayBuffer, Transition};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg32;

// The same allocator as the `brc` binary (see its main.rs); `--features system-alloc` measures
// glibc's malloc instead, for comparison.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_per_call(reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..reps / 5 + 1 {
        f();
    }
    let runs = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / reps as f64
        })
        .collect();
    median(runs)
}

fn main() {
    // The `brc` binary's settings (see its main.rs): one compute thread, no candle reads of
    // /proc/cpuinfo per op, and mimalloc keeping freed memory committed.
    #[cfg(not(feature = "system-alloc"))]
    // SAFETY: sets a plain integer option of the allocator (15 = mi_option_purge_delay).
    unsafe {
        libmimalloc_sys::mi_option_set(15, -1)
    };
    for var in ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, "1");
        }
    }
    let ctx = AgentContext {
        task_names: ["standard", "windy", "heavy"].map(String::from).to_vec(),
        gamma: 0.99,
        exploration: Exploration {
            start: 0.0,
            end: 0.0,
            decay: 1.0,
        },
        target_update_episodes: 10,
        min_replay: 64,
        seed: 0,
        device: brc_nn::Device::Cpu,
    };
    let mut rng = Pcg32::seed_from_u64(0);
    let mut buffer = ReplayBuffer::new(10_000).unwrap();
    for i in 0..10_000 {
        let obs: [f32; 8] = std::array::from_fn(|_| rng.random_range(-1.0..1.0));
        buffer
            .push(&Transition {
                obs,
                action: rng.random_range(0..4),
                reward: rng.random_range(-10.0..10.0),
                next_obs: obs,
                terminated: i % 50 == 0,
                task: i % 3,
            })
            .unwrap();
    }
    println!("{:<16} {:>12} {:>12}", "agent", "update µs", "act µs");
    let configs = [
        AgentConfig::IndependentDqn(IndependentDqnConfig::default()),
        AgentConfig::SharedDqn(SharedDqnConfig::default()),
        AgentConfig::Brc(BrcConfig::default()),
    ];
    // `cargo bench -p brc-agents --bench agent_step -- brc` measures only the matching agents.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for config in configs {
        let name = config.kind().name();
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let mut agent = build_agent(&config, &ctx).unwrap();
        let mut batch = Batch::with_capacity(64);
        let reps = if matches!(config, AgentConfig::Brc(_)) {
            30
        } else {
            300
        };
        let update = time_per_call(reps, || {
            match agent.replay_source(0) {
                ReplaySource::Uniform => buffer.sample_uniform(&mut rng, &mut batch, 64).unwrap(),
                ReplaySource::Task(t) => buffer.sample_task(&mut rng, &mut batch, 64, t).unwrap(),
            }
            agent.update(&batch).unwrap();
        });
        let obs = [0.1f32; 8];
        let act = time_per_call(2000, || {
            std::hint::black_box(agent.greedy_action(&obs, 1).unwrap());
        });
        println!("{:<16} {update:>12.0} {act:>12.1}", agent.kind().name());
    }
}

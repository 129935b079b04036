//! VarShare in BRC and Shared DQN: parameter counts, the penalty's scaling, learning,
//! exact save/load (μ, ρ, their moments, the noise stream), acting on sampled weights,
//! evaluation on the means or θ alone, and the `l2` / no-embedding variants.

use brc_agents::{
    build_agent, AgentConfig, AgentContext, BrcConfig, Exploration, SharedDqnConfig, VarShareConfig,
};
use brc_buffer::{Batch, ReplayBuffer, Transition};
use brc_nn::ResidualMode;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg32;

fn ctx(seed: u64, epsilon: f64) -> AgentContext {
    AgentContext {
        task_names: ["standard", "windy", "heavy"].map(String::from).to_vec(),
        gamma: 0.99,
        exploration: Exploration {
            start: epsilon,
            end: 0.01,
            decay: 0.995,
        },
        target_update_episodes: 10,
        min_replay: 100,
        total_episodes: 1500,
        seed,
        device: brc_nn::Device::Cpu,
    }
}

fn small_brc(varshare: Option<VarShareConfig>) -> AgentConfig {
    AgentConfig::Brc(BrcConfig {
        hidden_dim: 16,
        num_blocks: 1,
        embedding_dim: 4,
        num_atoms: 11,
        varshare,
        ..BrcConfig::default()
    })
}

fn shared(varshare: Option<VarShareConfig>) -> AgentConfig {
    AgentConfig::SharedDqn(SharedDqnConfig {
        varshare,
        ..SharedDqnConfig::default()
    })
}

fn vs(mode: ResidualMode) -> VarShareConfig {
    VarShareConfig {
        mode,
        beta: 0.05,
        ..VarShareConfig::default()
    }
}

/// Both agents with VarShare, and their plain counterparts.
fn pairs() -> Vec<(AgentConfig, AgentConfig)> {
    let v = Some(vs(ResidualMode::Variational));
    vec![
        (small_brc(v.clone()), small_brc(None)),
        (shared(v), shared(None)),
    ]
}

fn random_obs(rng: &mut Pcg32) -> [f32; 8] {
    std::array::from_fn(|_| rng.random_range(-1.0..1.0))
}

fn batch(seed: u64) -> Batch {
    let mut rng = Pcg32::seed_from_u64(seed);
    let mut buffer = ReplayBuffer::new(1000).unwrap();
    for i in 0..300 {
        let terminated = i % 10 == 0;
        buffer
            .push(&Transition {
                obs: random_obs(&mut rng),
                action: rng.random_range(0..4),
                reward: if terminated {
                    [-100.0, 100.0][i % 2]
                } else {
                    rng.random_range(-5.0..5.0)
                },
                next_obs: random_obs(&mut rng),
                terminated,
                task: i % 3,
            })
            .unwrap();
    }
    let mut b = Batch::new();
    buffer.sample_uniform(&mut rng, &mut b, 64).unwrap();
    b
}

#[test]
fn parameter_counts_split_shared_and_per_task_adapters() {
    for (with, without) in pairs() {
        let a = build_agent(&with, &ctx(0, 0.0)).unwrap();
        let plain = build_agent(&without, &ctx(0, 0.0)).unwrap();
        let c = a.parameter_counts();
        assert_eq!(c.shared, plain.num_params(), "{}", a.kind());
        assert_eq!(c.total, c.shared + 3 * c.adapter_per_task);
        assert_eq!(c.total, a.num_params());
        let p = plain.parameter_counts();
        assert_eq!((p.adapter_per_task, p.total), (0, plain.num_params()));
    }
    // The MLP by hand: μ and ρ of 16×256 + 256×128 + 128×4 weights per task.
    let a = build_agent(&shared(Some(vs(ResidualMode::Variational))), &ctx(0, 0.0)).unwrap();
    assert_eq!(a.parameter_counts().adapter_per_task, 2 * 37_376);
    let l2 = build_agent(&shared(Some(vs(ResidualMode::L2))), &ctx(0, 0.0)).unwrap();
    assert_eq!(l2.parameter_counts().adapter_per_task, 37_376);
    let blind = VarShareConfig {
        keep_embedding: false,
        ..vs(ResidualMode::Variational)
    };
    let b = build_agent(&shared(Some(blind)), &ctx(0, 0.0)).unwrap();
    // No 3×8 embedding, and fc1 sees 8 inputs instead of 16.
    assert_eq!(b.parameter_counts().shared, 35_716);
    assert_eq!(
        b.parameter_counts().adapter_per_task,
        2 * (37_376 - 8 * 256)
    );
}

#[test]
fn the_penalty_at_the_start_is_beta_times_the_closed_form_kl_per_weight() {
    for (with, _) in pairs() {
        let a = build_agent(&with, &ctx(1, 0.0)).unwrap();
        let d = a.varshare_diagnostics().unwrap().expect("a VarShare agent");
        // μ = 0, σ = σ_init everywhere: every weight's KL is ln(σp/σ0) + σ0²/(2σp²) − ½.
        let (sp, s0) = (0.05f64, 1e-3f64);
        let per_weight = (sp / s0).ln() + s0 * s0 / (2.0 * sp * sp) - 0.5;
        assert!(
            (d.penalty - 0.05 * per_weight).abs() < 1e-5,
            "{}",
            d.penalty
        );
        let weights: usize = d.layers.iter().map(|l| l.weights).sum();
        for (task, kl) in &d.kl {
            assert!(
                (kl / weights as f64 - per_weight).abs() < 1e-4,
                "{task}: {kl}"
            );
            assert!((d.mean_sigma[task] - s0).abs() < 1e-8);
            assert_eq!(d.kept[task], 0, "μ starts at 0");
        }
    }
    let l2 = build_agent(&small_brc(Some(vs(ResidualMode::L2))), &ctx(1, 0.0)).unwrap();
    let d = l2.varshare_diagnostics().unwrap().unwrap();
    assert_eq!(d.penalty, 0.0);
    assert!(d.mean_sigma.is_empty());
    assert!(build_agent(&small_brc(None), &ctx(1, 0.0))
        .unwrap()
        .varshare_diagnostics()
        .unwrap()
        .is_none());
}

#[test]
fn varshare_agents_learn_and_their_residuals_move() {
    let b = batch(2);
    let obs = [0.1, 0.5, 0.0, -0.2, 0.05, 0.0, 0.0, 0.0];
    let mut configs: Vec<AgentConfig> = pairs().into_iter().map(|(w, _)| w).collect();
    configs.push(small_brc(Some(vs(ResidualMode::L2))));
    for config in configs {
        let mut agent = build_agent(&config, &ctx(3, 0.0)).unwrap();
        let before = agent.q_values(&obs, 1).unwrap();
        let first = agent.update(&b).unwrap();
        assert!(first.loss.is_finite() && first.grad_norm > 0.0);
        let mut last = first;
        for _ in 0..60 {
            last = agent.update(&b).unwrap();
        }
        assert!(
            last.loss < 0.9 * first.loss,
            "{}: {} → {}",
            agent.kind(),
            first.loss,
            last.loss
        );
        assert_ne!(before, agent.q_values(&obs, 1).unwrap());
        let d = agent.varshare_diagnostics().unwrap().unwrap();
        for task in ["standard", "windy", "heavy"] {
            assert!(d.kept[task] > 0, "{}: task {task}'s μ moved", agent.kind());
        }
        // θ alone differs from the means once the residuals moved.
        let mean_q = agent.q_values(&obs, 1).unwrap();
        agent.set_shared_only(true).unwrap();
        let shared_q = agent.q_values(&obs, 1).unwrap();
        assert_ne!(mean_q, shared_q);
        agent.set_shared_only(false).unwrap();
        assert_eq!(mean_q, agent.q_values(&obs, 1).unwrap());
        // Pruning defaults to the config's threshold, at 0 it changes nothing, and pruning
        // every entry leaves θ alone.
        assert_eq!(agent.prune_residuals(None).unwrap(), 1e-3);
        let pruned_q = agent.q_values(&obs, 1).unwrap();
        assert_eq!(agent.prune_residuals(Some(0.0)).unwrap(), 0.0);
        assert_eq!(pruned_q, agent.q_values(&obs, 1).unwrap());
        agent.prune_residuals(Some(f64::INFINITY)).unwrap();
        assert_eq!(shared_q, agent.q_values(&obs, 1).unwrap());
        let d = agent.varshare_diagnostics().unwrap().unwrap();
        assert!(d.kept.values().all(|&k| k == 0), "{}", agent.kind());
    }
    let mut plain = build_agent(&small_brc(None), &ctx(3, 0.0)).unwrap();
    let e = plain.set_shared_only(true).unwrap_err().to_string();
    assert!(e.contains("no task residuals"), "{e}");
    let e = plain.prune_residuals(None).unwrap_err().to_string();
    assert!(e.contains("no task residuals to prune"), "{e}");
}

#[test]
fn save_then_load_is_exact_and_training_continues_identically() {
    let b = batch(5);
    let dir = tempfile::tempdir().unwrap();
    let obs = [0.3, 0.2, 0.1, 0.0, -0.1, 0.2, 1.0, 0.0];
    for (config, _) in pairs() {
        let mut agent = build_agent(&config, &ctx(7, 0.5)).unwrap();
        for _ in 0..3 {
            agent.update(&b).unwrap();
            agent.end_episode(0).unwrap();
        }
        let path = dir.path().join(format!("{}.safetensors", agent.kind()));
        agent.save(&path).unwrap();
        // Another seed: the checkpoint brings the noise stream's seed along.
        let mut restored = build_agent(&config, &ctx(99, 1.0)).unwrap();
        restored.load(&path).unwrap();
        for task in 0..3 {
            assert_eq!(
                agent.q_values(&obs, task).unwrap(),
                restored.q_values(&obs, task).unwrap()
            );
        }
        assert_eq!(
            agent.varshare_diagnostics().unwrap(),
            restored.varshare_diagnostics().unwrap()
        );
        // μ, ρ, their moments and the noise stream came back: the next steps are identical.
        for _ in 0..2 {
            assert_eq!(agent.update(&b).unwrap(), restored.update(&b).unwrap());
        }
        let a: Vec<_> = (0..30).map(|i| agent.act(&obs, i % 3).unwrap()).collect();
        let r: Vec<_> = (0..30)
            .map(|i| restored.act(&obs, i % 3).unwrap())
            .collect();
        assert_eq!(a, r);
        // A plain agent's checkpoint is not a VarShare agent's.
        let plain = build_agent(&pairs_plain(&config), &ctx(7, 0.5)).unwrap();
        let plain_path = dir.path().join("plain.safetensors");
        plain.save(&plain_path).unwrap();
        let e = restored.load(&plain_path).unwrap_err().to_string();
        assert!(e.contains("agent config"), "{e}");
    }
}

fn pairs_plain(config: &AgentConfig) -> AgentConfig {
    match config {
        AgentConfig::Brc(_) => small_brc(None),
        _ => shared(None),
    }
}

#[test]
fn same_seed_same_updates() {
    let b = batch(6);
    for (config, _) in pairs() {
        let run = |seed| {
            let mut a = build_agent(&config, &ctx(seed, 0.3)).unwrap();
            let stats: Vec<_> = (0..3).map(|_| a.update(&b).unwrap()).collect();
            let acts: Vec<_> = (0..20)
                .map(|i| a.act(&[0.1 * i as f32; 8], i % 3).unwrap())
                .collect();
            (stats, acts)
        };
        assert_eq!(run(4), run(4));
        assert_ne!(
            run(4).0,
            run(5).0,
            "another seed, another initialisation and noise"
        );
    }
}

#[test]
fn acting_samples_the_residuals_and_evaluation_uses_the_means() {
    let b = batch(8);
    let mut rng = Pcg32::seed_from_u64(1);
    let observations: Vec<[f32; 8]> = (0..200).map(|_| random_obs(&mut rng)).collect();
    for (sigma_init, expect_differences) in [(1e-8, false), (0.5, true)] {
        let config = small_brc(Some(VarShareConfig {
            sigma_init,
            ..vs(ResidualMode::Variational)
        }));
        let mut agent = build_agent(&config, &ctx(2, 0.0)).unwrap();
        for _ in 0..5 {
            agent.update(&b).unwrap();
        }
        let differ = observations
            .iter()
            .enumerate()
            .filter(|(i, o)| {
                let task = i % 3;
                agent.act(o, task).unwrap() != agent.greedy_action(o, task).unwrap()
            })
            .count();
        assert_eq!(
            differ > 0,
            expect_differences,
            "σ_init {sigma_init}: {differ} of 200 acting choices differ from the greedy ones"
        );
    }
}

#[test]
fn the_residuals_take_no_weight_decay() {
    // With zero learning signal only the decay and the penalty could move μ; β = 0 and a
    // huge decay leave μ at exactly 0 while θ shrinks.
    let config = AgentConfig::Brc(BrcConfig {
        hidden_dim: 16,
        num_blocks: 1,
        embedding_dim: 4,
        num_atoms: 11,
        weight_decay: 0.5,
        lr: 1e-2,
        varshare: Some(VarShareConfig {
            beta: 0.0,
            ..vs(ResidualMode::L2)
        }),
        ..BrcConfig::default()
    });
    let mut agent = build_agent(&config, &ctx(0, 0.0)).unwrap();
    let mut b = batch(3);
    // Only task 0's rows: tasks 1 and 2 get no gradient at all.
    let keep: Vec<usize> = (0..b.len()).filter(|&i| b.tasks[i] == 0).collect();
    let mut only0 = Batch::new();
    for &i in &keep {
        only0.obs.extend_from_slice(&b.obs[i * 8..(i + 1) * 8]);
        only0
            .next_obs
            .extend_from_slice(&b.next_obs[i * 8..(i + 1) * 8]);
        only0.actions.push(b.actions[i]);
        only0.rewards.push(b.rewards[i]);
        only0.terminated.push(b.terminated[i]);
        only0.tasks.push(0);
    }
    b = only0;
    for _ in 0..5 {
        agent.update(&b).unwrap();
    }
    let d = agent.varshare_diagnostics().unwrap().unwrap();
    assert!(d.kept["standard"] > 0);
    assert_eq!(d.kept["windy"], 0, "no gradient, no decay: μ stays 0");
    assert_eq!(d.kept["heavy"], 0);
}

#[test]
fn gradient_conflict_probes_leave_out_the_task_residuals() {
    let b = batch(9);
    let split = |t: u32| {
        let mut out = Batch::new();
        for i in (0..b.len()).filter(|&i| b.tasks[i] == t) {
            out.obs.extend_from_slice(&b.obs[i * 8..(i + 1) * 8]);
            out.next_obs
                .extend_from_slice(&b.next_obs[i * 8..(i + 1) * 8]);
            out.actions.push(b.actions[i]);
            out.rewards.push(b.rewards[i]);
            out.terminated.push(b.terminated[i]);
            out.tasks.push(t);
        }
        out
    };
    let probes: Vec<Batch> = (0..3).map(split).collect();
    for (with, without) in pairs() {
        let mut a = build_agent(&with, &ctx(0, 0.0)).unwrap();
        let g = a.task_gradients(&probes).unwrap().unwrap();
        // As long as the shared parameters: the residuals are left out.
        assert_eq!(g[0].len(), a.parameter_counts().shared);
        assert_eq!(
            g[0].len(),
            build_agent(&without, &ctx(0, 0.0)).unwrap().num_params()
        );
        assert!(g.iter().all(|t| t.iter().any(|v| *v != 0.0)));
    }
}

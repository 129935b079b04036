//! The design note's checks for every agent: creation and parameter counts, actions, learning
//! on a fixed batch, exact save/load, and clear errors for foreign checkpoints.

use brc_agents::{
    build_agent, export_weights, Agent, AgentConfig, AgentContext, BrcConfig, Exploration,
    IndependentDqnConfig, ReplaySource, SharedDqnConfig, NUM_ACTIONS,
};
use brc_buffer::{Batch, ReplayBuffer, Transition};
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

fn configs() -> Vec<(AgentConfig, usize)> {
    vec![
        (
            AgentConfig::IndependentDqn(IndependentDqnConfig::default()),
            107_148,
        ),
        (AgentConfig::SharedDqn(SharedDqnConfig::default()), 37_788),
        (AgentConfig::Brc(BrcConfig::default()), 459_820),
    ]
}

fn random_obs(rng: &mut Pcg32) -> [f32; 8] {
    std::array::from_fn(|i| {
        if i >= 6 {
            f32::from(u8::from(rng.random::<bool>()))
        } else {
            rng.random_range(-1.0..1.0)
        }
    })
}

/// A buffer of random transitions with terminal ±100 rewards mixed in.
fn buffer(seed: u64) -> ReplayBuffer {
    let mut rng = Pcg32::seed_from_u64(seed);
    let mut buffer = ReplayBuffer::new(1000).unwrap();
    for i in 0..600 {
        let terminated = i % 10 == 0;
        buffer
            .push(&Transition {
                obs: random_obs(&mut rng),
                action: rng.random_range(0..4),
                reward: if terminated {
                    if rng.random() {
                        100.0
                    } else {
                        -100.0
                    }
                } else {
                    rng.random_range(-5.0..5.0)
                },
                next_obs: random_obs(&mut rng),
                terminated,
                task: i % 3,
            })
            .unwrap();
    }
    buffer
}

fn batch_for(agent: &dyn Agent, buffer: &ReplayBuffer, task: usize, seed: u64) -> Batch {
    let mut rng = Pcg32::seed_from_u64(seed);
    let mut batch = Batch::new();
    match agent.replay_source(task) {
        ReplaySource::Uniform => buffer.sample_uniform(&mut rng, &mut batch, 64).unwrap(),
        ReplaySource::Task(t) => buffer.sample_task(&mut rng, &mut batch, 64, t).unwrap(),
    }
    batch
}

#[test]
fn creation_counts_and_actions() {
    let obs = [0.1, 0.5, 0.0, -0.2, 0.05, 0.0, 0.0, 0.0];
    for (config, params) in configs() {
        let mut agent = build_agent(&config, &ctx(0, 0.0)).unwrap();
        assert_eq!(agent.num_params(), params, "{}", agent.kind());
        for task in 0..3 {
            let q = agent.q_values(&obs, task).unwrap();
            assert!(q.iter().all(|v| v.is_finite()));
            let greedy = agent.greedy_action(&obs, task).unwrap();
            assert_eq!(greedy, brc_agents::argmax(&q));
            // ε = 0: acting is greedy.
            assert_eq!(agent.act(&obs, task).unwrap(), greedy);
        }
        assert!(agent.q_values(&obs, 3).is_err(), "task out of range");

        // ε = 1: uniformly random actions, all of them in range.
        let mut agent = build_agent(&config, &ctx(0, 1.0)).unwrap();
        let mut seen = [0; NUM_ACTIONS];
        for _ in 0..400 {
            seen[agent.act(&obs, 1).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{}: {seen:?}", agent.kind());
    }
}

#[test]
fn epsilon_decays_per_episode_and_per_task_for_independent() {
    for (config, _) in configs() {
        let mut agent = build_agent(&config, &ctx(0, 1.0)).unwrap();
        agent.end_episode(0).unwrap();
        assert!((agent.epsilon(0) - 0.995).abs() < 1e-12);
        let independent = matches!(config, AgentConfig::IndependentDqn(_));
        let expected_other = if independent { 1.0 } else { 0.995 };
        assert!((agent.epsilon(1) - expected_other).abs() < 1e-12);
    }
}

#[test]
fn updates_change_parameters_and_lower_the_loss_on_a_fixed_batch() {
    let buffer = buffer(1);
    let obs = [0.1, 0.5, 0.0, -0.2, 0.05, 0.0, 0.0, 0.0];
    for (config, _) in configs() {
        let mut agent = build_agent(&config, &ctx(3, 0.0)).unwrap();
        let batch = batch_for(agent.as_ref(), &buffer, 1, 2);
        let before = agent.q_values(&obs, 1).unwrap();
        let first = agent.update(&batch).unwrap();
        assert!(first.loss.is_finite() && first.grad_norm > 0.0 && first.mean_q.is_finite());
        assert_ne!(before, agent.q_values(&obs, 1).unwrap(), "{}", agent.kind());
        let mut last = first;
        for _ in 0..100 {
            last = agent.update(&batch).unwrap();
        }
        assert!(
            last.loss < 0.9 * first.loss,
            "{}: loss {} → {}",
            agent.kind(),
            first.loss,
            last.loss
        );
    }
}

#[test]
fn independent_learners_need_single_task_batches_and_train_only_their_task() {
    let buffer = buffer(4);
    let config = AgentConfig::IndependentDqn(IndependentDqnConfig::default());
    let mut agent = build_agent(&config, &ctx(0, 0.0)).unwrap();
    let mut mixed = Batch::new();
    buffer
        .sample_uniform(&mut Pcg32::seed_from_u64(0), &mut mixed, 64)
        .unwrap();
    assert!(agent.update(&mixed).is_err());
    let obs = [0.0; 8];
    let q0 = agent.q_values(&obs, 0).unwrap();
    let q2 = agent.q_values(&obs, 2).unwrap();
    let batch = batch_for(agent.as_ref(), &buffer, 2, 0);
    agent.update(&batch).unwrap();
    assert_eq!(q0, agent.q_values(&obs, 0).unwrap());
    assert_ne!(q2, agent.q_values(&obs, 2).unwrap());
}

#[test]
fn save_then_load_is_exact_and_training_continues_identically() {
    let buffer = buffer(5);
    let dir = tempfile::tempdir().unwrap();
    let obs = [0.3, 0.2, 0.1, 0.0, -0.1, 0.2, 1.0, 0.0];
    for (config, _) in configs() {
        let mut agent = build_agent(&config, &ctx(7, 0.5)).unwrap();
        let batch = batch_for(agent.as_ref(), &buffer, 0, 9);
        for _ in 0..3 {
            agent.update(&batch).unwrap();
            agent.end_episode(0).unwrap();
        }
        let path = dir.path().join(format!("{}.safetensors", agent.kind()));
        agent.save(&path).unwrap();

        let mut restored = build_agent(&config, &ctx(99, 1.0)).unwrap();
        restored.load(&path).unwrap();
        for task in 0..3 {
            assert_eq!(
                agent.q_values(&obs, task).unwrap(),
                restored.q_values(&obs, task).unwrap()
            );
            assert_eq!(agent.epsilon(task), restored.epsilon(task));
        }
        // Optimizer moments and RNG came back too: the next steps are identical.
        assert_eq!(
            agent.update(&batch).unwrap(),
            restored.update(&batch).unwrap()
        );
        let a: Vec<_> = (0..20).map(|_| agent.act(&obs, 0).unwrap()).collect();
        let b: Vec<_> = (0..20).map(|_| restored.act(&obs, 0).unwrap()).collect();
        assert_eq!(a, b);
    }
}

#[test]
fn foreign_or_corrupt_checkpoints_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let shared_path = dir.path().join("shared.safetensors");
    build_agent(
        &AgentConfig::SharedDqn(SharedDqnConfig::default()),
        &ctx(0, 1.0),
    )
    .unwrap()
    .save(&shared_path)
    .unwrap();
    let mut brc = build_agent(&AgentConfig::Brc(BrcConfig::default()), &ctx(0, 1.0)).unwrap();
    let e = brc.load(&shared_path).unwrap_err().to_string();
    assert!(
        e.contains("holds a shared_dqn agent, not a brc agent"),
        "{e}"
    );

    let brc21_path = dir.path().join("brc21.safetensors");
    let brc21 = AgentConfig::Brc(BrcConfig {
        num_atoms: 21,
        num_blocks: 2,
        ..Default::default()
    });
    build_agent(&brc21, &ctx(0, 1.0))
        .unwrap()
        .save(&brc21_path)
        .unwrap();
    let e = brc.load(&brc21_path).unwrap_err().to_string();
    assert!(e.contains("agent config"), "{e}");

    let missing = dir.path().join("missing.safetensors");
    let e = brc.load(&missing).unwrap_err().to_string();
    assert!(e.contains("cannot read"), "{e}");

    let corrupt = dir.path().join("corrupt.safetensors");
    let mut bytes = std::fs::read(&shared_path).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, bytes).unwrap();
    let mut shared = build_agent(
        &AgentConfig::SharedDqn(SharedDqnConfig::default()),
        &ctx(0, 1.0),
    )
    .unwrap();
    assert!(shared.load(&corrupt).is_err());
    std::fs::write(&corrupt, b"not a checkpoint").unwrap();
    let e = shared.load(&corrupt).unwrap_err().to_string();
    assert!(e.contains("not a safetensors file"), "{e}");
}

#[test]
fn shared_agents_report_per_task_gradients() {
    let buffer = buffer(6);
    for (config, params) in configs() {
        let mut agent = build_agent(&config, &ctx(0, 0.0)).unwrap();
        let batches: Vec<Batch> = (0..3)
            .map(|t| {
                let mut b = Batch::new();
                buffer
                    .sample_task(&mut Pcg32::seed_from_u64(t as u64), &mut b, 32, t)
                    .unwrap();
                b
            })
            .collect();
        match agent.task_gradients(&batches).unwrap() {
            None => assert!(matches!(config, AgentConfig::IndependentDqn(_))),
            Some(grads) => {
                assert_eq!(grads.len(), 3);
                for g in &grads {
                    assert_eq!(g.len(), params);
                    assert!(g.iter().any(|v| *v != 0.0));
                }
            }
        }
    }
}

#[test]
fn same_seed_same_agent() {
    let obs = [0.1; 8];
    for (config, _) in configs() {
        let a = build_agent(&config, &ctx(11, 0.0)).unwrap();
        let b = build_agent(&config, &ctx(11, 0.0)).unwrap();
        let c = build_agent(&config, &ctx(12, 0.0)).unwrap();
        assert_eq!(a.q_values(&obs, 0).unwrap(), b.q_values(&obs, 0).unwrap());
        assert_ne!(a.q_values(&obs, 0).unwrap(), c.q_values(&obs, 0).unwrap());
    }
}

#[test]
fn brc_reward_scale_is_a_change_of_units() {
    // Rewards ×0.1 on a support ×0.1: the same targets in atom space, so the same learning,
    // with Q-values reported in return units.
    let buffer = buffer(4);
    let obs = [0.1, 0.5, 0.0, -0.2, 0.05, 0.0, 0.0, 0.0];
    let plain = AgentConfig::Brc(BrcConfig::default());
    let scaled = AgentConfig::Brc(BrcConfig {
        reward_scale: 0.1,
        v_min: -10.0,
        v_max: 30.0,
        ..BrcConfig::default()
    });
    let mut a = build_agent(&plain, &ctx(5, 0.0)).unwrap();
    let mut b = build_agent(&scaled, &ctx(5, 0.0)).unwrap();
    let batch = batch_for(a.as_ref(), &buffer, 0, 6);
    for _ in 0..3 {
        let (sa, sb) = (a.update(&batch).unwrap(), b.update(&batch).unwrap());
        assert!((sa.loss - sb.loss).abs() < 1e-4, "{} {}", sa.loss, sb.loss);
        assert!(
            (sa.mean_q - sb.mean_q).abs() < 1e-2,
            "{} {}",
            sa.mean_q,
            sb.mean_q
        );
    }
    let (qa, qb) = (a.q_values(&obs, 2).unwrap(), b.q_values(&obs, 2).unwrap());
    for (x, y) in qa.iter().zip(&qb) {
        assert!((x - y).abs() < 1e-2, "{qa:?} {qb:?}");
    }
}

#[test]
fn brc_scalar_ablation_minimises_the_double_dqn_td_error() {
    // The non-categorical BroNet: one output per action instead of 51 atoms
    // (459,820 − 256·4·51 − 4·51 + 256·4 + 4 = 408,420 parameters), and its first loss is the
    // mean squared TD error computed here from its own Q-values (target = online at the start,
    // so the double-DQN target is r·s + γ(1 − done)·max Q(s′), all in reward-scaled units).
    let scale = 0.1;
    let config = AgentConfig::Brc(BrcConfig {
        categorical: false,
        reward_scale: scale,
        ..BrcConfig::default()
    });
    let mut agent = build_agent(&config, &ctx(11, 0.0)).unwrap();
    assert_eq!(agent.num_params(), 408_420);
    let batch = batch_for(agent.as_ref(), &buffer(12), 0, 13);
    let (mut squared, mut taken) = (0.0f64, 0.0f64);
    for i in 0..batch.len() {
        let row = |v: &[f32]| -> [f32; 8] { v[i * 8..(i + 1) * 8].try_into().unwrap() };
        let task = batch.tasks[i] as usize;
        let q = agent.q_values(&row(&batch.obs), task).unwrap();
        let next = agent.q_values(&row(&batch.next_obs), task).unwrap();
        let next_max = next.iter().cloned().fold(f32::MIN, f32::max);
        let q_taken = f64::from(q[batch.actions[i] as usize]);
        let target = f64::from(batch.rewards[i]) * scale
            + 0.99 * f64::from(1.0 - batch.terminated[i]) * f64::from(next_max) * scale;
        squared += (q_taken * scale - target).powi(2);
        taken += q_taken;
    }
    let n = batch.len() as f64;
    let stats = agent.update(&batch).unwrap();
    assert!(
        (f64::from(stats.loss) - squared / n).abs() < 1e-4 * (1.0 + squared / n),
        "{} vs {}",
        stats.loss,
        squared / n
    );
    assert!(
        (f64::from(stats.mean_q) - taken / n).abs() < 1e-3,
        "{}",
        stats.mean_q
    );
    // And it learns: the loss on the fixed batch falls.
    let first = stats.loss;
    let mut last = first;
    for _ in 0..30 {
        last = agent.update(&batch).unwrap().loss;
    }
    assert!(last < first, "{last} ≥ {first}");
    // A categorical checkpoint is not a scalar one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brc.safetensors");
    agent.save(&path).unwrap();
    let mut categorical =
        build_agent(&AgentConfig::Brc(BrcConfig::default()), &ctx(11, 0.0)).unwrap();
    assert!(categorical.load(&path).is_err());
}

#[test]
fn brc_polyak_targets_follow_every_update() {
    // Two agents alike but for the target rule: the first update is the same; with τ = 1 the
    // target has become the online network before the second, with hard copies it has not.
    let buffer = buffer(7);
    let hard = AgentConfig::Brc(BrcConfig::default());
    let soft = AgentConfig::Brc(BrcConfig {
        target_tau: 1.0,
        ..BrcConfig::default()
    });
    let mut a = build_agent(&hard, &ctx(8, 0.0)).unwrap();
    let mut b = build_agent(&soft, &ctx(8, 0.0)).unwrap();
    let batch = batch_for(a.as_ref(), &buffer, 0, 9);
    assert_eq!(
        a.update(&batch).unwrap().loss,
        b.update(&batch).unwrap().loss
    );
    assert_ne!(
        a.update(&batch).unwrap().loss,
        b.update(&batch).unwrap().loss
    );
    // Out-of-range τ is a config error.
    let bad = AgentConfig::Brc(BrcConfig {
        target_tau: 1.5,
        ..BrcConfig::default()
    });
    assert!(build_agent(&bad, &ctx(8, 0.0)).is_err());
}

#[test]
fn checkpoints_from_before_an_option_existed_still_load() {
    // A BRC checkpoint whose header config lacks the later options (as written by earlier
    // builds) loads into an agent that uses their defaults, and only into such an agent.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brc.safetensors");
    let agent = build_agent(&AgentConfig::Brc(BrcConfig::default()), &ctx(0, 1.0)).unwrap();
    agent.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
    let fields = config["agent"].as_object_mut().unwrap();
    for key in [
        "target_tau",
        "reward_scale",
        "unit_norm_embedding",
        "categorical",
        "lr_final_fraction",
    ] {
        assert!(fields.remove(key).is_some(), "{key}");
    }
    meta.insert("config".into(), config.to_string());
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let old = safetensors::serialize(tensors.tensors(), Some(meta)).unwrap();
    std::fs::write(&path, old).unwrap();

    let mut same = build_agent(&AgentConfig::Brc(BrcConfig::default()), &ctx(1, 1.0)).unwrap();
    same.load(&path).unwrap();
    let obs = [0.1, 0.5, 0.0, -0.2, 0.05, 0.0, 0.0, 0.0];
    assert_eq!(
        same.q_values(&obs, 0).unwrap(),
        agent.q_values(&obs, 0).unwrap()
    );
    let polyak = AgentConfig::Brc(BrcConfig {
        target_tau: 0.005,
        ..BrcConfig::default()
    });
    let e = build_agent(&polyak, &ctx(1, 1.0))
        .unwrap()
        .load(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("agent config"), "{e}");
}

#[test]
fn weights_only_exports_act_like_the_full_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = buffer(11);
    let obs = [0.1, 0.5, 0.0, -0.2, 0.05, 0.0, 0.0, 0.0];
    for (config, _) in configs() {
        let mut agent = build_agent(&config, &ctx(12, 0.0)).unwrap();
        for task in 0..3 {
            let batch = batch_for(agent.as_ref(), &buffer, task, 13);
            agent.update(&batch).unwrap();
        }
        let full = dir.path().join("full.safetensors");
        let weights = dir.path().join("weights.safetensors");
        agent.save(&full).unwrap();
        export_weights(&full, &weights).unwrap();
        let (a, b) = (
            std::fs::metadata(&full).unwrap().len(),
            std::fs::metadata(&weights).unwrap().len(),
        );
        assert!(b * 3 < a, "{}: {b} vs {a} bytes", agent.kind());
        let mut loaded = build_agent(&config, &ctx(99, 0.0)).unwrap();
        loaded.load(&weights).unwrap();
        for task in 0..3 {
            assert_eq!(
                loaded.q_values(&obs, task).unwrap(),
                agent.q_values(&obs, task).unwrap(),
                "{}",
                agent.kind()
            );
        }
        // It trains on from there (targets = online, fresh optimizer).
        let batch = batch_for(loaded.as_ref(), &buffer, 0, 14);
        assert!(loaded.update(&batch).unwrap().loss.is_finite());
    }
    let e = export_weights(&dir.path().join("nope"), &dir.path().join("x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read"), "{e}");
}

#[test]
fn brc_learning_rate_decays_with_the_runs_episodes() {
    // With lr_final_fraction = 0 the learning rate reaches 0 at the run's last episode: an
    // update then leaves the network as it is (AdamW's decay scales with lr too). Before
    // that, and with the constant default, the same update changes it. A checkpoint restores
    // the schedule from its episode count.
    let buffer = buffer(13);
    let obs = [0.1, 0.5, 0.0, -0.2, 0.05, 0.0, 0.0, 0.0];
    let decaying = AgentConfig::Brc(BrcConfig {
        lr_final_fraction: 0.0,
        ..BrcConfig::default()
    });
    let short = AgentContext {
        total_episodes: 3,
        ..ctx(14, 0.0)
    };
    let changes = |agent: &mut Box<dyn Agent>| {
        let before = agent.q_values(&obs, 0).unwrap();
        let batch = batch_for(agent.as_ref(), &buffer, 0, 15);
        agent.update(&batch).unwrap();
        agent.q_values(&obs, 0).unwrap() != before
    };
    let mut a = build_agent(&decaying, &short).unwrap();
    let mut constant = build_agent(&AgentConfig::Brc(BrcConfig::default()), &short).unwrap();
    for _ in 0..2 {
        a.end_episode(0).unwrap();
        constant.end_episode(0).unwrap();
    }
    assert!(changes(&mut a), "a third of the learning rate is left");
    a.end_episode(0).unwrap();
    constant.end_episode(0).unwrap();
    assert!(!changes(&mut a), "the learning rate has reached 0");
    assert!(
        changes(&mut constant),
        "the default keeps its learning rate"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brc.safetensors");
    a.save(&path).unwrap();
    let mut resumed = build_agent(&decaying, &short).unwrap();
    resumed.load(&path).unwrap();
    assert!(!changes(&mut resumed), "the schedule resumes at its end");

    let bad = AgentConfig::Brc(BrcConfig {
        lr_final_fraction: 1.5,
        ..BrcConfig::default()
    });
    let e = build_agent(&bad, &short).err().unwrap().to_string();
    assert!(e.contains("lr_final_fraction"), "{e}");
}

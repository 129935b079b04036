//! End-to-end on `configs/smoke.toml`: every artifact, determinism, refusal to overwrite.

use std::path::{Path, PathBuf};

use brc_train::{
    load_config, train, EpisodeRecord, EvalRecord, RunConfig, TrainError, TrainOptions,
};

fn smoke(overrides: &[&str]) -> RunConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    load_config(&path, &overrides).unwrap()
}

fn run(config: &RunConfig, dir: &Path) -> brc_train::Summary {
    let opts = TrainOptions {
        run_dir: dir.to_path_buf(),
        force: false,
        resume: false,
    };
    train(config, &opts, &mut ()).unwrap()
}

fn lines<T: serde::de::DeserializeOwned>(path: PathBuf) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn smoke_run_writes_every_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("smoke");
    let config = smoke(&[]);
    let summary = run(&config, &dir);

    let episodes: Vec<EpisodeRecord> = lines(dir.join("episodes.jsonl"));
    assert_eq!(episodes.len(), 6);
    // Round-robin over the tasks, time limit cut to 60 steps by the config.
    let tasks: Vec<usize> = episodes.iter().map(|e| e.task_id).collect();
    assert_eq!(tasks, [0, 1, 2, 0, 1, 2]);
    assert!(episodes.iter().all(|e| e.length <= 60));
    assert!(episodes.iter().all(|e| e.time_limited != e.terminated));
    assert_eq!(episodes.last().unwrap().env_steps, summary.env_steps);
    assert!(
        summary.updates > 0,
        "updates start once min_replay is reached"
    );
    assert!(episodes[0].mean_loss.is_none() && episodes[5].mean_loss.is_some());
    // ε decays per episode.
    assert!(episodes[1].epsilon < episodes[0].epsilon);

    let evals: Vec<EvalRecord> = lines(dir.join("evals.jsonl"));
    assert_eq!(
        evals.len(),
        2,
        "one periodic evaluation (after 3) and the final one"
    );
    assert!(!evals[0].is_final && evals[1].is_final);
    assert_eq!(evals[1].episodes, 2);
    assert_eq!(evals[1].average, summary.final_average);

    let conflict = std::fs::read_to_string(dir.join("conflict.jsonl")).unwrap();
    assert_eq!(
        conflict.lines().count(),
        2,
        "measured after episodes 3 and 6"
    );
    for name in ["ep3", "best", "final"] {
        assert!(dir
            .join("checkpoints")
            .join(name)
            .join("agent.safetensors")
            .is_file());
        assert!(dir
            .join("checkpoints")
            .join(name)
            .join("trainer.json")
            .is_file());
    }
    // The resolved config round-trips, and metrics.json follows the predecessor's schema.
    let resolved = brc_train::load_config(&dir.join("config.toml"), &[]).unwrap();
    assert_eq!(resolved, config);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["episodes"].as_array().unwrap().len(), 6);
    assert_eq!(metrics["total_env_steps"], summary.env_steps);
    assert!(metrics["eval_history"]["windy"].is_array());
}

#[test]
fn same_seed_same_metrics_other_seed_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let strip = |dir: &Path| -> Vec<serde_json::Value> {
        lines::<serde_json::Value>(dir.join("episodes.jsonl"))
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("wall_seconds");
                v
            })
            .collect()
    };
    let config = smoke(&[]);
    run(&config, &tmp.path().join("a"));
    run(&config, &tmp.path().join("b"));
    run(&smoke(&["run.seed=1"]), &tmp.path().join("c"));
    assert_eq!(strip(&tmp.path().join("a")), strip(&tmp.path().join("b")));
    assert_ne!(strip(&tmp.path().join("a")), strip(&tmp.path().join("c")));
    let evals = |d: &str| std::fs::read_to_string(tmp.path().join(d).join("evals.jsonl")).unwrap();
    assert_eq!(evals("a"), evals("b"));
}

#[test]
fn n_step_returns_train_deterministically_and_change_the_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let losses = |dir: &str| -> Vec<Option<f64>> {
        lines::<serde_json::Value>(tmp.path().join(dir).join("episodes.jsonl"))
            .iter()
            .map(|v| v["mean_loss"].as_f64())
            .collect()
    };
    run(&smoke(&["training.n_step=3"]), &tmp.path().join("a"));
    run(&smoke(&["training.n_step=3"]), &tmp.path().join("b"));
    run(&smoke(&[]), &tmp.path().join("one"));
    assert!(losses("a").iter().any(|l| l.is_some()), "it updates");
    assert_eq!(losses("a"), losses("b"));
    assert_ne!(
        losses("a"),
        losses("one"),
        "3-step targets are other targets"
    );
}

#[test]
fn an_existing_run_is_never_overwritten_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let config = smoke(&["training.episodes_per_task=1"]);
    run(&config, &dir);
    let before = std::fs::read(dir.join("summary.json")).unwrap();
    let opts = TrainOptions {
        run_dir: dir.clone(),
        force: false,
        resume: false,
    };
    let e = train(&config, &opts, &mut ()).unwrap_err();
    assert!(matches!(e, TrainError::RunExists(_)), "{e}");
    assert_eq!(std::fs::read(dir.join("summary.json")).unwrap(), before);
    let opts = TrainOptions {
        run_dir: dir.clone(),
        force: true,
        resume: false,
    };
    train(&config, &opts, &mut ()).unwrap();
}

#[test]
fn every_agent_trains_on_the_smoke_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in ["independent_dqn", "shared_dqn"] {
        let mut config = smoke(&["training.episodes_per_task=1"]);
        config.agent = serde_json::from_value(serde_json::json!({ "kind": kind })).unwrap();
        config.training.min_replay = 40;
        let summary = run(&config, &tmp.path().join(kind));
        assert_eq!(summary.agent, kind);
        assert!(summary.updates > 0, "{kind}");
    }
}

#[test]
fn resuming_from_a_checkpoint_reproduces_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke(&[]);
    let whole = tmp.path().join("whole");
    run(&config, &whole);

    // An "interrupted" run: everything after the ep3 checkpoint is lost or stale (a killed
    // run leaves a partial episodes.jsonl and no final checkpoint).
    let cut = tmp.path().join("cut");
    run(&config, &cut);
    std::fs::remove_dir_all(cut.join("checkpoints/final")).unwrap();
    std::fs::remove_file(cut.join("summary.json")).unwrap();
    let episodes = std::fs::read_to_string(cut.join("episodes.jsonl")).unwrap();
    let partial: String = episodes.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(
        cut.join("episodes.jsonl"),
        partial + "{\"episode\": 4, \"tor",
    )
    .unwrap();
    assert!(cut.join("checkpoints/ep3/replay.safetensors").is_file());

    let opts = TrainOptions {
        run_dir: cut.clone(),
        force: false,
        resume: true,
    };
    let summary = train(&config, &opts, &mut ()).unwrap();
    assert_eq!(summary.episodes, 6);
    let strip = |dir: &Path, file: &str| -> Vec<serde_json::Value> {
        lines::<serde_json::Value>(dir.join(file))
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("wall_seconds");
                v
            })
            .collect()
    };
    assert_eq!(
        strip(&whole, "episodes.jsonl"),
        strip(&cut, "episodes.jsonl")
    );
    assert_eq!(strip(&whole, "evals.jsonl"), strip(&cut, "evals.jsonl"));
    assert_eq!(
        strip(&whole, "conflict.jsonl"),
        strip(&cut, "conflict.jsonl")
    );
    assert!(cut.join("checkpoints/final/agent.safetensors").is_file());
    assert!(cut.join("checkpoints/best/agent.safetensors").is_file());
    // The clock continues from the checkpoint instead of restarting at zero.
    let resumed: Vec<EpisodeRecord> = lines(cut.join("episodes.jsonl"));
    let whole_eps: Vec<EpisodeRecord> = lines(whole.join("episodes.jsonl"));
    assert!(resumed[3].wall_seconds >= resumed[2].wall_seconds);
    assert_eq!(resumed.len(), whole_eps.len());

    // Nothing to resume from is a clear error.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("checkpoints")).unwrap();
    let opts = TrainOptions {
        run_dir: empty,
        force: false,
        resume: true,
    };
    let e = train(&config, &opts, &mut ()).unwrap_err();
    assert!(format!("{e:#}").contains("checkpoints"), "{e}");
}

#[test]
fn a_non_finite_loss_stops_the_run_after_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke(&["agent.lr=1e30", "training.episodes_per_task=3"]);
    let opts = TrainOptions {
        run_dir: tmp.path().join("nan"),
        force: false,
        resume: false,
    };
    match train(&config, &opts, &mut ()) {
        Err(TrainError::NonFiniteLoss {
            episode,
            checkpoint,
            ..
        }) => {
            assert!(checkpoint.join("agent.safetensors").is_file());
            assert!(checkpoint.ends_with(format!("ep{episode}-nonfinite")));
        }
        other => panic!("expected a non-finite loss, got {other:?}"),
    }
}

/// Every gradient method trains both multi-task agents on balanced smoke batches, and each
/// surgery run logs its diagnostics next to conflict.jsonl.
#[test]
fn every_gradient_method_trains_each_agent_on_the_smoke_config() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in ["shared_dqn", "brc"] {
        for method in ["mean", "pcgrad", "gradnorm", "cagrad"] {
            let mut config = smoke(&[
                "training.episodes_per_task=1",
                "training.sampling=\"balanced\"",
            ]);
            let mut agent = serde_json::json!({ "kind": kind, "gradient": method });
            if kind == "brc" {
                agent = serde_json::json!({ "kind": kind, "gradient": method,
                    "hidden_dim": 32, "num_blocks": 1, "embedding_dim": 4, "num_atoms": 11 });
            }
            config.agent = serde_json::from_value(agent).unwrap();
            config.training.min_replay = 40;
            let dir = tmp.path().join(format!("{kind}-{method}"));
            let summary = run(&config, &dir);
            assert!(summary.updates > 0, "{kind} {method}");
            let episodes: Vec<EpisodeRecord> = lines(dir.join("episodes.jsonl"));
            let loss = episodes.last().unwrap().mean_loss.unwrap();
            assert!(loss.is_finite(), "{kind} {method}: loss {loss}");
            let surgery = dir.join("surgery.jsonl");
            if method == "mean" {
                assert!(
                    !surgery.exists(),
                    "{kind}: a mean run writes no surgery log"
                );
                continue;
            }
            let records: Vec<serde_json::Value> = lines(surgery.clone());
            assert!(!records.is_empty(), "{kind} {method}");
            assert_eq!(records[0]["method"], method);
            assert_eq!(records[0]["after_episode"], 3);
            // A published run keeps its surgery log (`brc analyze` draws it).
            let published = tmp.path().join(format!("published-{kind}-{method}"));
            brc_train::publish_run(&dir, &published, false, None).unwrap();
            assert_eq!(
                std::fs::read(published.join("surgery.jsonl")).unwrap(),
                std::fs::read(&surgery).unwrap()
            );
        }
    }
}

/// GradNorm's weights, their Adam state and the reference losses travel in the checkpoint:
/// a run resumed from ep3 (after the weights started moving) equals the uninterrupted run.
#[test]
fn resuming_a_gradnorm_run_reproduces_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke(&[
        "agent.gradient=\"gradnorm\"",
        "agent.gradnorm_lr=0.1",
        "training.sampling=\"balanced\"",
    ]);
    let whole = tmp.path().join("whole");
    run(&config, &whole);
    let cut = tmp.path().join("cut");
    run(&config, &cut);
    std::fs::remove_dir_all(cut.join("checkpoints/final")).unwrap();
    let opts = TrainOptions {
        run_dir: cut.clone(),
        force: false,
        resume: true,
    };
    train(&config, &opts, &mut ()).unwrap();
    let strip = |dir: &Path, file: &str| -> Vec<serde_json::Value> {
        lines::<serde_json::Value>(dir.join(file))
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("wall_seconds");
                v
            })
            .collect()
    };
    assert_eq!(
        strip(&whole, "episodes.jsonl"),
        strip(&cut, "episodes.jsonl")
    );
    assert_eq!(strip(&whole, "evals.jsonl"), strip(&cut, "evals.jsonl"));
    let weights = strip(&whole, "surgery.jsonl");
    assert_eq!(weights, strip(&cut, "surgery.jsonl"));
    // The comparison means something: by the end the weights have left 1 (and sum to 3).
    let last = weights.last().unwrap()["weights"]
        .as_object()
        .unwrap()
        .clone();
    let w: Vec<f64> = last.values().map(|v| v.as_f64().unwrap()).collect();
    assert!(w.iter().any(|x| (x - 1.0).abs() > 1e-3), "{w:?}");
    assert!((w.iter().sum::<f64>() - 3.0).abs() < 1e-9, "{w:?}");
}

/// A VarShare run (both agents) logs varshare.jsonl at the conflict interval, and a run
/// resumed from ep3 equals the uninterrupted one: μ, ρ, their moments and the noise stream
/// travel in the checkpoint.
#[test]
fn varshare_runs_log_their_residuals_and_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in ["brc", "shared_dqn"] {
        let mut config = smoke(&["agent.varshare.beta=0.05", "agent.varshare.sigma_init=0.01"]);
        if kind == "shared_dqn" {
            config.agent = serde_json::from_value(serde_json::json!({
                "kind": "shared_dqn", "varshare": { "beta": 0.05, "mode": "l2" }
            }))
            .unwrap();
        }
        let whole = tmp.path().join(format!("{kind}-whole"));
        run(&config, &whole);
        let cut = tmp.path().join(format!("{kind}-cut"));
        run(&config, &cut);
        std::fs::remove_dir_all(cut.join("checkpoints/final")).unwrap();
        std::fs::remove_file(cut.join("summary.json")).unwrap();
        let opts = TrainOptions {
            run_dir: cut.clone(),
            force: false,
            resume: true,
        };
        train(&config, &opts, &mut ()).unwrap();
        let strip = |dir: &Path, file: &str| -> Vec<serde_json::Value> {
            lines::<serde_json::Value>(dir.join(file))
                .into_iter()
                .map(|mut v| {
                    v.as_object_mut().unwrap().remove("wall_seconds");
                    v
                })
                .collect()
        };
        for file in [
            "episodes.jsonl",
            "evals.jsonl",
            "conflict.jsonl",
            "varshare.jsonl",
        ] {
            assert_eq!(strip(&whole, file), strip(&cut, file), "{kind}: {file}");
        }
        let records = strip(&whole, "varshare.jsonl");
        // Every 3 episodes of 6; the residuals have moved by the second.
        assert_eq!(records.len(), 2, "{kind}");
        assert_eq!(records[1]["after_episode"], 6);
        let kept = records[1]["kept"]["windy"].as_u64().unwrap();
        assert!(kept > 0, "{kind}: windy's μ moved");
        let layers = records[1]["layers"].as_array().unwrap();
        let expected = if kind == "brc" { 4 } else { 3 };
        assert_eq!(
            layers.len(),
            expected,
            "{kind}: every linear layer has residuals"
        );
        assert!(records[1]["kl"]["heavy"].as_f64().unwrap().is_finite());
        assert_eq!(
            records[1]["mean_sigma"].as_object().unwrap().is_empty(),
            kind == "shared_dqn",
            "σ only in the variational run"
        );
    }
    // Plain runs write no varshare.jsonl.
    let plain = tmp.path().join("plain");
    run(&smoke(&["training.episodes_per_task=1"]), &plain);
    assert!(!plain.join("varshare.jsonl").exists());
}

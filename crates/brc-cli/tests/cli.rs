//! The `brc` binary: exit codes, one-line errors and JSON output.

use std::process::Command;

fn brc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_brc"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn config_errors_exit_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("x.toml");
    std::fs::write(
        &bad,
        "[run]\nname = \"x\"\n[agent]\nkind = \"brc\"\nnum_atoms = 1\n",
    )
    .unwrap();
    let o = brc(&["train", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("x.toml: agent.num_atoms = 1: must be ≥ 2"),
        "{e}"
    );

    let o = brc(&["train", "--config", "configs/missing.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("configs/missing.toml"));

    let o = brc(&[
        "train",
        "--config",
        "configs/smoke.toml",
        "--set",
        "training.batch_sise=3",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("training.batch_sise"), "{}", stderr(&o));
}

#[test]
fn train_smoke_then_refuse_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let args = [
        "train",
        "--config",
        "configs/smoke.toml",
        "--out",
        out,
        "--quiet",
        "--json",
    ];
    let o = brc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let summaries: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summaries[0]["episodes"], 6);
    let o = brc(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));

    // The trained agent evaluates from its checkpoints, and the results land next to them.
    let run = tmp.path().join("smoke");
    let run = run.to_str().unwrap();
    let o = brc(&[
        "evaluate",
        "--run",
        run,
        "--checkpoint",
        "final",
        "--episodes",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["tasks"].as_array().unwrap().len(), 3);
    assert_eq!(report["tasks"][1]["episodes"], 2);
    assert!(tmp
        .path()
        .join("smoke/checkpoints/final/evaluation-all-seed1000000-n2.json")
        .is_file());
    let o = brc(&["evaluate", "--run", run, "--checkpoint", "ep99"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such checkpoint"), "{}", stderr(&o));
    let o = brc(&["evaluate", "--run", run, "--task", "moon"]);
    assert_eq!(o.status.code(), Some(2));

    // --resume continues from the newest ep<N> checkpoint with the run's own config.
    let o = brc(&["train", "--resume", run, "--quiet", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summaries: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summaries[0]["episodes"], 6);
    let o = brc(&["train", "--resume", out]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a run directory"), "{}", stderr(&o));
}

#[test]
fn info_reports_exact_parameter_counts() {
    for (config, params) in [
        ("configs/brc.toml", 459_820),
        ("configs/shared_dqn.toml", 37_788),
        ("configs/independent_dqn.toml", 107_148),
        ("configs/shared_dqn_blind.toml", 35_716),
        ("configs/pcgrad_blind.toml", 35_716),
        ("configs/gradnorm.toml", 37_788),
    ] {
        let o = brc(&["info", "--config", config, "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(doc["parameters"], params, "{config}");
    }
    for (config, method) in [
        ("configs/shared_dqn.toml", "mean"),
        ("configs/pcgrad.toml", "pcgrad"),
        ("configs/gradnorm_blind.toml", "gradnorm"),
        ("configs/brc_cagrad.toml", "cagrad"),
    ] {
        let o = brc(&["info", "--config", config]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains(&format!("gradient   {method}")),
            "{config}: {text}"
        );
    }
    let o = brc(&[
        "info",
        "--config",
        "configs/brc.toml",
        "--set",
        "agent.num_blocks=2",
        "--set",
        "agent.num_atoms=21",
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["parameters"], 296_884, "the predecessor's BRC run");
}

#[test]
fn env_commands_print_json_and_check_the_fixtures() {
    let o = brc(&[
        "env",
        "heuristic",
        "--task",
        "heavy",
        "--episodes",
        "5",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["task"], "heavy");
    assert_eq!(rows[0]["episodes"], 5);

    let o = brc(&[
        "env",
        "check",
        "--json",
        "--refdata",
        "crates/brc-envs/tests/fixtures/refdata_windy.json.gz",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["pass"], true);
    assert_eq!(report["files"][0]["draws_equal"], 20);

    let o = brc(&["env", "heuristic", "--task", "moon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown task"));
}

#[test]
fn imported_predecessor_checkpoints_evaluate() {
    let pred = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/predecessor"
    ));
    if !pred.is_dir() {
        eprintln!("skipping: {} not found", pred.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ck = |f: &str| {
        pred.join("checkpoints")
            .join(f)
            .to_str()
            .unwrap()
            .to_string()
    };
    let shared = tmp.path().join("shared");
    let o = brc(&[
        "import-torch",
        "--kind",
        "shared-dqn",
        "--pth",
        &ck("shared_dqn_best.pth"),
        "--out",
        shared.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = brc(&[
        "evaluate",
        "--run",
        shared.to_str().unwrap(),
        "--episodes",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The predecessor's best Shared DQN lands the standard task.
    assert!(
        report["tasks"][0]["mean_return"].as_f64().unwrap() > 100.0,
        "{report}"
    );

    let single = tmp.path().join("heavy");
    let o = brc(&[
        "import-torch",
        "--kind",
        "independent",
        "--pth",
        &ck("heavy_best.pth"),
        "--task",
        "heavy",
        "--out",
        single.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = brc(&[
        "evaluate",
        "--run",
        single.to_str().unwrap(),
        "--episodes",
        "1",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["tasks"][0]["task"], "heavy");

    // A shared checkpoint is not an independent network: a clear error, exit 2.
    let bad = tmp.path().join("bad");
    let o = brc(&[
        "import-torch",
        "--kind",
        "independent",
        "--pth",
        &ck("shared_dqn_best.pth"),
        "--task",
        "standard",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn parallel_seeds_write_one_directory_each() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let o = brc(&[
        "train",
        "--config",
        "configs/smoke.toml",
        "--seeds",
        "0..2",
        "--out",
        out,
        "--quiet",
        "--json",
        "--set",
        "training.episodes_per_task=1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summaries: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summaries[0]["seed"], 0);
    assert_eq!(summaries[1]["seed"], 1);
    for k in 0..2 {
        assert!(tmp
            .path()
            .join(format!("smoke/seed-{k}/summary.json"))
            .is_file());
    }
    let o = brc(&["train", "--config", "configs/smoke.toml", "--seeds", "3..3"]);
    assert_eq!(o.status.code(), Some(2), "an empty range is refused");

    // The seeds analysed together, then compared with a single run of them.
    let seeds = tmp.path().join("smoke");
    let o = brc(&["analyze", seeds.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files: Vec<String> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(files
        .iter()
        .any(|f| f.ends_with("plots/training_curves.png")));
    let report = std::fs::read_to_string(seeds.join("plots/report.md")).unwrap();
    assert!(report.contains("2 seeds"), "{report}");
    let cmp = tmp.path().join("cmp");
    let o = brc(&[
        "compare",
        seeds.to_str().unwrap(),
        "--out",
        cmp.to_str().unwrap(),
        "--resamples",
        "100",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = std::fs::read_to_string(cmp.join("results.md")).unwrap();
    assert!(table.contains("| smoke | 2 |"), "{table}");
    let report = std::fs::read_to_string(cmp.join("report.md")).unwrap();
    assert!(report.contains("(aggregates.png)"), "{report}");
    // Focus: a method the comparison lacks is refused, naming those it has; a group file
    // with the episode axis is taken.
    let focused = tmp.path().join("cmp-focused");
    let focus = |extra: &[&str]| {
        let mut args = vec![
            "compare",
            seeds.to_str().unwrap(),
            "--out",
            focused.to_str().unwrap(),
            "--resamples",
            "100",
        ];
        args.extend_from_slice(extra);
        brc(&args)
    };
    let o = focus(&["--methods", "smoke,nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no method `nope`") && stderr(&o).contains("smoke"),
        "{}",
        stderr(&o)
    );
    let groups = tmp.path().join("groups.toml");
    std::fs::write(
        &groups,
        "[[group]]\nname = \"mine\"\nmethods = [\"smoke\"]\n",
    )
    .unwrap();
    let o = focus(&[
        "--methods",
        "smoke",
        "--group",
        groups.to_str().unwrap(),
        "--x-axis",
        "episodes",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(focused.join("learning_curves.svg")).unwrap();
    assert!(svg.contains("training episodes (all tasks)"));
    std::fs::write(&groups, "[[group]]\nname = 3\n").unwrap();
    let o = focus(&["--group", groups.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("groups.toml"), "{}", stderr(&o));
    // Published: small, and the weights alone evaluate like the final checkpoint.
    let publ = tmp.path().join("published");
    let o = brc(&[
        "publish",
        seeds.to_str().unwrap(),
        "--out",
        publ.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(publ.join("seed-1/weights.safetensors").is_file());
    assert!(!publ.join("seed-1/checkpoints").exists());
    let eval = |run: &std::path::Path, checkpoint: &str| {
        let o = brc(&[
            "evaluate",
            "--run",
            run.to_str().unwrap(),
            "--checkpoint",
            checkpoint,
            "--episodes",
            "1",
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["average"].as_f64().unwrap()
    };
    assert_eq!(
        eval(&publ.join("seed-1"), "weights.safetensors"),
        eval(&seeds.join("seed-1"), "final")
    );
    assert_eq!(
        eval(&publ.join("seed-1"), "best.safetensors"),
        eval(&seeds.join("seed-1"), "best")
    );
    // Each weight file keeps its own evaluation report.
    for stem in ["weights", "best"] {
        let report = publ.join(format!("seed-1/evaluation-{stem}-all-seed1000000-n1.json"));
        assert!(report.is_file(), "{}", report.display());
    }
    // Those reports can stand in for the logged final evaluations in a comparison — every
    // run's, or the comparison is refused.
    let report = "evaluation-best-all-seed1000000-n1.json";
    let compare_best = || {
        brc(&[
            "compare",
            publ.to_str().unwrap(),
            "--out",
            tmp.path().join("cmp-best").to_str().unwrap(),
            "--resamples",
            "100",
            "--final-evaluation",
            report,
        ])
    };
    let o = compare_best();
    assert_eq!(o.status.code(), Some(2), "seed-0 has no report yet");
    assert!(stderr(&o).contains("seed-0"), "{}", stderr(&o));
    eval(&publ.join("seed-0"), "best.safetensors");
    let o = compare_best();
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(tmp.path().join("cmp-best/report.md")).unwrap();
    assert!(md.contains(report), "{md}");
    // Published under another method name: the agent is unchanged, the tables carry the name.
    let renamed = tmp.path().join("renamed");
    let o = brc(&[
        "publish",
        seeds.to_str().unwrap(),
        "--out",
        renamed.to_str().unwrap(),
        "--name",
        "smoke_renamed",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(renamed.join("seed-1/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["name"], "smoke_renamed");
    assert_eq!(summary["trained_as"], "smoke");
    assert_eq!(
        eval(&renamed.join("seed-1"), "weights.safetensors"),
        eval(&seeds.join("seed-1"), "final")
    );
    let o = brc(&[
        "compare",
        renamed.to_str().unwrap(),
        "--out",
        tmp.path().join("cmp-renamed").to_str().unwrap(),
        "--resamples",
        "100",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = std::fs::read_to_string(tmp.path().join("cmp-renamed/results.md")).unwrap();
    assert!(table.contains("| smoke_renamed | 2 |"), "{table}");
    let o = brc(&[
        "publish",
        seeds.to_str().unwrap(),
        "--out",
        publ.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "no overwrite without --force");

    // The same method twice is refused; so is a directory that holds no run.
    let o = brc(&[
        "compare",
        seeds.to_str().unwrap(),
        seeds.join("seed-0").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("given twice"), "{}", stderr(&o));
    let o = brc(&["analyze", cmp.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("not a run directory"), "{}", stderr(&o));
}

#[test]
fn env_play_records_a_gif_per_task() {
    let tmp = tempfile::tempdir().unwrap();
    let gif = tmp.path().join("play.gif");
    let o = brc(&[
        "env",
        "play",
        "--task",
        "all",
        "--policy",
        "random",
        "--seed",
        "3",
        "--every",
        "2",
        "--record",
        gif.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        let task = row["task"].as_str().unwrap();
        let length = row["episodes"][0]["length"].as_u64().unwrap();
        let path = tmp.path().join(format!("play-{task}.gif"));
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"GIF89a"), "{task}");
        // Steps 0, 2, 4, … plus the last state.
        let frames = length / 2 + 1 + u64::from(length % 2 == 1);
        let line = format!("recorded {frames} frames to {}", path.display());
        assert!(stderr(&o).contains(&line), "{task}: {}", stderr(&o));
    }
    let o = brc(&["env", "play", "--render"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--features window"), "{}", stderr(&o));
    let o = brc(&["env", "play", "--record", "/proc/nope/x.gif"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bench_json_has_the_documented_keys() {
    let o = brc(&["bench", "--quick", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(doc["env"]["steps_per_s"]["median"].as_f64().unwrap() > 0.0);
    for kind in ["independent_dqn", "shared_dqn", "brc"] {
        assert!(
            doc["agents"][kind]["update_us"]["median"].as_f64().unwrap() > 0.0,
            "{kind}"
        );
        assert!(
            doc["agents"][kind]["act_us"]["median"].as_f64().unwrap() > 0.0,
            "{kind}"
        );
        assert!(
            doc["e2e"][kind]["steps_per_s"]["median"].as_f64().unwrap() > 0.0,
            "{kind}"
        );
    }
    assert_eq!(doc["agents"]["brc"]["parameters"], 459_820);
    assert!(
        doc["agents"]["brc_varshare"]["update_us"]["median"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    // A selection of cases, with VarShare's update against the plain one on the same batches.
    let o = brc(&["bench", "--quick", "--cases", "brc,brc_varshare"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("brc_varshare update / brc update: "),
        "{text}"
    );
    assert!(
        !text.contains("shared_dqn "),
        "only the selected cases: {text}"
    );
    let o = brc(&["bench", "--quick", "--cases", "brc,ppo"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown case \"ppo\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn published_weights_reproduce_their_final_evaluation() {
    // The committed reference runs: re-evaluating the published online weights gives the
    // per-episode returns the run logged in its final evaluation (same eval seeds).
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    for method in ["shared_dqn", "brc", "brc_tuned"] {
        let published = root.join(format!("results/reference/{method}/seed-0"));
        if !published.join("weights.safetensors").is_file() {
            eprintln!("skipping {method}: no published run");
            continue;
        }
        // Evaluate a copy: evaluate writes its per-episode results next to the weights.
        let tmp = tempfile::tempdir().unwrap();
        for f in ["config.toml", "weights.safetensors"] {
            std::fs::copy(published.join(f), tmp.path().join(f)).unwrap();
        }
        let o = brc(&[
            "evaluate",
            "--run",
            tmp.path().to_str().unwrap(),
            "--checkpoint",
            "weights.safetensors",
            "--episodes",
            "3",
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let now: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let evals = std::fs::read_to_string(published.join("evals.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(evals.lines().last().unwrap()).unwrap();
        assert_eq!(last["is_final"], true);
        // The logged returns came from candle's graph with gemm's AVX2 kernels; this build
        // evaluates BRC on the CPU fast path (brc_nn::BroNetCpu) with the default `avx512`
        // kernels where the CPU has them, Shared DQN on candle's graph. Either rounds a matrix
        // product a little differently and may, rarely, flip a near-tied greedy action; a wrong
        // or perturbed agent would match none of the nine.
        let (mut same, mut all) = (0, 0);
        for task in now["episodes"].as_array().unwrap() {
            let name = task["task"].as_str().unwrap();
            for (i, ep) in task["episodes"].as_array().unwrap().iter().enumerate() {
                all += 1;
                if ep["episode_return"].as_f64() == last["returns"][name][i].as_f64() {
                    same += 1;
                }
            }
        }
        assert_eq!(all, 9);
        assert!(same >= 7, "{method}: {same} of {all} episodes reproduced");
    }
}

/// `brc info` splits VarShare's parameters (config and trained run, the latter with the
/// counts after pruning per task and layer); `brc evaluate --shared-only` evaluates θ alone,
/// `--pruned` the pruned network, and both are clear errors on a run without residuals.
#[test]
fn varshare_info_and_shared_only_evaluation() {
    let o = brc(&["info", "--config", "configs/varshare_mlp.toml", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let per_task = 2 * (16 * 256 + 256 * 128 + 128 * 4);
    assert_eq!(doc["parameter_counts"]["shared"], 37_788);
    assert_eq!(doc["parameter_counts"]["adapter_per_task"], per_task);
    assert_eq!(doc["parameters"], 37_788 + 3 * per_task);
    assert!(
        doc["after_pruning"].is_null(),
        "untrained: nothing to prune"
    );
    let o = brc(&["info", "--config", "configs/varshare.toml"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("varshare   variational"), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let o = brc(&[
        "train",
        "--config",
        "configs/smoke.toml",
        "--set",
        "agent.varshare.beta=0.05",
        "--set",
        "run.name=\"vs\"",
        "--out",
        out,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = tmp.path().join("vs");
    let run = run.to_str().unwrap();
    let o = brc(&["info", "--run", run, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pruned = &doc["after_pruning"];
    let tasks = pruned["tasks"].as_object().unwrap();
    assert_eq!(tasks.len(), 3);
    let before = pruned["adapter_before"].as_u64().unwrap();
    let mut sum = 0;
    for (task, t) in tasks {
        let kept = t["adapter"].as_u64().unwrap();
        assert!(kept > 0 && kept <= before, "{task}: {kept} of {before}");
        let layers: u64 = t["layers"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(layers, kept, "{task}: the layers add up");
        sum += kept;
    }
    assert_eq!(
        pruned["total"].as_u64().unwrap(),
        pruned["shared"].as_u64().unwrap() + sum
    );
    assert_eq!(pruned["threshold"], 1e-3);
    // A threshold above every |μ| leaves θ alone; one of 0 keeps every nonzero entry.
    let at = |t: &str| {
        let o = brc(&["info", "--run", run, "--prune-threshold", t, "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["after_pruning"].clone()
    };
    assert_eq!(at("1e9")["total"], pruned["shared"]);
    assert_eq!(at("1e9")["threshold"], 1e9);
    for (task, t) in at("0")["tasks"].as_object().unwrap() {
        let kept = t["adapter"].as_u64().unwrap();
        assert!(kept <= before && kept >= tasks[task]["adapter"].as_u64().unwrap());
    }
    let o = brc(&["info", "--run", run]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("after pruning") && text.contains("blocks.0.fc1"),
        "{text}"
    );

    let o = brc(&[
        "evaluate",
        "--run",
        run,
        "--episodes",
        "1",
        "--shared-only",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["shared_only"], true);
    assert!(tmp
        .path()
        .join("vs/checkpoints/best/evaluation-shared-only-all-seed1000000-n1.json")
        .is_file());

    // Pruning every μ entry leaves θ alone: the same episodes as --shared-only.
    let evaluate_pruned = |extra: &[&str]| {
        let mut args = vec!["evaluate", "--run", run, "--episodes", "1", "--pruned"];
        args.extend_from_slice(extra);
        args.push("--json");
        let o = brc(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let all_pruned = evaluate_pruned(&["--prune-threshold", "1e9"]);
    assert_eq!(all_pruned["pruned_below"], 1e9);
    assert_eq!(all_pruned["average"], report["average"]);
    assert!(tmp
        .path()
        .join("vs/checkpoints/best/evaluation-pruned1e9-all-seed1000000-n1.json")
        .is_file());
    assert_eq!(
        evaluate_pruned(&[])["pruned_below"],
        1e-3,
        "the run's threshold"
    );
    let o = brc(&["evaluate", "--run", run, "--pruned", "--prune-threshold=-1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a finite number"), "{}", stderr(&o));

    let o = brc(&[
        "train",
        "--config",
        "configs/smoke.toml",
        "--set",
        "training.episodes_per_task=1",
        "--out",
        out,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plain = tmp.path().join("smoke");
    let o = brc(&[
        "evaluate",
        "--run",
        plain.to_str().unwrap(),
        "--shared-only",
    ]);
    assert_ne!(o.status.code(), Some(0));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("--shared-only") && e.contains("no task residuals"),
        "{e}"
    );
    let o = brc(&["evaluate", "--run", plain.to_str().unwrap(), "--pruned"]);
    let e = stderr(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        e.contains("--pruned") && e.contains("no task residuals to prune"),
        "{e}"
    );
}

//! `brc sweep` on the local process pool: plan, run, status, adopt, compare, idempotent re-runs,
//! failures, a changed sweep file, and SIGTERM with resume (real signals, real processes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

fn brc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brc"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn smoke_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/smoke.toml")
        .display()
        .to_string()
}

/// Writes a sweep file over the smoke config into `dir`; returns its path as a string.
fn sweep_file(dir: &Path, body: &str) -> String {
    let path = dir.join("sweep.toml");
    let text = format!(
        "output_dir = \"out\"\nconfigs = [{:?}]\n{body}",
        smoke_config()
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn statuses(file: &str) -> Vec<String> {
    let plan = json(&brc(&["sweep", "plan", file, "--json"]));
    plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

/// Every file under `dir` with its modification time and contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (SystemTime, Vec<u8>)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let m = e.metadata().unwrap().modified().unwrap();
                files.insert(p.clone(), (m, std::fs::read(&p).unwrap()));
            }
        }
    }
    files
}

/// Lines of a JSONL file without the wall-clock field.
fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("wall_seconds");
            v
        })
        .collect()
}

#[test]
fn plan_run_status_and_compare_on_the_local_pool_and_a_rerun_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(
        tmp.path(),
        "seeds = \"0..2\"\n[set]\n\"evaluation.final_episodes\" = 1\n[grid]\n\"agent.hidden_dim\" = [16, 32]\n",
    );
    let plan = json(&brc(&["sweep", "plan", &file, "--json"]));
    let runs = plan["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[3]["index"], 3);
    assert!(runs[3]["dir"]
        .as_str()
        .unwrap()
        .ends_with("out/smoke/agent.hidden_dim=32/seed-1"));
    assert_eq!(statuses(&file), ["pending"; 4]);

    let o = brc(&["sweep", "run", &file, "--jobs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 done, 0 failed"));
    assert_eq!(statuses(&file), ["done"; 4]);
    // Each child logged into logs/, with the line log of a non-terminal stderr.
    let log = std::fs::read_to_string(tmp.path().join("out/logs/run-2.log")).unwrap();
    assert!(log.contains("smoke seed 1: start: 6 episodes"), "{log}");
    assert!(log.contains("episode 3/6: eval standard"), "{log}");
    assert!(log.contains("ETA"), "{log}");
    assert!(log.contains("smoke seed 1: done in"), "{log}");

    let o = brc(&["sweep", "status", &file, "--json"]);
    let status = json(&o);
    assert_eq!(status["counts"]["done"], 4);
    assert_eq!(status["methods"][1]["method"], "smoke agent.hidden_dim=32");
    assert_eq!(status["methods"][1]["counts"]["done"], 2);

    // Again: nothing to do, nothing rewritten.
    let before = snapshot(&tmp.path().join("out"));
    let o = brc(&["sweep", "run", &file]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
    let o = brc(&["sweep", "run", &file, "--index", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(snapshot(&tmp.path().join("out")), before);

    let out = tmp.path().join("compare");
    let o = brc(&[
        "sweep",
        "compare",
        &file,
        "--out",
        out.to_str().unwrap(),
        "--resamples",
        "200",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(table.contains("smoke agent.hidden_dim=16"), "{table}");
    assert!(table.contains("smoke agent.hidden_dim=32"), "{table}");

    // An edited sweep file that would change listed runs is refused, naming the change.
    sweep_file(
        tmp.path(),
        "seeds = \"0..2\"\n[set]\n\"evaluation.final_episodes\" = 2\n[grid]\n\"agent.hidden_dim\" = [16, 32]\n",
    );
    let o = brc(&["sweep", "run", &file]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("evaluation.final_episodes would change from 1 to 2") && e.contains("--force"),
        "{e}"
    );
    // Forced, the changed runs no longer count as done.
    assert_eq!(
        json(&brc(&["sweep", "plan", &file, "--json", "--force"]))["runs"][0]["status"],
        "pending"
    );
}

#[test]
fn a_failed_run_keeps_its_error_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(
        tmp.path(),
        "seeds = [0]\n[set]\n\"training.episodes_per_task\" = 3\n[grid]\n\"agent.lr\" = [1e30, 3e-4]\n",
    );
    let o = brc(&["sweep", "run", &file, "--jobs", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 done, 1 failed"));
    assert_eq!(statuses(&file), ["failed", "done"]);
    let status = json(&brc(&["sweep", "status", &file, "--json"]));
    assert_eq!(status["failed"][0]["index"], 0);
    let error = status["failed"][0]["error"].as_str().unwrap();
    assert!(error.contains("non-finite loss"), "{error}");
    // Inside an array task (here a Kubernetes Indexed Job) the index comes from the scheduler.
    let index_from = |var: &str, value: &str| {
        Command::new(env!("CARGO_BIN_EXE_brc"))
            .args(["sweep", "run", &file])
            .env(var, value)
            .output()
            .unwrap()
    };
    let o = index_from("JOB_COMPLETION_INDEX", "1");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("run 1 (") && stderr(&o).contains("is done: nothing to do"));
    let o = index_from("SLURM_ARRAY_TASK_ID", "5");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no run 5: the sweep has 2 runs"),
        "{}",
        stderr(&o)
    );
    let o = index_from("SLURM_ARRAY_TASK_ID", "x");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("SLURM_ARRAY_TASK_ID"), "{}", stderr(&o));

    let o = brc(&["sweep", "status", &file]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("failed: run 0 (") && text.contains("non-finite loss"),
        "{text}"
    );
}

#[test]
fn adopt_copies_in_a_finished_run_from_elsewhere_and_a_bad_from_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let body = "seeds = [0, 1]\n[set]\n\"evaluation.final_episodes\" = 1\n";
    let (file_a, file_b) = (sweep_file(&a, body), sweep_file(&b, body));
    let o = brc(&["sweep", "run", &file_a, "--index", "0", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Sweep b plans the same runs under another output directory: seed 0 is adopted.
    let from = a.join("out");
    let o = brc(&["sweep", "adopt", &file_b, "--from", from.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("adopted 1 run from"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(statuses(&file_b), ["done", "pending"]);
    let summary = |dir: &Path| std::fs::read(dir.join("out/smoke/seed-0/summary.json")).unwrap();
    assert_eq!(summary(&b), summary(&a));

    // Park copies only unfinished runs: a done and a pending run leave nothing to carry.
    let parked = tmp.path().join("parked");
    let o = brc(&["sweep", "park", &file_b, "--to", parked.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("parked 0 runs in"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!parked.join("smoke").exists());

    let missing = tmp.path().join("missing");
    let o = brc(&[
        "sweep",
        "adopt",
        &file_b,
        "--from",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("missing") && e.contains("not a directory"),
        "{e}"
    );
    assert_eq!(statuses(&file_b), ["done", "pending"]);
}

/// Polls `done` until it holds or `limit` passes.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM to the pool: it passes the signal on to its child, which checkpoints and exits 75,
/// starts no further run, and exits 75 itself; the next `sweep run` resumes.
#[test]
fn sigterm_checkpoints_and_the_next_sweep_run_resumes_to_the_same_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let set = [
        "training.episodes_per_task=60",
        "checkpoints.interval_episodes=3",
    ];
    let body = format!(
        "seeds = [0, 1]\n[set]\n{}\n",
        set.iter()
            .map(|s| {
                let (k, v) = s.split_once('=').unwrap();
                format!("{k:?} = {v}\n")
            })
            .collect::<String>()
    );
    let file = sweep_file(tmp.path(), &body);
    let run = tmp.path().join("out/smoke/seed-0");
    let child = Command::new(env!("CARGO_BIN_EXE_brc"))
        .args(["sweep", "run", &file, "--jobs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(300), "the first checkpoint", || {
        run.join("checkpoints/ep3/trainer.json").is_file()
    });
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{e}");
    assert!(e.contains("run 0 (smoke/seed-0): interrupted"), "{e}");
    assert!(!e.contains("run 1 (smoke/seed-1): started"), "{e}");
    let log = std::fs::read_to_string(tmp.path().join("out/logs/run-0.log")).unwrap();
    assert!(log.contains("interrupted after episode"), "{log}");
    assert_eq!(statuses(&file), ["unfinished", "pending"]);

    let o = brc(&["sweep", "run", &file, "--jobs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(statuses(&file), ["done", "done"]);
    let log = std::fs::read_to_string(tmp.path().join("out/logs/run-0.log")).unwrap();
    assert!(log.contains("resuming after episode"), "{log}");

    let whole = tmp.path().join("whole");
    let mut args = vec!["train", "--config", "configs/smoke.toml", "--quiet"];
    for s in &set {
        args.extend(["--set", s]);
    }
    args.extend(["--out", whole.to_str().unwrap()]);
    let o = brc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    for log in ["episodes.jsonl", "evals.jsonl", "conflict.jsonl"] {
        let resumed = records(&run.join(log));
        assert_eq!(resumed, records(&whole.join("smoke").join(log)), "{log}");
    }
    assert_eq!(records(&run.join("episodes.jsonl")).len(), 180);
}

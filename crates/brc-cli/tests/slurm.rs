//! `brc sweep slurm` on a real Slurm: a four-run smoke sweep as a job array, one running task
//! cancelled, and the resubmitted array resuming it. `.ci/run` starts a one-node cluster
//! (scripts/slurm/local-cluster.sh); elsewhere the test skips with a notice when no cluster
//! answers, but with CI=true it must run.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn brc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brc"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether a Slurm controller answers here.
fn slurm_up() -> bool {
    Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"))
}

/// The array tasks of `job` still queued or running, as `(task id, state)`.
fn tasks(job: &str) -> Vec<(usize, String)> {
    let o = Command::new("squeue")
        .args(["-h", "-r", "-j", job, "-o", "%K %T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let (id, state) = l.split_once(' ')?;
            Some((id.trim().parse().ok()?, state.trim().to_string()))
        })
        .collect()
}

/// Polls `done` until it holds or `limit` passes.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn statuses(file: &str) -> Vec<String> {
    let o = brc(&["sweep", "plan", file, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

fn submit(file: &str) -> String {
    let o = brc(&["sweep", "slurm", file, "--submit", "--time", "00:20:00"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Episodes of the long runs; the short ones train the smoke config's 2 per task.
const LONG: usize = 500;

#[test]
fn a_sweep_runs_as_a_slurm_job_array_and_a_cancelled_task_resumes() {
    if !slurm_up() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Slurm controller answers `scontrol ping`: .ci/run starts one with scripts/slurm/local-cluster.sh"
        );
        eprintln!(
            "notice: skipping the Slurm test: no Slurm controller answers `scontrol ping` (start one: sudo scripts/slurm/local-cluster.sh)"
        );
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let file = tmp.path().join("sweep.toml");
    std::fs::write(
        &file,
        format!(
            "output_dir = \"out\"\nseeds = [0, 1]\nconfigs = [{:?}]\n[set]\n\"checkpoints.interval_episodes\" = 20\n[grid]\n\"training.episodes_per_task\" = [2, {LONG}]\n",
            config.display().to_string()
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = tmp.path().join("out");
    let long_dir = |seed: usize| {
        out.join(format!(
            "smoke/training.episodes_per_task={LONG}/seed-{seed}"
        ))
    };
    // Runs 1 and 3 are the long ones (seeds vary slowest).
    let job = submit(file);
    let script = std::fs::read_to_string(out.join("sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3\n"), "{script}");
    assert!(script.contains("#SBATCH --cpus-per-task=1\n"), "{script}");

    // Cancel a long run's task once it is running and has a checkpoint.
    let mut cancelled = None;
    wait_until(
        Duration::from_secs(300),
        "a long run with a checkpoint",
        || {
            cancelled = tasks(&job).into_iter().find_map(|(id, state)| {
                let dir = long_dir(id / 2);
                (id % 2 == 1
                    && state == "RUNNING"
                    && dir.join("checkpoints/ep20/trainer.json").is_file())
                .then_some(id)
            });
            cancelled.is_some()
        },
    );
    let cancelled = cancelled.unwrap();
    let o = Command::new("scancel")
        .arg(format!("{job}_{cancelled}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    wait_until(Duration::from_secs(300), "the first array to end", || {
        tasks(&job).is_empty()
    });
    let log = |job: &str| {
        std::fs::read_to_string(out.join(format!("logs/run-{cancelled}.{job}.out"))).unwrap()
    };
    let first = log(&job);
    assert!(first.contains("interrupted after episode"), "{first}");
    let mut expected = vec!["done"; 4];
    expected[cancelled] = "unfinished";
    assert_eq!(statuses(file), expected);

    // Resubmitted, the array holds only the unfinished run, which resumes.
    let job2 = submit(file);
    let script = std::fs::read_to_string(out.join("sweep.sbatch")).unwrap();
    assert!(
        script.contains(&format!("#SBATCH --array={cancelled}\n")),
        "{script}"
    );
    wait_until(
        Duration::from_secs(300),
        "the resubmitted array to end",
        || tasks(&job2).is_empty(),
    );
    let second = log(&job2);
    assert!(second.contains("resuming after episode"), "{second}");
    assert_eq!(statuses(file), ["done"; 4]);
    for (index, per_task) in [(0, 2), (1, LONG), (2, 2), (3, LONG)] {
        let dir = out.join(format!(
            "smoke/training.episodes_per_task={per_task}/seed-{}",
            index / 2
        ));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["episodes"], 3 * per_task, "run {index}");
        assert_eq!(summary["seed"], index / 2, "run {index}");
    }
    let episodes = std::fs::read_to_string(long_dir(cancelled / 2).join("episodes.jsonl")).unwrap();
    let numbers: Vec<u64> = episodes
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["episode"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(numbers, (0..3 * LONG as u64).collect::<Vec<_>>());
    eprintln!("slurm sweep test: {:.1} s", started.elapsed().as_secs_f64());
}

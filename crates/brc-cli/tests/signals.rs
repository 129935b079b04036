//! Signals as a user meets them: Ctrl-C (SIGINT) during `brc train` checkpoints and exits 75,
//! `--resume` finishes the run; a closed stdout (`brc … | head`) ends brc quietly.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn brc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brc"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    c
}

#[test]
fn sigint_during_train_checkpoints_exits_75_and_resume_finishes_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let child = brc()
        .args(["train", "--config", "configs/smoke.toml", "--out", out])
        .args(["--set", "training.episodes_per_task=100"])
        .args(["--set", "checkpoints.interval_episodes=3"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = tmp.path().join("smoke");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !run.join("checkpoints/ep3/trainer.json").is_file() {
        assert!(Instant::now() < deadline, "no checkpoint within 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(75), "{e}");
    assert!(e.contains("interrupted after episode"), "{e}");
    assert!(!run.join("summary.json").exists());

    let o = brc()
        .args(["train", "--resume", run.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summaries: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summaries[0]["episodes"], 300);
}

#[test]
fn a_closed_stdout_ends_brc_quietly() {
    let mut child = brc()
        .args([
            "env",
            "heuristic",
            "--task",
            "all",
            "--episodes",
            "3",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before brc prints anything (the episodes come first).
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.is_empty(), "{e}");
    assert_eq!(
        o.status.signal(),
        Some(13),
        "killed by SIGPIPE like `seq`: {:?}",
        o.status
    );
}

//! Sweeps without Slurm: expansion, the stored run list, locks, failures, interruption and
//! resume (the process pool and the CLI are tested in brc-cli).

use std::path::{Path, PathBuf};

use brc_train::sweep::{execute_run, RunLock, RunOutcome, RunStatus, Sweep, SweepError};
use brc_train::{EpisodeRecord, EvalRecord, Progress, TrainError};

fn smoke_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/smoke.toml")
        .display()
        .to_string()
}

/// A sweep file in `dir` over the smoke config.
fn sweep_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("sweep.toml");
    let text = format!(
        "output_dir = \"out\"\nconfigs = [{:?}]\n{body}",
        smoke_config()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Every file under `dir`, as sorted paths relative to it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
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

/// Trains `config` uninterrupted into `whole` and asserts that the run in `dir` logged the same
/// episodes, evaluations and conflict measurements (wall clock aside).
fn assert_logs_match_uninterrupted(config: &brc_train::RunConfig, dir: &Path, whole: &Path) {
    let opts = brc_train::TrainOptions {
        run_dir: whole.to_path_buf(),
        force: false,
        resume: false,
    };
    brc_train::train(config, &opts, &mut ()).unwrap();
    for log in ["episodes.jsonl", "evals.jsonl", "conflict.jsonl"] {
        assert_eq!(records(&dir.join(log)), records(&whole.join(log)), "{log}");
    }
}

#[test]
fn a_sweep_expands_configs_grid_and_seeds_into_stable_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(
        tmp.path(),
        "seeds = \"3..5\"\n[set]\n\"evaluation.final_episodes\" = 1\n[grid]\n\"agent.lr\" = [3e-4, 1e-4]\n",
    );
    let sweep = Sweep::open(&file, false).unwrap();
    assert_eq!(sweep.output_dir, tmp.path().join("out"));
    let dirs: Vec<String> = sweep
        .runs
        .iter()
        .map(|r| r.dir.display().to_string())
        .collect();
    // Seeds vary slowest, so more seeds append runs.
    assert_eq!(
        dirs,
        [
            "smoke/agent.lr=0.0003/seed-3",
            "smoke/agent.lr=0.0001/seed-3",
            "smoke/agent.lr=0.0003/seed-4",
            "smoke/agent.lr=0.0001/seed-4",
        ]
    );
    for (i, r) in sweep.runs.iter().enumerate() {
        assert_eq!(r.index, i);
        assert_eq!(r.config.evaluation.final_episodes, 1);
        assert_eq!(r.config.run.seed, [3, 3, 4, 4][i]);
    }
    let brc_agents::AgentConfig::Brc(agent) = &sweep.runs[1].config.agent else {
        panic!("the smoke config is a BRC agent");
    };
    assert_eq!(agent.lr, 1e-4);
    let methods: Vec<&str> = sweep.methods().iter().map(|(m, _)| *m).collect();
    assert_eq!(methods, ["smoke agent.lr=0.0003", "smoke agent.lr=0.0001"]);
    assert!(tmp.path().join("out/runs.json").is_file());
    for r in &sweep.runs {
        assert_eq!(sweep.state(r).status, RunStatus::Pending);
    }
}

#[test]
fn variants_run_one_change_each_under_their_own_names() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(
        tmp.path(),
        "seeds = [0, 1]\n[set]\n\"agent.lr\" = 1e-3\n\
         [[variants]]\nname = \"smoke_low_lr\"\nset = { \"agent.lr\" = 1e-4 }\n\
         [[variants]]\nname = \"smoke_two_critics\"\nset = { \"agent.critics\" = 2 }\n",
    );
    let sweep = Sweep::open(&file, false).unwrap();
    let dirs: Vec<String> = sweep
        .runs
        .iter()
        .map(|r| r.dir.display().to_string())
        .collect();
    assert_eq!(
        dirs,
        [
            "smoke_low_lr/seed-0",
            "smoke_two_critics/seed-0",
            "smoke_low_lr/seed-1",
            "smoke_two_critics/seed-1",
        ]
    );
    let agent = |i: usize| match &sweep.runs[i].config.agent {
        brc_agents::AgentConfig::Brc(a) => a.clone(),
        _ => panic!("the smoke config is a BRC agent"),
    };
    // A variant's change only, on top of [set].
    assert_eq!((agent(0).lr, agent(0).critics), (1e-4, 1));
    assert_eq!((agent(1).lr, agent(1).critics), (1e-3, 2));
    assert_eq!(sweep.runs[3].config.run.name, "smoke_two_critics");
    let methods: Vec<&str> = sweep.methods().iter().map(|(m, _)| *m).collect();
    assert_eq!(methods, ["smoke_low_lr", "smoke_two_critics"]);
}

#[test]
fn a_changed_sweep_file_is_refused_unless_forced_but_more_seeds_extend_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "seeds = [0, 1]\n[set]\n\"agent.lr\" = 3e-4\n");
    Sweep::open(&file, false).unwrap();
    let list = tmp.path().join("out/runs.json");
    let before = std::fs::read(&list).unwrap();

    sweep_file(tmp.path(), "seeds = [0, 1]\n[set]\n\"agent.lr\" = 1e-3\n");
    let e = Sweep::open(&file, false).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, SweepError::Changed { .. }), "{msg}");
    assert!(
        msg.contains("run 0 (smoke/seed-0): agent.lr would change from 0.0003 to 0.001"),
        "{msg}"
    );
    assert!(msg.contains("--force"), "{msg}");
    assert_eq!(
        std::fs::read(&list).unwrap(),
        before,
        "a refused sweep leaves the list"
    );

    sweep_file(tmp.path(), "seeds = [1, 0]\n[set]\n\"agent.lr\" = 3e-4\n");
    let msg = Sweep::open(&file, false).unwrap_err().to_string();
    assert!(
        msg.contains("run 0 would be smoke/seed-1 instead of smoke/seed-0"),
        "{msg}"
    );

    sweep_file(tmp.path(), "seeds = [0]\n[set]\n\"agent.lr\" = 3e-4\n");
    let msg = Sweep::open(&file, false).unwrap_err().to_string();
    assert!(
        msg.contains("run 1 (smoke/seed-1) would be dropped"),
        "{msg}"
    );

    sweep_file(
        tmp.path(),
        "seeds = [0, 1, 2]\n[set]\n\"agent.lr\" = 3e-4\n",
    );
    assert_eq!(Sweep::open(&file, false).unwrap().runs.len(), 3);

    sweep_file(tmp.path(), "seeds = [0]\n[set]\n\"agent.lr\" = 1e-3\n");
    assert_eq!(Sweep::open(&file, true).unwrap().runs.len(), 1);
    assert_eq!(Sweep::open(&file, false).unwrap().runs.len(), 1);
}

#[test]
fn bad_sweep_files_are_one_line_errors_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    for (body, expected) in [
        ("seeds = [0]\nsead = 1\n", "unknown field `sead`"),
        ("seeds = []\n", "at least one seed"),
        ("seeds = \"5\"\n", "expected a list or \"A..B\""),
        ("seeds = [1, 1]\n", "seed 1 is listed twice"),
        (
            "seeds = [0]\n[set]\n\"training.batch_sise\" = 3\n",
            "[set] training.batch_sise = 3: training.batch_sise: unknown key",
        ),
        (
            "seeds = [0]\n[grid]\n\"agent.num_atoms\" = [11, 1]\n",
            "[grid] agent.num_atoms = 1: agent.num_atoms = 1: must be ≥ 2",
        ),
        (
            "seeds = [0]\n[grid]\n\"agent.lr\" = 3e-4\n",
            "expected a non-empty list",
        ),
        (
            "seeds = [0]\n[set]\n\"run.seed\" = 3\n",
            "run.seed: set by the sweep",
        ),
        (
            "seeds = [0]\n[grid]\n\"agent.hidden_dim\" = [32, 32]\n",
            "would share the directory smoke/agent.hidden_dim=32/seed-0",
        ),
        (
            "seeds = [0]\n[[variants]]\nname = \"a\"\n[[variants]]\nname = \"a\"\n",
            "[[variants]] name = \"a\" is given twice",
        ),
        (
            "seeds = [0]\n[[variants]]\nname = \"../a\"\n",
            "[[variants]] name = \"../a\": expected letters",
        ),
        (
            "seeds = [0]\n[[variants]]\nname = \"a\"\nset = { \"run.name\" = \"b\" }\n",
            "run.name is the variant's name",
        ),
        (
            "seeds = [0]\n[[variants]]\nname = \"a\"\nset = { \"run.seed\" = 3 }\n",
            "run.seed: set by the sweep",
        ),
        (
            "seeds = [0]\n[[variants]]\nname = \"a\"\nset = { \"agent.critics\" = 0 }\n",
            "[[variants]] a: agent.critics = 0: agent.critics = 0: must be 1 to 8",
        ),
        (
            "seeds = [0]\n[[variants]]\nnam = \"a\"\n",
            "unknown field `nam`",
        ),
    ] {
        let file = sweep_file(tmp.path(), body);
        let msg = Sweep::open(&file, true).unwrap_err().to_string();
        assert!(msg.contains(expected), "{body}: {msg}");
        assert!(msg.contains("sweep.toml"), "{body}: {msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
    }
    let file = tmp.path().join("sweep.toml");
    std::fs::write(
        &file,
        "output_dir = \"o\"\nseeds = [0]\nconfigs = [\"missing.toml\"]\n",
    )
    .unwrap();
    let msg = Sweep::open(&file, true).unwrap_err().to_string();
    assert!(
        msg.contains("configs[0]") && msg.contains("missing.toml"),
        "{msg}"
    );
}

#[test]
fn the_lock_is_exclusive_and_a_dead_holders_lock_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("run.lock");
    let lock = RunLock::acquire(&path)
        .unwrap()
        .expect("a free lock is taken");
    let who = RunLock::acquire(&path)
        .unwrap()
        .expect_err("a held lock is refused");
    assert!(
        who.contains(&format!("pid {}", std::process::id())),
        "{who}"
    );
    drop(lock);
    assert!(!path.exists(), "releasing removes the file");

    // A lock left by a process that is gone (same host) is stale.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let stale = format!("{{\"host\":{:?},\"pid\":{dead}}}", host.trim());
    std::fs::write(&path, &stale).unwrap();
    let lock = RunLock::acquire(&path)
        .unwrap()
        .expect("a stale lock is taken over");
    assert_ne!(std::fs::read_to_string(&path).unwrap(), stale);
    drop(lock);

    // Another host's lock with a fresh heartbeat is honoured; an old one is stale.
    std::fs::write(&path, "{\"host\":\"node-elsewhere\",\"pid\":1}").unwrap();
    let who = RunLock::acquire(&path).unwrap().unwrap_err();
    assert_eq!(who, "node-elsewhere pid 1");
    let old = std::time::SystemTime::now() - brc_train::sweep::STALE_AFTER * 2;
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert!(RunLock::acquire(&path).unwrap().is_ok());
}

/// Asks the run to stop after `after` episodes, as SIGTERM does.
struct StopAfter(usize, usize);

impl Progress for StopAfter {
    fn episode(&mut self, _: &EpisodeRecord, _: usize) {
        self.1 += 1;
    }
    fn stop_requested(&mut self) -> bool {
        self.1 >= self.0
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_uninterrupted_metrics_and_is_then_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "seeds = [0]\n");
    let sweep = Sweep::open(&file, false).unwrap();
    let dir = sweep.run_dir(&sweep.runs[0]);

    // Stop after episode 4: not at a checkpoint interval (3) nor an evaluation.
    let e = execute_run(&sweep, 0, &mut StopAfter(4, 0)).unwrap_err();
    assert!(e.is_interrupted(), "{e}");
    match e {
        SweepError::Train { source, .. } => match *source {
            TrainError::Interrupted { episodes, .. } => assert_eq!(episodes, 4),
            other => panic!("expected an interruption, got {other}"),
        },
        other => panic!("expected an interruption, got {other}"),
    }
    assert_eq!(sweep.state(&sweep.runs[0]).status, RunStatus::Unfinished);
    assert!(
        !dir.join("run.lock").exists(),
        "the lock goes with the executor"
    );
    match execute_run(&sweep, 0, &mut ()).unwrap() {
        RunOutcome::Trained { resumed, summary } => {
            assert!(resumed);
            assert_eq!(summary.episodes, 6);
        }
        other => panic!("expected training, got {other:?}"),
    }
    assert_eq!(sweep.state(&sweep.runs[0]).status, RunStatus::Done);

    assert_logs_match_uninterrupted(&sweep.runs[0].config, &dir, &tmp.path().join("whole"));
    let evals: Vec<EvalRecord> = std::fs::read_to_string(dir.join("evals.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(evals.last().unwrap().is_final);

    // Done: nothing is rewritten.
    let summary = dir.join("summary.json");
    let stamp = std::fs::metadata(&summary).unwrap().modified().unwrap();
    assert!(matches!(
        execute_run(&sweep, 0, &mut ()).unwrap(),
        RunOutcome::AlreadyDone
    ));
    assert_eq!(
        std::fs::metadata(&summary).unwrap().modified().unwrap(),
        stamp
    );

    // A run another executor holds is left alone.
    let lock = RunLock::acquire(&dir.join("run.lock")).unwrap().unwrap();
    std::fs::remove_file(&summary).unwrap();
    assert!(matches!(
        execute_run(&sweep, 0, &mut ()).unwrap(),
        RunOutcome::Busy(_)
    ));
    assert!(sweep.state(&sweep.runs[0]).running.is_some());
    drop(lock);
}

#[test]
fn a_finished_run_trained_elsewhere_is_adopted_when_it_trains_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "seeds = [0, 1]\n");
    let sweep = Sweep::open(&file, false).unwrap();
    // Seed 0 trained under another output directory, in the published layout
    // (`<published>/<name>/seed-<k>`); seed 1's twin there is another run (seed 2's config).
    let published = tmp.path().join("published");
    for (run, seed) in [(&sweep.runs[0], 0), (&sweep.runs[1], 2)] {
        let mut config = run.config.clone();
        config.run.output_dir = published.clone();
        config.run.seed = seed;
        let opts = brc_train::TrainOptions {
            run_dir: published.join(&run.dir),
            force: false,
            resume: false,
        };
        brc_train::train(&config, &opts, &mut ()).unwrap();
    }
    // A run already started in the sweep is left alone, even when its twin is done.
    let started = tmp.path().join("started");
    std::fs::create_dir_all(started.join("smoke")).unwrap();
    std::fs::rename(published.join("smoke/seed-0"), started.join("smoke/seed-0")).unwrap();
    std::fs::create_dir_all(sweep.run_dir(&sweep.runs[0])).unwrap();
    assert!(sweep.adopt(&started).unwrap().is_empty());
    std::fs::remove_dir(sweep.run_dir(&sweep.runs[0])).unwrap();

    let adopted = sweep.adopt(&started).unwrap();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].index, 0);
    let dir = sweep.run_dir(&sweep.runs[0]);
    assert_eq!(adopted[0].to, dir);
    let twin = started.join("smoke/seed-0");
    assert_eq!(
        tree(&dir),
        tree(&twin),
        "the same files, subdirectories included"
    );
    for f in ["summary.json", "episodes.jsonl", "config.toml"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(twin.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(sweep.state(&sweep.runs[0]).status, RunStatus::Done);
    assert!(matches!(
        execute_run(&sweep, 0, &mut ()).unwrap(),
        RunOutcome::AlreadyDone
    ));
    // Nothing is pending with a twin any more; the other seed's twin trains another run.
    assert!(sweep.adopt(&started).unwrap().is_empty());
    assert!(sweep.adopt(&published).unwrap().is_empty());
    assert_eq!(sweep.state(&sweep.runs[1]).status, RunStatus::Pending);
    assert!(!sweep.run_dir(&sweep.runs[1]).exists());
}

#[test]
fn a_parked_run_is_small_and_resumes_in_another_sweep_to_the_uninterrupted_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "seeds = [0, 1]\n");
    let sweep = Sweep::open(&file, false).unwrap();
    // Stopped after episode 5: checkpoints ep3 (the interval) and ep5 (the stop), and best.
    let e = execute_run(&sweep, 0, &mut StopAfter(5, 0)).unwrap_err();
    assert!(e.is_interrupted(), "{e}");
    let dir = sweep.run_dir(&sweep.runs[0]);
    let original = tree(&dir);
    assert!(original.contains(&PathBuf::from("checkpoints/ep3/agent.safetensors")));

    // Seed 1 never started: only seed 0 is parked, without its older checkpoint.
    let parked_dir = tmp.path().join("parked");
    let parked = sweep.park(&parked_dir).unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].index, parked[0].episodes), (0, 5));
    assert_eq!(parked[0].to, parked_dir.join(&sweep.runs[0].dir));
    let expected: Vec<PathBuf> = original
        .iter()
        .filter(|p| !p.starts_with("checkpoints/ep3"))
        .cloned()
        .collect();
    let copy = tree(&parked[0].to);
    assert_eq!(copy, expected);
    for kept in [
        "checkpoints/ep5/replay.safetensors",
        "checkpoints/best/agent.safetensors",
        "episodes.jsonl",
    ] {
        assert!(copy.contains(&PathBuf::from(kept)), "{kept}: {copy:?}");
    }
    // Parking again replaces the copy; a run an executor holds is not parked.
    assert_eq!(sweep.park(&parked_dir).unwrap().len(), 1);
    let names: Vec<_> = std::fs::read_dir(parked_dir.join("smoke"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["seed-0"], "no partial copy is left behind");
    assert_eq!(tree(&parked[0].to), copy);
    let lock = RunLock::acquire(&dir.join("run.lock")).unwrap().unwrap();
    assert!(sweep
        .park(&tmp.path().join("elsewhere"))
        .unwrap()
        .is_empty());
    drop(lock);

    // The same sweep on another machine (another output directory) adopts and resumes it.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let moved = Sweep::open(&sweep_file(&other, "seeds = [0, 1]\n"), false).unwrap();
    let adopted = moved.adopt(&parked_dir).unwrap();
    assert_eq!(adopted.len(), 1);
    assert_eq!(moved.state(&moved.runs[0]).status, RunStatus::Unfinished);
    assert_eq!(moved.state(&moved.runs[1]).status, RunStatus::Pending);
    match execute_run(&moved, 0, &mut ()).unwrap() {
        RunOutcome::Trained { resumed, summary } => {
            assert!(resumed);
            assert_eq!(summary.episodes, 6);
        }
        other => panic!("expected training, got {other:?}"),
    }
    let resumed = moved.run_dir(&moved.runs[0]);
    assert_logs_match_uninterrupted(&sweep.runs[0].config, &resumed, &tmp.path().join("whole"));
}

#[test]
fn a_failed_run_is_marked_failed_with_its_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(
        tmp.path(),
        "seeds = [0]\n[set]\n\"training.episodes_per_task\" = 3\n[grid]\n\"agent.lr\" = [1e30]\n",
    );
    let sweep = Sweep::open(&file, false).unwrap();
    let e = execute_run(&sweep, 0, &mut ()).unwrap_err();
    // The run names itself; the cause follows in the error chain, once.
    let run = e.to_string();
    assert!(
        run.starts_with("run 0 (") && run.ends_with("/seed-0)"),
        "{run}"
    );
    let cause = std::error::Error::source(&e).unwrap().to_string();
    assert!(cause.contains("non-finite loss"), "{cause}");
    let state = sweep.state(&sweep.runs[0]);
    assert_eq!(state.status, RunStatus::Failed);
    assert!(state.error.unwrap().contains("non-finite loss"));
    assert!(matches!(
        execute_run(&sweep, 7, &mut ()),
        Err(SweepError::NoSuchRun { index: 7, count: 1 })
    ));
}

#[test]
fn every_shipped_sweep_file_expands_into_valid_runs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/sweeps");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("main.toml")), "{files:?}");
    for file in &files {
        let sweep = Sweep::expand(file).unwrap_or_else(|e| panic!("{e}"));
        assert!(!sweep.runs.is_empty(), "{}", file.display());
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.starts_with('#'),
            "{} needs a header comment",
            file.display()
        );
        // Shipped sweeps write under results/sweeps/<file stem>/.
        let stem = file.file_stem().unwrap();
        assert!(
            sweep
                .output_dir
                .ends_with(Path::new("results/sweeps").join(stem)),
            "{}: output_dir {}",
            file.display(),
            sweep.output_dir.display()
        );
        let mut dirs: Vec<&PathBuf> = sweep.runs.iter().map(|r| &r.dir).collect();
        dirs.sort();
        dirs.dedup();
        assert_eq!(
            dirs.len(),
            sweep.runs.len(),
            "{}: run directories repeat",
            file.display()
        );
    }
}

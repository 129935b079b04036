//! Grouping runs into methods: one config's runs over seeds, or one of the predecessor's logs.

use std::path::{Path, PathBuf};

use crate::runs::{
    load_predecessor, load_predecessor_dir, load_run, use_evaluation_report, Run, RunError,
};

/// One method: the runs of one config over its seeds (or a single run).
#[derive(Debug, Clone, PartialEq)]
pub struct Method {
    /// Its name in tables and legends (the runs' `run.name`, or `<name> (predecessor)`).
    pub name: String,
    /// Its runs, in seed order.
    pub runs: Vec<Run>,
    /// Whether it comes from the earlier Python project's logs.
    pub predecessor: bool,
}

impl Method {
    /// Task names of its runs, in training order.
    pub fn tasks(&self) -> &[String] {
        &self.runs[0].tasks
    }

    /// Trainable parameters, when known.
    pub fn parameters(&self) -> Option<usize> {
        self.runs.iter().find_map(|r| r.parameters)
    }

    /// VarShare's parameters after pruning ([`Run::pruned_parameters`]), the mean over the
    /// seeds that log them.
    pub fn pruned_parameters(&self) -> Option<usize> {
        let counts: Vec<usize> = self
            .runs
            .iter()
            .filter_map(Run::pruned_parameters)
            .collect();
        if counts.is_empty() {
            return None;
        }
        Some((counts.iter().sum::<usize>() as f64 / counts.len() as f64).round() as usize)
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> RunError {
    RunError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads what a path on the command line holds: a run directory (`episodes.jsonl`), a
/// directory of seed runs (subdirectories that are run directories, e.g. `seed-0/`), one of the
/// predecessor's `metrics.json` files, or its `metrics/` directory (several methods).
///
/// With `final_evaluation`, each of our runs' final evaluation is read from that
/// `brc evaluate --json` report in its run directory instead of its log (the predecessor's
/// logs have no such reports and are refused).
pub fn load_methods(path: &Path, final_evaluation: Option<&str>) -> Result<Vec<Method>, RunError> {
    let load = |dir: &Path| -> Result<Run, RunError> {
        let mut run = load_run(dir)?;
        if let Some(name) = final_evaluation {
            use_evaluation_report(&mut run, &dir.join(name))?;
        }
        Ok(run)
    };
    let ours_only = || {
        invalid(
            path,
            "the predecessor's logs have no evaluation reports to take the final evaluation from",
        )
    };
    if path.is_file() {
        if final_evaluation.is_some() {
            return Err(ours_only());
        }
        let run = load_predecessor(path)?;
        return Ok(vec![method_of(path, vec![run], true)?]);
    }
    if !path.is_dir() {
        return Err(invalid(path, "no such run directory or metrics file"));
    }
    if path.join("episodes.jsonl").is_file() {
        return Ok(vec![method_of(path, vec![load(path)?], false)?]);
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|source| RunError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("episodes.jsonl").is_file())
        .collect();
    if !subdirs.is_empty() {
        subdirs.sort();
        let mut runs = subdirs
            .iter()
            .map(|d| load(d))
            .collect::<Result<Vec<_>, _>>()?;
        runs.sort_by_key(|r| (r.seed, r.label.clone()));
        return Ok(vec![method_of(path, runs, false)?]);
    }
    let has_json = std::fs::read_dir(path)
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .unwrap_or(false);
    if has_json {
        if final_evaluation.is_some() {
            return Err(ours_only());
        }
        let runs = load_predecessor_dir(path).map_err(|e| {
            invalid(
                path,
                format!("not a run directory, a directory of seed runs, or the predecessor's metrics ({e})"),
            )
        })?;
        return runs
            .into_iter()
            .map(|r| method_of(path, vec![r], true))
            .collect();
    }
    Err(invalid(
        path,
        "not a run directory, a directory of seed runs, or the predecessor's metrics",
    ))
}

/// Checks that the runs of one method agree (one name, the same tasks, at least one episode).
fn method_of(path: &Path, runs: Vec<Run>, predecessor: bool) -> Result<Method, RunError> {
    let first = &runs[0];
    for r in &runs {
        if r.episodes.is_empty() {
            return Err(invalid(
                path,
                format!("run {} has no complete episode yet", r.label),
            ));
        }
        if r.method != first.method {
            return Err(invalid(
                path,
                format!(
                    "runs of different methods in one directory: {} is `{}`, {} is `{}`",
                    first.label, first.method, r.label, r.method
                ),
            ));
        }
        if r.tasks != first.tasks {
            return Err(invalid(
                path,
                format!(
                    "runs with different tasks: {} trains {:?}, {} trains {:?}",
                    first.label, first.tasks, r.label, r.tasks
                ),
            ));
        }
    }
    Ok(Method {
        name: first.method.clone(),
        runs,
        predecessor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_run(dir: &Path, name: &str, seed: u64, tasks: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        let lines: String = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                format!(
                    "{{\"episode\":{i},\"task\":\"{t}\",\"return\":1.0,\"env_steps\":{},\"updates\":0}}\n",
                    10 * (i + 1)
                )
            })
            .collect();
        std::fs::write(dir.join("episodes.jsonl"), lines).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!("[run]\nname = \"{name}\"\nseed = {seed}\n[agent]\nkind = \"brc\"\n"),
        )
        .unwrap();
    }

    #[test]
    fn a_seeds_directory_is_one_method_in_seed_order() {
        let tmp = tempfile::tempdir().unwrap();
        for s in [2, 0, 1] {
            write_run(
                &tmp.path().join(format!("seed-{s}")),
                "brc",
                s,
                &["standard", "windy"],
            );
        }
        let m = load_methods(tmp.path(), None).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "brc");
        let seeds: Vec<_> = m[0].runs.iter().map(|r| r.seed).collect();
        assert_eq!(seeds, [Some(0), Some(1), Some(2)]);
        assert_eq!(m[0].tasks(), ["standard", "windy"]);
        assert!(!m[0].runs[0].finished, "no summary: still running");
    }

    #[test]
    fn inconsistent_or_empty_inputs_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        write_run(&tmp.path().join("seed-0"), "brc", 0, &["standard", "windy"]);
        write_run(
            &tmp.path().join("seed-1"),
            "shared_dqn",
            1,
            &["standard", "windy"],
        );
        let e = load_methods(tmp.path(), None).unwrap_err().to_string();
        assert!(e.contains("different methods"), "{e}");

        write_run(&tmp.path().join("seed-1"), "brc", 1, &["standard"]);
        let e = load_methods(tmp.path(), None).unwrap_err().to_string();
        assert!(e.contains("different tasks"), "{e}");

        std::fs::write(tmp.path().join("seed-1/episodes.jsonl"), "").unwrap();
        let e = load_methods(tmp.path(), None).unwrap_err().to_string();
        assert!(e.contains("no complete episode"), "{e}");

        let empty = tempfile::tempdir().unwrap();
        let e = load_methods(empty.path(), None).unwrap_err().to_string();
        assert!(e.contains("not a run directory"), "{e}");
        let e = load_methods(&empty.path().join("nope"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such"), "{e}");
    }

    #[test]
    fn the_predecessor_metrics_directory_gives_its_methods() {
        let base =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/predecessor/metrics");
        if !base.is_dir() {
            eprintln!("skipping: {} not found", base.display());
            return;
        }
        let methods = load_methods(&base, None).unwrap();
        let e = load_methods(&base, Some("evaluation-best-all-seed2000000-n100.json"));
        assert!(e.unwrap_err().to_string().contains("predecessor"));
        let names: Vec<&str> = methods.iter().map(|m| m.name.as_str()).collect();
        assert!(names.contains(&"shared_dqn (predecessor)"), "{names:?}");
        let brc = methods
            .iter()
            .find(|m| m.name == "brc (predecessor)")
            .unwrap();
        assert_eq!(brc.parameters(), Some(296_884));
        let ind = methods
            .iter()
            .find(|m| m.name == "independent_dqn (predecessor)")
            .unwrap();
        assert_eq!(ind.tasks(), ["standard", "windy", "heavy"]);
        assert_eq!(ind.runs[0].episodes.len(), 4500);
        assert_eq!(ind.runs[0].evaluations[0].mean_return.len(), 3);
    }
}

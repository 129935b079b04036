//! The expanded run list, written once into the output directory so that a later edit of the
//! sweep file cannot silently renumber runs (a running Slurm array addresses them by index).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{io, SweepError, SweepRun};
use crate::run_dir::write_atomic;

#[derive(Serialize, Deserialize)]
struct RunList {
    runs: Vec<SweepRun>,
}

/// Writes the list at `path` when there is none (or `force`), accepts runs appended at the end,
/// and refuses any other difference from the stored list.
pub(super) fn check(path: &Path, planned: &[SweepRun], force: bool) -> Result<(), SweepError> {
    if path.is_file() && !force {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let stored: RunList = serde_json::from_str(&text).map_err(|e| SweepError::Changed {
            list: path.to_path_buf(),
            change: format!("the list cannot be read ({e})"),
        })?;
        if stored.runs == planned {
            return Ok(());
        }
        if let Some(change) = first_change(&stored.runs, planned) {
            return Err(SweepError::Changed {
                list: path.to_path_buf(),
                change,
            });
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let list = RunList {
        runs: planned.to_vec(),
    };
    let text = serde_json::to_string_pretty(&list).expect("run lists serialize");
    write_atomic(path, text.as_bytes()).map_err(io(path))
}

/// The first listed run that the planned list drops, moves or changes, in words.
fn first_change(stored: &[SweepRun], planned: &[SweepRun]) -> Option<String> {
    for old in stored {
        let Some(new) = planned.get(old.index) else {
            return Some(format!(
                "run {} ({}) would be dropped (the sweep now has {} runs, the list {})",
                old.index,
                old.dir.display(),
                planned.len(),
                stored.len()
            ));
        };
        if new.dir != old.dir {
            return Some(format!(
                "run {} would be {} instead of {}",
                old.index,
                new.dir.display(),
                old.dir.display()
            ));
        }
        if new.config != old.config {
            let a = serde_json::to_value(&old.config).expect("configs serialize");
            let b = serde_json::to_value(&new.config).expect("configs serialize");
            let (key, was, now) = first_difference(&a, &b, String::new())
                .unwrap_or_else(|| ("config".into(), "one value".into(), "another".into()));
            return Some(format!(
                "run {} ({}): {key} would change from {was} to {now}",
                old.index,
                old.dir.display()
            ));
        }
    }
    None
}

/// The dotted path of the first value that differs, with both values.
fn first_difference(a: &Value, b: &Value, path: String) -> Option<(String, String, String)> {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k)));
            for k in keys {
                let missing = Value::String("(none)".into());
                let (va, vb) = (x.get(k).unwrap_or(&missing), y.get(k).unwrap_or(&missing));
                if let Some(d) = first_difference(va, vb, join(k)) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_difference(va, vb, format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some((path, a.to_string(), b.to_string())),
    }
}

//! The sweep file (TOML) and its expansion into runs: every (config, variant, grid point,
//! seed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{SweepError, SweepRun};
use crate::config::{load_config, ConfigError};

/// The sweep file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    /// Where the runs go, relative to the sweep file's directory (or absolute).
    output_dir: PathBuf,
    /// `[0, 1, 2]` or `"0..3"`.
    seeds: Seeds,
    /// Run configs, relative to the sweep file's directory (or absolute).
    configs: Vec<PathBuf>,
    /// Overrides applied to every run, exactly like `--set key=value`.
    #[serde(default)]
    set: toml::Table,
    /// Overrides with several values: every combination, for every config.
    #[serde(default)]
    grid: toml::Table,
    /// Named one-change variants of every config (`[[variants]]`), each run under its own
    /// `run.name`: an ablation's levers one at a time, where `[grid]` would cross them.
    #[serde(default)]
    variants: Vec<Variant>,
}

/// One `[[variants]]` entry: a name (the runs' `run.name`) and its overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Variant {
    name: String,
    #[serde(default)]
    set: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Seeds {
    List(Vec<u64>),
    Range(String),
}

/// Keys the sweep itself decides; `[set]` and `[grid]` may not touch them.
const SWEEP_KEYS: [&str; 2] = ["run.seed", "run.output_dir"];

/// The sweep file at `path`, expanded and validated: the output directory (resolved against the
/// file's directory) and the runs in index order. Seeds vary slowest, so adding seeds appends
/// runs without renumbering the earlier ones; within a seed, configs in file order and grid
/// points in order (keys sorted, values in file order).
pub(super) fn expand(path: &Path) -> Result<(PathBuf, Vec<SweepRun>), SweepError> {
    let bad = |message: String| SweepError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let file: SweepFile = toml::from_str(&text).map_err(|e| bad(e.message().to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let output_dir = lexical(&base.join(&file.output_dir));
    let seeds = seeds(&file.seeds).map_err(bad)?;
    if file.configs.is_empty() {
        return Err(bad("configs: at least one config is needed".into()));
    }
    let variant_keys = file.variants.iter().flat_map(|v| v.set.keys());
    for key in file.set.keys().chain(file.grid.keys()).chain(variant_keys) {
        if SWEEP_KEYS.contains(&key.as_str()) {
            return Err(bad(format!(
                "{key}: set by the sweep (seeds and output_dir), not by [set], [grid] or [[variants]]"
            )));
        }
    }
    check_variants(&file.variants).map_err(bad)?;
    let set: Vec<(String, String)> = file
        .set
        .iter()
        .map(|(k, v)| {
            (
                format!("{k}={v}"),
                format!("{} [set] {k} = {v}", path.display()),
            )
        })
        .collect();
    let points = grid_points(&file.grid).map_err(bad)?;

    // Without [[variants]], each config once as it is.
    let variants: Vec<Option<&Variant>> = if file.variants.is_empty() {
        vec![None]
    } else {
        file.variants.iter().map(Some).collect()
    };

    // Validate every (config, variant, grid point) once; seeds only change run.seed.
    let mut methods = Vec::new();
    for (c, config_file) in file.configs.iter().enumerate() {
        let config_path = lexical(&base.join(config_file));
        for (variant, point) in variants
            .iter()
            .flat_map(|v| points.iter().map(move |p| (*v, p)))
        {
            let variant_set = variant_overrides(path, variant);
            let set: Vec<&(String, String)> = set.iter().chain(&variant_set).collect();
            let grid: Vec<(String, String)> = point
                .iter()
                .map(|(k, v)| {
                    let origin = format!("{} [grid] {k} = {v}", path.display());
                    (format!("{k}={v}"), origin)
                })
                .collect();
            let overrides: Vec<String> = set
                .iter()
                .copied()
                .chain(&grid)
                .map(|(o, _)| o.clone())
                .collect();
            let config = load_config(&config_path, &overrides).map_err(|e| {
                let origin = set
                    .iter()
                    .copied()
                    .chain(&grid)
                    .find(|(o, _)| e.origin == format!("--set {o}"))
                    .map_or_else(|| e.origin.clone(), |(_, origin)| origin.clone());
                SweepError::Config {
                    sweep: path.to_path_buf(),
                    entry: format!("configs[{c}]"),
                    error: Box::new(ConfigError { origin, ..e }),
                }
            })?;
            let label: Vec<String> = point
                .iter()
                .map(|(k, v)| format!("{k}={}", plain(v)))
                .collect();
            let mut dir = PathBuf::from(&config.run.name);
            let mut method = config.run.name.clone();
            if !label.is_empty() {
                dir.push(label.join(",").replace(['/', '\\'], "_"));
                method = format!("{method} {}", label.join(","));
            }
            methods.push((config_file.clone(), dir, method, point.clone(), config));
        }
    }
    let mut runs = Vec::new();
    for &seed in &seeds {
        for (config_file, dir, method, point, config) in &methods {
            let mut config = config.clone();
            config.run.seed = seed;
            runs.push(SweepRun {
                index: runs.len(),
                dir: dir.join(format!("seed-{seed}")),
                method: method.clone(),
                config_file: config_file.clone(),
                seed,
                grid: point.iter().map(|(k, v)| (k.clone(), plain(v))).collect(),
                config,
            });
        }
    }
    let mut seen: BTreeMap<&Path, usize> = BTreeMap::new();
    for run in &runs {
        if let Some(first) = seen.insert(&run.dir, run.index) {
            return Err(bad(format!(
                "runs {first} and {} would share the directory {} (give the configs different run.name values)",
                run.index,
                run.dir.display()
            )));
        }
    }
    Ok((output_dir, runs))
}

/// Variant names: non-empty, usable as a directory name, unique; `run.name` is the name.
fn check_variants(variants: &[Variant]) -> Result<(), String> {
    for (i, v) in variants.iter().enumerate() {
        let ok = !v.name.is_empty()
            && v.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            && v.name != "."
            && v.name != "..";
        if !ok {
            return Err(format!(
                "[[variants]] name = {:?}: expected letters, digits, `_`, `-` or `.` (it names the runs' directory)",
                v.name
            ));
        }
        if variants[..i].iter().any(|w| w.name == v.name) {
            return Err(format!("[[variants]] name = {:?} is given twice", v.name));
        }
        if v.set.contains_key("run.name") {
            return Err(format!(
                "[[variants]] {}: run.name is the variant's name, not one of its overrides",
                v.name
            ));
        }
    }
    Ok(())
}

/// A variant's overrides with their origins, its name as `run.name` first.
fn variant_overrides(path: &Path, variant: Option<&Variant>) -> Vec<(String, String)> {
    let Some(v) = variant else {
        return Vec::new();
    };
    let origin = |what: String| format!("{} [[variants]] {}: {what}", path.display(), v.name);
    let name = toml::Value::String(v.name.clone());
    std::iter::once((format!("run.name={name}"), origin(format!("name = {name}"))))
        .chain(
            v.set
                .iter()
                .map(|(k, val)| (format!("{k}={val}"), origin(format!("{k} = {val}")))),
        )
        .collect()
}

/// The seeds of `seeds = [..]` or `seeds = "a..b"`: at least one, no repeats.
fn seeds(seeds: &Seeds) -> Result<Vec<u64>, String> {
    let list = match seeds {
        Seeds::List(list) => list.clone(),
        Seeds::Range(s) => {
            let range = s.split_once("..").and_then(|(a, b)| {
                Some(a.trim().parse::<u64>().ok()?..b.trim().parse::<u64>().ok()?)
            });
            range
                .ok_or_else(|| {
                    format!("seeds = {s:?}: expected a list or \"A..B\", e.g. \"0..5\"")
                })?
                .collect()
        }
    };
    if list.is_empty() {
        return Err("seeds: at least one seed is needed".into());
    }
    for (i, s) in list.iter().enumerate() {
        if list[..i].contains(s) {
            return Err(format!("seeds: seed {s} is listed twice"));
        }
    }
    Ok(list)
}

/// Every combination of the grid's values (keys sorted); one empty point without a grid.
fn grid_points(grid: &toml::Table) -> Result<Vec<Vec<(String, toml::Value)>>, String> {
    let mut points: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    let mut keys: Vec<&String> = grid.keys().collect();
    keys.sort();
    for key in keys {
        let values = match &grid[key] {
            toml::Value::Array(values) if !values.is_empty() => values,
            other => {
                return Err(format!(
                    "[grid] {key} = {other}: expected a non-empty list of values"
                ))
            }
        };
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.push((key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    Ok(points)
}

/// A grid value as it reads in a directory name: strings without quotes.
fn plain(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `path` with `a/..` pairs and `.` removed without looking at the file system, so paths
/// relative to the sweep file read as the user would write them (`results/x`, not
/// `configs/sweeps/../../results/x`).
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

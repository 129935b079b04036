//! Method groups of a comparison: which methods share a curve figure, so that none shows more
//! than [`MAX_LINES`] curves. Groups come from the run names (baselines, BRC variants,
//! gradient surgery, VarShare) or from a group file, and a group larger than that is split.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::methods::Method;

/// The most curves one panel shows: beyond ~8, curves and colours stop being told apart.
pub const MAX_LINES: usize = 8;

/// Methods shown together: a name and indices into the comparison's methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Name in titles and file names.
    pub name: String,
    /// Indices into the methods, in comparison order.
    pub members: Vec<usize>,
}

/// A group as a group file names it: methods by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Group name.
    pub name: String,
    /// Method names.
    pub methods: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    group: Vec<GroupSpec>,
}

/// Why groups or a method selection cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The group file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The group file is not valid TOML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (line and column included).
        message: String,
    },
    /// A name matches no method of the comparison.
    #[error("no method `{name}` in this comparison (it has: {known})")]
    UnknownMethod {
        /// The name asked for.
        name: String,
        /// The comparison's method names, comma-separated.
        known: String,
    },
}

/// Reads a group file:
///
/// ```toml
/// [[group]]
/// name = "baselines"
/// methods = ["shared_dqn", "independent_dqn"]
/// ```
pub fn read_group_file(path: &Path) -> Result<Vec<GroupSpec>, GroupError> {
    let text = std::fs::read_to_string(path).map_err(|source| GroupError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: GroupFile = toml::from_str(&text).map_err(|e| GroupError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().lines().collect::<Vec<_>>().join(" "),
    })?;
    Ok(file.group)
}

fn known(methods: &[Method]) -> String {
    methods
        .iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn index_of(methods: &[Method], name: &str) -> Result<usize, GroupError> {
    methods
        .iter()
        .position(|m| m.name == name)
        .ok_or_else(|| GroupError::UnknownMethod {
            name: name.to_string(),
            known: known(methods),
        })
}

/// The methods named in `names`, in that order (`brc compare --methods a,b,c`).
pub fn select_methods(methods: Vec<Method>, names: &[String]) -> Result<Vec<Method>, GroupError> {
    let order = names
        .iter()
        .map(|n| index_of(&methods, n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut slots: Vec<Option<Method>> = methods.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// The family a run name belongs to; the predecessor's rows join their algorithm's family.
pub fn family(name: &str) -> &'static str {
    let base = name.trim_end_matches(" (predecessor)").to_ascii_lowercase();
    const SURGERY: [&str; 6] = ["pcgrad", "cagrad", "gradnorm", "mgda", "nashmtl", "surgery"];
    if base.contains("varshare") {
        "VarShare"
    } else if SURGERY.iter().any(|s| base.contains(s)) {
        "gradient surgery"
    } else if base.starts_with("brc") {
        "BRC variants"
    } else {
        "baselines"
    }
}

/// Groups by run name ([`family`]), in the order baselines, BRC variants, gradient surgery,
/// VarShare; empty families are left out; each split to at most [`MAX_LINES`].
pub fn groups_by_name(methods: &[Method]) -> Vec<Group> {
    let order = ["baselines", "BRC variants", "gradient surgery", "VarShare"];
    let groups = order
        .iter()
        .map(|f| Group {
            name: f.to_string(),
            members: (0..methods.len())
                .filter(|&i| family(&methods[i].name) == *f)
                .collect(),
        })
        .filter(|g| !g.members.is_empty())
        .collect();
    split_large(groups)
}

/// Groups from a group file; methods it does not name form a last group, "other".
pub fn groups_from_specs(
    methods: &[Method],
    specs: &[GroupSpec],
) -> Result<Vec<Group>, GroupError> {
    let mut groups = Vec::new();
    let mut named = vec![false; methods.len()];
    for spec in specs {
        let members = spec
            .methods
            .iter()
            .map(|n| index_of(methods, n))
            .collect::<Result<Vec<_>, _>>()?;
        for &i in &members {
            named[i] = true;
        }
        groups.push(Group {
            name: spec.name.clone(),
            members,
        });
    }
    let rest: Vec<usize> = (0..methods.len()).filter(|&i| !named[i]).collect();
    if !rest.is_empty() {
        groups.push(Group {
            name: "other".into(),
            members: rest,
        });
    }
    Ok(split_large(groups))
}

/// Splits every group of more than [`MAX_LINES`] methods into as few near-equal parts as
/// keep each within it, named "name (1/2)", "name (2/2)".
fn split_large(groups: Vec<Group>) -> Vec<Group> {
    let mut out = Vec::new();
    for g in groups {
        let parts = g.members.len().div_ceil(MAX_LINES);
        if parts <= 1 {
            out.push(g);
            continue;
        }
        let size = g.members.len().div_ceil(parts);
        for (k, chunk) in g.members.chunks(size).enumerate() {
            out.push(Group {
                name: format!("{} ({}/{parts})", g.name, k + 1),
                members: chunk.to_vec(),
            });
        }
    }
    out
}

/// A file-name-safe form of a group name: "BRC variants (1/2)" → "brc_variants_1_of_2".
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.replace('/', " of ").chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    s.trim_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn methods(names: &[&str]) -> Vec<Method> {
        names
            .iter()
            .map(|n| Method {
                name: n.to_string(),
                runs: Vec::new(),
                predecessor: n.ends_with("(predecessor)"),
            })
            .collect()
    }

    #[test]
    fn run_names_give_the_four_families_in_order() {
        let m = methods(&[
            "varshare",
            "brc",
            "shared_dqn",
            "shared_pcgrad",
            "brc (predecessor)",
            "independent_dqn",
            "brc_tuned",
            "cagrad_brc",
        ]);
        let g = groups_by_name(&m);
        let names: Vec<&str> = g.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            ["baselines", "BRC variants", "gradient surgery", "VarShare"]
        );
        assert_eq!(g[0].members, [2, 5]);
        assert_eq!(g[1].members, [1, 4, 6]);
        assert_eq!(g[2].members, [3, 7], "surgery on a BRC network is surgery");
        assert_eq!(g[3].members, [0]);
    }

    #[test]
    fn large_groups_are_split_into_near_equal_parts() {
        let names: Vec<String> = (0..10).map(|i| format!("brc_t_{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let g = groups_by_name(&methods(&refs));
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name, "BRC variants (1/2)");
        assert_eq!(g[0].members, [0, 1, 2, 3, 4]);
        assert_eq!(g[1].members, [5, 6, 7, 8, 9]);
        let names: Vec<String> = (0..17).map(|i| format!("m{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let sizes: Vec<usize> = groups_by_name(&methods(&refs))
            .iter()
            .map(|g| g.members.len())
            .collect();
        assert_eq!(sizes, [6, 6, 5]);
        assert_eq!(slug("BRC variants (1/2)"), "brc_variants_1_of_2");
    }

    #[test]
    fn a_group_file_names_groups_and_the_rest_is_other() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("groups.toml");
        std::fs::write(
            &path,
            "[[group]]\nname = \"ours\"\nmethods = [\"b\", \"a\"]\n",
        )
        .unwrap();
        let m = methods(&["a", "b", "c"]);
        let g = groups_from_specs(&m, &read_group_file(&path).unwrap()).unwrap();
        assert_eq!(
            g,
            [
                Group {
                    name: "ours".into(),
                    members: vec![1, 0]
                },
                Group {
                    name: "other".into(),
                    members: vec![2]
                }
            ]
        );
        std::fs::write(&path, "[[group]]\nname = \"x\"\nmethods = [\"zz\"]\n").unwrap();
        let e = groups_from_specs(&m, &read_group_file(&path).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no method `zz`") && e.contains("a, b, c"), "{e}");
        std::fs::write(&path, "[[group]]\nname = \"x\"\nmembers = []\n").unwrap();
        let e = read_group_file(&path).unwrap_err().to_string();
        assert!(e.contains("groups.toml") && e.contains("members"), "{e}");
        assert!(read_group_file(&tmp.path().join("none.toml")).is_err());
    }

    #[test]
    fn selecting_methods_keeps_the_order_asked_for() {
        let m = methods(&["a", "b", "c"]);
        let s = select_methods(m.clone(), &["c".into(), "a".into()]).unwrap();
        let names: Vec<&str> = s.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["c", "a"]);
        let e = select_methods(m, &["d".into()]).unwrap_err().to_string();
        assert!(e.contains("no method `d`"), "{e}");
    }
}

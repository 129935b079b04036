//! Adopting runs from elsewhere: a sweep's pending run whose twin under another directory (a
//! published seed, `results/reference/<name>/seed-<k>`, or a parked unfinished run,
//! [`Sweep::park`]) trains the same run is copied in, so the sweep counts it instead of
//! training it again, or resumes it where it stopped.

use std::path::{Path, PathBuf};

use super::{io, status, RunStatus, Sweep, SweepError};

/// One run copied into a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Adoption {
    /// The run's index.
    pub index: usize,
    /// Where the finished run was.
    pub from: PathBuf,
    /// Its directory in the sweep.
    pub to: PathBuf,
}

impl Sweep {
    /// Copies into the sweep every finished or unfinished (resumable, not running) run under
    /// `from` at a pending run's relative directory (`<run.name>/[<grid point>/]seed-<k>`)
    /// whose config trains the same run. A run directory that already exists in the sweep
    /// (another config's start, a run in progress) is left alone. Each copy is written beside its place and renamed into it, so
    /// an interrupted adoption leaves no half-copied run.
    pub fn adopt(&self, from: &Path) -> Result<Vec<Adoption>, SweepError> {
        let mut adopted = Vec::new();
        for run in &self.runs {
            let to = self.run_dir(run);
            let twin = from.join(&run.dir);
            let twin_state = status::run_state(&twin, &run.config);
            let resumable =
                twin_state.status == RunStatus::Unfinished && twin_state.running.is_none();
            if to.exists() || !(twin_state.status == RunStatus::Done || resumable) {
                continue;
            }
            let parent = to.parent().expect("a run directory has a parent");
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            let partial = parent.join(format!(
                ".adopting-{}",
                to.file_name()
                    .expect("a run directory has a name")
                    .to_string_lossy()
            ));
            if partial.exists() {
                std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
            }
            copy_dir(&twin, &partial)?;
            std::fs::rename(&partial, &to).map_err(io(&to))?;
            adopted.push(Adoption {
                index: run.index,
                from: twin,
                to,
            });
        }
        Ok(adopted)
    }
}

/// Copies the directory `from` (files and subdirectories) to a new directory `to`.
pub(super) fn copy_dir(from: &Path, to: &Path) -> Result<(), SweepError> {
    std::fs::create_dir(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let path = entry.map_err(io(from))?.path();
        let dest = to.join(path.file_name().expect("a directory entry has a name"));
        if path.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest).map_err(io(&path))?;
        }
    }
    Ok(())
}

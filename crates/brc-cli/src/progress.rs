//! How a training run reports while it runs: a progress bar when stderr is a terminal, else
//! (Slurm logs, nohup, `| tee`) one line per evaluation plus a start and an end line.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use brc_train::{EpisodeRecord, EvalRecord, Progress, RunConfig, Summary};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::signals;

/// A run's reporter; asks the run to stop once SIGTERM / SIGINT came.
pub enum RunProgress {
    /// A progress bar (terminal).
    Bar(Bar),
    /// Log lines (not a terminal).
    Lines(Lines),
    /// Nothing (`--quiet`).
    Quiet,
}

/// The draw target of a group of runs' bars: hidden when quiet or not a terminal.
pub fn multi(quiet: bool) -> MultiProgress {
    if quiet || !std::io::stderr().is_terminal() {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
    }
}

impl RunProgress {
    /// The reporter of the run `config` describes, into `dir`.
    pub fn new(config: &RunConfig, dir: &Path, multi: &MultiProgress, quiet: bool) -> Self {
        let prefix = format!("{} seed {}", config.run.name, config.run.seed);
        let names = config.task_names();
        if quiet {
            Self::Quiet
        } else if std::io::stderr().is_terminal() {
            Self::Bar(Bar::new(prefix, names, multi))
        } else {
            Self::Lines(Lines {
                prefix,
                names,
                dir: dir.display().to_string(),
                last: None,
            })
        }
    }

    /// After the run: ends the bar, or prints the end line.
    pub fn finish(&self, summary: &Summary) {
        match self {
            Self::Bar(b) => b.bar.finish(),
            Self::Lines(l) => eprintln!(
                "{}: done in {}: final average {:.1} over {} episodes ({} env steps, {} updates)",
                l.prefix,
                duration(summary.wall_seconds),
                summary.final_average,
                summary.episodes,
                summary.env_steps,
                summary.updates
            ),
            Self::Quiet => {}
        }
    }
}

impl Progress for RunProgress {
    fn start(&mut self, first_episode: usize, total: usize) {
        if let Self::Lines(l) = self {
            if first_episode == 0 {
                eprintln!("{}: start: {total} episodes into {}", l.prefix, l.dir);
            } else {
                eprintln!(
                    "{}: resuming after episode {first_episode} of {total} in {}",
                    l.prefix, l.dir
                );
            }
        }
    }

    fn episode(&mut self, record: &EpisodeRecord, total: usize) {
        match self {
            Self::Bar(b) => b.episode(record, total),
            Self::Lines(l) => l.last = Some((record.clone(), total)),
            Self::Quiet => {}
        }
    }

    fn evaluation(&mut self, record: &EvalRecord) {
        match self {
            Self::Bar(b) => b.bar.println(eval_line(record, &b.names)),
            Self::Lines(l) => l.evaluation(record),
            Self::Quiet => {}
        }
    }

    fn stop_requested(&mut self) -> bool {
        signals::stop_requested()
    }
}

/// Log lines for a non-terminal stderr.
pub struct Lines {
    prefix: String,
    names: Vec<String>,
    dir: String,
    /// The latest episode and the run's total.
    last: Option<(EpisodeRecord, usize)>,
}

impl Lines {
    fn evaluation(&self, r: &EvalRecord) {
        let returns = task_means(r, &self.names);
        if r.is_final {
            eprintln!(
                "{}: final eval after {} episodes: {returns} (average {:.1})",
                self.prefix, r.after_episode, r.average
            );
            return;
        }
        let Some((e, total)) = &self.last else {
            return;
        };
        let done = e.episode + 1;
        let rate = e.updates as f64 / e.wall_seconds.max(1e-9);
        let eta = e.wall_seconds / done as f64 * total.saturating_sub(done) as f64;
        eprintln!(
            "{}: episode {done}/{total}: eval {returns} (average {:.1}) | ε {:.3} | {rate:.0} upd/s | ETA {}",
            self.prefix,
            r.average,
            e.epsilon,
            duration(eta)
        );
    }
}

/// One progress bar per run.
pub struct Bar {
    bar: ProgressBar,
    last: Vec<Option<f64>>,
    names: Vec<String>,
}

impl Bar {
    fn new(prefix: String, names: Vec<String>, multi: &MultiProgress) -> Self {
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} ep  ETA {eta}  {msg}")
                .expect("valid template")
                .progress_chars("=> ");
        let bar = multi.add(ProgressBar::new(0).with_style(style));
        bar.set_prefix(prefix);
        Bar {
            bar,
            last: vec![None; names.len()],
            names,
        }
    }

    fn episode(&mut self, r: &EpisodeRecord, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(r.episode as u64 + 1);
        self.last[r.task_id] = Some(r.episode_return);
        let returns: Vec<String> = self
            .names
            .iter()
            .zip(&self.last)
            .map(|(n, v)| format!("{n} {}", v.map_or("-".into(), |v| format!("{v:.0}"))))
            .collect();
        let rate = r.updates as f64 / r.wall_seconds.max(1e-9);
        self.bar.set_message(format!(
            "{} | ε {:.3} | {rate:.0} upd/s",
            returns.join(" "),
            r.epsilon
        ));
    }
}

fn eval_line(r: &EvalRecord, names: &[String]) -> String {
    let kind = if r.is_final { "final eval" } else { "eval" };
    format!(
        "{kind} after {} episodes: average {:.1} ({})",
        r.after_episode,
        r.average,
        task_means(r, names)
    )
}

/// `standard 12.3, windy -4.5, …` in task order.
fn task_means(r: &EvalRecord, names: &[String]) -> String {
    names
        .iter()
        .filter_map(|k| Some((k, r.mean_return.get(k)?)))
        .map(|(k, v)| format!("{k} {v:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `1h02m03s`, `4m05s`, `6s`.
fn duration(seconds: f64) -> String {
    let s = Duration::from_secs_f64(seconds.max(0.0)).as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

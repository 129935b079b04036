//! The round-robin multi-task training loop, the same for every agent.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use brc_agents::{build_agent, Agent, AgentContext, ReplaySource, UpdateStats};
use brc_buffer::{Batch, ReplayBuffer, Transition};
use brc_envs::{Env, LunarLander, Outcome};
use rand::SeedableRng;
use rand_pcg::Pcg32;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{Sampling, TrainingSection};
use crate::evaluation::{evaluate_agent, TaskEvaluation};
use crate::records::{
    EpisodeRecord, EvalRecord, GradientConflict, Summary, SurgeryRecord, VarShareRecord,
};
use crate::run_dir::{write_atomic, RunDir, AGENT_FILE};
use crate::seeds::{derive, train_env_seed, Stream};
use crate::RunConfig;

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The run directory exists and may hold earlier results.
    #[error(
        "run directory {0} already exists (use --force to overwrite it or --resume to continue it)"
    )]
    RunExists(PathBuf),
    /// A file could not be written or read (the cause follows in the error chain).
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The agent failed (network, checkpoint, batch).
    #[error(transparent)]
    Agent(#[from] brc_agents::AgentError),
    /// The environment failed.
    #[error(transparent)]
    Env(#[from] brc_envs::EnvError),
    /// The replay buffer failed.
    #[error(transparent)]
    Buffer(#[from] brc_buffer::BufferError),
    /// The device could not be set up.
    #[error(transparent)]
    Nn(#[from] brc_nn::NnError),
    /// The run's config is invalid.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// A stop was requested (SIGTERM / SIGINT): the run finished its current episode and saved
    /// a checkpoint that `--resume` continues from, to the same metrics as an uninterrupted run.
    #[error("interrupted after episode {episodes} of {total}: checkpoint saved to {}; resume to continue", checkpoint.display())]
    Interrupted {
        /// Episodes done (and in the checkpoint).
        episodes: usize,
        /// Episodes of the whole run.
        total: usize,
        /// The checkpoint to resume from.
        checkpoint: PathBuf,
    },
    /// The loss became NaN or infinite.
    #[error("non-finite loss ({loss}) in episode {episode}; checkpoint saved to {checkpoint}")]
    NonFiniteLoss {
        /// 0-based episode index.
        episode: usize,
        /// The loss value.
        loss: f32,
        /// Where the state before the failure was saved.
        checkpoint: PathBuf,
    },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a run goes and what may be replaced.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The run directory (`<output_dir>/<name>/[seed-<k>/]`).
    pub run_dir: PathBuf,
    /// Replace an existing run directory.
    pub force: bool,
    /// Continue the run in `run_dir` from its newest `ep<N>` checkpoint instead of starting.
    pub resume: bool,
}

/// Receives progress events (the CLI draws a progress bar from them) and may ask the run to
/// stop at the end of the current episode.
pub trait Progress {
    /// Before the first episode: training starts at `first_episode` (> 0 when resumed) of
    /// `total`.
    fn start(&mut self, _first_episode: usize, _total: usize) {}
    /// After each training episode; `total` is the number of episodes of the run.
    fn episode(&mut self, _record: &EpisodeRecord, _total: usize) {}
    /// After each evaluation.
    fn evaluation(&mut self, _record: &EvalRecord) {}
    /// Asked after each episode: `true` makes the run save a checkpoint and return
    /// [`TrainError::Interrupted`] (the CLI answers `true` after SIGTERM or SIGINT).
    fn stop_requested(&mut self) -> bool {
        false
    }
}

/// Ignores all events.
impl Progress for () {}

/// Counters and RNG that a checkpoint must carry besides the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    episodes_done: usize,
    env_steps: u64,
    updates: u64,
    replay_rng: Pcg32,
    best_average: f64,
    best_after_episode: usize,
    /// The fixed per-task probe batches of the gradient-conflict measurements, once drawn.
    probes: Option<Vec<Batch>>,
    /// Training wall time up to this state, so a resumed run's clock continues.
    #[serde(default)]
    wall_seconds: f64,
}

/// Running means over one episode's updates.
#[derive(Default)]
struct UpdateMeans {
    n: u32,
    loss: f64,
    q: f64,
    grad_norm: f64,
}

impl UpdateMeans {
    fn add(&mut self, s: &UpdateStats) {
        self.n += 1;
        self.loss += f64::from(s.loss);
        self.q += f64::from(s.mean_q);
        self.grad_norm += f64::from(s.grad_norm);
    }
    fn mean(&self, total: f64) -> Option<f64> {
        (self.n > 0).then(|| total / f64::from(self.n))
    }
}

/// JSONL log files, buffered and flushed at checkpoints and at the end.
struct Logs {
    episodes: BufWriter<File>,
    evals: BufWriter<File>,
    conflict: BufWriter<File>,
    /// Gradient-surgery diagnostics (runs with a gradient method other than the mean).
    surgery: Option<BufWriter<File>>,
    /// VarShare diagnostics (`[agent.varshare]` runs).
    varshare: Option<BufWriter<File>>,
}

impl Logs {
    /// Opens the logs for appending (they were created or truncated before); `surgery` /
    /// `varshare`: whether the run writes `surgery.jsonl` / `varshare.jsonl`.
    fn open(dir: &RunDir, surgery: bool, varshare: bool) -> Result<Self, TrainError> {
        let open = |p: PathBuf| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map(BufWriter::new)
                .map_err(io(&p))
        };
        Ok(Self {
            episodes: open(dir.episodes())?,
            evals: open(dir.evals())?,
            conflict: open(dir.conflict())?,
            surgery: if surgery {
                Some(open(dir.surgery())?)
            } else {
                None
            },
            varshare: if varshare {
                Some(open(dir.varshare())?)
            } else {
                None
            },
        })
    }

    fn line<T: Serialize>(
        w: &mut BufWriter<File>,
        value: &T,
        path: &Path,
    ) -> Result<(), TrainError> {
        let text = serde_json::to_string(value).expect("records serialize");
        writeln!(w, "{text}").map_err(io(path))
    }

    fn flush(&mut self, dir: &RunDir) -> Result<(), TrainError> {
        self.episodes.flush().map_err(io(&dir.episodes()))?;
        self.evals.flush().map_err(io(&dir.evals()))?;
        if let Some(s) = &mut self.surgery {
            s.flush().map_err(io(&dir.surgery()))?;
        }
        if let Some(s) = &mut self.varshare {
            s.flush().map_err(io(&dir.varshare()))?;
        }
        self.conflict.flush().map_err(io(&dir.conflict()))
    }
}

/// Trains the agent `config` describes, writing every artifact into `opts.run_dir`, and
/// returns the summary. Same config and seed on CPU ⇒ identical records apart from
/// `wall_seconds`.
pub fn train(
    config: &RunConfig,
    opts: &TrainOptions,
    progress: &mut dyn Progress,
) -> Result<Summary, TrainError> {
    let dir = RunDir::new(&opts.run_dir);
    let seed = config.run.seed;
    let tasks = &config.tasks;
    let names = config.task_names();
    let n_tasks = tasks.len();
    let training = &config.training;
    let mut agent = build_run_agent(config)?;
    let mut buffer = ReplayBuffer::new(training.buffer_capacity)?;
    let mut state = TrainerState {
        episodes_done: 0,
        env_steps: 0,
        updates: 0,
        replay_rng: Pcg32::seed_from_u64(derive(seed, Stream::Replay)),
        best_average: f64::NEG_INFINITY,
        best_after_episode: 0,
        probes: None,
        wall_seconds: 0.0,
    };
    let mut history: Vec<EpisodeRecord> = Vec::new();
    let mut eval_history: Vec<EvalRecord> = Vec::new();
    if opts.resume {
        let checkpoint = newest_checkpoint(&dir)?;
        agent.load(&checkpoint.join(AGENT_FILE))?;
        state = read_state(&checkpoint.join("trainer.json"))?;
        let replay = checkpoint.join("replay.safetensors");
        if replay.is_file() {
            buffer = ReplayBuffer::load(&replay)?;
        } else {
            tracing::warn!(
                "{} has no replay buffer: resuming with an empty one",
                checkpoint.display()
            );
        }
        // Forget what happened after the checkpoint: it will happen again.
        let done = state.episodes_done;
        history = truncate_log(&dir.episodes(), |r: &EpisodeRecord| r.episode < done)?;
        eval_history = truncate_log(&dir.evals(), |r: &EvalRecord| {
            r.after_episode <= done && !r.is_final
        })?;
        truncate_log(&dir.conflict(), |r: &GradientConflict| {
            r.after_episode <= done
        })?;
        if dir.surgery().is_file() {
            truncate_log(&dir.surgery(), |r: &SurgeryRecord| r.after_episode <= done)?;
        }
        if dir.varshare().is_file() {
            truncate_log(&dir.varshare(), |r: &VarShareRecord| {
                r.after_episode <= done
            })?;
        }
        // A `best` saved after the checkpoint belongs to the discarded part of the run: drop
        // it and let the evaluations from here on choose again (the final one always saves).
        let best = dir.checkpoint("best");
        if read_state(&best.join("trainer.json")).is_ok_and(|b| b.episodes_done > done) {
            std::fs::remove_dir_all(&best).map_err(io(&best))?;
            state.best_average = f64::NEG_INFINITY;
            state.best_after_episode = 0;
        }
        tracing::info!(episodes = done, dir = %dir.root().display(), "resuming");
    } else {
        prepare_dir(&dir, opts.force)?;
        write_atomic(&dir.config(), config.to_toml_string().as_bytes())
            .map_err(io(&dir.config()))?;
        for log in [dir.episodes(), dir.evals(), dir.conflict()] {
            File::create(&log).map_err(io(&log))?;
        }
        if config.agent.gradient() != brc_agents::GradientMethod::Mean {
            File::create(dir.surgery()).map_err(io(&dir.surgery()))?;
        }
        if config.agent.varshare().is_some() {
            File::create(dir.varshare()).map_err(io(&dir.varshare()))?;
        }
    }
    let mut train_envs = make_envs(config)?;
    let mut eval_envs = make_envs(config)?;
    let mut batch = Batch::with_capacity(training.batch_size * n_tasks);
    let mut probe_rng = Pcg32::seed_from_u64(derive(seed, Stream::Probe));
    let surgery = config.agent.gradient() != brc_agents::GradientMethod::Mean;
    let mut logs = Logs::open(&dir, surgery, config.agent.varshare().is_some())?;
    let total = config.total_episodes();
    let start = Instant::now();
    let clock = state.wall_seconds;
    let elapsed = |start: &Instant| clock + start.elapsed().as_secs_f64();

    tracing::info!(
        agent = %agent.kind(), params = agent.num_params(), episodes = total,
        dir = %dir.root().display(), "training"
    );
    progress.start(state.episodes_done, total);
    for episode in state.episodes_done..total {
        let task = episode % n_tasks;
        let spec = &tasks[task];
        let env = &mut train_envs[task];
        let epsilon = agent.epsilon(task);
        let mut obs = env.reset(train_env_seed(seed, episode as u64));
        let mut means = UpdateMeans::default();
        let mut episode_return = 0.0;
        let mut length = 0;
        let mut outcome = Outcome::TimeLimit;
        for _ in 0..spec.max_episode_steps {
            let action = agent.act(&obs, task)?;
            let step = env.step(action)?;
            buffer.push(&Transition {
                obs,
                action: action as u32,
                reward: step.reward as f32,
                next_obs: step.obs,
                terminated: step.terminated(),
                task,
            })?;
            state.env_steps += 1;
            length += 1;
            episode_return += step.reward;
            obs = step.obs;

            let source = agent.replay_source(task);
            if ready_to_update(&buffer, source, agent.min_replay(task), training, n_tasks) {
                for _ in 0..training.updates_per_step {
                    sample_batch(
                        &buffer,
                        source,
                        training,
                        n_tasks,
                        &mut state.replay_rng,
                        &mut batch,
                    )?;
                    let stats = agent.update(&batch)?;
                    state.updates += 1;
                    if !stats.loss.is_finite() {
                        let checkpoint = dir.checkpoint(&format!("ep{episode}-nonfinite"));
                        save_checkpoint(agent.as_ref(), &state, None, &checkpoint)?;
                        logs.flush(&dir)?;
                        return Err(TrainError::NonFiniteLoss {
                            episode,
                            loss: stats.loss,
                            checkpoint,
                        });
                    }
                    means.add(&stats);
                }
            }
            if let Some(t) = step.termination {
                outcome = t.into();
                break;
            }
        }
        agent.end_episode(task)?;
        state.episodes_done = episode + 1;

        let record = EpisodeRecord {
            episode,
            task_id: task,
            task: spec.name.clone(),
            episode_return,
            length,
            terminated: outcome != Outcome::TimeLimit,
            time_limited: outcome == Outcome::TimeLimit,
            outcome: outcome.name().to_string(),
            epsilon,
            mean_loss: means.mean(means.loss),
            mean_q: means.mean(means.q),
            grad_norm: means.mean(means.grad_norm),
            env_steps: state.env_steps,
            updates: state.updates,
            wall_seconds: elapsed(&start),
        };
        Logs::line(&mut logs.episodes, &record, &dir.episodes())?;
        progress.episode(&record, total);
        history.push(record);
        let done = state.episodes_done;

        let conflict_every = config.evaluation.gradient_conflict_interval;
        if conflict_every > 0 && done.is_multiple_of(conflict_every) {
            if let (Some(log), Some(diagnostics)) =
                (&mut logs.varshare, agent.varshare_diagnostics()?)
            {
                let record = VarShareRecord {
                    after_episode: done,
                    updates: state.updates,
                    diagnostics,
                };
                Logs::line(log, &record, &dir.varshare())?;
            }
        }
        if conflict_every > 0 && done.is_multiple_of(conflict_every) && n_tasks > 1 {
            if state.probes.is_none()
                && (0..n_tasks).all(|t| buffer.task_len(t) >= training.batch_size)
            {
                // Fixed probe batches, drawn once, so measurements compare over training.
                let mut fixed = Vec::with_capacity(n_tasks);
                for t in 0..n_tasks {
                    let mut b = Batch::with_capacity(training.batch_size);
                    buffer.sample_task(&mut probe_rng, &mut b, training.batch_size, t)?;
                    fixed.push(b);
                }
                state.probes = Some(fixed);
            }
            if let Some(p) = &state.probes {
                if let Some(grads) = agent.task_gradients(p)? {
                    let conflict = GradientConflict::measure(done, &names, &grads);
                    Logs::line(&mut logs.conflict, &conflict, &dir.conflict())?;
                    if let (Some(log), Some(diagnostics)) =
                        (&mut logs.surgery, agent.surgery_diagnostics(&grads))
                    {
                        let record = SurgeryRecord {
                            after_episode: done,
                            diagnostics,
                        };
                        Logs::line(log, &record, &dir.surgery())?;
                    }
                }
            }
        }

        if done.is_multiple_of(config.evaluation.interval_episodes) && done < total {
            let evals = evaluate_agent(
                agent.as_ref(),
                tasks,
                &mut eval_envs,
                config.evaluation.episodes,
                config.evaluation.seed,
            )?;
            let record = eval_record(&evals, &state, false);
            Logs::line(&mut logs.evals, &record, &dir.evals())?;
            progress.evaluation(&record);
            if record.average > state.best_average {
                state.best_average = record.average;
                state.best_after_episode = done;
                save_checkpoint(agent.as_ref(), &state, None, &dir.checkpoint("best"))?;
            }
            eval_history.push(record);
        }
        if done.is_multiple_of(config.checkpoints.interval_episodes) && done < total {
            // Logs first: a resumed run keeps exactly the lines up to its checkpoint.
            logs.flush(&dir)?;
            state.wall_seconds = elapsed(&start);
            let replay = config.checkpoints.save_replay.then_some(&buffer);
            let path = dir.checkpoint(&format!("ep{done}"));
            save_checkpoint(agent.as_ref(), &state, replay, &path)?;
        }
        if progress.stop_requested() {
            // Always with the replay buffer: it is what makes the resumed run exact.
            logs.flush(&dir)?;
            state.wall_seconds = elapsed(&start);
            let checkpoint = dir.checkpoint(&format!("ep{done}"));
            save_checkpoint(agent.as_ref(), &state, Some(&buffer), &checkpoint)?;
            return Err(TrainError::Interrupted {
                episodes: done,
                total,
                checkpoint,
            });
        }
    }
    let wall_seconds = elapsed(&start);

    save_checkpoint(agent.as_ref(), &state, None, &dir.checkpoint("final"))?;
    let evals = evaluate_agent(
        agent.as_ref(),
        tasks,
        &mut eval_envs,
        config.evaluation.final_episodes,
        config.evaluation.seed,
    )?;
    let final_record = eval_record(&evals, &state, true);
    Logs::line(&mut logs.evals, &final_record, &dir.evals())?;
    progress.evaluation(&final_record);
    if state.best_average == f64::NEG_INFINITY || final_record.average > state.best_average {
        // The final policy is the best one seen: `best` is always present.
        state.best_average = final_record.average;
        state.best_after_episode = state.episodes_done;
        save_checkpoint(agent.as_ref(), &state, None, &dir.checkpoint("best"))?;
    }
    eval_history.push(final_record.clone());
    logs.flush(&dir)?;

    let summary = Summary {
        name: config.run.name.clone(),
        agent: agent.kind().name().to_string(),
        seed,
        parameters: agent.num_params(),
        episodes: state.episodes_done,
        env_steps: state.env_steps,
        updates: state.updates,
        wall_seconds,
        final_eval: final_record.mean_return.clone(),
        final_average: final_record.average,
        final_success_rate: evals
            .iter()
            .map(|e| (e.task.clone(), e.success_rate()))
            .collect(),
        best_average: state.best_average,
        best_after_episode: state.best_after_episode,
    };
    let text = serde_json::to_string_pretty(&summary).expect("summary serializes");
    write_atomic(&dir.summary(), text.as_bytes()).map_err(io(&dir.summary()))?;
    write_predecessor_metrics(&dir, config, &summary, &history, &eval_history)?;
    Ok(summary)
}

/// Whether the agent's sampled set can give an update's batch: `min_replay` transitions and,
/// for balanced batches, at least one of every task.
fn ready_to_update(
    buffer: &ReplayBuffer,
    source: ReplaySource,
    min_replay: usize,
    training: &TrainingSection,
    n_tasks: usize,
) -> bool {
    match source {
        ReplaySource::Task(t) => buffer.task_len(t) >= min_replay.max(1),
        ReplaySource::Uniform => {
            buffer.len() >= min_replay.max(1)
                && (training.sampling == Sampling::Mixed
                    || (0..n_tasks).all(|t| buffer.task_len(t) > 0))
        }
    }
}

/// Draws one update's batch into `batch`: the task's transitions for a per-task learner,
/// otherwise `batch_size` mixed ones or `batch_size` of every task (`training.sampling`).
fn sample_batch(
    buffer: &ReplayBuffer,
    source: ReplaySource,
    training: &TrainingSection,
    n_tasks: usize,
    rng: &mut Pcg32,
    batch: &mut Batch,
) -> Result<(), TrainError> {
    let size = training.batch_size;
    match (source, training.sampling) {
        (ReplaySource::Task(t), _) => buffer.sample_task(rng, batch, size, t)?,
        (ReplaySource::Uniform, Sampling::Mixed) => buffer.sample_uniform(rng, batch, size)?,
        (ReplaySource::Uniform, Sampling::Balanced) => {
            buffer.sample_balanced(rng, batch, size, n_tasks)?
        }
    }
    Ok(())
}

/// The freshly initialised agent of a run (its seed derives from the run seed).
pub fn build_run_agent(config: &RunConfig) -> Result<Box<dyn Agent>, TrainError> {
    Ok(build_agent(&config.agent, &agent_context(config)?)?)
}

/// What a run's agent needs to know about the run.
pub(crate) fn agent_context(config: &RunConfig) -> Result<AgentContext, TrainError> {
    let training = &config.training;
    Ok(AgentContext {
        task_names: config.task_names(),
        gamma: training.gamma,
        exploration: config.exploration(),
        target_update_episodes: training.target_update_episodes,
        min_replay: training.min_replay,
        total_episodes: config.total_episodes(),
        seed: derive(config.run.seed, Stream::Agent),
        device: brc_nn::select_device(&config.run.device)?,
    })
}

/// A checkpoint's trainer state.
fn read_state(file: &Path) -> Result<TrainerState, TrainError> {
    let text = std::fs::read_to_string(file).map_err(io(file))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Io {
        path: file.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// The `ep<N>` checkpoint with the largest N.
pub(crate) fn newest_checkpoint(dir: &RunDir) -> Result<PathBuf, TrainError> {
    let root = dir.checkpoints();
    let newest = std::fs::read_dir(&root)
        .map_err(io(&root))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n: usize = name.strip_prefix("ep")?.parse().ok()?;
            e.path()
                .join("trainer.json")
                .is_file()
                .then_some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n);
    newest.map(|(_, p)| p).ok_or_else(|| TrainError::Io {
        path: root,
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no ep<N> checkpoint to resume from",
        ),
    })
}

/// Keeps the JSON lines of `path` for which `keep` holds (dropping a torn last line) and
/// returns them.
fn truncate_log<T: Serialize + serde::de::DeserializeOwned>(
    path: &Path,
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>, TrainError> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kept: Vec<T> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r| keep(r))
        .collect();
    let mut out = String::new();
    for r in &kept {
        out.push_str(&serde_json::to_string(r).expect("records serialize"));
        out.push('\n');
    }
    write_atomic(path, out.as_bytes()).map_err(io(path))?;
    Ok(kept)
}

/// Makes `dir` an empty run directory. Its lock file (a sweep executor's, see
/// [`RunDir::lock`]) neither counts as content nor is removed: the executor holding it keeps it.
pub(crate) fn prepare_dir(dir: &RunDir, force: bool) -> Result<(), TrainError> {
    let root = dir.root();
    if root.exists() {
        let lock = dir.lock();
        let mut contents = Vec::new();
        for entry in std::fs::read_dir(root).map_err(io(root))? {
            let entry = entry.map_err(io(root))?;
            let is_dir = entry.file_type().map_err(io(root))?.is_dir();
            if entry.path() != lock {
                contents.push((entry.path(), is_dir));
            }
        }
        if !contents.is_empty() {
            if !force {
                return Err(TrainError::RunExists(root.to_path_buf()));
            }
            for (path, is_dir) in contents {
                if is_dir {
                    std::fs::remove_dir_all(&path).map_err(io(&path))?;
                } else {
                    std::fs::remove_file(&path).map_err(io(&path))?;
                }
            }
        }
    }
    std::fs::create_dir_all(dir.checkpoints()).map_err(io(root))
}

fn make_envs(config: &RunConfig) -> Result<Vec<LunarLander>, TrainError> {
    config
        .tasks
        .iter()
        .map(|t| LunarLander::new(t.clone()).map_err(TrainError::from))
        .collect()
}

fn eval_record(evals: &[TaskEvaluation], state: &TrainerState, is_final: bool) -> EvalRecord {
    let mean_return: BTreeMap<String, f64> = evals
        .iter()
        .map(|e| (e.task.clone(), e.mean_return()))
        .collect();
    EvalRecord {
        after_episode: state.episodes_done,
        env_steps: state.env_steps,
        updates: state.updates,
        episodes: evals.first().map_or(0, |e| e.episodes.len()),
        average: mean_return.values().sum::<f64>() / mean_return.len() as f64,
        mean_return,
        returns: evals
            .iter()
            .map(|e| {
                let r = e.episodes.iter().map(|x| x.episode_return).collect();
                (e.task.clone(), r)
            })
            .collect(),
        is_final,
        gradient_conflict: None,
    }
}

/// A checkpoint directory: the agent (safetensors), the trainer's counters and RNG, and the
/// replay buffer when given. Only the newest checkpoint keeps a replay buffer (it is what
/// `--resume` uses; older copies would only fill the disk).
fn save_checkpoint(
    agent: &dyn Agent,
    state: &TrainerState,
    replay: Option<&ReplayBuffer>,
    path: &Path,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(path).map_err(io(path))?;
    agent.save(&path.join(AGENT_FILE))?;
    if let Some(buffer) = replay {
        buffer.save(&path.join("replay.safetensors"))?;
        let parent = path.parent().unwrap_or(Path::new("."));
        for entry in std::fs::read_dir(parent).map_err(io(parent))?.flatten() {
            let old = entry.path().join("replay.safetensors");
            if entry.path() != path && old.is_file() {
                std::fs::remove_file(&old).map_err(io(&old))?;
            }
        }
    }
    let text = serde_json::to_string_pretty(state).expect("state serializes");
    let file = path.join("trainer.json");
    write_atomic(&file, text.as_bytes()).map_err(io(&file))
}

/// `metrics.json` in the predecessor's multi-task schema, so its tools read our runs.
fn write_predecessor_metrics(
    dir: &RunDir,
    config: &RunConfig,
    summary: &Summary,
    history: &[EpisodeRecord],
    evals: &[EvalRecord],
) -> Result<(), TrainError> {
    let episodes: Vec<_> = history
        .iter()
        .map(|r| {
            json!({
                "episode": r.episode, "task": r.task, "task_id": r.task_id,
                "reward": r.episode_return, "steps": r.length,
                "loss": r.mean_loss.unwrap_or(0.0), "epsilon": r.epsilon,
            })
        })
        .collect();
    let mut eval_history: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut best: BTreeMap<&str, f64> = BTreeMap::new();
    for e in evals.iter().filter(|e| !e.is_final) {
        for (task, &m) in &e.mean_return {
            eval_history.entry(task).or_default().push(m);
            let b = best.entry(task).or_insert(f64::NEG_INFINITY);
            *b = b.max(m);
        }
    }
    let doc = json!({
        "method": summary.agent,
        "total_episodes": summary.episodes,
        "episodes_per_task": config.training.episodes_per_task,
        "parameters": summary.parameters,
        "episodes": episodes,
        "eval_history": eval_history,
        "best_rewards": best,
        "total_env_steps": summary.env_steps,
        "total_gradient_updates": summary.updates,
        "config": config,
    });
    let text = serde_json::to_string(&doc).expect("metrics serialize");
    write_atomic(&dir.metrics(), text.as_bytes()).map_err(io(&dir.metrics()))
}

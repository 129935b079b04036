//! The training loop every agent shares: episode i runs task i mod n; each env step is stored
//! in the replay buffer and followed by the agent's updates once enough transitions are there;
//! gradient measurements, evaluations and checkpoints follow an episode at their intervals.
//!
//! [`train`] reads top to bottom as those phases; [`Run`] holds what they share.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use brc_agents::{Agent, ReplaySource, UpdateStats};
use brc_buffer::{Batch, ReplayBuffer};
use brc_envs::{Env, LunarLander, Outcome};
use rand::SeedableRng;
use rand_pcg::Pcg32;

use crate::checkpoints::{newest_checkpoint, read_state, save_checkpoint, TrainerState};
use crate::config::{Sampling, TrainingSection};
use crate::error::{io, TrainError};
use crate::evaluation::{evaluate_agent, TaskEvaluation};
use crate::logs::{write_predecessor_metrics, Logs, MethodLogs};
use crate::n_step::NStepWindow;
use crate::records::{
    EpisodeRecord, EvalRecord, GradientConflict, Summary, SurgeryRecord, VarShareRecord,
};
use crate::run_agent::build_run_agent;
use crate::run_dir::{prepare_dir, write_atomic, RunDir, AGENT_FILE};
use crate::seeds::{derive, train_env_seed, Stream};
use crate::RunConfig;

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

/// Trains the agent `config` describes, writing every artifact into `opts.run_dir`, and
/// returns the summary. Same config and seed on CPU ⇒ identical records apart from
/// `wall_seconds`.
pub fn train(
    config: &RunConfig,
    opts: &TrainOptions,
    progress: &mut dyn Progress,
) -> Result<Summary, TrainError> {
    // Denormals cost Intel cores a microcode assist per instruction (brc_nn::denormals); a
    // caller's compute pool sets the same on its other threads.
    brc_nn::denormals::flush_to_zero();
    let mut run = Run::open(config, opts)?;
    tracing::info!(
        agent = %run.agent.kind(), params = run.agent.num_params(), episodes = run.total,
        dir = %run.dir.root().display(), "training"
    );
    progress.start(run.state.episodes_done, run.total);
    for episode in run.state.episodes_done..run.total {
        let record = run.train_episode(episode)?;
        progress.episode(&record, run.total);
        run.history.push(record);
        run.measure_gradients()?;
        if let Some(record) = run.periodic_evaluation()? {
            progress.evaluation(&record);
        }
        run.periodic_checkpoint()?;
        if progress.stop_requested() {
            return Err(run.interrupt()?);
        }
    }
    run.finish(progress)
}

/// One run in progress: its agent, replay buffer, envs, logs and counters.
struct Run<'a> {
    config: &'a RunConfig,
    dir: RunDir,
    agent: Box<dyn Agent>,
    buffer: ReplayBuffer,
    state: TrainerState,
    /// Every training episode so far (for `metrics.json`).
    history: Vec<EpisodeRecord>,
    /// Every evaluation so far (for `metrics.json`).
    eval_history: Vec<EvalRecord>,
    train_envs: Vec<LunarLander>,
    /// Separate from the training envs, so evaluating never disturbs a training episode.
    eval_envs: Vec<LunarLander>,
    /// The update's batch, reused.
    batch: Batch,
    /// Steps of the current episode waiting for their n-step return.
    n_step: NStepWindow,
    /// Draws the gradient-conflict probe batches (its own stream: measuring never changes
    /// what is trained).
    probe_rng: Pcg32,
    logs: Logs,
    total: usize,
    started: Instant,
    /// Training wall time before this process (a resumed run's clock continues).
    clock: f64,
}

impl<'a> Run<'a> {
    /// A fresh run in an empty directory, or the run in `opts.run_dir` resumed from its newest
    /// checkpoint.
    fn open(config: &'a RunConfig, opts: &TrainOptions) -> Result<Self, TrainError> {
        let dir = RunDir::new(&opts.run_dir);
        let seed = config.run.seed;
        let training = &config.training;
        let method_logs = MethodLogs::of(config);
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
        let (mut history, mut eval_history) = (Vec::new(), Vec::new());
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
            (history, eval_history) = Logs::truncate(&dir, state.episodes_done)?;
            forget_later_best(&dir, &mut state)?;
            tracing::info!(episodes = state.episodes_done, dir = %dir.root().display(), "resuming");
        } else {
            prepare_dir(&dir, opts.force)?;
            write_atomic(&dir.config(), config.to_toml_string().as_bytes())
                .map_err(io(&dir.config()))?;
            Logs::create(&dir, method_logs)?;
        }
        let n_tasks = config.tasks.len();
        Ok(Self {
            config,
            agent,
            buffer,
            history,
            eval_history,
            train_envs: make_envs(config)?,
            eval_envs: make_envs(config)?,
            batch: Batch::with_capacity(training.batch_size * n_tasks),
            n_step: NStepWindow::new(training.n_step, training.gamma),
            probe_rng: Pcg32::seed_from_u64(derive(seed, Stream::Probe)),
            logs: Logs::open(&dir, method_logs)?,
            total: config.total_episodes(),
            started: Instant::now(),
            clock: state.wall_seconds,
            state,
            dir,
        })
    }

    /// Training wall time so far, across resumes.
    fn elapsed(&self) -> f64 {
        self.clock + self.started.elapsed().as_secs_f64()
    }

    /// Runs training episode `episode` (task `episode mod n`) with the agent's updates after
    /// each step, logs it and returns its record.
    fn train_episode(&mut self, episode: usize) -> Result<EpisodeRecord, TrainError> {
        let config = self.config;
        let task = episode % config.tasks.len();
        let spec = &config.tasks[task];
        let epsilon = self.agent.epsilon(task);
        let mut obs = self.train_envs[task].reset(train_env_seed(config.run.seed, episode as u64));
        let mut means = UpdateMeans::default();
        let mut episode_return = 0.0;
        let mut length = 0;
        let mut outcome = Outcome::TimeLimit;
        for _ in 0..spec.max_episode_steps {
            let action = self.agent.act(&obs, task)?;
            let step = self.train_envs[task].step(action)?;
            let buffer = &mut self.buffer;
            self.n_step.push(
                obs,
                action as u32,
                step.reward,
                step.obs,
                step.terminated(),
                task,
                |t| buffer.push(t),
            )?;
            self.state.env_steps += 1;
            length += 1;
            episode_return += step.reward;
            obs = step.obs;
            self.update(episode, task, &mut means)?;
            if let Some(t) = step.termination {
                outcome = t.into();
                break;
            }
        }
        self.n_step.end_episode();
        self.agent.end_episode(task)?;
        self.state.episodes_done = episode + 1;

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
            env_steps: self.state.env_steps,
            updates: self.state.updates,
            wall_seconds: self.elapsed(),
        };
        Logs::line(&mut self.logs.episodes, &record, &self.dir.episodes())?;
        Ok(record)
    }

    /// The agent's updates after one env step of `task`, once its replay can give a batch. A
    /// non-finite loss saves the state before it and stops the run.
    fn update(
        &mut self,
        episode: usize,
        task: usize,
        means: &mut UpdateMeans,
    ) -> Result<(), TrainError> {
        let training = &self.config.training;
        let n_tasks = self.config.tasks.len();
        let source = self.agent.replay_source(task);
        let min_replay = self.agent.min_replay(task);
        if !ready_to_update(&self.buffer, source, min_replay, training, n_tasks) {
            return Ok(());
        }
        for _ in 0..training.updates_per_step {
            let rng = &mut self.state.replay_rng;
            sample_batch(
                &self.buffer,
                source,
                training,
                n_tasks,
                rng,
                &mut self.batch,
            )?;
            let stats = self.agent.update(&self.batch)?;
            self.state.updates += 1;
            if !stats.loss.is_finite() {
                let checkpoint = self.dir.checkpoint(&format!("ep{episode}-nonfinite"));
                save_checkpoint(self.agent.as_ref(), &self.state, None, &checkpoint)?;
                self.logs.flush(&self.dir)?;
                return Err(TrainError::NonFiniteLoss {
                    episode,
                    loss: stats.loss,
                    checkpoint,
                });
            }
            means.add(&stats);
        }
        Ok(())
    }

    /// Every `evaluation.gradient_conflict_interval` episodes: VarShare's residuals, then the
    /// task gradients on fixed probe batches (drawn once every task has a batch), their
    /// conflict and, for gradient surgery, the combiner's diagnostics.
    fn measure_gradients(&mut self) -> Result<(), TrainError> {
        let every = self.config.evaluation.gradient_conflict_interval;
        let done = self.state.episodes_done;
        let n_tasks = self.config.tasks.len();
        if every == 0 || !done.is_multiple_of(every) {
            return Ok(());
        }
        if let (Some(log), Some(diagnostics)) =
            (&mut self.logs.varshare, self.agent.varshare_diagnostics()?)
        {
            let record = VarShareRecord {
                after_episode: done,
                updates: self.state.updates,
                diagnostics,
            };
            Logs::line(log, &record, &self.dir.varshare())?;
        }
        if n_tasks < 2 {
            return Ok(());
        }
        let size = self.config.training.batch_size;
        if self.state.probes.is_none() && (0..n_tasks).all(|t| self.buffer.task_len(t) >= size) {
            // Fixed probe batches, drawn once, so measurements compare over training.
            let mut fixed = Vec::with_capacity(n_tasks);
            for t in 0..n_tasks {
                let mut b = Batch::with_capacity(size);
                self.buffer
                    .sample_task(&mut self.probe_rng, &mut b, size, t)?;
                fixed.push(b);
            }
            self.state.probes = Some(fixed);
        }
        let Some(probes) = &self.state.probes else {
            return Ok(());
        };
        let Some(grads) = self.agent.task_gradients(probes)? else {
            return Ok(());
        };
        let conflict = GradientConflict::measure(done, &self.config.task_names(), &grads);
        Logs::line(&mut self.logs.conflict, &conflict, &self.dir.conflict())?;
        if let (Some(log), Some(diagnostics)) = (
            &mut self.logs.surgery,
            self.agent.surgery_diagnostics(&grads),
        ) {
            let record = SurgeryRecord {
                after_episode: done,
                diagnostics,
            };
            Logs::line(log, &record, &self.dir.surgery())?;
        }
        Ok(())
    }

    /// Every `evaluation.interval_episodes` episodes (but the last): a greedy evaluation,
    /// logged; a new best average saves the `best` checkpoint.
    fn periodic_evaluation(&mut self) -> Result<Option<EvalRecord>, TrainError> {
        let done = self.state.episodes_done;
        let eval = &self.config.evaluation;
        if !done.is_multiple_of(eval.interval_episodes) || done >= self.total {
            return Ok(None);
        }
        let evals = evaluate_agent(
            self.agent.as_ref(),
            &self.config.tasks,
            &mut self.eval_envs,
            eval.episodes,
            eval.seed,
        )?;
        let record = eval_record(&evals, &self.state, false);
        Logs::line(&mut self.logs.evals, &record, &self.dir.evals())?;
        if record.average > self.state.best_average {
            self.state.best_average = record.average;
            self.state.best_after_episode = done;
            let best = self.dir.checkpoint("best");
            save_checkpoint(self.agent.as_ref(), &self.state, None, &best)?;
        }
        self.eval_history.push(record.clone());
        Ok(Some(record))
    }

    /// Every `checkpoints.interval_episodes` episodes (but the last): an `ep<N>` checkpoint.
    fn periodic_checkpoint(&mut self) -> Result<(), TrainError> {
        let done = self.state.episodes_done;
        if !done.is_multiple_of(self.config.checkpoints.interval_episodes) || done >= self.total {
            return Ok(());
        }
        let replay = self.config.checkpoints.save_replay;
        self.save_resumable(replay)?;
        Ok(())
    }

    /// Saves the `ep<N>` checkpoint `--resume` continues from, with the replay buffer when
    /// `replay`. The logs are flushed first: a resumed run keeps exactly the lines up to it.
    fn save_resumable(&mut self, replay: bool) -> Result<PathBuf, TrainError> {
        // Checkpoints fall between episodes: no step waits for its n-step return.
        debug_assert!(self.n_step.is_empty());
        self.logs.flush(&self.dir)?;
        self.state.wall_seconds = self.elapsed();
        let path = self
            .dir
            .checkpoint(&format!("ep{}", self.state.episodes_done));
        let buffer = replay.then_some(&self.buffer);
        save_checkpoint(self.agent.as_ref(), &self.state, buffer, &path)?;
        Ok(path)
    }

    /// A requested stop: a checkpoint that resumes exactly (always with the replay buffer),
    /// and the error that says where it is.
    fn interrupt(&mut self) -> Result<TrainError, TrainError> {
        let checkpoint = self.save_resumable(true)?;
        Ok(TrainError::Interrupted {
            episodes: self.state.episodes_done,
            total: self.total,
            checkpoint,
        })
    }

    /// After the last episode: the `final` checkpoint, the final evaluation (and `best` when
    /// it is the best yet), the summary and `metrics.json`.
    fn finish(mut self, progress: &mut dyn Progress) -> Result<Summary, TrainError> {
        let wall_seconds = self.elapsed();
        let agent = self.agent.as_ref();
        save_checkpoint(agent, &self.state, None, &self.dir.checkpoint("final"))?;
        let evals = evaluate_agent(
            agent,
            &self.config.tasks,
            &mut self.eval_envs,
            self.config.evaluation.final_episodes,
            self.config.evaluation.seed,
        )?;
        let final_record = eval_record(&evals, &self.state, true);
        Logs::line(&mut self.logs.evals, &final_record, &self.dir.evals())?;
        progress.evaluation(&final_record);
        let state = &mut self.state;
        if state.best_average == f64::NEG_INFINITY || final_record.average > state.best_average {
            // The final policy is the best one seen: `best` is always present.
            state.best_average = final_record.average;
            state.best_after_episode = state.episodes_done;
            save_checkpoint(agent, state, None, &self.dir.checkpoint("best"))?;
        }
        self.eval_history.push(final_record.clone());
        self.logs.flush(&self.dir)?;

        let summary = Summary {
            name: self.config.run.name.clone(),
            agent: agent.kind().name().to_string(),
            seed: self.config.run.seed,
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
        let file = self.dir.summary();
        write_atomic(&file, text.as_bytes()).map_err(io(&file))?;
        write_predecessor_metrics(
            &self.dir,
            self.config,
            &summary,
            &self.history,
            &self.eval_history,
        )?;
        Ok(summary)
    }
}

/// A `best` saved after the checkpoint a run resumes from belongs to the discarded part of the
/// run: drop it and let the evaluations from here on choose again (the final one always saves).
fn forget_later_best(dir: &RunDir, state: &mut TrainerState) -> Result<(), TrainError> {
    let best = dir.checkpoint("best");
    if read_state(&best.join("trainer.json")).is_ok_and(|b| b.episodes_done > state.episodes_done) {
        std::fs::remove_dir_all(&best).map_err(io(&best))?;
        state.best_average = f64::NEG_INFINITY;
        state.best_after_episode = 0;
    }
    Ok(())
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

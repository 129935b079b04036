//! Multi-task experience replay for the BRC LunarLander agents.
//!
//! [`ReplayBuffer`] is a fixed-capacity ring buffer stored as a struct of arrays, so a
//! sampled minibatch can be gathered into flat `f32` vectors that map directly onto
//! `[B, 8]` tensors without per-transition allocation. Every transition carries a task id;
//! the buffer keeps, per task, the list of slots currently holding that task so that
//! [`ReplayBuffer::sample_task`] costs O(batch) rather than a scan of the whole buffer.
//!
//! Sampling is uniform *with replacement* and draws from a caller-owned RNG, which keeps the
//! whole training run reproducible from one seed.
//!
//! ```
//! use brc_buffer::{Batch, ReplayBuffer, Transition};
//! use rand::{rngs::StdRng, SeedableRng};
//!
//! let mut buf = ReplayBuffer::new(1_000)?;
//! let t = Transition { obs: [0.0; 8], action: 2, reward: 1.0, next_obs: [0.1; 8],
//!                      terminated: false, task: 1 };
//! buf.push(&t)?;
//! let (mut rng, mut batch) = (StdRng::seed_from_u64(0), Batch::with_capacity(64));
//! buf.sample_task(&mut rng, &mut batch, 64, 1)?;
//! assert_eq!(batch.tasks, vec![1; 64]);
//! # Ok::<(), brc_buffer::BufferError>(())
//! ```

#![warn(missing_docs)]

mod persist;

use rand::Rng;

/// Length of one LunarLander observation vector.
pub const OBS_DIM: usize = 8;

/// Default ring capacity (the predecessor's `replay_buffer_size`).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Number of distinct task ids the buffer can hold (task ids are stored as `u8`).
pub const MAX_TASKS: usize = 256;

/// Errors reported by the replay buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    /// A buffer of capacity zero could never hold a transition.
    #[error("replay buffer capacity must be at least 1")]
    ZeroCapacity,
    /// Sampling was requested before any transition was pushed.
    #[error("cannot sample from an empty replay buffer")]
    Empty,
    /// Sampling was requested for a task that currently has no transitions.
    #[error("cannot sample task {0}: it has no transitions in the replay buffer")]
    EmptyTask(usize),
    /// The task id does not fit the buffer's task-id storage.
    #[error("task id {task} out of range (at most {max} tasks)")]
    TaskOutOfRange {
        /// The offending task id.
        task: usize,
        /// The number of supported task ids.
        max: usize,
    },
    /// A replay file could not be written or read.
    #[error("replay file {0}")]
    File(String),
}

/// One environment step as handed to [`ReplayBuffer::push`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// Observation before the action.
    pub obs: [f32; OBS_DIM],
    /// Discrete action taken.
    pub action: u32,
    /// Reward received for the step.
    pub reward: f32,
    /// Observation after the action.
    pub next_obs: [f32; OBS_DIM],
    /// `true` only for a real termination (crash / landing / out of bounds). A time-limit
    /// truncation must be pushed as `false`, because the value of `next_obs` still counts there.
    pub terminated: bool,
    /// Task id (standard 0, windy 1, heavy 2).
    pub task: usize,
}

/// A reusable minibatch in struct-of-arrays layout.
///
/// The sampling methods clear and refill the vectors; their capacity is kept, so after the
/// first fill a training loop that reuses one `Batch` does not allocate.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Batch {
    /// Observations, row-major `[B, OBS_DIM]`.
    pub obs: Vec<f32>,
    /// Actions `[B]` (u32 so it can become an index tensor directly).
    pub actions: Vec<u32>,
    /// Rewards `[B]`.
    pub rewards: Vec<f32>,
    /// Next observations, row-major `[B, OBS_DIM]`.
    pub next_obs: Vec<f32>,
    /// Termination flags `[B]` as `1.0` (terminated) or `0.0`, ready for `(1 - done)` masks.
    pub terminated: Vec<f32>,
    /// Task ids `[B]` (u32 so it can become an index tensor directly).
    pub tasks: Vec<u32>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `batch_size` transitions, so even the first fill does
    /// not allocate.
    pub fn with_capacity(batch_size: usize) -> Self {
        Self {
            obs: Vec::with_capacity(batch_size * OBS_DIM),
            actions: Vec::with_capacity(batch_size),
            rewards: Vec::with_capacity(batch_size),
            next_obs: Vec::with_capacity(batch_size * OBS_DIM),
            terminated: Vec::with_capacity(batch_size),
            tasks: Vec::with_capacity(batch_size),
        }
    }

    /// Number of transitions currently in the batch.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether the batch holds no transition.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    fn clear(&mut self) {
        self.obs.clear();
        self.actions.clear();
        self.rewards.clear();
        self.next_obs.clear();
        self.terminated.clear();
        self.tasks.clear();
    }
}

/// Fixed-capacity multi-task ring buffer of transitions.
///
/// Slots `0..len()` are filled; once full, each push overwrites the oldest slot.
#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    capacity: usize,
    len: usize,
    /// Slot the next push writes to (the oldest slot once the buffer is full).
    next: usize,
    obs: Vec<f32>,
    actions: Vec<u32>,
    rewards: Vec<f32>,
    next_obs: Vec<f32>,
    terminated: Vec<bool>,
    tasks: Vec<u8>,
    /// `task_slots[t]` lists the slots holding task `t`, in no particular order.
    task_slots: Vec<Vec<usize>>,
    /// `slot_pos[s]` is the index of slot `s` inside `task_slots[tasks[s]]`; it lets an
    /// overwrite remove the old entry in O(1) with `swap_remove`.
    slot_pos: Vec<usize>,
}

impl ReplayBuffer {
    /// Creates an empty buffer holding at most `capacity` transitions.
    ///
    /// Storage is allocated up front so pushes never reallocate the main arrays.
    pub fn new(capacity: usize) -> Result<Self, BufferError> {
        if capacity == 0 {
            return Err(BufferError::ZeroCapacity);
        }
        Ok(Self {
            capacity,
            len: 0,
            next: 0,
            obs: vec![0.0; capacity * OBS_DIM],
            actions: vec![0; capacity],
            rewards: vec![0.0; capacity],
            next_obs: vec![0.0; capacity * OBS_DIM],
            terminated: vec![false; capacity],
            tasks: vec![0; capacity],
            task_slots: Vec::new(),
            slot_pos: vec![0; capacity],
        })
    }

    /// Maximum number of transitions held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of transitions currently held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no transition has been pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of transitions of `task` currently held (0 for a task never seen).
    pub fn task_len(&self, task: usize) -> usize {
        self.task_slots.get(task).map_or(0, Vec::len)
    }

    /// One more than the largest task id ever pushed (0 if empty).
    pub fn num_tasks(&self) -> usize {
        self.task_slots.len()
    }

    /// Stores a transition, overwriting the oldest one when the buffer is full.
    ///
    /// Fails only if `t.task >= MAX_TASKS`; the buffer is then unchanged.
    pub fn push(&mut self, t: &Transition) -> Result<(), BufferError> {
        if t.task >= MAX_TASKS {
            return Err(BufferError::TaskOutOfRange {
                task: t.task,
                max: MAX_TASKS,
            });
        }
        let slot = self.next;
        if self.len == self.capacity {
            // The slot is live: unlink it from its old task's list first.
            let old_task = self.tasks[slot] as usize;
            let pos = self.slot_pos[slot];
            let list = &mut self.task_slots[old_task];
            list.swap_remove(pos);
            if let Some(&moved) = list.get(pos) {
                self.slot_pos[moved] = pos;
            }
        } else {
            self.len += 1;
        }
        if self.task_slots.len() <= t.task {
            self.task_slots.resize_with(t.task + 1, Vec::new);
        }
        let list = &mut self.task_slots[t.task];
        self.slot_pos[slot] = list.len();
        list.push(slot);

        let o = slot * OBS_DIM;
        self.obs[o..o + OBS_DIM].copy_from_slice(&t.obs);
        self.next_obs[o..o + OBS_DIM].copy_from_slice(&t.next_obs);
        self.actions[slot] = t.action;
        self.rewards[slot] = t.reward;
        self.terminated[slot] = t.terminated;
        // Cannot truncate: checked against MAX_TASKS above.
        self.tasks[slot] = t.task as u8;
        self.next = (slot + 1) % self.capacity;
        Ok(())
    }

    /// Reads back the transition in `slot` (`slot < len()`), mainly for tests and debugging.
    pub fn get(&self, slot: usize) -> Option<Transition> {
        if slot >= self.len {
            return None;
        }
        let o = slot * OBS_DIM;
        let mut obs = [0.0; OBS_DIM];
        let mut next_obs = [0.0; OBS_DIM];
        obs.copy_from_slice(&self.obs[o..o + OBS_DIM]);
        next_obs.copy_from_slice(&self.next_obs[o..o + OBS_DIM]);
        Some(Transition {
            obs,
            action: self.actions[slot],
            reward: self.rewards[slot],
            next_obs,
            terminated: self.terminated[slot],
            task: self.tasks[slot] as usize,
        })
    }

    /// Fills `batch` with `batch_size` transitions drawn uniformly, with replacement, from all
    /// filled slots (so tasks appear in proportion to their share of the buffer).
    pub fn sample_uniform<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        batch: &mut Batch,
        batch_size: usize,
    ) -> Result<(), BufferError> {
        if self.len == 0 {
            return Err(BufferError::Empty);
        }
        batch.clear();
        for _ in 0..batch_size {
            // Filled slots are exactly 0..len: the ring fills from slot 0 and never empties.
            let slot = rng.random_range(0..self.len);
            self.append(batch, slot);
        }
        Ok(())
    }

    /// Fills `batch` with `batch_size` transitions of `task` only, drawn uniformly with
    /// replacement.
    pub fn sample_task<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        batch: &mut Batch,
        batch_size: usize,
        task: usize,
    ) -> Result<(), BufferError> {
        let slots = match self.task_slots.get(task) {
            Some(s) if !s.is_empty() => s,
            _ => return Err(BufferError::EmptyTask(task)),
        };
        batch.clear();
        for _ in 0..batch_size {
            let slot = slots[rng.random_range(0..slots.len())];
            self.append(batch, slot);
        }
        Ok(())
    }

    /// Fills `batch` with `per_task` transitions of each task `0..num_tasks`, task after task
    /// (`num_tasks × per_task` rows), each drawn uniformly with replacement from its task's
    /// transitions: every task weighs the same in the batch, whatever its share of the buffer.
    pub fn sample_balanced<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        batch: &mut Batch,
        per_task: usize,
        num_tasks: usize,
    ) -> Result<(), BufferError> {
        if let Some(t) = (0..num_tasks).find(|&t| self.task_len(t) == 0) {
            return Err(BufferError::EmptyTask(t));
        }
        batch.clear();
        for slots in &self.task_slots[..num_tasks] {
            for _ in 0..per_task {
                let slot = slots[rng.random_range(0..slots.len())];
                self.append(batch, slot);
            }
        }
        Ok(())
    }

    fn append(&self, batch: &mut Batch, slot: usize) {
        let o = slot * OBS_DIM;
        batch.obs.extend_from_slice(&self.obs[o..o + OBS_DIM]);
        batch
            .next_obs
            .extend_from_slice(&self.next_obs[o..o + OBS_DIM]);
        batch.actions.push(self.actions[slot]);
        batch.rewards.push(self.rewards[slot]);
        batch
            .terminated
            .push(if self.terminated[slot] { 1.0 } else { 0.0 });
        batch.tasks.push(u32::from(self.tasks[slot]));
    }
}

#!/usr/bin/env python3
"""PyTorch + Gymnasium reference for `brc bench`: the same measurements, the same sizes.

Every number here mirrors one of `crates/brc-train/src/bench.rs` (read that file first):

* env: random actions (numpy's `default_rng(1)`, the stream `NumpyRng::from_seed(1)` is) and
  Gymnasium's heuristic pilot, resets included, tasks taking turns (standard, windy, heavy),
  episode i reset with seed i and cut at the task's time limit;
* replay: 1000 samples of 64 from a full 100,000-slot buffer, µs per sample;
* agents (Independent DQN, Shared DQN, BRC with the shipped defaults of
  `crates/brc-agents/src/config.rs`): one update at batch 64 sampled from that buffer
  (the sampling and the batch-to-tensor copy included, as in ours), µs; one batch-1 greedy
  action, µs;
* e2e: a short training run with the trainer's semantics (`crates/brc-train/src/trainer.rs`):
  ε-greedy act → env step → replay push → (once 64 transitions are there) sample 64 → update,
  env steps per second of the whole loop.

One thread (`torch.set_num_threads(1)`); the BRC update is measured once more with two threads
(`agents.brc.update_us_2threads`). Each measurement: one warm-up call, then the repetitions,
reported as median / min / max with the median taken as `sorted(v)[len(v) // 2]`, as ours does.

`--json` prints the document with the keys of `brc bench --json`.
"""

import argparse
import copy
import json
import math
import platform
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import gymnasium as gym
from gymnasium.envs.box2d.lunar_lander import LunarLander, heuristic

OBS_DIM = 8
NUM_ACTIONS = 4
NUM_TASKS = 3
BATCH = 64
CAPACITY = 100_000

# Parameter counts of our networks (crates/brc-nn): the reference must build the same ones.
PARAMS_QMLP = 35_716
PARAMS_SHARED = 37_788
PARAMS_BRONET = 459_820


# ---------------------------------------------------------------------------------------------
# Sizes (BenchSize::full / BenchSize::quick)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSize:
    repetitions: int
    env_steps: int
    brc_updates: int
    e2e_episodes_per_task: int


FULL = BenchSize(repetitions=5, env_steps=50_000, brc_updates=40, e2e_episodes_per_task=2)
QUICK = BenchSize(repetitions=2, env_steps=1_000, brc_updates=2, e2e_episodes_per_task=1)


def measure(values):
    v = sorted(values)
    return {"median": v[len(v) // 2], "min": v[0], "max": v[-1]}


def repeat(size, f):
    """One warm-up call, then `size.repetitions` measured calls (bench.rs `repeat`)."""
    f()
    return measure([f() for _ in range(size.repetitions)])


# ---------------------------------------------------------------------------------------------
# Tasks (crates/brc-envs/src/task.rs) on Gymnasium's LunarLander-v3
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    name: str
    gravity: float
    wind_power: float
    max_episode_steps: int


TASKS = [
    Task("standard", -10.0, 0.0, 1000),
    Task("windy", -10.0, 20.0, 400),
    Task("heavy", -12.5, 0.0, 800),
]


class TaskLander(LunarLander):
    """LunarLander-v3 (discrete) with our task variants, as `shared/refdata/make_refdata.py`
    defines them: `gravity` set after construction (Gymnasium's constructor refuses < -12; reset
    builds the world from the attribute), and for windy tasks a lateral force
    `w ~ U(-P, P)` drawn from the env's RNG at the start of every step, reset's internal step
    included (Gymnasium's own wind option stays off)."""

    def __init__(self, gravity=-10.0, wind_power=0.0, render_mode=None):
        super().__init__(render_mode=render_mode)
        self.gravity = gravity
        self.task_wind_power = wind_power

    def step(self, action):
        if self.task_wind_power > 0.0:
            w = self.np_random.uniform(-self.task_wind_power, self.task_wind_power)
            self.lander.ApplyForceToCenter((w, 0.0), True)
        return super().step(action)


TASK_ENV_ID = "BrcTaskLunarLander-v3"
gym.register(id=TASK_ENV_ID, entry_point=TaskLander)


def make_env(task):
    """`gymnasium.make` with its usual wrappers; the standard task is plain LunarLander-v3."""
    if task.gravity == -10.0 and task.wind_power == 0.0:
        return gym.make("LunarLander-v3", max_episode_steps=task.max_episode_steps)
    return gym.make(
        TASK_ENV_ID,
        gravity=task.gravity,
        wind_power=task.wind_power,
        max_episode_steps=task.max_episode_steps,
    )


def env_rate(steps, use_heuristic):
    """bench.rs `env_rate`: episode i runs task i mod 3 from `reset(seed=i)`."""
    envs = [make_env(t) for t in TASKS]
    actions = np.random.default_rng(1)
    start = time.perf_counter()
    done, episode = 0, 0
    while done < steps:
        task = episode % len(TASKS)
        env = envs[task]
        obs, _ = env.reset(seed=episode)
        for _ in range(TASKS[task].max_episode_steps):
            if use_heuristic:
                a = heuristic(env.unwrapped, obs)
            else:
                a = int(actions.random() * NUM_ACTIONS)
            obs, _, terminated, _, _ = env.step(a)
            done += 1
            if terminated or done >= steps:
                break
        episode += 1
    rate = steps / (time.perf_counter() - start)
    for env in envs:
        env.close()
    return rate


# ---------------------------------------------------------------------------------------------
# Replay buffer (crates/brc-buffer): a ring with per-task slot lists for task sampling
# ---------------------------------------------------------------------------------------------


@dataclass
class Batch:
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    not_done: torch.Tensor
    tasks: torch.Tensor


class ReplayBuffer:
    def __init__(self, capacity):
        self.capacity = capacity
        self.obs = np.zeros((capacity, OBS_DIM), np.float32)
        self.next_obs = np.zeros((capacity, OBS_DIM), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.tasks = np.zeros(capacity, np.int64)
        self.slot_pos = np.zeros(capacity, np.int64)
        self.task_slots = [np.zeros(capacity, np.int64) for _ in range(NUM_TASKS)]
        self.task_count = [0] * NUM_TASKS
        self.len = 0
        self.next = 0

    def push(self, obs, action, reward, next_obs, terminated, task):
        slot = self.next
        if self.len == self.capacity:
            # The slot is live: unlink it from its old task's list (swap-remove).
            old = int(self.tasks[slot])
            pos = int(self.slot_pos[slot])
            last = self.task_count[old] - 1
            moved = int(self.task_slots[old][last])
            self.task_slots[old][pos] = moved
            self.slot_pos[moved] = pos
            self.task_count[old] = last
        else:
            self.len += 1
        n = self.task_count[task]
        self.task_slots[task][n] = slot
        self.slot_pos[slot] = n
        self.task_count[task] = n + 1
        self.obs[slot] = obs
        self.next_obs[slot] = next_obs
        self.actions[slot] = action
        self.rewards[slot] = reward
        self.terminated[slot] = 1.0 if terminated else 0.0
        self.tasks[slot] = task
        self.next = (slot + 1) % self.capacity

    def fill(self, obs, actions, rewards, next_obs, terminated, tasks):
        """Bulk push into an empty buffer (the bench's pre-filled buffer; not timed)."""
        n = len(obs)
        assert self.len == 0 and n <= self.capacity
        for i in range(n):
            self.push(obs[i], actions[i], rewards[i], next_obs[i], terminated[i], int(tasks[i]))

    def task_len(self, task):
        return self.task_count[task]

    def sample_uniform(self, rng, n):
        return self._gather(rng.integers(0, self.len, n))

    def sample_task(self, rng, n, task):
        count = self.task_count[task]
        if count == 0:
            raise ValueError(f"no transitions of task {task}")
        return self._gather(self.task_slots[task][rng.integers(0, count, n)])

    def _gather(self, idx):
        return (
            self.obs[idx],
            self.actions[idx],
            self.rewards[idx],
            self.next_obs[idx],
            self.terminated[idx],
            self.tasks[idx],
        )


def to_tensors(sample):
    """The batch on the device (ours: `BatchTensors::new`)."""
    obs, actions, rewards, next_obs, terminated, tasks = sample
    return Batch(
        obs=torch.from_numpy(obs),
        actions=torch.from_numpy(actions),
        rewards=torch.from_numpy(rewards),
        next_obs=torch.from_numpy(next_obs),
        not_done=torch.from_numpy(1.0 - terminated),
        tasks=torch.from_numpy(tasks),
    )


def filled_buffer():
    """bench.rs `filled_buffer`: 100,000 random transitions, task i mod 3, every 50th terminal."""
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1.0, 1.0, (CAPACITY, OBS_DIM)).astype(np.float32)
    actions = rng.integers(0, NUM_ACTIONS, CAPACITY)
    rewards = rng.uniform(-10.0, 10.0, CAPACITY).astype(np.float32)
    idx = np.arange(CAPACITY)
    buffer = ReplayBuffer(CAPACITY)
    buffer.fill(obs, actions, rewards, obs, idx % 50 == 0, idx % 3)
    return buffer


# ---------------------------------------------------------------------------------------------
# Networks (crates/brc-nn/src/{mlp,bronet,layers,init}.rs)
# ---------------------------------------------------------------------------------------------


def kaiming_linear(in_dim, out_dim):
    layer = nn.Linear(in_dim, out_dim)
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


class QMlp(nn.Module):
    """8 → 256 → ReLU → 128 → ReLU → 4 (Independent DQN; `task` is ignored)."""

    def __init__(self, in_dim=OBS_DIM):
        super().__init__()
        self.fc1 = kaiming_linear(in_dim, 256)
        self.fc2 = kaiming_linear(256, 128)
        self.fc3 = kaiming_linear(128, NUM_ACTIONS)

    def trunk(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    def forward(self, obs, task):
        return self.trunk(obs)


class SharedQMlp(QMlp):
    """concat(state, 8-d embedding[task]) → 256 → ReLU → 128 → ReLU → 4 (Shared DQN)."""

    def __init__(self):
        super().__init__(in_dim=OBS_DIM + 8)
        self.task_embedding = nn.Embedding(NUM_TASKS, 8)
        nn.init.normal_(self.task_embedding.weight, 0.0, 0.1)

    def forward(self, obs, task):
        return self.trunk(torch.cat([obs, self.task_embedding(task)], 1))


class Block(nn.Module):
    """Pre-LN residual block `x + fc2(ReLU(fc1(LN(x))))`."""

    def __init__(self, dim):
        super().__init__()
        self.ln = nn.LayerNorm(dim, eps=1e-5)
        self.fc1 = kaiming_linear(dim, dim)
        self.fc2 = kaiming_linear(dim, dim)

    def forward(self, x):
        return x + self.fc2(F.relu(self.fc1(self.ln(x))))


class BroNet(nn.Module):
    """concat(state, 32-d embedding[task]) → Linear 256 → ReLU → 3 blocks → LN → Linear to
    4 × 51 logits, returned as [B, 4, 51]."""

    def __init__(self, embedding_dim=32, hidden=256, blocks=3, atoms=51):
        super().__init__()
        self.atoms = atoms
        self.task_embedding = nn.Embedding(NUM_TASKS, embedding_dim)
        nn.init.normal_(self.task_embedding.weight, 0.0, math.sqrt(1.0 / embedding_dim))
        self.input = kaiming_linear(OBS_DIM + embedding_dim, hidden)
        self.blocks = nn.ModuleList(Block(hidden) for _ in range(blocks))
        self.final_ln = nn.LayerNorm(hidden, eps=1e-5)
        self.output = nn.Linear(hidden, NUM_ACTIONS * atoms)
        nn.init.xavier_uniform_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, obs, task):
        x = F.relu(self.input(torch.cat([obs, self.task_embedding(task)], 1)))
        for b in self.blocks:
            x = b(x)
        x = self.final_ln(x)
        return self.output(x).view(-1, NUM_ACTIONS, self.atoms)


def num_params(module):
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# Agents (crates/brc-agents): defaults of config.rs
# ---------------------------------------------------------------------------------------------

GAMMA = 0.99


@dataclass(frozen=True)
class Exploration:
    start: float
    end: float
    decay: float


def make_optimizer(cls, params, impl, **kw):
    if impl == "foreach":
        kw["foreach"] = True
    elif impl == "fused":
        kw["fused"] = True
    return cls(params, **kw)


def grad_norm_and_clip(params, clip):
    """Global L2 norm of the gradients, always computed (ours reports it); scaled down to
    `clip` when `clip > 0` (ours: `optim.rs`, PyTorch's `clip_grad_norm_` scales by
    `clip / (norm + 1e-6)` the same way)."""
    if clip > 0:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    grads = [p.grad for p in params if p.grad is not None]
    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class EpsilonGreedy:
    def __init__(self, schedule):
        self.epsilon = schedule.start
        self.end = schedule.end
        self.decay = schedule.decay

    def end_episode(self):
        self.epsilon = max(self.end, self.epsilon * self.decay)

    def explore(self, rng):
        if rng.random() < self.epsilon:
            return int(rng.integers(0, NUM_ACTIONS))
        return None


def dqn_update(online, target, optimizer, params, b, clip):
    """DQN (not double), MSE: mean (Q(s,a) − (r + γ(1 − done) max_a' Q_target(s', a')))²
    (`td.rs`), backward, global-norm clip where configured, Adam step."""
    q = online(b.obs, b.tasks)
    q_taken = q.gather(1, b.actions.unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        next_max = target(b.next_obs, b.tasks).max(1).values
        td_target = b.rewards + GAMMA * next_max * b.not_done
    loss = F.mse_loss(q_taken, td_target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = grad_norm_and_clip(params, clip)
    optimizer.step()
    return loss.item(), float(norm), q_taken.detach().mean().item()


class IndependentDqn:
    """One QMlp, target and Adam (lr 5e-4, clip 10) per task; batches of one task."""

    kind = "independent_dqn"

    def __init__(self, exploration, seed, optimizer_impl, lr=5e-4, grad_clip=10.0, min_replay=64,
                 target_update_episodes=10):
        torch.manual_seed(seed)
        self.learners = []
        for _ in range(NUM_TASKS):
            online = QMlp()
            assert num_params(online) == PARAMS_QMLP, num_params(online)
            target = copy.deepcopy(online)
            params = list(online.parameters())
            self.learners.append({
                "online": online,
                "target": target,
                "params": params,
                "optimizer": make_optimizer(torch.optim.Adam, params, optimizer_impl, lr=lr),
                "exploration": EpsilonGreedy(exploration),
                "episodes": 0,
            })
        self.grad_clip = grad_clip
        self._min_replay = min_replay
        self.target_update_episodes = target_update_episodes
        self.rng = np.random.default_rng(seed + 1)

    def num_params(self):
        return sum(num_params(l["online"]) for l in self.learners)

    def replay_source(self, task):
        return task

    def min_replay(self, task):
        return self._min_replay

    @torch.no_grad()
    def greedy_action(self, obs, task):
        o = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        t = torch.tensor([task])
        return int(self.learners[task]["online"](o, t).argmax())

    def act(self, obs, task):
        a = self.learners[task]["exploration"].explore(self.rng)
        return self.greedy_action(obs, task) if a is None else a

    def update(self, sample):
        tasks = sample[5]
        task = int(tasks[0])
        if (tasks != task).any():
            raise ValueError("independent_dqn needs single-task batches")
        l = self.learners[task]
        b = to_tensors(sample)
        return dqn_update(l["online"], l["target"], l["optimizer"], l["params"], b, self.grad_clip)

    def end_episode(self, task):
        l = self.learners[task]
        l["exploration"].end_episode()
        l["episodes"] += 1
        if l["episodes"] % self.target_update_episodes == 0:
            l["target"].load_state_dict(l["online"].state_dict())


class SharedDqn:
    """One SharedQMlp for all tasks, Adam lr 5e-4, no clipping, mixed-task batches."""

    kind = "shared_dqn"

    def __init__(self, exploration, seed, optimizer_impl, lr=5e-4, grad_clip=0.0, min_replay=64,
                 target_update_episodes=10):
        torch.manual_seed(seed)
        self.online = SharedQMlp()
        assert num_params(self.online) == PARAMS_SHARED, num_params(self.online)
        self.target = copy.deepcopy(self.online)
        self.params = list(self.online.parameters())
        self.optimizer = make_optimizer(torch.optim.Adam, self.params, optimizer_impl, lr=lr)
        self.exploration = EpsilonGreedy(exploration)
        self.grad_clip = grad_clip
        self._min_replay = min_replay
        self.target_update_episodes = target_update_episodes
        self.episodes = 0
        self.rng = np.random.default_rng(seed + 1)

    def num_params(self):
        return num_params(self.online)

    def replay_source(self, task):
        return None

    def min_replay(self, task):
        return self._min_replay

    @torch.no_grad()
    def greedy_action(self, obs, task):
        o = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        t = torch.tensor([task])
        return int(self.online(o, t).argmax())

    def act(self, obs, task):
        a = self.exploration.explore(self.rng)
        return self.greedy_action(obs, task) if a is None else a

    def update(self, sample):
        b = to_tensors(sample)
        return dqn_update(self.online, self.target, self.optimizer, self.params, b, self.grad_clip)

    def end_episode(self, task):
        self.exploration.end_episode()
        self.episodes += 1
        if self.episodes % self.target_update_episodes == 0:
            self.target.load_state_dict(self.online.state_dict())


def project_distribution(probs, rewards, discounts, v_min, v_max, n):
    """C51 projection of `probs` [B, n] shifted to `r + discount·z` back onto the support,
    vectorised; the same arithmetic as ours (`brc.rs` `project_distribution`): positions in
    float64, clamped to the support; mass on an atom goes wholly to it, otherwise it is split
    between the two neighbours in proportion to the distance."""
    delta = (v_max - v_min) / (n - 1)
    z = v_min + torch.arange(n, dtype=torch.float64) * delta
    tz = (rewards.unsqueeze(1) + discounts.unsqueeze(1) * z.unsqueeze(0)).clamp(v_min, v_max)
    b = ((tz - v_min) / delta).clamp(0.0, n - 1)
    lower = b.floor()
    frac = b - lower
    lo = lower.long()
    hi = lo + (frac > 0).long()  # frac > 0 only below the last atom
    out = torch.zeros_like(probs)
    out.scatter_add_(1, lo, probs * (1.0 - frac).float())
    out.scatter_add_(1, hi, probs * frac.float())
    return out


def project_distribution_scalar(probs, reward, discount, v_min, v_max, n):
    """A line-by-line port of ours, one row, for the self-check."""
    out = [0.0] * n
    delta = (v_max - v_min) / (n - 1)
    for j, p in enumerate(probs):
        z = v_min + j * delta
        tz = min(max(reward + discount * z, v_min), v_max)
        b = min(max((tz - v_min) / delta, 0.0), n - 1)
        lower = math.floor(b)
        frac = b - lower
        if frac == 0.0:
            out[lower] += p
        else:
            out[lower] += p * (1.0 - frac)
            out[lower + 1] += p * frac
    return out


class Brc:
    """BroNet (459,820 parameters) + C51 (51 atoms on [−100, 300], double-DQN action
    selection: online picks a*, target evaluates it) + AdamW (lr 3e-4, weight decay 1e-4),
    global-norm clip 10, cross-entropy against the projected target (`brc.rs`)."""

    kind = "brc"

    def __init__(self, exploration, seed, optimizer_impl, lr=3e-4, weight_decay=1e-4,
                 grad_clip=10.0, v_min=-100.0, v_max=300.0, num_atoms=51, reward_scale=1.0,
                 min_replay=64, target_update_episodes=10, target_tau=0.0):
        torch.manual_seed(seed)
        self.online = BroNet(atoms=num_atoms)
        if num_atoms == 51:
            assert num_params(self.online) == PARAMS_BRONET, num_params(self.online)
        self.target_tau = target_tau
        self.target = copy.deepcopy(self.online)
        self.params = list(self.online.parameters())
        self.optimizer = make_optimizer(torch.optim.AdamW, self.params, optimizer_impl, lr=lr,
                                        weight_decay=weight_decay)
        self.v_min, self.v_max, self.n = v_min, v_max, num_atoms
        delta = (v_max - v_min) / (num_atoms - 1)
        self.atoms = torch.tensor([v_min + i * delta for i in range(num_atoms)], dtype=torch.float32)
        self.reward_scale = reward_scale
        self.grad_clip = grad_clip
        self.exploration = EpsilonGreedy(exploration)
        self._min_replay = min_replay
        self.target_update_episodes = target_update_episodes
        self.episodes = 0
        self.rng = np.random.default_rng(seed + 1)

    def num_params(self):
        return num_params(self.online)

    def replay_source(self, task):
        return None

    def min_replay(self, task):
        return self._min_replay

    @torch.no_grad()
    def greedy_action(self, obs, task):
        o = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        t = torch.tensor([task])
        q = (F.softmax(self.online(o, t), -1) * self.atoms).sum(-1)
        if self.reward_scale != 1.0:
            q = q / self.reward_scale
        return int(q.argmax())

    def act(self, obs, task):
        a = self.exploration.explore(self.rng)
        return self.greedy_action(obs, task) if a is None else a

    def update(self, sample):
        b = to_tensors(sample)
        rows = torch.arange(b.obs.shape[0])
        with torch.no_grad():
            next_q = (F.softmax(self.online(b.next_obs, b.tasks), -1) * self.atoms).sum(-1)
            next_actions = next_q.argmax(-1)
            next_probs = F.softmax(self.target(b.next_obs, b.tasks), -1)[rows, next_actions]
            projected = project_distribution(
                next_probs,
                b.rewards.double() * self.reward_scale,
                GAMMA * b.not_done.double(),
                self.v_min,
                self.v_max,
                self.n,
            )
        logits = self.online(b.obs, b.tasks)
        log_p = F.log_softmax(logits[rows, b.actions], -1)
        loss = -(projected * log_p).sum(-1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = grad_norm_and_clip(self.params, self.grad_clip)
        self.optimizer.step()
        if self.target_tau > 0.0:
            # Polyak target (brc_tuned): one fused lerp over all parameters.
            with torch.no_grad():
                torch._foreach_lerp_(list(self.target.parameters()), self.params, self.target_tau)
        mean_q = (log_p.detach().exp() * self.atoms).sum(-1).mean().item() / self.reward_scale
        return loss.item(), float(norm), mean_q

    def end_episode(self, task):
        self.exploration.end_episode()
        self.episodes += 1
        if self.target_tau == 0.0 and self.episodes % self.target_update_episodes == 0:
            self.target.load_state_dict(self.online.state_dict())


def BrcTuned(exploration, seed, optimizer_impl):
    """configs/brc_tuned.toml: 101 atoms on ±20, rewards × 0.03, Polyak target τ = 0.005."""
    return Brc(exploration, seed, optimizer_impl, v_min=-20.0, v_max=20.0, num_atoms=101,
               reward_scale=0.03, target_tau=0.005)


AGENTS = {"independent_dqn": IndependentDqn, "shared_dqn": SharedDqn, "brc": Brc,
          "brc_tuned": BrcTuned}


def self_check():
    """Parameter counts and the vectorised C51 projection against the scalar port."""
    assert num_params(QMlp()) == PARAMS_QMLP
    assert num_params(SharedQMlp()) == PARAMS_SHARED
    assert num_params(BroNet()) == PARAMS_BRONET
    g = torch.Generator().manual_seed(0)
    rows, n = 40, 51
    probs = torch.rand(rows, n, generator=g) + 1e-6
    probs = (probs / probs.sum(1, keepdim=True)).float()
    rewards = (torch.rand(rows, generator=g, dtype=torch.float64) * 600 - 200)
    # Rewards and discounts that put every target exactly on an atom (terminal ±100, ...).
    rewards[:8] = torch.tensor([-100.0, 100.0, -150.0, 0.0, 300.0, 1000.0, -37.3, 8.0],
                               dtype=torch.float64)
    discounts = torch.where(torch.rand(rows, generator=g) < 0.5, 0.0, 0.99).double()
    discounts[:8] = 0.0
    out = project_distribution(probs, rewards, discounts, -100.0, 300.0, n)
    for i in range(rows):
        ref = project_distribution_scalar(probs[i].tolist(), float(rewards[i]), float(discounts[i]),
                                          -100.0, 300.0, n)
        diff = max(abs(a - b) for a, b in zip(out[i].tolist(), ref))
        assert diff < 1e-6, (i, diff)
        assert abs(float(out[i].sum()) - float(probs[i].sum())) < 1e-5
    # Terminal −100 and +100 land exactly on atoms 0 and 25: all the mass stays there.
    assert abs(float(out[0, 0]) - float(probs[0].sum())) < 1e-6
    assert abs(float(out[1, 25]) - float(probs[1].sum())) < 1e-6


# ---------------------------------------------------------------------------------------------
# The bench (bench.rs `run_bench`)
# ---------------------------------------------------------------------------------------------

NO_EXPLORATION = Exploration(0.0, 0.0, 1.0)
TRAIN_EXPLORATION = Exploration(1.0, 0.01, 0.995)  # TrainingSection defaults


def bench_agent(name, size, buffer, rng, optimizer_impl, two_threads):
    agent = AGENTS[name](NO_EXPLORATION, 0, optimizer_impl)
    updates = size.brc_updates if name.startswith("brc") else 10 * size.brc_updates
    source = agent.replay_source(0)

    def update_once():
        start = time.perf_counter()
        for _ in range(updates):
            if source is None:
                sample = buffer.sample_uniform(rng, BATCH)
            else:
                sample = buffer.sample_task(rng, BATCH, source)
            agent.update(sample)
        return (time.perf_counter() - start) * 1e6 / updates

    obs = np.full(OBS_DIM, 0.1, np.float32)

    def act_once():
        start = time.perf_counter()
        for _ in range(1000):
            agent.greedy_action(obs, 1)
        return (time.perf_counter() - start) * 1e3

    out = {"update_us": repeat(size, update_once), "act_us": repeat(size, act_once),
           "parameters": agent.num_params()}
    if two_threads:
        torch.set_num_threads(2)
        try:
            out["update_us_2threads"] = repeat(size, update_once)
        finally:
            torch.set_num_threads(1)
    return out


def train_slice(kind, episodes_per_task, optimizer_impl, seed=0):
    """One short training run with the trainer's semantics; returns (env steps, updates, s)."""
    envs = [make_env(t) for t in TASKS]
    agent = AGENTS[kind](TRAIN_EXPLORATION, seed, optimizer_impl)
    buffer = ReplayBuffer(CAPACITY)
    replay_rng = np.random.default_rng(seed + 2)
    log = tempfile.TemporaryFile("w+")
    env_steps = updates = 0
    start = time.perf_counter()
    for episode in range(episodes_per_task * len(TASKS)):
        task = episode % len(TASKS)
        spec = TASKS[task]
        env = envs[task]
        obs, _ = env.reset(seed=(1 << 40) + episode)
        losses = []
        episode_return, length, terminated = 0.0, 0, False
        for _ in range(spec.max_episode_steps):
            action = agent.act(obs, task)
            next_obs, reward, terminated, _, _ = env.step(action)
            buffer.push(obs, action, reward, next_obs, terminated, task)
            env_steps += 1
            length += 1
            episode_return += reward
            obs = next_obs
            source = agent.replay_source(task)
            available = buffer.len if source is None else buffer.task_len(source)
            if available >= max(agent.min_replay(task), 1):
                if source is None:
                    sample = buffer.sample_uniform(replay_rng, BATCH)
                else:
                    sample = buffer.sample_task(replay_rng, BATCH, source)
                loss, _, _ = agent.update(sample)
                updates += 1
                if not math.isfinite(loss):
                    raise RuntimeError(f"non-finite loss in episode {episode}")
                losses.append(loss)
            if terminated:
                break
        agent.end_episode(task)
        log.write(json.dumps({
            "episode": episode, "task": spec.name, "episode_return": float(episode_return),
            "length": length, "terminated": bool(terminated),
            "mean_loss": sum(losses) / len(losses) if losses else None,
            "env_steps": env_steps, "updates": updates,
            "wall_seconds": time.perf_counter() - start,
        }) + "\n")
    wall = time.perf_counter() - start
    log.close()
    for env in envs:
        env.close()
    return env_steps, updates, wall


def e2e_slice(kind, size, optimizer_impl):
    rates = []
    for _ in range(min(size.repetitions, 3)):
        steps, updates, wall = train_slice(kind, size.e2e_episodes_per_task, optimizer_impl)
        rates.append((steps / wall, updates / wall, steps, updates))
    return {
        "steps_per_s": measure([r[0] for r in rates]),
        "updates_per_s": measure([r[1] for r in rates]),
        "env_steps": [r[2] for r in rates],
        "updates": [r[3] for r in rates],
    }


def run_bench(size, sections, optimizer_impl, progress):
    report = {}
    if "env" in sections:
        progress("env, random actions")
        random_rate = repeat(size, lambda: env_rate(size.env_steps, False))
        progress("env, heuristic pilot")
        heuristic_rate = repeat(size, lambda: env_rate(size.env_steps, True))
        report["env"] = {"steps_per_s": random_rate, "heuristic_steps_per_s": heuristic_rate}
    buffer = filled_buffer()
    rng = np.random.default_rng(1)
    if "replay" in sections:
        progress("replay sample")

        def sample_once():
            start = time.perf_counter()
            for _ in range(1000):
                buffer.sample_uniform(rng, BATCH)
            return (time.perf_counter() - start) * 1e3

        report["replay_sample_us"] = repeat(size, sample_once)
    agents, e2e = {}, {}
    for name in ("independent_dqn", "shared_dqn", "brc", "brc_tuned"):
        if "agents" in sections:
            progress(f"{name}: update and act")
            agents[name] = bench_agent(name, size, buffer, rng, optimizer_impl, name == "brc")
        if "e2e" in sections and name != "brc_tuned":
            progress(f"{name}: training slice")
            e2e[name] = e2e_slice(name, size, optimizer_impl)
    if agents:
        report["agents"] = dict(sorted(agents.items()))
    if e2e:
        report["e2e"] = dict(sorted(e2e.items()))
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--quick", action="store_true", help="BenchSize::quick (noisy; smoke checks)")
    ap.add_argument("--sections", default="env,replay,agents,e2e",
                    help="comma-separated subset of env,replay,agents,e2e (default: all)")
    ap.add_argument("--optimizer-impl", choices=("default", "foreach", "fused"), default="default",
                    help="torch.optim implementation (default: PyTorch's own choice on CPU)")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    unknown = sections - {"env", "replay", "agents", "e2e"}
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    self_check()
    size = QUICK if args.quick else FULL

    def progress(what):
        print(f"reference: {what}", file=sys.stderr, flush=True)

    report = run_bench(size, sections, args.optimizer_impl, progress)
    report["meta"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "threads": 1,
        "optimizer_impl": args.optimizer_impl,
        "size": "quick" if args.quick else "full",
        "torch_parallel_info": [l.strip() for l in torch.__config__.parallel_info().splitlines()
                                if l.strip()],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return

    def fmt(m):
        return f"{m['median']:.1f} [{m['min']:.1f}, {m['max']:.1f}]"

    print(f"one thread; median [min, max] of {size.repetitions} repetitions (PyTorch "
          f"{torch.__version__}, Gymnasium {gym.__version__})")
    if "env" in report:
        print(f"env, random actions     {fmt(report['env']['steps_per_s'])} steps/s")
        print(f"env, heuristic pilot    {fmt(report['env']['heuristic_steps_per_s'])} steps/s")
    if "replay_sample_us" in report:
        print(f"replay sample (64)      {fmt(report['replay_sample_us'])} µs")
    for kind in ("brc", "independent_dqn", "shared_dqn"):
        a = report.get("agents", {}).get(kind)
        e = report.get("e2e", {}).get(kind)
        if not a and not e:
            continue
        line = f"{kind:<16}"
        if a:
            line += f" {a['parameters']:>8} params  update {fmt(a['update_us'])} µs  act {fmt(a['act_us'])} µs"
            if "update_us_2threads" in a:
                line += f"  update (2 threads) {fmt(a['update_us_2threads'])} µs"
        if e:
            line += f"  training {fmt(e['steps_per_s'])} steps/s"
        print(line)


if __name__ == "__main__":
    main()

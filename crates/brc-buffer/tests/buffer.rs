//! Behavioural tests of the replay buffer: ring overwrite, filled-slot sampling, per-task
//! sampling (also after wrap-around) and error cases.

use brc_buffer::{Batch, BufferError, ReplayBuffer, Transition, DEFAULT_CAPACITY, OBS_DIM};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{HashSet, VecDeque};

/// A transition whose every field encodes `id`, so a sampled row identifies its origin.
fn tr(id: usize, task: usize) -> Transition {
    let f = id as f32;
    let mut obs = [0.0; OBS_DIM];
    let mut next_obs = [0.0; OBS_DIM];
    for k in 0..OBS_DIM {
        obs[k] = f + k as f32 * 0.01;
        next_obs[k] = -f - k as f32 * 0.01;
    }
    Transition {
        obs,
        action: (id % 4) as u32,
        reward: f * 10.0,
        next_obs,
        terminated: id % 3 == 1,
        task,
    }
}

/// Checks that row `i` of the batch is a whole, consistent copy of transition `id` and returns
/// that id.
fn row_id(b: &Batch, i: usize) -> usize {
    let id = b.obs[i * OBS_DIM].round() as usize;
    let t = tr(id, b.tasks[i] as usize);
    assert_eq!(&b.obs[i * OBS_DIM..(i + 1) * OBS_DIM], &t.obs);
    assert_eq!(&b.next_obs[i * OBS_DIM..(i + 1) * OBS_DIM], &t.next_obs);
    assert_eq!(b.actions[i], t.action);
    assert_eq!(b.rewards[i], t.reward);
    assert_eq!(b.terminated[i], if t.terminated { 1.0 } else { 0.0 });
    id
}

#[test]
fn zero_capacity_is_an_error() {
    assert_eq!(ReplayBuffer::new(0).unwrap_err(), BufferError::ZeroCapacity);
    assert_eq!(
        ReplayBuffer::new(DEFAULT_CAPACITY).unwrap().capacity(),
        100_000
    );
}

#[test]
fn sampling_empty_buffer_or_task_is_an_error() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut b = Batch::new();
    let mut buf = ReplayBuffer::new(4).unwrap();
    assert_eq!(
        buf.sample_uniform(&mut rng, &mut b, 8),
        Err(BufferError::Empty)
    );
    assert_eq!(
        buf.sample_task(&mut rng, &mut b, 8, 0),
        Err(BufferError::EmptyTask(0))
    );
    buf.push(&tr(1, 1)).unwrap();
    assert_eq!(
        buf.sample_task(&mut rng, &mut b, 8, 0),
        Err(BufferError::EmptyTask(0))
    );
    assert_eq!(
        buf.sample_task(&mut rng, &mut b, 8, 7),
        Err(BufferError::EmptyTask(7))
    );
    assert!(buf.sample_task(&mut rng, &mut b, 8, 1).is_ok());
    assert!(matches!(
        buf.push(&tr(2, 300)),
        Err(BufferError::TaskOutOfRange { task: 300, .. })
    ));
    assert_eq!(buf.len(), 1);
}

#[test]
fn wrap_around_overwrites_the_oldest() {
    let mut buf = ReplayBuffer::new(5).unwrap();
    for id in 0..7 {
        buf.push(&tr(id, 0)).unwrap();
    }
    assert_eq!(buf.len(), 5);
    let mut held: Vec<usize> = (0..5)
        .map(|s| buf.get(s).unwrap().obs[0] as usize)
        .collect();
    held.sort();
    // 0 and 1 were the oldest and are gone.
    assert_eq!(held, vec![2, 3, 4, 5, 6]);
    assert_eq!(buf.get(0).unwrap(), tr(5, 0));
    assert_eq!(buf.get(1).unwrap(), tr(6, 0));
    assert!(buf.get(5).is_none());
}

#[test]
fn only_filled_slots_are_sampled() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut buf = ReplayBuffer::new(100).unwrap();
    // ids start at 1 so an unfilled (all-zero) slot would show up as id 0.
    for id in 1..=3 {
        buf.push(&tr(id, 0)).unwrap();
    }
    let mut b = Batch::with_capacity(256);
    buf.sample_uniform(&mut rng, &mut b, 256).unwrap();
    assert_eq!(b.len(), 256);
    assert_eq!(b.obs.len(), 256 * OBS_DIM);
    let seen: HashSet<usize> = (0..b.len()).map(|i| row_id(&b, i)).collect();
    assert_eq!(seen, HashSet::from([1, 2, 3]));
}

#[test]
fn sampling_reuses_the_batch_without_reallocating() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut buf = ReplayBuffer::new(10).unwrap();
    for id in 0..10 {
        buf.push(&tr(id, id % 2)).unwrap();
    }
    let mut b = Batch::with_capacity(64);
    let ptr = b.obs.as_ptr();
    for _ in 0..10 {
        buf.sample_uniform(&mut rng, &mut b, 64).unwrap();
        buf.sample_task(&mut rng, &mut b, 64, 1).unwrap();
    }
    assert_eq!(b.obs.as_ptr(), ptr);
    assert_eq!(b.len(), 64);
}

#[test]
fn same_seed_same_batch() {
    let mut buf = ReplayBuffer::new(50).unwrap();
    for id in 0..80 {
        buf.push(&tr(id, id % 3)).unwrap();
    }
    let draw = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut b = Batch::new();
        buf.sample_uniform(&mut rng, &mut b, 32).unwrap();
        buf.sample_task(&mut rng, &mut b, 32, 2).unwrap();
        b
    };
    assert_eq!(draw(9), draw(9));
}

#[test]
fn per_task_sampling_after_wrap_around() {
    let mut rng = StdRng::seed_from_u64(3);
    let cap = 30;
    let mut buf = ReplayBuffer::new(cap).unwrap();
    let mut model: VecDeque<(usize, usize)> = VecDeque::new();
    // Uneven task pattern, several laps of the ring.
    for id in 0..200 {
        let task = [0, 0, 1, 2, 2, 2, 1][id % 7];
        buf.push(&tr(id, task)).unwrap();
        model.push_back((id, task));
        if model.len() > cap {
            model.pop_front();
        }
    }
    let mut b = Batch::new();
    for task in 0..3 {
        let want: HashSet<usize> = model
            .iter()
            .filter(|(_, t)| *t == task)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(buf.task_len(task), want.len());
        buf.sample_task(&mut rng, &mut b, 2000, task).unwrap();
        assert!(b.tasks.iter().all(|&t| t as usize == task));
        let seen: HashSet<usize> = (0..b.len()).map(|i| row_id(&b, i)).collect();
        // 2000 draws over at most 30 ids: every held transition of the task shows up.
        assert_eq!(seen, want, "task {task}");
    }
    // Task ids are carried through uniform sampling as well.
    buf.sample_uniform(&mut rng, &mut b, 500).unwrap();
    for i in 0..b.len() {
        let id = row_id(&b, i);
        let (_, task) = model.iter().find(|(m, _)| *m == id).unwrap();
        assert_eq!(b.tasks[i] as usize, *task);
    }
}

#[test]
fn a_task_can_vanish_and_return() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut buf = ReplayBuffer::new(3).unwrap();
    buf.push(&tr(0, 2)).unwrap();
    for id in 1..4 {
        buf.push(&tr(id, 0)).unwrap();
    }
    assert_eq!(buf.task_len(2), 0);
    let mut b = Batch::new();
    assert_eq!(
        buf.sample_task(&mut rng, &mut b, 4, 2),
        Err(BufferError::EmptyTask(2))
    );
    buf.push(&tr(4, 2)).unwrap();
    buf.sample_task(&mut rng, &mut b, 4, 2).unwrap();
    assert!((0..4).all(|i| row_id(&b, i) == 4));
    assert_eq!(buf.task_len(0) + buf.task_len(2), 3);
}

proptest! {
    #[test]
    fn task_counts_match_naive_model(
        cap in 1usize..24,
        tasks in proptest::collection::vec(0usize..4, 0..120),
        seed in any::<u64>(),
    ) {
        let mut buf = ReplayBuffer::new(cap).unwrap();
        let mut model: VecDeque<(usize, usize)> = VecDeque::new();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut b = Batch::new();
        for (id, &task) in tasks.iter().enumerate() {
            buf.push(&tr(id, task)).unwrap();
            model.push_back((id, task));
            if model.len() > cap {
                model.pop_front();
            }
            prop_assert_eq!(buf.len(), model.len());
            for t in 0..4 {
                let want = model.iter().filter(|(_, mt)| *mt == t).count();
                prop_assert_eq!(buf.task_len(t), want);
                if want > 0 {
                    // Every sampled row must be a live transition of task t.
                    buf.sample_task(&mut rng, &mut b, 8, t).unwrap();
                    for i in 0..b.len() {
                        let rid = row_id(&b, i);
                        prop_assert!(model.contains(&(rid, t)));
                    }
                } else {
                    prop_assert_eq!(
                        buf.sample_task(&mut rng, &mut b, 8, t),
                        Err(BufferError::EmptyTask(t))
                    );
                }
            }
        }
    }
}

#[test]
fn balanced_sampling_draws_the_same_count_of_every_task() {
    let mut buf = ReplayBuffer::new(1000).unwrap();
    // Task 0 holds 90% of the buffer, tasks 1 and 2 5% each.
    for id in 0..200 {
        let task = match id % 20 {
            0 => 1,
            1 => 2,
            _ => 0,
        };
        buf.push(&tr(id, task)).unwrap();
    }
    let (mut rng, mut batch) = (StdRng::seed_from_u64(3), Batch::new());
    buf.sample_balanced(&mut rng, &mut batch, 16, 3).unwrap();
    assert_eq!(batch.len(), 48);
    for i in 0..48 {
        assert_eq!(batch.tasks[i] as usize, i / 16, "rows come task after task");
        let id = row_id(&batch, i);
        assert_eq!(
            buf.get(id).unwrap().task,
            i / 16,
            "row {i} is a transition of its task"
        );
    }
    let e = buf
        .sample_balanced(&mut rng, &mut batch, 16, 4)
        .unwrap_err();
    assert_eq!(e, BufferError::EmptyTask(3));
}

//! Saving and restoring a replay buffer exactly (contents, ring position and the per-task slot
//! lists, whose order decides what `sample_task` draws), so a resumed run samples the same
//! batches as an uninterrupted one. The file is safetensors: named little-endian arrays.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::{BufferError, ReplayBuffer, OBS_DIM};

fn bytes<T: Copy>(v: &[T]) -> Vec<u8> {
    // Little-endian numbers as raw bytes; all platforms we build for are little-endian.
    let len = std::mem::size_of_val(v);
    // SAFETY: `v` is a slice of plain numbers (f32/u32/u64/u8); reading its bytes is sound.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, len) }.to_vec()
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> BufferError {
    BufferError::File(format!("{}: {what}", path.display()))
}

impl ReplayBuffer {
    /// Writes the buffer to `path` (temp file + rename, so a crash never leaves half a file).
    pub fn save(&self, path: &Path) -> Result<(), BufferError> {
        let n = self.len;
        let slots: Vec<u64> = self.slot_pos[..n].iter().map(|&p| p as u64).collect();
        let mut arrays: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![
            (
                "obs".into(),
                Dtype::F32,
                vec![n, OBS_DIM],
                bytes(&self.obs[..n * OBS_DIM]),
            ),
            (
                "next_obs".into(),
                Dtype::F32,
                vec![n, OBS_DIM],
                bytes(&self.next_obs[..n * OBS_DIM]),
            ),
            (
                "actions".into(),
                Dtype::U32,
                vec![n],
                bytes(&self.actions[..n]),
            ),
            (
                "rewards".into(),
                Dtype::F32,
                vec![n],
                bytes(&self.rewards[..n]),
            ),
            (
                "terminated".into(),
                Dtype::U8,
                vec![n],
                self.terminated[..n].iter().map(|&d| u8::from(d)).collect(),
            ),
            ("tasks".into(), Dtype::U8, vec![n], self.tasks[..n].to_vec()),
            ("slot_pos".into(), Dtype::U64, vec![n], bytes(&slots)),
        ];
        for (t, list) in self.task_slots.iter().enumerate() {
            let list: Vec<u64> = list.iter().map(|&s| s as u64).collect();
            arrays.push((
                format!("task_slots.{t}"),
                Dtype::U64,
                vec![list.len()],
                bytes(&list),
            ));
        }
        let views: Vec<(String, TensorView)> = arrays
            .iter()
            .map(|(name, dtype, shape, data)| {
                let view =
                    TensorView::new(*dtype, shape.clone(), data).map_err(|e| corrupt(path, e))?;
                Ok((name.clone(), view))
            })
            .collect::<Result<_, BufferError>>()?;
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), "brc-replay-1".to_string());
        meta.insert("capacity".to_string(), self.capacity.to_string());
        meta.insert("next".to_string(), self.next.to_string());
        meta.insert("num_tasks".to_string(), self.task_slots.len().to_string());
        let data = safetensors::serialize(views, Some(meta)).map_err(|e| corrupt(path, e))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, data).map_err(|e| corrupt(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| corrupt(path, e))
    }

    /// Reads a buffer written by [`ReplayBuffer::save`].
    pub fn load(path: &Path) -> Result<Self, BufferError> {
        let data = std::fs::read(path).map_err(|e| corrupt(path, e))?;
        let (_, header) = SafeTensors::read_metadata(&data).map_err(|e| corrupt(path, e))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some("brc-replay-1") {
            return Err(corrupt(path, "not a brc replay file"));
        }
        let number = |key: &str| -> Result<usize, BufferError> {
            meta.get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt(path, format!("missing `{key}`")))
        };
        let (capacity, next, num_tasks) =
            (number("capacity")?, number("next")?, number("num_tasks")?);
        let st = SafeTensors::deserialize(&data).map_err(|e| corrupt(path, e))?;
        let raw = |name: &str, dtype: Dtype| -> Result<Vec<u8>, BufferError> {
            let t = st.tensor(name).map_err(|e| corrupt(path, e))?;
            if t.dtype() != dtype {
                return Err(corrupt(path, format!("`{name}` has dtype {:?}", t.dtype())));
            }
            Ok(t.data().to_vec())
        };
        let f32s = |name: &str| -> Result<Vec<f32>, BufferError> {
            Ok(raw(name, Dtype::F32)?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let u64s = |name: &str| -> Result<Vec<usize>, BufferError> {
            Ok(raw(name, Dtype::U64)?
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")) as usize)
                .collect())
        };
        let mut buffer = ReplayBuffer::new(capacity)?;
        let obs = f32s("obs")?;
        let n = obs.len() / OBS_DIM;
        if n > capacity || next >= capacity {
            return Err(corrupt(path, "ring position out of range"));
        }
        buffer.len = n;
        buffer.next = next;
        buffer.obs[..n * OBS_DIM].copy_from_slice(&obs);
        let next_obs = f32s("next_obs")?;
        let rewards = f32s("rewards")?;
        let actions: Vec<u32> = raw("actions", Dtype::U32)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let terminated = raw("terminated", Dtype::U8)?;
        let tasks = raw("tasks", Dtype::U8)?;
        let slot_pos = u64s("slot_pos")?;
        let lengths_ok = next_obs.len() == n * OBS_DIM
            && [
                rewards.len(),
                actions.len(),
                terminated.len(),
                tasks.len(),
                slot_pos.len(),
            ]
            .iter()
            .all(|&l| l == n);
        if !lengths_ok {
            return Err(corrupt(path, "array lengths disagree"));
        }
        buffer.next_obs[..n * OBS_DIM].copy_from_slice(&next_obs);
        buffer.rewards[..n].copy_from_slice(&rewards);
        buffer.actions[..n].copy_from_slice(&actions);
        for (dst, &d) in buffer.terminated.iter_mut().zip(&terminated) {
            *dst = d != 0;
        }
        buffer.tasks[..n].copy_from_slice(&tasks);
        buffer.slot_pos[..n].copy_from_slice(&slot_pos);
        for t in 0..num_tasks {
            let list = u64s(&format!("task_slots.{t}"))?;
            if list.iter().any(|&s| s >= n) {
                return Err(corrupt(path, "slot index out of range"));
            }
            buffer.task_slots.push(list);
        }
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, Transition};
    use rand::SeedableRng;

    #[test]
    fn save_load_round_trip_samples_identically() {
        let mut buffer = ReplayBuffer::new(50).unwrap();
        for i in 0..130u32 {
            buffer
                .push(&Transition {
                    obs: [i as f32; OBS_DIM],
                    action: i % 4,
                    reward: i as f32 * 0.5,
                    next_obs: [-(i as f32); OBS_DIM],
                    terminated: i % 7 == 0,
                    task: (i % 3) as usize,
                })
                .unwrap();
        }
        let dir = std::env::temp_dir().join(format!("brc-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("replay.safetensors");
        buffer.save(&path).unwrap();
        let restored = ReplayBuffer::load(&path).unwrap();
        assert_eq!(restored.len(), buffer.len());
        for t in 0..3 {
            assert_eq!(restored.task_len(t), buffer.task_len(t));
            let mut a = Batch::new();
            let mut b = Batch::new();
            let mut ra = rand::rngs::StdRng::seed_from_u64(t as u64);
            let mut rb = rand::rngs::StdRng::seed_from_u64(t as u64);
            buffer.sample_task(&mut ra, &mut a, 16, t).unwrap();
            restored.sample_task(&mut rb, &mut b, 16, t).unwrap();
            assert_eq!(a, b);
        }
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            ReplayBuffer::load(&path),
            Err(BufferError::File(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

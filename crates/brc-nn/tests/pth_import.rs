//! Import of the predecessor's PyTorch checkpoints, checked against the Q-values PyTorch
//! computed for real observations (`shared/predecessor/vectors/*.json`).
//!
//! Skipped (passing, with a notice) where the `shared/predecessor` directory is absent.

use brc_nn::pth::{read_state_dict, INDEPENDENT_KEY, SHARED_KEY};
use brc_nn::{ops, NnError, QMlp, SharedQMlp};
use candle_core::{Device, Tensor};
use serde::Deserialize;
use std::path::PathBuf;

fn predecessor() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/predecessor"
    ));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} not found", dir.display());
        None
    }
}

#[derive(Deserialize)]
struct Vectors {
    checkpoint_file: String,
    state_dict_key: String,
    observations_f32_hex: Vec<Vec<String>>,
    task_ids: Option<Vec<u32>>,
    q_values: Vec<Vec<f32>>,
    argmax_actions: Vec<u32>,
    /// `[i][t]`: Q-values of observation i under task id t (Shared DQN only).
    q_values_all_tasks: Option<Vec<Vec<Vec<f32>>>>,
}

fn load_vectors(dir: &std::path::Path, name: &str) -> Vectors {
    let text = std::fs::read_to_string(dir.join("vectors").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Observations from their exact IEEE-754 bit patterns.
fn observations(v: &Vectors) -> Tensor {
    let data: Vec<f32> = v
        .observations_f32_hex
        .iter()
        .flatten()
        .map(|h| f32::from_bits(u32::from_str_radix(h, 16).unwrap()))
        .collect();
    Tensor::from_vec(data, (v.observations_f32_hex.len(), 8), &Device::Cpu).unwrap()
}

fn assert_close(got: &Tensor, want: &[Vec<f32>], what: &str) {
    let got = got.to_vec2::<f32>().unwrap();
    assert_eq!(got.len(), want.len());
    let mut max = 0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() <= 1e-4, "{what} row {i}: {g:?} vs {w:?}");
            max = max.max((a - b).abs());
        }
    }
    eprintln!("{what}: max |candle - torch| = {max:e}");
}

fn check<F>(name: &str, forward: F)
where
    F: Fn(&Tensor, &Tensor) -> Tensor,
{
    let Some(dir) = predecessor() else { return };
    let v = load_vectors(&dir, name);
    let obs = observations(&v);
    let n = v.q_values.len();
    let tasks = v.task_ids.clone().unwrap_or_else(|| vec![0; n]);
    let task = Tensor::from_vec(tasks, n, &Device::Cpu).unwrap();
    let q = forward(&obs, &task);
    assert_close(&q, &v.q_values, name);
    assert_eq!(ops::argmax_rows(&q).unwrap(), v.argmax_actions, "{name}");
    if let Some(all) = &v.q_values_all_tasks {
        for t in 0..3u32 {
            let task = Tensor::from_vec(vec![t; n], n, &Device::Cpu).unwrap();
            let want: Vec<Vec<f32>> = all.iter().map(|row| row[t as usize].clone()).collect();
            assert_close(&forward(&obs, &task), &want, &format!("{name} task {t}"));
        }
    }
}

fn checkpoint(dir: &std::path::Path, v: &Vectors) -> PathBuf {
    dir.join("checkpoints").join(&v.checkpoint_file)
}

#[test]
fn independent_dqn_matches_pytorch() {
    let Some(dir) = predecessor() else { return };
    let v = load_vectors(&dir, "standard_best.json");
    assert_eq!(v.state_dict_key, INDEPENDENT_KEY);
    let net = QMlp::from_pth(checkpoint(&dir, &v), &Device::Cpu).unwrap();
    assert_eq!(net.num_params(), 35_716);
    check("standard_best.json", |o, t| net.forward(o, t).unwrap());
}

#[test]
fn shared_dqn_matches_pytorch() {
    let Some(dir) = predecessor() else { return };
    let v = load_vectors(&dir, "shared_dqn_best.json");
    assert_eq!(v.state_dict_key, SHARED_KEY);
    let net = SharedQMlp::from_pth(checkpoint(&dir, &v), &Device::Cpu).unwrap();
    assert!(!net.is_task_blind());
    assert_eq!(net.num_params(), 37_788);
    check("shared_dqn_best.json", |o, t| net.forward(o, t).unwrap());
}

#[test]
fn blind_shared_dqn_matches_pytorch() {
    let Some(dir) = predecessor() else { return };
    let v = load_vectors(&dir, "shared_dqn_blind_best.json");
    let net = SharedQMlp::from_pth(checkpoint(&dir, &v), &Device::Cpu).unwrap();
    assert!(net.is_task_blind());
    assert_eq!(net.num_params(), 35_716);
    check("shared_dqn_blind_best.json", |o, t| {
        net.forward(o, t).unwrap()
    });
}

#[test]
fn other_checkpoints_load() {
    let Some(dir) = predecessor() else { return };
    let ck = dir.join("checkpoints");
    for f in ["windy_best.pth", "heavy_best.pth"] {
        assert_eq!(
            QMlp::from_pth(ck.join(f), &Device::Cpu)
                .unwrap()
                .num_params(),
            35_716
        );
    }
    let ep100 = SharedQMlp::from_pth(ck.join("shared_dqn_checkpoint_ep100.pth"), &Device::Cpu);
    assert_eq!(ep100.unwrap().num_params(), 37_788);
}

#[test]
fn wrong_key_or_layout_is_a_clear_error() {
    let Some(dir) = predecessor() else { return };
    let ck = dir.join("checkpoints");
    // Shared file has no `q_network_state_dict`.
    let err = QMlp::from_pth(ck.join("shared_dqn_best.pth"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(INDEPENDENT_KEY) && err.contains("shared_dqn_best.pth"),
        "{err}"
    );
    let err = SharedQMlp::from_pth(ck.join("standard_best.pth"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains(SHARED_KEY), "{err}");
    // The Shared DQN's state dict has an embedding and a 16-wide fc1: not a QMlp.
    let err = QMlp::from_pth_with_key(ck.join("shared_dqn_best.pth"), SHARED_KEY, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("task_embedding.weight"), "{err}");
    let err = QMlp::from_pth(ck.join("nope.pth"), &Device::Cpu).unwrap_err();
    assert!(matches!(err, NnError::Checkpoint { .. }), "{err}");

    // A mis-shaped tensor is named.
    let mut sd = read_state_dict(ck.join("standard_best.pth"), Some(INDEPENDENT_KEY)).unwrap();
    let i = sd.iter().position(|(n, _)| n == "fc2.weight").unwrap();
    sd[i].1 = Tensor::zeros((128, 255), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = QMlp::from_state_dict(&sd, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, NnError::Shape { name, .. } if name == "fc2.weight"),
        "{err}"
    );
    sd.remove(i);
    let err = QMlp::from_state_dict(&sd, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("fc2.weight"), "{err}");
}

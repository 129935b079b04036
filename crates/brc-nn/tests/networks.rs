//! Parameter counts, seeded-init determinism and statistics, gradient flow to every
//! variable, target copies and save/load for all networks.

use brc_nn::init::{kaiming_std, xavier_bound};
use brc_nn::{ops, BroNet, BroNetConfig, NnError, QMlp, QNetwork, SharedQMlp};
use candle_core::{DType, Device, Tensor, D};
use rand::rngs::StdRng;
use rand::SeedableRng;

const B: usize = 6;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A batch covering every task id, so every embedding row takes part.
fn inputs(seed: u64) -> (Tensor, Tensor) {
    let mut r = rng(seed);
    let obs = brc_nn::init::normal(&mut r, 1.0, B * 8);
    let obs = Tensor::from_vec(obs, (B, 8), &Device::Cpu).unwrap();
    let task = Tensor::new(&[0u32, 1, 2, 2, 1, 0], &Device::Cpu).unwrap();
    (obs, task)
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn all_values<N: QNetwork>(n: &N) -> Vec<(String, Vec<u32>)> {
    n.params()
        .named_vars()
        .iter()
        .map(|(name, v)| (name.clone(), flat(v).iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fn post_ln() -> BroNetConfig {
    BroNetConfig {
        post_ln: true,
        ..Default::default()
    }
}

#[test]
fn parameter_counts() {
    let dev = Device::Cpu;
    assert_eq!(QMlp::new(&mut rng(0), &dev).unwrap().num_params(), 35_716);
    assert_eq!(
        SharedQMlp::new(&mut rng(0), &dev).unwrap().num_params(),
        37_788
    );
    let blind = SharedQMlp::new_blind(&mut rng(0), &dev).unwrap();
    assert!(blind.is_task_blind());
    assert_eq!(blind.num_params(), 35_716);
    let bro = BroNet::new(BroNetConfig::default(), &mut rng(0), &dev).unwrap();
    assert_eq!(bro.num_params(), 459_820);
    // Post-LN: one more LN per block and an input LN, no final LN.
    let bro_post = BroNet::new(post_ln(), &mut rng(0), &dev).unwrap();
    assert_eq!(bro_post.num_params(), 459_820 + 3 * 512 + 512 - 512);
    // The predecessor's actual BRC run: 2 blocks, 21 atoms.
    let small = BroNetConfig {
        num_blocks: 2,
        num_atoms: 21,
        ..Default::default()
    };
    assert_eq!(
        BroNet::new(small, &mut rng(0), &dev).unwrap().num_params(),
        296_884
    );
}

#[test]
fn output_shapes() {
    let dev = Device::Cpu;
    let (obs, task) = inputs(1);
    let q = QMlp::new(&mut rng(0), &dev).unwrap();
    assert_eq!(q.forward(&obs, &task).unwrap().dims(), &[B, 4]);
    let s = SharedQMlp::new(&mut rng(0), &dev).unwrap();
    assert_eq!(s.forward(&obs, &task).unwrap().dims(), &[B, 4]);
    let b = BroNet::new(BroNetConfig::default(), &mut rng(0), &dev).unwrap();
    assert_eq!(b.forward(&obs, &task).unwrap().dims(), &[B, 4, 51]);
    let q = ops::categorical_q_values(
        &b.forward(&obs, &task).unwrap(),
        &Tensor::arange_step(-100f32, 300.0 + 1e-3, 8.0, &dev).unwrap(),
    )
    .unwrap();
    assert_eq!(q.dims(), &[B, 4]);
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let dev = Device::Cpu;
    let a = BroNet::new(BroNetConfig::default(), &mut rng(7), &dev).unwrap();
    let b = BroNet::new(BroNetConfig::default(), &mut rng(7), &dev).unwrap();
    let c = BroNet::new(BroNetConfig::default(), &mut rng(8), &dev).unwrap();
    assert_eq!(all_values(&a), all_values(&b));
    assert_ne!(all_values(&a), all_values(&c));
    let a = SharedQMlp::new(&mut rng(7), &dev).unwrap();
    let b = SharedQMlp::new(&mut rng(7), &dev).unwrap();
    assert_eq!(all_values(&a), all_values(&b));
    let a = QMlp::new(&mut rng(7), &dev).unwrap();
    let b = QMlp::new(&mut rng(7), &dev).unwrap();
    assert_eq!(all_values(&a), all_values(&b));
}

fn std_of(v: &[f32]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[test]
fn init_statistics() {
    let dev = Device::Cpu;
    let b = BroNet::new(BroNetConfig::default(), &mut rng(3), &dev).unwrap();
    let p = b.params();
    let get = |n: &str| flat(p.get(n).unwrap());
    // Kaiming normal, fan_in 256: std sqrt(2/256).
    let w = get("blocks.1.fc1.weight");
    assert!((std_of(&w) / kaiming_std(256) - 1.0).abs() < 0.03);
    // Input layer fan_in is 8 + 32.
    assert!((std_of(&get("input.weight")) / kaiming_std(40) - 1.0).abs() < 0.05);
    // Xavier uniform output: within the bound and close to it at the extremes.
    let bound = xavier_bound(256, 204) as f32;
    let out = get("output.weight");
    let max = out.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(max <= bound && max > 0.99 * bound);
    // Embedding N(0, 1/32) (96 samples: loose check).
    let e = std_of(&get("task_embedding.weight"));
    assert!((e / (1.0f64 / 32.0).sqrt() - 1.0).abs() < 0.3, "{e}");
    assert!(get("input.bias").iter().all(|&x| x == 0.0));
    assert!(get("blocks.0.ln.weight").iter().all(|&x| x == 1.0));
    assert!(get("final_ln.bias").iter().all(|&x| x == 0.0));

    let s = SharedQMlp::new(&mut rng(3), &dev).unwrap();
    let p = s.params();
    let e = std_of(&flat(p.get("task_embedding.weight").unwrap()));
    assert!((e / 0.1 - 1.0).abs() < 0.4, "{e}");
    let w = flat(p.get("fc2.weight").unwrap());
    assert!((std_of(&w) / kaiming_std(256) - 1.0).abs() < 0.03);
    assert!((std_of(&flat(p.get("fc3.weight").unwrap())) / kaiming_std(128) - 1.0).abs() < 0.1);
}

/// Backpropagates `loss` and asserts every variable of `net` gets a non-zero gradient.
fn assert_all_grads<N: QNetwork>(net: &N, loss: &Tensor) {
    let grads = loss.backward().unwrap();
    for (name, var) in net.params().named_vars() {
        let g = grads
            .get(var)
            .unwrap_or_else(|| panic!("no gradient for `{name}`"));
        assert_eq!(g.dims(), var.dims());
        let norm = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0 && norm.is_finite(), "`{name}` gradient {norm}");
        if name == "task_embedding.weight" {
            // Every task row is used by the batch, so every row must get gradient.
            let rows = g.abs().unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap();
            assert!(rows.iter().all(|&r| r > 0.0), "{rows:?}");
        }
    }
}

fn sum_sq(t: &Tensor) -> Tensor {
    t.sqr().unwrap().sum_all().unwrap()
}

#[test]
fn every_variable_gets_gradient_mlps() {
    let dev = Device::Cpu;
    let (obs, task) = inputs(2);
    let q = QMlp::new(&mut rng(1), &dev).unwrap();
    assert_all_grads(&q, &sum_sq(&q.forward(&obs, &task).unwrap()));
    let s = SharedQMlp::new(&mut rng(1), &dev).unwrap();
    assert_all_grads(&s, &sum_sq(&s.forward(&obs, &task).unwrap()));
    let s = SharedQMlp::new_blind(&mut rng(1), &dev).unwrap();
    assert_all_grads(&s, &sum_sq(&s.forward(&obs, &task).unwrap()));
}

/// C51-style cross-entropy against a fixed random target distribution, via our log-softmax.
fn cross_entropy(logits: &Tensor, seed: u64) -> Tensor {
    let dims = logits.dims().to_vec();
    let n: usize = dims.iter().product();
    let raw = brc_nn::init::normal(&mut rng(seed), 1.0, n);
    let target = ops::softmax(&Tensor::from_vec(raw, dims, logits.device()).unwrap()).unwrap();
    let lp = ops::log_softmax(logits).unwrap();
    (target * lp).unwrap().sum_all().unwrap().neg().unwrap()
}

#[test]
fn every_variable_gets_gradient_bronet() {
    let dev = Device::Cpu;
    let (obs, task) = inputs(3);
    let unit = BroNetConfig {
        unit_norm_embedding: true,
        ..BroNetConfig::default()
    };
    for cfg in [BroNetConfig::default(), post_ln(), unit] {
        let b = BroNet::new(cfg, &mut rng(1), &dev).unwrap();
        let logits = b.forward(&obs, &task).unwrap();
        assert_all_grads(&b, &cross_entropy(&logits, 11));
        assert_all_grads(&b, &sum_sq(&logits));
    }
}

#[test]
fn primitive_ops_match_reference() {
    let dev = Device::Cpu;
    let x = Tensor::new(&[[1f32, 2.0, 3.0, 10.0], [-5.0, 0.0, 5.0, 5.0]], &dev).unwrap();
    // Our log-softmax agrees with candle's (itself differentiable) implementation.
    let ours = flat(&ops::log_softmax(&x).unwrap());
    let theirs = flat(&candle_nn::ops::log_softmax(&x, D::Minus1).unwrap());
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a - b).abs() < 1e-6);
    }
    // Our LayerNorm agrees with candle's fused one (used here only as a reference).
    let g = Tensor::new(&[1f32, 2.0, 0.5, -1.0], &dev).unwrap();
    let b = Tensor::new(&[0f32, 0.1, 0.2, 0.3], &dev).unwrap();
    let ours = flat(&ops::layer_norm(&x, &g, &b, 1e-5).unwrap());
    let theirs = flat(&candle_nn::ops::layer_norm(&x, &g, &b, 1e-5).unwrap());
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a - b).abs() < 1e-5, "{a} {b}");
    }
    let q = Tensor::new(&[[1f32, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]], &dev).unwrap();
    assert_eq!(ops::argmax_rows(&q).unwrap(), vec![1, 0]);
}

#[test]
fn unit_norm_embeddings_ignore_the_embedding_scale() {
    let dev = Device::Cpu;
    let (obs, task) = inputs(5);
    let cfg = BroNetConfig {
        unit_norm_embedding: true,
        ..BroNetConfig::default()
    };
    let b = BroNet::new(cfg, &mut rng(1), &dev).unwrap();
    let before = flat(&b.forward(&obs, &task).unwrap());
    let emb = b.params().get("task_embedding.weight").unwrap();
    emb.set(&(emb.as_tensor() * 7.0).unwrap()).unwrap();
    let after = flat(&b.forward(&obs, &task).unwrap());
    for (x, y) in before.iter().zip(&after) {
        assert!((x - y).abs() < 1e-5, "{x} {y}");
    }
    // Without the normalisation the same scaling changes the output.
    let plain = BroNet::new(BroNetConfig::default(), &mut rng(1), &dev).unwrap();
    let before = flat(&plain.forward(&obs, &task).unwrap());
    let emb = plain.params().get("task_embedding.weight").unwrap();
    emb.set(&(emb.as_tensor() * 7.0).unwrap()).unwrap();
    assert_ne!(before, flat(&plain.forward(&obs, &task).unwrap()));
}

#[test]
fn soft_update_moves_a_fraction_of_the_way() {
    let dev = Device::Cpu;
    let online = BroNet::new(BroNetConfig::default(), &mut rng(1), &dev).unwrap();
    let target = BroNet::new(BroNetConfig::default(), &mut rng(2), &dev).unwrap();
    let (t0, o) = (all_f32(&target), all_f32(&online));
    target
        .params()
        .soft_update_from(online.params(), 0.25)
        .unwrap();
    for ((t1, t0), o) in all_f32(&target).iter().zip(&t0).zip(&o) {
        assert!((t1 - (0.75 * t0 + 0.25 * o)).abs() < 1e-6);
    }
    target
        .params()
        .soft_update_from(online.params(), 1.0)
        .unwrap();
    assert_eq!(all_f32(&target), o, "tau = 1 is a hard copy");
    let post = BroNet::new(post_ln(), &mut rng(1), &dev).unwrap();
    assert!(post
        .params()
        .soft_update_from(online.params(), 0.5)
        .is_err());
}

fn all_f32<N: QNetwork>(n: &N) -> Vec<f32> {
    n.params()
        .named_vars()
        .iter()
        .flat_map(|(_, v)| flat(v.as_tensor()))
        .collect()
}

#[test]
fn copy_from_is_a_hard_copy() {
    let dev = Device::Cpu;
    let (obs, task) = inputs(4);
    let online = BroNet::new(BroNetConfig::default(), &mut rng(1), &dev).unwrap();
    let target = BroNet::new(BroNetConfig::default(), &mut rng(2), &dev).unwrap();
    let before = flat(&target.forward(&obs, &task).unwrap());
    target.copy_from(&online).unwrap();
    let out = flat(&online.forward(&obs, &task).unwrap());
    assert_ne!(before, out);
    assert_eq!(flat(&target.forward(&obs, &task).unwrap()), out);
    // Changing the online net afterwards leaves the target alone.
    let (_, w) = &online.params().named_vars()[1];
    w.set(&w.affine(2.0, 0.5).unwrap()).unwrap();
    assert_ne!(flat(&online.forward(&obs, &task).unwrap()), out);
    assert_eq!(flat(&target.forward(&obs, &task).unwrap()), out);
    // deep_clone is independent too; copying onto itself is a no-op.
    let clone = online.deep_clone().unwrap();
    online.copy_from(&online).unwrap();
    assert_eq!(all_values(&clone), all_values(&online));
    // Different layouts are refused.
    let post = BroNet::new(post_ln(), &mut rng(1), &dev).unwrap();
    assert!(post.copy_from(&online).is_err());
    let s = SharedQMlp::new(&mut rng(1), &dev).unwrap();
    let blind = SharedQMlp::new_blind(&mut rng(1), &dev).unwrap();
    assert!(matches!(s.copy_from(&blind), Err(NnError::Param { .. })));
}

#[test]
fn save_and_load_round_trip() {
    let dev = Device::Cpu;
    let (obs, task) = inputs(5);
    let dir = std::env::temp_dir().join(format!("brc-nn-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shared.safetensors");
    let a = SharedQMlp::new(&mut rng(1), &dev).unwrap();
    a.save(&path).unwrap();
    let b = SharedQMlp::new(&mut rng(2), &dev).unwrap();
    b.load(&path).unwrap();
    assert_eq!(all_values(&a), all_values(&b));
    assert_eq!(
        flat(&a.forward(&obs, &task).unwrap()),
        flat(&b.forward(&obs, &task).unwrap())
    );
    // A checkpoint of another architecture is refused with a message naming a tensor.
    let blind = SharedQMlp::new_blind(&mut rng(1), &dev).unwrap();
    let err = blind.load(&path).unwrap_err().to_string();
    assert!(
        err.contains("fc1.weight") || err.contains("task_embedding"),
        "{err}"
    );
    let q = QMlp::new(&mut rng(1), &dev).unwrap();
    assert!(q.load(dir.join("missing.safetensors")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn optimizer_over_params_updates_every_variable() {
    use candle_nn::Optimizer;
    let dev = Device::Cpu;
    let (obs, task) = inputs(6);
    let net = BroNet::new(BroNetConfig::default(), &mut rng(1), &dev).unwrap();
    let before = all_values(&net);
    let mut opt = candle_nn::AdamW::new(
        net.params().vars(),
        candle_nn::ParamsAdamW {
            lr: 1e-3,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )
    .unwrap();
    let loss = cross_entropy(&net.forward(&obs, &task).unwrap(), 1);
    opt.backward_step(&loss).unwrap();
    for ((name, a), (_, b)) in before.iter().zip(all_values(&net)) {
        assert_ne!(a, &b, "`{name}` did not change");
    }
}

#[test]
fn config_serde_and_validation() {
    let c: BroNetConfig = serde_json::from_str(r#"{"hidden_dim": 64, "post_ln": true}"#).unwrap();
    assert_eq!(c.hidden_dim, 64);
    assert!(c.post_ln);
    assert_eq!(c.num_atoms, 51);
    assert!(serde_json::from_str::<BroNetConfig>(r#"{"hidden": 64}"#).is_err());
    let back: BroNetConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    let bad = BroNetConfig {
        num_atoms: 0,
        ..Default::default()
    };
    assert!(matches!(
        BroNet::new(bad, &mut rng(0), &Device::Cpu),
        Err(NnError::Config(_))
    ));
    // Task-blind BroNet: no embedding variable.
    let blind = BroNetConfig {
        embedding_dim: 0,
        ..Default::default()
    };
    let n = BroNet::new(blind, &mut rng(0), &Device::Cpu).unwrap();
    assert_eq!(n.num_params(), 459_820 - 96 - 32 * 256);
    let (obs, task) = inputs(0);
    assert_eq!(n.forward(&obs, &task).unwrap().dtype(), DType::F32);
}

#[test]
fn device_selection() {
    use brc_nn::device::{cuda_compiled, select_device};
    assert!(select_device("cpu").unwrap().is_cpu());
    assert!(select_device(" CPU ").unwrap().is_cpu());
    let auto = select_device("auto").unwrap();
    if !cuda_compiled() && !brc_nn::device::metal_compiled() {
        assert!(auto.is_cpu());
    }
    if !cuda_compiled() {
        let err = select_device("cuda").unwrap_err().to_string();
        assert!(err.contains("`cuda` feature"), "{err}");
    }
    assert!(matches!(select_device("tpu"), Err(NnError::Device(_))));
    assert!(matches!(select_device("cuda:x"), Err(NnError::Device(_))));
}

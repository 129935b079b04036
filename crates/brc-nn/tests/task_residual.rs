//! VarShare's task-residual layer: the closed-form KL against a Monte-Carlo estimate, the
//! plain layer recovered at μ = 0 and σ → 0, Flipout's mean and variance against the analytic
//! ones, gradients for θ, μ and ρ, pruning, and the softplus it rests on.

use brc_nn::init::WeightInit;
use brc_nn::layers::Linear;
use brc_nn::task_residual::{LayerWeights, ResidualMode, TaskResidualLinear, TaskRows};
use brc_nn::{ops, ParamStore};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const DEV: Device = Device::Cpu;

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// A `tasks`-task layer `in_dim → out_dim` with μ and ρ set from `mu(i)`, `sigma(i)` per
/// entry (i over the `[tasks, in, out]` entries).
fn layer(
    in_dim: usize,
    out_dim: usize,
    tasks: usize,
    mode: ResidualMode,
    mu: impl Fn(usize) -> f32,
    sigma: impl Fn(usize) -> f64,
) -> (ParamStore, TaskResidualLinear) {
    let mut store = ParamStore::new(&DEV);
    let mut rng = StdRng::seed_from_u64(3);
    let l = TaskResidualLinear::init(
        &mut store,
        &mut rng,
        "l",
        in_dim,
        out_dim,
        tasks,
        WeightInit::KaimingNormal,
        mode,
    )
    .unwrap();
    let n = tasks * in_dim * out_dim;
    // One variable per task: entry i of the `[tasks, in, out]` view is task i / (in × out)'s.
    let set = |name: &str, v: Vec<f32>| {
        for (t, chunk) in v.chunks(in_dim * out_dim).enumerate() {
            let var = store.get(&format!("{name}.{t}")).unwrap();
            var.set(&Tensor::from_vec(chunk.to_vec(), (in_dim, out_dim), &DEV).unwrap())
                .unwrap();
        }
    };
    set("l.residual_mu", (0..n).map(&mu).collect());
    if mode == ResidualMode::Variational {
        let rho = (0..n)
            .map(|i| brc_nn::task_residual::rho_for_sigma(sigma(i)) as f32)
            .collect();
        set("l.residual_rho", rho);
    }
    (store, l)
}

#[test]
fn closed_form_kl_matches_a_monte_carlo_estimate() {
    let prior = 0.05;
    let (_s, l) = layer(
        2,
        3,
        2,
        ResidualMode::Variational,
        |i| [0.0, 0.03, -0.08, 0.2][i % 4],
        |i| [0.001, 0.01, 0.05, 0.12][(i / 2) % 4],
    );
    let closed = flat(&l.penalty(prior).unwrap());
    let stats = l.host_stats(prior, 1e-3).unwrap();
    let mu = flat(&l_var(&_s, "l.residual_mu"));
    let sigma = flat(&l.sigma().unwrap().unwrap());
    let mut rng = StdRng::seed_from_u64(11);
    let draws = 200_000;
    for (task, &closed) in closed.iter().enumerate() {
        // KL(q‖p) = E_q[ln q(φ) − ln p(φ)], one weight at a time.
        let (mut mean, mut var_sum) = (0.0f64, 0.0f64);
        for k in task * 6..(task + 1) * 6 {
            let (m, s) = (f64::from(mu[k]), f64::from(sigma[k]));
            let q = Normal::new(m, s).unwrap();
            let (mut sum, mut sq) = (0.0, 0.0);
            for _ in 0..draws {
                let phi = q.sample(&mut rng);
                let log_q = -((phi - m) / s).powi(2) / 2.0 - s.ln();
                let log_p = -(phi / prior).powi(2) / 2.0 - prior.ln();
                let d = log_q - log_p;
                sum += d;
                sq += d * d;
            }
            let e = sum / draws as f64;
            mean += e;
            var_sum += (sq / draws as f64 - e * e) / draws as f64;
        }
        let tol = 4.0 * var_sum.sqrt() + 1e-4 * mean.abs();
        let got = f64::from(closed);
        assert!(
            (got - mean).abs() <= tol,
            "task {task}: closed form {got}, Monte Carlo {mean} ± {tol}"
        );
        assert!((stats.penalty[task] - mean).abs() <= tol, "host stats");
    }
}

/// A layer variable's values; the residuals' per-task variables `{name}.{t}` concatenated
/// in task order.
fn l_var(store: &ParamStore, name: &str) -> Tensor {
    if let Some(v) = store.get(name) {
        return v.as_tensor().clone();
    }
    let parts: Vec<Tensor> = (0..)
        .map_while(|t| store.get(&format!("{name}.{t}")))
        .map(|v| v.as_tensor().flatten_all().unwrap())
        .collect();
    Tensor::cat(&parts, 0).unwrap()
}

/// A layer variable's gradient (zeros where none), per-task variables concatenated.
fn grad_of(grads: &candle_core::backprop::GradStore, store: &ParamStore, name: &str) -> Vec<f32> {
    let one = |v: &candle_core::Var| -> Vec<f32> {
        grads.get(v).map_or_else(|| vec![0.0; v.elem_count()], flat)
    };
    if let Some(v) = store.get(name) {
        return one(v);
    }
    (0..)
        .map_while(|t| store.get(&format!("{name}.{t}")))
        .flat_map(one)
        .collect()
}

#[test]
fn zero_mean_and_vanishing_sigma_give_the_plain_layer() {
    let mut store = ParamStore::new(&DEV);
    let plain = Linear::init(
        &mut store,
        &mut StdRng::seed_from_u64(5),
        "p",
        6,
        4,
        WeightInit::KaimingNormal,
    )
    .unwrap();
    let mut store = ParamStore::new(&DEV);
    let res = TaskResidualLinear::init(
        &mut store,
        &mut StdRng::seed_from_u64(5),
        "p",
        6,
        4,
        3,
        WeightInit::KaimingNormal,
        ResidualMode::Variational,
    )
    .unwrap();
    res.set_sigma(1e-8).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let x: Vec<f32> = (0..5 * 6).map(|_| rng.random_range(-2.0..2.0)).collect();
    let x = Tensor::from_vec(x, (5, 6), &DEV).unwrap();
    let rows = TaskRows::group(&[0, 0, 1, 2, 2], &DEV).unwrap();
    let want = flat(&plain.forward(&x).unwrap());
    let eps = res.draw_eps(&mut rng).unwrap();
    let signs = res.draw_signs(&mut rng, 5).unwrap();
    for weights in [
        LayerWeights::Shared,
        LayerWeights::Mean,
        LayerWeights::Sampled {
            eps: &eps,
            signs: Some(&signs),
        },
        LayerWeights::Sampled {
            eps: &eps,
            signs: None,
        },
    ] {
        let got = flat(&res.forward(&x, &rows, weights).unwrap());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6, "{weights:?}: {g} vs {w}");
        }
    }
}

#[test]
fn flipout_mean_and_variance_match_the_analytic_ones() {
    let (in_dim, out_dim) = (4, 3);
    let (_s, l) = layer(
        in_dim,
        out_dim,
        2,
        ResidualMode::Variational,
        |i| 0.1 * ((i % 5) as f32 - 2.0),
        |i| 0.05 + 0.04 * (i % 7) as f64,
    );
    // One input per task, each repeated in 8 rows of every pass; the rows are grouped.
    let inputs = [[0.5f32, -1.0, 2.0, 0.3], [-0.7, 0.2, 1.1, -1.5]];
    let per = 8;
    let mut x = Vec::new();
    let mut tasks = Vec::new();
    for (t, row) in inputs.iter().enumerate() {
        for _ in 0..per {
            x.extend_from_slice(row);
            tasks.push(t as u32);
        }
    }
    let x = Tensor::from_vec(x, (2 * per, in_dim), &DEV).unwrap();
    let rows = TaskRows::group(&tasks, &DEV).unwrap();
    let mean_out = flat(&l.forward(&x, &rows, LayerWeights::Mean).unwrap());
    let sigma = flat(&l.sigma().unwrap().unwrap());
    let mut rng = StdRng::seed_from_u64(21);
    let draws = 2000;
    let mut sum = vec![0.0f64; 2 * out_dim];
    let mut sq = vec![0.0f64; 2 * out_dim];
    for _ in 0..draws {
        let eps = l.draw_eps(&mut rng).unwrap();
        let signs = l.draw_signs(&mut rng, 2 * per).unwrap();
        let y = flat(
            &l.forward(
                &x,
                &rows,
                LayerWeights::Sampled {
                    eps: &eps,
                    signs: Some(&signs),
                },
            )
            .unwrap(),
        );
        for r in 0..2 * per {
            let t = r / per;
            for j in 0..out_dim {
                let v = f64::from(y[r * out_dim + j]);
                sum[t * out_dim + j] += v;
                sq[t * out_dim + j] += v * v;
            }
        }
    }
    let n = (draws * per) as f64;
    for t in 0..2 {
        for j in 0..out_dim {
            let k = t * out_dim + j;
            let mean = sum[k] / n;
            let var = sq[k] / n - mean * mean;
            // Var y_j = Σ_i x_i² σ_ij² (the signs square to 1, the ε are independent).
            let want_var: f64 = (0..in_dim)
                .map(|i| {
                    let s = f64::from(sigma[(t * in_dim + i) * out_dim + j]);
                    f64::from(inputs[t][i]).powi(2) * s * s
                })
                .sum();
            let want_mean = f64::from(mean_out[t * per * out_dim + j]);
            let se = (want_var / n).sqrt();
            assert!(
                (mean - want_mean).abs() <= 5.0 * se,
                "task {t} out {j}: mean {mean} vs {want_mean} (se {se})"
            );
            assert!(
                (var / want_var - 1.0).abs() <= 0.06,
                "task {t} out {j}: variance {var} vs {want_var}"
            );
        }
    }
}

#[test]
fn theta_mu_and_rho_all_receive_gradients() {
    let (store, l) = layer(3, 2, 3, ResidualMode::Variational, |_| 0.0, |_| 1e-3);
    let mut rng = StdRng::seed_from_u64(2);
    let x: Vec<f32> = (0..6 * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = Tensor::from_vec(x, (6, 3), &DEV).unwrap();
    let rows = TaskRows::group(&[0, 0, 1, 1, 2, 2], &DEV).unwrap();
    let eps = l.draw_eps(&mut rng).unwrap();
    let signs = l.draw_signs(&mut rng, 6).unwrap();
    let y = l
        .forward(
            &x,
            &rows,
            LayerWeights::Sampled {
                eps: &eps,
                signs: Some(&signs),
            },
        )
        .unwrap();
    let loss = (y.sqr().unwrap().sum_all().unwrap() + l.penalty(0.05).unwrap().sum_all().unwrap())
        .unwrap();
    let grads = loss.backward().unwrap();
    for name in ["l.weight", "l.bias", "l.residual_mu", "l.residual_rho"] {
        let g = grad_of(&grads, &store, name);
        assert!(g.iter().all(|v| v.is_finite()), "{name}");
        // Every task's slice gets some gradient (every task has rows).
        let chunk = g.len() / if name.contains("residual") { 3 } else { 1 };
        for c in g.chunks(chunk) {
            assert!(c.iter().any(|v| *v != 0.0), "{name} has a zero task slice");
        }
    }
}

#[test]
fn a_task_without_rows_gets_no_likelihood_gradient() {
    let (store, l) = layer(3, 2, 3, ResidualMode::L2, |_| 0.1, |_| 0.0);
    let x = Tensor::ones((2, 3), candle_core::DType::F32, &DEV).unwrap();
    let rows = TaskRows::group(&[2, 0], &DEV).unwrap();
    let y = l.forward(&x, &rows, LayerWeights::Mean).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let g = grad_of(&g, &store, "l.residual_mu");
    assert!(g[..6].iter().all(|v| *v != 0.0));
    assert!(g[6..12].iter().all(|v| *v == 0.0), "task 1 had no row");
    assert!(g[12..].iter().all(|v| *v != 0.0));
}

#[test]
fn pruning_at_threshold_zero_changes_nothing_and_a_threshold_drops_small_entries() {
    let (store, l) = layer(
        4,
        3,
        2,
        ResidualMode::Variational,
        |i| [0.0, 5e-4, -2e-3, 0.3, -1e-4, 1e-3][i % 6],
        |_| 0.01,
    );
    let x = Tensor::from_vec(
        (0..8).map(|i| i as f32 * 0.3 - 1.0).collect::<Vec<_>>(),
        (2, 4),
        &DEV,
    )
    .unwrap();
    let rows = TaskRows::group(&[0, 1], &DEV).unwrap();
    let before = flat(&l.forward(&x, &rows, LayerWeights::Mean).unwrap());
    let mu_before = flat(&l_var(&store, "l.residual_mu"));
    l.prune(0.0).unwrap();
    assert_eq!(flat(&l_var(&store, "l.residual_mu")), mu_before);
    assert_eq!(
        flat(&l.forward(&x, &rows, LayerWeights::Mean).unwrap()),
        before
    );
    // 12 entries per task, the 6-cycle twice: 0 is never kept; ≥ 1e-3 keeps 3 of 6.
    assert_eq!(l.host_stats(0.05, 0.0).unwrap().kept, vec![10, 10]);
    assert_eq!(l.host_stats(0.05, 1e-3).unwrap().kept, vec![6, 6]);
    l.prune(1e-3).unwrap();
    let mu = flat(&l_var(&store, "l.residual_mu"));
    assert!(mu.iter().all(|m| *m == 0.0 || m.abs() >= 1e-3));
    assert_eq!(mu.iter().filter(|m| **m != 0.0).count(), 12);
    assert_eq!(l.host_stats(0.05, 0.0).unwrap().kept, vec![6, 6]);
}

#[test]
fn rows_are_grouped_by_task_and_put_back() {
    let tasks = [2u32, 0, 1, 0, 2];
    let rows = TaskRows::group(&tasks, &DEV).unwrap();
    let segs: Vec<_> = rows
        .segments()
        .iter()
        .map(|s| (s.task, s.start, s.len))
        .collect();
    assert_eq!(segs, vec![(0, 0, 2), (1, 2, 1), (2, 3, 2)]);
    let x = Tensor::from_vec(vec![20f32, 1.0, 10.0, 3.0, 22.0], (5, 1), &DEV).unwrap();
    let g = flat(&rows.to_grouped(&x).unwrap());
    assert_eq!(g, vec![1.0, 3.0, 10.0, 20.0, 22.0]);
    assert_eq!(
        flat(&rows.to_batch_order(&rows.to_grouped(&x).unwrap()).unwrap()),
        flat(&x)
    );
}

#[test]
fn softplus_is_accurate_and_differentiable_far_into_both_tails() {
    let xs: Vec<f32> = vec![
        -40.0, -18.4, -7.0, -3.1, -2.9, -0.5, 0.3, 2.9, 3.1, 15.0, 40.0,
    ];
    let x = candle_core::Var::from_vec(xs.clone(), xs.len(), &DEV).unwrap();
    let y = ops::softplus(x.as_tensor()).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let g = flat(g.get(&x).unwrap());
    for ((xv, yv), gv) in xs.iter().zip(flat(&y)).zip(g) {
        let xv = f64::from(*xv);
        let want = if xv > 30.0 { xv } else { xv.exp().ln_1p() };
        assert!(
            (f64::from(yv) - want).abs() <= 2e-6 * want,
            "softplus({xv}) = {yv}, want {want}"
        );
        let sigmoid = 1.0 / (1.0 + (-xv).exp());
        assert!(
            (f64::from(gv) - sigmoid).abs() <= 1e-5 * sigmoid.max(1e-3),
            "softplus'({xv}) = {gv}, want {sigmoid}"
        );
    }
}

mod networks {
    //! The residual layers inside BroNet and the Shared DQN MLP.
    use super::*;
    use brc_nn::task_residual::{draw_signs, ResidualNoise, ResidualWeights};
    use brc_nn::{BroNet, BroNetConfig, SharedQMlp, TaskResidualNetwork};

    fn small(residuals: Option<ResidualMode>) -> BroNetConfig {
        BroNetConfig {
            hidden_dim: 16,
            num_blocks: 2,
            embedding_dim: 4,
            num_atoms: 5,
            task_residuals: residuals,
            ..Default::default()
        }
    }

    fn batch() -> (Tensor, Tensor) {
        let mut rng = StdRng::seed_from_u64(8);
        let obs: Vec<f32> = (0..7 * 8).map(|_| rng.random_range(-1.0..1.0)).collect();
        (
            Tensor::from_vec(obs, (7, 8), &DEV).unwrap(),
            Tensor::new(&[2u32, 0, 1, 2, 0, 0, 1], &DEV).unwrap(),
        )
    }

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        for (x, y) in flat(a).iter().zip(flat(b)) {
            assert!((x - y).abs() <= tol, "{x} vs {y}");
        }
    }

    #[test]
    fn a_fresh_varshare_bronet_with_vanishing_sigma_is_the_plain_bronet() {
        let plain = BroNet::new(small(None), &mut StdRng::seed_from_u64(1), &DEV).unwrap();
        for mode in [ResidualMode::Variational, ResidualMode::L2] {
            let vs = BroNet::new(small(Some(mode)), &mut StdRng::seed_from_u64(1), &DEV).unwrap();
            let layers = vs.residual_layers();
            assert_eq!(layers.len(), 6, "input, 2 × (fc1, fc2), output");
            layers.iter().for_each(|l| l.set_sigma(1e-8).unwrap());
            let (obs, task) = batch();
            let want = plain.forward(&obs, &task).unwrap();
            let mut rng = StdRng::seed_from_u64(4);
            let noise = ResidualNoise::draw(&layers, &mut rng).unwrap();
            let signs = draw_signs(&layers, &mut rng, 7).unwrap();
            for w in [
                ResidualWeights::Mean,
                ResidualWeights::Shared,
                ResidualWeights::Sampled {
                    noise: &noise,
                    signs: Some(&signs),
                },
            ] {
                close(&vs.forward_with(&obs, &task, w).unwrap(), &want, 1e-5);
            }
            // θ and biases are counted once; μ (and ρ) add in × out per layer and task:
            // input (8 + 4) × 16, 4 block layers 16 × 16, head 16 × (4 × 5).
            let per_task: usize = layers.iter().map(|l| l.adapter_params_per_task()).sum();
            let factor = if mode == ResidualMode::L2 { 1 } else { 2 };
            assert_eq!(per_task, factor * (12 * 16 + 4 * 16 * 16 + 16 * 20));
            assert_eq!(vs.num_params(), plain.num_params() + 3 * per_task);
            // Rebinding the store finds the same network.
            let again = BroNet::from_params(*vs.config(), vs.params().clone()).unwrap();
            close(&again.forward(&obs, &task).unwrap(), &want, 1e-5);
            assert!(BroNet::from_params(small(None), vs.params().clone()).is_err());
        }
    }

    #[test]
    fn mixed_batch_rows_use_their_own_tasks_residuals() {
        let net = BroNet::new(
            small(Some(ResidualMode::Variational)),
            &mut StdRng::seed_from_u64(2),
            &DEV,
        )
        .unwrap();
        // Give every task its own μ, so the tasks' networks differ.
        let mut rng = StdRng::seed_from_u64(5);
        for l in net.residual_layers() {
            for t in 0..3 {
                let v = l.mu(t).unwrap();
                let vals: Vec<f32> = (0..v.elem_count())
                    .map(|_| rng.random_range(-0.3..0.3))
                    .collect();
                v.set(&Tensor::from_vec(vals, v.shape(), &DEV).unwrap())
                    .unwrap();
            }
        }
        let (obs, task) = batch();
        let noise = ResidualNoise::draw(&net.residual_layers(), &mut rng).unwrap();
        let ids = task.to_vec1::<u32>().unwrap();
        for w in [
            ResidualWeights::Mean,
            ResidualWeights::Sampled {
                noise: &noise,
                signs: None,
            },
        ] {
            let all = flat(&net.forward_with(&obs, &task, w).unwrap());
            let width = all.len() / 7;
            for (i, &t) in ids.iter().enumerate() {
                let one = net
                    .forward_with(
                        &obs.narrow(0, i, 1).unwrap(),
                        &Tensor::new(&[t], &DEV).unwrap(),
                        w,
                    )
                    .unwrap();
                for (a, b) in flat(&one).iter().zip(&all[i * width..(i + 1) * width]) {
                    assert!((a - b).abs() <= 1e-5, "row {i}: {a} vs {b}");
                }
            }
        }
        // The shared network ignores μ: all tasks equal θ alone, unlike the means.
        let shared = flat(
            &net.forward_with(&obs, &task, ResidualWeights::Shared)
                .unwrap(),
        );
        let mean = flat(&net.forward(&obs, &task).unwrap());
        assert!(shared.iter().zip(&mean).any(|(a, b)| (a - b).abs() > 1e-3));
    }

    #[test]
    fn the_varshare_mlp_keeps_or_drops_its_embedding() {
        let dev = &DEV;
        let plain = SharedQMlp::new(&mut StdRng::seed_from_u64(3), dev).unwrap();
        let vs = SharedQMlp::new_varshare(
            &mut StdRng::seed_from_u64(3),
            dev,
            ResidualMode::Variational,
            true,
        )
        .unwrap();
        let (obs, task) = batch();
        close(
            &vs.forward(&obs, &task).unwrap(),
            &plain.forward(&obs, &task).unwrap(),
            1e-6,
        );
        assert_eq!(vs.residual_layers().len(), 3);
        let blind =
            SharedQMlp::new_varshare(&mut StdRng::seed_from_u64(3), dev, ResidualMode::L2, false)
                .unwrap();
        assert!(blind.is_task_blind());
        assert_eq!(
            blind.num_params(),
            35_716 + 3 * (8 * 256 + 256 * 128 + 128 * 4)
        );
        let again = SharedQMlp::from_params(blind.params().clone()).unwrap();
        assert_eq!(again.task_residuals(), Some(ResidualMode::L2));
        assert_eq!(
            vs.num_params(),
            37_788 + 3 * 2 * (16 * 256 + 256 * 128 + 128 * 4)
        );
    }
}

#[test]
fn the_fused_cpu_ops_equal_the_composed_tensor_ops() {
    let (store, fused) = layer(
        5,
        4,
        3,
        ResidualMode::Variational,
        |i| 0.05 * ((i % 7) as f32 - 3.0),
        |i| [1e-4, 1e-3, 0.02, 0.3, 2.0][i % 5],
    );
    let composed = fused.with_composed_ops();
    let mut rng = StdRng::seed_from_u64(12);
    let x: Vec<f32> = (0..6 * 5).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = Tensor::from_vec(x, (6, 5), &DEV).unwrap();
    // Task 1 has no row: its slices get no likelihood gradient on either path.
    let rows = TaskRows::group(&[0, 0, 2, 2, 2, 0], &DEV).unwrap();
    let x = rows.to_grouped(&x).unwrap();
    let eps = fused.draw_eps(&mut rng).unwrap();
    let signs = fused.draw_signs(&mut rng, 6).unwrap();
    let run = |l: &TaskResidualLinear| {
        let y = l
            .forward(
                &x,
                &rows,
                LayerWeights::Sampled {
                    eps: &eps,
                    signs: Some(&signs),
                },
            )
            .unwrap();
        let penalty = l.penalty(0.05).unwrap();
        let loss = ((y.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap()
            + penalty.sum_all().unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<Vec<f32>> = ["l.weight", "l.bias", "l.residual_mu", "l.residual_rho"]
            .iter()
            .map(|n| grad_of(&grads, &store, n))
            .collect();
        (flat(&y), flat(&penalty), g)
    };
    let (yf, pf, gf) = run(&fused);
    let (yc, pc, gc) = run(&composed);
    let close = |a: &[f32], b: &[f32], what: &str| {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what}: {x} vs {y}"
            );
        }
    };
    close(&yf, &yc, "output");
    close(&pf, &pc, "KL");
    for (i, (a, b)) in gf.iter().zip(&gc).enumerate() {
        close(a, b, &format!("gradient {i}"));
        assert!(a.iter().any(|v| *v != 0.0), "gradient {i} is not zero");
    }
}

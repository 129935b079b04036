//! Test helpers the host residual networks' tests share to check them against candle's graph:
//! residuals off their initial values, row orders, the reference gradients and the comparison.

use crate::task_residual::{FlipoutSigns, TaskResidualLinear};
use crate::{ParamStore, ResidualMode, ResidualNoise, ResidualWeights, Tensor};
use candle_core::backprop::GradStore;
use rand::{rngs::StdRng, Rng};

/// Draws every residual μ of `params` from ±`mu_spread` and every ρ from [−4, −2] (σ ≈ 0.05),
/// in store order from `rng`, so that the residuals are not at their initial values.
pub(crate) fn randomise_residuals(params: &ParamStore, mu_spread: f32, rng: &mut StdRng) {
    for (name, v) in params.named_vars() {
        let (lo, hi) = if name.contains("residual_rho") {
            (-4.0, -2.0)
        } else if name.contains("residual_mu") {
            (-mu_spread, mu_spread)
        } else {
            continue;
        };
        crate::params::update_host(v, |w| {
            w.iter_mut().for_each(|x| *x = rng.random_range(lo..hi))
        })
        .unwrap();
    }
}

/// ‖a − b‖ / ‖b‖ of two vectors of one length.
pub(crate) fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let n: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (d / n.max(1e-30)).sqrt()
}

/// The rows (`width` wide) of `v`, in batch order, taken in the grouped order `order`.
pub(crate) fn grouped(v: &[f32], order: &[u32], width: usize) -> Vec<f32> {
    order
        .iter()
        .flat_map(|&i| v[i as usize * width..(i as usize + 1) * width].to_vec())
        .collect()
}

/// [`grouped`]'s inverse: the rows of `v`, in the grouped order `order`, put back in batch order.
pub(crate) fn ungrouped(v: &[f32], order: &[u32], width: usize) -> Vec<f32> {
    let mut batch = vec![0.0f32; v.len()];
    for (p, &i) in order.iter().enumerate() {
        let i = i as usize;
        batch[i * width..(i + 1) * width].copy_from_slice(&v[p * width..(p + 1) * width]);
    }
    batch
}

/// A tensor's elements as a host vector.
pub(crate) fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// The weights candle's forward takes in `mode`: the draw (`noise`, `signs`) when variational,
/// the posterior means for `l2`.
pub(crate) fn candle_weights<'a>(
    mode: ResidualMode,
    noise: &'a ResidualNoise,
    signs: &'a [FlipoutSigns],
) -> ResidualWeights<'a> {
    match mode {
        ResidualMode::Variational => ResidualWeights::Sampled {
            noise,
            signs: Some(signs),
        },
        ResidualMode::L2 => ResidualWeights::Mean,
    }
}

/// candle's gradients of Σ ⟨`dout`, `out`⟩ + `scale` · Σ `layers`' penalties at `sigma_prior`,
/// `dout` in batch order.
pub(crate) fn candle_gradients(
    out: &Tensor,
    dout: &[f32],
    layers: &[&TaskResidualLinear],
    sigma_prior: f64,
    scale: f64,
) -> GradStore {
    let w = Tensor::from_slice(dout, out.dims(), out.device()).unwrap();
    let mut loss = (out.clone() * w).unwrap().sum_all().unwrap();
    for l in layers {
        let p = l.penalty(sigma_prior).unwrap().sum_all().unwrap();
        loss = (loss + (p * scale).unwrap()).unwrap();
    }
    loss.backward().unwrap()
}

/// Asserts that the host gradients `got` (store order) of `params` equal candle's `want` to a
/// relative 1e-5 and that every variable gets one; `what` names the case in failures.
pub(crate) fn assert_gradients_match(
    params: &ParamStore,
    want: &GradStore,
    got: &[Vec<f32>],
    what: &str,
) {
    assert_eq!(got.len(), params.len(), "{what}: gradient count");
    for ((name, var), got) in params.named_vars().iter().zip(got) {
        let w: Vec<f32> = want
            .get(var)
            .map_or_else(|| vec![0.0; var.elem_count()], values);
        let r = rel(got, &w);
        assert!(r < 1e-5, "{what}: {name}: relative error {r}");
        assert!(
            got.iter().any(|g| *g != 0.0),
            "{what}: {name} gets a gradient"
        );
    }
}

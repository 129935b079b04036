//! Seeded host-side weight initialisers.
//!
//! Values are drawn from the caller's RNG in storage order and only then uploaded, so the
//! same seed gives bit-identical weights on every device (candle's `randn` uses a global,
//! unseeded generator and differs per backend).

use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};

/// `n` draws from N(0, std²).
pub fn normal<R: Rng + ?Sized>(rng: &mut R, std: f64, n: usize) -> Vec<f32> {
    // Normal::new only fails for a negative or non-finite std, which callers never pass.
    let dist = Normal::new(0.0f64, std).expect("finite non-negative std");
    (0..n).map(|_| dist.sample(rng) as f32).collect()
}

/// `n` draws from U(-bound, bound).
pub fn uniform<R: Rng + ?Sized>(rng: &mut R, bound: f64, n: usize) -> Vec<f32> {
    if bound == 0.0 {
        return vec![0.0; n];
    }
    let dist = Uniform::new_inclusive(-bound, bound).expect("finite bound");
    (0..n).map(|_| dist.sample(rng) as f32).collect()
}

/// Standard deviation of Kaiming-normal init with ReLU gain, fan-in mode: `sqrt(2 / fan_in)`.
pub fn kaiming_std(fan_in: usize) -> f64 {
    (2.0 / fan_in as f64).sqrt()
}

/// Bound of Xavier-uniform init with gain 1: `sqrt(6 / (fan_in + fan_out))`.
pub fn xavier_bound(fan_in: usize, fan_out: usize) -> f64 {
    (6.0 / (fan_in + fan_out) as f64).sqrt()
}

/// How a linear layer's weight is initialised (biases always start at zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightInit {
    /// Kaiming normal, ReLU gain, fan-in: for layers followed by ReLU (and the MLP heads).
    KaimingNormal,
    /// Xavier uniform, gain 1: for BroNet's logit head, which feeds a softmax, not a ReLU.
    XavierUniform,
}

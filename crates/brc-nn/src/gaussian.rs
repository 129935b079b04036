//! Counter-based standard-normal noise: element i of a draw is a pure function of the draw's
//! key and i, so filling millions of values is one vectorised loop.
//!
//! Why: a VarShare update needs a fresh ε ~ N(0, I) for every adapter weight of every task
//! (1.4 M values for the default BroNet), and drawing them one at a time from a sequential
//! generator through a ziggurat was the largest single cost of the update. Here each pair of
//! values hashes its index with the key (SplitMix64's finaliser over a Weyl sequence) into
//! two 32-bit uniforms and turns them into two normals by Box–Muller, with the branch-free
//! math of [`crate::lane_math`]; the loop compiles for AVX2 and AVX-512, chosen at run time.
//! The uniforms carry 24 bits, so |ε| stays below √(2 ln 2²⁴) ≈ 5.77: a tail cut that a
//! sample of 10⁸ values would hit about once.

use crate::lane_math::{ln, sin_cos_turns};

/// SplitMix64's increment: the Weyl sequence that keys × indices walk.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Fills `out` with the standard-normal draw of `key`: `out[i]` depends on `key` and `i` only,
/// so a prefix of a longer draw is the shorter draw.
pub fn fill_standard_normal(key: u64, out: &mut [f32]) {
    fill(key, out);
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn fill(key: u64, out: &mut [f32]) {
    let (pairs, tail) = out.as_chunks_mut::<2>();
    for (j, pair) in pairs.iter_mut().enumerate() {
        *pair = normal_pair(key, j as u64);
    }
    if let [last] = tail {
        *last = normal_pair(key, pairs.len() as u64)[0];
    }
}

/// The two normals of pair `j` of `key`'s draw.
#[inline(always)]
fn normal_pair(key: u64, j: u64) -> [f32; 2] {
    let bits = mix(key.wrapping_add(j.wrapping_add(1).wrapping_mul(GAMMA)));
    const UNIT: f32 = 1.0 / (1u32 << 24) as f32;
    // u1 ∈ (0, 1] keeps ln finite; u2 ∈ [0, 1) is the angle in turns.
    // Through i32, whose conversion to f32 is one vector instruction (u32's is not on AVX2).
    let u1 = (((bits >> 40) as i32) + 1) as f32 * UNIT;
    let u2 = (((bits >> 8) as i32) & 0x00ff_ffff) as f32 * UNIT;
    let radius = (-2.0 * ln(u1)).sqrt();
    let (sin, cos) = sin_cos_turns(u2);
    [radius * cos, radius * sin]
}

/// SplitMix64's output function: a bijection of u64 whose outputs pass BigCrush for
/// consecutive inputs.
#[inline(always)]
fn mix(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(key: u64, n: usize) -> Vec<f32> {
        let mut v = vec![0.0; n];
        fill_standard_normal(key, &mut v);
        v
    }

    /// The standard normal CDF, from erf's Abramowitz–Stegun 7.1.26 (error < 1.5e-7).
    fn phi(x: f64) -> f64 {
        let z = x.abs() / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * z);
        let poly = t
            * (0.254_829_592
                + t * (-0.284_496_736
                    + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let erf = 1.0 - poly * (-z * z).exp();
        0.5 * (1.0 + erf.copysign(x))
    }

    #[test]
    fn a_draw_has_the_moments_of_a_standard_normal() {
        let v = draw(7, 1 << 21);
        let n = v.len() as f64;
        let moment = |k: i32| v.iter().map(|&x| (x as f64).powi(k)).sum::<f64>() / n;
        // Standard errors at n = 2²¹: mean 7e-4, variance 1e-3, skew 1.7e-3, kurtosis 1.7e-2.
        assert!(moment(1).abs() < 4e-3, "mean {}", moment(1));
        assert!((moment(2) - 1.0).abs() < 5e-3, "variance {}", moment(2));
        assert!(moment(3).abs() < 1e-2, "third moment {}", moment(3));
        assert!(
            (moment(4) - 3.0).abs() < 8e-2,
            "fourth moment {}",
            moment(4)
        );
    }

    #[test]
    fn a_draw_follows_the_normal_cdf() {
        let mut v = draw(11, 1 << 20);
        v.sort_by(f32::total_cmp);
        let n = v.len() as f64;
        // Kolmogorov–Smirnov distance; its 0.1% critical value at this n is 1.95 / √n.
        let ks = v
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = phi(x as f64);
                (f - i as f64 / n).abs().max((i as f64 + 1.0) / n - f)
            })
            .fold(0.0, f64::max);
        assert!(ks < 1.95 / n.sqrt(), "KS distance {ks}");
        assert!(v[0] > -5.8 && v[v.len() - 1] < 5.8);
    }

    #[test]
    fn draws_are_reproducible_prefix_stable_and_independent_across_keys() {
        let a = draw(3, 10_001);
        assert_eq!(a, draw(3, 10_001));
        assert_eq!(a[..5_000], draw(3, 5_000)[..]);
        let b = draw(4, 10_001);
        assert_ne!(a, b);
        let corr = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>() / a.len() as f32;
        assert!(corr.abs() < 0.04, "keys 3 and 4 correlate {corr}");
        // Neighbours within one draw (the two values of a pair, and adjacent pairs).
        let lag =
            |k: usize| a.iter().zip(&a[k..]).map(|(x, y)| x * y).sum::<f32>() / a.len() as f32;
        assert!(
            lag(1).abs() < 0.04 && lag(2).abs() < 0.04,
            "lags {} {}",
            lag(1),
            lag(2)
        );
    }
}

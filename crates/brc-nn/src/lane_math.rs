//! Branch-free `f32` exp, ln and sin/cos that LLVM vectorises at whatever width the calling
//! loop is compiled for.
//!
//! Why not libm or `wide`: a libm call per element stops vectorisation, and `wide` picks its
//! lane width when brc is compiled (SSE2 for a portable x86 build), so neither uses AVX2 or
//! AVX-512 on the CPU we land on. These are plain arithmetic and bit operations with no
//! branches and no calls: inlined into a `#[multiversion]` loop they become AVX2 or AVX-512
//! code chosen at run time. Accuracy is a few ulp over the ranges stated, which is what the
//! VarShare noise and its softplus need (the tests measure it against std).

use std::f32::consts::{FRAC_PI_2, LN_2, LOG2_E};

/// e^x for x in [−87, 88] (clamped there; the result stays a normal float), within 2 ulp.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // x = n ln2 + r with |r| ≤ ln2 / 2; ln2 split in two so r keeps its low bits.
    let (n, n_int) = round_to_int(x * LOG2_E);
    let r = n.mul_add(-0.693_145_75, x);
    let r = n.mul_add(-1.428_606_8e-6, r);
    // Taylor series of e^r to r⁷ (remainder below 2e-8 at |r| = ln2 / 2).
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // Scale by 2ⁿ through the exponent bits (n ∈ [−126, 127] after the clamp).
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// x rounded to the nearest integer (ties to even), as a float and as an integer, for
/// |x| < 2²²: adding 1.5·2²³ leaves the integer in the low mantissa bits. Unlike `as`, whose
/// saturating conversion compiles to scalar compares, this stays in vector lanes.
#[inline(always)]
pub fn round_to_int(x: f32) -> (f32, i32) {
    const SHIFT: f32 = 12_582_912.0;
    let shifted = x + SHIFT;
    (
        shifted - SHIFT,
        shifted.to_bits() as i32 - SHIFT.to_bits() as i32,
    )
}

/// ln x for a normal positive x, within 2 ulp.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
                                                                    // Centre the mantissa on 1: m ∈ [√½, √2).
    let big = m > std::f32::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    e += big as i32;
    // ln m = 2 atanh(s) with s = (m − 1)/(m + 1), |s| ≤ 0.172: odd series to s⁹.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p = 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    p = p * s2 + 1.0;
    (e as f32).mul_add(LN_2, 2.0 * s * p)
}

/// (sin, cos) of 2π·t for t in [0, 1), within 2e-7 absolute.
#[inline(always)]
pub fn sin_cos_turns(t: f32) -> (f32, f32) {
    // 2πt = q·π/2 + a with q the nearest quarter turn and |a| ≤ π/4.
    let quarters = t * 4.0;
    let (q, q_int) = round_to_int(quarters);
    let a = (quarters - q) * FRAC_PI_2;
    let a2 = a * a;
    // Taylor series: sin to a⁹, cos to a¹⁰ (remainders below 3e-8 at π/4).
    let mut s = 1.0 / 362_880.0;
    s = s * a2 - 1.0 / 5040.0;
    s = s * a2 + 1.0 / 120.0;
    s = s * a2 - 1.0 / 6.0;
    s = s * a2 + 1.0;
    let s = s * a;
    let mut c = -1.0 / 3_628_800.0;
    c = c * a2 + 1.0 / 40_320.0;
    c = c * a2 - 1.0 / 720.0;
    c = c * a2 + 1.0 / 24.0;
    c = c * a2 - 0.5;
    c = c * a2 + 1.0;
    // Rotate by q quarter turns: q = 1 → (c, −s), 2 → (−s, −c), 3 → (−c, s).
    let q = q_int as u32;
    let (sin, cos) = if q & 1 == 1 { (c, s) } else { (s, c) };
    let sin_sign = (q & 2) << 30;
    let cos_sign = ((q + 1) & 2) << 30;
    (
        f32::from_bits(sin.to_bits() ^ sin_sign),
        f32::from_bits(cos.to_bits() ^ cos_sign),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_std() {
        let mut worst = 0;
        for k in 0..=200_000 {
            let x = -87.0 + 175.0 * k as f32 / 200_000.0;
            worst = worst.max(ulps(exp(x), (x as f64).exp() as f32));
        }
        assert!(worst <= 2, "exp is {worst} ulp off");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) > 0.0 && exp(1000.0).is_finite());
    }

    #[test]
    fn ln_is_within_two_ulp_of_std_over_the_normal_floats() {
        let mut worst = 0;
        let mut x = f32::MIN_POSITIVE;
        while x < 1e30 {
            worst = worst.max(ulps(ln(x), (x as f64).ln() as f32));
            x *= 1.000_37;
        }
        assert!(worst <= 2, "ln is {worst} ulp off");
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn sin_cos_turns_match_std_around_the_circle() {
        let mut worst = 0.0f64;
        for k in 0..1_000_000 {
            let t = k as f32 / 1_000_000.0;
            let (s, c) = sin_cos_turns(t);
            let angle = std::f64::consts::TAU * t as f64;
            worst = worst.max((s as f64 - angle.sin()).abs());
            worst = worst.max((c as f64 - angle.cos()).abs());
        }
        assert!(worst < 2e-7, "sin/cos are {worst} off");
    }
}

//! numpy-compatible random numbers: `Generator(PCG64(SeedSequence(seed)))`.
//!
//! Gymnasium seeds every environment with numpy's PCG64 generator initialised through
//! `SeedSequence`. Reproducing that stream bit for bit means `reset(seed)` here builds the
//! same terrain and gives the same initial push as Gymnasium's `reset(seed=s)`, so results
//! on the same seeds are comparable across the two implementations.

/// PCG64's 128-bit LCG multiplier (numpy's `PCG_DEFAULT_MULTIPLIER`).
const PCG_MULTIPLIER: u128 = 0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645;

// SeedSequence hashing constants (numpy/random/bit_generator.pyx).
const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_L: u32 = 0xca01_f9dd;
const MIX_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;
const POOL_SIZE: usize = 4;

/// numpy's `SeedSequence(seed).generate_state(4, uint64)` for an integer seed.
pub fn seed_sequence_state(seed: u64) -> [u64; 4] {
    // Entropy words: the seed as little-endian u32 words; 0 still yields one word.
    let mut entropy = vec![seed as u32];
    if seed >> 32 != 0 {
        entropy.push((seed >> 32) as u32);
    }

    let mut hash_const = INIT_A;
    let mut hashmix = |mut value: u32| -> u32 {
        value ^= hash_const;
        hash_const = hash_const.wrapping_mul(MULT_A);
        value = value.wrapping_mul(hash_const);
        value ^ (value >> XSHIFT)
    };
    let mix = |x: u32, y: u32| -> u32 {
        let r = MIX_L.wrapping_mul(x).wrapping_sub(MIX_R.wrapping_mul(y));
        r ^ (r >> XSHIFT)
    };

    let mut pool = [0u32; POOL_SIZE];
    for (i, slot) in pool.iter_mut().enumerate() {
        *slot = hashmix(entropy.get(i).copied().unwrap_or(0));
    }
    for src in 0..POOL_SIZE {
        for dst in 0..POOL_SIZE {
            if src != dst {
                let h = hashmix(pool[src]);
                pool[dst] = mix(pool[dst], h);
            }
        }
    }
    for &word in entropy.iter().skip(POOL_SIZE) {
        for slot in pool.iter_mut() {
            let h = hashmix(word);
            *slot = mix(*slot, h);
        }
    }

    let mut out = [0u32; 8];
    let mut hash_const = INIT_B;
    for (i, o) in out.iter_mut().enumerate() {
        let mut v = pool[i % POOL_SIZE];
        v ^= hash_const;
        hash_const = hash_const.wrapping_mul(MULT_B);
        v = v.wrapping_mul(hash_const);
        *o = v ^ (v >> XSHIFT);
    }
    std::array::from_fn(|i| u64::from(out[2 * i]) | (u64::from(out[2 * i + 1]) << 32))
}

/// numpy's `Generator(PCG64(SeedSequence(seed)))`, restricted to the draws LunarLander makes.
#[derive(Debug, Clone)]
pub struct NumpyRng {
    state: u128,
    increment: u128,
}

impl NumpyRng {
    /// The generator Gymnasium's `reset(seed=seed)` creates.
    pub fn from_seed(seed: u64) -> Self {
        let s = seed_sequence_state(seed);
        let init_state = (u128::from(s[0]) << 64) | u128::from(s[1]);
        let init_seq = (u128::from(s[2]) << 64) | u128::from(s[3]);
        let mut rng = Self {
            state: 0,
            increment: (init_seq << 1) | 1,
        };
        rng.advance();
        rng.state = rng.state.wrapping_add(init_state);
        rng.advance();
        rng
    }

    fn advance(&mut self) {
        self.state = self
            .state
            .wrapping_mul(PCG_MULTIPLIER)
            .wrapping_add(self.increment);
    }

    /// Next raw 64-bit output (XSL-RR of the advanced state).
    pub fn next_u64(&mut self) -> u64 {
        self.advance();
        let hi = (self.state >> 64) as u64;
        let lo = self.state as u64;
        (hi ^ lo).rotate_right((self.state >> 122) as u32)
    }

    /// `Generator.random()`: a double in [0, 1) with 53 random bits.
    pub fn random(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `Generator.uniform(low, high)`, computed as numpy does: `low + (high - low) * u`.
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.random()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Check values from ../shared/refdata/README.md (numpy 2).
    #[test]
    fn seed_sequence_matches_numpy() {
        assert_eq!(
            seed_sequence_state(0),
            [
                0xdb2cd7e7b0f478be,
                0xabf4641a2c71ba49,
                0x20c6ed6d9d7b8d41,
                0x2c4099de223c39d4
            ]
        );
        assert_eq!(
            seed_sequence_state(42),
            [
                0x9f1e2e6dcd540ab7,
                0xd57873dc79fb94b6,
                0x7d282a1b64d420b7,
                0x336579714692d5ff
            ]
        );
        assert_eq!(
            seed_sequence_state((1 << 40) + 3),
            [
                0x5418c9b7a64674f4,
                0x6b87af38305bb452,
                0x67a779a86253d291,
                0x35c14f1ed476091f
            ]
        );
    }

    #[test]
    fn random_matches_numpy() {
        let cases: [(u64, &[f64]); 4] = [
            (
                0,
                &[0.6369616873214543, 0.2697867137638703, 0.04097352393619469],
            ),
            (
                42,
                &[0.7739560485559633, 0.4388784397520523, 0.8585979199113825],
            ),
            (
                12345,
                &[0.22733602246716966, 0.31675833970975287, 0.7973654573327341],
            ),
            ((1 << 40) + 3, &[0.7736560850714245]),
        ];
        for (seed, expected) in cases {
            let mut rng = NumpyRng::from_seed(seed);
            for &e in expected {
                assert_eq!(rng.random(), e, "seed {seed}");
            }
        }
    }
}

//! Denormal floats flushed to zero on brc's compute threads.
//!
//! Late in a BRC run the Adam moments of weights whose gradient has gone to zero decay (m ×0.9,
//! v ×0.999 per step) through the denormal range (below 1.2e-38) before they reach zero, and
//! small activations and gradients land there too. Intel cores take a microcode assist of
//! ~100+ cycles for every vector instruction that reads or makes a denormal; AMD's cores
//! barely slow down. With thousands of such values the same run got ~12% slower on an Intel
//! Xeon as training went on. Setting the SSE control register's flush-to-zero (FTZ)
//! and denormals-are-zero (DAZ) bits treats them as zero instead: no assists, and, being part
//! of IEEE arithmetic's defined modes, the same bits on every x86 CPU. The values involved are
//! below 1.2e-38, far under anything a network or its optimizer can resolve.
//!
//! The setting belongs to a thread, so every thread that computes for brc calls
//! [`flush_to_zero`]: the CLI's main thread and its compute pools, and the trainer's thread
//! when a run starts. On other architectures it does nothing (Apple's cores handle denormals
//! at full speed).

/// FTZ (bit 15) and DAZ (bit 6) of the x86 MXCSR register.
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

/// Makes the calling thread's float arithmetic flush denormal results and inputs to zero
/// (x86-64; a no-op elsewhere). Idempotent; lasts for the thread's life.
pub fn flush_to_zero() {
    #[cfg(target_arch = "x86_64")]
    {
        let csr = mxcsr() | FTZ_DAZ;
        // SAFETY: `ldmxcsr` loads a control word we read from the register and only set the
        // two rounding-mode-independent flush bits in; no memory but `csr` is touched.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
        }
    }
}

/// Whether the calling thread flushes denormals to zero (always false off x86-64).
pub fn flushing_to_zero() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        mxcsr() & FTZ_DAZ == FTZ_DAZ
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
fn mxcsr() -> u32 {
    let mut csr = 0u32;
    // SAFETY: `stmxcsr` stores the 32-bit control register into `csr`, nothing else.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
    }
    csr
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::hint::black_box;

    /// The smallest normal f32 halved: a denormal, 5.9e-39.
    fn half_min_positive() -> f32 {
        black_box(f32::MIN_POSITIVE) * black_box(0.5)
    }

    #[test]
    fn a_new_thread_keeps_denormals() {
        let (flushing, value) = std::thread::spawn(|| (flushing_to_zero(), half_min_positive()))
            .join()
            .unwrap();
        assert!(!flushing);
        assert!(value > 0.0 && value < f32::MIN_POSITIVE);
    }

    #[test]
    fn flushed_threads_make_and_read_no_denormals() {
        let denormal = f32::from_bits(1 << 20); // 1.5e-39, built from bits: no arithmetic
        let (flushing, made, read, vector) = std::thread::spawn(move || {
            flush_to_zero();
            flush_to_zero(); // idempotent
            let read = black_box(denormal) * black_box(4.0);
            // The same in a vectorised kernel the networks use: denormal + 0 is 0.
            let mut v = vec![denormal; 64];
            crate::kernels::add_bias(&mut v, &[0.0; 16]);
            let vector = v.iter().map(|x| x.to_bits()).max().unwrap_or(1);
            (flushing_to_zero(), half_min_positive(), read, vector)
        })
        .join()
        .unwrap();
        assert!(flushing);
        assert_eq!(made, 0.0, "FTZ: a denormal result becomes zero");
        assert_eq!(read, 0.0, "DAZ: a denormal operand counts as zero");
        assert_eq!(vector, 0, "every lane is +0");
    }

    #[test]
    fn flushing_is_per_thread() {
        std::thread::spawn(flush_to_zero).join().unwrap();
        let value = std::thread::spawn(half_min_positive).join().unwrap();
        assert!(value > 0.0);
    }
}

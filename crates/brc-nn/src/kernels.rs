//! Dense kernels on host slices: the matrix product (the `gemm` crate, the same one candle's
//! CPU backend calls), LayerNorm forward and backward, column sums.
//!
//! These are the building blocks of [`crate::BroNetCpu`], the CPU fast path of BroNet. They
//! work on row-major `f32` slices the caller owns, so a training step allocates nothing.

/// Which matrix-product kernel the `gemm` crate runs on this CPU with this build.
///
/// `gemm` picks its kernel at run time, but its AVX-512 kernels exist only when it is built
/// with its `x86-v4` feature, which brc enables through its default `avx512` feature. A build
/// without it (`--no-default-features`) runs the AVX2 + FMA kernels on every x86 CPU, which
/// gives the same bits on an AVX2 and an AVX-512 machine (docs/performance.md).
pub fn matmul_kernel() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "avx512") && std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2-fma";
        }
        "sse"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

/// A row-major matrix operand: `rows × cols` values, optionally read transposed.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    /// Rows and columns of the *stored* matrix.
    pub rows: usize,
    pub cols: usize,
    /// Read the stored matrix as its transpose.
    pub t: bool,
}

impl<'a> Mat<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        debug_assert!(data.len() >= rows * cols);
        Self {
            data,
            rows,
            cols,
            t: false,
        }
    }

    pub fn t(self) -> Self {
        Self { t: !self.t, ..self }
    }

    /// Rows and columns as read.
    fn shape(&self) -> (usize, usize) {
        if self.t {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// (row stride, column stride) as read.
    fn strides(&self) -> (isize, isize) {
        if self.t {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// Runs `a` and `b`, two independent parts of a pass, on two threads of the current rayon
/// pool when `parallel`, else one after the other. Each part computes the same thing either
/// way, so results are bit-identical whatever the thread count.
pub(crate) fn both(parallel: bool, a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
    if parallel {
        rayon::join(a, b);
    } else {
        a();
        b();
    }
}

/// `out [m × n] = a · b`, or `out += a · b` when `accumulate`; `out` is row-major with `n`
/// columns. One thread unless `threads > 1`.
///
/// A transposed right operand (`dx = dy · Wᵀ` in every backward pass) is first copied into
/// row-major order ([`transpose`], into a per-thread buffer kept between calls): `gemm` would
/// otherwise gather it column by column while packing, which made these products 1.3–2.3×
/// slower than plain ones at 21–192 rows (docs/performance.md). The packed values and the
/// order of the sums are the same either way, so the result is bit-identical (tested).
pub(crate) fn matmul(out: &mut [f32], a: Mat, b: Mat, accumulate: bool, threads: usize) {
    let (m, _) = a.shape();
    // Read transposed, the stored rows are the product's columns.
    if b.t && m >= TRANSPOSE_MIN_ROWS && b.rows >= TRANSPOSE_MIN_COLS {
        TRANSPOSED.with_borrow_mut(|buf| {
            buf.resize(b.rows * b.cols, 0.0);
            transpose(buf, b.data, b.rows, b.cols);
            gemm_strided(out, a, Mat::new(buf, b.cols, b.rows), accumulate, threads);
        });
    } else {
        gemm_strided(out, a, b, accumulate, threads);
    }
}

/// Products with fewer rows or output columns than these keep `gemm`'s own strided read.
/// There the copy would cost more than it saves, and `gemm` may pick another kernel for a
/// narrow product (products of ≤ 10 rows and ≤ 32 columns came out with other bits), so
/// the fast path stays where the bits are the same (tested over the networks' shapes).
const TRANSPOSE_MIN_ROWS: usize = 16;
const TRANSPOSE_MIN_COLS: usize = 64;

thread_local! {
    /// [`matmul`]'s row-major copy of a transposed operand, reused by every call on a thread.
    static TRANSPOSED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `gemm`'s product on the operands as they are stored (strides for transposed reads).
fn gemm_strided(out: &mut [f32], a: Mat, b: Mat, accumulate: bool, threads: usize) {
    let (m, k) = a.shape();
    let (k2, n) = b.shape();
    assert_eq!(k, k2, "matmul: inner dimensions differ");
    assert!(out.len() >= m * n, "matmul: output too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = a.strides();
    let (b_rs, b_cs) = b.strides();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the shapes and strides above address only elements inside `a.data`, `b.data`
    // (asserted lengths) and `out[..m * n]`; `out` does not alias the inputs (it is a `&mut`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `dst [cols × rows] = srcᵀ` for a row-major `src [rows × cols]`: 8 × 8 blocks in AVX
/// registers where the CPU has AVX, plain loops elsewhere and for the edges. A copy, so
/// exact on every path.
pub(crate) fn transpose(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    assert!(
        src.len() >= rows * cols && dst.len() >= rows * cols,
        "transpose: too short"
    );
    let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // 32 × 32 tiles keep a tile's source and destination lines in L1.
        for rb in (0..r8).step_by(32) {
            for cb in (0..c8).step_by(32) {
                for r in (rb..(rb + 32).min(r8)).step_by(8) {
                    for c in (cb..(cb + 32).min(c8)).step_by(8) {
                        // SAFETY: AVX is present (checked above); the block's 8 rows of 8
                        // values start at src[r·cols + c] and dst[c·rows + r], inside both
                        // slices (r + 8 ≤ rows, c + 8 ≤ cols, lengths asserted).
                        unsafe {
                            transpose_8x8_avx(
                                src.as_ptr().add(r * cols + c),
                                cols,
                                dst.as_mut_ptr().add(c * rows + r),
                                rows,
                            )
                        };
                    }
                }
            }
        }
        transpose_edges(dst, src, rows, cols, r8, c8);
        return;
    }
    transpose_block(dst, src, rows, cols, 0..r8, 0..c8);
    transpose_edges(dst, src, rows, cols, r8, c8);
}

/// The columns from `c8` on and the rows from `r8` on, which no 8 × 8 block covers.
fn transpose_edges(dst: &mut [f32], src: &[f32], rows: usize, cols: usize, r8: usize, c8: usize) {
    transpose_block(dst, src, rows, cols, 0..rows, c8..cols);
    transpose_block(dst, src, rows, cols, r8..rows, 0..c8);
}

fn transpose_block(
    dst: &mut [f32],
    src: &[f32],
    rows: usize,
    cols: usize,
    rs: std::ops::Range<usize>,
    cs: std::ops::Range<usize>,
) {
    for r in rs {
        for c in cs.clone() {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// One 8 × 8 block: rows `src + i·src_stride` become columns `dst + j·dst_stride`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_8x8_avx(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    let row = |i: usize| _mm256_loadu_ps(src.add(i * src_stride));
    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
    let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
    // Pairs of rows interleaved, then quadruples, then the 128-bit halves swapped.
    let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
    let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
    let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
    let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    let out = |j: usize, v: __m256| _mm256_storeu_ps(dst.add(j * dst_stride), v);
    out(0, _mm256_permute2f128_ps::<0x20>(s0, s4));
    out(1, _mm256_permute2f128_ps::<0x20>(s1, s5));
    out(2, _mm256_permute2f128_ps::<0x20>(s2, s6));
    out(3, _mm256_permute2f128_ps::<0x20>(s3, s7));
    out(4, _mm256_permute2f128_ps::<0x31>(s0, s4));
    out(5, _mm256_permute2f128_ps::<0x31>(s1, s5));
    out(6, _mm256_permute2f128_ps::<0x31>(s2, s6));
    out(7, _mm256_permute2f128_ps::<0x31>(s3, s7));
}

/// Adds `bias` to every row of `x` (`x.len()` a multiple of `bias.len()`).
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
pub(crate) fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// `x = max(x, 0)` elementwise.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
pub(crate) fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// `grad *= (activation > 0)`: ReLU's backward from its output.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
pub(crate) fn relu_backward(grad: &mut [f32], activation: &[f32]) {
    for (g, a) in grad.iter_mut().zip(activation) {
        if *a <= 0.0 {
            *g = 0.0;
        }
    }
}

/// `out += Σ_rows x` (`out.len()` columns), rows summed in order.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
pub(crate) fn add_column_sums(out: &mut [f32], x: &[f32]) {
    for row in x.chunks_exact(out.len()) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// LayerNorm of each row of `x` into `out`, keeping `xhat` (the normalised rows) and each
/// row's `1/sqrt(var + eps)` for the backward pass (biased variance, as PyTorch).
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
pub(crate) fn layer_norm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
    xhat: &mut [f32],
    rstd: &mut [f32],
) {
    let dim = gamma.len();
    for (((row, y), xh), r) in x
        .chunks_exact(dim)
        .zip(out.chunks_exact_mut(dim))
        .zip(xhat.chunks_exact_mut(dim))
        .zip(rstd.iter_mut())
    {
        let n = dim as f32;
        let mean = lane_sum(row, |v| v) / n;
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
        *r = 1.0 / (var + eps).sqrt();
        let r = *r;
        for (((xh, y), x), (g, b)) in xh
            .iter_mut()
            .zip(y.iter_mut())
            .zip(row)
            .zip(gamma.iter().zip(beta))
        {
            *xh = (x - mean) * r;
            *y = *xh * g + b;
        }
    }
}

/// LayerNorm's backward: `dx (+)= rstd · (dxhat − mean(dxhat) − xhat · mean(dxhat · xhat))`
/// with `dxhat = dy · γ`; adds the γ and β gradients of these rows to `dgamma`, `dbeta`.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_backward(
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    dx: &mut [f32],
    accumulate: bool,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let dim = gamma.len();
    let n = dim as f32;
    for (((dyr, xh), &r), dxr) in dy
        .chunks_exact(dim)
        .zip(xhat.chunks_exact(dim))
        .zip(rstd)
        .zip(dx.chunks_exact_mut(dim))
    {
        // dγ, dβ and the two row means in one pass, the means over 8 lanes.
        let (mut sum_dxhat, mut sum_dxhat_xhat) = ([0f32; 8], [0f32; 8]);
        for ((((dy, xh), g), dg), db) in dyr
            .chunks(8)
            .zip(xh.chunks(8))
            .zip(gamma.chunks(8))
            .zip(dgamma.chunks_mut(8))
            .zip(dbeta.chunks_mut(8))
        {
            for l in 0..dy.len() {
                let dxhat = dy[l] * g[l];
                sum_dxhat[l] += dxhat;
                sum_dxhat_xhat[l] += dxhat * xh[l];
                dg[l] += dy[l] * xh[l];
                db[l] += dy[l];
            }
        }
        let mean_dxhat = sum_dxhat.iter().sum::<f32>() / n;
        let mean_dxhat_xhat = sum_dxhat_xhat.iter().sum::<f32>() / n;
        let dx_of =
            |(dy, xh, g): (&f32, &f32, &f32)| r * (dy * g - mean_dxhat - xh * mean_dxhat_xhat);
        let terms = dyr.iter().zip(xh).zip(gamma).map(|((a, b), c)| (a, b, c));
        if accumulate {
            dxr.iter_mut().zip(terms).for_each(|(d, t)| *d += dx_of(t));
        } else {
            dxr.iter_mut().zip(terms).for_each(|(d, t)| *d = dx_of(t));
        }
    }
}

/// A sum over 8 independent lanes (element `i` into lane `i % 8`, lanes added in order): a
/// plain `sum()` is one serial chain of float additions that the compiler may not reorder.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += f(*v);
        }
    }
    for (l, v) in lanes.iter_mut().zip(rest) {
        *l += f(*v);
    }
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    fn naive_transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0f32; x.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = x[r * cols + c];
            }
        }
        t
    }

    #[test]
    fn matmul_matches_the_naive_product_in_every_transpose_and_accumulates() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 11) as f32 * 0.25 - 1.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5 - 0.75).collect();
        let want = naive(&a, &b, m, k, n);
        let at = naive_transpose(&a, m, k);
        let bt = naive_transpose(&b, k, n);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let lhs = if ta {
                Mat::new(&at, k, m).t()
            } else {
                Mat::new(&a, m, k)
            };
            let rhs = if tb {
                Mat::new(&bt, n, k).t()
            } else {
                Mat::new(&b, k, n)
            };
            let mut out = vec![9.0f32; m * n];
            matmul(&mut out, lhs, rhs, false, 1);
            for (x, y) in out.iter().zip(&want) {
                assert!((x - y).abs() < 1e-5, "transposes {ta}/{tb}: {x} vs {y}");
            }
            matmul(&mut out, lhs, rhs, true, 1);
            for (x, y) in out.iter().zip(&want) {
                assert!((x - 2.0 * y).abs() < 1e-5, "accumulate {ta}/{tb}");
            }
        }
    }

    /// Values with many distinct mantissas, so that a changed summation order would show.
    fn values(len: usize, salt: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                let h = (i ^ salt).wrapping_mul(2_654_435_761).rotate_left(13);
                (h % 20_011) as f32 / 10_005.5 - 1.0
            })
            .collect()
    }

    #[test]
    fn transpose_is_exact_on_every_shape() {
        for (rows, cols) in [
            (1, 1),
            (3, 5),
            (8, 8),
            (13, 21),
            (16, 404),
            (256, 256),
            (259, 37),
        ] {
            let src = values(rows * cols, 7);
            let mut dst = vec![f32::NAN; rows * cols];
            transpose(&mut dst, &src, rows, cols);
            assert_eq!(dst, naive_transpose(&src, rows, cols), "{rows} × {cols}");
        }
    }

    #[test]
    fn transposed_products_equal_gemms_strided_read_bit_for_bit() {
        // dx [m × k] = dy [m × n] · Wᵀ with W stored [k × n]: the backward passes' shapes
        // (rows: a task's share of a batch up to balanced batches; k, n: the layers' widths),
        // and narrow ones that keep the strided read.
        let mut shapes = vec![(8, 24, 256), (33, 7, 300), (10, 24, 64)];
        for m in [16, 21, 33, 43, 64, 128, 192] {
            for k in [64, 128, 256, 512] {
                for n in [4, 64, 128, 204, 256, 404] {
                    shapes.push((m, k, n));
                }
            }
        }
        for (m, k, n) in shapes {
            let dy = values(m * n, 1);
            let w = values(k * n, 2);
            let rhs = Mat::new(&w, k, n).t();
            let runs: &[(bool, usize)] = if m == 64 {
                &[(false, 1), (true, 1), (false, 2)]
            } else {
                &[(false, 1)]
            };
            for &(accumulate, threads) in runs {
                let start = values(m * k, 3);
                let (mut fast, mut strided) = (start.clone(), start);
                matmul(&mut fast, Mat::new(&dy, m, n), rhs, accumulate, threads);
                gemm_strided(&mut strided, Mat::new(&dy, m, n), rhs, accumulate, threads);
                let same = fast
                    .iter()
                    .zip(&strided)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{m} × {k} × {n}, accumulate {accumulate}, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn the_kernel_name_follows_the_build_and_the_cpu() {
        let kernel = matmul_kernel();
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = std::arch::is_x86_feature_detected!("avx512f");
            assert_eq!(kernel == "avx512", cfg!(feature = "avx512") && avx512);
        }
        assert!(!kernel.is_empty());
    }
}

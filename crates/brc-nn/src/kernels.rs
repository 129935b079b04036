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
pub(crate) fn matmul(out: &mut [f32], a: Mat, b: Mat, accumulate: bool, threads: usize) {
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

    fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
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
        let at = transpose(&a, m, k);
        let bt = transpose(&b, k, n);
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

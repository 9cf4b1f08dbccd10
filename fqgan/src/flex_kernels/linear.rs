//! `x @ weight^T + bias` for a few rows of `x` (decoding one token, with or without
//! guidance): every weight row read from memory once, and dotted with all rows of `x` while
//! it is in L1. Through gemm, a thin product runs its widest microkernel on mostly padding
//! and broadcasts each weight element on its own: FAR-B's tokens took 2.4x PyTorch's time.
//! Weights are f32 or bf16 (see [`Weights`]). More rows (a sequence through the adapters'
//! transformer) go to gemm in [`many_rows`].

use burn::tensor::{bf16, DType};
use rayon::prelude::*;

use super::dot;

/// A weight matrix `[d_out, d_in]` as it is stored.
#[derive(Clone, Copy)]
pub(super) enum Weights<'a> {
    F32(&'a [f32]),
    /// Weight-only reduced precision (FAR inference): half the bytes to stream per token;
    /// widened to f32 in registers, and the products summed in f32.
    Bf16(&'a [bf16]),
}

impl Weights<'_> {
    fn dtype(&self) -> DType {
        match self {
            Weights::F32(_) => DType::F32,
            Weights::Bf16(_) => DType::BF16,
        }
    }

    fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::Bf16(w) => w.len(),
        }
    }

    /// Weights `start..start + len`.
    fn row(&self, start: usize, len: usize) -> Weights<'_> {
        match self {
            Weights::F32(w) => Weights::F32(&w[start..start + len]),
            Weights::Bf16(w) => Weights::Bf16(&w[start..start + len]),
        }
    }
}

/// The most rows of `x` the kernel takes for weights stored as `dtype`; each group of 4 rows
/// is one more pass over the weight row, in L1 by then. With f32 weights, gemm's blocked
/// product is faster beyond 8 rows on AVX-512 (FAR-B at batch 8, 16 rows: 0.29-0.38 s per token
/// against 0.48) and as fast on AVX2 (0.358 against 0.352). With bf16 weights the kernel
/// takes a guided batch of 8 too, and spares gemm a widened copy of every weight.
pub(crate) fn max_rows(dtype: DType) -> usize {
    match dtype {
        DType::BF16 => 16,
        _ => 8,
    }
}

/// Weight rows (outputs) per parallel task.
const OUTPUTS_PER_TASK: usize = 32;

/// `[rows, d_out]`: `x` `[rows, d_in]` times `weights` `[d_out, d_in]` transposed, plus `bias`.
pub(super) fn forward(x: &[f32], weights: Weights<'_>, bias: Option<&[f32]>, rows: usize, d_in: usize) -> Vec<f32> {
    let most = max_rows(weights.dtype());
    assert!((1..=most).contains(&rows), "linear kernel: {rows} rows (at most {most})");
    let d_out = weights.len() / d_in;
    let isa = Isa::detect();
    // Output-major [d_out, rows]: each task writes one contiguous block; transposed after.
    let mut by_output = vec![0f32; d_out * rows];
    by_output.par_chunks_mut(OUTPUTS_PER_TASK * rows).enumerate().for_each(|(task, out)| {
        let first = task * OUTPUTS_PER_TASK * d_in;
        // Only the portable path widens bf16 rows ahead; the kernels widen in registers.
        let mut widened = match weights {
            Weights::Bf16(_) if matches!(isa, Isa::Portable) => vec![0f32; d_in],
            _ => Vec::new(),
        };
        for (o, out) in out.chunks_exact_mut(rows).enumerate() {
            let w = weights.row(first + o * d_in, d_in);
            // Rows by fours, then a pair, then one; after the first group the weight row is
            // read from L1.
            let mut r = 0;
            while r + 4 <= rows {
                let xs = std::array::from_fn(|i| &x[(r + i) * d_in..(r + i + 1) * d_in]);
                out[r..r + 4].copy_from_slice(&dot_rows::<4>(w, xs, isa, &mut widened));
                r += 4;
            }
            if r + 2 <= rows {
                let xs = std::array::from_fn(|i| &x[(r + i) * d_in..(r + i + 1) * d_in]);
                out[r..r + 2].copy_from_slice(&dot_rows::<2>(w, xs, isa, &mut widened));
                r += 2;
            }
            if r < rows {
                out[r] = dot_rows::<1>(w, [&x[r * d_in..]], isa, &mut widened)[0];
            }
        }
    });
    let mut out = vec![0f32; rows * d_out];
    for (o, values) in by_output.chunks_exact(rows).enumerate() {
        for (r, &v) in values.iter().enumerate() {
            out[r * d_out + o] = v + bias.map_or(0.0, |b| b[o]);
        }
    }
    out
}

/// `x @ weight^T + bias` for `x` `[rows, d_in]` and an f32 `weight` `[d_out, d_in]` through
/// gemm, which reads the weight in place (transposed by its strides) and adds the product
/// onto the output's bias rows: one pass over the output, where the generic ops zero it,
/// multiply and add the bias on one thread.
pub(super) fn many_rows(x: &[f32], weight: &[f32], bias: Option<&[f32]>, rows: usize, d_in: usize) -> Vec<f32> {
    let (d_out, len) = (weight.len() / d_in, rows * weight.len() / d_in);
    // Not zeroed: gemm adds onto the bias rows, or (without a bias) overwrites every value.
    let mut out = Vec::<f32>::with_capacity(len);
    if let Some(bias) = bias {
        out.spare_capacity_mut()[..len].par_chunks_mut(d_out).for_each(|row| {
            row.iter_mut().zip(bias).for_each(|(o, &b)| {
                o.write(b);
            })
        });
    }
    // SAFETY: `out` has room for [rows, d_out], x is [rows, d_in] and the weight [d_out,
    // d_in], read as [d_in, d_out] through its strides; gemm reads `out` only when told to
    // accumulate, after the bias was written.
    unsafe {
        super::conv::matmul(
            [rows, d_out, d_in],
            out.spare_capacity_mut().as_mut_ptr().cast(),
            d_out,
            bias.is_some(),
            super::conv::Operand { ptr: x.as_ptr(), row_stride: d_in, col_stride: 1 },
            super::conv::Operand { ptr: weight.as_ptr(), row_stride: 1, col_stride: d_in },
            gemm::Parallelism::Rayon(0),
        );
        out.set_len(len);
    }
    out
}

/// `src` as f32 into `dst`: a bf16 is the top half of the f32 it rounds, so widening is exact.
#[inline(always)]
pub(super) fn widen(src: &[bf16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits(u32::from(s.to_bits()) << 16);
    }
}

/// `values` rounded to the nearest bf16 (ties to even), in parallel.
pub(super) fn narrow(values: &[f32]) -> Vec<bf16> {
    let mut out = vec![bf16::ZERO; values.len()];
    out.par_chunks_mut(1 << 16).zip(values.par_chunks(1 << 16)).for_each(|(out, values)| {
        for (o, &v) in out.iter_mut().zip(values) {
            *o = bf16::from_f32(v);
        }
    });
    out
}

/// `values` widened to f32, in parallel.
pub(super) fn widen_all(values: &[bf16]) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    out.par_chunks_mut(1 << 16)
        .zip(values.par_chunks(1 << 16))
        .for_each(|(out, values)| super::vectorized(|| widen(values, out)));
    out
}

/// The vector units [`dot_rows`] can use, detected once per call.
#[derive(Clone, Copy)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    Portable,
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }
}

/// `[w . xs[0], .., w . xs[R - 1]]` for one weight row `w`, each weight vector loaded (and
/// bf16 widened) once for all R rows, into 2R independent FMA accumulators. Spelled out in
/// intrinsics: the portable loops do not vectorise with several sets of accumulators, and
/// one dot product per row is bound by the latency of its additions (FAR-B on an AVX2 core:
/// 0.195 -> 0.123 s per token at batch 1).
#[inline(always)]
fn dot_rows<const R: usize>(w: Weights<'_>, xs: [&[f32]; R], isa: Isa, widened: &mut [f32]) -> [f32; R] {
    assert!(xs.iter().all(|x| x.len() >= w.len()), "rows shorter than the weight row");
    // SAFETY: `Isa::detect` found the features each kernel is compiled for; the rows are at
    // least as long as `w`.
    match (isa, w) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, Weights::F32(w)) => unsafe { x86::dot_rows_avx512_f32(w, xs) },
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, Weights::Bf16(w)) => unsafe { x86::dot_rows_avx512_bf16(w, xs) },
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2Fma, Weights::F32(w)) => unsafe { x86::dot_rows_avx2_f32(w, xs) },
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2Fma, Weights::Bf16(w)) => unsafe { x86::dot_rows_avx2_bf16(w, xs) },
        (Isa::Portable, Weights::F32(w)) => xs.map(|x| dot(w, x)),
        (Isa::Portable, Weights::Bf16(w)) => {
            widen(w, widened);
            xs.map(|x| dot(widened, x))
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use burn::tensor::bf16;

    /// One kernel of `dot_rows`: `$lanes` floats per vector, two vectors per step. `$load_w`
    /// turns a pointer into the weight row into a vector of f32, `$to_f32` one weight into
    /// f32 (for the tail past the last full step); `$hsum` sums a vector's lanes.
    macro_rules! dot_rows_kernel {
        ($name:ident, $feature:literal, $elem:ty, $lanes:literal, $zero:ident, $add:ident, $fma:ident,
         $load_x:ident, |$p:ident| $load_w:expr, |$v:ident| $to_f32:expr, |$s:ident| $hsum:expr) => {
            /// # Safety
            /// The CPU has the features this is compiled for; every row of `xs` holds at least
            /// `w.len()` values.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn $name<const R: usize>(w: &[$elem], xs: [&[f32]; R]) -> [f32; R] {
                let body = w.len() / (2 * $lanes) * (2 * $lanes);
                let (mut lo, mut hi) = ([$zero(); R], [$zero(); R]);
                for i in (0..body).step_by(2 * $lanes) {
                    // SAFETY: i + 2 * lanes <= body <= the length of `w` and of every row.
                    unsafe {
                        let w0 = {
                            let $p = w.as_ptr().add(i);
                            $load_w
                        };
                        let w1 = {
                            let $p = w.as_ptr().add(i + $lanes);
                            $load_w
                        };
                        for r in 0..R {
                            lo[r] = $fma(w0, $load_x(xs[r].as_ptr().add(i)), lo[r]);
                            hi[r] = $fma(w1, $load_x(xs[r].as_ptr().add(i + $lanes)), hi[r]);
                        }
                    }
                }
                // A loop, not a closure over the accumulators: a closure makes LLVM keep
                // them in memory, stored on every step above.
                let mut out = [0f32; R];
                for r in 0..R {
                    let $s = $add(lo[r], hi[r]);
                    let tail: f32 = w[body..].iter().zip(&xs[r][body..]).map(|(&$v, x)| $to_f32 * x).sum();
                    out[r] = $hsum + tail;
                }
                out
            }
        };
    }

    dot_rows_kernel!(
        dot_rows_avx512_f32,
        "avx512f",
        f32,
        16,
        _mm512_setzero_ps,
        _mm512_add_ps,
        _mm512_fmadd_ps,
        _mm512_loadu_ps,
        |p| _mm512_loadu_ps(p),
        |v| v,
        |s| _mm512_reduce_add_ps(s)
    );
    // A bf16 is the top half of an f32: zero-extend to 32 bits and shift left by 16.
    dot_rows_kernel!(
        dot_rows_avx512_bf16,
        "avx512f",
        bf16,
        16,
        _mm512_setzero_ps,
        _mm512_add_ps,
        _mm512_fmadd_ps,
        _mm512_loadu_ps,
        |p| _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast())))),
        |v| v.to_f32(),
        |s| _mm512_reduce_add_ps(s)
    );
    dot_rows_kernel!(
        dot_rows_avx2_f32,
        "avx2,fma",
        f32,
        8,
        _mm256_setzero_ps,
        _mm256_add_ps,
        _mm256_fmadd_ps,
        _mm256_loadu_ps,
        |p| _mm256_loadu_ps(p),
        |v| v,
        |s| hsum_avx(s)
    );
    dot_rows_kernel!(
        dot_rows_avx2_bf16,
        "avx2,fma",
        bf16,
        8,
        _mm256_setzero_ps,
        _mm256_add_ps,
        _mm256_fmadd_ps,
        _mm256_loadu_ps,
        |p| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))),
        |v| v.to_f32(),
        |s| hsum_avx(s)
    );

    /// The sum of the 8 lanes of `v`.
    #[target_feature(enable = "avx2,fma")]
    fn hsum_avx(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
    }
}

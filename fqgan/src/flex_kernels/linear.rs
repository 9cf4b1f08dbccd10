//! `x @ weight^T + bias` for a few rows of `x` (decoding one token, with or without
//! guidance): every weight row read from memory once, and dotted with all rows of `x` while
//! it is in L1. Through gemm, a thin product runs its widest microkernel on mostly padding
//! and broadcasts each weight element on its own: FAR-B's tokens took 2.4x PyTorch's time.

use rayon::prelude::*;

use super::dot;

/// The most rows of `x` the kernel takes: each row is one more pass over the weight row (in
/// L1 by then), and beyond 8 gemm's blocked product is faster.
pub(crate) const MAX_ROWS: usize = 8;

/// Weight rows (outputs) per parallel task.
const OUTPUTS_PER_TASK: usize = 32;

/// `[rows, d_out]`: `x` `[rows, d_in]` times `weight` `[d_out, d_in]` transposed, plus `bias`.
pub(super) fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, rows: usize, d_in: usize) -> Vec<f32> {
    assert!((1..=MAX_ROWS).contains(&rows), "linear kernel: {rows} rows (at most {MAX_ROWS})");
    let d_out = weight.len() / d_in;
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    // Output-major [d_out, rows]: each task writes one contiguous block; transposed after.
    let mut by_output = vec![0f32; d_out * rows];
    by_output.par_chunks_mut(OUTPUTS_PER_TASK * rows).zip(weight.par_chunks(OUTPUTS_PER_TASK * d_in)).for_each(
        |(out, weights)| {
            super::vectorized(
                #[inline(always)]
                || {
                    for (out, w) in out.chunks_exact_mut(rows).zip(weights.chunks_exact(d_in)) {
                        // Rows in pairs; after the first pair the weight row is read from L1.
                        let mut pairs = out.chunks_exact_mut(2).zip(x.chunks_exact(2 * d_in));
                        for (out, pair) in pairs.by_ref() {
                            let (a, b) = pair.split_at(d_in);
                            [out[0], out[1]] = dot2(w, a, b, avx512);
                        }
                        if rows % 2 == 1 {
                            out[rows - 1] = dot(w, &x[(rows - 1) * d_in..]);
                        }
                    }
                },
            )
        },
    );
    let mut out = vec![0f32; rows * d_out];
    for (o, values) in by_output.chunks_exact(rows).enumerate() {
        for (r, &v) in values.iter().enumerate() {
            out[r * d_out + o] = v + bias.map_or(0.0, |b| b[o]);
        }
    }
    out
}

/// `[w . a, w . b]`, each weight vector loaded once for both rows (with guidance a token
/// is 2 rows: 18.7 GB/s from memory instead of 14.6 with two dot products, on 2 threads).
/// The portable loops do not vectorise with two sets of accumulators, so AVX-512 is spelled
/// out; other CPUs take two dot products.
#[inline(always)]
fn dot2(w: &[f32], a: &[f32], b: &[f32], avx512: bool) -> [f32; 2] {
    #[cfg(target_arch = "x86_64")]
    if avx512 {
        // SAFETY: the caller checked that the CPU has AVX-512F.
        return unsafe { dot2_avx512(w, a, b) };
    }
    let _ = avx512;
    [dot(w, a), dot(w, b)]
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot2_avx512(w: &[f32], a: &[f32], b: &[f32]) -> [f32; 2] {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_reduce_add_ps, _mm512_setzero_ps};
    assert!(a.len() >= w.len() && b.len() >= w.len(), "rows shorter than the weight row");
    let body = w.len() / 16 * 16;
    let (mut sum_a, mut sum_b) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for i in (0..body).step_by(16) {
        // SAFETY: i + 16 <= body, and all three slices hold at least `body` values.
        unsafe {
            let weights = _mm512_loadu_ps(w.as_ptr().add(i));
            sum_a = _mm512_fmadd_ps(weights, _mm512_loadu_ps(a.as_ptr().add(i)), sum_a);
            sum_b = _mm512_fmadd_ps(weights, _mm512_loadu_ps(b.as_ptr().add(i)), sum_b);
        }
    }
    let tail = |x: &[f32]| -> f32 { w[body..].iter().zip(&x[body..]).map(|(w, x)| w * x).sum() };
    [_mm512_reduce_add_ps(sum_a) + tail(a), _mm512_reduce_add_ps(sum_b) + tail(b)]
}

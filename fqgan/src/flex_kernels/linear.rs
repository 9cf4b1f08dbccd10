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
    // Output-major [d_out, rows]: each task writes one contiguous block; transposed after.
    let mut by_output = vec![0f32; d_out * rows];
    by_output.par_chunks_mut(OUTPUTS_PER_TASK * rows).zip(weight.par_chunks(OUTPUTS_PER_TASK * d_in)).for_each(
        |(out, weights)| {
            super::vectorized(
                #[inline(always)]
                || {
                    for (out, w) in out.chunks_exact_mut(rows).zip(weights.chunks_exact(d_in)) {
                        // After the first row, the weight row is read from L1.
                        for (out, x) in out.iter_mut().zip(x.chunks_exact(d_in)) {
                            *out = dot(w, x);
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

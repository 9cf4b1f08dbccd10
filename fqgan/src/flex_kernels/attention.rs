//! Unmasked scaled dot-product attention, `softmax(q k^T / √d) v`, with the (batch, head)
//! pairs in parallel. q, k and v are read in place through their strides (the heads split
//! out of a packed projection are views), and the result is written with the heads
//! interleaved, `[batch, n, heads, dv]`, so that merging them back is free. burn's generic
//! ops copy each view, and Flex's attention runs the pairs one after another.

use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::conv::{matmul, parallelism, reused, with_scratch, Operand, SharedMut};
use super::norm::exp;

/// A `[batch, heads, rows, cols]` operand in its buffer: element `(b, h, i, j)` at
/// `offset + b * strides[0] + h * strides[1] + i * strides[2] + j * strides[3]`.
#[derive(Clone, Copy)]
pub(super) struct Heads<'a> {
    pub values: &'a [f32],
    pub offset: usize,
    pub strides: [usize; 4],
    pub dims: [usize; 4],
}

impl<'a> Heads<'a> {
    /// A 4-dimensional f32 tensor with non-negative strides.
    pub fn of(t: &'a FlexTensor) -> Self {
        let layout = t.layout();
        Self {
            values: t.storage(),
            offset: layout.start_offset(),
            strides: std::array::from_fn(|i| layout.strides()[i] as usize),
            dims: layout.shape().dims(),
        }
    }

    /// Whether every element the dims and strides address lies in the buffer.
    pub fn in_bounds(&self) -> bool {
        let last = self.dims.iter().zip(&self.strides).map(|(&d, &s)| d.saturating_sub(1) * s).sum::<usize>();
        self.dims.iter().all(|&d| d > 0) && self.offset + last < self.values.len()
    }

    /// Head `h` of image `b` as a matrix (transposed: columns as rows).
    fn matrix(&self, b: usize, h: usize, transposed: bool) -> Operand {
        let (rows, cols) = (self.strides[2], self.strides[3]);
        let (row_stride, col_stride) = if transposed { (cols, rows) } else { (rows, cols) };
        let at = self.offset + b * self.strides[0] + h * self.strides[1];
        Operand { ptr: self.values[at..].as_ptr(), row_stride, col_stride }
    }
}

/// `softmax(q k^T * scale) v` for q `[b, h, n, d]`, k `[b, h, m, d]` and v `[b, h, m, dv]`,
/// all [`Heads::in_bounds`] with matching sizes: `[b, n, h, dv]` values.
pub(super) fn forward(q: Heads, k: Heads, v: Heads, scale: f32) -> Vec<f32> {
    let [batch, heads, n, _] = q.dims;
    let (m, d, dv) = (k.dims[2], q.dims[3], v.dims[3]);
    let len = batch * n * heads * dv;
    let mut out = Vec::<f32>::with_capacity(len);
    let out_ptr = SharedMut(out.spare_capacity_mut().as_mut_ptr().cast());
    let (per_job, parallelism) = parallelism(batch * heads);
    let run = |job: usize| {
        let (b, h) = (job / heads, job % heads);
        with_scratch(|scores| {
            let scores = reused(scores, n * m);
            let out_ptr = out_ptr;
            // SAFETY: the operands lie in their buffers (`in_bounds`) with the sizes given;
            // `scores` is this job's own [n, m], and the output rows of (b, h) are written by
            // this job only: dv values at stride heads * dv from b * n * heads * dv + h * dv.
            unsafe {
                matmul(
                    [n, m, d],
                    scores.as_mut_ptr(),
                    m,
                    false,
                    q.matrix(b, h, false),
                    k.matrix(b, h, true),
                    parallelism,
                );
                super::vectorized(
                    #[inline(always)]
                    || scores.chunks_exact_mut(m).for_each(|row| softmax(row, scale)),
                );
                let probabilities = Operand { ptr: scores.as_ptr(), row_stride: m, col_stride: 1 };
                let dst = out_ptr.0.add(b * n * heads * dv + h * dv);
                matmul([n, dv, m], dst, heads * dv, false, probabilities, v.matrix(b, h, false), parallelism);
            }
        })
    };
    if per_job {
        (0..batch * heads).into_par_iter().for_each(run);
    } else {
        (0..batch * heads).for_each(run);
    }
    // SAFETY: the jobs wrote every output row of every (image, head).
    unsafe { out.set_len(len) };
    out
}

/// `softmax(row * scale)` in place (`scale` > 0, so the largest score stays the largest).
/// The maximum and the sum run over independent lanes, so that both loops vectorise.
#[inline(always)]
fn softmax(row: &mut [f32], scale: f32) {
    const LANES: usize = 16;
    let lanes = |row: &[f32], init: f32, f: fn(f32, f32) -> f32| {
        let mut lanes = [init; LANES];
        let chunks = row.chunks_exact(LANES);
        let rest = chunks.remainder().iter().fold(init, |a, &b| f(a, b));
        for chunk in chunks {
            lanes.iter_mut().zip(chunk).for_each(|(lane, &v)| *lane = f(*lane, v));
        }
        lanes.into_iter().fold(rest, f)
    };
    let max = lanes(row, f32::NEG_INFINITY, f32::max);
    row.iter_mut().for_each(|v| *v = exp((*v - max) * scale));
    let inverse = 1.0 / lanes(row, 0.0, |a, b| a + b);
    row.iter_mut().for_each(|v| *v *= inverse);
}

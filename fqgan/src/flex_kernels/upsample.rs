//! Nearest-neighbour 2x upsampling of NCHW planes (each pixel into a 2x2 block) and its
//! backward (each 2x2 block of the gradient summed), one parallel pass each. burn's
//! reshape-expand-reshape walks the expanded view element by element, and its backward
//! sums over the expanded axes as strided reductions.

/// `[planes, 2h, 2w]` from `[planes, h, w]`.
pub(super) fn forward(input: &[f32], h: usize, w: usize) -> Vec<f32> {
    let (out, _) = super::zeroed_chunks(4 * input.len(), 4 * h * w, true, |index, out| {
        let plane = &input[index * h * w..][..h * w];
        for (rows, src) in out.chunks_mut(4 * w).zip(plane.chunks(w)) {
            let (top, bottom) = rows.split_at_mut(2 * w);
            for (pair, &v) in top.chunks_mut(2).zip(src) {
                pair.fill(v);
            }
            bottom.copy_from_slice(top);
        }
    });
    out
}

/// The gradient `[planes, h, w]` of [`forward`] given the output's, `[planes, 2h, 2w]`.
pub(super) fn backward(grad: &[f32], h: usize, w: usize) -> Vec<f32> {
    let (out, _) = super::zeroed_chunks(grad.len() / 4, h * w, true, |index, out| {
        let plane = &grad[index * 4 * h * w..][..4 * h * w];
        for (dst, rows) in out.chunks_mut(w).zip(plane.chunks(4 * w)) {
            let (top, bottom) = rows.split_at(2 * w);
            for ((d, t), b) in dst.iter_mut().zip(top.chunks(2)).zip(bottom.chunks(2)) {
                *d = t[0] + t[1] + b[0] + b[1];
            }
        }
    });
    out
}

//! The rotary position embedding of FAR's queries and keys in one parallel pass: the generic
//! version splits the interleaved pairs into strided views and broadcasts the table over
//! them, which Flex walks element by element (~10% of a FAR-B token at batch 1).

/// `x` `[b, s, h, d]` with each pair `(x[2i], x[2i+1])` at position `p` rotated by
/// `freqs[p, i] = (cos, sin)` (`freqs` `[s, d / 2, 2]`), as complex multiplication.
pub(super) fn forward(x: &[f32], freqs: &[f32], [_, s, h, d]: [usize; 4]) -> Vec<f32> {
    let (out, _) = super::zeroed_chunks(x.len(), h * d, true, |row, out| {
        let x = &x[row * h * d..][..h * d];
        let table = &freqs[(row % s) * d..][..d];
        for (out, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            for ((out, x), cs) in out.chunks_exact_mut(2).zip(x.chunks_exact(2)).zip(table.chunks_exact(2)) {
                // The generic version's operations, in its order.
                out[0] = x[0] * cs[0] - x[1] * cs[1];
                out[1] = x[1] * cs[0] + x[0] * cs[1];
            }
        }
    });
    out
}

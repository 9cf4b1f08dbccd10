//! 3x3 stride-1 "same" convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin and
//! Gray, 2015): each 2x2 block of output pixels comes from a 4x4 block of input through 16
//! products instead of 36, so the gemms do 2.25x fewer multiply-adds. Per job (a run of
//! tile rows) the input tiles are transformed to `V [16, ci, tiles]`, each of the 16
//! transformed filters `U [16, co, ci]` multiplies its slice (`M[e] = U[e] V[e]`), and the
//! output transform folds `M` back into 2x2 pixels. The transforms only add and halve, so
//! the rounding stays that of a direct convolution within a few ulps.
//!
//! Inference and the training forward take it, and so do both gradients of such a
//! convolution: the input gradient is itself one (the output gradient convolved with the
//! flipped filters, their input and output channels swapped), and the weight gradient runs
//! the transforms' adjoints around 16 products summed over the tiles.

use rayon::prelude::*;

use super::conv::{matmul, parallelism, reused, sum_over_jobs, with_scratch, ConvShape, Operand, SharedMut};

/// Values of a transformed 4x4 tile (one per gemm).
const TAPS: usize = 16;

/// Values of `V` and `M` together per job (1 MB): near the size of a core's L2, where the
/// transforms and gemm pass them to each other. Measured on `[16, 32, 64, 64]`: 2^21 took
/// 9.2 ms, 2^19 7.6 ms, 2^18 6.0 ms.
const JOB_VALUES: usize = 1 << 18;

/// Fewest tiles per job: gemm's microkernel spans 64 of them (AVX-512), and below this the
/// direct convolution is as fast.
const MIN_TILES: usize = 64;

/// The most tiles a job of `s` takes for its `V` and `M` to stay within `JOB_VALUES`, and
/// never fewer than `MIN_TILES`.
fn budget_tiles(s: &ConvShape) -> usize {
    (JOB_VALUES / (TAPS * (s.ci + s.co))).max(MIN_TILES)
}

/// Whether `s` is a convolution this kernel computes, and one it is faster for: 3x3 with
/// padding 1 and stride 1 keeping the size, with enough channels that the 16 small gemms run
/// at speed and enough tiles per image to fill their microkernel.
pub(super) fn applies(s: &ConvShape) -> bool {
    let g = &s.geometry;
    // Per image, not per batch: an image's result must not depend on what it is batched with.
    let tiles = s.h.div_ceil(2) * s.w.div_ceil(2);
    s.kh == 3
        && s.kw == 3
        && g.stride == 1
        && g.pad_top == 1
        && g.pad_left == 1
        && g.out_h == s.h
        && g.out_w == s.w
        && s.ci >= 16
        && s.co >= 16
        && tiles >= MIN_TILES
}

/// The filters `weight [co, ci, 3, 3]` as `G g G^T`, laid out `[co, 16, ci]`: filter `e` of
/// the 16 is the `[co, ci]` matrix at offset `e * ci`, rows `16 * ci` apart.
fn transform_weight(weight: &[f32], co: usize, ci: usize) -> Vec<f32> {
    let mut u = vec![0f32; co * TAPS * ci];
    u.par_chunks_mut(TAPS * ci).zip(weight.par_chunks(9 * ci)).for_each(|(u, filters)| {
        for (c, g) in filters.chunks_exact(9).enumerate() {
            // G g: rows g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2 of the 3x3 filter.
            let mut t = [[0f32; 3]; 4];
            for j in 0..3 {
                let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
                t[0][j] = g0;
                t[1][j] = (g0 + g1 + g2) * 0.5;
                t[2][j] = (g0 - g1 + g2) * 0.5;
                t[3][j] = g2;
            }
            for (i, [t0, t1, t2]) in t.into_iter().enumerate() {
                let row = [t0, (t0 + t1 + t2) * 0.5, (t0 - t1 + t2) * 0.5, t2];
                for (j, value) in row.into_iter().enumerate() {
                    u[(i * 4 + j) * ci + c] = value;
                }
            }
        }
    });
    u
}

/// Tile rows `rows` of the whole batch (image `b`'s tile row `ty` is `b * tile_h + ty`).
///
/// In `V` and `M` a tile row takes `stride` = `tile_w + 1` columns: the extra one holds
/// values that are computed and never used, so that each transform step is one loop over
/// all of a job's tiles instead of one short loop per tile row.
struct Job {
    rows: std::ops::Range<usize>,
    tile_w: usize,
    tile_h: usize,
}

impl Job {
    fn stride(&self) -> usize {
        self.tile_w + 1
    }

    fn tiles(&self) -> usize {
        self.rows.len() * self.stride()
    }

    /// The job's tile rows in each image it spans: (image, its tile rows there, the first
    /// one's index among the job's rows).
    fn segments(&self) -> impl Iterator<Item = (usize, std::ops::Range<usize>, usize)> + '_ {
        let th = self.tile_h;
        (self.rows.start / th..=(self.rows.end - 1) / th).map(move |b| {
            let (start, end) = (self.rows.start.max(b * th), self.rows.end.min((b + 1) * th));
            (b, start - b * th..end - b * th, start - self.rows.start)
        })
    }
}

/// `dst = a + sign * b`, elementwise (`sign` is 1 or -1, so the product is exact).
#[inline(always)]
fn combine(dst: &mut [f32], a: &[f32], b: &[f32], sign: f32) {
    dst.iter_mut().zip(a).zip(b).for_each(|((d, a), b)| *d = a + sign * b);
}

/// `dst = a + sign_b * b + sign_c * c + offset`, elementwise.
#[inline(always)]
fn combine3(dst: &mut [f32], [a, b, c]: [&[f32]; 3], [sign_b, sign_c]: [f32; 2], offset: f32) {
    dst.iter_mut().zip(a).zip(b).zip(c).for_each(|(((d, a), b), c)| *d = a + sign_b * b + sign_c * c + offset);
}

/// `B^T d B` of every input tile of `job`, written to `v [16, ci, tiles]`.
///
/// The tile at (ty, tx) reads input rows 2ty - 1 ..= 2ty + 2 and columns 2tx - 1 ..= 2tx + 2.
/// The input rows are first split by the parity of row and column (`even` / `odd` columns,
/// even rows before odd ones, `stride` values per row), which turns both steps into shifted
/// whole-array operations.
#[inline(always)]
fn transform_input(input: &[f32], s: &ConvShape, job: &Job, v: &mut [f32]) {
    let (stride, tiles) = (job.stride(), job.tiles());
    // Input rows per parity: one more than the tile rows.
    let most = (job.rows.len() + 1) * stride;
    // Column 2k - 1 in even[k], column 2k in odd[k] (zeros outside the image); the one
    // extra value lets the last row read its right neighbour.
    let (mut even, mut odd) = (vec![0f32; 2 * most + 1], vec![0f32; 2 * most + 1]);
    // `d B`, the row step, of every input row: four arrays laid out as even / odd.
    let mut row_t = vec![0f32; 4 * 2 * most];
    for c in 0..s.ci {
        for (b, ty, first) in job.segments() {
            let plane = &input[(b * s.ci + c) * s.h * s.w..][..s.h * s.w];
            let per_parity = ty.len() + 1;
            let len = 2 * per_parity * stride;
            for p in 0..2 * per_parity {
                let at = (p % 2 * per_parity + p / 2) * stride;
                let (even, odd) = (&mut even[at..at + stride], &mut odd[at..at + stride]);
                // Values outside the image are never written but by this fill, so stay 0.
                let Some(y) = (2 * ty.start + p).checked_sub(1).filter(|&y| y < s.h) else {
                    even.fill(0.0);
                    odd.fill(0.0);
                    continue;
                };
                let pairs = plane[y * s.w..][..s.w].chunks_exact(2);
                if let [last] = pairs.remainder() {
                    odd[s.w / 2] = *last;
                }
                for ((pair, odd), even) in pairs.zip(odd.iter_mut()).zip(&mut even[1..]) {
                    (*odd, *even) = (pair[0], pair[1]);
                }
            }
            // d B: columns d0 - d2, d1 + d2, d2 - d1, d1 - d3 with d0..d3 = even[k], odd[k],
            // even[k + 1], odd[k + 1].
            let (d0, d1, d2, d3) = (&even[..len], &odd[..len], &even[1..=len], &odd[1..=len]);
            let mut t = row_t.chunks_exact_mut(len);
            let mut next = || t.next().expect("four row arrays");
            combine(next(), d0, d2, -1.0);
            combine(next(), d1, d2, 1.0);
            combine(next(), d2, d1, -1.0);
            combine(next(), d1, d3, -1.0);
            // B^T on the rows: tile row r reads input rows 2r .. 2r + 3 (counted from the
            // segment's first), even row r, odd row r, even row r + 1, odd row r + 1.
            let n = ty.len() * stride;
            for (j, t) in row_t.chunks_exact(len).take(4).enumerate() {
                let (even_rows, odd_rows) = t.split_at(per_parity * stride);
                let (r0, r1) = (&even_rows[..n], &odd_rows[..n]);
                let (r2, r3) = (&even_rows[stride..stride + n], &odd_rows[stride..stride + n]);
                let at = |i: usize| ((i * 4 + j) * s.ci + c) * tiles + first * stride;
                combine(&mut v[at(0)..][..n], r0, r2, -1.0);
                combine(&mut v[at(1)..][..n], r1, r2, 1.0);
                combine(&mut v[at(2)..][..n], r2, r1, -1.0);
                combine(&mut v[at(3)..][..n], r1, r3, -1.0);
            }
        }
    }
}

/// `A^T m A` of every product tile of `job` in `m [16, co, tiles]`, plus the bias, written to
/// the output pixels of its tile rows.
///
/// # Safety
/// `out` must hold `[batch, co, h, w]`; no other thread may write this job's tile rows.
#[inline(always)]
unsafe fn transform_output(m: &[f32], bias: Option<&[f32]>, s: &ConvShape, job: &Job, out: SharedMut) {
    let (stride, tiles, tile_w) = (job.stride(), job.tiles(), job.tile_w);
    // A^T m of each column j: [j][s0 = m0 + m1 + m2, s1 = m1 - m2 - m3][tile].
    let mut column_t = vec![0f32; 8 * tiles];
    // Then (A^T m) A: [output row a][left, right pixel][tile].
    let mut pixels = vec![0f32; 4 * tiles];
    for o in 0..s.co {
        let bias = bias.map_or(0.0, |b| b[o]);
        for (b, ty, first) in job.segments() {
            let n = ty.len() * stride;
            let product = |e: usize| &m[(e * s.co + o) * tiles + first * stride..][..n];
            for (j, column) in column_t.chunks_exact_mut(2 * n).take(4).enumerate() {
                let (s0, s1) = column.split_at_mut(n);
                combine3(s0, [product(j), product(4 + j), product(8 + j)], [1.0, 1.0], 0.0);
                combine3(s1, [product(4 + j), product(8 + j), product(12 + j)], [-1.0, -1.0], 0.0);
            }
            let column = |j: usize, a: usize| &column_t[(2 * j + a) * n..][..n];
            for (a, row_pixels) in pixels.chunks_exact_mut(2 * n).take(2).enumerate() {
                let (left, right) = row_pixels.split_at_mut(n);
                combine3(left, [column(0, a), column(1, a), column(2, a)], [1.0, 1.0], bias);
                combine3(right, [column(1, a), column(2, a), column(3, a)], [-1.0, -1.0], bias);
            }
            for (r, tile_row) in ty.enumerate() {
                for a in 0..2 {
                    let y = 2 * tile_row + a;
                    if y >= s.h {
                        break;
                    }
                    let left = &pixels[2 * a * n + r * stride..][..tile_w];
                    let right = &pixels[(2 * a + 1) * n + r * stride..][..tile_w];
                    // SAFETY: row y of channel o of image b lies in `out` and in this job's
                    // tile rows.
                    let row =
                        unsafe { std::slice::from_raw_parts_mut(out.0.add(((b * s.co + o) * s.h + y) * s.w), s.w) };
                    let mut pairs = row.chunks_exact_mut(2);
                    for ((pair, l), r) in pairs.by_ref().zip(left).zip(right) {
                        (pair[0], pair[1]) = (*l, *r);
                    }
                    if let [last] = pairs.into_remainder() {
                        *last = left[tile_w - 1];
                    }
                }
            }
        }
    }
}

/// The convolution `[batch, co, h, w]` of `input` with `weight` (plus `bias`); `s` must
/// satisfy [`applies`].
pub(super) fn forward(input: &[f32], weight: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    let (tile_h, tile_w) = (s.h.div_ceil(2), s.w.div_ceil(2));
    let all_rows = s.batch * tile_h;
    // Tile rows per job: within the scratch budget, and split for every thread while each
    // job keeps MIN_TILES tiles.
    let threads = rayon::current_num_threads();
    let budget = budget_tiles(s);
    let shared = (all_rows * tile_w / (2 * threads)).max(MIN_TILES);
    let rows_per_job = (budget.min(shared) / (tile_w + 1)).clamp(1, all_rows);
    let jobs = all_rows.div_ceil(rows_per_job);
    let (per_job, parallelism) = parallelism(jobs);
    let u = transform_weight(weight, s.co, s.ci);
    let len = s.batch * s.co * s.h * s.w;
    let mut out = Vec::<f32>::with_capacity(len);
    let out_ptr = SharedMut(out.spare_capacity_mut().as_mut_ptr().cast());
    let run = |index: usize| {
        let first = index * rows_per_job;
        let job = Job { rows: first..(first + rows_per_job).min(all_rows), tile_w, tile_h };
        let tiles = job.tiles();
        with_scratch(|v| {
            with_scratch(|m| {
                let v = reused(v, TAPS * s.ci * tiles);
                super::vectorized(
                    #[inline(always)]
                    || transform_input(input, s, &job, v),
                );
                let m = reused(m, TAPS * s.co * tiles);
                for e in 0..TAPS {
                    // SAFETY: m[e] is [co, tiles] of this job's own scratch; u[e] is [co, ci]
                    // (rows 16 ci apart) and v[e] [ci, tiles], as the sizes say.
                    unsafe {
                        matmul(
                            [s.co, tiles, s.ci],
                            m[e * s.co * tiles..].as_mut_ptr(),
                            tiles,
                            false,
                            Operand { ptr: u[e * s.ci..].as_ptr(), row_stride: TAPS * s.ci, col_stride: 1 },
                            Operand { ptr: v[e * s.ci * tiles..].as_ptr(), row_stride: tiles, col_stride: 1 },
                            parallelism,
                        );
                    }
                }
                // SAFETY: `out` has room for [batch, co, h, w]; jobs cover disjoint tile rows.
                super::vectorized(
                    #[inline(always)]
                    || unsafe { transform_output(m, bias, s, &job, out_ptr) },
                );
            })
        })
    };
    if per_job {
        (0..jobs).into_par_iter().for_each(run);
    } else {
        (0..jobs).for_each(run);
    }
    // SAFETY: the jobs' tile rows cover every output row of every channel and image.
    unsafe { out.set_len(len) };
    out
}

/// The input gradient `[batch, ci, h, w]` of the convolution `s` (which must satisfy
/// [`applies`]) from its output gradient `grad`: a "same" 3x3 convolution of `grad` with
/// `weight` rotated by 180 degrees and transposed to `[ci, co, 3, 3]`.
pub(super) fn backward_input(weight: &[f32], grad: &[f32], s: &ConvShape) -> Vec<f32> {
    let mut flipped = vec![0f32; weight.len()];
    for (o, filters) in weight.chunks_exact(9 * s.ci).enumerate() {
        for (c, g) in filters.chunks_exact(9).enumerate() {
            let dst = &mut flipped[(c * s.co + o) * 9..][..9];
            dst.iter_mut().zip(g.iter().rev()).for_each(|(d, g)| *d = *g);
        }
    }
    let transposed = ConvShape { ci: s.co, co: s.ci, ..*s };
    forward(grad, &flipped, None, &transposed)
}

/// The weight gradient `[co, ci, 3, 3]` of the convolution `s` (which must satisfy
/// [`applies`]) from the channels-last input `[batch, h, w, ci]` and output gradient
/// `[batch, h, w, co]`.
///
/// The forward's output is `A^T (U ⊙ V) A` per tile, with `U = G g G^T`; so per tile the
/// output gradient's `A dy A^T` (`dM`, the adjoint of the output transform) times the
/// input's `V` gives `dU[e] = sum over tiles of dM[e]^T V[e]` (16 gemms, `[co, tiles]` by
/// `[tiles, ci]`), and `G^T dU G` (the adjoint of the filter transform) the 3x3 filters.
/// The tiles are laid out channels innermost, `[16, tiles, channels]`, the order gemm reads
/// both operands in without a gather.
pub(super) fn backward_weight(input_cl: &[f32], grad_cl: &[f32], s: &ConvShape) -> Vec<f32> {
    let all_tiles = s.batch * s.h.div_ceil(2) * s.w.div_ceil(2);
    let per_job = budget_tiles(s);
    let jobs = all_tiles.div_ceil(per_job);
    let (parallel, parallelism) = parallelism(jobs);
    let accumulate = |mut du: Vec<f32>, job: usize| {
        let tiles = job * per_job..((job + 1) * per_job).min(all_tiles);
        let n = tiles.len();
        with_scratch(|v| {
            with_scratch(|dm| {
                let (v, dm) = (reused(v, TAPS * n * s.ci), reused(dm, TAPS * n * s.co));
                super::vectorized(
                    #[inline(always)]
                    || transform_tiles_channels_last(input_cl, grad_cl, s, tiles, v, dm),
                );
                for e in 0..TAPS {
                    // SAFETY: du[e] is [co, ci] of this fold's own sum; dm[e] is [tiles, co]
                    // (read transposed) and v[e] [tiles, ci], as the sizes say.
                    unsafe {
                        matmul(
                            [s.co, s.ci, n],
                            du[e * s.co * s.ci..].as_mut_ptr(),
                            s.ci,
                            true,
                            Operand { ptr: dm[e * n * s.co..].as_ptr(), row_stride: 1, col_stride: s.co },
                            Operand { ptr: v[e * n * s.ci..].as_ptr(), row_stride: s.ci, col_stride: 1 },
                            parallelism,
                        );
                    }
                }
            })
        });
        du
    };
    let du = sum_over_jobs(jobs, parallel, TAPS * s.co * s.ci, accumulate);
    filter_gradient(&du, s.co, s.ci)
}

/// Channels per step of the channels-last transforms: one AVX register. A tile's 16 values
/// of one step stay in registers through both halves of its transform.
const LANES: usize = 8;
type Lanes = [f32; LANES];

#[inline(always)]
fn lanes(f: impl Fn(usize) -> f32) -> Lanes {
    std::array::from_fn(f)
}

/// `B^T x` of four values per lane (the columns of `B^T d B`, and its rows).
#[inline(always)]
fn input_step([x0, x1, x2, x3]: [Lanes; 4]) -> [Lanes; 4] {
    [lanes(|i| x0[i] - x2[i]), lanes(|i| x1[i] + x2[i]), lanes(|i| x2[i] - x1[i]), lanes(|i| x1[i] - x3[i])]
}

/// `A x` of two values per lane: the adjoint of the output transform's `A^T`, rows 1 1 1 0
/// and 0 1 -1 -1.
#[inline(always)]
fn gradient_step([x0, x1]: [Lanes; 2]) -> [Lanes; 4] {
    [x0, lanes(|i| x0[i] + x1[i]), lanes(|i| x0[i] - x1[i]), lanes(|i| -x1[i])]
}

/// `len` (up to `LANES`) values of `values` from `at` (`None`: outside the image, zeros),
/// the rest 0.
#[inline(always)]
fn load(values: &[f32], at: Option<usize>, len: usize) -> Lanes {
    match at {
        Some(at) if len == LANES => values[at..at + LANES].try_into().expect("LANES values"),
        Some(at) => {
            let mut out = [0f32; LANES];
            out[..len].copy_from_slice(&values[at..at + len]);
            out
        }
        None => [0f32; LANES],
    }
}

/// The first `len` (up to `LANES`) of `value` into `values` at `at`.
#[inline(always)]
fn store(values: &mut [f32], at: usize, len: usize, value: &Lanes) {
    match len == LANES {
        true => *<&mut Lanes>::try_from(&mut values[at..at + LANES]).expect("LANES values") = *value,
        false => values[at..at + len].copy_from_slice(&value[..len]),
    }
}

/// For each tile of `tiles` (numbered over the batch, row by row), the input's `B^T d B` into
/// `v [16, tiles, ci]` and the output gradient's `A dy A^T` into `dm [16, tiles, co]`, from
/// channels-last images; pixels outside the image count as zeros.
#[inline(always)]
fn transform_tiles_channels_last(
    input_cl: &[f32],
    grad_cl: &[f32],
    s: &ConvShape,
    tiles: std::ops::Range<usize>,
    v: &mut [f32],
    dm: &mut [f32],
) {
    let (ci, co, n) = (s.ci, s.co, tiles.len());
    let (tile_h, tile_w) = (s.h.div_ceil(2), s.w.div_ceil(2));
    for (l, tile) in tiles.enumerate() {
        let (b, ty, tx) = (tile / (tile_h * tile_w), tile / tile_w % tile_h, tile % tile_w);
        // The pixel at row y, column x of image b, if inside it (below 0 wraps to outside).
        let pixel = |y: usize, x: usize| (y < s.h && x < s.w).then(|| (b * s.h + y) * s.w + x);
        // Input rows 2ty - 1 ..= 2ty + 2 by columns 2tx - 1 ..= 2tx + 2.
        let d: [[Option<usize>; 4]; 4] = std::array::from_fn(|i| {
            std::array::from_fn(|j| pixel((2 * ty + i).wrapping_sub(1), (2 * tx + j).wrapping_sub(1)))
        });
        for c0 in (0..ci).step_by(LANES) {
            let len = LANES.min(ci - c0);
            let value = |p: Option<usize>| load(input_cl, p.map(|p| p * ci + c0), len);
            let mut rows = [[[0f32; LANES]; 4]; 4];
            for (row, d) in rows.iter_mut().zip(&d) {
                *row = input_step([value(d[0]), value(d[1]), value(d[2]), value(d[3])]);
            }
            for j in 0..4 {
                let column = input_step([rows[0][j], rows[1][j], rows[2][j], rows[3][j]]);
                for (i, value) in column.iter().enumerate() {
                    store(v, ((i * 4 + j) * n + l) * ci + c0, len, value);
                }
            }
        }
        // Output gradient rows 2ty, 2ty + 1 by columns 2tx, 2tx + 1.
        let dy: [[Option<usize>; 2]; 2] =
            std::array::from_fn(|a| std::array::from_fn(|c| pixel(2 * ty + a, 2 * tx + c)));
        for c0 in (0..co).step_by(LANES) {
            let len = LANES.min(co - c0);
            let g = |a: usize, c: usize| load(grad_cl, dy[a][c].map(|p| p * co + c0), len);
            let columns = [gradient_step([g(0, 0), g(1, 0)]), gradient_step([g(0, 1), g(1, 1)])];
            for i in 0..4 {
                for (j, value) in gradient_step([columns[0][i], columns[1][i]]).iter().enumerate() {
                    store(dm, ((i * 4 + j) * n + l) * co + c0, len, value);
                }
            }
        }
    }
}

/// `G^T dU G` for every filter: `du [16, co, ci]` folded into `[co, ci, 3, 3]`.
fn filter_gradient(du: &[f32], co: usize, ci: usize) -> Vec<f32> {
    // G^T on four values: the adjoint of g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2.
    let adjoint = |u: [f32; 4]| [u[0] + 0.5 * (u[1] + u[2]), 0.5 * (u[1] - u[2]), 0.5 * (u[1] + u[2]) + u[3]];
    let mut grad = vec![0f32; co * ci * 9];
    for (filter, g) in grad.chunks_exact_mut(9).enumerate() {
        let u = |i: usize, j: usize| du[(i * 4 + j) * co * ci + filter];
        let columns: [[f32; 3]; 4] = std::array::from_fn(|j| adjoint(std::array::from_fn(|i| u(i, j))));
        for k in 0..3 {
            let row = adjoint(std::array::from_fn(|j| columns[j][k]));
            g[k * 3..k * 3 + 3].copy_from_slice(&row);
        }
    }
    grad
}

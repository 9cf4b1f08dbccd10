//! 2D convolution on contiguous NCHW f32 slices, forward and backward, as im2col tiles of
//! output rows times one gemm each. Unlike Flex's own convolution it reads and writes NCHW,
//! so no layout conversions run around the gemm, and the weight is used in place in PyTorch's
//! layout (its rows already are the patches' order). Groups 1, dilation 1.

use std::cell::RefCell;

use rayon::prelude::*;

/// The geometry of one 2D convolution: stride, zero padding before the first row / column,
/// and the output size (padding after the last row / column follows from it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeometry {
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

/// Output pixels per im2col tile: large enough for gemm to run at speed, small enough that a
/// tile of 3x3 patches over 512 channels (4608 rows) stays near 20 MB.
const TILE_PIXELS: usize = 1024;

/// Every size of one convolution: input `[batch, ci, h, w]`, weight `[co, ci, kh, kw]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvShape {
    pub batch: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub kh: usize,
    pub kw: usize,
    pub geometry: ConvGeometry,
}

impl ConvShape {
    pub fn new(input: &[usize], weight: &[usize], geometry: ConvGeometry) -> Self {
        let [batch, ci, h, w] = [input[0], input[1], input[2], input[3]];
        Self { batch, ci, h, w, co: weight[0], kh: weight[2], kw: weight[3], geometry }
    }

    /// Rows of the patch matrix (and columns of the weight matrix).
    fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }

    fn plane_in(&self) -> usize {
        self.h * self.w
    }

    fn plane_out(&self) -> usize {
        self.geometry.out_h * self.geometry.out_w
    }

    pub fn output_dims(&self) -> [usize; 4] {
        [self.batch, self.co, self.geometry.out_h, self.geometry.out_w]
    }

    /// A 1x1 convolution without stride or padding: the image itself is the patch matrix.
    fn pointwise(&self) -> bool {
        let g = &self.geometry;
        self.kh == 1
            && self.kw == 1
            && g.stride == 1
            && g.pad_top == 0
            && g.pad_left == 0
            && g.out_h == self.h
            && g.out_w == self.w
    }

    fn tile_rows(&self) -> usize {
        let g = &self.geometry;
        TILE_PIXELS.div_ceil(g.out_w.max(1)).clamp(1, g.out_h.max(1))
    }

    fn tiles_per_image(&self) -> usize {
        self.geometry.out_h.div_ceil(self.tile_rows())
    }

    /// Tile `tile` of an image: its first output row and its number of rows.
    fn tile(&self, tile: usize) -> (usize, usize) {
        let r0 = tile * self.tile_rows();
        (r0, self.tile_rows().min(self.geometry.out_h - r0))
    }

    /// The `[k, rows * out_w]` patch matrix of output rows `r0..r0 + rows` of one image, with
    /// its row stride: the image itself for pointwise convolutions, else an im2col copy in
    /// `scratch`.
    fn patches<'a>(&self, image: &'a [f32], r0: usize, rows: usize, scratch: &'a mut Vec<f32>) -> (&'a [f32], usize) {
        if self.pointwise() {
            return (&image[r0 * self.w..], self.plane_in());
        }
        let pixels = rows * self.geometry.out_w;
        let col = reused(scratch, self.k() * pixels);
        if self.same_width() {
            for (patch_row, dst) in col.chunks_exact_mut(pixels).enumerate() {
                let block = self.same_width_block(patch_row, r0, rows);
                dst[..block.rows.start * self.w].fill(0.0);
                dst[block.rows.end * self.w..].fill(0.0);
                dst[block.col.clone()].copy_from_slice(&image[block.image.clone()]);
                block.for_each_gap(self.w, |gap| dst[gap].fill(0.0));
            }
            return (col, pixels);
        }
        let stride = self.geometry.stride;
        self.for_each_run(r0, rows, |col_offset, image_offset, len| {
            let dst = &mut col[col_offset..col_offset + len];
            match image_offset {
                None => dst.fill(0.0),
                Some(at) if stride == 1 => dst.copy_from_slice(&image[at..at + len]),
                Some(at) => dst.iter_mut().zip(image[at..].iter().step_by(stride)).for_each(|(d, s)| *d = *s),
            }
        });
        (col, pixels)
    }

    /// The patches of output rows `r0..r0 + rows` of one channels-last image `[h, w, ci]` as
    /// the rows of a `[rows * out_w, kh * kw * ci]` matrix (taps outer, channels inner): the
    /// image itself for pointwise convolutions, else a copy in `scratch` with zeros outside
    /// the image.
    fn patches_channels_last<'a>(
        &self,
        image: &'a [f32],
        r0: usize,
        rows: usize,
        scratch: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        let (g, k) = (&self.geometry, self.k());
        if self.pointwise() {
            return &image[r0 * self.w * self.ci..][..rows * self.w * self.ci];
        }
        let col = reused(scratch, rows * g.out_w * k);
        for (pixel, patch) in col.chunks_exact_mut(k).enumerate() {
            let (r, oc) = (r0 + pixel / g.out_w, pixel % g.out_w);
            for (tap, dst) in patch.chunks_exact_mut(self.ci).enumerate() {
                let (i, j) = (tap / self.kw, tap % self.kw);
                let ih = (r * g.stride + i).checked_sub(g.pad_top).filter(|&ih| ih < self.h);
                let iw = (oc * g.stride + j).checked_sub(g.pad_left).filter(|&iw| iw < self.w);
                match ih.zip(iw) {
                    Some((ih, iw)) => dst.copy_from_slice(&image[(ih * self.w + iw) * self.ci..][..self.ci]),
                    None => dst.fill(0.0),
                }
            }
        }
        col
    }

    /// Adds a `[k, rows * out_w]` patch-matrix gradient back onto the image gradient it was
    /// gathered from (the transpose of `patches`).
    fn scatter_patches(&self, col: &mut [f32], image: &mut [f32], r0: usize, rows: usize) {
        if self.same_width() {
            let pixels = rows * self.geometry.out_w;
            for (patch_row, src) in col.chunks_exact_mut(pixels).enumerate() {
                // The gaps hold the gradients of padding: they must not reach the neighbours.
                let block = self.same_width_block(patch_row, r0, rows);
                block.for_each_gap(self.w, |gap| src[gap].fill(0.0));
                image[block.image].iter_mut().zip(&src[block.col]).for_each(|(d, s)| *d += *s);
            }
            return;
        }
        let stride = self.geometry.stride;
        self.for_each_run(r0, rows, |col_offset, image_offset, len| {
            let src = &col[col_offset..col_offset + len];
            match image_offset {
                None => {}
                Some(at) if stride == 1 => image[at..at + len].iter_mut().zip(src).for_each(|(d, s)| *d += *s),
                Some(at) => image[at..].iter_mut().step_by(stride).zip(src).for_each(|(d, s)| *d += *s),
            }
        });
    }

    /// Stride-1 convolutions with output rows as wide as the input's (3x3 "same"): the runs
    /// of consecutive output rows of one patch row lie back to back in the image too, so a
    /// patch row is one copy, after which the values that came from outside the image (a
    /// column at the left or right edge of every row) are zeroed. `for_each_run` would make
    /// three calls per output row instead, and cost more than the copying.
    fn same_width(&self) -> bool {
        self.geometry.stride == 1 && self.geometry.out_w == self.w && !self.pointwise()
    }

    /// The copy of patch row `(c, i, j)` of the tile at output row `r0` (see `same_width`).
    fn same_width_block(&self, patch_row: usize, r0: usize, rows: usize) -> SameWidthBlock {
        let g = &self.geometry;
        let (c, i, j) = (patch_row / (self.kh * self.kw), patch_row / self.kw % self.kh, patch_row % self.kw);
        // Output row r reads input row r0 + r + i - pad_top: these rows lie in the image.
        let to_row = |input_row: usize| (input_row + g.pad_top).saturating_sub(r0 + i).min(rows);
        let valid = to_row(0)..to_row(self.h);
        let shift = j as isize - g.pad_left as isize;
        let plane = c * self.plane_in();
        let first = (r0 + valid.start + i).saturating_sub(g.pad_top) * self.w;
        // The block's image range, clipped to channel c's plane (what falls off it is a gap).
        let start = (plane + first) as isize + shift;
        let end = start + ((valid.end - valid.start) * self.w) as isize;
        let (lo, hi) = (start.max(plane as isize), end.min((plane + self.plane_in()) as isize));
        let col_start = valid.start * self.w + (lo - start) as usize;
        let len = hi.saturating_sub(lo).max(0) as usize;
        SameWidthBlock {
            rows: valid,
            image: lo.max(0) as usize..lo.max(0) as usize + len,
            col: col_start..col_start + len,
            shift,
        }
    }

    /// Calls `f(patch-matrix offset, image offset, length)` for runs that cover the tile's
    /// patch matrix: patch row `(c, i, j)`, output row `r` reads input row
    /// `r * stride + i - pad_top` of channel c from column `first * stride + j - pad_left` on,
    /// every `stride`-th pixel; outside the image (image offset `None`) it holds zeros.
    fn for_each_run(&self, r0: usize, rows: usize, mut f: impl FnMut(usize, Option<usize>, usize)) {
        let g = &self.geometry;
        let pixels = rows * g.out_w;
        for patch_row in 0..self.k() {
            let (c, i, j) = (patch_row / (self.kh * self.kw), patch_row / self.kw % self.kh, patch_row % self.kw);
            // Output columns whose input column `oc * stride + j - pad_left` lies in 0..w.
            let first = g.pad_left.saturating_sub(j).div_ceil(g.stride);
            let end =
                if self.w + g.pad_left > j { ((self.w + g.pad_left - j - 1) / g.stride + 1).min(g.out_w) } else { 0 };
            for r in 0..rows {
                let row = patch_row * pixels + r * g.out_w;
                let ih = ((r0 + r) * g.stride + i).checked_sub(g.pad_top).filter(|&ih| ih < self.h);
                match ih {
                    Some(ih) if first < end => {
                        let image_offset = (c * self.h + ih) * self.w + first * g.stride + j - g.pad_left;
                        f(row, None, first);
                        f(row + first, Some(image_offset), end - first);
                        f(row + end, None, g.out_w - end);
                    }
                    _ => f(row, None, g.out_w),
                }
            }
        }
    }
}

/// One patch row's copy of a [`ConvShape::same_width`] tile: output `rows` whose input row
/// is in the image, the image values they read, where those go in the patch row, and the
/// column shift `j - pad_left`.
struct SameWidthBlock {
    rows: std::ops::Range<usize>,
    image: std::ops::Range<usize>,
    col: std::ops::Range<usize>,
    shift: isize,
}

impl SameWidthBlock {
    /// Calls `f` with the patch-row ranges of the block's rows whose values lie left or right
    /// of the image (`|shift|` columns at one edge of each row).
    fn for_each_gap(&self, w: usize, mut f: impl FnMut(std::ops::Range<usize>)) {
        let width = self.shift.unsigned_abs().min(w);
        if width == 0 {
            return;
        }
        for row in self.rows.clone() {
            match self.shift < 0 {
                true => f(row * w..row * w + width),
                false => f((row + 1) * w - width..(row + 1) * w),
            }
        }
    }
}

/// Runs `f` with a scratch buffer of this thread's, kept for the next call: each call may
/// grow it, and it is never freed (the pool's threads keep their largest im2col tile, up to
/// ~20 MB for the official models). Allocating one per tile cost a page fault per 4 KiB each
/// time, and a zeroing pass. A stack, not one buffer, since a thread waiting inside gemm may
/// run another convolution's job.
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    thread_local! {
        static SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    }
    let mut buffer = SCRATCH.with(|stack| stack.borrow_mut().pop()).unwrap_or_default();
    let result = f(&mut buffer);
    SCRATCH.with(|stack| stack.borrow_mut().push(buffer));
    result
}

/// The first `len` values of `buffer`, whatever they hold (what is left from its last use):
/// for callers that write every value before reading it. A fresh allocation for each tile
/// is page-faulted in again each time; zeroing a reused one costs a pass over it.
pub(super) fn reused(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// Whether `jobs` independent gemm jobs are enough for one thread each; with too few (small
/// latent grids, few attention heads) gemm splits each one instead.
pub(super) fn parallelism(jobs: usize) -> (bool, gemm::Parallelism) {
    let per_job = jobs >= 2 * rayon::current_num_threads();
    (per_job, if per_job { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(0) })
}

/// A matrix operand of `matmul`: element (r, c) at `ptr + r * row_stride + c * col_stride`.
#[derive(Clone, Copy)]
pub(super) struct Operand {
    pub ptr: *const f32,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// `dst[m, n] (+)= lhs[m, inner] * rhs[inner, n]`, dst rows `dst_row_stride` apart.
///
/// # Safety
/// Every element the sizes and strides address must lie inside its buffer, and no other
/// thread may write the part of `dst` they address.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul(
    [m, n, inner]: [usize; 3],
    dst: *mut f32,
    dst_row_stride: usize,
    accumulate: bool,
    lhs: Operand,
    rhs: Operand,
    parallelism: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        n,
        inner,
        dst,
        1,
        dst_row_stride as isize,
        accumulate,
        lhs.ptr,
        lhs.col_stride as isize,
        lhs.row_stride as isize,
        rhs.ptr,
        rhs.col_stride as isize,
        rhs.row_stride as isize,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        parallelism,
    );
}

/// A raw pointer that rayon tasks may share; each task writes a disjoint part of the buffer.
#[derive(Clone, Copy)]
pub(super) struct SharedMut(pub *mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// The convolution `[batch, co, out_h, out_w]` of `input` with `weight` (plus `bias`).
pub(super) fn forward(input: &[f32], weight: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    if super::winograd::applies(s) {
        return super::winograd::forward(input, weight, bias, s);
    }
    let (plane_in, plane_out, k) = (s.plane_in(), s.plane_out(), s.k());
    let tiles = s.tiles_per_image();
    let jobs = s.batch * tiles;
    let (per_job, parallelism) = parallelism(jobs);
    // Not zeroed: the tiles' products overwrite every value (gemm does not read dst when
    // told not to accumulate).
    let len = s.batch * s.co * plane_out;
    let mut out = Vec::<f32>::with_capacity(len);
    let out_ptr = SharedMut(out.spare_capacity_mut().as_mut_ptr().cast());
    let run = |scratch: &mut Vec<f32>, job: usize| {
        let (b, (r0, rows)) = (job / tiles, s.tile(job % tiles));
        let image = &input[b * s.ci * plane_in..(b + 1) * s.ci * plane_in];
        let (patches, patch_stride) = s.patches(image, r0, rows, scratch);
        let out_ptr = out_ptr;
        // SAFETY: dst spans rows `co` of stride plane_out and columns r0*out_w..+pixels of
        // image b: a region no other job writes; the operands' sizes match m, n, inner.
        unsafe {
            matmul(
                [s.co, rows * s.geometry.out_w, k],
                out_ptr.0.add(b * s.co * plane_out + r0 * s.geometry.out_w),
                plane_out,
                false,
                Operand { ptr: weight.as_ptr(), row_stride: k, col_stride: 1 },
                Operand { ptr: patches.as_ptr(), row_stride: patch_stride, col_stride: 1 },
                parallelism,
            );
        }
    };
    if per_job {
        (0..jobs).into_par_iter().for_each(|job| with_scratch(|scratch| run(scratch, job)));
    } else {
        (0..jobs).for_each(|job| with_scratch(|scratch| run(scratch, job)));
    }
    // SAFETY: the jobs' tiles cover every output row of every channel and image.
    unsafe { out.set_len(len) };
    if let Some(bias) = bias {
        out.par_chunks_mut(plane_out).enumerate().for_each(|(i, plane)| {
            let value = bias[i % s.co];
            plane.iter_mut().for_each(|v| *v += value);
        });
    }
    out
}

/// The gradient of the loss with respect to the weight `[co, ci, kh, kw]`, given the input
/// and the output gradient `grad`: the sum over tiles of `grad_tile * patches_tile^T`.
///
/// Both operands of that product run along the pixels, which gemm packs one element at a
/// time (and, at power-of-two row strides, with every load in one L1 set): packing cost as
/// much as the multiply. So the product runs on channels-last copies, the pixels' patches as
/// rows (`[pixels, kh * kw * ci]`) and the gradient as `[pixels, co]`, which gemm reads in
/// its own order; the result comes out as `[co, kh, kw, ci]` and is reordered once.
/// Winograd's convolutions take the same copies (see `winograd::backward_weight`).
pub(super) fn backward_weight(input: &[f32], grad: &[f32], s: &ConvShape) -> Vec<f32> {
    with_scratch(|input_cl| {
        with_scratch(|grad_cl| {
            let input_cl = channels_last(input, s.ci, s.plane_in(), input_cl);
            let grad_cl = channels_last(grad, s.co, s.plane_out(), grad_cl);
            if super::winograd::applies(s) {
                return super::winograd::backward_weight(input_cl, grad_cl, s);
            }
            weight_gradient_channels_last(input_cl, grad_cl, s)
        })
    })
}

/// [`backward_weight`] from the channels-last input `[batch, h, w, ci]` and output gradient
/// `[batch, out_h, out_w, co]`.
fn weight_gradient_channels_last(input_cl: &[f32], grad_cl: &[f32], s: &ConvShape) -> Vec<f32> {
    let (plane_in, plane_out, k) = (s.plane_in(), s.plane_out(), s.k());
    let tiles = s.tiles_per_image();
    let jobs = s.batch * tiles;
    let (per_job, parallelism) = parallelism(jobs);
    let accumulate = |mut sum: Vec<f32>, job: usize| {
        let (b, (r0, rows)) = (job / tiles, s.tile(job % tiles));
        let image = &input_cl[b * s.ci * plane_in..(b + 1) * s.ci * plane_in];
        with_scratch(|scratch| {
            let patches = s.patches_channels_last(image, r0, rows, scratch);
            let grad_tile = &grad_cl[(b * plane_out + r0 * s.geometry.out_w) * s.co..];
            // SAFETY: `sum` is this fold's own [co, k]; the tile of grad_cl is `rows * out_w`
            // rows of co, the patches as many rows of k.
            unsafe {
                matmul(
                    [s.co, k, rows * s.geometry.out_w],
                    sum.as_mut_ptr(),
                    k,
                    true,
                    Operand { ptr: grad_tile.as_ptr(), row_stride: 1, col_stride: s.co },
                    Operand { ptr: patches.as_ptr(), row_stride: k, col_stride: 1 },
                    parallelism,
                );
            }
        });
        sum
    };
    let grad_weight = sum_over_jobs(jobs, per_job, s.co * k, accumulate);
    // [co, kh * kw, ci] -> [co, ci, kh * kw]
    let taps = s.kh * s.kw;
    grad_weight.chunks(k).flat_map(|filter| (0..k).map(move |i| filter[(i % taps) * s.ci + i / taps])).collect()
}

/// The sum of `len` values that `accumulate(sum, job)` adds jobs `0..jobs` into, the jobs in
/// parallel (each thread's share into its own sum, the sums added at the end) when
/// `parallel`.
pub(super) fn sum_over_jobs(
    jobs: usize,
    parallel: bool,
    len: usize,
    accumulate: impl Fn(Vec<f32>, usize) -> Vec<f32> + Sync + Send,
) -> Vec<f32> {
    let zeros = || vec![0f32; len];
    if parallel {
        (0..jobs).into_par_iter().fold(zeros, accumulate).reduce(zeros, |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            a
        })
    } else {
        (0..jobs).fold(zeros(), accumulate)
    }
}

/// `[batch, channels, plane]` as `[batch, plane, channels]`, in 16 x 16 blocks: sixteen
/// contiguous loads into a local block, sixteen contiguous stores out of it (compiled for
/// AVX-512 where the CPU has it); the edges element by element.
fn channels_last<'a>(values: &[f32], channels: usize, plane: usize, out: &'a mut Vec<f32>) -> &'a [f32] {
    const BLOCK: usize = 16;
    let out = reused(out, values.len());
    out.par_chunks_mut(channels * plane).zip(values.par_chunks(channels * plane)).for_each(|(out, image)| {
        super::vectorized(
            #[inline(always)]
            || {
                for c0 in (0..channels).step_by(BLOCK) {
                    for p0 in (0..plane).step_by(BLOCK) {
                        if c0 + BLOCK <= channels && p0 + BLOCK <= plane {
                            let mut block = [[0f32; BLOCK]; BLOCK];
                            for (c, row) in block.iter_mut().enumerate() {
                                row.copy_from_slice(&image[(c0 + c) * plane + p0..][..BLOCK]);
                            }
                            for p in 0..BLOCK {
                                let dst = &mut out[(p0 + p) * channels + c0..][..BLOCK];
                                for (c, d) in dst.iter_mut().enumerate() {
                                    *d = block[c][p];
                                }
                            }
                        } else {
                            for c in c0..(c0 + BLOCK).min(channels) {
                                for p in p0..(p0 + BLOCK).min(plane) {
                                    out[p * channels + c] = image[c * plane + p];
                                }
                            }
                        }
                    }
                }
            },
        )
    });
    out
}

/// The gradient with respect to the bias `[co]`: the output gradient summed per channel.
pub(super) fn backward_bias(grad: &[f32], s: &ConvShape) -> Vec<f32> {
    let plane_out = s.plane_out();
    (0..s.co)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = (0..s.batch)
                .map(|b| super::lane_sum(&grad[(b * s.co + c) * plane_out..][..plane_out], f64::from))
                .sum();
            sum as f32
        })
        .collect()
}

/// The gradient with respect to the input `[batch, ci, h, w]`: per tile `weight^T * grad_tile`,
/// scattered back onto the pixels each patch was gathered from.
pub(super) fn backward_input(weight: &[f32], grad: &[f32], s: &ConvShape) -> Vec<f32> {
    if super::winograd::applies(s) {
        return super::winograd::backward_input(weight, grad, s);
    }
    let (plane_in, plane_out, k) = (s.plane_in(), s.plane_out(), s.k());
    let (per_image, parallelism) = parallelism(s.batch);
    let run = |(b, image): (usize, &mut [f32])| {
        with_scratch(|col| {
            let weight_t = Operand { ptr: weight.as_ptr(), row_stride: 1, col_stride: k };
            for tile in 0..s.tiles_per_image() {
                let (r0, rows) = s.tile(tile);
                let pixels = rows * s.geometry.out_w;
                let grad_tile = Operand {
                    ptr: grad[b * s.co * plane_out + r0 * s.geometry.out_w..].as_ptr(),
                    row_stride: plane_out,
                    col_stride: 1,
                };
                // SAFETY: the destinations are this image's gradient (k rows of plane_in from
                // pixel r0 * w on, pointwise) or a local [k, pixels] matrix; the operands' sizes
                // match m, n, inner.
                unsafe {
                    if s.pointwise() {
                        let dst = image[r0 * s.w..].as_mut_ptr();
                        matmul([k, pixels, s.co], dst, plane_in, false, weight_t, grad_tile, parallelism);
                    } else {
                        let col = reused(col, k * pixels);
                        matmul([k, pixels, s.co], col.as_mut_ptr(), pixels, false, weight_t, grad_tile, parallelism);
                        s.scatter_patches(col, image, r0, rows);
                    }
                }
            }
        })
    };
    let image_len = s.ci * plane_in;
    super::zeroed_chunks(s.batch * image_len, image_len, per_image, |b, image| run((b, image))).0
}

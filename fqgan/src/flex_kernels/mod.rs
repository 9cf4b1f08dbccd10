//! Hand-written kernels for the CPU backend's (Flex's) hot spots.
//!
//! burn's generic ops run a GroupNorm as six passes over strided views on one thread, which
//! cost more than the convolutions around it, and Flex's convolution converts layouts around
//! every gemm (and more so in its backward). Where the backend is Flex, for inference, or
//! `Autodiff<Flex>`, for training (through custom backward steps), the layers call these
//! kernels instead: one parallel pass per op, on contiguous f32 data. Every other backend
//! keeps the generic path, which is also the reference the kernels are tested against.

use std::any::Any;

use burn::backend::autodiff::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, FloatDType, Tensor, TensorPrimitive};
use burn_flex::{Flex, FlexTensor, Layout};
use rayon::prelude::*;

mod adamw;
mod add;
mod attention;
mod autodiff;
mod conv;
mod entropy;
mod gelu;
mod layer_norm;
mod linear;
mod norm;
mod rotary;
mod upsample;
mod winograd;

pub(crate) use adamw::AdamWStep;
pub(crate) use conv::ConvGeometry;
use conv::ConvShape;
use layer_norm::LayerNormShape;
use norm::GroupNormShape;

/// The training backend the custom backward steps serve.
type AutodiffFlex = Autodiff<Flex>;

/// `value` as a `U` when `T` is `U`, else `value` unchanged.
fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
        Some(cast) => Ok(cast.take().expect("slot holds the value")),
        None => Err(slot.expect("slot holds the value")),
    }
}

/// The tensors one kernel call takes, unwrapped to `B`'s primitives when `B` is `K` (Flex or
/// `Autodiff<Flex>`) and every tensor holds f32; `Err` gives the tensors back unchanged.
fn primitives<B: Backend, K: Backend, const N: usize, const D: usize>(
    tensors: [Tensor<B, D>; N],
) -> Result<[FloatTensor<K>; N], [Tensor<B, D>; N]> {
    if std::any::TypeId::of::<B::FloatTensorPrimitive>() != std::any::TypeId::of::<FloatTensor<K>>()
        || tensors.iter().any(|t| t.dtype() != DType::F32)
    {
        return Err(tensors);
    }
    Ok(tensors.map(|t| cast(t.into_primitive().tensor()).ok().expect("B's float primitive is K's")))
}

fn tensor<B: Backend, K: Backend, const D: usize>(primitive: FloatTensor<K>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast(primitive).ok().expect("K's float primitive is B's")))
}

fn to_flex<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    to_flex_any(x)
}

/// As [`to_flex`], for a tensor of any dtype.
fn to_flex_any<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
    if std::any::TypeId::of::<B::FloatTensorPrimitive>() != std::any::TypeId::of::<FlexTensor>() {
        return Err(x);
    }
    Ok(cast::<_, FlexTensor>(x.into_primitive().tensor()).ok().expect("B's float primitive is Flex's").to_contiguous())
}

fn from_flex<B: Backend, const D: usize>(x: FlexTensor) -> Tensor<B, D> {
    tensor::<B, Flex, D>(x)
}

/// A contiguous f32 Flex tensor of `shape` holding `values`.
fn f32_flex(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    let shape = burn::tensor::Shape::from(shape.to_vec());
    FlexTensor::new(burn::tensor::Bytes::from_elems(values), Layout::contiguous(shape), DType::F32)
}

/// A contiguous f32 tensor of `shape` holding `values`, back on `B` (which is Flex).
fn f32_tensor<B: Backend, const D: usize>(values: Vec<f32>, shape: &[usize]) -> Tensor<B, D> {
    from_flex(f32_flex(values, shape))
}

/// `len` values written by `f(index, chunk)` on consecutive chunks of `chunk` values (the
/// last may be shorter), in parallel when `parallel`, with the results of `f` in order.
/// Each chunk is zeroed by its own task just before `f` runs, while it is in cache: a
/// `vec![0; len]` first is a serial pass over the whole output, and the kernels' outputs
/// add up to ~600 MB per training step.
fn zeroed_chunks<R: Send>(
    len: usize,
    chunk: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [f32]) -> R + Sync + Send,
) -> (Vec<f32>, Vec<R>) {
    let mut out = Vec::with_capacity(len);
    let task = |(index, values): (usize, &mut [std::mem::MaybeUninit<f32>])| {
        for v in values.iter_mut() {
            v.write(0.0);
        }
        // SAFETY: every value of the chunk was just written, and f32 has no invalid values.
        f(index, unsafe { &mut *(values as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) })
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    let results = match parallel {
        true => spare.par_chunks_mut(chunk.max(1)).enumerate().map(task).collect(),
        false => spare.chunks_mut(chunk.max(1)).enumerate().map(task).collect(),
    };
    // SAFETY: the chunks cover all `len` values, each of them written above.
    unsafe { out.set_len(len) };
    (out, results)
}

/// `sum_i a_i b_i` in 16 independent accumulators (one AVX-512 register of f32), so that
/// the loop vectorises; one running sum is a serial chain of dependent additions.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| x * y).sum();
    for (xs, ys) in chunks_a.zip(chunks_b) {
        for ((lane, x), y) in lanes.iter_mut().zip(xs).zip(ys) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// The sum of `f(v)` over `values` in f64, over 8 independent accumulators so that the loop
/// vectorises (one running sum is a serial chain of dependent additions).
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// Runs `f` compiled for the widest vector unit this CPU has (AVX-512, else AVX2 with FMA),
/// chosen at run time: the release build targets baseline x86-64, whose SSE loops do 4
/// floats per instruction where AVX-512 does 16. Only for loops without calls that would
/// leave the wider code (they are inlined into it).
#[inline(always)]
fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// `GroupNorm(groups, eps)` with per-channel `weight` and `bias` over NCHW `x`, followed by
/// swish when `swish` is set; `Err` returns `x` when `B` is neither Flex nor `Autodiff<Flex>`
/// (the caller runs the generic ops).
pub(crate) fn group_norm<B: Backend>(
    x: Tensor<B, 4>,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    groups: usize,
    eps: f64,
    swish: bool,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let [_, channels, h, w] = x.dims();
    let shape = GroupNormShape { channels, plane: h * w, groups, eps, swish };
    let x = match primitives::<B, AutodiffFlex, 1, 4>([x]) {
        Ok([x]) => {
            let [weight, bias] = primitives::<B, AutodiffFlex, 2, 1>([weight.clone(), bias.clone()])
                .ok()
                .expect("parameters share the input's backend and dtype");
            return Ok(tensor::<B, AutodiffFlex, 4>(autodiff::group_norm(x, weight, bias, shape)));
        }
        Err([x]) => x,
    };
    let x = to_flex(x)?;
    let [weight, bias] = [weight, bias].map(|t| to_flex(t.clone()).ok().expect("parameters share the input's backend"));
    let out = norm::forward(x.storage(), weight.storage(), bias.storage(), &shape);
    Ok(f32_tensor(out, x.layout().shape()))
}

/// `LayerNorm(width, eps)` over the last dimension of `x` with per-column `weight` and
/// `bias`; `Err` returns `x` when `B` is neither Flex nor `Autodiff<Flex>`.
pub(crate) fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    eps: f64,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let shape = LayerNormShape { width: x.dims()[D - 1], eps };
    let x = match primitives::<B, AutodiffFlex, 1, D>([x]) {
        Ok([x]) => {
            let [weight, bias] = primitives::<B, AutodiffFlex, 2, 1>([weight.clone(), bias.clone()])
                .ok()
                .expect("parameters share the input's backend and dtype");
            return Ok(tensor::<B, AutodiffFlex, D>(autodiff::layer_norm(x, weight, bias, shape)));
        }
        Err([x]) => x,
    };
    let x = to_flex(x)?;
    let [weight, bias] = [weight, bias].map(|t| to_flex(t.clone()).ok().expect("parameters share the input's backend"));
    let out = layer_norm::forward(x.storage(), weight.storage(), bias.storage(), &shape);
    Ok(f32_tensor(out, x.layout().shape()))
}

/// Exact (erf) GELU of `x`; `Err` returns `x` when `B` is neither Flex nor `Autodiff<Flex>`.
pub(crate) fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let x = match primitives::<B, AutodiffFlex, 1, D>([x]) {
        Ok([x]) => return Ok(tensor::<B, AutodiffFlex, D>(autodiff::gelu(x))),
        Err([x]) => x,
    };
    let x = to_flex(x)?;
    Ok(f32_tensor(gelu::forward(x.storage()), x.layout().shape()))
}

/// `softmax(q k^T * scale) v` for q `[b, h, n, d]`, k `[b, h, m, d]`, v `[b, h, m, dv]`
/// (views read in place, see `attention`): `[b, h, n, dv]`, laid out as `[b, n, h, dv]`.
/// `Err` gives the three back when `B` is not Flex (training runs the generic ops) or the
/// sizes do not match.
pub(crate) fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    scale: f32,
) -> Result<Tensor<B, 4>, [Tensor<B, 4>; 3]> {
    let [q, k, v] = primitives::<B, Flex, 3, 4>([q, k, v])?;
    // Views with negative strides (flips) are copied; the heads of a projection never are.
    let [q, k, v] = [q, k, v].map(|t| if t.layout().has_positive_strides() { t } else { t.to_contiguous() });
    let (hq, hk, hv) = (attention::Heads::of(&q), attention::Heads::of(&k), attention::Heads::of(&v));
    let [b, h, n, d] = hq.dims;
    let matches = hk.dims[..2] == [b, h] && hk.dims[3] == d && hv.dims[..3] == hk.dims[..3];
    if !matches || ![hq, hk, hv].iter().all(|t| t.in_bounds()) {
        return Err([q, k, v].map(from_flex));
    }
    let dv = hv.dims[3];
    let out = attention::forward(hq, hk, hv, scale);
    let layout = Layout::new(
        burn::tensor::Shape::from(vec![b, h, n, dv]),
        vec![(n * h * dv) as isize, dv as isize, (h * dv) as isize, 1],
        0,
    );
    Ok(from_flex(FlexTensor::new(burn::tensor::Bytes::from_elems(out), layout, DType::F32)))
}

/// The quantizer's entropy sums over one block of affinities `[rows, codes]`: `[codes + 1]`,
/// the softmax probabilities summed per code, then the rows' `sum_j p_j log p_j` summed (see
/// `entropy`); `Err` gives `affinity` back when `B` is neither Flex nor `Autodiff<Flex>`.
pub(crate) fn softmax_entropy<B: Backend>(affinity: Tensor<B, 2>) -> Result<Tensor<B, 1>, Tensor<B, 2>> {
    let [_, codes] = affinity.dims();
    let affinity = match primitives::<B, AutodiffFlex, 1, 2>([affinity]) {
        Ok([affinity]) => return Ok(tensor::<B, AutodiffFlex, 1>(autodiff::softmax_entropy(affinity, codes))),
        Err([affinity]) => affinity,
    };
    let affinity = to_flex(affinity)?;
    Ok(f32_tensor(entropy::forward(affinity.storage(), codes), &[codes + 1]))
}

/// Nearest-neighbour 2x upsampling of NCHW `x` (each pixel into a 2x2 block); `Err` returns
/// `x` when `B` is neither Flex nor `Autodiff<Flex>`.
pub(crate) fn upsample_nearest2x<B: Backend>(x: Tensor<B, 4>) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let x = match primitives::<B, AutodiffFlex, 1, 4>([x]) {
        Ok([x]) => return Ok(tensor::<B, AutodiffFlex, 4>(autodiff::upsample_nearest2x(x))),
        Err([x]) => x,
    };
    let x = to_flex(x)?;
    let [b, c, h, w]: [usize; 4] = x.layout().shape().dims();
    Ok(f32_tensor(upsample::forward(x.storage(), h, w), &[b, c, 2 * h, 2 * w]))
}

/// `a + b` for tensors of one shape, in one parallel pass (see `add`); `Err` gives both
/// back when the shapes differ or `B` is neither Flex nor `Autodiff<Flex>`.
pub(crate) fn add<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Result<Tensor<B, D>, [Tensor<B, D>; 2]> {
    if a.dims() != b.dims() {
        return Err([a, b]);
    }
    let [a, b] = match primitives::<B, AutodiffFlex, 2, D>([a, b]) {
        Ok([a, b]) => return Ok(tensor::<B, AutodiffFlex, D>(autodiff::add(a, b))),
        Err(tensors) => tensors,
    };
    let [a, b] = primitives::<B, Flex, 2, D>([a, b])?;
    Ok(from_flex(add::forward(a, &b)))
}

/// `x @ weight^T + bias` for `x` `[rows, d_in]` of a few rows and a PyTorch-layout `weight`
/// `[d_out, d_in]` in f32 or bf16 (see `linear`); `Err` gives `x` back when `B` is not Flex
/// or `x` has more rows than [`linear::max_rows`] for the weight's dtype.
pub(crate) fn linear_thin<B: Backend>(
    x: Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    let [rows, d_in] = x.dims();
    if rows > linear::max_rows(weight.dtype()) {
        return Err(x);
    }
    let x = to_flex(x)?;
    let Ok(weight) = to_flex_any(weight.clone()) else {
        return Err(from_flex(x));
    };
    let weights = match weight.dtype() {
        DType::F32 => linear::Weights::F32(weight.storage()),
        DType::BF16 => linear::Weights::Bf16(weight.storage()),
        _ => return Err(from_flex(x)),
    };
    let bias = bias.map(|b| to_flex(b.clone()).ok().expect("bias shares the backend"));
    let out = linear::forward(x.storage(), weights, bias.as_ref().map(|b| b.storage()), rows, d_in);
    Ok(f32_tensor(out, &[rows, weight.layout().shape()[0]]))
}

/// `x @ weight^T + bias` for `x` `[rows, d_in]` of any number of rows and an f32 PyTorch-
/// layout `weight` through gemm (see `linear::many_rows`); `Err` gives `x` back when `B` is
/// not Flex (training runs the generic ops) or the weight is not f32.
pub(crate) fn linear_gemm<B: Backend>(
    x: Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    let [rows, d_in] = x.dims();
    let x = to_flex(x)?;
    let Ok(weight) = to_flex(weight.clone()) else {
        return Err(from_flex(x));
    };
    let bias = bias.map(|b| to_flex(b.clone()).ok().expect("bias shares the backend"));
    let out = linear::many_rows(x.storage(), weight.storage(), bias.as_ref().map(|b| b.storage()), rows, d_in);
    Ok(f32_tensor(out, &[rows, weight.layout().shape()[0]]))
}

/// `t` stored as bf16, rounded to nearest (burn's cast on other backends; Flex's goes
/// through an f64 copy of the whole tensor on one thread).
pub(crate) fn to_bf16<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    match to_flex(t) {
        Ok(flex) => {
            let values = linear::narrow(flex.storage());
            let shape = flex.layout().shape().clone();
            from_flex(FlexTensor::new(burn::tensor::Bytes::from_elems(values), Layout::contiguous(shape), DType::BF16))
        }
        Err(t) => t.cast(FloatDType::BF16),
    }
}

/// `t` as f32: a bf16 weight widened for a product the few-rows kernel does not take.
pub(crate) fn to_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    if t.dtype() != DType::BF16 {
        return t.cast(FloatDType::F32);
    }
    match to_flex_any(t) {
        Ok(flex) => f32_tensor(linear::widen_all(flex.storage()), flex.layout().shape()),
        Err(t) => t.cast(FloatDType::F32),
    }
}

/// FAR's rotary embedding of `x` `[b, s, h, d]` by `freqs` `[s, d / 2, 2]` (see `rotary`);
/// `Err` gives `x` back when `B` is not Flex (training runs the generic ops).
pub(crate) fn rotary<B: Backend>(x: Tensor<B, 4>, freqs: &Tensor<B, 3>) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let dims = x.dims();
    let x = to_flex(x)?;
    let Ok(freqs) = to_flex(freqs.clone()) else {
        return Err(from_flex(x));
    };
    Ok(f32_tensor(rotary::forward(x.storage(), freqs.storage(), dims), &dims))
}

/// `t` as a contiguous tensor whose buffer nothing else holds (a copy when shared), so
/// that a kernel may write into it.
fn owned(t: FlexTensor) -> FlexTensor {
    // `to_contiguous` shares a contiguous tensor's buffer: dropping `t` leaves the result
    // its only holder, unless another tensor holds it too.
    let mut t = { t }.to_contiguous();
    if t.try_storage_mut::<f32>().is_none() {
        t = f32_flex(t.storage::<f32>().to_vec(), t.layout().shape());
    }
    t
}

/// One AdamW update of a flat parameter with its gradient and moments (see `adamw`):
/// `[parameter, m, v]` after the step; `Err` gives the four back when `B` is not Flex.
pub(crate) fn adamw<B: Backend>(
    param: Tensor<B, 1>,
    grad: Tensor<B, 1>,
    moments: [Tensor<B, 1>; 2],
    step: &AdamWStep,
) -> Result<[Tensor<B, 1>; 3], [Tensor<B, 1>; 4]> {
    let [m, v] = moments;
    let [param, grad, m, v] = primitives::<B, Flex, 4, 1>([param, grad, m, v])?;
    let [param, grad] = [param, grad].map(|t| t.to_contiguous());
    let [mut m, mut v] = [m, v].map(owned);
    let shape = param.layout().shape().clone();
    let updated = adamw::step(
        param.storage(),
        grad.storage(),
        m.try_storage_mut().expect("owned"),
        v.try_storage_mut().expect("owned"),
        step,
    );
    Ok([f32_flex(updated, &shape), m, v].map(from_flex))
}

/// Writes `new` `[b, h, s, d]` into positions `start..start + s` of `buffer` `[b, h, capacity,
/// d]` in place, when `buffer` is a Flex tensor that nothing else holds. Flex's own
/// `slice_assign` keeps a second handle on the buffer while it writes, so it copies the whole
/// buffer every time: for KV caches, once per layer and token.
pub(crate) fn write_positions<B: Backend>(
    buffer: Tensor<B, 4>,
    start: usize,
    new: &Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let mut flex = to_flex(buffer)?;
    let Ok(new) = to_flex(new.clone()) else {
        return Err(from_flex(flex));
    };
    let dims = flex.layout().shape();
    let (b, h, capacity, d) = (dims[0], dims[1], dims[2], dims[3]);
    let s = new.layout().shape()[2];
    let values: &[f32] = new.storage();
    let Some(dst) = flex.try_storage_mut::<f32>() else {
        return Err(from_flex(flex));
    };
    for (row, chunk) in values.chunks(s * d).enumerate().take(b * h) {
        let offset = (row * capacity + start) * d;
        dst[offset..offset + s * d].copy_from_slice(chunk);
    }
    Ok(from_flex(flex))
}

/// `conv2d` (groups 1, dilation 1) of NCHW `x` with PyTorch-layout `weight` [co, ci, kh, kw]
/// (see `conv`); `Err` returns `x` when `B` is neither Flex nor `Autodiff<Flex>` or the
/// tensors are not f32.
pub(crate) fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
    geometry: ConvGeometry,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let shape = ConvShape::new(&x.dims(), &weight.dims(), geometry);
    let x = match primitives::<B, AutodiffFlex, 2, 4>([x, weight.clone()]) {
        Ok([x, weight]) => {
            let bias = bias.map(|b| {
                let [b] = primitives::<B, AutodiffFlex, 1, 1>([b.clone()]).ok().expect("bias shares the backend");
                b
            });
            return Ok(tensor::<B, AutodiffFlex, 4>(autodiff::conv2d(x, weight, bias, shape)));
        }
        Err([x, _]) => x,
    };
    let x = to_flex(x)?;
    let Ok(weight) = to_flex(weight.clone()) else {
        return Err(from_flex(x));
    };
    let bias = bias.map(|b| to_flex(b.clone()).ok().expect("bias shares the backend"));
    let out = conv::forward(x.storage(), weight.storage(), bias.as_ref().map(|b| b.storage()), &shape);
    Ok(f32_tensor(out, &shape.output_dims()))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use crate::device::{Cpu, NdArray};
    use crate::layers::GroupNorm;

    #[test]
    fn group_norm_kernel_matches_the_generic_ops() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::random([2, 8, 5, 3], Distribution::Normal(0.5, 2.0), &device);
        let mut norm = GroupNorm::<Cpu>::new(4, 8, 1e-6, &device);
        norm.weight = burn::module::Param::from_tensor(Tensor::random([8], Distribution::Normal(1.0, 0.5), &device));
        norm.bias = burn::module::Param::from_tensor(Tensor::random([8], Distribution::Normal(0.0, 0.5), &device));
        // The same module on NdArray takes the generic path.
        let to_nd = |t: Tensor<Cpu, 1>| Tensor::<NdArray, 1>::from_data(t.into_data(), &Default::default());
        let mut reference = GroupNorm::<NdArray>::new(4, 8, 1e-6, &Default::default());
        reference.weight = burn::module::Param::from_tensor(to_nd(norm.weight.val()));
        reference.bias = burn::module::Param::from_tensor(to_nd(norm.bias.val()));
        let x_nd = Tensor::<NdArray, 4>::from_data(x.to_data(), &Default::default());
        for swish in [false, true] {
            let (fast, generic) = if swish {
                (norm.forward_swish(x.clone()), reference.forward_swish(x_nd.clone()))
            } else {
                (norm.forward(x.clone()), reference.forward(x_nd.clone()))
            };
            let fast: Vec<f32> = fast.into_data().into_vec().unwrap();
            let generic: Vec<f32> = generic.into_data().into_vec().unwrap();
            assert!(fast.iter().all(|v| v.is_finite()), "swish {swish}: non-finite output");
            let worst = fast.iter().zip(&generic).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "swish {swish}: max difference {worst}");
        }
    }

    #[test]
    fn upsample_kernel_matches_the_generic_ops() {
        let device = Default::default();
        let x = Tensor::<Cpu, 4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &device);
        let fast = super::upsample_nearest2x(x.clone()).ok().expect("Flex takes the kernel");
        let generic = x.reshape([2, 3, 4, 1, 5, 1]).expand([2, 3, 4, 2, 5, 2]).reshape([2, 3, 8, 10]);
        assert_eq!(fast.into_data(), generic.into_data());
    }

    /// The upsampling and the residual add on Autodiff<Flex> against the generic ops under
    /// autodiff on NdArray: outputs and input gradients, with an input used twice (as in a
    /// residual block) so that its two gradients are summed.
    #[test]
    fn upsample_and_add_backward_match_autodiff_of_the_generic_ops() {
        use burn::backend::Autodiff;

        type Fast = Autodiff<Cpu>;
        type Reference = Autodiff<NdArray>;
        let (device, nd) = (Default::default(), Default::default());
        let x = Tensor::<Cpu, 4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &device);
        let y = Tensor::<Cpu, 4>::random([2, 3, 8, 10], Distribution::Normal(0.0, 1.0), &device);
        let upstream = Tensor::<Cpu, 4>::random([2, 3, 8, 10], Distribution::Normal(0.0, 1.0), &device);

        let (fx, fy) = (
            Tensor::<Fast, 4>::from_data(x.to_data(), &device).require_grad(),
            Tensor::<Fast, 4>::from_data(y.to_data(), &device).require_grad(),
        );
        let doubled = super::upsample_nearest2x(fx.clone() * 2.0).ok().expect("Autodiff<Flex> takes the kernel");
        let summed = super::add(doubled, fy.clone()).ok().expect("Autodiff<Flex> takes the kernel");
        let fast = super::add(summed, fy.clone() * fy.clone()).ok().expect("Autodiff<Flex> takes the kernel");
        let fg = (fast.clone() * Tensor::from_data(upstream.to_data(), &device)).sum().backward();

        let (rx, ry) = (
            Tensor::<Reference, 4>::from_data(x.to_data(), &nd).require_grad(),
            Tensor::<Reference, 4>::from_data(y.to_data(), &nd).require_grad(),
        );
        let doubled = (rx.clone() * 2.0).reshape([2, 3, 4, 1, 5, 1]).expand([2, 3, 4, 2, 5, 2]).reshape([2, 3, 8, 10]);
        let reference = doubled + ry.clone() + ry.clone() * ry.clone();
        let rg = (reference.clone() * Tensor::from_data(upstream.to_data(), &nd)).sum().backward();

        assert!(relative_difference(fast, reference) < 1e-6, "output");
        assert!(relative_difference(fx.grad(&fg).unwrap(), rx.grad(&rg).unwrap()) < 1e-6, "upsampled input");
        assert!(relative_difference(fy.grad(&fg).unwrap(), ry.grad(&rg).unwrap()) < 1e-6, "added input");
    }

    /// The few-rows linear kernel against burn's matmul on NdArray, for every row count it
    /// takes, an input width that is not a multiple of its lanes, with and without bias, for
    /// f32 weights and for bf16 ones (against the matmul of the same rounded weights); more
    /// rows go back to the caller.
    #[test]
    fn linear_kernel_matches_the_generic_matmul() {
        let (device, nd) = (Default::default(), Default::default());
        let weight = Tensor::<Cpu, 2>::random([70, 37], Distribution::Normal(0.0, 1.0), &device);
        let bias = Tensor::<Cpu, 1>::random([70], Distribution::Normal(0.0, 1.0), &device);
        let rounded = super::to_bf16(weight.clone());
        assert_eq!(rounded.dtype(), burn::tensor::DType::BF16);
        let widened = super::to_f32(rounded.clone());
        assert!(relative_difference(widened.clone(), Tensor::<NdArray, 2>::from_data(weight.to_data(), &nd)) < 4e-3);
        let bias_nd = Tensor::<NdArray, 1>::from_data(bias.to_data(), &nd);
        for (weight, exact) in [(weight.clone(), weight.clone()), (rounded.clone(), widened)] {
            let weight_nd = Tensor::<NdArray, 2>::from_data(exact.to_data(), &nd);
            let most = super::linear::max_rows(weight.dtype());
            for rows in 1..=most {
                let x = Tensor::<Cpu, 2>::random([rows, 37], Distribution::Normal(0.0, 1.0), &device);
                let x_nd = Tensor::<NdArray, 2>::from_data(x.to_data(), &nd);
                let reference = x_nd.matmul(weight_nd.clone().transpose());
                let fast = super::linear_thin(x.clone(), &weight, None).ok().expect("Flex takes the kernel");
                assert!(relative_difference(fast, reference.clone()) < 1e-5, "{rows} rows");
                let fast = super::linear_thin(x, &weight, Some(&bias)).ok().expect("Flex takes the kernel");
                let reference = reference + bias_nd.clone().unsqueeze::<2>();
                assert!(relative_difference(fast, reference) < 1e-5, "{rows} rows with bias");
            }
            let many = Tensor::<Cpu, 2>::zeros([most + 1, 37], &device);
            assert!(super::linear_thin(many, &weight, None).is_err());
        }
        // Many rows through gemm, f32 weights only.
        let x = Tensor::<Cpu, 2>::random([45, 37], Distribution::Normal(0.0, 1.0), &device);
        let reference = Tensor::<NdArray, 2>::from_data(x.to_data(), &nd)
            .matmul(Tensor::<NdArray, 2>::from_data(weight.to_data(), &nd).transpose());
        let fast = super::linear_gemm(x.clone(), &weight, None).ok().expect("Flex takes f32 weights");
        assert!(relative_difference(fast, reference.clone()) < 1e-5, "many rows");
        let fast = super::linear_gemm(x.clone(), &weight, Some(&bias)).ok().expect("Flex takes f32 weights");
        assert!(relative_difference(fast, reference + bias_nd.unsqueeze::<2>()) < 1e-5, "many rows with bias");
        assert!(super::linear_gemm(x, &rounded, None).is_err(), "bf16 weights stay on the generic path");
    }

    /// The in-place add never writes into a buffer another tensor still reads.
    #[test]
    fn add_leaves_shared_inputs_alone() {
        let device = Default::default();
        let a = Tensor::<Cpu, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
        let b = Tensor::<Cpu, 2>::from_floats([[10.0, 20.0], [30.0, 40.0]], &device);
        let sum = super::add(a.clone(), b.clone()).ok().expect("Flex takes the kernel");
        assert_eq!(sum.into_data().to_vec::<f32>().unwrap(), vec![11.0, 22.0, 33.0, 44.0]);
        assert_eq!(a.into_data().to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        let shapes = super::add(Tensor::<Cpu, 2>::zeros([2, 3], &device), Tensor::zeros([3, 2], &device));
        assert!(shapes.is_err(), "different shapes take the generic path");
    }

    /// Every geometry the tokenizer uses (3x3 same, 3x3 stride 2 with the Downsample padding,
    /// 1x1) plus odd sizes and strides, against burn's generic conv on NdArray.
    #[test]
    fn conv_kernel_matches_the_generic_conv() {
        use burn::tensor::module::conv2d as generic_conv2d;
        use burn::tensor::ops::{ConvOptions, PadMode};

        use super::{conv2d, ConvGeometry};

        let device = Default::default();
        let nd = Default::default();
        let to_nd = |t: Tensor<Cpu, 4>| Tensor::<NdArray, 4>::from_data(t.into_data(), &nd);
        // (batch, ci, co, h, w, kernel, stride, padding before, after)
        let cases = [
            (2, 5, 7, 9, 11, 3, 1, 1, 1),
            (1, 4, 6, 8, 8, 3, 2, 0, 1),
            (3, 6, 4, 5, 7, 1, 1, 0, 0),
            (1, 3, 8, 40, 40, 3, 1, 1, 1),
            (2, 2, 3, 10, 13, 4, 3, 2, 2),
            (2, 3, 5, 7, 9, 2, 1, 0, 1),
            (1, 2, 3, 6, 6, 5, 1, 3, 1),
            // Winograd's: odd sizes (a half tile at the right and bottom), several images.
            (2, 16, 24, 17, 15, 3, 1, 1, 1),
            (1, 32, 16, 16, 16, 3, 1, 1, 1),
        ];
        for (batch, ci, co, h, w, kernel, stride, before, after) in cases {
            let x = Tensor::<Cpu, 4>::random([batch, ci, h, w], Distribution::Normal(0.0, 1.0), &device);
            let weight = Tensor::<Cpu, 4>::random([co, ci, kernel, kernel], Distribution::Normal(0.0, 1.0), &device);
            let bias = Tensor::<Cpu, 1>::random([co], Distribution::Normal(0.0, 1.0), &device);
            let out = |size: usize| (size + before + after - kernel) / stride + 1;
            let geometry = ConvGeometry { stride, pad_top: before, pad_left: before, out_h: out(h), out_w: out(w) };
            let fast = conv2d(x.clone(), &weight, Some(&bias), geometry).ok().expect("Flex takes the kernel");
            let padded = to_nd(x).pad((before, after, before, after), PadMode::Constant(0.0));
            let options = ConvOptions::new([stride; 2], [0, 0], [1, 1], 1);
            let bias_nd = Tensor::<NdArray, 1>::from_data(bias.into_data(), &nd);
            let generic = generic_conv2d(padded, to_nd(weight), Some(bias_nd), options);
            assert_eq!(fast.dims(), generic.dims());
            let fast: Vec<f32> = fast.into_data().into_vec().unwrap();
            let generic: Vec<f32> = generic.into_data().into_vec().unwrap();
            assert!(fast.iter().all(|v| v.is_finite()));
            let worst = fast.iter().zip(&generic).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "case {:?}: max difference {worst}", (batch, ci, co, h, w, kernel, stride));
        }
    }

    /// Largest difference between two tensors' values, relative to the largest magnitude.
    fn relative_difference<B1: burn::tensor::backend::Backend, B2: burn::tensor::backend::Backend, const D: usize>(
        fast: Tensor<B1, D>,
        reference: Tensor<B2, D>,
    ) -> f32 {
        assert_eq!(fast.dims(), reference.dims());
        let fast: Vec<f32> = fast.into_data().convert::<f32>().into_vec().unwrap();
        let reference: Vec<f32> = reference.into_data().convert::<f32>().into_vec().unwrap();
        assert!(fast.iter().all(|v| v.is_finite()), "non-finite values");
        let scale = reference.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        fast.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) / scale
    }

    /// The training path (custom backward steps on Autodiff<Flex>) against burn's autodiff of
    /// the generic conv on NdArray: output and the input, weight and bias gradients.
    #[test]
    fn conv_backward_matches_autodiff_of_the_generic_conv() {
        use burn::backend::Autodiff;
        use burn::tensor::module::conv2d as generic_conv2d;
        use burn::tensor::ops::{ConvOptions, PadMode};

        use super::{conv2d, ConvGeometry};

        let device = Default::default();
        // (batch, ci, co, h, w, kernel, stride, padding before, after, bias)
        let cases = [
            (2, 5, 7, 9, 11, 3, 1, 1, 1, true),
            (1, 4, 6, 8, 8, 3, 2, 0, 1, false),
            (5, 6, 4, 5, 7, 1, 1, 0, 0, true),
            (1, 3, 4, 40, 40, 3, 1, 1, 1, true),
            (2, 2, 3, 10, 13, 4, 3, 2, 2, false),
            (2, 3, 5, 7, 9, 2, 1, 0, 1, true),
            (1, 2, 3, 6, 6, 5, 1, 3, 1, false),
            // Winograd (forward and both gradients): even and odd sizes, several images.
            (2, 16, 17, 16, 18, 3, 1, 1, 1, true),
            (3, 17, 16, 17, 15, 3, 1, 1, 1, false),
        ];
        for (batch, ci, co, h, w, kernel, stride, before, after, with_bias) in cases {
            let x = Tensor::<Cpu, 4>::random([batch, ci, h, w], Distribution::Normal(0.0, 1.0), &device);
            let weight = Tensor::<Cpu, 4>::random([co, ci, kernel, kernel], Distribution::Normal(0.0, 1.0), &device);
            let bias = Tensor::<Cpu, 1>::random([co], Distribution::Normal(0.0, 1.0), &device);
            let out = |size: usize| (size + before + after - kernel) / stride + 1;
            let upstream =
                Tensor::<Cpu, 4>::random([batch, co, out(h), out(w)], Distribution::Normal(0.0, 1.0), &device);
            let geometry = ConvGeometry { stride, pad_top: before, pad_left: before, out_h: out(h), out_w: out(w) };

            type Fast = Autodiff<Cpu>;
            let fast_params = (
                Tensor::<Fast, 4>::from_data(x.to_data(), &device).require_grad(),
                Tensor::<Fast, 4>::from_data(weight.to_data(), &device).require_grad(),
                Tensor::<Fast, 1>::from_data(bias.to_data(), &device).require_grad(),
            );
            let (fx, fw, fb) = &fast_params;
            let fast_bias = with_bias.then(|| fb.clone());
            let fast =
                conv2d(fx.clone(), fw, fast_bias.as_ref(), geometry).ok().expect("Autodiff<Flex> takes the kernel");
            let fast_grads = (fast.clone() * Tensor::from_data(upstream.to_data(), &device)).sum().backward();

            type Reference = Autodiff<NdArray>;
            let nd = Default::default();
            let rx = Tensor::<Reference, 4>::from_data(x.to_data(), &nd).require_grad();
            let rw = Tensor::<Reference, 4>::from_data(weight.to_data(), &nd).require_grad();
            let rb = Tensor::<Reference, 1>::from_data(bias.to_data(), &nd).require_grad();
            let padded = rx.clone().pad((before, after, before, after), PadMode::Constant(0.0));
            let options = ConvOptions::new([stride; 2], [0, 0], [1, 1], 1);
            let reference = generic_conv2d(padded, rw.clone(), with_bias.then(|| rb.clone()), options);
            let reference_grads = (reference.clone() * Tensor::from_data(upstream.to_data(), &nd)).sum().backward();

            let case = (batch, ci, co, h, w, kernel, stride);
            assert!(relative_difference(fast, reference) < 1e-5, "case {case:?}: output");
            let grad = |t: &Tensor<Fast, 4>| t.grad(&fast_grads).expect("gradient");
            assert!(relative_difference(grad(fx), rx.grad(&reference_grads).unwrap()) < 1e-5, "case {case:?}: input");
            assert!(relative_difference(grad(fw), rw.grad(&reference_grads).unwrap()) < 1e-5, "case {case:?}: weight");
            if with_bias {
                let (fast, reference) = (fb.grad(&fast_grads).unwrap(), rb.grad(&reference_grads).unwrap());
                assert!(relative_difference(fast, reference) < 1e-5, "case {case:?}: bias");
            } else {
                assert!(fb.grad(&fast_grads).is_none(), "case {case:?}: an unused bias got a gradient");
            }
        }
    }

    /// The entropy sums on Autodiff<Flex> against softmax / log_softmax under autodiff on
    /// NdArray: the sums and the affinities' gradient, through random output weights.
    #[test]
    fn softmax_entropy_matches_autodiff_of_the_generic_ops() {
        use burn::backend::Autodiff;
        use burn::tensor::activation::{log_softmax, softmax};

        let device = Default::default();
        for (rows, codes, scale) in [(37, 50, 3.0), (16, 1024, 20.0), (3, 7, 0.1)] {
            let affinity = Tensor::<Cpu, 2>::random([rows, codes], Distribution::Normal(0.0, scale), &device);
            let upstream = Tensor::<Cpu, 1>::random([codes + 1], Distribution::Normal(0.0, 1.0), &device);

            type Fast = Autodiff<Cpu>;
            let fa = Tensor::<Fast, 2>::from_data(affinity.to_data(), &device).require_grad();
            let fast = super::softmax_entropy(fa.clone()).ok().expect("Autodiff<Flex> takes the kernel");
            let fast_grads = (fast.clone() * Tensor::from_data(upstream.to_data(), &device)).sum().backward();

            type Reference = Autodiff<NdArray>;
            let nd = Default::default();
            let ra = Tensor::<Reference, 2>::from_data(affinity.to_data(), &nd).require_grad();
            let probs = softmax(ra.clone(), 1);
            let p_log_p = (probs.clone() * log_softmax(ra.clone(), 1)).sum();
            let reference = Tensor::cat(vec![probs.sum_dim(0).reshape([codes]), p_log_p], 0);
            let reference_grads = (reference.clone() * Tensor::from_data(upstream.to_data(), &nd)).sum().backward();

            let case = (rows, codes, scale);
            assert!(relative_difference(fast, reference) < 1e-5, "case {case:?}: sums");
            let (fast, reference) = (fa.grad(&fast_grads).unwrap(), ra.grad(&reference_grads).unwrap());
            // Both sides sum in f32, the gradient as differences of nearby terms (p_j (g_j -
            // <g, p>)): on an AVX2-only CPU (AMD EPYC) the 37 x 50 case differs by 1.5-3e-4 of
            // the largest gradient, which 1e-4 refused. A wrong term would be off by O(1).
            let difference = relative_difference(fast, reference);
            assert!(difference < 1e-3, "case {case:?}: gradient differs by {difference:e}");
        }
    }

    /// GroupNorm (with and without swish) on Autodiff<Flex> against the generic ops under
    /// autodiff on NdArray: output, input gradient and both parameter gradients.
    #[test]
    fn group_norm_backward_matches_autodiff_of_the_generic_ops() {
        use burn::backend::Autodiff;
        use burn::module::Param;

        type Fast = Autodiff<Cpu>;
        type Reference = Autodiff<NdArray>;
        let (device, nd) = (Default::default(), Default::default());
        let x = Tensor::<Cpu, 4>::random([3, 8, 5, 3], Distribution::Normal(0.5, 2.0), &device);
        let weight = Tensor::<Cpu, 1>::random([8], Distribution::Normal(1.0, 0.5), &device);
        let bias = Tensor::<Cpu, 1>::random([8], Distribution::Normal(0.0, 0.5), &device);
        let upstream = Tensor::<Cpu, 4>::random([3, 8, 5, 3], Distribution::Normal(0.0, 1.0), &device);
        for swish in [false, true] {
            let mut fast = GroupNorm::<Fast>::new(4, 8, 1e-6, &device);
            fast.weight = Param::from_tensor(Tensor::from_data(weight.to_data(), &device));
            fast.bias = Param::from_tensor(Tensor::from_data(bias.to_data(), &device));
            let mut reference = GroupNorm::<Reference>::new(4, 8, 1e-6, &nd);
            reference.weight = Param::from_tensor(Tensor::from_data(weight.to_data(), &nd));
            reference.bias = Param::from_tensor(Tensor::from_data(bias.to_data(), &nd));
            let fx = Tensor::<Fast, 4>::from_data(x.to_data(), &device).require_grad();
            let rx = Tensor::<Reference, 4>::from_data(x.to_data(), &nd).require_grad();
            let (fy, ry) = if swish {
                (fast.forward_swish(fx.clone()), reference.forward_swish(rx.clone()))
            } else {
                (fast.forward(fx.clone()), reference.forward(rx.clone()))
            };
            let fg = (fy.clone() * Tensor::from_data(upstream.to_data(), &device)).sum().backward();
            let rg = (ry.clone() * Tensor::from_data(upstream.to_data(), &nd)).sum().backward();
            assert!(relative_difference(fy, ry) < 1e-5, "swish {swish}: output");
            assert!(relative_difference(fx.grad(&fg).unwrap(), rx.grad(&rg).unwrap()) < 1e-4, "swish {swish}: input");
            let (fw, rw) = (fast.weight.grad(&fg).unwrap(), reference.weight.grad(&rg).unwrap());
            assert!(relative_difference(fw, rw) < 1e-5, "swish {swish}: weight");
            let (fb, rb) = (fast.bias.grad(&fg).unwrap(), reference.bias.grad(&rg).unwrap());
            assert!(relative_difference(fb, rb) < 1e-5, "swish {swish}: bias");
        }
    }

    /// LayerNorm and GELU on Autodiff<Flex> against the generic ops under autodiff on
    /// NdArray (GELU written with erf): the output and the gradients of the input and both
    /// parameters.
    #[test]
    fn layer_norm_and_gelu_backward_match_autodiff_of_the_generic_ops() {
        use burn::backend::Autodiff;

        use crate::layers::LayerNorm;

        type Fast = Autodiff<Cpu>;
        type Reference = Autodiff<NdArray>;
        let (device, nd) = (Default::default(), Default::default());
        // 37 columns: the kernels' 16-lane sums have a remainder.
        let x = Tensor::<Cpu, 3>::random([3, 5, 37], Distribution::Normal(0.5, 2.0), &device);
        let weight = Tensor::<Cpu, 1>::random([37], Distribution::Normal(1.0, 0.5), &device);
        let bias = Tensor::<Cpu, 1>::random([37], Distribution::Normal(0.0, 0.5), &device);
        let upstream = Tensor::<Cpu, 3>::random([3, 5, 37], Distribution::Normal(0.0, 1.0), &device);

        let mut fast = LayerNorm::<Fast>::new(37, 1e-5, &device);
        fast.weight = burn::module::Param::from_tensor(Tensor::from_data(weight.to_data(), &device).require_grad());
        fast.bias = burn::module::Param::from_tensor(Tensor::from_data(bias.to_data(), &device).require_grad());
        let fx = Tensor::<Fast, 3>::from_data(x.to_data(), &device).require_grad();
        let fast_out = crate::layers::gelu(fast.forward(fx.clone()));
        let fg = (fast_out.clone() * Tensor::from_data(upstream.to_data(), &device)).sum().backward();

        let mut reference = LayerNorm::<Reference>::new(37, 1e-5, &nd);
        reference.weight = burn::module::Param::from_tensor(Tensor::from_data(weight.to_data(), &nd).require_grad());
        reference.bias = burn::module::Param::from_tensor(Tensor::from_data(bias.to_data(), &nd).require_grad());
        let rx = Tensor::<Reference, 3>::from_data(x.to_data(), &nd).require_grad();
        // GELU from erf: burn's own GELU backward is the derivative of the tanh approximation.
        let normed = reference.forward(rx.clone());
        let reference_out = normed.clone() * ((normed * std::f64::consts::FRAC_1_SQRT_2).erf() + 1.0) * 0.5;
        let rg = (reference_out.clone() * Tensor::from_data(upstream.to_data(), &nd)).sum().backward();

        assert!(relative_difference(fast_out, reference_out) < 1e-6, "output");
        assert!(relative_difference(fx.grad(&fg).unwrap(), rx.grad(&rg).unwrap()) < 1e-5, "input");
        let (fw, rw) = (fast.weight.grad(&fg).unwrap(), reference.weight.grad(&rg).unwrap());
        assert!(relative_difference(fw, rw) < 1e-5, "weight");
        let (fb, rb) = (fast.bias.grad(&fg).unwrap(), reference.bias.grad(&rg).unwrap());
        assert!(relative_difference(fb, rb) < 1e-5, "bias");
    }

    /// The attention kernel on the views the models give it (heads split out of a packed
    /// projection; one head whose tokens are the columns of a feature map) against the
    /// generic ops on NdArray, and with fewer keys than queries.
    #[test]
    fn attention_kernel_matches_the_generic_ops() {
        use crate::layers::{attention, merge_heads, split_heads, unmasked_attention};

        let device = Default::default();
        let to_nd = |t: Tensor<Cpu, 4>| Tensor::<NdArray, 4>::from_data(t.into_data(), &Default::default());
        // Packed [q; k; v] projections of 2 images x 7 tokens, 3 heads of 5.
        let qkv = Tensor::<Cpu, 3>::random([2, 7, 45], Distribution::Normal(0.0, 2.0), &device);
        let split = |i: usize| split_heads(qkv.clone().narrow(2, i * 15, 15), 3);
        let fast = merge_heads(unmasked_attention(split(0), split(1), split(2)));
        let [q, k, v] = [0, 1, 2].map(|i| to_nd(split(i)));
        let reference = merge_heads(attention(q, k, v, None, |w| w));
        assert!(relative_difference(fast, reference) < 1e-6, "packed heads");

        // One head over a 3x4 map of 6 channels: [b, 1, 12, 6] with the tokens along columns.
        let map = Tensor::<Cpu, 4>::random([2, 6, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        let tokens = map.reshape([2, 1, 6, 12]).swap_dims(2, 3);
        let keys = tokens.clone().narrow(2, 0, 5);
        let fast = unmasked_attention(tokens.clone(), keys.clone(), keys.clone() * 2.0);
        let reference = attention(to_nd(tokens), to_nd(keys.clone()), to_nd(keys * 2.0), None, |w| w);
        assert!(relative_difference(fast, reference) < 1e-6, "columns as tokens, 5 keys");
    }
}

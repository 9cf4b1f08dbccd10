//! The basic layers, with parameters stored exactly as PyTorch stores them (`weight` [out, in],
//! `bias`), so that module paths are official checkpoint keys and loading needs no transposes.

use burn::module::{Module, ModuleVisitor, Param, ParamId, RunningState};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Bool, Distribution, Shape, Tensor};

use crate::flex_kernels::{self, group_norm, ConvGeometry};

/// A parameter whose random initial value is drawn only when first read: loading a file
/// replaces it without ever drawing (random init used to cost more than reading the weights).
/// Models built for training read every parameter at once ([`materialize`]), so the values
/// do not depend on which parameter a forward happens to touch first.
pub fn lazy_param<B: Backend, const D: usize>(
    shape: [usize; D],
    device: &B::Device,
    init: impl Fn(&B::Device) -> Tensor<B, D> + Send + Sync + 'static,
) -> Param<Tensor<B, D>> {
    Param::uninitialized(
        ParamId::new(),
        move |device, require_grad| init(device).set_require_grad(require_grad),
        device.clone(),
        true,
        Shape::new(shape),
    )
}

/// A lazily drawn parameter from `distribution`.
pub fn random_param<B: Backend, const D: usize>(
    shape: [usize; D],
    distribution: Distribution,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    lazy_param(shape, device, move |device| Tensor::random(shape, distribution, device))
}

/// PyTorch's default init for Linear/Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
fn uniform_fan_in<B: Backend, const D: usize>(
    shape: [usize; D],
    fan_in: usize,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    random_param(shape, Distribution::Uniform(-bound, bound), device)
}

/// A tensor parameter drawn from N(0, std^2), as PyTorch initialises embeddings and tables.
pub fn normal_param<B: Backend, const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    random_param(shape, Distribution::Normal(0.0, std), device)
}

/// Draws every lazily initialised parameter of `module` now, in module order.
pub fn materialize<B: Backend, M: Module<B>>(module: &M) {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// [out, in]
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Linear<B> {
    pub fn new(d_in: usize, d_out: usize, bias: bool, device: &B::Device) -> Self {
        Self {
            weight: uniform_fan_in([d_out, d_in], d_in, device),
            bias: bias.then(|| uniform_fan_in([d_out], d_in, device)),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        linear_rows(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()))
    }

    /// Stores the weight as `precision` (the bias stays f32), for inference.
    pub fn set_weight_precision(&mut self, precision: WeightPrecision) {
        let weight = self.weight.val();
        let weight = match precision {
            WeightPrecision::F32 => flex_kernels::to_f32(weight),
            WeightPrecision::Bf16 => flex_kernels::to_bf16(weight),
        };
        self.weight = Param::initialized(self.weight.id, weight);
    }
}

/// How a model's matrix weights are stored for inference. Activations and sums stay f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightPrecision {
    /// As trained and as the official checkpoints: the golden cases hold for this.
    #[default]
    F32,
    /// Each weight rounded to bf16 (8 bits of mantissa, relative error at most 2^-9): half
    /// the memory, and on the CPU about half the time per generated token, which streams
    /// every weight from memory once.
    Bf16,
}

impl WeightPrecision {
    pub const ALL: [Self; 2] = [WeightPrecision::F32, WeightPrecision::Bf16];

    /// The name `FromStr` takes.
    pub fn name(self) -> &'static str {
        match self {
            WeightPrecision::F32 => "f32",
            WeightPrecision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for WeightPrecision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
            format!("unknown weight precision {s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// Row counts up to which [`linear_rows`] multiplies in the transposed order.
const THIN_ROWS: usize = 64;

/// `x @ weight^T + bias` for a PyTorch-layout `weight` [out, in], over the last dimension of x.
///
/// The rows of x are flattened into one matrix so that the transposed weight stays a strided
/// view that gemm reads in place: burn's `linear` reshapes the weight to x's rank, and on
/// Flex reshaping a transposed view copies the whole matrix, once per call.
pub fn linear_rows<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    let dims = x.dims();
    let d_in = dims[D - 1];
    let d_out = weight.dims()[0];
    let rows = dims[..D - 1].iter().product::<usize>();
    let x = x.reshape([rows, d_in]);
    let mut out_dims = dims;
    out_dims[D - 1] = d_out;
    // A few rows on the CPU backend (decoding tokens): the weight streamed once.
    let x = match flex_kernels::linear_thin(x, &weight, bias.as_ref()) {
        Ok(out) => return out.reshape(out_dims),
        Err(x) => x,
    };
    // Many rows with f32 weights on the CPU backend: gemm adds the product onto the bias.
    let x = match rows > THIN_ROWS {
        true => match flex_kernels::linear_gemm(x, &weight, bias.as_ref()) {
            Ok(out) => return out.reshape(out_dims),
            Err(x) => x,
        },
        false => x,
    };
    // Reduced-precision weights are widened for gemm (prefilling a prompt, large batches).
    let weight = if weight.dtype() == x.dtype() { weight } else { flex_kernels::to_f32(weight) };
    // Few rows otherwise: as `(weight @ x^T)^T`, so that gemm sees the long side as its rows.
    let mut out =
        if rows <= THIN_ROWS { weight.matmul(x.transpose()).transpose() } else { x.matmul(weight.transpose()) };
    if let Some(bias) = bias {
        out = out + bias.unsqueeze::<2>();
    }
    out.reshape(out_dims)
}

#[derive(Module, Debug)]
pub struct Conv2d<B: Backend> {
    /// [out, in, kh, kw]
    pub weight: Param<Tensor<B, 4>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    stride: usize,
    padding: usize,
}

impl<B: Backend> Conv2d<B> {
    pub fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: usize, device: &B::Device) -> Self {
        let fan_in = c_in * kernel * kernel;
        Self {
            weight: uniform_fan_in([c_out, c_in, kernel, kernel], fan_in, device),
            bias: Some(uniform_fan_in([c_out], fan_in, device)),
            stride,
            padding,
        }
    }

    /// The same convolution without a bias (convs followed by a norm layer).
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_padded(x, [self.padding; 2])
    }

    /// The convolution over `x` zero-padded by `before` rows/columns at the top/left and
    /// `after` at the bottom/right (instead of the layer's own symmetric padding).
    pub fn forward_padded(&self, x: Tensor<B, 4>, [before, after]: [usize; 2]) -> Tensor<B, 4> {
        let [_, _, h, w] = x.dims();
        let [_, _, kh, kw] = self.weight.dims();
        let out = |size: usize, kernel: usize| (size + before + after).saturating_sub(kernel) / self.stride + 1;
        let geometry = ConvGeometry {
            stride: self.stride,
            pad_top: before,
            pad_left: before,
            out_h: out(h, kh),
            out_w: out(w, kw),
        };
        let bias = self.bias.as_ref().map(|b| b.val());
        match flex_kernels::conv2d(x, &self.weight.val(), bias.as_ref(), geometry) {
            Ok(out) => out,
            Err(x) => {
                let x = if before == after { x } else { x.pad((before, after, before, after), PadMode::Constant(0.0)) };
                let padding = if before == after { before } else { 0 };
                let options = ConvOptions::new([self.stride; 2], [padding; 2], [1, 1], 1);
                conv2d(x, self.weight.val(), bias, options)
            }
        }
    }
}

/// `nn.GroupNorm(num_groups, C, eps, affine=True)` over NCHW.
#[derive(Module, Debug)]
pub struct GroupNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    groups: usize,
    eps: f64,
}

impl<B: Backend> GroupNorm<B> {
    pub fn new(groups: usize, channels: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            groups,
            eps,
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match group_norm(x, &self.weight.val(), &self.bias.val(), self.groups, self.eps, false) {
            Ok(normed) => normed,
            Err(x) => self.forward_generic(x),
        }
    }

    /// `swish(self.forward(x))`, in one pass on the CPU backend.
    pub fn forward_swish(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match group_norm(x, &self.weight.val(), &self.bias.val(), self.groups, self.eps, true) {
            Ok(normed) => normed,
            Err(x) => swish(self.forward_generic(x)),
        }
    }

    fn forward_generic(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let grouped = x.reshape([b, self.groups, (c / self.groups) * h * w]);
        let mean = grouped.clone().mean_dim(2);
        let centered = grouped - mean;
        let var = centered.clone().powi_scalar(2).mean_dim(2);
        let normed = (centered / (var + self.eps).sqrt()).reshape([b, c, h, w]);
        normed * self.weight.val().reshape([1, c, 1, 1]) + self.bias.val().reshape([1, c, 1, 1])
    }
}

/// `nn.LayerNorm(C, eps)` over the last dimension.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    pub fn new(channels: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            eps,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let x = match flex_kernels::layer_norm(x, &self.weight.val(), &self.bias.val(), self.eps) {
            Ok(out) => return out,
            Err(x) => x,
        };
        let mean = x.clone().mean_dim(D - 1);
        let centered = x - mean;
        let var = centered.clone().powi_scalar(2).mean_dim(D - 1);
        let normed = centered / (var + self.eps).sqrt();
        normed * self.weight.val().unsqueeze() + self.bias.val().unsqueeze()
    }
}

/// `nn.BatchNorm2d(C, eps)`: batch statistics and a running-average update in training,
/// the running statistics in evaluation.
#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub running_mean: RunningState<Tensor<B, 1>>,
    pub running_var: RunningState<Tensor<B, 1>>,
    eps: f64,
    momentum: f64,
}

impl<B: Backend> BatchNorm2d<B> {
    pub fn new(channels: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            eps,
            momentum: 0.1,
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>, training: bool) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let channel = |t: Tensor<B, 1>| t.reshape([1, c, 1, 1]);
        let (mean, var) = if training {
            let flat = x.clone().swap_dims(0, 1).reshape([c, b * h * w]);
            let mean = flat.clone().mean_dim(1);
            let var = (flat - mean.clone()).powi_scalar(2).mean_dim(1).reshape([c]);
            let mean = mean.reshape([c]);
            // PyTorch keeps the unbiased variance in the running estimate.
            let n = (b * h * w) as f64;
            let unbiased = var.clone().detach() * (n / (n - 1.0).max(1.0));
            let m = self.momentum;
            self.running_mean.update(self.running_mean.value().detach() * (1.0 - m) + mean.clone().detach() * m);
            self.running_var.update(self.running_var.value().detach() * (1.0 - m) + unbiased * m);
            (mean, var)
        } else {
            (self.running_mean.value(), self.running_var.value())
        };
        let normed = (x - channel(mean)) / channel(var + self.eps).sqrt();
        normed * channel(self.weight.val()) + channel(self.bias.val())
    }
}

/// Scaled dot-product attention, the one every model here uses (tokenizer attention block,
/// adapters, FAR, the CLIP and DINOv2 teachers): `softmax(q k^T / sqrt(d), masked) v` per head,
/// for q `[B, H, Nq, d]` and k, v `[B, H, Nk, d]`. `mask` (`true` hides a key) broadcasts over
/// batch and heads; `on_weights` sees the attention weights first (dropout in training).
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    on_weights: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 4>,
) -> Tensor<B, 4> {
    let head_dim = q.dims()[3];
    let mut scores = q.matmul(k.swap_dims(2, 3)) * (head_dim as f64).powf(-0.5);
    if let Some(mask) = mask {
        scores = scores.mask_fill(mask, f32::NEG_INFINITY);
    }
    on_weights(softmax(scores, 3)).matmul(v)
}

/// [`attention`] without a mask or a hook on the weights, the CPU backend's in one kernel
/// that reads the heads in place.
pub fn unmasked_attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let scale = (q.dims()[3] as f64).powf(-0.5);
    match flex_kernels::attention(q, k, v, scale as f32) {
        Ok(out) => out,
        Err([q, k, v]) => attention(q, k, v, None, |w| w),
    }
}

/// `x + h`: a residual connection, in one parallel pass on the CPU backend.
pub fn residual<B: Backend, const D: usize>(x: Tensor<B, D>, h: Tensor<B, D>) -> Tensor<B, D> {
    flex_kernels::add(h, x).unwrap_or_else(|[h, x]| x + h)
}

/// Exact (erf) GELU.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    flex_kernels::gelu(x).unwrap_or_else(burn::tensor::activation::gelu)
}

/// `[B, N, heads * d]` -> `[B, heads, N, d]`, and back with [`merge_heads`].
pub fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, n, width] = x.dims();
    x.reshape([b, n, heads, width / heads]).swap_dims(1, 2)
}

pub fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, heads, n, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, n, heads * d])
}

/// `x * sigmoid(x)`, the CNN's nonlinearity.
pub fn swish<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    burn::tensor::activation::silu(x)
}

/// `RMSNorm(dim, eps)` over the last dimension: `x * rsqrt(mean(x^2) + eps) * weight`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn new(channels: usize, eps: f64, device: &B::Device) -> Self {
        Self { weight: Param::from_tensor(Tensor::ones([channels], device)), eps }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let mean_square = x.clone().powi_scalar(2).mean_dim(D - 1);
        // A division, not `recip()`: burn-ndarray 0.21's SIMD recip is the hardware estimate
        // (`rcp_ps`, 12 bits on AVX2), 3e-4 off (burn#5552, fixed after 0.21).
        x / (mean_square + self.eps).sqrt() * self.weight.val().unsqueeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Cpu, NdArray};
    use burn::tensor::TensorData;

    /// RMSNorm against an f64 reference on both CPU backends, with enough rows (>= 32) that
    /// burn-ndarray takes its SIMD paths, where a reciprocal estimate once cost 3e-4.
    fn assert_rms_norm_is_exact<B: Backend>() {
        let (rows, channels) = (40, 64);
        let x: Vec<f32> = (0..rows * channels).map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0).collect();
        let norm = RmsNorm::<B>::new(channels, 1e-5, &Default::default());
        let input = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [rows, channels]), &Default::default());
        let out: Vec<f32> = norm.forward(input).into_data().to_vec().unwrap();
        for (row, (x, out)) in x.chunks(channels).zip(out.chunks(channels)).enumerate() {
            let mean_square = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / channels as f64;
            let scale = (mean_square + 1e-5).sqrt();
            for (&v, &o) in x.iter().zip(out) {
                let expected = f64::from(v) / scale;
                let err = (f64::from(o) - expected).abs();
                assert!(err <= 1e-6 * expected.abs().max(1.0), "row {row}: {o} vs {expected} (error {err:.1e})");
            }
        }
    }

    #[test]
    fn rms_norm_is_exact_on_flex() {
        assert_rms_norm_is_exact::<Cpu>();
    }

    #[test]
    fn rms_norm_is_exact_on_ndarray() {
        assert_rms_norm_is_exact::<NdArray>();
    }
}

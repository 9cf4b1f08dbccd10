//! The basic layers, with parameters stored exactly as PyTorch stores them (`weight` [out, in],
//! `bias`), so that module paths are official checkpoint keys and loading needs no transposes.

use burn::module::{Module, Param, RunningState};
use burn::tensor::backend::Backend;
use burn::tensor::module::{conv2d, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};

/// PyTorch's default init for Linear/Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
fn uniform_fan_in<B: Backend, const D: usize>(
    shape: [usize; D],
    fan_in: usize,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Param::from_tensor(Tensor::random(shape, Distribution::Uniform(-bound, bound), device))
}

/// A tensor parameter drawn from N(0, std^2), as PyTorch initialises embeddings and tables.
pub fn normal_param<B: Backend, const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, std), device))
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
        linear(x, self.weight.val().transpose(), self.bias.as_ref().map(|b| b.val()))
    }
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
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
        conv2d(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()), options)
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
        x * (mean_square + self.eps).sqrt().recip() * self.weight.val().unsqueeze()
    }
}

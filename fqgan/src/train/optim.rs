//! AdamW with global-norm gradient clipping, PyTorch semantics, and a state keyed by
//! parameter path so that it saves to (and resumes from) safetensors like the weights.
//!
//! burn's own clipping is per tensor and its optimizer records are keyed by run-time ids;
//! training checkpoints need neither.

use std::collections::{BTreeMap, HashMap};

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};
use crate::flex_kernels::{self, AdamWStep};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Decay only parameters with 2 or more dimensions (weights and embeddings, not biases
    /// or norm scales), as the official FAR recipe's `creat_optimizer` groups them.
    pub decay_matrices_only: bool,
    /// Max global L2 norm of the gradients; `None` leaves them as they are.
    pub max_grad_norm: Option<f64>,
}

impl AdamWConfig {
    /// The official tokenizer recipe: lr 2e-4, betas (0.9, 0.95), no weight decay, clip 1.0.
    pub fn tokenizer() -> Self {
        Self {
            lr: 2e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
            decay_matrices_only: false,
            max_grad_norm: Some(1.0),
        }
    }

    /// The official FAR recipe: lr 1e-4 (for batch 256), betas (0.9, 0.95), weight decay
    /// 0.05 on matrices only, clip 1.0.
    pub fn far() -> Self {
        Self { lr: 1e-4, weight_decay: 0.05, decay_matrices_only: true, ..Self::tokenizer() }
    }
}

/// First and second moments of one parameter, flattened.
struct Moments<B: Backend> {
    m: Tensor<B, 1>,
    v: Tensor<B, 1>,
}

pub struct AdamW<B: AutodiffBackend> {
    pub config: AdamWConfig,
    /// Updates applied so far (for bias correction).
    pub steps: u64,
    state: HashMap<String, Moments<B::InnerBackend>>,
}

/// What one optimizer step saw.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl<B: AutodiffBackend> AdamW<B> {
    pub fn new(config: AdamWConfig) -> Self {
        Self { config, steps: 0, state: HashMap::new() }
    }

    /// Applies one update to every parameter of `module` that has a gradient in `grads`.
    pub fn step<M: AutodiffModule<B>>(&mut self, module: M, grads: B::Gradients) -> (M, StepStats) {
        let grads = GradientsParams::from_grads(grads, &module);
        self.step_params(module, grads)
    }

    /// [`AdamW::step`] with gradients already keyed by parameter (e.g. accumulated ones).
    pub fn step_params<M: AutodiffModule<B>>(&mut self, module: M, mut grads: GradientsParams) -> (M, StepStats) {
        let grad_norm = global_norm::<B, M>(&module, &grads);
        let scale = match self.config.max_grad_norm {
            Some(max) => (max / (grad_norm + 1e-6)).min(1.0),
            None => 1.0,
        };
        self.steps += 1;
        let mut update = Update { optimizer: self, grads: &mut grads, scale, path: Vec::new() };
        let module = module.map(&mut update);
        (module, StepStats { grad_norm })
    }

    /// The moments as tensors named `<prefix><param path>.exp_avg` / `.exp_avg_sq`.
    pub fn state_tensors(&self, prefix: &str) -> BTreeMap<String, TensorData> {
        let mut out = BTreeMap::new();
        for (path, moments) in &self.state {
            out.insert(format!("{prefix}{path}.exp_avg"), moments.m.to_data());
            out.insert(format!("{prefix}{path}.exp_avg_sq"), moments.v.to_data());
        }
        out
    }

    /// Restores moments written by [`AdamW::state_tensors`] with the same prefix, for the
    /// parameters of `module`: each pair must belong to one of its parameters and have its size,
    /// hold finite float values, and a second moment that is not negative (a crafted or
    /// damaged checkpoint would otherwise panic or poison the run in the first step).
    pub fn load_state<M: AutodiffModule<B>>(
        &mut self,
        module: &M,
        tensors: &HashMap<String, TensorData>,
        prefix: &str,
        steps: u64,
        device: &B::Device,
    ) -> Result<()> {
        let sizes = parameter_sizes(module);
        self.state.clear();
        self.steps = steps;
        for (key, data) in tensors {
            let Some(path) = key.strip_prefix(prefix).and_then(|k| k.strip_suffix(".exp_avg")) else { continue };
            let bad = |problem: String| Error::Input(format!("optimizer state for '{path}': {problem}"));
            let second = tensors
                .get(&format!("{prefix}{path}.exp_avg_sq"))
                .ok_or_else(|| bad("has exp_avg but no exp_avg_sq".into()))?;
            let size = *sizes.get(path).ok_or_else(|| bad("the model has no such parameter".into()))?;
            let [m, v] =
                [data, second].map(|d| crate::weights::float_values(d).map_err(|p| bad(format!("a moment {p}"))));
            let (m, v) = (m?, v?);
            for (name, moment) in [("exp_avg", &m), ("exp_avg_sq", &v)] {
                if moment.num_elements() != size {
                    return Err(bad(format!("{name} has {} values, the parameter {size}", moment.num_elements())));
                }
            }
            if v.as_slice::<f32>().expect("f32 values").iter().any(|&x| x < 0.0) {
                return Err(bad("exp_avg_sq holds a negative value".into()));
            }
            let tensor = |d: TensorData| {
                let values: Vec<f32> = d.to_vec().expect("f32 values");
                Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(values, [size]), device)
            };
            self.state.insert(path.to_string(), Moments { m: tensor(m), v: tensor(v) });
        }
        Ok(())
    }
}

/// The element count of every float parameter of `module`, by the path the optimizer keys
/// its state with.
fn parameter_sizes<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M) -> HashMap<String, usize> {
    struct Sizes {
        path: Vec<String>,
        sizes: HashMap<String, usize>,
    }
    impl<B: Backend> ModuleVisitor<B> for Sizes {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.sizes.insert(self.path.join("."), param.lazy_shape().num_elements());
        }
    }
    let mut sizes = Sizes { path: Vec::new(), sizes: HashMap::new() };
    module.visit(&mut sizes);
    sizes.sizes
}

/// sqrt(sum over parameters of |grad|^2), as `torch.nn.utils.clip_grad_norm_` computes it:
/// summed on the device and read back once.
fn global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: &GradientsParams) -> f64 {
    struct SumSquares<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        sums: Vec<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
                self.sums.push(grad.powi_scalar(2).sum());
            }
        }
    }
    use burn::tensor::ElementConversion;
    let mut visitor = SumSquares::<B> { grads, sums: Vec::new() };
    module.visit(&mut visitor);
    if visitor.sums.is_empty() {
        return 0.0;
    }
    Tensor::cat(visitor.sums, 0).sum().into_scalar().elem::<f64>().sqrt()
}

struct Update<'a, B: AutodiffBackend> {
    optimizer: &'a mut AdamW<B>,
    grads: &'a mut GradientsParams,
    scale: f64,
    path: Vec<String>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Update<'_, B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let id: ParamId = param.id;
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else { return param };
        let (id, value, mapper) = param.consume();
        let c = self.optimizer.config;
        let t = self.optimizer.steps as i32;
        let shape = value.dims();
        let flat = value.inner().reshape([-1]);
        let path = self.path.join(".");
        // Taken out of the state (and put back below) so that the kernel owns their buffers.
        let Moments { m, v } = self
            .optimizer
            .state
            .remove(&path)
            .unwrap_or_else(|| Moments { m: flat.zeros_like(), v: flat.zeros_like() });
        let decay = if D >= 2 || !c.decay_matrices_only { c.weight_decay } else { 0.0 };
        let step = AdamWStep {
            lr: c.lr as f32,
            beta1: c.beta1 as f32,
            beta2: c.beta2 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            eps: c.eps as f32,
            decay_factor: (1.0 - c.lr * decay) as f32,
            grad_scale: self.scale as f32,
            bias_correction1: (1.0 - c.beta1.powi(t)) as f32,
            bias_correction2: (1.0 - c.beta2.powi(t)) as f32,
        };
        let (updated, moments) = match flex_kernels::adamw(flat, grad.reshape([-1]), [m, v], &step) {
            Ok([updated, m, v]) => (updated, Moments { m, v }),
            Err([flat, grad, m, v]) => {
                let grad = grad * self.scale;
                let m = m * c.beta1 + grad.clone() * (1.0 - c.beta1);
                let v = v * c.beta2 + grad.powi_scalar(2) * (1.0 - c.beta2);
                let m_hat = m.clone() / (1.0 - c.beta1.powi(t));
                let v_hat = v.clone() / (1.0 - c.beta2.powi(t));
                (flat * (1.0 - c.lr * decay) - m_hat / (v_hat.sqrt() + c.eps) * c.lr, Moments { m, v })
            }
        };
        self.optimizer.state.insert(path, moments);
        let value = Tensor::from_inner(updated.reshape(shape)).require_grad();
        Param::from_mapped_value(id, value, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;

    type B = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Pair<B: Backend> {
        a: Param<Tensor<B, 1>>,
        b: Param<Tensor<B, 2>>,
    }

    fn pair() -> Pair<B> {
        let device = Default::default();
        Pair {
            a: Param::from_tensor(Tensor::from_floats([1.0, -2.0], &device)),
            b: Param::from_tensor(Tensor::from_floats([[0.5], [3.0]], &device)),
        }
    }

    #[test]
    fn first_step_moves_each_weight_by_lr_against_its_gradient_sign() {
        // Adam's first step is lr * g / (|g| + eps) = ~lr * sign(g), whatever the clipping.
        let model = pair();
        let loss = model.a.val().sum() * 3.0 - model.b.val().sum();
        let config = AdamWConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
            decay_matrices_only: false,
            max_grad_norm: Some(1.0),
        };
        let mut optim = AdamW::new(config);
        let (model, stats) = optim.step(model, loss.backward());
        assert!((stats.grad_norm - (9.0f64 * 2.0 + 2.0).sqrt()).abs() < 1e-5);
        let a: Vec<f32> = model.a.val().into_data().to_vec().unwrap();
        let b: Vec<f32> = model.b.val().into_data().to_vec().unwrap();
        assert!((a[0] - 0.9).abs() < 1e-5 && (a[1] + 2.1).abs() < 1e-5, "{a:?}");
        assert!((b[0] - 0.6).abs() < 1e-5 && (b[1] - 3.1).abs() < 1e-5, "{b:?}");
    }

    #[test]
    fn damaged_optimizer_state_is_refused_by_name() {
        let model = pair();
        let mut optim = AdamW::<B>::new(AdamWConfig::tokenizer());
        let loss = model.a.val().powi_scalar(2).sum() + model.b.val().sum();
        let model = optim.step(model, loss.backward()).0;
        let saved: HashMap<String, TensorData> = optim.state_tensors("optim.").into_iter().collect();
        let key = saved.keys().find(|k| k.ends_with(".exp_avg_sq")).unwrap().clone();
        let n = saved[&key].num_elements();
        let cases: [(&str, TensorData); 4] = [
            ("values, the parameter", TensorData::new(vec![0.5f32; n + 1], [n + 1])),
            ("non-finite", TensorData::new(vec![f32::NAN; n], [n])),
            ("negative", TensorData::new(vec![-1.0f32; n], [n])),
            ("I64", TensorData::new(vec![1i64; n], [n])),
        ];
        for (problem, data) in cases {
            let mut damaged = saved.clone();
            damaged.insert(key.clone(), data);
            let mut fresh = AdamW::<B>::new(AdamWConfig::tokenizer());
            let err = fresh.load_state(&model, &damaged, "optim.", 1, &Default::default()).unwrap_err().to_string();
            assert!(err.contains(problem) && err.contains("optimizer state for"), "{problem}: {err}");
        }
        let mut stray = saved.clone();
        stray.insert("optim.nothing.exp_avg".into(), TensorData::new(vec![0f32; 2], [2]));
        stray.insert("optim.nothing.exp_avg_sq".into(), TensorData::new(vec![0f32; 2], [2]));
        let mut fresh = AdamW::<B>::new(AdamWConfig::tokenizer());
        let err = fresh.load_state(&model, &stray, "optim.", 1, &Default::default()).unwrap_err().to_string();
        assert!(err.contains("'nothing'") && err.contains("no such parameter"), "{err}");
    }

    #[test]
    fn saved_state_resumes_identically() {
        let run = |split: bool| {
            let mut model = pair();
            let mut optim = AdamW::<B>::new(AdamWConfig::tokenizer());
            for step in 0..4 {
                if split && step == 2 {
                    let saved = optim.state_tensors("optim.");
                    let mut fresh = AdamW::<B>::new(AdamWConfig::tokenizer());
                    fresh
                        .load_state(&model, &saved.into_iter().collect(), "optim.", optim.steps, &Default::default())
                        .unwrap();
                    optim = fresh;
                }
                let loss = (model.a.val().powi_scalar(2).sum() + model.b.val().sum() * 0.5) * (step as f64 + 1.0);
                model = optim.step(model, loss.backward()).0;
            }
            model.a.val().into_data()
        };
        assert_eq!(run(false), run(true));
    }

    /// The Flex kernel (Autodiff<Flex>) against the generic ops (Autodiff<NdArray>) over a
    /// few steps with weight decay on matrices only and clipping that bites: parameters and
    /// both moments agree.
    #[test]
    fn kernel_steps_equal_the_generic_steps() {
        fn run<A: AutodiffBackend>() -> Vec<Vec<f32>> {
            let device = Default::default();
            let mut model = Pair::<A> {
                a: Param::from_tensor(Tensor::from_floats([1.0, -2.0, 0.25], &device)),
                b: Param::from_tensor(Tensor::from_floats([[0.5, -1.5], [3.0, 0.0]], &device)),
            };
            let config = AdamWConfig { weight_decay: 0.1, decay_matrices_only: true, ..AdamWConfig::far() };
            let mut optim = AdamW::<A>::new(config);
            for step in 0..5 {
                let b = model.b.val();
                let loss = (model.a.val().powi_scalar(2).sum() * 3.0 + (b.clone() * b).sum()) * (step as f64 + 1.0);
                model = optim.step(model, loss.backward()).0;
            }
            let mut out: Vec<Vec<f32>> =
                optim.state_tensors("").into_values().map(|d| d.convert::<f32>().to_vec().unwrap()).collect();
            out.push(model.a.val().into_data().convert::<f32>().to_vec().unwrap());
            out.push(model.b.val().into_data().convert::<f32>().to_vec().unwrap());
            out
        }
        let (fast, generic) = (run::<B>(), run::<Autodiff<burn::backend::NdArray>>());
        assert_eq!(fast.len(), 6);
        for (fast, generic) in fast.iter().zip(&generic) {
            for (f, g) in fast.iter().zip(generic) {
                assert!((f - g).abs() <= 1e-6 * g.abs().max(1.0), "{fast:?} vs {generic:?}");
            }
        }
    }
}

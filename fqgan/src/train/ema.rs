//! Exponential moving average of a model's weights (official `utils/ema.py`): after every
//! optimizer step `ema = decay * ema + (1 - decay) * weights`, kept outside autodiff.

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

/// The averaged copy of a model `A` on the inner (non-autodiff) backend.
pub struct Ema<M> {
    pub decay: f64,
    pub model: M,
}

impl<M> Ema<M> {
    /// Starts as an exact copy of `model` (the official `update_ema(ema, model, decay=0)`).
    pub fn new<B: AutodiffBackend, A: AutodiffModule<B, InnerModule = M>>(model: &A, decay: f64) -> Self {
        Self { decay, model: model.valid() }
    }

    /// Moves every float parameter towards `model`'s. Parameters pair up by visiting order,
    /// which is the same for two modules built from one config.
    pub fn update<B: AutodiffBackend, A: AutodiffModule<B, InnerModule = M>>(&mut self, model: &A)
    where
        M: Module<B::InnerBackend>,
    {
        let mut collect = Collect::<B> { values: Vec::new() };
        model.visit(&mut collect);
        let mut blend = Blend { decay: self.decay, values: collect.values.into_iter() };
        self.model = self.model.clone().map(&mut blend);
    }
}

struct Collect<B: AutodiffBackend> {
    values: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.values.push(param.val().inner().reshape([-1]));
    }
}

struct Blend<I: Iterator> {
    decay: f64,
    values: I,
}

impl<B: Backend, I: Iterator<Item = Tensor<B, 1>>> ModuleMapper<B> for Blend<I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, value, mapper) = param.consume();
        let current = self.values.next().expect("the EMA copy has the model's parameters");
        let blended = value.clone() * self.decay + current.reshape(value.dims()) * (1.0 - self.decay);
        Param::from_mapped_value(id, blended, mapper)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};

    use super::*;

    type B = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Pair<B: Backend> {
        a: Param<Tensor<B, 1>>,
        b: Param<Tensor<B, 2>>,
    }

    fn pair(a: [f32; 2], b: f32) -> Pair<B> {
        let device = Default::default();
        Pair {
            a: Param::from_tensor(Tensor::from_floats(a, &device)),
            b: Param::from_tensor(Tensor::from_floats([[b]], &device)),
        }
    }

    #[test]
    fn each_update_moves_a_decay_fraction_of_the_way() {
        let mut ema = Ema::new(&pair([1.0, 2.0], 4.0), 0.75);
        ema.update(&pair([5.0, 2.0], 0.0));
        ema.update(&pair([5.0, 2.0], 0.0));
        // 1 -> 2 -> 2.75; 4 -> 3 -> 2.25; an unchanged weight stays.
        let a: Vec<f32> = ema.model.a.val().into_data().to_vec().unwrap();
        let b: Vec<f32> = ema.model.b.val().into_data().to_vec().unwrap();
        assert_eq!((a, b), (vec![2.75, 2.0], vec![2.25]));
    }
}

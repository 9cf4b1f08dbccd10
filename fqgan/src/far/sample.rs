//! Sampling one sub-token from logits, as the official `sample_from_logits`: divide by the
//! temperature, keep the top-k and then the top-p nucleus, softmax, draw. All of it runs on the
//! device; only the uniform number of each draw comes from the host, from a seeded ChaCha RNG,
//! so a seed gives the same tokens on the same device.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::Arg;

/// Sampling parameters of one sub-token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubTokenSampling {
    /// Classifier-free guidance: `uncond + (cond - uncond) * cfg_scale`; 1 means no guidance.
    pub cfg_scale: f64,
    pub temperature: f64,
    /// Keep the k most likely ids; 0 keeps all, 1 is greedy.
    pub top_k: usize,
    /// Keep the smallest set of most likely ids whose probability reaches `top_p`; 1 keeps all.
    pub top_p: f64,
}

impl Default for SubTokenSampling {
    /// The official sampling script's defaults.
    fn default() -> Self {
        Self { cfg_scale: 2.0, temperature: 1.0, top_k: 0, top_p: 1.0 }
    }
}

impl SubTokenSampling {
    /// Deterministic argmax decoding with guidance `cfg_scale`.
    pub fn greedy(cfg_scale: f64) -> Self {
        Self { cfg_scale, temperature: 1.0, top_k: 1, top_p: 1.0 }
    }

    /// Errors naming the first parameter out of range; `which` follows the value in the
    /// message (" for sub-token 2", or "" where one setting serves every sub-token).
    pub fn validate(&self, which: &str) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            let message = format!("is {}{which}; it must be positive and finite", self.temperature);
            return Err(Error::argument(Arg::Temperature, message));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::argument(Arg::TopP, format!("is {}{which}; it must be in (0, 1]", self.top_p)));
        }
        if !self.cfg_scale.is_finite() {
            return Err(Error::argument(Arg::CfgScale, format!("is {}{which}; it must be finite", self.cfg_scale)));
        }
        Ok(())
    }
}

pub struct Sampler {
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// One id per row of `logits` `[rows, vocab]`, as `[rows, 1]`, drawn on the device: only
    /// the uniform numbers come from the host, so sampling needs no read-back.
    pub fn sample<B: Backend>(&mut self, logits: Tensor<B, 2>, params: &SubTokenSampling) -> Tensor<B, 2, Int> {
        let rows = logits.dims()[0];
        let uniform: Vec<f32> = (0..rows).map(|_| self.rng.random::<f64>() as f32).collect();
        let uniform = Tensor::from_data(TensorData::new(uniform, [rows, 1]), &logits.device());
        draw(filtered_probs(logits, params), uniform)
    }
}

/// The sampling distribution of each row of `logits` `[rows, vocab]`.
pub fn filtered_probs<B: Backend>(logits: Tensor<B, 2>, params: &SubTokenSampling) -> Tensor<B, 2> {
    let [rows, vocab] = logits.dims();
    let mut logits = logits / params.temperature;
    if params.top_k > 0 && params.top_k < vocab {
        // Ties with the k-th value are kept, as `logits < topk(...)[..., -1]` does.
        let kth = logits.clone().topk(params.top_k, 1).narrow(1, params.top_k - 1, 1);
        let below = logits.clone().lower(kth.expand([rows, vocab]));
        logits = logits.mask_fill(below, f32::NEG_INFINITY);
    }
    if params.top_p < 1.0 {
        let device = logits.device();
        let (sorted, order) = logits.clone().sort_descending_with_indices(1);
        let cumulative = softmax(sorted, 1).cumsum(1);
        // An id goes when the ids before it already pass the threshold: the first id past it
        // stays, so the kept mass reaches top_p.
        let passed = cumulative.narrow(1, 0, vocab - 1).greater_elem(params.top_p).float();
        let dropped_sorted = Tensor::cat(vec![Tensor::zeros([rows, 1], &device), passed], 1);
        let dropped = Tensor::zeros([rows, vocab], &device).scatter(1, order, dropped_sorted, IndexingUpdateOp::Add);
        logits = logits.mask_fill(dropped.greater_elem(0.5), f32::NEG_INFINITY);
    }
    softmax(logits, 1)
}

/// Inverse-CDF draw, one id per row of `probs` with its `uniform` number in [0, 1); never an id
/// of probability 0.
fn draw<B: Backend>(probs: Tensor<B, 2>, uniform: Tensor<B, 2>) -> Tensor<B, 2, Int> {
    let [rows, vocab] = probs.dims();
    let device = probs.device();
    let cdf = probs.clone().cumsum(1);
    let target = cdf.clone().narrow(1, vocab - 1, 1) * uniform;
    // The first id whose cumulative probability passes the target: it has a probability above 0.
    let first_past = cdf.lower_equal(target.expand([rows, vocab])).int().sum_dim(1);
    // Rounding can put the target at the total; the last possible id then takes it.
    let ids = Tensor::<B, 1, Int>::arange(0..vocab as i64, &device).unsqueeze::<2>().expand([rows, vocab]);
    let last_possible = (probs.greater_elem(0.0).int() * ids).max_dim(1);
    first_past.min_pair(last_possible)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Cpu;

    fn params(top_k: usize, top_p: f64, temperature: f64) -> SubTokenSampling {
        SubTokenSampling { cfg_scale: 1.0, temperature, top_k, top_p }
    }

    fn rows(values: &[f32], vocab: usize) -> Tensor<Cpu, 2> {
        Tensor::from_data(TensorData::new(values.to_vec(), [values.len() / vocab, vocab]), &Default::default())
    }

    fn probs(logits: &[f32], params: &SubTokenSampling) -> Vec<f32> {
        filtered_probs(rows(logits, logits.len()), params).into_data().to_vec().unwrap()
    }

    fn sample(sampler: &mut Sampler, logits: &[f32], vocab: usize, params: &SubTokenSampling) -> Vec<i64> {
        sampler.sample(rows(logits, vocab), params).into_data().convert::<i64>().to_vec().unwrap()
    }

    #[test]
    fn top_k_keeps_the_k_largest_and_their_ties() {
        let kept = probs(&[1.0, 3.0, 2.0, 0.0], &params(2, 1.0, 1.0));
        assert_eq!((kept[0], kept[3]), (0.0, 0.0));
        assert!((kept[1] / kept[2] - 1f32.exp()).abs() < 1e-5);
        let tied = probs(&[2.0, 1.0, 2.0, 0.0], &params(1, 1.0, 1.0));
        assert_eq!(tied, [0.5, 0.0, 0.5, 0.0]);
    }

    #[test]
    fn top_p_keeps_the_first_id_past_the_threshold() {
        // Probabilities 0.2, 0.5, 0.3: top_p 0.6 keeps the two largest, 0.5 keeps only one.
        let logits = [0.2f32.ln(), 0.5f32.ln(), 0.3f32.ln()];
        let kept = |top_p| probs(&logits, &params(0, top_p, 1.0)).iter().map(|&p| p > 0.0).collect::<Vec<_>>();
        assert_eq!(kept(0.6), [false, true, true]);
        assert_eq!(kept(0.5), [false, true, false]);
        assert_eq!(kept(1.0), [true, true, true]);
    }

    #[test]
    fn temperature_sharpens_and_greedy_is_argmax() {
        let logits = [1.0f32, 2.0];
        let hot = probs(&logits, &params(0, 1.0, 2.0));
        let cold = probs(&logits, &params(0, 1.0, 0.5));
        assert!(cold[1] > hot[1]);
        let mut sampler = Sampler::new(7);
        let greedy = SubTokenSampling::greedy(1.0);
        assert_eq!(sample(&mut sampler, &[0.1, 0.9, 0.5, 2.0, 1.0, 1.5], 3, &greedy), [1, 0]);
    }

    #[test]
    fn same_seed_same_draws_and_frequencies_follow_the_probabilities() {
        let logits: Vec<f32> = [0.1f32, 0.0, 0.2, 0.7].iter().map(|p| p.ln()).collect::<Vec<_>>().repeat(4000);
        let draws = sample(&mut Sampler::new(3), &logits, 4, &params(0, 1.0, 1.0));
        assert_eq!(draws, sample(&mut Sampler::new(3), &logits, 4, &params(0, 1.0, 1.0)));
        assert_ne!(draws, sample(&mut Sampler::new(4), &logits, 4, &params(0, 1.0, 1.0)));
        let share = |id| draws.iter().filter(|&&d| d == id).count() as f64 / draws.len() as f64;
        assert_eq!(share(1), 0.0, "an id of probability 0 was drawn");
        assert!((share(0) - 0.1).abs() < 0.03 && (share(3) - 0.7).abs() < 0.03, "{} {}", share(0), share(3));
    }

    #[test]
    fn a_draw_at_the_top_of_the_range_takes_the_last_possible_id() {
        let probs = rows(&[0.5, 0.5, 0.0, 0.0, 1.0, 0.0], 3);
        let ids = draw(probs, rows(&[1.0, 1.0], 1)).into_data().convert::<i64>().to_vec::<i64>().unwrap();
        assert_eq!(ids, [1, 1]);
    }

    #[test]
    fn bad_parameters_name_the_value() {
        let err = params(0, 1.5, 1.0).validate(" for sub-token 2").unwrap_err().to_string();
        assert_eq!(err, "top_p is 1.5 for sub-token 2; it must be in (0, 1]");
        assert!(params(0, 1.0, 0.0).validate("").unwrap_err().to_string().starts_with("temperature is 0;"));
    }
}

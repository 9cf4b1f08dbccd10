//! Sampling one sub-token from logits, as the official `sample_from_logits`: divide by the
//! temperature, keep the top-k and then the top-p nucleus, softmax, draw. The draw happens on
//! the host from a seeded ChaCha RNG, so a seed gives the same tokens on the same device.

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

    /// One id per row of `logits` (row-major `[rows, vocab]`).
    pub fn sample(&mut self, logits: &[f32], vocab: usize, params: &SubTokenSampling) -> Vec<i64> {
        logits
            .chunks_exact(vocab)
            .map(|row| {
                let probs = filtered_probs(row, params);
                draw(&probs, self.rng.random::<f64>()) as i64
            })
            .collect()
    }
}

/// The sampling distribution of one row of logits.
pub fn filtered_probs(row: &[f32], params: &SubTokenSampling) -> Vec<f64> {
    let temperature = params.temperature as f32;
    let mut logits: Vec<f32> = row.iter().map(|&x| x / temperature).collect();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if params.top_k > 0 {
        // Ties with the k-th value are kept, as `logits < topk(...)[..., -1]` does.
        let kth = logits[order[params.top_k.min(logits.len()) - 1]];
        logits.iter_mut().filter(|x| **x < kth).for_each(|x| *x = f32::NEG_INFINITY);
    }
    if params.top_p < 1.0 {
        let sorted: Vec<f32> = order.iter().map(|&i| logits[i]).collect();
        let probs = softmax(&sorted);
        let mut cumulative = 0.0;
        // The first id past the threshold stays, so the kept mass reaches top_p.
        let mut previous_above = false;
        for (&i, p) in order.iter().zip(probs) {
            if previous_above {
                logits[i] = f32::NEG_INFINITY;
            }
            cumulative += p;
            previous_above = cumulative > params.top_p;
        }
    }
    softmax(&logits)
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exp: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// Inverse-CDF draw with `u` in [0, 1); never returns an id of probability 0.
fn draw(probs: &[f64], u: f64) -> usize {
    let target = u * probs.iter().sum::<f64>();
    let mut cumulative = 0.0;
    let mut last_possible = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            cumulative += p;
            last_possible = i;
            if cumulative > target {
                return i;
            }
        }
    }
    last_possible
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(top_k: usize, top_p: f64, temperature: f64) -> SubTokenSampling {
        SubTokenSampling { cfg_scale: 1.0, temperature, top_k, top_p }
    }

    #[test]
    fn top_k_keeps_the_k_largest() {
        let probs = filtered_probs(&[1.0, 3.0, 2.0, 0.0], &params(2, 1.0, 1.0));
        assert_eq!(probs[0], 0.0);
        assert_eq!(probs[3], 0.0);
        assert!((probs[1] / probs[2] - 1f64.exp()).abs() < 1e-9);
    }

    #[test]
    fn top_p_keeps_the_first_id_past_the_threshold() {
        // Probabilities 0.5, 0.3, 0.2: top_p 0.6 keeps the first two, 0.5 keeps only one.
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let kept = |top_p| filtered_probs(&logits, &params(0, top_p, 1.0)).iter().filter(|&&p| p > 0.0).count();
        assert_eq!(kept(0.6), 2);
        assert_eq!(kept(0.5), 1);
        assert_eq!(kept(1.0), 3);
    }

    #[test]
    fn temperature_sharpens_and_greedy_is_argmax() {
        let logits = [1.0f32, 2.0];
        let hot = filtered_probs(&logits, &params(0, 1.0, 2.0));
        let cold = filtered_probs(&logits, &params(0, 1.0, 0.5));
        assert!(cold[1] > hot[1]);
        let mut sampler = Sampler::new(7);
        let greedy = SubTokenSampling::greedy(1.0);
        assert!(sampler.sample(&[0.1, 0.9, 0.5, 2.0, 1.0, 1.5], 3, &greedy) == vec![1, 0]);
    }

    #[test]
    fn same_seed_same_draws_and_frequencies_follow_the_probabilities() {
        let logits: Vec<f32> = [0.1f32, 0.2, 0.7].iter().map(|p| p.ln()).collect::<Vec<_>>().repeat(4000);
        let draws = Sampler::new(3).sample(&logits, 3, &params(0, 1.0, 1.0));
        assert_eq!(draws, Sampler::new(3).sample(&logits, 3, &params(0, 1.0, 1.0)));
        assert_ne!(draws, Sampler::new(4).sample(&logits, 3, &params(0, 1.0, 1.0)));
        let share = |id| draws.iter().filter(|&&d| d == id).count() as f64 / draws.len() as f64;
        assert!((share(0) - 0.1).abs() < 0.03 && (share(2) - 0.7).abs() < 0.03, "{} {}", share(0), share(2));
    }

    #[test]
    fn bad_parameters_name_the_value() {
        let err = params(0, 1.5, 1.0).validate(" for sub-token 2").unwrap_err().to_string();
        assert_eq!(err, "top_p is 1.5 for sub-token 2; it must be in (0, 1]");
        assert!(params(0, 1.0, 0.0).validate("").unwrap_err().to_string().starts_with("temperature is 0;"));
    }
}

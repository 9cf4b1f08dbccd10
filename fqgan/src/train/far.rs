//! One FAR training step (official `autoregressive/train/train_c2i_*.py`): teacher-forced
//! cross entropy averaged over the k sub-tokens, label dropout to the null class for
//! classifier-free guidance, AdamW with global-norm clipping; and checkpoints that resume
//! exactly.
//!
//! Every random choice of step `s` (the batch, the view of each image, the dropped labels
//! and the dropout masks) is drawn from generators seeded by (seed, s), so the step and the
//! seed are the whole random state a checkpoint needs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::codes::Codes;
use super::optim::{AdamW, AdamWConfig};
use crate::data::step_indices;
use crate::error::{Error, Result};
use crate::far::checkpoint::far_key_map;
use crate::far::{Far, FarConfig};
use crate::weights::{load_module, module_tensors, write_safetensors, LoadRules, TensorFile};

pub const FAR_TRAINING_FORMAT: &str = "fqgan.far-training.v1";

/// What one step did, as plain numbers for logs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FarStepMetrics {
    pub step: u64,
    /// Mean cross entropy per sub-token, nats.
    pub loss: f64,
    pub grad_norm: f64,
    pub lr: f64,
    /// Labels replaced by the null class in this batch.
    pub dropped_labels: usize,
}

pub struct FarTraining<B: AutodiffBackend> {
    pub model: Far<B>,
    pub optim: AdamW<B>,
    /// Steps completed.
    pub step: u64,
    pub seed: u64,
}

/// A seed for stream `stream` of step `step`.
fn step_seed(seed: u64, step: u64, stream: u64) -> u64 {
    seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

impl<B: AutodiffBackend> FarTraining<B> {
    pub fn new(model: Far<B>, optim: AdamWConfig, seed: u64) -> Self {
        Self { model, optim: AdamW::new(optim), step: 0, seed }
    }

    /// The (image, view) rows of step `step`: a seeded permutation of the images per epoch,
    /// each with one seeded random view (official `CustomDataset` picks one crop per visit).
    pub fn batch_rows(codes: &Codes, batch_size: usize, seed: u64, step: u64) -> Vec<(usize, usize)> {
        let mut rng = StdRng::seed_from_u64(step_seed(seed, step, 1));
        step_indices(codes.images(), batch_size, seed, step)
            .into_iter()
            .map(|image| (image, rng.random_range(0..codes.views)))
            .collect()
    }

    /// One update on the next batch of `codes`.
    pub fn train_step(&mut self, codes: &Codes, batch_size: usize) -> Result<FarStepMetrics> {
        let device = self.model.device();
        let rows = Self::batch_rows(codes, batch_size, self.seed, self.step);
        let mut labels: Vec<usize> = rows.iter().map(|&(image, _)| codes.labels[image]).collect();
        let mut dropped = 0;
        if let Some(null) = self.model.config().null_class() {
            // Official `LabelEmbedder.token_drop`: each label independently, in training only.
            let p = self.model.config().class_dropout_prob;
            let mut rng = StdRng::seed_from_u64(step_seed(self.seed, self.step, 2));
            for label in &mut labels {
                if rng.random_bool(p) {
                    *label = null;
                    dropped += 1;
                }
            }
        }
        let (tokens, _) = codes.batch::<B>(&rows, &device);
        let labels = burn::tensor::Tensor::from_data(
            TensorData::new(labels.iter().map(|&l| l as i32).collect::<Vec<_>>(), [labels.len()]),
            &device,
        );
        // The dropout masks draw from the backend's generator: reseed it for this step.
        B::seed(&device, step_seed(self.seed, self.step, 3));
        let logits = self.model.forward(tokens.clone(), labels);
        let loss = self.model.loss(&logits, tokens);
        let value = loss.clone().into_scalar().elem::<f64>();
        if !value.is_finite() {
            return Err(Error::Input(format!("loss became {value} at step {}", self.step)));
        }
        let (model, stats) = self.optim.step(self.model.clone(), loss.backward());
        self.model = model;
        let metrics = FarStepMetrics {
            step: self.step,
            loss: value,
            grad_norm: stats.grad_norm,
            lr: self.optim.config.lr,
            dropped_labels: dropped,
        };
        self.step += 1;
        Ok(metrics)
    }

    /// Writes model, optimizer moments, step and seed to one safetensors file.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut tensors: BTreeMap<String, TensorData> = BTreeMap::new();
        for (key, value) in module_tensors(&self.model, &far_key_map(self.model.config())) {
            tensors.insert(format!("model.{key}"), value);
        }
        tensors.extend(self.optim.state_tensors("optim."));
        let metadata = HashMap::from([
            ("format".to_string(), FAR_TRAINING_FORMAT.to_string()),
            ("config".to_string(), self.model.config().to_json()),
            ("step".to_string(), self.step.to_string()),
            ("optim_steps".to_string(), self.optim.steps.to_string()),
            ("seed".to_string(), self.seed.to_string()),
        ]);
        write_safetensors(path, &tensors, metadata)
    }

    /// Restores a checkpoint written by [`FarTraining::save_checkpoint`] into `self` (built
    /// with the same config).
    pub fn load_checkpoint(&mut self, path: &Path, device: &B::Device) -> Result<()> {
        let file = TensorFile::read(path)?;
        file.check_format(FAR_TRAINING_FORMAT, true)?;
        let mut config = FarConfig::from_json(file.metadata.get("config").map(String::as_str).unwrap_or_default())
            .map_err(|e| Error::weights(path, format!("checkpoint config: {e}")))?;
        // Checkpoints from before generators stored class names take the run's.
        if config.class_names.is_empty() {
            config.class_names.clone_from(&self.model.config().class_names);
        }
        if &config != self.model.config() {
            return Err(Error::weights(path, "checkpoint was trained with a different FAR config"));
        }
        let strict = LoadRules { optional: &|_| false, ignorable: &|_| false };
        self.model = load_module(self.model.clone(), &file.part("model."), &far_key_map(&config), &strict)?;
        self.optim.load_state(&self.model, &file.tensors, "optim.", file.meta("optim_steps")?, device)?;
        self.step = file.meta("step")?;
        self.seed = file.meta("seed")?;
        Ok(())
    }
}

/// Which class a validation pass conditions on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalClass {
    /// Each image's own label.
    Own,
    /// The null class (unconditional, as classifier-free guidance uses it): the loss with the
    /// class withheld, so `Null` minus `Own` says how much the generator uses the class.
    Null,
}

/// Mean cross entropy per sub-token (nats) of `model` on every (image, view) row of `codes`,
/// in batches of `batch_size`, conditioned on `class`. Dropout is off when `B` is not an
/// autodiff backend. Errors for [`EvalClass::Null`] on a model trained without label dropout
/// (it has no null class).
pub fn eval_loss<B: Backend>(model: &Far<B>, codes: &Codes, batch_size: usize, class: EvalClass) -> Result<f64> {
    let null = match class {
        EvalClass::Own => None,
        EvalClass::Null => Some(
            model
                .config()
                .null_class()
                .ok_or_else(|| Error::Input("the generator has no null class (class_dropout_prob is 0)".into()))?,
        ),
    };
    let rows: Vec<(usize, usize)> = (0..codes.images()).flat_map(|i| (0..codes.views).map(move |v| (i, v))).collect();
    let device = model.device();
    let mut total = 0.0;
    for chunk in rows.chunks(batch_size.max(1)) {
        let (tokens, mut labels) = codes.batch::<B>(chunk, &device);
        if let Some(null) = null {
            labels = labels.zeros_like().add_scalar(null as i32);
        }
        let logits = model.forward(tokens.clone(), labels);
        total += model.loss(&logits, tokens).into_scalar().elem::<f64>() * chunk.len() as f64;
    }
    Ok(total / rows.len() as f64)
}

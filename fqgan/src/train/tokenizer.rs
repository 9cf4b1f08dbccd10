//! One tokenizer training step (paper eq. 8): reconstruction + perceptual + adversarial +
//! per-sub-codebook VQ terms + disentanglement, then the discriminator's update; and the
//! checkpoint that lets a run stop and resume exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::optim::{AdamW, AdamWConfig};
use crate::config::TokenizerConfig;
use crate::error::{Error, Result};
use crate::loss::discriminator::{discriminator_key_map, DiscriminatorConfig, PatchDiscriminator};
use crate::loss::gan::{DiscLoss, GenLoss};
use crate::loss::lpips::Lpips;
use crate::tokenizer::checkpoint::tokenizer_key_map;
use crate::tokenizer::{Tokenizer, Trace};
use crate::weights::{load_module, module_tensors, write_safetensors, LoadRules, TensorFile};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reconstruction {
    L2,
    L1,
}

/// The weighted objective; each term can be switched off with a zero weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveConfig {
    pub reconstruction: Reconstruction,
    pub reconstruction_weight: f64,
    /// Needs LPIPS weights; ignored without them.
    pub perceptual_weight: f64,
    /// Weight of VQ + commitment + entropy losses, summed over sub-codebooks.
    pub codebook_weight: f64,
    pub disc_weight: f64,
    /// The step from which the adversarial terms (and discriminator updates) start.
    pub disc_start: u64,
    pub disc_loss: DiscLoss,
    pub gen_loss: GenLoss,
    pub discriminator: DiscriminatorConfig,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            reconstruction: Reconstruction::L2,
            reconstruction_weight: 1.0,
            perceptual_weight: 1.0,
            codebook_weight: 1.0,
            disc_weight: 0.5,
            disc_start: 20_000,
            disc_loss: DiscLoss::Hinge,
            gen_loss: GenLoss::Hinge,
            discriminator: DiscriminatorConfig::default(),
        }
    }
}

/// Every loss term of one step, as plain numbers for logs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StepMetrics {
    pub step: u64,
    pub loss: f64,
    pub reconstruction: f64,
    pub perceptual: f64,
    pub vq: Vec<f64>,
    pub commit: Vec<f64>,
    pub entropy: Vec<f64>,
    pub usage: Vec<f64>,
    pub disentangle: f64,
    pub gen_adv: f64,
    pub disc: f64,
    pub grad_norm: f64,
    pub lr: f64,
}

pub struct TokenizerTraining<B: AutodiffBackend> {
    pub model: Tokenizer<B>,
    pub discriminator: PatchDiscriminator<B>,
    pub lpips: Option<Lpips<B>>,
    pub objective: ObjectiveConfig,
    pub opt_g: AdamW<B>,
    pub opt_d: AdamW<B>,
    /// Steps completed.
    pub step: u64,
}

fn scalar<B: AutodiffBackend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_scalar().elem::<f64>()
}

impl<B: AutodiffBackend> TokenizerTraining<B> {
    pub fn new(model: Tokenizer<B>, objective: ObjectiveConfig, optim: AdamWConfig, lpips: Option<Lpips<B>>, device: &B::Device) -> Self {
        let discriminator = PatchDiscriminator::new(&objective.discriminator, device);
        Self { model, discriminator, lpips, objective, opt_g: AdamW::new(optim), opt_d: AdamW::new(optim), step: 0 }
    }

    /// One generator update and (after `disc_start`) one discriminator update on `images`
    /// ([B, 3, S, S] in [-1, 1]).
    pub fn train_step(&mut self, images: Tensor<B, 4>) -> Result<StepMetrics> {
        let o = self.objective.clone();
        let adversarial = self.step >= o.disc_start;
        let out = self.model.forward(images.clone(), true, &mut Trace::off())?;
        let recon = out.reconstruction.clone();
        let mut m = StepMetrics { step: self.step, lr: self.opt_g.config.lr, ..Default::default() };

        let diff = recon.clone() - images.clone();
        let rec = match o.reconstruction {
            Reconstruction::L2 => diff.powi_scalar(2).mean(),
            Reconstruction::L1 => diff.abs().mean(),
        };
        m.reconstruction = scalar(&rec);
        let mut loss = rec * o.reconstruction_weight;
        if let (Some(lpips), true) = (&self.lpips, o.perceptual_weight > 0.0) {
            let perceptual = lpips.forward(recon.clone(), images.clone()).mean();
            m.perceptual = scalar(&perceptual);
            loss = loss + perceptual * o.perceptual_weight;
        }
        for losses in out.losses().flatten() {
            m.vq.push(scalar(&losses.vq));
            m.commit.push(scalar(&losses.commit));
            m.entropy.push(scalar(&losses.entropy));
            m.usage.push(losses.usage);
            let codebook = losses.vq.clone() + losses.commit.clone() + losses.entropy.clone();
            loss = loss + codebook * o.codebook_weight;
        }
        m.disentangle = scalar(&out.disentangle_loss);
        loss = loss + out.disentangle_loss.clone();
        if adversarial {
            let gen_adv = o.gen_loss.apply(self.discriminator.forward(recon.clone(), true));
            m.gen_adv = scalar(&gen_adv);
            loss = loss + gen_adv * o.disc_weight;
        }
        m.loss = scalar(&loss);
        if !m.loss.is_finite() {
            return Err(Error::Input(format!("loss became {} at step {}", m.loss, self.step)));
        }
        let grads = loss.backward();
        let model = self.model.clone();
        let (model, stats) = self.opt_g.step(model, grads);
        self.model = model;
        m.grad_norm = stats.grad_norm;

        if adversarial {
            let real = self.discriminator.forward(images.detach(), true);
            let fake = self.discriminator.forward(recon.detach(), true);
            let d_loss = o.disc_loss.apply(real, fake) * o.disc_weight;
            m.disc = scalar(&d_loss);
            let grads = d_loss.backward();
            self.discriminator = self.opt_d.step(self.discriminator.clone(), grads).0;
        }
        self.step += 1;
        Ok(m)
    }

    /// Writes model, discriminator, both optimizers and the step to one safetensors file.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut tensors: BTreeMap<String, TensorData> = BTreeMap::new();
        let model_keys = tokenizer_key_map(self.model.config());
        for (key, value) in module_tensors(&self.model, &model_keys) {
            tensors.insert(format!("model.{key}"), value);
        }
        let disc_keys = discriminator_key_map(&self.objective.discriminator);
        for (key, value) in module_tensors(&self.discriminator, &disc_keys) {
            tensors.insert(format!("discriminator.{key}"), value);
        }
        tensors.extend(self.opt_g.state_tensors("opt_g."));
        tensors.extend(self.opt_d.state_tensors("opt_d."));
        let metadata = HashMap::from([
            ("format".to_string(), "fqgan.tokenizer-training.v1".to_string()),
            ("config".to_string(), self.model.config().to_json()),
            ("objective".to_string(), serde_json::to_string(&self.objective).expect("serialises")),
            ("step".to_string(), self.step.to_string()),
            ("opt_g_steps".to_string(), self.opt_g.steps.to_string()),
            ("opt_d_steps".to_string(), self.opt_d.steps.to_string()),
        ]);
        write_safetensors(path, &tensors, metadata)
    }

    /// Restores a checkpoint written by [`TokenizerTraining::save_checkpoint`] into `self`
    /// (built with the same configs).
    pub fn load_checkpoint(&mut self, path: &Path, device: &B::Device) -> Result<()> {
        let file = TensorFile::read(path)?;
        let meta = |key: &str| file.meta::<u64>(key);
        let config: TokenizerConfig = file
            .metadata
            .get("config")
            .map(|json| TokenizerConfig::from_json(json))
            .transpose()?
            .ok_or_else(|| Error::weights(path, "checkpoint metadata has no 'config'"))?;
        if &config != self.model.config() {
            return Err(Error::weights(path, "checkpoint was trained with a different tokenizer config"));
        }
        let part = |prefix: &str| file.part(prefix);
        let strict = LoadRules { optional: &|_| false, ignorable: &|_| false };
        self.model = load_module(self.model.clone(), &part("model."), &tokenizer_key_map(&config), &strict)?;
        let disc_keys = discriminator_key_map(&self.objective.discriminator);
        self.discriminator = load_module(self.discriminator.clone(), &part("discriminator."), &disc_keys, &strict)?;
        self.opt_g.load_state(&file.tensors, "opt_g.", meta("opt_g_steps")?, device)?;
        self.opt_d.load_state(&file.tensors, "opt_d.", meta("opt_d_steps")?, device)?;
        self.step = meta("step")?;
        Ok(())
    }
}

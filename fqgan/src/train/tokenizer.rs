//! One tokenizer training step (paper eq. 8): reconstruction + perceptual + adversarial +
//! per-sub-codebook VQ terms + disentanglement, then the discriminator's update; and the
//! checkpoint that lets a run stop and resume exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::ema::Ema;
use super::optim::{AdamW, AdamWConfig};
use super::semantic::{check_teachers, TeacherSource};
use crate::config::TokenizerConfig;
use crate::error::{Error, Result};
use crate::loss::discriminator::{discriminator_key_map, DiscriminatorConfig, PatchDiscriminator};
use crate::loss::gan::{DiscLoss, GenLoss};
use crate::loss::lpips::Lpips;
use crate::loss::semantic::info_nce;
use crate::tokenizer::checkpoint::tokenizer_key_map;
use crate::tokenizer::Tokenizer;
use crate::weights::{load_module, module_tensors, write_safetensors, LoadRules, TensorFile, FORMAT_KEY};

/// `format` of a tokenizer training checkpoint (model, discriminator, EMA and optimizer states).
pub const TOKENIZER_TRAINING_FORMAT: &str = "fqgan.tokenizer-training.v1";

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
    /// Weight of each supervised sub-codebook's InfoNCE term; needs teachers.
    #[serde(default = "semantic_weight")]
    pub semantic_weight: f64,
    /// The step from which the adversarial terms (and discriminator updates) start.
    pub disc_start: u64,
    pub disc_loss: DiscLoss,
    pub gen_loss: GenLoss,
    pub discriminator: DiscriminatorConfig,
}

fn semantic_weight() -> f64 {
    0.5
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            reconstruction: Reconstruction::L2,
            reconstruction_weight: 1.0,
            perceptual_weight: 1.0,
            codebook_weight: 1.0,
            disc_weight: 0.5,
            semantic_weight: semantic_weight(),
            disc_start: 20_000,
            disc_loss: DiscLoss::Hinge,
            gen_loss: GenLoss::Hinge,
            discriminator: DiscriminatorConfig::default(),
        }
    }
}

/// Every loss term of one step, as plain numbers for logs (means over the micro-batches).
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
    /// InfoNCE per supervised sub-codebook (empty without teachers).
    pub semantic: Vec<f64>,
    pub disentangle: f64,
    pub gen_adv: f64,
    pub disc: f64,
    pub grad_norm: f64,
    pub lr: f64,
}

impl StepMetrics {
    /// Adds `part`'s loss terms scaled by `weight` (the micro-batch's share of the step); usage
    /// is a running window, so the latest value replaces the earlier ones.
    fn add_scaled(&mut self, part: &StepMetrics, weight: f64) {
        let add_vec = |into: &mut Vec<f64>, from: &[f64]| {
            into.resize(from.len(), 0.0);
            into.iter_mut().zip(from).for_each(|(a, b)| *a += b * weight);
        };
        self.loss += part.loss * weight;
        self.reconstruction += part.reconstruction * weight;
        self.perceptual += part.perceptual * weight;
        add_vec(&mut self.vq, &part.vq);
        add_vec(&mut self.commit, &part.commit);
        add_vec(&mut self.entropy, &part.entropy);
        add_vec(&mut self.semantic, &part.semantic);
        self.usage = part.usage.clone();
        self.disentangle += part.disentangle * weight;
        self.gen_adv += part.gen_adv * weight;
    }
}

/// One micro-batch of a step.
pub struct MicroBatch<B: Backend> {
    /// [B, 3, S, S] in [-1, 1].
    pub images: Tensor<B, 4>,
    /// One id per image, to look up precomputed teacher features; may be empty otherwise.
    pub ids: Vec<String>,
}

pub struct TokenizerTraining<B: AutodiffBackend> {
    pub model: Tokenizer<B>,
    pub discriminator: PatchDiscriminator<B>,
    pub lpips: Option<Lpips<B>>,
    /// One per supervised sub-codebook, in config order; empty: no semantic term.
    pub teachers: Vec<TeacherSource<B>>,
    pub objective: ObjectiveConfig,
    pub opt_g: AdamW<B>,
    pub opt_d: AdamW<B>,
    /// Averaged weights, updated after every generator step.
    pub ema: Option<Ema<Tokenizer<B::InnerBackend>>>,
    /// Steps completed.
    pub step: u64,
}

fn scalar<B: Backend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_scalar().elem::<f64>()
}

impl<B: AutodiffBackend> TokenizerTraining<B> {
    pub fn new(
        model: Tokenizer<B>,
        objective: ObjectiveConfig,
        optim: AdamWConfig,
        lpips: Option<Lpips<B>>,
        device: &B::Device,
    ) -> Self {
        let discriminator = PatchDiscriminator::new(&objective.discriminator, device);
        Self {
            model,
            discriminator,
            lpips,
            teachers: Vec::new(),
            objective,
            opt_g: AdamW::new(optim),
            opt_d: AdamW::new(optim),
            ema: None,
            step: 0,
        }
    }

    /// Supervises the feature-prediction heads: one teacher per supervised sub-codebook, in
    /// config order (see [`supervised_codebooks`](super::semantic::supervised_codebooks)), or
    /// none.
    pub fn with_teachers(mut self, teachers: Vec<TeacherSource<B>>) -> Result<Self> {
        check_teachers(self.model.config(), &teachers)?;
        self.teachers = teachers;
        Ok(self)
    }

    /// Keeps an exponential moving average of the tokenizer weights, starting from the current ones.
    pub fn with_ema(mut self, decay: f64) -> Self {
        self.ema = Some(Ema::new(&self.model, decay));
        self
    }

    /// The weights to evaluate: the EMA ones when kept, else the current ones.
    pub fn eval_model(&self) -> Tokenizer<B::InnerBackend> {
        match &self.ema {
            Some(ema) => ema.model.clone(),
            None => self.model.valid(),
        }
    }

    /// One step on one batch: see [`TokenizerTraining::accumulated_step`].
    pub fn train_step(&mut self, images: Tensor<B, 4>) -> Result<StepMetrics> {
        self.accumulated_step(vec![MicroBatch { images, ids: Vec::new() }])
    }

    /// One generator update and (after `disc_start`) one discriminator update, each on the
    /// gradients summed over `micro` batches of losses scaled by `1 / micro.len()`: for
    /// losses that are batch means, the gradient of one batch as large as all of them.
    pub fn accumulated_step(&mut self, micro: Vec<MicroBatch<B>>) -> Result<StepMetrics> {
        if micro.is_empty() {
            return Err(Error::Input("a training step needs at least one micro-batch".into()));
        }
        let adversarial = self.step >= self.objective.disc_start;
        let share = 1.0 / micro.len() as f64;
        let mut m = StepMetrics { step: self.step, lr: self.opt_g.config.lr, ..Default::default() };
        let mut accumulated = GradientsAccumulator::new();
        let mut pairs = Vec::with_capacity(micro.len());
        for batch in micro {
            let (loss, part, recon) = self.generator_loss(&batch, adversarial)?;
            m.add_scaled(&part, share);
            accumulated.accumulate(&self.model, GradientsParams::from_grads((loss * share).backward(), &self.model));
            // Only the discriminator sees these again, without gradients to the tokenizer.
            pairs.push((batch.images.detach(), recon.detach()));
        }
        let (model, stats) = self.opt_g.step_params(self.model.clone(), accumulated.grads());
        self.model = model;
        m.grad_norm = stats.grad_norm;
        if let Some(ema) = &mut self.ema {
            ema.update(&self.model);
        }

        if adversarial {
            let o = &self.objective;
            let mut accumulated = GradientsAccumulator::new();
            for (images, recon) in pairs {
                let real = self.discriminator.forward(images, true);
                let fake = self.discriminator.forward(recon, true);
                let d_loss = o.disc_loss.apply(real, fake) * o.disc_weight;
                m.disc += scalar(&d_loss) * share;
                let grads = GradientsParams::from_grads((d_loss * share).backward(), &self.discriminator);
                accumulated.accumulate(&self.discriminator, grads);
            }
            self.discriminator = self.opt_d.step_params(self.discriminator.clone(), accumulated.grads()).0;
        }
        self.step += 1;
        Ok(m)
    }

    /// The generator's eq. 8 loss on one micro-batch, its terms, and the reconstruction.
    fn generator_loss(
        &self,
        batch: &MicroBatch<B>,
        adversarial: bool,
    ) -> Result<(Tensor<B, 1>, StepMetrics, Tensor<B, 4>)> {
        let o = &self.objective;
        let images = batch.images.clone();
        let out = self.model.forward(images.clone(), true);
        let recon = out.reconstruction.clone();
        // Every term is read back at once, after the loss is built: one host sync per batch.
        let mut terms: Vec<Tensor<B, 1>> = Vec::new();
        let mut term = |t: &Tensor<B, 1>| terms.push(t.clone().detach());

        let diff = recon.clone() - images.clone();
        let rec = match o.reconstruction {
            Reconstruction::L2 => diff.powi_scalar(2).mean(),
            Reconstruction::L1 => diff.abs().mean(),
        };
        term(&rec);
        let mut loss = rec * o.reconstruction_weight;
        let perceptual = self.lpips.as_ref().filter(|_| o.perceptual_weight > 0.0);
        if let Some(lpips) = perceptual {
            let perceptual = lpips.forward(recon.clone(), images.clone()).mean();
            term(&perceptual);
            loss = loss + perceptual * o.perceptual_weight;
        }
        let mut codebooks = 0;
        for losses in out.losses().flatten() {
            [&losses.vq, &losses.commit, &losses.entropy, &losses.usage].into_iter().for_each(&mut term);
            let codebook = losses.vq.clone() + losses.commit.clone() + losses.entropy.clone();
            loss = loss + codebook * o.codebook_weight;
            codebooks += 1;
        }
        let mut semantic_terms = 0;
        if o.semantic_weight > 0.0 {
            for (predicted, teacher) in out.feat_pred.iter().flatten().zip(&self.teachers) {
                let [b, _, width] = predicted.dims();
                let class_token = predicted.clone().slice([0..b, 0..1, 0..width]).reshape([b, width]);
                let semantic = info_nce(class_token, teacher.features(&images, &batch.ids)?)?;
                term(&semantic);
                loss = loss + semantic * o.semantic_weight;
                semantic_terms += 1;
            }
        }
        term(&out.disentangle_loss);
        loss = loss + out.disentangle_loss.clone();
        if adversarial {
            let gen_adv = o.gen_loss.apply(self.discriminator.forward(recon.clone(), true));
            term(&gen_adv);
            loss = loss + gen_adv * o.disc_weight;
        }
        term(&loss);

        let values: Vec<f64> = Tensor::cat(terms, 0).into_data().convert::<f64>().to_vec().expect("f64 terms");
        let mut values = values.into_iter();
        let mut next = || values.next().expect("one value per term");
        let mut m = StepMetrics { reconstruction: next(), ..Default::default() };
        if perceptual.is_some() {
            m.perceptual = next();
        }
        for _ in 0..codebooks {
            m.vq.push(next());
            m.commit.push(next());
            m.entropy.push(next());
            m.usage.push(next());
        }
        m.semantic = (0..semantic_terms).map(|_| next()).collect();
        m.disentangle = next();
        if adversarial {
            m.gen_adv = next();
        }
        m.loss = next();
        if !m.loss.is_finite() {
            return Err(Error::Input(format!("loss became {} at step {}", m.loss, self.step)));
        }
        Ok((loss, m, recon))
    }

    /// Writes model, discriminator, EMA weights (when kept), both optimizers and the step to
    /// one safetensors file.
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
        if let Some(ema) = &self.ema {
            for (key, value) in module_tensors(&ema.model, &model_keys) {
                tensors.insert(format!("ema.{key}"), value);
            }
        }
        tensors.extend(self.opt_g.state_tensors("opt_g."));
        tensors.extend(self.opt_d.state_tensors("opt_d."));
        let metadata = HashMap::from([
            (FORMAT_KEY.to_string(), TOKENIZER_TRAINING_FORMAT.to_string()),
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
        file.check_format(TOKENIZER_TRAINING_FORMAT, true)?;
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
        if let Some(ema) = &mut self.ema {
            let weights = part("ema.");
            if weights.tensors.is_empty() {
                return Err(Error::weights(
                    path,
                    "checkpoint has no EMA weights (it was written by a run without EMA)",
                ));
            }
            ema.model = load_module(ema.model.clone(), &weights, &tokenizer_key_map(&config), &strict)?;
        }
        self.opt_g.load_state(&self.model, &file.tensors, "opt_g.", meta("opt_g_steps")?, device)?;
        self.opt_d.load_state(&self.discriminator, &file.tensors, "opt_d.", meta("opt_d_steps")?, device)?;
        self.step = meta("step")?;
        Ok(())
    }
}

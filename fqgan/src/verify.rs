//! Parity checks against golden reference cases produced by the official PyTorch code.
//!
//! A case folder holds `config.json` (with `family`), weights and `io.safetensors` (inputs and
//! expected outputs). [`verify_case`] rebuilds the model from the config alone, runs it and
//! compares every expected tensor it has a counterpart for.

use std::fmt;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::TokenizerConfig;
use crate::loss::discriminator::{DiscriminatorConfig, PatchDiscriminator};
use crate::loss::gan::{DiscLoss, GenLoss};
use crate::loss::lpips::{Lpips, LpipsConfig};
use crate::error::{Error, Result};
use crate::loss::semantic::info_nce;
use crate::teachers::preprocess::TEACHER_INPUT_SIZE;
use crate::teachers::{ClipVisionModel, Dinov2Model, ScalingLayer};
use crate::far::generate::{generate_observed, guide, with_null_class, LogitsRecord};
use crate::far::{Far, FarConfig, GenerateOptions, SubTokenSampling};
use crate::tokenizer::{LoadPurpose, Tokenizer, Trace};
use crate::weights::TensorFile;

/// Max absolute error allowed for float tensors (images, features, logits, losses).
pub const FLOAT_TOLERANCE: f64 = 1e-4;

#[derive(Debug, Clone)]
pub struct TensorCheck {
    pub name: String,
    /// Max |ours - expected|; for integer tensors, the number of differing entries.
    pub error: f64,
    pub exact: bool,
    pub passed: bool,
    /// Why a check failed without a number (shape mismatch).
    pub note: Option<String>,
}

#[derive(Debug)]
pub struct CaseReport {
    pub case: PathBuf,
    pub family: String,
    pub checks: Vec<TensorCheck>,
    /// Expected tensors that have no counterpart here (inputs excluded).
    pub skipped: Vec<String>,
}

impl CaseReport {
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.passed).count()
    }

    pub fn passed(&self) -> usize {
        self.checks.len() - self.failed()
    }

    pub fn check(&self, name: &str) -> Option<&TensorCheck> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for check in &self.checks {
            let verdict = if check.passed { "PASS" } else { "FAIL" };
            let error = match (&check.note, check.exact) {
                (Some(note), _) => note.clone(),
                (None, true) => format!("{} mismatched (exact)", check.error as u64),
                (None, false) => format!("max abs err {:.3e}", check.error),
            };
            writeln!(f, "{:<width$}  {error:<28}  {verdict}", check.name)?;
        }
        for name in &self.skipped {
            writeln!(f, "{name:<width$}  {:<28}  SKIP", "no counterpart")?;
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Runs the golden case in `dir`, whatever its family and sizes, on `device`.
pub fn verify_case<B: Backend>(dir: &Path, device: &B::Device) -> Result<CaseReport> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", config_path.display())))?;
    let family = config.get("family").and_then(|f| f.as_str()).unwrap_or("<none>").to_string();
    let io = TensorFile::read(dir.join("io.safetensors"))?;
    let mut checker = Checker { io: &io, checks: Vec::new() };
    match family.as_str() {
        "tokenizer" => verify_tokenizer::<B>(dir, &config, &mut checker, device)?,
        "loss" => verify_losses::<B>(dir, &config, &mut checker, device)?,
        "teacher" => verify_teachers::<B>(dir, &config, &mut checker, device)?,
        "far" => verify_far::<B>(dir, &config, &mut checker, device)?,
        other => {
            return Err(Error::Config(format!(
                "{}: family '{other}' is not supported by this version (supported: tokenizer, loss, teacher, far)",
                config_path.display()
            )))
        }
    }
    let checked: std::collections::HashSet<_> = checker.checks.iter().map(|c| c.name.clone()).collect();
    let mut skipped: Vec<String> = io
        .tensors
        .keys()
        .filter(|k| !checked.contains(*k) && !is_input(k))
        .cloned()
        .collect();
    skipped.sort();
    Ok(CaseReport { case: dir.to_path_buf(), family, checks: checker.checks, skipped })
}

/// Tensors in `io.safetensors` that are inputs, not expectations.
fn is_input(name: &str) -> bool {
    // The top_k=0 run's tokens were drawn by torch's RNG: they are fed back, not reproduced.
    ["input", "x0", "x1", "images", "semantic_feat_clip", "semantic_feat_dino", "cond_idx", "input_pos", "gen_labels"]
        .contains(&name)
        || name.starts_with("idx_")
        || name.starts_with("gen_topk0_step0_token_")
}

struct Checker<'a> {
    io: &'a TensorFile,
    checks: Vec<TensorCheck>,
}

impl Checker<'_> {
    /// Compares a float tensor with the expected one of that name, when the case has it.
    fn float<B: Backend, const D: usize>(&mut self, name: &str, ours: Tensor<B, D>) {
        let Some(expected) = self.io.tensors.get(name) else { return };
        self.compare(name, ours.into_data(), expected, false);
    }

    /// Compares integer tensors for exact equality.
    fn int<B: Backend, const D: usize>(&mut self, name: &str, ours: Tensor<B, D, Int>) {
        let Some(expected) = self.io.tensors.get(name) else { return };
        self.compare(name, ours.into_data(), expected, true);
    }

    fn compare(&mut self, name: &str, ours: TensorData, expected: &TensorData, exact: bool) {
        let mut check = TensorCheck { name: name.into(), error: 0.0, exact, passed: false, note: None };
        // Scalars are stored with shape [1]; our scalar losses are [1] too.
        if ours.shape.num_elements() != expected.shape.num_elements() {
            check.note = Some(format!("shape {:?} vs expected {:?}", ours.shape.as_slice(), expected.shape.as_slice()));
            self.checks.push(check);
            return;
        }
        if exact {
            let a: Vec<i64> = ours.convert::<i64>().to_vec().expect("ints");
            let b: Vec<i64> = expected.clone().convert::<i64>().to_vec().expect("ints");
            check.error = a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64;
            check.passed = check.error == 0.0;
        } else {
            let a: Vec<f32> = ours.convert::<f32>().to_vec().expect("floats");
            let b: Vec<f32> = expected.clone().convert::<f32>().to_vec().expect("floats");
            let error = a.iter().zip(&b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, |m, e| if e.is_nan() { f64::NAN } else { m.max(e) });
            check.error = error;
            check.passed = error <= FLOAT_TOLERANCE;
        }
        self.checks.push(check);
    }
}

fn verify_tokenizer<B: Backend>(dir: &Path, golden: &serde_json::Value, checker: &mut Checker<'_>, device: &B::Device) -> Result<()> {
    let config = TokenizerConfig::from_golden_json(golden)?;
    let weights = TensorFile::read(dir.join("weights.safetensors"))?;
    let model = Tokenizer::<B>::from_tensor_file(&weights, Some(&config), LoadPurpose::Training, device)?;
    let input = checker.io.get("input")?.clone();
    let input = Tensor::<B, 4>::from_data(input.convert::<f32>(), device);
    let names: Vec<&str> = config.codebooks.iter().map(|c| c.name.as_str()).collect();

    let mut trace = Trace::on();
    let out = model.forward(input.clone(), false, &mut trace)?;
    for (name, activation) in trace.into_records() {
        checker.float(&name, activation);
    }
    for (i, name) in names.iter().enumerate() {
        checker.float(&format!("h_{name}"), out.features[i].clone());
        checker.int(&format!("indices_{name}"), out.quantized[i].indices.clone());
        checker.float(&format!("quant_{name}"), out.quantized[i].quant.clone());
        if let Some(feat) = &out.feat_pred[i] {
            checker.float(&format!("feat_pred_{name}"), feat.clone());
        }
    }
    checker.float("disentangle_loss", out.disentangle_loss.clone());
    checker.float("dec", out.reconstruction.clone());

    let codes = model.encode(input.clone())?;
    checker.float("dec_code", model.decode(codes)?);

    let train = model.forward(input, true, &mut Trace::off())?;
    for (name, losses) in names.iter().zip(train.losses()) {
        let losses = losses.expect("training forward has losses");
        checker.float(&format!("train_vq_loss_{name}"), losses.vq.clone());
        checker.float(&format!("train_commit_loss_{name}"), losses.commit.clone());
        checker.float(&format!("train_entropy_loss_{name}"), losses.entropy.clone());
        let usage = Tensor::<B, 1>::from_floats([losses.usage as f32], device);
        checker.float(&format!("train_codebook_usage_{name}"), usage);
    }
    checker.float("train_disentangle_loss", train.disentangle_loss);
    Ok(())
}

/// LPIPS, the PatchGAN discriminator and the GAN losses (case family `loss`).
fn verify_losses<B: Backend>(dir: &Path, golden: &serde_json::Value, checker: &mut Checker<'_>, device: &B::Device) -> Result<()> {
    let field = |path: &[&str]| {
        path.iter()
            .try_fold(golden, |v, key| v.get(key))
            .ok_or_else(|| Error::Config(format!("golden config has no `{}`", path.join("."))))
    };
    let vgg_cfg = field(&["lpips", "vgg_cfg"])?
        .as_array()
        .ok_or_else(|| Error::Config("`lpips.vgg_cfg` is not a list".into()))?
        .iter()
        .map(|entry| entry.as_u64().map(|c| c as usize))
        .collect();
    let lpips = Lpips::<B>::load(dir.join("weights_lpips.safetensors"), &LpipsConfig { vgg_cfg }, device)?;
    let count = |path: &[&str]| -> Result<usize> {
        field(path)?.as_u64().map(|n| n as usize).ok_or_else(|| Error::Config(format!("`{}` is not a count", path.join("."))))
    };
    let disc_config = DiscriminatorConfig {
        in_channels: count(&["discriminator", "input_nc"])?,
        ndf: count(&["discriminator", "ndf"])?,
        n_layers: count(&["discriminator", "n_layers"])?,
    };
    let disc = PatchDiscriminator::<B>::load(dir.join("weights_discriminator.safetensors"), &disc_config, device)?;

    let image = |name: &str| -> Result<Tensor<B, 4>> { Ok(Tensor::from_data(checker.io.get(name)?.clone().convert::<f32>(), device)) };
    let (x0, x1) = (image("x0")?, image("x1")?);
    for (k, features) in lpips.features(lpips.scale_input(x0.clone())).into_iter().enumerate() {
        checker.float(&format!("act_vgg_slice{}_in0", k + 1), features);
    }
    for (k, map) in lpips.lin_maps(x0.clone(), x1.clone()).into_iter().enumerate() {
        checker.float(&format!("act_lin{k}"), map);
    }
    checker.float("lpips", lpips.forward(x0.clone(), x1.clone()));

    let real = disc.forward(x0, false);
    let fake = disc.forward(x1, false);
    checker.float("disc_logits_real", real.clone());
    checker.float("disc_logits_fake", fake.clone());
    checker.float("d_loss_hinge", DiscLoss::Hinge.apply(real.clone(), fake.clone()));
    checker.float("d_loss_vanilla", DiscLoss::Vanilla.apply(real.clone(), fake.clone()));
    checker.float("d_loss_non_saturating", DiscLoss::NonSaturating.apply(real, fake.clone()));
    checker.float("g_loss_hinge", GenLoss::Hinge.apply(fake.clone()));
    checker.float("g_loss_non_saturating", GenLoss::NonSaturating.apply(fake));
    Ok(())
}

/// The `teacher` family: both towers rebuilt from their HF config and weights files, named
/// under `clip` / `dinov2` in the case config.
fn verify_teachers<B: Backend>(dir: &Path, golden: &serde_json::Value, checker: &mut Checker<'_>, device: &B::Device) -> Result<()> {
    let file_of = |tower: &str, field: &str| -> Result<PathBuf> {
        golden
            .get(tower)
            .and_then(|t| t.get(field))
            .and_then(|f| f.as_str())
            .map(|f| dir.join(f))
            .ok_or_else(|| Error::Config(format!("{}: `{tower}.{field}` is missing or not a string", dir.join("config.json").display())))
    };
    let input = |name: &str| -> Result<Tensor<B, 3>> { Ok(Tensor::from_data(checker.io.get(name)?.clone().convert::<f32>(), device)) };
    let images = Tensor::<B, 4>::from_data(checker.io.get("images")?.clone().convert::<f32>(), device);
    let clip_head = input("semantic_feat_clip")?;
    let dino_head = input("semantic_feat_dino")?;
    // The official towers take the class token (token 0) of the feature-prediction head.
    let class_token = |head: Tensor<B, 3>| {
        let [b, _, width] = head.dims();
        head.narrow(1, 0, 1).reshape([b, width])
    };

    let clip = ClipVisionModel::<B>::load(&file_of("clip", "hf_config_file")?, &file_of("clip", "weights_file")?, device)?;
    let pixel_values = ScalingLayer::OPENAI_CLIP.forward(images.clone());
    checker.float("clip_pixel_values_0", pixel_values.clone().narrow(0, 0, 1));
    let out = clip.forward(pixel_values);
    checker.float("clip_embeddings_out", out.embeddings);
    checker.float("clip_hidden_states_last", out.last_hidden_state);
    let clip_cls = clip.cls_feature(images.clone());
    checker.float("clip_cls", clip_cls.clone());
    checker.float("clip_infonce", info_nce(class_token(clip_head), clip_cls)?);

    let dino = Dinov2Model::<B>::load(&file_of("dinov2", "hf_config_file")?, &file_of("dinov2", "weights_file")?, device)?;
    checker.float("dino_pos_embed_interp", dino.embeddings.interpolate_pos_encoding(TEACHER_INPUT_SIZE, TEACHER_INPUT_SIZE));
    let out = dino.forward(ScalingLayer::IMAGENET.forward(images.clone()));
    checker.float("dino_embeddings_out", out.embeddings);
    checker.float("dino_last_hidden_state", out.last_hidden_state);
    let dino_cls = dino.cls_feature(images);
    checker.float("dino_cls", dino_cls.clone());
    checker.float("dino_infonce", info_nce(class_token(dino_head), dino_cls)?);
    Ok(())
}

fn verify_far<B: Backend>(dir: &Path, golden: &serde_json::Value, checker: &mut Checker<'_>, device: &B::Device) -> Result<()> {
    let config = FarConfig::from_golden_json(golden)?;
    let weights = TensorFile::read(dir.join("weights.safetensors"))?;
    let model = Far::<B>::from_tensor_file(&weights, Some(&config), device)?;
    let k = config.k();
    let ints = |name: &str| -> Result<TensorData> { Ok(checker.io.get(name)?.clone().convert::<i64>()) };

    // Teacher forcing, with official sub-token tensors idx_1..idx_k stacked to [B, k, N].
    let idx: Vec<Tensor<B, 2, Int>> =
        (1..=k).map(|j| Ok(Tensor::from_data(ints(&format!("idx_{j}"))?, device))).collect::<Result<_>>()?;
    let tokens: Tensor<B, 3, Int> = Tensor::stack(idx, 1);
    let labels = Tensor::<B, 1, Int>::from_data(ints("cond_idx")?, device);
    let mut trace = Trace::on();
    let logits = model.forward(tokens.clone(), labels, &mut trace)?;
    for (name, activation) in trace.into_records() {
        checker.float(&name, activation);
    }
    checker.float("freqs_cis", model.freqs_cis());
    for (j, logits) in logits.iter().enumerate() {
        checker.float(&format!("logits_{}", j + 1), logits.clone());
    }
    checker.float("loss", model.loss(&logits, tokens));

    // Generation with the golden case's sampling parameters (top_k 1, so deterministic).
    let generation = golden.get("generation").ok_or_else(|| Error::Config("golden config has no `generation`".into()))?;
    let list = |name: &str| -> Result<Vec<f64>> {
        let values: Vec<f64> = generation
            .get(name)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .ok_or_else(|| Error::Config(format!("golden config: `generation.{name}` is missing or not a list")))?;
        if values.len() != k {
            return Err(Error::Config(format!("golden config: `generation.{name}` has {} entries, k = {k}", values.len())));
        }
        Ok(values)
    };
    let (cfg, temperature, top_k, top_p) = (list("cfg_scale")?, list("temperature")?, list("top_k")?, list("top_p")?);
    let sampling: Vec<SubTokenSampling> = (0..k)
        .map(|j| SubTokenSampling { cfg_scale: cfg[j], temperature: temperature[j], top_k: top_k[j] as usize, top_p: top_p[j] })
        .collect();
    let gen_labels = Tensor::<B, 1, Int>::from_data(ints("gen_labels")?, device);
    let options = GenerateOptions { sampling: sampling.clone(), ..GenerateOptions::uniform(k, SubTokenSampling::default(), 0) };
    let mut records: Vec<LogitsRecord<B>> = Vec::new();
    let generated = generate_observed(&model, gen_labels.clone(), None, &options, &mut |r| records.push(r))?;
    let [b, _, n] = generated.dims();
    for j in 0..k {
        checker.int(&format!("gen_tokens_{}", j + 1), generated.clone().narrow(1, j, 1).reshape([b, n]));
        let of_sub_token = |pick: fn(&LogitsRecord<B>) -> Tensor<B, 2>| {
            Tensor::stack::<3>(records.iter().filter(|r| r.sub_token == j).map(pick).collect(), 0)
        };
        checker.float(&format!("gen_raw_logits_{}", j + 1), of_sub_token(|r| r.raw.clone()));
        checker.float(&format!("gen_cfg_logits_{}", j + 1), of_sub_token(|r| r.guided.clone()));
    }

    // The top_k=0 run's first position, feeding back the sub-tokens torch drew.
    let guided = sampling.iter().any(|s| s.cfg_scale != 1.0);
    let row_labels = if guided { with_null_class(&model, gen_labels)? } else { gen_labels };
    let rows = row_labels.dims()[0];
    let mut caches = model.new_caches(rows);
    let mut slot = model.prefill(row_labels, None, &mut caches)?;
    let mut head_caches = model.head.new_caches(&config, rows, device);
    for j in 0..k {
        let raw = model.head_logits(slot, j, Some(&mut head_caches));
        let guided_logits = if guided { guide(raw.clone(), sampling[j].cfg_scale) } else { raw.clone() };
        checker.float(&format!("gen_topk0_step0_raw_logits_{}", j + 1), raw);
        checker.float(&format!("gen_topk0_step0_cfg_logits_{}", j + 1), guided_logits);
        let drawn = Tensor::<B, 1, Int>::from_data(ints(&format!("gen_topk0_step0_token_{}", j + 1))?, device).reshape([b, 1]);
        let drawn = if guided { Tensor::cat(vec![drawn.clone(), drawn], 0) } else { drawn };
        slot = if j + 1 < k { model.slot_embedding(j + 1, drawn) } else { break };
    }
    Ok(())
}

//! Parity checks against golden reference cases produced by the official PyTorch code.
//!
//! A case folder holds `config.json` (with `family`), weights and `io.safetensors` (inputs and
//! expected outputs). [`verify_case`] rebuilds the model from the config alone, runs it and
//! compares every expected tensor it has a counterpart for.

use std::fmt;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::weights::TensorFile;

mod far;
mod losses;
mod teachers;
mod tokenizer;

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
        "tokenizer" => tokenizer::verify_tokenizer::<B>(dir, &config, &mut checker, device)?,
        "loss" => losses::verify_losses::<B>(dir, &config, &mut checker, device)?,
        "teacher" => teachers::verify_teachers::<B>(dir, &config, &mut checker, device)?,
        "far" => far::verify_far::<B>(dir, &config, &mut checker, device)?,
        other => {
            return Err(Error::Config(format!(
                "{}: family '{other}' is not supported by this version (supported: tokenizer, loss, teacher, far)",
                config_path.display()
            )))
        }
    }
    let checked: std::collections::HashSet<_> = checker.checks.iter().map(|c| c.name.clone()).collect();
    let mut skipped: Vec<String> =
        io.tensors.keys().filter(|k| !checked.contains(*k) && !is_input(k)).cloned().collect();
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
        let Some(expected) = self.io.tensors.get(name) else {
            return;
        };
        self.compare(name, ours.into_data(), expected, false);
    }

    /// Compares integer tensors for exact equality.
    fn int<B: Backend, const D: usize>(&mut self, name: &str, ours: Tensor<B, D, Int>) {
        let Some(expected) = self.io.tensors.get(name) else {
            return;
        };
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
            let error = a.iter().zip(&b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, |m, e| {
                if e.is_nan() {
                    f64::NAN
                } else {
                    m.max(e)
                }
            });
            check.error = error;
            check.passed = error <= FLOAT_TOLERANCE;
        }
        self.checks.push(check);
    }
}

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

/// Float tensors (images, features, logits, losses) pass when every element satisfies
/// `|ours - expected| <= FLOAT_TOLERANCE * scale + ABS_FLOOR`, where `scale` is the largest
/// `|expected|` of the tensor (at least 1e-3). Scaling by the tensor's own magnitude keeps a
/// 2% change in a small tensor (LPIPS activations ~1e-3, losses ~1e-2) a failure, where one
/// absolute bound of 1e-4 let it through; the floor absorbs float noise around zero.
pub const FLOAT_TOLERANCE: f64 = 1e-4;
/// The absolute part of the float tolerance (see [`FLOAT_TOLERANCE`]).
pub const ABS_FLOOR: f64 = 1e-6;

#[derive(Debug, Clone)]
pub struct TensorCheck {
    pub name: String,
    /// Max |ours - expected|; for integer tensors, the number of differing entries. NaN when
    /// either side holds a NaN or an infinity.
    pub error: f64,
    /// `error` over the tensor's scale (its largest |expected|); 0 for integer tensors.
    pub relative: f64,
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
                (None, false) => format!("max abs err {:.3e} (rel {:.1e})", check.error, check.relative),
            };
            writeln!(f, "{:<width$}  {error:<36}  {verdict}", check.name)?;
        }
        for name in &self.skipped {
            writeln!(f, "{name:<width$}  {:<36}  SKIP", "no counterpart")?;
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
        || name.starts_with("gen_sample_tokens_")
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

    /// As [`Checker::float`], for an activation recorded by [`crate::trace::capture`].
    fn recorded(&mut self, name: &str, ours: TensorData) {
        if let Some(expected) = self.io.tensors.get(name) {
            self.compare(name, ours, expected, false);
        }
    }

    /// Compares integer tensors for exact equality.
    fn int<B: Backend, const D: usize>(&mut self, name: &str, ours: Tensor<B, D, Int>) {
        let Some(expected) = self.io.tensors.get(name) else {
            return;
        };
        self.compare(name, ours.into_data(), expected, true);
    }

    fn compare(&mut self, name: &str, ours: TensorData, expected: &TensorData, exact: bool) {
        let mut check = TensorCheck { name: name.into(), error: 0.0, relative: 0.0, exact, passed: false, note: None };
        if !same_shape(ours.shape.as_slice(), expected.shape.as_slice()) {
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
            let comparison = compare_floats(&a, &b);
            (check.error, check.relative, check.passed) = (comparison.error, comparison.relative, comparison.passed);
        }
        self.checks.push(check);
    }
}

/// Shapes agree when they are equal once size-1 dimensions are dropped: the traces record
/// activations with an extra batch or token axis here or there ([1, 2, 16, 64] for the
/// reference's [2, 16, 64], scalars as [1] or []), while a transposed or reshaped tensor
/// ([3, 2] against [2, 3], [6] against [2, 3]) still fails.
fn same_shape(ours: &[usize], expected: &[usize]) -> bool {
    let squeezed = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    squeezed(ours) == squeezed(expected)
}

struct FloatComparison {
    error: f64,
    relative: f64,
    passed: bool,
}

/// The element-wise check of [`FLOAT_TOLERANCE`]; any NaN or infinity on either side fails.
fn compare_floats(ours: &[f32], expected: &[f32]) -> FloatComparison {
    let finite = ours.iter().chain(expected).all(|v| v.is_finite());
    let scale = expected.iter().map(|v| f64::from(v.abs())).fold(1e-3, f64::max);
    let bound = FLOAT_TOLERANCE * scale + ABS_FLOOR;
    let error = ours.iter().zip(expected).map(|(a, b)| f64::from(a - b).abs()).fold(0.0, f64::max);
    if !finite {
        return FloatComparison { error: f64::NAN, relative: f64::NAN, passed: false };
    }
    FloatComparison { error, relative: error / scale, passed: error <= bound }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_nan_or_infinity_fails_wherever_it_sits() {
        let expected = [0.5f32, -0.25, 1.0, 2.0];
        for position in 0..expected.len() {
            for bad in [f32::NAN, f32::INFINITY] {
                let mut ours = expected;
                ours[position] = bad;
                let check = compare_floats(&ours, &expected);
                assert!(!check.passed && check.error.is_nan(), "{bad} at {position}");
                assert!(!compare_floats(&expected, &ours).passed, "expected {bad} at {position}");
            }
        }
        assert!(compare_floats(&expected, &expected).passed);
    }

    #[test]
    fn a_two_percent_change_of_a_small_tensor_fails() {
        // LPIPS activations are ~1e-3: 2% of them is far below the old absolute 1e-4.
        let expected: Vec<f32> = (0..64).map(|i| 1e-3 * (1.0 + i as f32 / 64.0)).collect();
        let changed: Vec<f32> = expected.iter().map(|v| v * 1.02).collect();
        assert!(!compare_floats(&changed, &expected).passed);
        let noisy: Vec<f32> = expected.iter().map(|v| v * (1.0 + 1e-6)).collect();
        assert!(compare_floats(&noisy, &expected).passed);
    }

    #[test]
    fn shapes_must_match_up_to_size_one_axes() {
        assert!(same_shape(&[2, 3], &[2, 3]));
        assert!(!same_shape(&[3, 2], &[2, 3]));
        assert!(!same_shape(&[6], &[2, 3]));
        assert!(same_shape(&[1], &[]));
        assert!(same_shape(&[1, 2, 16, 64], &[2, 16, 64]));
        assert!(same_shape(&[4, 32], &[4, 1, 32]));
    }
}

//! `fqgan-trainer eval-tokenizer`: reconstruction quality (PSNR, SSIM, LPIPS), per-sub-codebook
//! usage and perplexity, and bits per pixel of a tokenizer on held-out images.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use fqgan::burn::tensor::backend::Backend;
use fqgan::burn::tensor::ElementConversion;
use fqgan::data::{center_crop, ImageDataset};
use fqgan::device::BackendTask;
use fqgan::image::{images_to_tensor, tensor_to_images};
use fqgan::loss::lpips::{Lpips, LpipsConfig};
use fqgan::metrics::{psnr, ssim};
use fqgan::tokenizer::LoadPurpose;
use fqgan::weights::write_atomic;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::TokenizerArg;

#[derive(Args, Debug, Clone)]
pub struct EvalTokenizerArgs {
    #[command(flatten)]
    pub tokenizer: TokenizerArg,
    /// Held-out images: folders (searched recursively), zip/pk3 archives or image files. Each
    /// image is centre-cropped to a square and resized to the model's size.
    #[arg(required = true)]
    pub data: Vec<PathBuf>,
    /// LPIPS VGG16 weights (safetensors); LPIPS is left out without them.
    #[arg(long, value_name = "FILE")]
    pub lpips: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Folder for eval.json and eval.md.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write the JSON report here (instead of DIR/eval.json).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the Markdown table here (instead of DIR/eval.md).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The report, as written to JSON.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub images: usize,
    pub image_size: usize,
    pub psnr: f64,
    pub ssim: f64,
    pub lpips: Option<f64>,
    pub bits_per_pixel: f64,
    pub codebooks: Vec<CodebookReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CodebookReport {
    pub name: String,
    pub size: usize,
    /// Distinct codes that occur over the set.
    pub used: usize,
    /// `used / size`.
    pub usage: f64,
    /// exp(entropy) of the code histogram: the number of equally used codes it is worth.
    pub perplexity: f64,
}

impl BackendTask for EvalTokenizerArgs {
    type Output = Result<EvalReport>;

    fn run<B: Backend>(self, device: B::Device) -> Result<EvalReport> {
        let json_path = self.json.clone().or_else(|| self.out.as_ref().map(|d| d.join("eval.json")));
        let markdown_path = self.markdown.clone().or_else(|| self.out.as_ref().map(|d| d.join("eval.md")));
        if json_path.is_none() && markdown_path.is_none() {
            bail!("give --out DIR, or --json FILE and/or --markdown FILE, for the report");
        }
        let model = self.tokenizer.load::<B>(LoadPurpose::Inference, &device)?;
        let lpips = self.lpips.as_ref().map(|p| Lpips::<B>::load(p, &LpipsConfig::vgg16(), &device)).transpose()?;
        let dataset = ImageDataset::scan(&self.data)?;
        let config = model.config().clone();
        let size = config.image_size as u32;

        let bar = if self.quiet { ProgressBar::hidden() } else { ProgressBar::new(dataset.len() as u64) };
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise}<{eta_precise} {msg}")
                .expect("valid template"),
        );
        let mut histograms: Vec<Vec<u64>> = config.codebooks.iter().map(|c| vec![0; c.size]).collect();
        let (mut psnr_sum, mut ssim_sum, mut lpips_sum) = (0.0, 0.0, 0.0);
        let indices: Vec<usize> = (0..dataset.len()).collect();
        for chunk in indices.chunks(self.batch_size as usize) {
            let images = chunk
                .iter()
                .map(|&i| dataset.load(i).map(|image| center_crop(&image, size)))
                .collect::<fqgan::Result<Vec<_>>>()?;
            let input = images_to_tensor::<B>(&images, &device)?;
            let codes = model.encode(input.clone());
            let [b, k, h, w] = codes.dims();
            let values: Vec<i64> = codes.clone().into_data().convert::<i64>().to_vec().expect("i64 after convert");
            for (j, histogram) in histograms.iter_mut().enumerate() {
                for image in 0..b {
                    let start = (image * k + j) * h * w;
                    for &code in &values[start..start + h * w] {
                        histogram[code as usize] += 1;
                    }
                }
            }
            let decoded = model.decode(codes);
            if let Some(lpips) = &lpips {
                lpips_sum += lpips.forward(decoded.clone(), input).sum().into_scalar().elem::<f64>();
            }
            for (original, recon) in images.iter().zip(tensor_to_images(decoded)) {
                psnr_sum += psnr(original, &recon);
                ssim_sum += ssim(original, &recon);
            }
            bar.inc(chunk.len() as u64);
            let n = bar.position() as f64;
            bar.set_message(format!("PSNR {:.2} dB  SSIM {:.4}", psnr_sum / n, ssim_sum / n));
        }
        bar.finish_and_clear();

        let n = dataset.len() as f64;
        let report = EvalReport {
            model: self.tokenizer.describe(),
            images: dataset.len(),
            image_size: config.image_size,
            psnr: psnr_sum / n,
            ssim: ssim_sum / n,
            lpips: lpips.is_some().then(|| lpips_sum / n),
            bits_per_pixel: config.bits_per_pixel(),
            codebooks: config
                .codebooks
                .iter()
                .zip(&histograms)
                .map(|(c, hist)| codebook_report(&c.name, hist))
                .collect(),
        };
        let markdown = markdown(&report);
        print!("{markdown}");
        if let Some(dir) = &self.out {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if let Some(path) = json_path {
            write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
            println!("wrote {}", path.display());
        }
        if let Some(path) = markdown_path {
            write_atomic(&path, markdown.as_bytes())?;
            println!("wrote {}", path.display());
        }
        Ok(report)
    }
}

fn codebook_report(name: &str, histogram: &[u64]) -> CodebookReport {
    let total: u64 = histogram.iter().sum();
    let used = histogram.iter().filter(|&&count| count > 0).count();
    let entropy: f64 = histogram
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = count as f64 / total as f64;
            -p * p.ln()
        })
        .sum();
    CodebookReport {
        name: name.to_string(),
        size: histogram.len(),
        used,
        usage: used as f64 / histogram.len() as f64,
        perplexity: entropy.exp(),
    }
}

/// The report as two Markdown tables: image quality, then one row per sub-codebook.
pub fn markdown(report: &EvalReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| model | images | size | PSNR (dB) | SSIM | LPIPS | bits/pixel |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let lpips = report.lpips.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "| {} | {} | {s}x{s} | {:.2} | {:.4} | {lpips} | {:.4} |",
        report.model,
        report.images,
        report.psnr,
        report.ssim,
        report.bits_per_pixel,
        s = report.image_size
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "| sub-codebook | size | codes used | usage | perplexity |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
    for c in &report.codebooks {
        let _ =
            writeln!(out, "| {} | {} | {} | {:.1}% | {:.1} |", c.name, c.size, c.used, c.usage * 100.0, c.perplexity);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_perplexity_of_a_histogram() {
        // Two codes used equally out of four: half the codebook, worth two codes.
        let report = codebook_report("vis", &[5, 0, 5, 0]);
        assert_eq!((report.used, report.usage), (2, 0.5));
        assert!((report.perplexity - 2.0).abs() < 1e-12);
        // One dominant code is worth barely more than one.
        assert!(codebook_report("sem", &[98, 1, 1, 0]).perplexity < 1.2);
    }
}

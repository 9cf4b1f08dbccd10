//! `fqgan demo`: the main job, start to end, on the example images with the built-in models.
//! It compresses each image to `.fqt`, decodes it, and sets it beside a JPEG of the same byte
//! budget; it decodes each sub-codebook alone; it generates textures of every class; and it
//! regenerates the bottom half of each image from its top half.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use fqgan::codec::no_progress;
use fqgan::image::{image_grid, read_image, save_rgb, RgbImage};
use fqgan::metrics::{psnr, ssim};
use fqgan::runtime::{GeneratorSession, Prefix, TileOptions, TokenGrid, TokenizerSession};
use fqgan::tokens::TokenFile;
use serde::Serialize;

use crate::assets::{self, CompressSettings, Row};
use crate::generation::{generate_images, SamplingArgs};
use crate::{DeviceArg, FarArg, TokenizerArg};

pub struct Demo {
    pub images: PathBuf,
    pub out: PathBuf,
    /// Generated textures per class.
    pub per_class: usize,
    pub sampling: SamplingArgs,
    pub tokenizer: TokenizerArg,
    pub far: FarArg,
}

/// One image's row of the table: the `.fqt` round trip and a JPEG of at most its size.
#[derive(Serialize)]
struct Comparison {
    #[serde(flatten)]
    fqt: Row,
    jpeg: Jpeg,
}

#[derive(Serialize)]
struct Jpeg {
    quality: u8,
    bytes: u64,
    bits_per_pixel: f64,
    psnr: f64,
    ssim: f64,
    /// False when even quality 1 is larger than the `.fqt` file.
    within_budget: bool,
}

impl Demo {
    pub fn run(self, device: &DeviceArg) -> Result<()> {
        let started = Instant::now();
        if !(1..=64).contains(&self.per_class) {
            anyhow::bail!("--per-class is {}; it must be in 1..=64", self.per_class);
        }
        let device = device.configure()?;
        let tokenizer = self.tokenizer.session(device)?;
        let far = self.far.session(device)?;
        far.check_tokenizer(&tokenizer).context("the generator does not fit the tokenizer")?;
        let fqt_dir = self.out.join("fqt");
        let jobs = assets::plan(std::slice::from_ref(&self.images), &fqt_dir, "fqt", assets::image_extensions())
            .with_context(|| format!("the demo's images ({}; --images picks others)", self.images.display()))?;
        let names: Vec<&str> = tokenizer.config().codebooks.iter().map(|c| c.name.as_str()).collect();

        let mut comparisons = Vec::new();
        let mut panels = Vec::new();
        let mut originals = Vec::new();
        let progress = assets::progress_bar(jobs.len() as u64, "compress");
        for job in &jobs {
            progress.set_message(job.name.clone());
            let image = read_image(&job.input)?;
            let original = image.to_rgb8();
            let settings = CompressSettings { tiles: TileOptions::default(), metrics: true };
            let (row, decoded) = assets::compress_one(&tokenizer, job, image, settings, &progress)?;
            let jpeg = jpeg_within(&original, row.fqt_bytes)?;
            let file = TokenFile::read(&job.output)?;
            panels.push(original.clone());
            panels.push(decoded.context("compress_one decodes when metrics are on")?.to_rgb8());
            for i in 0..names.len() {
                let alone = tokenizer.decompress(&file, &job.output, Some(&[i]), &settings.tiles, &mut no_progress)?;
                panels.push(alone.expect("never cancelled").to_rgb8());
            }
            originals.push(original);
            comparisons.push(Comparison { fqt: row, jpeg });
            progress.inc(1);
        }
        progress.finish_and_clear();
        print!("{}", table(&comparisons));
        let reconstructions = self.out.join("reconstructions.png");
        save_rgb(&reconstructions, &image_grid(&panels, 2 + names.len()))?;

        let generated_path = self.out.join("generated.png");
        let classes = self.generate_per_class(&far, &tokenizer, &generated_path)?;
        let completions_path = self.out.join("completions.png");
        self.complete_bottom_halves(&far, &tokenizer, &originals, &completions_path)?;

        let report = self.out.join("report.json");
        fqgan::weights::write_atomic(&report, serde_json::to_string_pretty(&comparisons)?.as_bytes())?;
        println!();
        println!("wrote {}", self.out.display());
        println!(
            "  reconstructions.png  per image: original | reconstruction | {}",
            names.iter().map(|n| format!("{n} alone")).collect::<Vec<_>>().join(" | ")
        );
        println!("  generated.png        {} per class, one row each: {}", self.per_class, classes.join(", "));
        println!("  completions.png      per image: original (64 px) | its tokens decoded | 4 new bottom halves");
        println!("  fqt/, report.json    the token files and the table as JSON");
        println!("done in {:.1} s", started.elapsed().as_secs_f64());
        Ok(())
    }
}

impl Demo {
    /// A grid of `per_class` generated textures for each class, a row per class; returns the
    /// class names in row order.
    fn generate_per_class(
        &self,
        far: &GeneratorSession,
        tokenizer: &TokenizerSession,
        path: &Path,
    ) -> Result<Vec<String>> {
        let config = far.config();
        let labels = (0..config.num_classes).map(Some).collect();
        let request = self.sampling.request(labels, self.per_class, config.k())?;
        let generated = generate_images(far, tokenizer, &request)?;
        save_rgb(path, &image_grid(&generated.images, self.per_class))?;
        Ok((0..config.num_classes).map(|c| config.class_name(c)).collect())
    }

    /// Each image shrunk to one tile, encoded, and its bottom half generated four times from
    /// the top half's tokens, unconditionally (the null class): the top half is the only guide.
    fn complete_bottom_halves(
        &self,
        far: &GeneratorSession,
        tokenizer: &TokenizerSession,
        originals: &[RgbImage],
        path: &Path,
    ) -> Result<()> {
        const COMPLETIONS: usize = 4;
        let config = far.config();
        if config.null_class().is_none() {
            println!("(no completions: the generator has no null class)");
            return Ok(());
        }
        let size = tokenizer.image_size();
        let small: Vec<RgbImage> = originals
            .iter()
            .map(|image| image::imageops::resize(image, size, size, image::imageops::FilterType::Lanczos3))
            .collect();
        let grids: Vec<TokenGrid> = tokenizer.encode(&small)?;
        let decoded = tokenizer.decode(&grids)?;
        let n = small.len();
        let mut request = self.sampling.request(vec![None; n], COMPLETIONS, config.k())?;
        // The null class is its own guide: guidance would only repeat it.
        request.sampling.iter_mut().for_each(|s| s.cfg_scale = 1.0);
        request.prefix = Some(Prefix { rows: config.grid_size() / 2, grids });
        let completed = generate_images(far, tokenizer, &request)?;
        let mut panels = Vec::new();
        for i in 0..n {
            panels.push(small[i].clone());
            panels.push(decoded[i].clone());
            panels.extend(completed.images[i * COMPLETIONS..(i + 1) * COMPLETIONS].iter().cloned());
        }
        Ok(save_rgb(path, &image_grid(&panels, 2 + COMPLETIONS))?)
    }
}

/// The best JPEG of `image` (quality 1..=100, the `image` crate's baseline encoder) of at most
/// `budget` bytes, or quality 1 when even that is larger.
fn jpeg_within(image: &RgbImage, budget: u64) -> Result<Jpeg> {
    let encode = |quality: u8| -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
            .encode_image(image)
            .context("encoding the comparison JPEG")?;
        Ok(bytes)
    };
    // Size grows with quality (near enough for a search): the largest quality within budget.
    let (mut low, mut high) = (1u8, 100u8);
    let mut best = (1u8, encode(1)?);
    while low <= high {
        let quality = low + (high - low) / 2;
        let bytes = encode(quality)?;
        if bytes.len() as u64 <= budget {
            best = (quality, bytes);
            low = quality + 1;
        } else {
            high = quality - 1;
        }
        if quality == 1 {
            break;
        }
    }
    let (quality, bytes) = best;
    let decoded = image::load_from_memory(&bytes).context("decoding the comparison JPEG")?.to_rgb8();
    let pixels = f64::from(image.width()) * f64::from(image.height());
    Ok(Jpeg {
        quality,
        bytes: bytes.len() as u64,
        bits_per_pixel: bytes.len() as f64 * 8.0 / pixels,
        psnr: psnr(image, &decoded),
        ssim: ssim(image, &decoded),
        within_budget: bytes.len() as u64 <= budget,
    })
}

fn table(rows: &[Comparison]) -> String {
    let width = rows.iter().map(|r| r.fqt.name.chars().count()).chain([4]).max().unwrap_or(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>9}  {:>7}  {:>6}  {:>7}  {:>6}   {:>7}  {:>3}  {:>6}  {:>7}  {:>6}",
        "file", "size", ".fqt B", "bpp", "PSNR", "SSIM", "JPEG B", "q", "bpp", "PSNR", "SSIM"
    );
    let _ = writeln!(out, "{}", "-".repeat(width + 90));
    for r in rows {
        let (f, j) = (&r.fqt, &r.jpeg);
        let _ = writeln!(
            out,
            "{:<width$}  {:>9}  {:>7}  {:>6.3}  {:>7.2}  {:>6.3}   {:>7}  {:>3}  {:>6.3}  {:>7.2}  {:>6.3}",
            f.name,
            format!("{}x{}", f.width, f.height),
            f.fqt_bytes,
            f.bits_per_pixel,
            f.psnr.unwrap_or(f64::NAN),
            f.ssim.unwrap_or(f64::NAN),
            format!("{}{}", j.bytes, if j.within_budget { "" } else { "*" }),
            j.quality,
            j.bits_per_pixel,
            j.psnr,
            j.ssim
        );
    }
    if rows.iter().any(|r| !r.jpeg.within_budget) {
        let _ = writeln!(out, "* even quality 1 is larger than the .fqt file: JPEG cannot go this small");
    }
    out
}

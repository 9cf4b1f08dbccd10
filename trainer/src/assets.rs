//! The asset commands of `fqgan`: compressing image files and folders into `.fqt` token
//! files, decompressing them, and measuring the round trip.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use fqgan::image::{read_image, save_image, DynamicImage};
use fqgan::metrics::{psnr, ssim};
use fqgan::runtime::{TileOptions, TokenizerSession};
use fqgan::tokens::TokenFile;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Extensions picked up when a folder is given.
const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tga", "webp", "gif", "tif", "tiff"];

/// One input and where its output goes.
#[derive(Clone, Debug)]
pub struct Job {
    pub input: PathBuf,
    pub output: PathBuf,
    /// The input's path relative to the folder it was found in, for reports.
    pub name: String,
}

/// Expands files and folders (recursively, sorted) into jobs writing under `out` with
/// `extension`. A single file with an `out` that already has that extension writes there.
pub fn plan(inputs: &[PathBuf], out: &Path, extension: &str, wanted: &[&str]) -> Result<Vec<Job>> {
    if let [single] = inputs {
        if single.is_file() && out.extension().is_some_and(|e| e.eq_ignore_ascii_case(extension)) {
            let name = single.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let jobs = vec![Job { input: single.clone(), output: out.to_path_buf(), name }];
            check_jobs(&jobs)?;
            return Ok(jobs);
        }
    }
    let mut jobs = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            walk(input, wanted, &mut found).with_context(|| format!("listing {}", input.display()))?;
            found.sort();
            for file in found {
                let relative = file.strip_prefix(input).expect("found under input").to_path_buf();
                jobs.push(Job {
                    output: out.join(&relative).with_extension(extension),
                    name: relative.display().to_string(),
                    input: file,
                });
            }
        } else if input.exists() {
            let file_name = input.file_name().with_context(|| format!("{} has no file name", input.display()))?;
            let output = out.join(file_name).with_extension(extension);
            jobs.push(Job { input: input.clone(), output, name: file_name.to_string_lossy().into_owned() });
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    if jobs.is_empty() {
        bail!("no input files found (looked for {})", wanted.join(", "));
    }
    check_jobs(&jobs)?;
    Ok(jobs)
}

/// Refuses jobs that would lose data: an output that is one of the inputs (the lossy result
/// would replace an original), or two inputs written to one output (one result would vanish
/// while the report lists both).
pub fn check_jobs(jobs: &[Job]) -> Result<()> {
    let inputs: Vec<&Path> = jobs.iter().map(|j| j.input.as_path()).collect();
    let outputs: Vec<&Path> = jobs.iter().map(|j| j.output.as_path()).collect();
    check_outputs(&inputs, &outputs)?;
    let mut seen = std::collections::HashMap::new();
    for job in jobs {
        if let Some(first) = seen.insert(&job.output, &job.input) {
            bail!(
                "{} and {} would both be written to {}: rename one, or compress them to different folders",
                first.display(),
                job.input.display(),
                job.output.display()
            );
        }
    }
    Ok(())
}

/// Errors when any of `outputs` is the same file as one of `inputs`.
pub fn check_outputs(inputs: &[&Path], outputs: &[&Path]) -> Result<()> {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let inputs: Vec<(&Path, Option<PathBuf>)> = inputs.iter().map(|p| (*p, canonical(p))).collect();
    for output in outputs {
        let output_canonical = canonical(output);
        for (input, input_canonical) in &inputs {
            if output == input || (output_canonical.is_some() && output_canonical == *input_canonical) {
                bail!(
                    "{} is also an input ({}): writing it would replace the original; choose another output",
                    output.display(),
                    input.display()
                );
            }
        }
    }
    Ok(())
}

fn walk(dir: &Path, wanted: &[&str], found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, wanted, found)?;
        } else if path.extension().is_some_and(|e| wanted.iter().any(|w| e.eq_ignore_ascii_case(w))) {
            found.push(path);
        }
    }
    Ok(())
}

pub fn image_extensions() -> &'static [&'static str] {
    IMAGE_EXTENSIONS
}

/// What happened to one file.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub alpha: bool,
    /// The input file's size as given (PNG, JPEG, ...).
    pub original_bytes: u64,
    pub fqt_bytes: u64,
    /// `.fqt` bits per image pixel.
    pub bits_per_pixel: f64,
    /// Over RGB; alpha is lossless.
    pub psnr: Option<f64>,
    pub ssim: Option<f64>,
    pub error: Option<String>,
}

impl Row {
    fn failed(job: &Job, error: &anyhow::Error) -> Self {
        Self {
            name: job.name.clone(),
            width: 0,
            height: 0,
            alpha: false,
            original_bytes: std::fs::metadata(&job.input).map(|m| m.len()).unwrap_or(0),
            fqt_bytes: 0,
            bits_per_pixel: 0.0,
            psnr: None,
            ssim: None,
            error: Some(format!("{error:#}")),
        }
    }
}

/// How to compress.
#[derive(Clone, Copy, Debug)]
pub struct CompressSettings {
    pub tiles: TileOptions,
    /// Decode each written file again and measure PSNR and SSIM.
    pub metrics: bool,
}

/// Shows on `bar` how many tiles of the file `name` are done: one large image can take minutes.
fn tile_progress<'a>(bar: &'a ProgressBar, name: &'a str) -> impl FnMut(usize, usize) -> ControlFlow<()> + 'a {
    move |done, total| {
        if total > 1 {
            bar.set_message(format!("{name} ({done}/{total} tiles)"));
        }
        ControlFlow::Continue(())
    }
}

/// Compresses one image file into `job.output` (atomically) and, when asked, reads that file
/// back and decodes it, showing its tiles on `bar`. Returns the row and the decoded image.
pub fn compress_one(
    tokenizer: &TokenizerSession,
    job: &Job,
    image: DynamicImage,
    settings: CompressSettings,
    bar: &ProgressBar,
) -> Result<(Row, Option<DynamicImage>)> {
    let original_bytes = std::fs::metadata(&job.input).with_context(|| job.input.display().to_string())?.len();
    let file = tokenizer
        .compress(&image, &settings.tiles, &mut tile_progress(bar, &job.name))
        .with_context(|| format!("compressing {}", job.input.display()))?
        .expect("the tile progress never stops the work");
    if let Some(parent) = job.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    file.write(&job.output)?;
    let fqt_bytes = std::fs::metadata(&job.output).with_context(|| job.output.display().to_string())?.len();
    let (width, height) = (image.width(), image.height());
    let mut row = Row {
        name: job.name.clone(),
        width,
        height,
        alpha: file.alpha.is_some(),
        original_bytes,
        fqt_bytes,
        bits_per_pixel: fqt_bytes as f64 * 8.0 / (f64::from(width) * f64::from(height)),
        psnr: None,
        ssim: None,
        error: None,
    };
    if !settings.metrics {
        return Ok((row, None));
    }
    let file = TokenFile::read(&job.output)?;
    let decoded = decompress_one(tokenizer, &file, &settings.tiles, (&job.output, &job.name), bar)?;
    let (a, b) = (image.to_rgb8(), decoded.to_rgb8());
    row.psnr = Some(psnr(&a, &b));
    row.ssim = Some(ssim(&a, &b));
    Ok((row, Some(decoded)))
}

/// Compresses every job, decoding the next images on a second thread while the model works
/// (the model itself already uses every core). A file that fails is reported in its row and
/// the rest carry on.
pub fn compress_all(tokenizer: &TokenizerSession, jobs: &[Job], settings: CompressSettings) -> Vec<Row> {
    let progress = progress_bar(jobs.len() as u64, "compress");
    let rows = std::thread::scope(|scope| {
        let (send, receive) = mpsc::sync_channel(2);
        scope.spawn(move || {
            for job in jobs {
                if send.send(read_image(&job.input).map_err(anyhow::Error::from)).is_err() {
                    break;
                }
            }
        });
        jobs.iter()
            .zip(receive)
            .map(|(job, image)| {
                progress.set_message(job.name.clone());
                let row = image
                    .and_then(|image| compress_one(tokenizer, job, image, settings, &progress))
                    .map(|(row, _)| row)
                    .unwrap_or_else(|e| Row::failed(job, &e));
                if let Some(error) = &row.error {
                    progress.suspend(|| eprintln!("error: {}: {error}", job.name));
                }
                progress.inc(1);
                row
            })
            .collect()
    });
    progress.finish_and_clear();
    rows
}

/// Decodes `file` (read from `source`, shown as `name`), showing its tiles on `bar`.
fn decompress_one(
    tokenizer: &TokenizerSession,
    file: &TokenFile,
    tiles: &TileOptions,
    (source, name): (&Path, &str),
    bar: &ProgressBar,
) -> Result<DynamicImage> {
    let image = tokenizer.decompress(file, source, None, tiles, &mut tile_progress(bar, name))?;
    Ok(image.expect("the tile progress never stops the work"))
}

/// Decodes every `.fqt` job to an image file; returns the failures as (name, message).
pub fn decompress_all(tokenizer: &TokenizerSession, tiles: &TileOptions, jobs: &[Job]) -> Vec<(String, String)> {
    let progress = progress_bar(jobs.len() as u64, "decompress");
    let mut failures = Vec::new();
    for job in jobs {
        progress.set_message(job.name.clone());
        let result = (|| -> Result<()> {
            let file = TokenFile::read(&job.input)?;
            let image = decompress_one(tokenizer, &file, tiles, (&job.input, &job.name), &progress)?;
            if let Some(parent) = job.output.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            save_image(&job.output, &image)?;
            Ok(())
        })();
        if let Err(e) = result {
            progress.suspend(|| eprintln!("error: {}: {e:#}", job.name));
            failures.push((job.name.clone(), format!("{e:#}")));
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    failures
}

/// A bar counting `len` steps of work named by `verb`.
pub fn progress_bar(len: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!("{verb} [{{bar:30}}] {{pos}}/{{len}} {{elapsed}} (eta {{eta}}) {{msg}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
    bar
}

//! `fqgan`: use trained FQGAN models on image files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use fqgan::image::{image_grid, read_image, read_rgb_sized, save_image, save_rgb};
use fqgan::runtime::TileOptions;
use fqgan::tokenizer::LoadPurpose;
use fqgan::tokens::{Coding, TokenFile};
use fqgan::WeightPrecision;
use fqgan_trainer::assets::{self, CompressSettings, Job};
use fqgan_trainer::demo::Demo;
use fqgan_trainer::generation::{generate_images, SamplingArgs};
use fqgan_trainer::{summary, DeviceArg, FarArg, TokenizerArg};

#[derive(Parser)]
#[command(name = "fqgan", version, about = "Tokenize, reconstruct, generate and inspect images with FQGAN models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job on the example images with the built-in models, in seconds on a CPU:
    /// compress each to .fqt and decode it (a table with a JPEG of the same byte budget
    /// beside it), decode each sub-codebook alone, generate textures of every class, and
    /// regenerate each image's bottom half from its top half; pictures go to --output.
    Demo {
        /// Images to compress (a folder or files).
        #[arg(long, default_value = "examples/images")]
        images: PathBuf,
        /// Folder for the pictures, the .fqt files and report.json.
        #[arg(short, long, value_name = "DIR", default_value = "out/demo")]
        output: PathBuf,
        /// Generated textures per class.
        #[arg(long, default_value_t = 6)]
        per_class: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        #[command(flatten)]
        tokenizer: TokenizerArg,
        #[command(flatten)]
        far: FarArg,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Encode an image to k token grids and decode it back; prints sizes, bits per pixel and
    /// PSNR, and writes the reconstruction.
    Reconstruct {
        /// Input image (PNG, JPEG, ...), of the model's image size unless --resize is given.
        input: PathBuf,
        /// Where to write the reconstruction (format from the extension).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Decode with only these sub-codebooks (comma-separated names, e.g. `vis`); the others
        /// are zeroed, as in the paper's Fig. 3.
        #[arg(long, value_delimiter = ',')]
        codebooks: Vec<String>,
        /// Resize the input to the model's image size instead of refusing other sizes.
        #[arg(long)]
        resize: bool,
        #[command(flatten)]
        tokenizer: TokenizerArg,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Generate one image per class label with a FAR generator, decode them with the matching
    /// tokenizer and write them as one grid image.
    Generate {
        /// Classes, one image each (comma-separated names or numbers, e.g. `nature,nature,base`
        /// or `1,1,7`); `fqgan info --generator` lists the generator's class names.
        #[arg(long, value_delimiter = ',', required = true)]
        labels: Vec<String>,
        /// Where to write the grid (format from the extension, e.g. `.png`).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Images per grid row.
        #[arg(long, default_value_t = 8)]
        columns: usize,
        /// How the generator's matrix weights are stored: `f32` (as trained; matches the
        /// official code) or `bf16` (half the memory and, on the CPU, about half the time per
        /// token; logits move by a few 1e-3 of the largest, so samples can differ).
        #[arg(long, value_name = "PRECISION", default_value = "f32")]
        weights: WeightPrecision,
        #[command(flatten)]
        far: FarArg,
        #[command(flatten)]
        tokenizer: TokenizerArg,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Print a tokenizer's config as JSON (with --generator: the generator's, whose
    /// `class_names` lists its classes).
    Info {
        /// Describe the generator (--far, default the built-in one) instead of the tokenizer.
        #[arg(long)]
        generator: bool,
        #[command(flatten)]
        tokenizer: TokenizerArg,
        #[command(flatten)]
        far: FarArg,
    },
    /// Compress images of any size (files, or folders searched recursively) into .fqt token
    /// files, then decode each again and print a table of sizes, bits per pixel, PSNR and SSIM.
    Compress {
        /// Image files and folders.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder (mirrors the input folders), or a .fqt path for a single input file.
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
        #[command(flatten)]
        compress: CompressArgs,
        #[command(flatten)]
        limit: WorkLimit,
        /// Skip the decode that measures PSNR and SSIM.
        #[arg(long)]
        no_metrics: bool,
        /// Also write the table's rows as JSON to this file.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        #[command(flatten)]
        tokenizer: TokenizerArg,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Decode .fqt files (or folders of them) to PNG (RGBA when the file has alpha).
    Decompress {
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder, or an image path for a single input file.
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
        /// Replace images that already exist at the outputs (by default they are refused: next
        /// to the .fqt files they are often the originals, which a lossy decode would replace).
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        limit: WorkLimit,
        #[command(flatten)]
        tokenizer: TokenizerArg,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Print a .fqt file's header, section sizes, bits per pixel and model fingerprint.
    Inspect { file: PathBuf },
    /// Compress one image to .fqt and decode it again: writes the decoded image, the .fqt
    /// next to it, and a report (printed, and as JSON with --report).
    Roundtrip {
        input: PathBuf,
        /// The decoded image (format from the extension; PNG keeps alpha).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        compress: CompressArgs,
        #[command(flatten)]
        limit: WorkLimit,
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        #[command(flatten)]
        tokenizer: TokenizerArg,
        #[command(flatten)]
        device: DeviceArg,
    },
}

/// Bounds on the work one file may ask for.
#[derive(Args, Clone, Copy)]
struct WorkLimit {
    /// The most model work per image, in tile pixels (tiles x tile size^2; 2^24 is a 4096x4096
    /// image): a small file can describe an image that would take hours to encode or decode.
    #[arg(long, value_name = "N", default_value_t = fqgan::codec::DEFAULT_MAX_WORK_PIXELS)]
    max_pixels: u64,
}

impl WorkLimit {
    /// How files are decompressed: each records its own tiling.
    fn tiles(self) -> TileOptions {
        TileOptions { max_work_pixels: self.max_pixels, ..TileOptions::default() }
    }
}

#[derive(Args, Clone, Copy)]
struct CompressArgs {
    /// Pixels by which neighbouring tiles overlap (blended on decode to hide seams); default
    /// an eighth of the model's image size.
    #[arg(long)]
    overlap: Option<u32>,
    /// Store plain bit-packed ids instead of entropy coding them.
    #[arg(long)]
    packed: bool,
}

impl CompressArgs {
    fn settings(self, limit: WorkLimit, metrics: bool) -> CompressSettings {
        let coding = if self.packed { Coding::Packed } else { Coding::Entropy };
        CompressSettings {
            tiles: TileOptions { overlap: self.overlap, coding, max_work_pixels: limit.max_pixels },
            metrics,
        }
    }
}

fn main() -> ExitCode {
    fqgan_trainer::set_up_process();
    let result = match Cli::parse().command {
        Command::Demo { images, output, per_class, sampling, tokenizer, far, device } => {
            Demo { images, out: output, per_class, sampling, tokenizer, far }.run(&device)
        }
        Command::Reconstruct { input, output, codebooks, resize, tokenizer, device } => {
            Reconstruct { input, output, codebooks, resize, tokenizer }.run(&device)
        }
        Command::Generate { labels, output, sampling, columns, weights, far, tokenizer, device } => {
            Generate { labels, output, sampling, columns, weights, far, tokenizer }.run(&device)
        }
        Command::Info { generator: true, far, .. } => {
            far.load::<fqgan::device::Cpu>(&Default::default()).map(|model| println!("{}", model.config().to_json()))
        }
        Command::Info { tokenizer, .. } => tokenizer
            .load::<fqgan::device::Cpu>(LoadPurpose::Training, &Default::default())
            .map(|model| println!("{}", model.config().to_json())),
        Command::Compress { inputs, output, compress, limit, no_metrics, report, tokenizer, device } => {
            Compress { inputs, output, settings: compress.settings(limit, !no_metrics), report, tokenizer }.run(&device)
        }
        Command::Decompress { inputs, output, overwrite, limit, tokenizer, device } => {
            Decompress { inputs, output, overwrite, limit, tokenizer }.run(&device)
        }
        Command::Inspect { file } => inspect(&file),
        Command::Roundtrip { input, output, compress, limit, report, tokenizer, device } => {
            Roundtrip { input, output, settings: compress.settings(limit, true), report, tokenizer }.run(&device)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

struct Reconstruct {
    input: PathBuf,
    output: PathBuf,
    codebooks: Vec<String>,
    resize: bool,
    tokenizer: TokenizerArg,
}

impl Reconstruct {
    fn run(self, device: &DeviceArg) -> Result<()> {
        assets::check_outputs(&[&self.input], &[&self.output])?;
        let model = self.tokenizer.session(device.configure()?)?;
        let config = model.config();
        let names: Vec<&str> = config.codebooks.iter().map(|c| c.name.as_str()).collect();
        let which: Vec<usize> = if self.codebooks.is_empty() {
            (0..names.len()).collect()
        } else {
            self.codebooks
                .iter()
                .map(|name| model.codebook_index(name).context("--codebooks"))
                .collect::<Result<_>>()?
        };
        let image = read_rgb_sized(&self.input, model.image_size(), self.resize)?;

        let start = Instant::now();
        let tokens = model.encode(std::slice::from_ref(&image))?;
        let encoded = start.elapsed();
        let start = Instant::now();
        let recon = model.decode_codebooks(&tokens, &which)?.remove(0);
        let decode_time = start.elapsed();
        save_rgb(&self.output, &recon)?;

        let (k, h, w) = (tokens[0].k, tokens[0].side, tokens[0].side);
        let pixels = (image.width() * image.height()) as f64;
        let bits = config.bits_per_pixel() * pixels;
        println!("input        {} ({}x{})", self.input.display(), image.width(), image.height());
        println!("tokens       {k} x {h}x{w} ({})", names.join(", "));
        println!("bits/pixel   {:.4} ({} bytes of indices)", config.bits_per_pixel(), (bits / 8.0).ceil());
        println!("decoded with {}", which.iter().map(|&i| names[i]).collect::<Vec<_>>().join(", "));
        println!("psnr         {:.2} dB", fqgan::metrics::psnr(&image, &recon));
        println!(
            "time         encode {:.0} ms, decode {:.0} ms",
            encoded.as_secs_f64() * 1e3,
            decode_time.as_secs_f64() * 1e3
        );
        println!("wrote        {}", self.output.display());
        Ok(())
    }
}

struct Generate {
    labels: Vec<String>,
    output: PathBuf,
    sampling: SamplingArgs,
    columns: usize,
    weights: WeightPrecision,
    far: FarArg,
    tokenizer: TokenizerArg,
}

impl Generate {
    fn run(self, device: &DeviceArg) -> Result<()> {
        let device = device.configure()?;
        let mut far = self.far.session(device)?;
        far.set_weight_precision(self.weights).context("--weights")?;
        let tokenizer = self.tokenizer.session(device)?;
        let labels = self
            .labels
            .iter()
            .map(|name| Ok(Some(far.config().class_label(name).context("--labels")?)))
            .collect::<Result<Vec<_>>>()?;
        let request = self.sampling.request(labels, 1, far.config().k())?;
        let generated = generate_images(&far, &tokenizer, &request)?;
        save_rgb(&self.output, &image_grid(&generated.images, self.columns))?;

        let grid = tokenizer.config().grid_size();
        let names: Vec<String> = request.labels.iter().flatten().map(|&l| far.config().class_name(l)).collect();
        println!("classes      {}", names.join(", "));
        println!(
            "tokens       {} x {} x {grid}x{grid}, seed {}",
            self.labels.len(),
            far.config().k(),
            self.sampling.seed
        );
        println!(
            "time         generate {:.0} ms ({:.1} tokens/s), decode {:.0} ms",
            generated.generate_time.as_secs_f64() * 1e3,
            generated.tokens_per_second(far.config().block_size),
            generated.decode_time.as_secs_f64() * 1e3
        );
        println!("wrote        {}", self.output.display());
        Ok(())
    }
}

struct Compress {
    inputs: Vec<PathBuf>,
    output: PathBuf,
    settings: CompressSettings,
    report: Option<PathBuf>,
    tokenizer: TokenizerArg,
}

impl Compress {
    fn run(self, device: &DeviceArg) -> Result<()> {
        let jobs = assets::plan(&self.inputs, &self.output, "fqt", assets::image_extensions())?;
        let model = self.tokenizer.session(device.configure()?)?;
        let start = Instant::now();
        let rows = assets::compress_all(&model, &jobs, self.settings);
        print!("{}", summary::table(&rows));
        println!(
            "model {} ({}), {:.1} s",
            model.fingerprint(),
            self.tokenizer.describe(),
            start.elapsed().as_secs_f64()
        );
        if let Some(path) = &self.report {
            let json = serde_json::to_string_pretty(&rows).expect("rows serialise");
            fqgan::weights::write_atomic(path, json.as_bytes())?;
        }
        let failed = rows.iter().filter(|r| r.error.is_some()).count();
        if failed > 0 {
            bail!("{failed} of {} files failed (see the table)", rows.len());
        }
        Ok(())
    }
}

struct Decompress {
    inputs: Vec<PathBuf>,
    output: PathBuf,
    overwrite: bool,
    limit: WorkLimit,
    tokenizer: TokenizerArg,
}

impl Decompress {
    fn run(self, device: &DeviceArg) -> Result<()> {
        let single_image =
            self.output.extension().is_some_and(|e| e != "fqt") && self.inputs.len() == 1 && self.inputs[0].is_file();
        let jobs = if single_image {
            let jobs = vec![Job {
                input: self.inputs[0].clone(),
                output: self.output.clone(),
                name: self.inputs[0].display().to_string(),
            }];
            assets::check_jobs(&jobs)?;
            jobs
        } else {
            assets::plan(&self.inputs, &self.output, "png", &["fqt"])?
        };
        if !self.overwrite {
            let existing: Vec<String> =
                jobs.iter().filter(|j| j.output.exists()).map(|j| j.output.display().to_string()).collect();
            if !existing.is_empty() {
                bail!(
                    "{} output(s) already exist and would be replaced by lossy decodes, e.g. {}: choose another \
                     output, or pass --overwrite",
                    existing.len(),
                    existing.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let model = self.tokenizer.session(device.configure()?)?;
        let failures = assets::decompress_all(&model, &self.limit.tiles(), &jobs);
        println!("decoded {} of {} files", jobs.len() - failures.len(), jobs.len());
        if !failures.is_empty() {
            bail!(
                "{} of {} files failed: {}",
                failures.len(),
                jobs.len(),
                failures.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        Ok(())
    }
}

fn inspect(path: &std::path::Path) -> Result<()> {
    let file = TokenFile::read(path)?;
    let sizes = file.section_sizes()?;
    let l = &file.layout;
    let pixels = f64::from(l.width) * f64::from(l.height);
    let total_bits = sizes.total as f64 * 8.0;
    println!("file          {} ({} bytes)", path.display(), sizes.total);
    println!("format        .fqt version {}", fqgan::tokens::VERSION);
    println!("model         {}", file.fingerprint);
    println!(
        "image         {}x{} {}",
        l.width,
        l.height,
        if file.alpha.is_some() { "RGBA (alpha lossless)" } else { "RGB" }
    );
    println!(
        "tiles         {}x{} = {} tiles of {} px, overlap {} px, {}x{} tokens each",
        l.tiles_x(),
        l.tiles_y(),
        l.count(),
        l.tile,
        l.overlap,
        file.grid,
        file.grid
    );
    println!("codebooks     k = {}, sizes {:?}", file.k(), file.codebook_sizes);
    println!(
        "coding        {}",
        match file.coding {
            Coding::Packed => "bit-packed",
            Coding::Entropy => "entropy coded (adaptive range coder)",
        }
    );
    let packed = file.packed_token_bits().div_ceil(8);
    println!(
        "sections      header {} B, tokens {} B ({} ids; bit-packed {} B, {:.1}%), alpha {} B, checksum 4 B",
        sizes.header,
        sizes.tokens,
        file.tokens.len(),
        packed,
        100.0 * sizes.tokens as f64 / packed as f64,
        sizes.alpha
    );
    println!("bits/pixel    {:.4} (tokens alone {:.4})", total_bits / pixels, sizes.tokens as f64 * 8.0 / pixels);
    Ok(())
}

struct Roundtrip {
    input: PathBuf,
    output: PathBuf,
    settings: CompressSettings,
    report: Option<PathBuf>,
    tokenizer: TokenizerArg,
}

impl Roundtrip {
    fn run(self, device: &DeviceArg) -> Result<()> {
        let job = Job {
            input: self.input.clone(),
            output: self.output.with_extension("fqt"),
            name: self.input.display().to_string(),
        };
        assets::check_outputs(&[&self.input], &[&self.output, &job.output])?;
        let model = self.tokenizer.session(device.configure()?)?;
        let image = read_image(&self.input)?;
        let start = Instant::now();
        let progress = assets::progress_bar(1, "roundtrip");
        let (row, decoded) = assets::compress_one(&model, &job, image, self.settings, &progress)?;
        progress.finish_and_clear();
        let elapsed = start.elapsed();
        save_image(&self.output, &decoded.context("round trip decodes")?)?;
        print!("{}", summary::table(std::slice::from_ref(&row)));
        println!("wrote {} and {} in {:.2} s", job.output.display(), self.output.display(), elapsed.as_secs_f64());
        if let Some(path) = &self.report {
            let json = serde_json::to_string_pretty(&row).expect("row serialises");
            fqgan::weights::write_atomic(path, json.as_bytes())?;
        }
        Ok(())
    }
}

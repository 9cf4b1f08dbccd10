//! `fqgan`: use trained FQGAN models on image files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use fqgan::burn::tensor::backend::Backend;
use fqgan::device::BackendTask;
use fqgan::burn::tensor::{Int, Tensor, TensorData};
use fqgan::far::{generate, Decoding, GenerateOptions, SubTokenSampling};
use fqgan::image::{image_grid, images_to_tensor, read_rgb_sized, save_rgb, tensor_to_images};
use fqgan::tokenizer::LoadPurpose;
use fqgan::{Far, Tokenizer};
use fqgan_trainer::{DeviceArg, FarArg, TokenizerArg};

#[derive(Parser)]
#[command(name = "fqgan", version, about = "Tokenize, reconstruct, generate and inspect images with FQGAN models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        /// Class labels, one image each (comma-separated, e.g. `1,1,7`).
        #[arg(long, value_delimiter = ',', required = true)]
        labels: Vec<i64>,
        /// Where to write the grid (format from the extension, e.g. `.png`).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Sampler seed: the same seed gives the same images on the same device.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Classifier-free guidance scale: one value, or one per sub-token (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "2.0")]
        cfg_scale: Vec<f64>,
        /// Sampling temperature: one value, or one per sub-token.
        #[arg(long, value_delimiter = ',', default_value = "1.0")]
        temperature: Vec<f64>,
        /// Keep the k most likely ids (0 = all, 1 = greedy): one value, or one per sub-token.
        #[arg(long, value_delimiter = ',', default_value = "0")]
        top_k: Vec<usize>,
        /// Nucleus sampling threshold: one value, or one per sub-token.
        #[arg(long, value_delimiter = ',', default_value = "1.0")]
        top_p: Vec<f64>,
        /// Images per grid row.
        #[arg(long, default_value_t = 8)]
        columns: usize,
        #[command(flatten)]
        far: FarArg,
        #[command(flatten)]
        tokenizer: TokenizerArg,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Print a tokenizer file's config as JSON.
    Info {
        #[command(flatten)]
        tokenizer: TokenizerArg,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Reconstruct { input, output, codebooks, resize, tokenizer, device } => {
            device.device.run(Reconstruct { input, output, codebooks, resize, tokenizer }).map_err(Into::into).and_then(|r| r)
        }
        Command::Generate { labels, output, seed, cfg_scale, temperature, top_k, top_p, columns, far, tokenizer, device } => {
            let sampling = Sampling { cfg_scale, temperature, top_k, top_p };
            let task = Generate { labels, output, seed, sampling, columns, far, tokenizer };
            device.device.run(task).map_err(Into::into).and_then(|r| r)
        }
        Command::Info { tokenizer } => tokenizer
            .load::<fqgan::device::Cpu>(LoadPurpose::Training, &Default::default())
            .map(|model| println!("{}", model.config().to_json())),
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

impl BackendTask for Reconstruct {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let model = self.tokenizer.load::<B>(LoadPurpose::Inference, &device)?;
        let config = model.config();
        let names: Vec<&str> = config.codebooks.iter().map(|c| c.name.as_str()).collect();
        let which = if self.codebooks.is_empty() {
            (0..names.len()).collect()
        } else {
            self.codebooks
                .iter()
                .map(|want| match names.iter().position(|n| n == want) {
                    Some(i) => Ok(i),
                    None => bail!("--codebooks: no sub-codebook '{want}' (this model has {})", names.join(", ")),
                })
                .collect::<Result<Vec<_>>>()?
        };
        let image = read_rgb_sized(&self.input, config.image_size as u32, self.resize)?;
        let input = images_to_tensor::<B>(std::slice::from_ref(&image), &device)?;

        let start = Instant::now();
        let tokens = model.encode(input)?;
        let encoded = start.elapsed();
        let start = Instant::now();
        let decoded = model.decode_subset(tokens.clone(), &which)?;
        let recon = tensor_to_images(decoded).remove(0);
        let decode_time = start.elapsed();
        save_rgb(&self.output, &recon)?;

        let [_, k, h, w] = tokens.dims();
        let bits: f64 = config.codebooks.iter().map(|c| (c.size as f64).log2().ceil()).sum::<f64>() * (h * w) as f64;
        let pixels = (image.width() * image.height()) as f64;
        println!("input        {} ({}x{})", self.input.display(), image.width(), image.height());
        println!("tokens       {k} x {h}x{w} ({})", names.join(", "));
        println!("bits/pixel   {:.4} ({} bytes of indices)", bits / pixels, (bits / 8.0).ceil());
        println!("decoded with {}", which.iter().map(|&i| names[i]).collect::<Vec<_>>().join(", "));
        println!("psnr         {:.2} dB", fqgan::metrics::psnr(&image, &recon));
        println!("time         encode {:.0} ms, decode {:.0} ms", encoded.as_secs_f64() * 1e3, decode_time.as_secs_f64() * 1e3);
        println!("wrote        {}", self.output.display());
        Ok(())
    }
}

/// Per-sub-token sampling values as given on the command line (one value or k).
struct Sampling {
    cfg_scale: Vec<f64>,
    temperature: Vec<f64>,
    top_k: Vec<usize>,
    top_p: Vec<f64>,
}

impl Sampling {
    fn for_sub_tokens(&self, k: usize) -> Result<Vec<SubTokenSampling>> {
        fn pick<T: Copy>(values: &[T], j: usize, k: usize, flag: &str) -> Result<T> {
            match values.len() {
                1 => Ok(values[0]),
                n if n == k => Ok(values[j]),
                n => bail!("--{flag} has {n} values; give 1 or one per sub-token (k = {k})"),
            }
        }
        (0..k)
            .map(|j| {
                Ok(SubTokenSampling {
                    cfg_scale: pick(&self.cfg_scale, j, k, "cfg-scale")?,
                    temperature: pick(&self.temperature, j, k, "temperature")?,
                    top_k: pick(&self.top_k, j, k, "top-k")?,
                    top_p: pick(&self.top_p, j, k, "top-p")?,
                })
            })
            .collect()
    }
}

struct Generate {
    labels: Vec<i64>,
    output: PathBuf,
    seed: u64,
    sampling: Sampling,
    columns: usize,
    far: FarArg,
    tokenizer: TokenizerArg,
}

impl BackendTask for Generate {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let far = self.far.load::<B>(&device)?;
        let tokenizer = self.tokenizer.load::<B>(LoadPurpose::Inference, &device)?;
        check_pair(&far, &tokenizer)?;
        let k = far.config().k();
        let options = GenerateOptions { sampling: self.sampling.for_sub_tokens(k)?, seed: self.seed, decoding: Decoding::KvCache };
        let batch = self.labels.len();
        let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(self.labels.clone(), [batch]), &device);

        let start = Instant::now();
        let tokens = generate(&far, labels, None, &options)?;
        let generation = start.elapsed();
        let grid = tokenizer.config().grid_size();
        let start = Instant::now();
        let images = tensor_to_images(tokenizer.decode(tokens.reshape([batch, k, grid, grid]))?);
        let decode_time = start.elapsed();
        save_rgb(&self.output, &image_grid(&images, self.columns))?;

        let positions = (batch * far.config().block_size) as f64;
        println!("labels       {:?}", self.labels);
        println!("tokens       {batch} x {k} x {grid}x{grid}, seed {}", self.seed);
        println!(
            "time         generate {:.0} ms ({:.1} tokens/s), decode {:.0} ms",
            generation.as_secs_f64() * 1e3,
            positions / generation.as_secs_f64(),
            decode_time.as_secs_f64() * 1e3
        );
        println!("wrote        {}", self.output.display());
        Ok(())
    }
}

/// The generator's tokens must be the tokenizer's: same k, codebook sizes and grid.
fn check_pair<B: Backend>(far: &Far<B>, tokenizer: &Tokenizer<B>) -> Result<()> {
    let (f, t) = (far.config(), tokenizer.config());
    let sizes: Vec<usize> = t.codebooks.iter().map(|c| c.size).collect();
    if f.vocab_sizes != sizes {
        bail!("the generator's vocab_sizes {:?} differ from the tokenizer's codebook sizes {sizes:?}", f.vocab_sizes);
    }
    if f.block_size != t.grid_size() * t.grid_size() {
        bail!(
            "the generator makes {} tokens per image; the tokenizer's grid is {g}x{g}",
            f.block_size,
            g = t.grid_size()
        );
    }
    Ok(())
}

//! `fqgan`: use trained FQGAN models on image files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use fqgan::burn::tensor::backend::Backend;
use fqgan::device::BackendTask;
use fqgan::image::{images_to_tensor, read_rgb_sized, save_rgb, tensor_to_images};
use fqgan::tokenizer::LoadPurpose;
use fqgan_trainer::{DeviceArg, TokenizerArg};

#[derive(Parser)]
#[command(name = "fqgan", version, about = "Tokenize, reconstruct and inspect images with FQGAN models")]
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

//! Pieces shared by the `fqgan-trainer` and `fqgan` command-line tools.

pub mod curves;
pub mod demo;
pub mod eval_tokenizer;
pub mod extract_codes;
pub mod generation;
pub mod plot;
pub mod provenance;
pub mod run_dir;
pub mod sample;
pub mod teacher_features;
pub mod train_far;
pub mod train_tokenizer;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use fqgan::device::BackendTask;
use fqgan::runtime::{GeneratorSession, ModelSource, TokenizerSession};
use fqgan::tokenizer::LoadPurpose;
use fqgan::{DeviceChoice, Far, FarConfig, Tokenizer, TokenizerConfig};

pub mod assets;
pub mod summary;

/// `--device` and `--threads`, common to every command that computes.
#[derive(Args, Debug, Clone)]
pub struct DeviceArg {
    /// Where to compute: `cpu` (pure-Rust Flex backend), `ndarray` (alternative CPU backend),
    /// `cuda` or `cuda:N` (NVIDIA GPU N; needs a build with `--features cuda`), or `auto`
    /// (`cuda:0` when this build and machine have it, else `cpu`).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// CPU threads for the CPU backends (default: the FQGAN_NUM_THREADS environment variable,
    /// else one per logical CPU).
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,
}

impl DeviceArg {
    /// Sets up the CPU thread pool, then runs `task` on the chosen device.
    pub fn run<T: BackendTask + Send>(&self, task: T) -> Result<T::Output>
    where
        T::Output: Send,
    {
        fqgan::threads::configure(self.threads)?;
        Ok(self.device.run(task)?)
    }

    /// Sets up the CPU thread pool and returns the device, for commands that load sessions
    /// ([`fqgan::runtime`]) rather than run generic code.
    pub fn configure(&self) -> Result<DeviceChoice> {
        fqgan::threads::configure(self.threads)?;
        Ok(self.device)
    }
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse().map_err(|e: fqgan::Error| e.to_string())
}

fn parse_threads(s: &str) -> Result<usize, String> {
    fqgan::threads::parse(s).map_err(|e| e.to_string())
}

/// Which tokenizer to load.
#[derive(Args, Debug, Clone)]
pub struct TokenizerArg {
    /// Tokenizer weights (safetensors); default the built-in ufoai texture tokenizer. Files
    /// written by fqgan carry their config; converted official checkpoints need `--preset` or
    /// `--config` as well.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Config preset for a file without an embedded config (e.g. `dual-ds16`); see `fqgan-trainer presets`.
    #[arg(long, conflicts_with = "config", requires = "model")]
    pub preset: Option<String>,
    /// Config JSON file for a file without an embedded config.
    #[arg(long, value_name = "FILE", requires = "model")]
    pub config: Option<PathBuf>,
}

impl TokenizerArg {
    /// The config given on the command line, if any (else the file's own is used).
    pub fn config_override(&self) -> Result<Option<TokenizerConfig>> {
        read_config(self.preset.as_deref(), self.config.as_deref())
    }

    /// The file's path, or `builtin:<name>`.
    pub fn describe(&self) -> String {
        describe(self.model.as_deref(), &fqgan::builtin::TOKENIZER)
    }

    /// Loads `--model`, or the built-in tokenizer (saying so on stderr) when none is given.
    pub fn load<B: fqgan::burn::tensor::backend::Backend>(
        &self,
        purpose: LoadPurpose,
        device: &B::Device,
    ) -> Result<Tokenizer<B>> {
        self.load_with(
            || fqgan::builtin::tokenizer(purpose, device),
            |path, config| Tokenizer::load(path, config, purpose, device),
        )
    }

    /// As [`TokenizerArg::load`], as an inference session on `device`.
    pub fn session(&self, device: DeviceChoice) -> Result<TokenizerSession> {
        self.load_with(
            || TokenizerSession::load(ModelSource::Builtin, None, device),
            |path, config| TokenizerSession::load(ModelSource::File(path), config, device),
        )
    }

    /// `from_file(--model, the --preset/--config override)`, or `builtin()` when no file is given.
    fn load_with<T>(
        &self,
        builtin: impl FnOnce() -> fqgan::Result<T>,
        from_file: impl FnOnce(&Path, Option<&TokenizerConfig>) -> fqgan::Result<T>,
    ) -> Result<T> {
        let Some(path) = &self.model else {
            announce_builtin(&fqgan::builtin::TOKENIZER, "--model");
            return Ok(builtin()?);
        };
        let config = self.config_override()?;
        from_file(path, config.as_ref()).with_context(|| format!("loading tokenizer {}", path.display()))
    }
}

fn describe(path: Option<&Path>, builtin: &fqgan::builtin::BuiltinModel) -> String {
    path.map_or_else(|| format!("builtin:{}", builtin.name), |p| p.display().to_string())
}

/// Says which model a command uses when the user named none: stderr, so that stdout stays the
/// command's output.
fn announce_builtin(model: &fqgan::builtin::BuiltinModel, flag: &str) {
    eprintln!("using the built-in {} ({}; {flag} picks another)", model.name, model.description);
}

/// A config from a preset name or a JSON file; `None` when neither is given.
pub fn read_config(preset: Option<&str>, file: Option<&Path>) -> Result<Option<TokenizerConfig>> {
    read_either(preset, file, TokenizerConfig::preset, TokenizerConfig::from_json)
}

/// Which FAR generator to load.
#[derive(Args, Debug, Clone)]
pub struct FarArg {
    /// FAR generator weights (safetensors); default the built-in ufoai texture generator (which
    /// goes with the built-in tokenizer). Files written by fqgan carry their config; converted
    /// official checkpoints need `--far-preset` or `--far-config` as well.
    #[arg(long, value_name = "FILE")]
    pub far: Option<PathBuf>,
    /// FAR config preset for a file without an embedded config (e.g. `far-b-dual`).
    #[arg(long, conflicts_with = "far_config", requires = "far")]
    pub far_preset: Option<String>,
    /// FAR config JSON file for a file without an embedded config.
    #[arg(long, value_name = "FILE", requires = "far")]
    pub far_config: Option<PathBuf>,
}

impl FarArg {
    /// The file's path, or `builtin:<name>`.
    pub fn describe(&self) -> String {
        describe(self.far.as_deref(), &fqgan::builtin::GENERATOR)
    }

    /// Loads `--far`, or the built-in generator (saying so on stderr) when none is given.
    pub fn load<B: fqgan::burn::tensor::backend::Backend>(&self, device: &B::Device) -> Result<Far<B>> {
        self.load_with(|| fqgan::builtin::generator(device), |path, config| Far::load(path, config, device))
    }

    /// As [`FarArg::load`], as an inference session on `device`.
    pub fn session(&self, device: DeviceChoice) -> Result<GeneratorSession> {
        self.load_with(
            || GeneratorSession::load(ModelSource::Builtin, None, device),
            |path, config| GeneratorSession::load(ModelSource::File(path), config, device),
        )
    }

    /// `from_file(--far, the --far-preset/--far-config override)`, or `builtin()` when no
    /// file is given.
    fn load_with<T>(
        &self,
        builtin: impl FnOnce() -> fqgan::Result<T>,
        from_file: impl FnOnce(&Path, Option<&FarConfig>) -> fqgan::Result<T>,
    ) -> Result<T> {
        let Some(path) = &self.far else {
            announce_builtin(&fqgan::builtin::GENERATOR, "--far");
            return Ok(builtin()?);
        };
        let config = read_far_config(self.far_preset.as_deref(), self.far_config.as_deref())?;
        from_file(path, config.as_ref()).with_context(|| format!("loading FAR generator {}", path.display()))
    }
}

/// A FAR config from a preset name or a JSON file; `None` when neither is given.
pub fn read_far_config(preset: Option<&str>, file: Option<&Path>) -> Result<Option<FarConfig>> {
    read_either(preset, file, FarConfig::preset, FarConfig::from_json)
}

fn read_either<C>(
    preset: Option<&str>,
    file: Option<&Path>,
    from_preset: fn(&str) -> fqgan::Result<C>,
    from_json: fn(&str) -> fqgan::Result<C>,
) -> Result<Option<C>> {
    Ok(match (preset, file) {
        (Some(name), _) => Some(from_preset(name)?),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some(from_json(&text).with_context(|| format!("in {}", path.display()))?)
        }
        (None, None) => None,
    })
}

/// The process settings both command-line tools start with: malloc keeps freed memory
/// ([`fqgan::malloc::keep_freed_memory`]), and a closed stdout ends the process quietly, as it
/// does for other command-line tools (`fqgan info model | head`): Rust ignores SIGPIPE, so
/// `println!` would panic instead.
pub fn set_up_process() {
    fqgan::malloc::keep_freed_memory();
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

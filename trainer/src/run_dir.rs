//! A training run's folder, shared by the trainers: numbered atomic checkpoints (keep the
//! last N, resume from the newest), the append-only `metrics.jsonl` and the progress bar.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn create(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path: path.to_path_buf() })
    }

    pub fn checkpoint_path(&self, step: u64) -> PathBuf {
        self.path.join(format!("checkpoint-{step:08}.safetensors"))
    }

    /// Checkpoints in the folder, oldest first.
    pub fn checkpoints(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("checkpoint-") && n.ends_with(".safetensors"))
            })
            .collect();
        found.sort();
        found
    }

    pub fn latest_checkpoint(&self) -> Option<PathBuf> {
        self.checkpoints().pop()
    }

    /// Deletes all but the newest `keep` (at least 1) checkpoints.
    pub fn prune_checkpoints(&self, keep: usize) -> Result<()> {
        let all = self.checkpoints();
        for old in &all[..all.len().saturating_sub(keep.max(1))] {
            std::fs::remove_file(old).with_context(|| format!("removing {}", old.display()))?;
        }
        Ok(())
    }

    /// `metrics.jsonl`, opened for appending (a resumed run continues the same file).
    pub fn metrics(&self) -> Result<File> {
        let path = self.path.join("metrics.jsonl");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))
    }
}

/// A step counter bar (hidden when `quiet`) starting at `position`.
pub fn progress_bar(len: u64, position: u64, quiet: bool) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(len) };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise}<{eta_precise} {msg}")
            .expect("valid template"),
    );
    bar.set_position(position);
    bar
}

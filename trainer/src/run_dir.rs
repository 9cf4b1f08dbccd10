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

    /// Continues a run from its newest checkpoint with `load`, and drops the metrics lines of
    /// steps after it (a run stopped between checkpoints logged steps that will run again);
    /// says when there is no checkpoint and the run starts afresh.
    pub fn resume(&self, load: impl FnOnce(&Path) -> Result<u64>) -> Result<()> {
        let Some(last) = self.latest_checkpoint() else {
            println!("no checkpoint in {}: starting a new run", self.path.display());
            return Ok(());
        };
        let step = load(&last).with_context(|| format!("resuming from {}", last.display()))?;
        println!("resumed from {} at step {step}", last.display());
        self.truncate_metrics(step)
    }

    /// Keeps the metrics of a run that has done `steps` updates: lines of earlier steps, and at
    /// step `steps` those that are not an update's (validation, baselines). Step lines count
    /// from 0, so update `steps` is the next one to run.
    fn truncate_metrics(&self, steps: u64) -> Result<()> {
        let path = self.path.join("metrics.jsonl");
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
        let keep = |line: &str| match serde_json::from_str::<serde_json::Value>(line) {
            Ok(value) => match value.get("step").and_then(|s| s.as_u64()) {
                Some(step) => step < steps || (step == steps && value.get("loss").is_none()),
                None => true,
            },
            // A line cut short by a crash.
            Err(_) => false,
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let kept: Vec<&str> = lines.iter().copied().filter(|l| keep(l)).collect();
        if kept.len() == lines.len() {
            return Ok(());
        }
        let mut out = kept.join("\n");
        out.push('\n');
        fqgan::weights::write_atomic(&path, out.as_bytes())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_drops_the_steps_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        let lines = [
            r#"{"step":0,"unigram_val_loss":6.9}"#,
            r#"{"step":0,"loss":7.0}"#,
            r#"{"step":1,"loss":6.0}"#,
            r#"{"step":2,"val_loss":5.5}"#,
            r#"{"step":2,"loss":5.0}"#,
            r#"{"step":3,"loss":4.0}"#,
            r#"{"step":3,"lo"#,
        ];
        std::fs::write(dir.path().join("metrics.jsonl"), lines.join("\n")).unwrap();
        std::fs::write(run.checkpoint_path(2), b"").unwrap();
        run.resume(|_| Ok(2)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        assert_eq!(text, lines[..4].join("\n") + "\n");
    }

    #[test]
    fn resuming_without_a_checkpoint_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        run.resume(|_| panic!("no checkpoint to load")).unwrap();
    }
}

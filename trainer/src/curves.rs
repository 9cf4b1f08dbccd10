//! Training curves from a run's `metrics.jsonl`, drawn with [`crate::plot`]: loss and PSNR for
//! a tokenizer run, training and validation loss for a generator run.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use fqgan::image::RgbImage;
use serde_json::Value;

use crate::plot::{self, Panel, Series};

/// Training steps averaged in the dark (smoothed) line.
const WINDOW: usize = 100;

/// The curves of the run whose metrics are at `path`, as a picture.
pub fn render_metrics(path: &Path) -> Result<RgbImage> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))
        })
        .collect::<Result<Vec<Value>>>()?;
    let steps = |key: &str| by_step(&lines, key);
    let train_loss = steps("loss");
    if train_loss.is_empty() && steps("val_loss").is_empty() {
        bail!("{}: no `loss` or `val_loss` lines: not a training run's metrics", path.display());
    }
    let panels = if lines.iter().any(|l| l.get("reconstruction").is_some()) {
        // Runs before `psnr` was logged: an L2 reconstruction term is the MSE on [-1, 1] images.
        let mut psnr = steps("psnr");
        if psnr.is_empty() {
            psnr = steps("reconstruction")
                .into_iter()
                .map(|(s, mse)| (s, fqgan::metrics::psnr_from_mse(mse, 2.0)))
                .collect();
        }
        vec![
            raw_and_smoothed("training loss (all terms)", "loss", &train_loss, plot::BLUE),
            raw_and_smoothed("training PSNR (dB)", "PSNR dB", &psnr, plot::ORANGE),
        ]
    } else {
        vec![generator_panel(&train_loss, &steps)]
    };
    Ok(plot::render(&panels, "step"))
}

/// Writes `curves.png` of the run in `folder`; a failure is a warning, as the run's results
/// do not depend on it.
pub fn write_for_run(folder: &Path) {
    let png = folder.join("curves.png");
    match write(&folder.join("metrics.jsonl"), &png) {
        Ok(()) => println!("wrote {} (training curves)", png.display()),
        Err(e) => eprintln!("warning: no training curves: {e:#}"),
    }
}

/// Writes [`render_metrics`] of `metrics` to `png`.
pub fn write(metrics: &Path, png: &Path) -> Result<()> {
    fqgan::image::save_rgb(png, &render_metrics(metrics)?)?;
    Ok(())
}

/// `(step, value)` of every line with a numeric `key`; a step logged twice (a run resumed
/// from an older checkpoint) keeps its last value.
fn by_step(lines: &[Value], key: &str) -> Vec<(f64, f64)> {
    let mut points = BTreeMap::new();
    for line in lines {
        if let (Some(step), Some(value)) =
            (line.get("step").and_then(Value::as_u64), line.get(key).and_then(Value::as_f64))
        {
            points.insert(step, value);
        }
    }
    points.into_iter().map(|(s, v)| (s as f64, v)).collect()
}

fn raw_and_smoothed(
    title: &str,
    y_label: &str,
    points: &[(f64, f64)],
    (light, dark): (image::Rgb<u8>, image::Rgb<u8>),
) -> Panel {
    Panel {
        title: title.into(),
        y_label: y_label.into(),
        series: vec![
            Series { label: "per step".into(), points: points.to_vec(), color: light },
            Series { label: format!("mean of {WINDOW} steps"), points: plot::smooth(points, WINDOW), color: dark },
        ],
    }
}

fn generator_panel(train: &[(f64, f64)], steps: &dyn Fn(&str) -> Vec<(f64, f64)>) -> Panel {
    let mut panel = raw_and_smoothed("generator loss (nats per sub-token)", "nats", train, plot::BLUE);
    panel.series[0].label = "training, per step".into();
    let (val, null) = (steps("val_loss"), steps("val_null_class_loss"));
    if !val.is_empty() {
        panel.series.push(Series { label: "validation".into(), points: val, color: plot::GREEN });
    }
    if !null.is_empty() {
        panel.series.push(Series { label: "validation, null class".into(), points: null, color: plot::ORANGE.1 });
    }
    let last_step = train.last().map_or(0.0, |p| p.0);
    if let Some(&(_, baseline)) = steps("unigram_val_loss").last() {
        panel.series.push(Series {
            label: "unigram baseline (validation)".into(),
            points: vec![(0.0, baseline), (last_step, baseline)],
            color: plot::GREY,
        });
    }
    panel
}

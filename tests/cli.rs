//! The command-line tools, run as a user would run them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fqgan::weights::{write_safetensors, TensorFile};

#[path = "common/crafted.rs"]
mod crafted;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden").join(name)
}

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("binary runs")
}

fn trainer(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_fqgan-trainer"), args)
}

fn fqgan(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_fqgan"), args)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn verify_golden_passes_on_the_official_cases() {
    let dual = golden("tok_dual_ds16");
    let out = trainer(&["verify-golden", path(&dual)]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("indices_sem") && log.contains("PASS") && log.contains("33 passed, 0 failed"), "{log}");
}

/// A golden case with one expected tensor changed: `tensor` gets `change` applied to its first
/// elements; verify-golden must fail on exactly that tensor.
fn tampered_case(dir: &Path, tensor: &str, change: fn(&mut [f32])) -> PathBuf {
    let case = dir.join(format!("tok_dual_tampered_{tensor}"));
    std::fs::create_dir(&case).unwrap();
    for file in ["config.json", "weights.safetensors"] {
        std::fs::copy(golden("tok_dual_ds16").join(file), case.join(file)).unwrap();
    }
    let io = TensorFile::read(golden("tok_dual_ds16").join("io.safetensors")).unwrap();
    let mut tensors: std::collections::BTreeMap<_, _> = io.tensors.into_iter().collect();
    let data = tensors.get_mut(tensor).unwrap();
    let mut values: Vec<f32> = data.to_vec().unwrap();
    change(&mut values);
    *data = fqgan::burn::tensor::TensorData::new(values, data.shape.clone());
    write_safetensors(&case.join("io.safetensors"), &tensors, HashMap::new()).unwrap();
    case
}

#[test]
fn verify_golden_fails_loudly_on_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    // An absolute error of 1e-2, a NaN, and 2% of a loss of ~1e-2 (a 2.7e-4 change, which the
    // old absolute tolerance of 1e-4 would have let through at 0.5%).
    let cases: [(&str, fn(&mut [f32]), &str); 3] = [
        ("dec", |v| v[0] += 0.01, "1.000e-2"),
        ("quant_vis", |v| v[5] = f32::NAN, "NaN"),
        ("disentangle_loss", |v| v[0] *= 1.02, "FAIL"),
    ];
    for (tensor, change, shown) in cases {
        let out = trainer(&["verify-golden", path(&tampered_case(dir.path(), tensor, change))]);
        let log = text(&out);
        assert!(!out.status.success(), "{tensor}: {log}");
        let line = log.lines().find(|l| l.starts_with(&format!("{tensor} "))).unwrap();
        assert!(line.contains("FAIL") && line.contains(shown), "{tensor}: {line}");
        assert!(log.contains("32 passed, 1 failed"), "{tensor}: {log}");
    }
}

#[test]
fn init_then_reconstruct_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tok.safetensors");
    let out = trainer(&["init", "--preset", "small-triple-ds8", "--seed", "7", "-o", path(&model)]);
    assert!(out.status.success(), "{}", text(&out));

    let input = dir.path().join("in.png");
    let pixels = fqgan::image::RgbImage::from_fn(64, 64, |x, y| image_pixel(x, y));
    fqgan::image::save_rgb(&input, &pixels).unwrap();
    let recon = dir.path().join("out.png");
    let out = fqgan(&[
        "reconstruct",
        "--model",
        path(&model),
        path(&input),
        "-o",
        path(&recon),
        "--codebooks",
        "vis,sem_high",
    ]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("3 x 8x8") && log.contains("decoded with vis, sem_high") && log.contains("psnr"), "{log}");
    assert_eq!(fqgan::image::read_rgb(&recon).unwrap().dimensions(), (64, 64));

    let small = dir.path().join("small.png");
    fqgan::image::save_rgb(&small, &fqgan::image::RgbImage::new(40, 30)).unwrap();
    let out = fqgan(&["reconstruct", "--model", path(&model), path(&small), "-o", path(&recon)]);
    let log = text(&out);
    assert!(
        !out.status.success() && log.contains("small.png") && log.contains("40x30") && log.contains("--resize"),
        "{log}"
    );
}

fn image_pixel(x: u32, y: u32) -> image::Rgb<u8> {
    image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8])
}

#[test]
fn device_errors_are_clear() {
    let out = trainer(&["verify-golden", path(&golden("tok_dual_ds16")), "--device", "tpu"]);
    assert!(!out.status.success() && text(&out).contains("unknown device 'tpu'"), "{}", text(&out));
    let out = trainer(&["verify-golden", path(&golden("tok_dual_ds16")), "--device", "cuda"]);
    // The gate is the core crate's feature (builds enable `fqgan/cuda`, not the trainer's).
    // With CUDA built in, a machine without a driver must still get a clear error, not a panic.
    let expected = if fqgan::device::CUDA_BUILT { "CUDA driver not found" } else { "--features cuda" };
    if !(fqgan::device::CUDA_BUILT && out.status.success()) {
        assert!(!out.status.success() && text(&out).contains(expected), "{}", text(&out));
    }
}

fn examples_images() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/images")
}

/// `train-tokenizer` on `data` into `out` for `steps` steps of 2 images, quietly, with `extra` flags.
fn train_tokenizer(data: &Path, out: &Path, steps: u64, extra: &[&str]) -> Output {
    let steps = steps.to_string();
    let base = [
        "train-tokenizer",
        "--data",
        path(data),
        "--out",
        path(out),
        "--steps",
        &steps,
        "--batch-size",
        "2",
        "--quiet",
    ];
    trainer(&[&base[..], extra].concat())
}

#[test]
fn train_with_accumulation_and_ema_then_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let images = examples_images();
    let train = |out: &Path, extra: &[&str]| {
        train_tokenizer(&images, out, 2, &[&["--preset", "small-dual-ds8"], extra].concat())
    };
    let out = train(
        &run,
        &["--grad-accum", "2", "--ema", "0.9", "--note", "data=examples/images", "--checkpoint-every", "1"],
    );
    assert!(out.status.success(), "{}", text(&out));
    for file in [
        "tokenizer.safetensors",
        "tokenizer-ema.safetensors",
        "checkpoint-00000002.safetensors",
        "samples-00000002.png",
    ] {
        assert!(run.join(file).exists(), "{file} missing: {}", text(&out));
    }
    // The final files record how they were trained.
    for file in ["tokenizer.safetensors", "tokenizer-ema.safetensors"] {
        let weights = fqgan::weights::TensorFile::read(run.join(file)).unwrap();
        let provenance: serde_json::Value = serde_json::from_str(&weights.metadata["provenance"]).unwrap();
        assert_eq!(provenance["steps"], 2, "{file}: {provenance}");
        assert_eq!((provenance["grad_accum"].clone(), provenance["ema"].clone()), (2.into(), 0.9.into()));
        assert_eq!(provenance["notes"]["data"], "examples/images", "{file}: {provenance}");
        assert!(provenance["commit"].as_str().is_some_and(|c| !c.is_empty()), "{provenance}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], 1);

    // The EMA follows its formula: after step 2, ema = 0.9 ema(step 1) + 0.1 weights(step 2).
    let tensor = |file: &str, key: &str| -> Vec<f32> {
        fqgan::weights::TensorFile::read(run.join(file)).unwrap().tensors[key].to_vec().unwrap()
    };
    let key = "decoder.conv_out.weight";
    let (ema_1, ema_2) = (
        tensor("checkpoint-00000001.safetensors", &format!("ema.{key}")),
        tensor("checkpoint-00000002.safetensors", &format!("ema.{key}")),
    );
    let weights_2 = tensor("checkpoint-00000002.safetensors", &format!("model.{key}"));
    let worst = (0..ema_2.len()).map(|i| (ema_2[i] - (0.9 * ema_1[i] + 0.1 * weights_2[i])).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-6, "EMA off its formula by {worst}");
    assert!(ema_2.iter().zip(&weights_2).any(|(e, w)| (e - w).abs() > 1e-6), "the EMA equals the raw weights");
    // Accumulating two micro-batches is not one: the same run without --grad-accum ends elsewhere.
    let single = dir.path().join("single");
    let out = train(&single, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let raw = |run: &Path| -> Vec<f32> {
        fqgan::weights::TensorFile::read(run.join("tokenizer.safetensors")).unwrap().tensors[key].to_vec().unwrap()
    };
    let (accumulated, plain) = (raw(&run), raw(&single));
    let moved = accumulated.iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(moved > 1e-5, "--grad-accum 2 changed nothing ({moved})");

    let report_dir = dir.path().join("eval");
    let model = run.join("tokenizer-ema.safetensors");
    let out =
        trainer(&["eval-tokenizer", "--model", path(&model), path(&images), "--out", path(&report_dir), "--quiet"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["images"], 6);
    assert_eq!(report["bits_per_pixel"], 20.0 / 64.0); // 2 x 10 bits per 8x8 pixels
    let psnr = report["psnr"].as_f64().unwrap();
    assert!(psnr.is_finite() && psnr > 0.0, "{report}");
    let codebooks = report["codebooks"].as_array().unwrap();
    assert_eq!(codebooks.len(), 2);
    for c in codebooks {
        let (used, usage, perplexity) =
            (c["used"].as_u64().unwrap(), c["usage"].as_f64().unwrap(), c["perplexity"].as_f64().unwrap());
        // 6 images x 64 cells: at least one and at most 384 codes, perplexity no more than used.
        assert!(
            (1..=384).contains(&used)
                && usage == used as f64 / 1024.0
                && perplexity >= 1.0
                && perplexity <= used as f64 + 1e-9,
            "{c}"
        );
    }
    let markdown = std::fs::read_to_string(report_dir.join("eval.md")).unwrap();
    assert!(
        markdown.contains("| vis | 1024 |") && markdown.contains("PSNR (dB)") && log.contains("| sem | 1024 |"),
        "{markdown}"
    );
}

#[test]
fn teacher_flags_are_checked_against_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let teachers = golden("teachers");
    let (weights, config) = (teachers.join("weights_clip.safetensors"), teachers.join("hf_config_clip.json"));
    let images = examples_images();
    let train = |teacher: &[&str]| {
        train_tokenizer(&images, dir.path(), 1, &[&["--preset", "small-dual-ds8"], teacher].concat())
    };
    // small-dual-ds8 predicts 64-wide features for `sem`; the tiny golden CLIP is 32 wide.
    let out = train(&["--teacher", "clip", "--teacher-weights", path(&weights), "--teacher-config", path(&config)]);
    let log = text(&out);
    assert!(!out.status.success() && log.contains("'sem'") && log.contains("64") && log.contains("32"), "{log}");
    let out = train(&["--teacher", "dinov2", "--teacher-weights", path(&weights), "--teacher-config", path(&config)]);
    let log = text(&out);
    assert!(!out.status.success() && log.contains("Dinov2") && log.contains("Clip"), "{log}");
    let out = train(&["--teacher", "clip"]);
    assert!(!out.status.success() && text(&out).contains("--teacher-weights"), "{}", text(&out));
}

/// The semantic term from the command line, with the tiny golden CLIP teacher (32 wide) on a
/// small-dual-ds8 whose `sem` head is made 32 wide: live, and from precomputed features. On the
/// same centre crops the two paths feed the same features to the same loss.
#[test]
fn semantic_term_from_a_live_teacher_and_from_precomputed_features() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fqgan::TokenizerConfig::preset("small-dual-ds8").unwrap();
    config.codebooks[1].feat_pred.as_mut().unwrap().width = 32;
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_json()).unwrap();
    let teachers = golden("teachers");
    let (weights, teacher_config) = (teachers.join("weights_clip.safetensors"), teachers.join("hf_config_clip.json"));
    let images = examples_images();

    let features = dir.path().join("clip-features.safetensors");
    let out = trainer(&[
        "teacher-features",
        "--data",
        path(&images),
        "--image-size",
        "64",
        "--teacher",
        "clip",
        "--teacher-weights",
        path(&weights),
        "--teacher-config",
        path(&teacher_config),
        "-o",
        path(&features),
    ]);
    assert!(out.status.success() && text(&out).contains("6 images, 32 wide"), "{}", text(&out));

    let semantic_after_one_step = |run: &str, teacher: &[&str]| -> f64 {
        let run = dir.path().join(run);
        let out = train_tokenizer(&images, &run, 1, &[&["--config", path(&config_path)], teacher].concat());
        assert!(out.status.success(), "{}", text(&out));
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let line: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
        let semantic = line["semantic"].as_array().unwrap();
        assert_eq!(semantic.len(), 1, "{line}");
        semantic[0].as_f64().unwrap()
    };
    let live_teacher =
        ["--teacher", "clip", "--teacher-weights", path(&weights), "--teacher-config", path(&teacher_config)];
    let live = semantic_after_one_step("live", &[&live_teacher[..], &["--center-crops"]].concat());
    let stored = semantic_after_one_step("stored", &["--teacher-features", path(&features)]);
    // InfoNCE over 2 images lies between 0 and log(2) + 2 (cosines in [-1, 1]).
    assert!(live.is_finite() && live > 0.0 && live < 2.0 + 2f64.ln(), "{live}");
    assert!((live - stored).abs() < 1e-4, "live teacher {live} vs precomputed features {stored}");
    // Random crops and flips change what the live teacher sees, and so the term.
    let augmented = semantic_after_one_step("augmented", &live_teacher);
    assert!((augmented - live).abs() > 1e-4, "augmentation changed nothing: {augmented} vs {live}");
}

fn examples(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/images").join(name)
}

#[test]
fn demo_does_the_main_job_with_the_builtin_models() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::copy(examples("brick.png"), images.join("brick.png")).unwrap();
    let out_dir = dir.path().join("demo");
    let out = fqgan(&["demo", "--images", path(&images), "-o", path(&out_dir), "--per-class", "1"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("using the built-in ufoai-small-dual-ds8") && log.contains("ufoai-far-small-dual"), "{log}");
    assert!(log.contains("brick.png") && log.contains("JPEG B"), "{log}");
    let size = |name: &str| image::image_dimensions(out_dir.join(name)).unwrap();
    // Four 256 px panels per image: original, reconstruction, vis alone, sem alone.
    assert_eq!(size("reconstructions.png"), (4 * 256 + 3 * 2, 256));
    // One 64 px texture per class, a row each, and a row of 2 + 4 panels per image.
    assert_eq!(size("generated.png"), (64, 10 * 64 + 9 * 2));
    assert_eq!(size("completions.png"), (6 * 64 + 5 * 2, 64));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    let row = &report[0];
    assert!(row["psnr"].as_f64().unwrap() > 18.0, "{row}");
    assert!(row["jpeg"]["bytes"].as_u64().unwrap() > 0 && row["fqt_bytes"].as_u64().unwrap() > 0, "{row}");
    assert!(out_dir.join("fqt/brick.fqt").is_file());
}

#[test]
fn compress_without_a_model_uses_the_builtin_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let out = fqgan(&["compress", path(&examples("grass.png")), "-o", path(dir.path())]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("using the built-in ufoai-small-dual-ds8") && log.contains("builtin:ufoai-small-dual-ds8"),
        "{log}"
    );
    let file = fqgan::tokens::TokenFile::read(&dir.path().join("grass.fqt")).unwrap();
    let device = Default::default();
    let builtin = fqgan::builtin::tokenizer::<fqgan::device::Cpu>(fqgan::tokenizer::LoadPurpose::Inference, &device);
    assert_eq!(file.fingerprint, fqgan::fingerprint::Fingerprint::of(&builtin.unwrap()));
    // The names a generator stores are the labels `generate` takes.
    let grid = dir.path().join("grid.png");
    let out = fqgan(&["generate", "--labels", "nature,base", "-o", path(&grid), "--seed", "1"]);
    let log = text(&out);
    assert!(out.status.success() && log.contains("classes      nature, base"), "{log}");
    let out = fqgan(&["generate", "--labels", "lava", "-o", path(&grid)]);
    assert!(!out.status.success() && text(&out).contains("no class 'lava'"), "{}", text(&out));
    let out = fqgan(&["generate", "--labels", "nature", "-o", path(&grid), "--weights", "bf16"]);
    assert!(out.status.success() && text(&out).contains("classes      nature"), "{}", text(&out));
    let out = fqgan(&["generate", "--labels", "nature", "-o", path(&grid), "--weights", "f16"]);
    let log = text(&out);
    assert!(
        !out.status.success() && log.contains("unknown weight precision \"f16\": expected one of f32, bf16"),
        "{log}"
    );
}

/// Under a 1 GiB address-space cap, in a shell that ran the binary.
fn capped(bin: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg("ulimit -v 1048576 && exec \"$0\" \"$@\"").arg(bin).env("FQGAN_NUM_THREADS", "1");
    command
}

/// Every crafted model file through `fqgan info`, with the address space capped at 1 GiB: each
/// ends in an error that names the field, never in a signal (an allocation failure aborts).
#[test]
fn crafted_models_are_refused_by_the_cli_under_a_memory_cap() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, file, names) in crafted::write_all(dir.path()) {
        let flags = match kind {
            "tokenizer" => vec!["--model", path(&file)],
            _ => vec!["--generator", "--far", path(&file)],
        };
        let out = capped(env!("CARGO_BIN_EXE_fqgan")).arg("info").args(&flags).output().unwrap();
        let log = text(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {:?}\n{log}", file.display(), out.status);
        assert!(
            log.contains(names) && log.contains(path(&file)),
            "{}: expected {names} and the path: {log}",
            file.display()
        );
    }
}

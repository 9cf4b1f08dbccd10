//! The command-line tools, run as a user would run them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fqgan::weights::{write_safetensors, TensorFile};

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

#[test]
fn verify_golden_fails_loudly_on_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("tok_dual_tampered");
    std::fs::create_dir(&case).unwrap();
    for file in ["config.json", "weights.safetensors"] {
        std::fs::copy(golden("tok_dual_ds16").join(file), case.join(file)).unwrap();
    }
    let io = TensorFile::read(golden("tok_dual_ds16").join("io.safetensors")).unwrap();
    let mut tensors: std::collections::BTreeMap<_, _> = io.tensors.into_iter().collect();
    let dec = tensors.get_mut("dec").unwrap();
    let mut values: Vec<f32> = dec.to_vec().unwrap();
    values[0] += 0.01;
    *dec = fqgan::burn::tensor::TensorData::new(values, dec.shape.clone());
    write_safetensors(&case.join("io.safetensors"), &tensors, HashMap::new()).unwrap();

    let out = trainer(&["verify-golden", path(&case)]);
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    let dec_line = log.lines().find(|l| l.starts_with("dec ")).unwrap();
    assert!(dec_line.contains("FAIL") && dec_line.contains("1.000e-2"), "{dec_line}");
    assert!(log.contains("32 passed, 1 failed"), "{log}");
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
    let out = fqgan(&["reconstruct", "--model", path(&model), path(&input), "-o", path(&recon), "--codebooks", "vis,sem_high"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("3 x 8x8") && log.contains("decoded with vis, sem_high") && log.contains("psnr"), "{log}");
    assert_eq!(fqgan::image::read_rgb(&recon).unwrap().dimensions(), (64, 64));

    let small = dir.path().join("small.png");
    fqgan::image::save_rgb(&small, &fqgan::image::RgbImage::new(40, 30)).unwrap();
    let out = fqgan(&["reconstruct", "--model", path(&model), path(&small), "-o", path(&recon)]);
    let log = text(&out);
    assert!(!out.status.success() && log.contains("small.png") && log.contains("40x30") && log.contains("--resize"), "{log}");
}

fn image_pixel(x: u32, y: u32) -> image::Rgb<u8> {
    image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8])
}

#[test]
fn device_errors_are_clear() {
    let out = trainer(&["verify-golden", path(&golden("tok_dual_ds16")), "--device", "tpu"]);
    assert!(!out.status.success() && text(&out).contains("unknown device 'tpu'"), "{}", text(&out));
    #[cfg(not(feature = "cuda"))]
    {
        let out = trainer(&["verify-golden", path(&golden("tok_dual_ds16")), "--device", "cuda"]);
        assert!(!out.status.success() && text(&out).contains("--features cuda"), "{}", text(&out));
    }
}

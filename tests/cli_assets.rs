//! The `fqgan` asset commands end to end, on a small random model and tiny images.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fqgan::image::{save_image, DynamicImage, RgbImage, RgbaImage};

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program).args(args).output().unwrap();
    println!(
        "$ {program} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn fqgan(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_fqgan"), args)
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn init_model(dir: &Path, seed: &str) -> String {
    let path = dir.join(format!("model{seed}.safetensors"));
    let out = run(
        env!("CARGO_BIN_EXE_fqgan-trainer"),
        &["init", "--preset", "small-dual-ds8", "--seed", seed, "-o", path.to_str().unwrap()],
    );
    assert!(out.status.success());
    path.to_str().unwrap().to_string()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A folder with an odd-sized RGB image, an RGBA image in a subfolder and a broken file.
fn inputs(dir: &Path) -> PathBuf {
    let folder = dir.join("textures");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    let rgb = RgbImage::from_fn(75, 41, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, ((x + y) * 2) as u8]));
    save_image(folder.join("wall.png"), &DynamicImage::ImageRgb8(rgb)).unwrap();
    let rgba = RgbaImage::from_fn(40, 66, |x, y| {
        image::Rgba([(x * 6) as u8, 90, (y * 3) as u8, if x < 20 { 255 } else { (y * 4) as u8 }])
    });
    save_image(folder.join("sub/leaf.png"), &DynamicImage::ImageRgba8(rgba)).unwrap();
    std::fs::write(folder.join("sub/broken.png"), b"not a png at all").unwrap();
    folder
}

#[test]
fn compress_a_folder_reports_the_bad_file_and_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path(), "1");
    let folder = inputs(dir.path());
    let out = dir.path().join("out");
    let report = dir.path().join("report.json");
    let result = fqgan(&["compress", p(&folder), "-o", p(&out), "--model", &model, "--report", p(&report)]);
    let printed = text(&result);
    assert!(!result.status.success(), "a failed file makes the exit status non-zero");
    for expected in [
        "wall.png",
        "75x41",
        "sub/leaf.png",
        "yes",
        "sub/broken.png",
        "FAILED",
        "total (2 of 3 files)",
        "PSNR dB",
        "SSIM",
        "1 of 3 files failed",
    ] {
        assert!(printed.contains(expected), "'{expected}' missing");
    }
    assert!(out.join("wall.fqt").is_file() && out.join("sub/leaf.fqt").is_file());
    assert!(!out.join("sub/broken.fqt").exists());
    let rows: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    let wall = rows.as_array().unwrap().iter().find(|r| r["name"] == "wall.png").unwrap();
    assert!(wall["psnr"].as_f64().unwrap() > 0.0 && wall["ssim"].as_f64().is_some());

    let inspect = fqgan(&["inspect", p(&out.join("sub/leaf.fqt"))]);
    assert!(inspect.status.success());
    for expected in ["40x66 RGBA", "k = 2", "bits/pixel", "model ", "entropy coded"] {
        assert!(text(&inspect).contains(expected), "inspect: '{expected}' missing");
    }

    let decoded = dir.path().join("decoded");
    let result = fqgan(&["decompress", p(&out), "-o", p(&decoded), "--model", &model]);
    assert!(result.status.success());
    let leaf = fqgan::image::read_image(decoded.join("sub/leaf.png")).unwrap();
    assert_eq!((leaf.width(), leaf.height(), leaf.color().has_alpha()), (40, 66, true));
    let wall = fqgan::image::read_image(decoded.join("wall.png")).unwrap();
    assert_eq!((wall.width(), wall.height(), wall.color().has_alpha()), (75, 41, false));

    let other = init_model(dir.path(), "2");
    let result =
        fqgan(&["decompress", p(&out.join("wall.fqt")), "-o", p(&dir.path().join("x.png")), "--model", &other]);
    assert!(!result.status.success());
    assert!(text(&result).contains("made by model"), "wrong model is named");
}

#[test]
fn roundtrip_writes_the_image_the_file_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path(), "3");
    let folder = inputs(dir.path());
    let output = dir.path().join("rt/wall.png");
    let report = dir.path().join("rt/wall.json");
    let result = fqgan(&[
        "roundtrip",
        p(&folder.join("wall.png")),
        "-o",
        p(&output),
        "--model",
        &model,
        "--packed",
        "--report",
        p(&report),
    ]);
    assert!(result.status.success());
    assert!(output.is_file() && dir.path().join("rt/wall.fqt").is_file());
    let row: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!((row["width"].as_u64(), row["height"].as_u64()), (Some(75), Some(41)));
    let inspect = fqgan(&["inspect", p(&dir.path().join("rt/wall.fqt"))]);
    assert!(text(&inspect).contains("bit-packed"));
}

/// Outputs that would lose data are refused before anything is written: an output that is the
/// input (the lossy result would replace the original), two inputs mapped to one output.
#[test]
fn outputs_that_would_lose_data_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path(), "1");
    let folder = inputs(dir.path());
    let wall = folder.join("wall.png");
    let original = std::fs::read(&wall).unwrap();
    for command in ["roundtrip", "reconstruct"] {
        let mut args = vec![command, p(&wall), "-o", p(&wall), "--model", &model];
        if command == "reconstruct" {
            args.push("--resize");
        }
        let out = fqgan(&args);
        assert!(!out.status.success(), "{command}");
        assert!(text(&out).contains("is also an input"), "{command}: {}", text(&out));
        assert_eq!(std::fs::read(&wall).unwrap(), original, "{command} replaced the original");
    }

    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(&wall, other.join("wall.png")).unwrap();
    let out_dir = dir.path().join("out");
    let out = fqgan(&["compress", p(&wall), p(&other.join("wall.png")), "-o", p(&out_dir), "--model", &model]);
    assert!(!out.status.success());
    let message = text(&out);
    assert!(message.contains("would both be written to") && message.contains("other"), "{message}");
    assert!(!out_dir.join("wall.fqt").exists(), "something was written");

    // Decoding next to the originals (`decompress src -o src`) would replace them: refused
    // unless asked for.
    let fqt = folder.join("wall.fqt");
    assert!(fqgan(&["compress", p(&wall), "-o", p(&fqt), "--no-metrics", "--model", &model]).status.success());
    let out = fqgan(&["decompress", p(&fqt), "-o", p(&wall), "--model", &model]);
    assert!(!out.status.success() && text(&out).contains("--overwrite"), "{}", text(&out));
    assert_eq!(std::fs::read(&wall).unwrap(), original, "decompress replaced the original");
    assert!(fqgan(&["decompress", p(&fqt), "-o", p(&wall), "--overwrite", "--model", &model]).status.success());
    assert_ne!(std::fs::read(&wall).unwrap(), original);
}

/// `fqgan info ... | head`: a reader that goes away ends the process quietly, no panic.
#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path(), "1");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fqgan"))
        .args(["info", "--model", &model])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// --max-pixels bounds the model work one image may ask for, on the way in and out: a small
/// file describing a huge image is refused by name instead of running for hours.
#[test]
fn work_past_the_limit_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_model(dir.path(), "1");
    let wall = inputs(dir.path()).join("wall.png");
    let fqt = dir.path().join("wall.fqt");
    let out = fqgan(&["compress", p(&wall), "-o", p(&fqt), "--no-metrics", "--max-pixels", "4096", "--model", &model]);
    let message = text(&out);
    assert!(!out.status.success() && message.contains("more than the limit of 4096"), "{message}");
    assert!(message.contains("--max-pixels"), "{message}");
    assert!(!fqt.exists());

    assert!(fqgan(&["compress", p(&wall), "-o", p(&fqt), "--no-metrics", "--model", &model]).status.success());
    let png = dir.path().join("back.png");
    let out = fqgan(&["decompress", p(&fqt), "-o", p(&png), "--max-pixels", "4096", "--model", &model]);
    let message = text(&out);
    assert!(!out.status.success() && message.contains("wall.fqt") && message.contains("limit of 4096"), "{message}");
    assert!(!png.exists());
}

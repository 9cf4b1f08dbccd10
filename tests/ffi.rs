//! The C API from the outside: checks the committed header against a fresh cbindgen run, then
//! builds libfqgan from this checkout (see [`library_dir`]), builds the C, C++ and C# programs
//! against it and runs them. Their outputs must equal the Rust API's, bit for bit.
//!
//! Needs on PATH: `cbindgen` (`cargo install cbindgen --locked`), gcc, g++, and Mono's `mcs`
//! and `mono` (Debian: `mono-mcs mono-runtime`).
// The programs are built with gcc/g++ and Mono and loaded as libfqgan.so: Linux only. Elsewhere
// the suite must not pass as zero tests, so one test fails and says why.
#[cfg(not(target_os = "linux"))]
#[test]
fn ffi_suite_needs_linux() {
    panic!("tests/ffi.rs builds and runs the C, C++ and C# programs on Linux only; run it there");
}

// The crafted files are built with the core crate's names, as the other suites that use them.
#[cfg(target_os = "linux")]
extern crate fqgan_core as fqgan;

#[cfg(target_os = "linux")]
#[path = "common/crafted.rs"]
mod crafted;

#[cfg(target_os = "linux")]
mod linux {

    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use std::sync::OnceLock;

    use fqgan_core::burn::tensor::{Int, Tensor, TensorData};
    use fqgan_core::codec::AssetCodec;
    use fqgan_core::device::Cpu;
    use fqgan_core::far::{generate, Far, FarConfig, GenerateOptions, SubTokenSampling};
    use fqgan_core::fingerprint::Fingerprint;
    use fqgan_core::image::{images_to_tensor, read_rgb_sized, tensor_to_images, DynamicImage, RgbImage, RgbaImage};
    use fqgan_core::tiling::TileLayout;
    use fqgan_core::tokenizer::LoadPurpose;
    use fqgan_core::tokens::{Coding, TokenFile};
    use fqgan_core::{Tokenizer, TokenizerConfig};

    /// The repository root (this package lives in `fqgan-ffi/`).
    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("fqgan-ffi has a parent").to_path_buf()
    }

    /// The directory holding a libfqgan.so built from this checkout: `target/<profile>/`.
    ///
    /// Cargo builds a package's library for its integration tests only when Rust can link it (an
    /// rlib), and fqgan-ffi is cdylib + staticlib only (an rlib named `fqgan` would collide with
    /// the core crate's). So the tests build it themselves, once per run, into the target
    /// directory and profile this test binary comes from (`target/<profile>/deps/ffi-*`), with
    /// this package's features; cargo makes that a no-op when it is up to date.
    fn library_dir() -> PathBuf {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            let profile_dir = exe.ancestors().nth(2).expect("target/<profile>/deps/<test>");
            let target_dir = profile_dir.parent().expect("target/<profile>");
            let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
                Some("debug") => "dev",
                Some(other) => other,
                None => panic!("no profile in {}", exe.display()),
            };
            let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            build
                .current_dir(root())
                .args(["build", "-p", "fqgan-ffi", "--lib", "--profile", profile])
                .arg("--target-dir")
                .arg(target_dir);
            if cfg!(feature = "cuda") {
                build.args(["--features", "cuda"]);
            }
            run(&mut build);
            assert!(profile_dir.join("libfqgan.so").exists(), "no libfqgan.so in {}", profile_dir.display());
            profile_dir.to_path_buf()
        })
        .clone()
    }

    /// A small model, a 64x64 input (PPM and packed RGBA8) and what the Rust API makes of it.
    struct Fixture {
        _dir: tempfile::TempDir,
        model: PathBuf,
        ppm: PathBuf,
        rgba: PathBuf,
        tokens: Vec<u32>,
        decoded: RgbImage,
        /// Decoded with sub-codebook 0 ("vis") only.
        decoded_0: RgbImage,
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let device = Default::default();
            let config = TokenizerConfig::preset("small-dual-ds8").unwrap();
            let model = dir.path().join("model.safetensors");
            Tokenizer::<Cpu>::new(&config, &device).unwrap().save(&model).unwrap();
            // The reference runs the model as the library loads it: from the file, for inference.
            let tokenizer = Tokenizer::<Cpu>::load(&model, None, LoadPurpose::Inference, &device).unwrap();

            let image = read_rgb_sized(root().join("examples/images/chelsea.png"), 64, true).unwrap();
            let ppm = dir.path().join("input.ppm");
            std::fs::write(&ppm, ppm_bytes(&image)).unwrap();
            let rgba = dir.path().join("input.rgba");
            std::fs::write(&rgba, rgba_bytes(&image)).unwrap();

            let tensor = images_to_tensor::<Cpu>(std::slice::from_ref(&image), &device).unwrap();
            let ids = tokenizer.encode(tensor);
            let tokens = ids.to_data().convert::<i64>().iter::<i64>().map(|id| id as u32).collect();
            let decoded = tensor_to_images(tokenizer.decode(ids.clone())).remove(0);
            let decoded_0 = tensor_to_images(tokenizer.decode_subset(ids, &[0])).remove(0);
            Fixture { _dir: dir, model, ppm, rgba, tokens, decoded, decoded_0 }
        })
    }

    /// The golden FAR-Dual case and the golden tokenizer whose tokens it makes (2 x 256 ids on a
    /// 4x4 grid, 64x64 images), saved with their configs as the library loads them, and what the
    /// Rust API generates for class 3, seed 7, cfg 2, temperature 1, top_k 0: 2 images with
    /// top_p 0.9 (the test programs) and 1 image with top_p 1 (the examples' defaults).
    struct Generation {
        _dir: tempfile::TempDir,
        far: PathBuf,
        tokenizer: PathBuf,
        /// `[2, k, 4, 4]`, image-major.
        tokens: Vec<u32>,
        /// The same run continuing the top 2 token rows of the first image in both images.
        completed: Vec<u32>,
        /// 2 images of class 5, seed 11, cfg 1.5, temperature 1.7, top_k 9, top_p 0.8.
        sampled: Vec<u32>,
        /// The two decoded images, packed RGBA8, one after the other.
        rgba: Vec<u8>,
        /// `.fqt` bytes of the first image, bit-packed and range-coded.
        packed: Vec<u8>,
        entropy: Vec<u8>,
        /// The examples' single image as PPM, and its tokens as a bit-packed `.fqt`.
        single_ppm: Vec<u8>,
        single_fqt: Vec<u8>,
    }

    fn golden_config(case: &str) -> serde_json::Value {
        let text =
            std::fs::read_to_string(root().join("tests/fixtures/golden").join(case).join("config.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn generation() -> &'static Generation {
        static GENERATION: OnceLock<Generation> = OnceLock::new();
        GENERATION.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let device = Default::default();
            let golden = root().join("tests/fixtures/golden");
            let far_config = FarConfig::from_golden_json(&golden_config("far_dual")).unwrap();
            let far = dir.path().join("far.safetensors");
            Far::<Cpu>::load(golden.join("far_dual/weights.safetensors"), Some(&far_config), &device)
                .unwrap()
                .save(&far)
                .unwrap();
            let tok_config = TokenizerConfig::from_golden_json(&golden_config("tok_dual_ds16")).unwrap();
            let tokenizer = dir.path().join("tokenizer.safetensors");
            let inference = LoadPurpose::Inference;
            Tokenizer::<Cpu>::load(
                golden.join("tok_dual_ds16/weights.safetensors"),
                Some(&tok_config),
                inference,
                &device,
            )
            .unwrap()
            .save(&tokenizer)
            .unwrap();

            let model = Far::<Cpu>::load(&far, None, &device).unwrap();
            let decoder = Tokenizer::<Cpu>::load(&tokenizer, None, inference, &device).unwrap();
            model.config().check_tokenizer(decoder.config()).unwrap();
            let run_from = |count: usize, sampling: SubTokenSampling, prefix: Option<Tensor<Cpu, 3, Int>>| {
                let labels = Tensor::<Cpu, 1, Int>::from_data(TensorData::new(vec![3i64; count], [count]), &device);
                let ids = generate(&model, labels, prefix, &GenerateOptions::uniform(2, sampling, 7)).unwrap();
                let tokens: Vec<u32> = ids.to_data().convert::<i64>().iter::<i64>().map(|id| id as u32).collect();
                (tokens, tensor_to_images(decoder.decode(ids.reshape([count, 2, 4, 4]))))
            };
            let fqt = |tokens: &[u32], coding| {
                let file = TokenFile {
                    fingerprint: Fingerprint::of(&decoder),
                    layout: TileLayout::new(64, 64, 64, 0).unwrap(),
                    grid: 4,
                    codebook_sizes: vec![256, 256],
                    tokens: tokens.to_vec(),
                    alpha: None,
                    coding,
                };
                file.to_bytes().unwrap()
            };
            let run = |count: usize, sampling: SubTokenSampling| run_from(count, sampling, None);
            // The C side passes top_p as a float: the same value, widened.
            let test_sampling = SubTokenSampling { top_p: f64::from(0.9f32), ..SubTokenSampling::default() };
            let (tokens, images) = run(2, test_sampling.clone());
            let kept: Vec<i64> = (0..2).flat_map(|j| &tokens[j * 16..j * 16 + 8]).map(|&id| i64::from(id)).collect();
            let kept: Vec<i64> = kept.iter().chain(&kept).copied().collect();
            let prefix = Tensor::<Cpu, 3, Int>::from_data(TensorData::new(kept, [2, 2, 8]), &device);
            let (completed, _) = run_from(2, test_sampling, Some(prefix));
            let sampled = {
                let labels = Tensor::<Cpu, 1, Int>::from_data(TensorData::new(vec![5i64; 2], [2]), &device);
                let sampling = SubTokenSampling {
                    cfg_scale: f64::from(1.5f32),
                    temperature: f64::from(1.7f32),
                    top_k: 9,
                    top_p: f64::from(0.8f32),
                };
                let ids = generate(&model, labels, None, &GenerateOptions::uniform(2, sampling, 11)).unwrap();
                ids.to_data().convert::<i64>().iter::<i64>().map(|id| id as u32).collect()
            };
            let rgba = images.iter().flat_map(rgba_bytes).collect();
            let (packed, entropy) = (fqt(&tokens[..32], Coding::Packed), fqt(&tokens[..32], Coding::Entropy));
            let (single_tokens, single) = run(1, SubTokenSampling::default());
            let (single_ppm, single_fqt) = (ppm_bytes(&single[0]), fqt(&single_tokens, Coding::Packed));
            Generation {
                _dir: dir,
                far,
                tokenizer,
                tokens,
                completed,
                sampled,
                rgba,
                packed,
                entropy,
                single_ppm,
                single_fqt,
            }
        })
    }

    fn read_u32s(path: &Path) -> Vec<u32> {
        std::fs::read(path).unwrap().chunks_exact(4).map(|b| u32::from_ne_bytes(b.try_into().unwrap())).collect()
    }

    fn ppm_bytes(image: &RgbImage) -> Vec<u8> {
        let mut bytes = format!("P6\n{} {}\n255\n", image.width(), image.height()).into_bytes();
        bytes.extend_from_slice(image.as_raw());
        bytes
    }

    fn rgba_bytes(image: &RgbImage) -> Vec<u8> {
        image.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect()
    }

    /// Runs a command; panics with its output unless it succeeds.
    fn run(command: &mut Command) -> Output {
        let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        assert!(
            output.status.success(),
            "{command:?} failed ({})\n--- stdout\n{}--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Compiles C or C++ sources into `out` against include/, bindings/cpp/ and the built library.
    fn compile(compiler: &str, standard: &str, sources: &[&str], out: &Path) {
        let lib = library_dir();
        let root = root();
        let mut command = Command::new(compiler);
        command
            .args([standard, "-Wall", "-Wextra", "-Werror", "-pthread"])
            .arg("-I")
            .arg(root.join("include"))
            .arg("-I")
            .arg(root.join("bindings/cpp"))
            .args(sources.iter().map(|s| root.join(s)))
            .arg("-L")
            .arg(&lib)
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .args(["-lfqgan", "-o"])
            .arg(out);
        run(&mut command);
    }

    /// Compiles the C# binding with `sources` into `out` (Mono's mcs needs `experimental` for
    /// C# 7.3's `fixed` on spans; Unity's and .NET's compilers take the file as it is).
    fn compile_csharp(source: &str, out: &Path) {
        let root = root();
        let mut command = Command::new("mcs");
        command
            .args(["-langversion:experimental", "-unsafe", "-warnaserror"])
            .arg(format!("-out:{}", out.display()))
            .arg(root.join("bindings/csharp/Fqgan.cs"))
            .arg(root.join(source));
        run(&mut command);
    }

    /// A compiled C/C++ program, made to load the libfqgan of [`library_dir`] whatever else the
    /// environment's library path lists.
    fn native(exe: &Path) -> Command {
        let mut command = Command::new(exe);
        command.env("LD_LIBRARY_PATH", library_dir());
        command
    }

    fn mono(exe: &Path) -> Command {
        let mut command = Command::new("mono");
        command.arg(exe).env("LD_LIBRARY_PATH", library_dir());
        command
    }

    fn assert_same_image(file: &Path, expected: &[u8], what: &str) {
        let actual = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(actual.len() == expected.len(), "{what}: {} bytes, expected {}", actual.len(), expected.len());
        let differing = actual.iter().zip(expected).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{what}: {differing} bytes differ from the Rust API's output");
    }

    #[test]
    fn header_is_up_to_date() {
        let root = root();
        let output = Command::new("cbindgen")
            .current_dir(&root)
            .args(["--config", "fqgan-ffi/cbindgen.toml", "fqgan-ffi"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run cbindgen ({e}); install it: cargo install cbindgen --locked"));
        assert!(output.status.success(), "cbindgen failed:\n{}", String::from_utf8_lossy(&output.stderr));
        let committed = std::fs::read_to_string(root.join("include/fqgan.h")).unwrap();
        assert!(
            String::from_utf8(output.stdout).unwrap() == committed,
            "include/fqgan.h differs from the code; regenerate it from the repository root with\n  \
         cbindgen --config fqgan-ffi/cbindgen.toml --output include/fqgan.h fqgan-ffi"
        );
    }

    #[test]
    fn c_example_round_trip_matches_rust() {
        let fixture = fixture();
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("encode_decode");
        compile("gcc", "-std=c11", &["examples/c/encode_decode.c"], &exe);
        let out = dir.path().join("out.ppm");
        run(native(&exe).arg(&fixture.model).arg(&fixture.ppm).arg(&out).arg("cpu"));
        assert_same_image(&out, &ppm_bytes(&fixture.decoded), "C example");
    }

    #[test]
    fn c_api_checks_every_argument_shares_a_handle_across_threads_and_matches_rust() {
        let fixture = fixture();
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("api_test");
        compile("gcc", "-std=c11", &["tests/ffi/api_test.c"], &exe);
        run(native(&exe).arg(&fixture.model).arg(&fixture.rgba).arg(dir.path()));
        let tokens = read_u32s(&dir.path().join("tokens.u32"));
        assert_eq!(tokens, fixture.tokens, "tokens from C differ from the Rust API's");
        assert_same_image(&dir.path().join("decoded.rgba"), &rgba_bytes(&fixture.decoded), "C decode");
        assert_same_image(&dir.path().join("decoded_0.rgba"), &rgba_bytes(&fixture.decoded_0), "C decode_subset");
    }

    /// Every crafted model file through the C loaders, with the address space capped at 1 GiB.
    #[test]
    fn crafted_models_are_refused_through_the_c_api_under_a_memory_cap() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("hostile_test");
        compile("gcc", "-std=c11", &["tests/ffi/hostile_test.c"], &exe);
        let mut command = Command::new("sh");
        command.arg("-c").arg("ulimit -v 1048576 && exec \"$0\" \"$@\"").arg(&exe);
        for (kind, file, names) in super::crafted::write_all(dir.path()) {
            command.arg(kind).arg(file).arg(names);
        }
        run(command.env("LD_LIBRARY_PATH", library_dir()).env("FQGAN_NUM_THREADS", "1"));
    }

    /// Whole images through `fqgan_fqt_encode_image` / `fqgan_fqt_decode_image` against the
    /// Rust codec: a 150x70 RGBA image (3 x 2 tiles) with a real alpha plane.
    #[test]
    fn c_whole_images_match_the_rust_codec() {
        let fixture = fixture();
        let dir = tempfile::tempdir().unwrap();
        let (width, height) = (150, 70);
        let photo = read_rgb_sized(root().join("examples/images/chelsea.png"), 256, true).unwrap();
        let pixels = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .flat_map(|(x, y)| {
                let [r, g, b] = photo.get_pixel(x, y).0;
                [r, g, b, if x < 100 { 255 } else { (y * 3) as u8 }]
            })
            .collect();
        let image = RgbaImage::from_raw(width, height, pixels).unwrap();
        let input = dir.path().join("input.rgba");
        std::fs::write(&input, image.as_raw()).unwrap();
        let exe = dir.path().join("fqt_image_test");
        compile("gcc", "-std=c11", &["tests/ffi/fqt_image_test.c"], &exe);
        run(native(&exe)
            .arg(&fixture.model)
            .arg(&generation().tokenizer)
            .arg(&input)
            .arg(width.to_string())
            .arg(height.to_string())
            .arg(dir.path()));

        let tokenizer =
            Tokenizer::<Cpu>::load(&fixture.model, None, LoadPurpose::Inference, &Default::default()).unwrap();
        let codec = AssetCodec::new(&tokenizer);
        let file = codec.compress(&DynamicImage::ImageRgba8(image), codec.default_overlap(), Coding::Entropy).unwrap();
        assert_same_image(&dir.path().join("image.fqt"), &file.to_bytes().unwrap(), ".fqt bytes from C");
        let decoded = codec.decompress(&file, Path::new("rust.fqt")).unwrap().to_rgba8();
        assert_same_image(&dir.path().join("decoded.rgba"), decoded.as_raw(), "whole image decoded through C");
    }

    #[test]
    fn c_generation_and_token_files_match_rust_and_check_every_argument() {
        let (fixture, generation) = (fixture(), generation());
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("generate_test");
        compile("gcc", "-std=c11", &["tests/ffi/generate_test.c"], &exe);
        run(native(&exe).arg(&generation.far).arg(&generation.tokenizer).arg(&fixture.model).arg(dir.path()));
        assert_eq!(read_u32s(&dir.path().join("tokens.u32")), generation.tokens, "tokens generated through C");
        assert_eq!(read_u32s(&dir.path().join("completed.u32")), generation.completed, "prefix completion through C");
        assert_same_image(&dir.path().join("images.rgba"), &generation.rgba, "images generated through C");
        assert_same_image(&dir.path().join("packed.fqt"), &generation.packed, ".fqt written through C (packed)");
        assert_same_image(&dir.path().join("entropy.fqt"), &generation.entropy, ".fqt written through C (range-coded)");
    }

    /// Runs a compiled generation example (`generate FAR TOKENIZER 3 7 OUT.ppm OUT.fqt`) and
    /// compares both outputs with the Rust API's.
    fn check_generate_example(mut command: Command, what: &str) {
        let generation = generation();
        let dir = tempfile::tempdir().unwrap();
        let (ppm, fqt) = (dir.path().join("out.ppm"), dir.path().join("out.fqt"));
        run(command.arg(&generation.far).arg(&generation.tokenizer).args(["3", "7"]).arg(&ppm).arg(&fqt));
        assert_same_image(&ppm, &generation.single_ppm, &format!("{what}: image"));
        assert_same_image(&fqt, &generation.single_fqt, &format!("{what}: .fqt"));
    }

    #[test]
    fn c_generate_example_matches_rust() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("generate");
        compile("gcc", "-std=c11", &["examples/c/generate.c"], &exe);
        check_generate_example(native(&exe), "C generate example");
    }

    #[test]
    fn cpp_generate_example_matches_rust() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("generate");
        compile("g++", "-std=c++17", &["examples/cpp/generate.cpp"], &exe);
        check_generate_example(native(&exe), "C++ generate example");
    }

    #[test]
    fn cpp_wrapper_generates_cancels_rethrows_and_round_trips_token_files() {
        let (fixture, generation) = (fixture(), generation());
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("generate_wrapper_test");
        compile("g++", "-std=c++17", &["tests/ffi/generate_wrapper_test.cpp"], &exe);
        let output = run(native(&exe).arg(&generation.far).arg(&generation.tokenizer).arg(&fixture.model));
        assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));
    }

    #[test]
    fn cpp_example_round_trip_matches_rust() {
        let fixture = fixture();
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("encode_decode");
        compile("g++", "-std=c++17", &["examples/cpp/encode_decode.cpp"], &exe);
        let (full, vis) = (dir.path().join("full.ppm"), dir.path().join("vis.ppm"));
        run(native(&exe).arg(&fixture.model).arg(&fixture.ppm).arg(&full));
        run(native(&exe).arg(&fixture.model).arg(&fixture.ppm).arg(&vis).args(["cpu", "0"]));
        assert_same_image(&full, &ppm_bytes(&fixture.decoded), "C++ example");
        assert_same_image(&vis, &ppm_bytes(&fixture.decoded_0), "C++ example, sub-codebook 0");
    }

    #[test]
    fn cpp_wrapper_raises_errors_moves_handles_and_shares_them_across_threads() {
        let fixture = fixture();
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("wrapper_test");
        compile("g++", "-std=c++17", &["tests/ffi/wrapper_test.cpp"], &exe);
        let output = run(native(&exe).arg(&fixture.model).arg(&fixture.rgba));
        assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));
    }

    #[test]
    fn csharp_example_round_trip_matches_rust() {
        let fixture = fixture();
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("EncodeDecode.exe");
        compile_csharp("examples/csharp/EncodeDecode.cs", &exe);
        let out = dir.path().join("out.ppm");
        run(mono(&exe).arg(&fixture.model).arg(&fixture.ppm).arg(&out));
        assert_same_image(&out, &ppm_bytes(&fixture.decoded), "C# example");
    }

    #[test]
    fn csharp_binding_raises_errors_takes_spans_and_shares_a_tokenizer_across_threads() {
        let fixture = fixture();
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("BindingTest.exe");
        compile_csharp("tests/ffi/BindingTest.cs", &exe);
        let output = run(mono(&exe).arg(&fixture.model).arg(&fixture.rgba));
        assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));
    }

    #[test]
    fn csharp_generate_example_matches_rust() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("Generate.exe");
        compile_csharp("examples/csharp/Generate.cs", &exe);
        check_generate_example(mono(&exe), "C# generate example");
    }

    #[test]
    fn csharp_binding_generates_with_callbacks_and_round_trips_token_files() {
        let (fixture, generation) = (fixture(), generation());
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("GenerateBindingTest.exe");
        compile_csharp("tests/ffi/GenerateBindingTest.cs", &exe);
        let output =
            run(mono(&exe).arg(&generation.far).arg(&generation.tokenizer).arg(&fixture.model).arg(dir.path()));
        assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));
        assert_eq!(read_u32s(&dir.path().join("tokens.u32")), generation.tokens, "tokens generated through C#");
        assert_eq!(read_u32s(&dir.path().join("completed.u32")), generation.completed, "prefix completion through C#");
        assert_eq!(read_u32s(&dir.path().join("sampled.u32")), generation.sampled, "non-default sampling through C#");
        assert_same_image(&dir.path().join("images.rgba"), &generation.rgba, "images generated through C#");
    }
}

//! `fqgan_generator`: load a FAR generator, inspect it, generate token grids of a class, and
//! optionally decode them to images with a tokenizer.

use std::ffi::{c_char, c_int, c_void, CString};
use std::ops::ControlFlow;
use std::path::Path;

use fqgan_core::far::SubTokenSampling;
use fqgan_core::runtime::{GenerateRequest, GeneratorSession, ModelSource, Prefix, TokenGrid};
use fqgan_core::DeviceChoice;

use crate::args::{arg, device, handle_out, output, slice, string, versioned, versioned_copy, write_versioned};
use crate::status::{c_u32, guard, Failure, Outcome, Status};
use crate::tokenizer::{c_string, write_rgba, Tokenizer};

/// A loaded FAR generator (paper §3.3): class label -> k token grids. Create it with
/// `fqgan_generator_load_file`, `fqgan_generator_load_memory` or
/// `fqgan_generator_load_builtin`, release it with
/// `fqgan_generator_free`.
///
/// Thread safety: as `fqgan_tokenizer`, every call taking a `const fqgan_generator*` may run on
/// many threads at once; `fqgan_generator_free` must not overlap any other call on the handle.
pub struct Generator {
    session: GeneratorSession,
    device: CString,
    class_names: Vec<CString>,
}

/// How to load a generator. Get one from `fqgan_generator_params_default()`.
#[repr(C)]
pub struct GeneratorParams {
    /// `sizeof(fqgan_generator_params)` as the caller was compiled with.
    pub struct_size: usize,
    /// As `fqgan_tokenizer_params.device`: "cpu" (default), "ndarray", "cuda", "cuda:N" or
    /// "auto"; NULL means "cpu".
    pub device: *const c_char,
}

/// What a generator makes. Set `struct_size = sizeof(fqgan_generator_info)` before calling
/// `fqgan_generator_get_info`.
#[repr(C)]
pub struct GeneratorInfo {
    /// In: the caller's `sizeof(fqgan_generator_info)`. Out: the bytes this library filled.
    pub struct_size: usize,
    /// Class ids are 0 .. class_count - 1.
    pub class_count: u32,
    /// k, the number of sub-tokens per position (= the tokenizer's sub-codebooks).
    pub codebook_count: u32,
    /// Width and height of each generated token grid.
    pub grid_width: u32,
    pub grid_height: u32,
    /// 1 when the model has the null class that classifier-free guidance needs, so that
    /// `cfg_scale` may differ from 1; 0 when only `cfg_scale = 1` works.
    pub supports_guidance: u32,
    /// Token ids of one image: codebook_count * grid_height * grid_width.
    pub token_count: usize,
    /// The device the model runs on. Owned by the generator: valid until `fqgan_generator_free`.
    pub device: *const c_char,
}

/// What to generate and how to sample it. Get one from `fqgan_generate_params_default()` and
/// change what you need. The same sampling applies to every sub-token.
///
/// `struct_size` must be `sizeof(fqgan_generate_params)` of a released header: later versions
/// append fields and still accept the sizes of earlier ones; any other value is refused.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GenerateParams {
    pub struct_size: usize,
    /// Seeds the sampler: the same seed, params and model give the same tokens on a device.
    pub seed: u64,
    /// The class to generate, 0 .. `fqgan_generator_info.class_count` - 1.
    pub class_id: u32,
    /// Images to generate (>= 1), all of `class_id`, in one batch.
    pub count: u32,
    /// Classifier-free guidance, `uncond + (cond - uncond) * cfg_scale`; 1 turns it off. Finite.
    pub cfg_scale: f32,
    /// Divides the logits; positive and finite. Below 1 is more conservative.
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely ids up to this probability mass, in (0, 1];
    /// 1 keeps all.
    pub top_p: f32,
    /// Keep only the top_k most likely ids; 0 keeps all, 1 is greedy.
    pub top_k: u32,
}

/// Called as long work advances, with `done` (1 .. total) and `total`: by generation after each
/// token position (`total` = the positions of one image; all `count` images advance together),
/// by whole-image `.fqt` encoding and decoding after each batch of tiles (`total` = the tiles),
/// by the `_with_progress` loads after each tensor read (`total` = the tensors in the file).
/// Return 0 to go on, non-zero to cancel: the call then returns `FQGAN_STATUS_CANCELLED` and
/// writes no output. It runs on the calling thread, inside the fqgan call: it must not free the
/// handles in use.
pub type ProgressFn = Option<unsafe extern "C" fn(user_data: *mut c_void, done: u32, total: u32) -> c_int>;

/// `progress` as the core library's callback: a non-zero answer stops the work.
///
/// # Safety
/// `progress` must be safe to call with `user_data`.
pub(crate) unsafe fn reporter(
    progress: ProgressFn,
    user_data: *mut c_void,
) -> impl FnMut(usize, usize) -> ControlFlow<()> {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    move |done, total| match progress {
        Some(callback) if callback(user_data, count(done), count(total)) != 0 => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    }
}

/// What a call returns when its progress callback stopped it.
pub(crate) fn cancelled() -> Failure {
    Failure::new(Status::Cancelled, "cancelled by the progress callback")
}

/// The parameters `fqgan_generator_load_*` use when given NULL: the CPU device.
#[no_mangle]
pub extern "C" fn fqgan_generator_params_default() -> GeneratorParams {
    GeneratorParams { struct_size: std::mem::size_of::<GeneratorParams>(), device: c"cpu".as_ptr() }
}

/// The official sampling defaults (cfg_scale 2, temperature 1, top_k 0, top_p 1), class 0,
/// one image, seed 0.
#[no_mangle]
pub extern "C" fn fqgan_generate_params_default() -> GenerateParams {
    let official = SubTokenSampling::default();
    GenerateParams {
        struct_size: std::mem::size_of::<GenerateParams>(),
        seed: 0,
        class_id: 0,
        count: 1,
        cfg_scale: official.cfg_scale as f32,
        temperature: official.temperature as f32,
        top_p: official.top_p as f32,
        top_k: official.top_k as u32,
    }
}

/// Loads a FAR generator from a `.safetensors` file written by fqgan (`fqgan-trainer init-far`
/// or training; the config is embedded).
///
/// - `path`: NUL-terminated UTF-8 path.
/// - `params`: NULL for defaults (CPU).
/// - `out_generator`: receives the new handle; set to NULL on failure.
///
/// Fails with `FQGAN_STATUS_IO` when the file cannot be read, `FQGAN_STATUS_INVALID_MODEL`
/// when it is not a valid generator, `FQGAN_STATUS_DEVICE` when the device is unusable.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generator_load_file(
    path: *const c_char,
    params: *const GeneratorParams,
    out_generator: *mut *mut Generator,
) -> Status {
    fqgan_generator_load_file_with_progress(path, params, None, std::ptr::null_mut(), out_generator)
}

/// As `fqgan_generator_load_file`, from the bytes of such a file (copied: the buffer may be
/// released when the call returns).
///
/// # Safety
/// `data` must be NULL or valid for `size` reads; other pointers as in `fqgan_generator_load_file`.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generator_load_memory(
    data: *const c_void,
    size: usize,
    params: *const GeneratorParams,
    out_generator: *mut *mut Generator,
) -> Status {
    fqgan_generator_load_memory_with_progress(data, size, params, None, std::ptr::null_mut(), out_generator)
}

/// As `fqgan_generator_load_file`, reporting the tensors read to `progress` (`done` of
/// `total`, on the calling thread); a non-zero return stops the load with
/// `FQGAN_STATUS_CANCELLED` (`out_generator` stays NULL). `progress` may be NULL. Added in
/// ABI minor 4.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generator_load_file_with_progress(
    path: *const c_char,
    params: *const GeneratorParams,
    progress: ProgressFn,
    user_data: *mut c_void,
    out_generator: *mut *mut Generator,
) -> Status {
    guard(|| {
        let out = handle_out(out_generator, "out_generator")?;
        let path = Path::new(string(path, "path")?);
        *out = Generator::load(ModelSource::File(path), params, progress, user_data)?;
        Ok(())
    })
}

/// As `fqgan_generator_load_memory`, with progress and cancel as
/// `fqgan_generator_load_file_with_progress`. Added in ABI minor 4.
///
/// # Safety
/// As `fqgan_generator_load_memory`.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generator_load_memory_with_progress(
    data: *const c_void,
    size: usize,
    params: *const GeneratorParams,
    progress: ProgressFn,
    user_data: *mut c_void,
    out_generator: *mut *mut Generator,
) -> Status {
    guard(|| {
        let out = handle_out(out_generator, "out_generator")?;
        if size == 0 {
            return Err(Failure::invalid("`size` is 0: the model buffer is empty"));
        }
        let bytes = slice(data.cast::<u8>(), size, "data")?;
        *out = Generator::load(ModelSource::Memory(bytes), params, progress, user_data)?;
        Ok(())
    })
}

/// Loads the generator compiled into the library: a class-conditional FAR trained on the
/// tokens of the built-in tokenizer (`fqgan_tokenizer_load_builtin`, which decodes its output)
/// for the 10 ufoai texture classes; `fqgan_generator_get_class_name` names them. Its weights
/// derive from GPL-2+ textures: see `models/LICENSE.md`. Added in ABI minor 2.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generator_load_builtin(
    params: *const GeneratorParams,
    out_generator: *mut *mut Generator,
) -> Status {
    guard(|| {
        let out = handle_out(out_generator, "out_generator")?;
        *out = Generator::load(ModelSource::Builtin, params, None, std::ptr::null_mut())?;
        Ok(())
    })
}

/// Writes to `*name` the name of class `label` (0 .. class_count - 1), e.g. "nature", as the
/// training data's folders named it; the label in decimal when the file stores no names.
/// Owned by the generator: valid until `fqgan_generator_free`. Added in ABI minor 2.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generator_get_class_name(
    generator: *const Generator,
    label: u32,
    name: *mut *const c_char,
) -> Status {
    guard(|| {
        let generator = arg(generator, "generator")?;
        let class = generator.class_names.get(label as usize).ok_or_else(|| {
            Failure::invalid(format!("`label` is {label}; this generator has {} classes", generator.class_names.len()))
        })?;
        arg(name.cast_const(), "name")?;
        name.write(class.as_ptr());
        Ok(())
    })
}

/// How a generator stores its matrix weights (`fqgan_generator_set_weight_precision`).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightPrecision {
    /// As trained and as the official checkpoints (the default): outputs match the official
    /// code.
    F32 = 0,
    /// Each weight rounded to bf16: half the memory and, on the CPU, about half the time per
    /// generated token; logits move by a few 1e-3 of the largest, so samples can differ.
    Bf16 = 1,
}

impl WeightPrecision {
    /// `precision` from C, checked.
    fn from_raw(value: i32) -> Outcome<fqgan_core::WeightPrecision> {
        [(Self::F32, fqgan_core::WeightPrecision::F32), (Self::Bf16, fqgan_core::WeightPrecision::Bf16)]
            .into_iter()
            .find(|(p, _)| *p as i32 == value)
            .map(|(_, precision)| precision)
            .ok_or_else(|| {
                Failure::invalid(format!("`precision` is {value}; expected FQGAN_WEIGHT_PRECISION_F32 (0) or BF16 (1)"))
            })
    }
}

/// Stores `generator`'s matrix weights as `precision` (an `fqgan_weight_precision`),
/// converting the loaded ones; call it once after loading. Like `fqgan_generator_free`, no
/// other call on this handle may run meanwhile. Bf16 fails with
/// `FQGAN_STATUS_INVALID_ARGUMENT` on the "ndarray" device. Added in ABI minor 5.
///
/// # Safety
/// `generator` must be NULL or a live handle from `fqgan_generator_load_*`.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generator_set_weight_precision(generator: *mut Generator, precision: i32) -> Status {
    guard(|| {
        arg(generator.cast_const(), "generator")?;
        let precision = WeightPrecision::from_raw(precision)?;
        Ok((*generator).session.set_weight_precision(precision)?)
    })
}

/// Releases a generator. NULL is a no-op. No other call on this handle may be running or
/// start afterwards.
///
/// # Safety
/// `generator` must be NULL or a handle from `fqgan_generator_load_*` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generator_free(generator: *mut Generator) {
    if !generator.is_null() {
        guard(|| {
            drop(Box::from_raw(generator));
            Ok(())
        });
    }
}

/// Fills `info` (whose `struct_size` the caller set) with the generator's sizes.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generator_get_info(generator: *const Generator, info: *mut GeneratorInfo) -> Status {
    guard(|| {
        let generator = arg(generator, "generator")?;
        let config = generator.session.config();
        let grid = c_u32("grid", config.grid_size())?;
        let value = GeneratorInfo {
            struct_size: std::mem::size_of::<GeneratorInfo>(),
            class_count: c_u32("class_count", config.num_classes)?,
            codebook_count: c_u32("codebook_count", config.k())?,
            grid_width: grid,
            grid_height: grid,
            supports_guidance: u32::from(config.null_class().is_some()),
            token_count: generator.token_count(),
            device: generator.device.as_ptr(),
        };
        write_versioned(info, value, "info", "set info->struct_size = sizeof(fqgan_generator_info)")
    })
}

/// Writes to `*size` the vocabulary size of sub-token `index` (0 .. k - 1): its ids are
/// 0 .. size - 1. A tokenizer that decodes this generator's tokens has the same sizes.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generator_get_vocab_size(
    generator: *const Generator,
    index: u32,
    size: *mut u32,
) -> Status {
    guard(|| {
        let generator = arg(generator, "generator")?;
        let sizes = &generator.session.config().vocab_sizes;
        let vocab = sizes.get(index as usize).ok_or_else(|| {
            Failure::invalid(format!("`index` is {index}; this generator has {} sub-tokens", sizes.len()))
        })?;
        arg(size.cast_const(), "size")?;
        size.write(c_u32("size", *vocab)?);
        Ok(())
    })
}

/// Generates `params->count` images of class `params->class_id` as token grids.
///
/// - `params`: NULL for `fqgan_generate_params_default()`.
/// - `tokens`: receives `count * token_count` ids laid out `[count][k][grid_height][grid_width]`:
///   image by image, each exactly as `fqgan_tokenizer_encode` writes one image, ready for
///   `fqgan_tokenizer_decode` (with a matching tokenizer) or `fqgan_fqt_write`.
/// - `tokens_capacity`: number of `uint32_t` at `tokens`; `tokens_required` (may be NULL)
///   receives `count * token_count`.
/// - `progress`: may be NULL; else called after every token position with `user_data`
///   (see `fqgan_progress_fn`); returning non-zero cancels with `FQGAN_STATUS_CANCELLED`.
///
/// Pass `tokens = NULL, tokens_capacity = 0` to only query the size (nothing is generated).
///
/// # Safety
/// Pointers must be NULL or valid for the documented use; `progress` must be safe to call
/// with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generate(
    generator: *const Generator,
    params: *const GenerateParams,
    tokens: *mut u32,
    tokens_capacity: usize,
    tokens_required: *mut usize,
    progress: ProgressFn,
    user_data: *mut c_void,
) -> Status {
    guard(|| {
        let generator = arg(generator, "generator")?;
        let request = generator.request(params)?;
        generator.generate_into(&request, tokens, tokens_capacity, tokens_required, progress, user_data)
    })
}

/// Prefix completion (ABI minor 3): as `fqgan_generate`, but every image keeps the top
/// `prefix_rows` token rows of `prefix` and continues them: the rows below are generated.
///
/// - `prefix`, `prefix_count`: one image's tokens, laid out as `fqgan_generate` writes them
///   (`[k][grid_height][grid_width]`, `fqgan_generator_info.token_count` ids), say from
///   `fqgan_tokenizer_encode` of an image to extend. Only the kept rows are read; their ids
///   must be below their vocabulary sizes.
/// - `prefix_rows`: 1 .. grid_height - 1.
/// - `tokens`: `count * token_count` ids as `fqgan_generate` writes them, prefix rows included.
/// - `progress` counts the positions generated below the prefix.
///
/// # Safety
/// As `fqgan_generate`.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generate_completion(
    generator: *const Generator,
    params: *const GenerateParams,
    prefix: *const u32,
    prefix_count: usize,
    prefix_rows: u32,
    tokens: *mut u32,
    tokens_capacity: usize,
    tokens_required: *mut usize,
    progress: ProgressFn,
    user_data: *mut c_void,
) -> Status {
    guard(|| {
        let generator = arg(generator, "generator")?;
        let mut request = generator.request(params)?;
        let config = generator.session.config();
        let grid =
            TokenGrid { k: config.k(), side: config.grid_size(), ids: slice(prefix, prefix_count, "prefix")?.to_vec() };
        request.prefix = Some(Prefix { rows: prefix_rows as usize, grids: vec![grid] });
        generator.session.check(&request)?;
        generator.generate_into(&request, tokens, tokens_capacity, tokens_required, progress, user_data)
    })
}

/// As `fqgan_generate`, then decodes every image with `tokenizer` into packed RGBA8
/// (alpha 255) of the tokenizer's image size: `count` images one after the other,
/// `count * fqgan_tokenizer_info.rgba_size` bytes.
///
/// - `tokenizer`: must decode this generator's tokens (same vocabulary sizes and grid), else
///   `FQGAN_STATUS_INVALID_ARGUMENT` naming the difference.
/// - `rgba_capacity`: bytes at `rgba`; `rgba_required` (may be NULL) receives the size.
///
/// Pass `rgba = NULL, rgba_capacity = 0` to only query the size (nothing is generated). To keep
/// the tokens as well (say, for `fqgan_fqt_write`), call `fqgan_generate` and then
/// `fqgan_tokenizer_decode` on each image: the result is the same.
///
/// # Safety
/// As `fqgan_generate`.
#[no_mangle]
pub unsafe extern "C" fn fqgan_generate_images(
    generator: *const Generator,
    tokenizer: *const Tokenizer,
    params: *const GenerateParams,
    rgba: *mut u8,
    rgba_capacity: usize,
    rgba_required: *mut usize,
    progress: ProgressFn,
    user_data: *mut c_void,
) -> Status {
    guard(|| {
        let generator = arg(generator, "generator")?;
        let tokenizer = arg(tokenizer, "tokenizer")?;
        generator
            .session
            .check_tokenizer(&tokenizer.session)
            .map_err(|e| Failure::invalid(format!("`tokenizer` does not match `generator`: {e}")))?;
        let request = generator.request(params)?;
        let names = ["rgba", "rgba_capacity", "rgba_required"];
        let needed = output_len(&request, tokenizer.rgba_size(), "byte")?;
        let Some(out) = output(rgba, rgba_capacity, needed, rgba_required, names)? else {
            return Ok(());
        };
        let images = tokenizer.session.decode(&generator.run(&request, progress, user_data)?)?;
        for (image, rgba) in images.iter().zip(out.chunks_exact_mut(tokenizer.rgba_size())) {
            write_rgba(image, rgba);
        }
        Ok(())
    })
}

/// `count * per_image` values of output, or an error when that overflows `size_t`.
fn output_len(request: &GenerateRequest, per_image: usize, unit: &str) -> Outcome<usize> {
    let count = request.per_label;
    count.checked_mul(per_image).ok_or_else(|| {
        Failure::invalid(format!(
            "`params->count` is {count}: {count} images of {per_image} {unit}s each overflow size_t"
        ))
    })
}

impl Generator {
    unsafe fn load(
        source: ModelSource<'_>,
        params: *const GeneratorParams,
        progress: ProgressFn,
        user_data: *mut c_void,
    ) -> Outcome<*mut Generator> {
        let device = if params.is_null() {
            DeviceChoice::Cpu
        } else {
            let params = versioned(params, "params", "initialise it with fqgan_generator_params_default()")?;
            device(params.device, "params->device")?
        };
        let mut progress = reporter(progress, user_data);
        let session =
            GeneratorSession::load_with_progress(source, None, device, &mut progress)?.ok_or_else(cancelled)?;
        let config = session.config();
        let class_names = (0..config.num_classes).map(|label| c_string(&config.class_name(label))).collect();
        Ok(Box::into_raw(Box::new(Generator { session, device: c_string(&device.to_string()), class_names })))
    }

    fn token_count(&self) -> usize {
        self.session.token_count()
    }

    /// The request `params` describes (one class, `count` images), checked.
    unsafe fn request(&self, params: *const GenerateParams) -> Outcome<GenerateRequest> {
        let params = if params.is_null() {
            fqgan_generate_params_default()
        } else {
            let init = "initialise it with fqgan_generate_params_default()";
            let sizes = [std::mem::size_of::<GenerateParams>()];
            versioned_copy(params, "params", &sizes, fqgan_generate_params_default(), init)?
        };
        let sampling = SubTokenSampling {
            cfg_scale: f64::from(params.cfg_scale),
            temperature: f64::from(params.temperature),
            top_k: params.top_k as usize,
            top_p: f64::from(params.top_p),
        };
        let labels = vec![Some(params.class_id as usize)];
        let mut request = GenerateRequest::new(labels, self.session.config().k(), sampling, params.seed);
        request.per_label = params.count as usize;
        self.session.check(&request)?;
        Ok(request)
    }

    unsafe fn generate_into(
        &self,
        request: &GenerateRequest,
        tokens: *mut u32,
        tokens_capacity: usize,
        tokens_required: *mut usize,
        progress: ProgressFn,
        user_data: *mut c_void,
    ) -> Outcome {
        let names = ["tokens", "tokens_capacity", "tokens_required"];
        let needed = output_len(request, self.token_count(), "token")?;
        let Some(out) = output(tokens, tokens_capacity, needed, tokens_required, names)? else {
            return Ok(());
        };
        let grids = self.run(request, progress, user_data)?;
        for (grid, out) in grids.iter().zip(out.chunks_exact_mut(self.token_count())) {
            out.copy_from_slice(&grid.ids);
        }
        Ok(())
    }

    unsafe fn run(
        &self,
        request: &GenerateRequest,
        progress: ProgressFn,
        user_data: *mut c_void,
    ) -> Outcome<Vec<TokenGrid>> {
        self.session.generate(request, &mut reporter(progress, user_data))?.ok_or_else(cancelled)
    }
}

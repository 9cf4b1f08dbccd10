//! Safetensors I/O for any burn module whose parameter paths mirror the official PyTorch
//! names. A [`KeyMap`] renames the few paths that cannot be Rust field names
//! (`encoder.heads.0.adapter` <-> `encoder.visual_head.0`, ...).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use safetensors::tensor::TensorView;

use crate::codec::{no_progress, Progress};
use crate::error::{Error, Result};

/// Prefix renames between module paths and file keys, longest prefix first.
#[derive(Clone, Debug, Default)]
pub struct KeyMap {
    renames: Vec<(String, String)>,
}

impl KeyMap {
    pub fn new(mut renames: Vec<(String, String)>) -> Self {
        renames.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        Self { renames }
    }

    /// The file key of a module path (`a.b.weight`).
    pub fn file_key(&self, path: &str) -> String {
        for (from, to) in &self.renames {
            if let Some(rest) = path.strip_prefix(from.as_str()) {
                return format!("{to}{rest}");
            }
        }
        path.to_string()
    }
}

/// The tensors of one safetensors file (or buffer), with its `__metadata__`.
pub struct TensorFile {
    /// Where the tensors came from, for error messages.
    pub source: PathBuf,
    pub tensors: HashMap<String, TensorData>,
    pub metadata: HashMap<String, String>,
}

/// Metadata key naming what kind of fqgan file a safetensors file is.
pub const FORMAT_KEY: &str = "format";

/// Every kind of file fqgan writes, by its `format`, as errors name it.
const FORMATS: [(&str, &str); 6] = [
    (crate::tokenizer::checkpoint::TOKENIZER_FORMAT, "a tokenizer"),
    (crate::far::checkpoint::FAR_FORMAT, "a FAR generator"),
    (crate::train::tokenizer::TOKENIZER_TRAINING_FORMAT, "a tokenizer training checkpoint"),
    (crate::train::far::FAR_TRAINING_FORMAT, "a FAR training checkpoint"),
    (crate::train::codes::CODES_FORMAT, "a codes file (made by extract-codes)"),
    (crate::teachers::features::FEATURES_FORMAT, "a teacher-features file"),
];

impl TensorFile {
    /// Reads a safetensors file through a memory map: the tensors are copied once, from the
    /// page cache into their own buffers, and the file is never read into one large buffer.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let file = Self::read_with_progress(path, &mut no_progress)?;
        Ok(file.expect("reading without a progress callback always completes"))
    }

    /// As [`TensorFile::read`], telling `progress` (tensors read, tensors in all) after each
    /// tensor; `None` when it stopped the read.
    pub fn read_with_progress(path: impl AsRef<Path>, progress: &mut Progress<'_>) -> Result<Option<Self>> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only and dropped before this returns; a file truncated by
        // another process meanwhile is the one hazard, the same as for any mapped reader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::from_bytes_with_progress(&map, path, progress)
    }

    /// Parses a safetensors buffer; `source` names it in errors.
    pub fn from_bytes(bytes: &[u8], source: impl Into<PathBuf>) -> Result<Self> {
        let file = Self::from_bytes_with_progress(bytes, source, &mut no_progress)?;
        Ok(file.expect("parsing without a progress callback always completes"))
    }

    /// As [`TensorFile::from_bytes`], reporting each tensor to `progress` as
    /// [`TensorFile::read_with_progress`] does.
    pub fn from_bytes_with_progress(
        bytes: &[u8],
        source: impl Into<PathBuf>,
        progress: &mut Progress<'_>,
    ) -> Result<Option<Self>> {
        let source = source.into();
        let parsed = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| Error::weights(&source, format!("not a valid safetensors file: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::weights(&source, format!("not a valid safetensors file: {e}")))?;
        let mut tensors = HashMap::new();
        let views = parsed.tensors();
        let total = views.len();
        for (name, view) in views {
            let data = tensor_data(&view).map_err(|m| Error::weights(&source, format!("tensor '{name}': {m}")))?;
            tensors.insert(name, data);
            if progress(tensors.len(), total).is_break() {
                return Ok(None);
            }
        }
        let metadata = header.metadata().clone().unwrap_or_default();
        Ok(Some(Self { source, tensors, metadata }))
    }

    /// Errors when the file's `format` metadata names another kind of fqgan file than
    /// `expected`, saying what the file is. Unless `required`, a file that is not an fqgan
    /// file passes: official checkpoints carry no format, or the exporter's (`pt` for PyTorch).
    pub fn check_format(&self, expected: &str, required: bool) -> Result<()> {
        let what = |format: &str| {
            FORMATS
                .iter()
                .find(|(f, _)| *f == format)
                .map_or_else(|| format!("'{format}'"), |(_, kind)| kind.to_string())
        };
        match self.metadata.get(FORMAT_KEY) {
            Some(format) if format == expected => Ok(()),
            Some(format) if !required && !format.starts_with("fqgan.") => Ok(()),
            None if !required => Ok(()),
            Some(format) => Err(Error::weights(
                &self.source,
                format!("is {} (format '{format}'), not {} ('{expected}')", what(format), what(expected)),
            )),
            None => Err(Error::weights(
                &self.source,
                format!("is not {} (its metadata has no format; expected '{expected}')", what(expected)),
            )),
        }
    }

    /// A tensor as f32 values with its shape; errors name the key and file.
    pub fn get(&self, key: &str) -> Result<&TensorData> {
        self.tensors.get(key).ok_or_else(|| Error::weights(&self.source, format!("has no tensor named '{key}'")))
    }

    /// The tensors whose keys start with `prefix`, with it removed (one part of a checkpoint).
    pub fn part(&self, prefix: &str) -> TensorFile {
        let tensors = self
            .tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
            .collect();
        TensorFile { source: self.source.clone(), tensors, metadata: HashMap::new() }
    }

    /// A metadata entry parsed as `T`; errors name the key and file.
    pub fn meta<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        self.metadata
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::weights(&self.source, format!("metadata has no valid '{key}'")))
    }

    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.tensors.keys().any(|k| k.starts_with(prefix))
    }
}

fn tensor_data(view: &TensorView<'_>) -> std::result::Result<TensorData, String> {
    use safetensors::Dtype as S;
    let dtype = match view.dtype() {
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::F64 => DType::F64,
        S::I64 => DType::I64,
        S::I32 => DType::I32,
        S::U8 => DType::U8,
        S::BOOL if view.data().iter().any(|&b| b > 1) => {
            return Err("BOOL tensor holds bytes other than 0 and 1".into())
        }
        S::BOOL => DType::Bool(burn::tensor::BoolStore::Native),
        other => return Err(format!("unsupported dtype {other:?}")),
    };
    Ok(TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype))
}

/// Writes tensors and metadata as safetensors, atomically: a temporary file in the same
/// folder, flushed and synced, then renamed over `path`.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, TensorData>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, data)| {
            let dtype = match data.dtype {
                DType::F32 => safetensors::Dtype::F32,
                DType::I64 => safetensors::Dtype::I64,
                DType::I32 => safetensors::Dtype::I32,
                other => panic!("write_safetensors: unsupported dtype {other:?} for '{name}'"),
            };
            let view = TensorView::new(dtype, data.shape.to_vec(), data.as_bytes()).expect("sizes match dtype");
            (name.clone(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::weights(path, format!("cannot serialise: {e}")))?;
    write_atomic(path, &bytes)
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file. The
/// temporary file next to it gets an unpredictable name and is created exclusively (a link
/// planted under a guessable name is never followed); an existing file's permissions are kept.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::Input(format!("{} is not a file path", path.display())))?;
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let (tmp, mut file) = create_temporary(dir, &name.to_string_lossy()).map_err(|e| Error::io(path, e))?;
    let result = (|| {
        file.write_all(bytes)?;
        if let Some(permissions) = permissions {
            file.set_permissions(permissions)?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// A new file `.<name>.<random>.tmp` in `dir`, created with O_EXCL semantics.
fn create_temporary(dir: &Path, name: &str) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let mut last = None;
    for _ in 0..16 {
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("16 attempts"))
}

/// Every float parameter and buffer of `module`, under its file key.
pub fn module_tensors<B: Backend, M: Module<B>>(module: &M, keys: &KeyMap) -> BTreeMap<String, TensorData> {
    struct Collect<'a> {
        path: Vec<String>,
        keys: &'a KeyMap,
        out: BTreeMap<String, TensorData>,
    }
    impl<B: Backend> ModuleVisitor<B> for Collect<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let key = self.keys.file_key(&self.path.join("."));
            self.out.insert(key, param.val().into_data().convert::<f32>());
        }
    }
    let mut collect = Collect { path: Vec::new(), keys, out: BTreeMap::new() };
    module.visit(&mut collect);
    collect.out
}

/// Which file keys a load may skip or leave unused.
pub struct LoadRules<'a> {
    /// Module keys that keep their current value when the file lacks them (buffers).
    pub optional: &'a dyn Fn(&str) -> bool,
    /// File keys that are not an error when the module has no place for them.
    pub ignorable: &'a dyn Fn(&str) -> bool,
}

/// A weight tensor's values as f32, refusing what no trained model holds: integer or boolean
/// tensors, F64 (official checkpoints are F32; a silent narrowing would hide a wrong file) and
/// non-finite values.
pub(crate) fn float_values(data: &TensorData) -> std::result::Result<TensorData, String> {
    if !matches!(data.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(format!("holds {:?} values; weights must be F32, F16 or BF16", data.dtype));
    }
    let values = data.clone().convert::<f32>();
    let slice = values.as_slice::<f32>().map_err(|e| format!("cannot be read as f32: {e:?}"))?;
    // Chunks of branch-free folds: the check vectorises, so a 1.6 GB model pays ~0.1 s.
    let finite = |chunk: &[f32]| chunk.iter().fold(true, |ok, v| ok & v.is_finite());
    if let Some(chunk) = slice.chunks(4096).position(|chunk| !finite(chunk)) {
        let index = chunk * 4096 + slice[chunk * 4096..].iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(format!("holds a non-finite value ({}) at element {index}", slice[index]));
    }
    Ok(values)
}

/// Loads every parameter of `module` from `file`, checking shapes. Missing keys and unused
/// keys (other than those `rules` allow) are errors that list the first few names.
pub fn load_module<B: Backend, M: Module<B>>(
    module: M,
    file: &TensorFile,
    keys: &KeyMap,
    rules: &LoadRules<'_>,
) -> Result<M> {
    struct Load<'a> {
        path: Vec<String>,
        keys: &'a KeyMap,
        file: &'a TensorFile,
        rules: &'a LoadRules<'a>,
        used: HashSet<String>,
        errors: Vec<String>,
    }
    impl<B: Backend> ModuleMapper<B> for Load<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let key = self.keys.file_key(&self.path.join("."));
            // Shape and device only: a parameter not drawn yet stays undrawn (see `lazy_param`).
            let expected = param.lazy_shape();
            let Some(data) = self.file.tensors.get(&key) else {
                if !(self.rules.optional)(&key) {
                    self.errors.push(format!("missing '{key}'"));
                }
                return param;
            };
            self.used.insert(key.clone());
            if data.shape.as_slice() != expected.as_slice() {
                self.errors.push(format!(
                    "'{key}' has shape {:?}, the model expects {:?}",
                    data.shape.as_slice(),
                    expected.as_slice()
                ));
                return param;
            }
            let values = match float_values(data) {
                Ok(values) => values,
                Err(problem) => {
                    self.errors.push(format!("'{key}' {problem}"));
                    return param;
                }
            };
            let loaded = Tensor::from_data(values, &param.lazy_device());
            let id = param.id;
            param.transform_for_load(loaded, id)
        }
    }
    let mut load = Load { path: Vec::new(), keys, file, rules, used: HashSet::new(), errors: Vec::new() };
    let module = module.map(&mut load);
    let mut unused: Vec<&String> =
        file.tensors.keys().filter(|k| !load.used.contains(*k) && !(rules.ignorable)(k)).collect();
    unused.sort();
    let mut errors = load.errors;
    if !unused.is_empty() {
        errors.push(format!(
            "{} tensor(s) the model has no place for, e.g. {}",
            unused.len(),
            unused.iter().take(3).map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
        ));
    }
    if errors.is_empty() {
        Ok(module)
    } else {
        let total = errors.len();
        let shown: Vec<_> = errors.into_iter().take(5).collect();
        Err(Error::weights(&file.source, format!("does not fit this model ({total} problem(s)): {}", shown.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    /// An overwritten file keeps its permissions, and the temporary files get fresh names.
    #[cfg(unix)]
    #[test]
    fn atomic_writes_keep_permissions_and_use_unpredictable_names() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        super::write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        let (a, _) = super::create_temporary(dir.path(), "x").unwrap();
        let (b, _) = super::create_temporary(dir.path(), "x").unwrap();
        assert_ne!(a, b);
        // A name planted in advance is never opened: creation is exclusive.
        assert!(std::fs::OpenOptions::new().write(true).create_new(true).open(&a).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "no temporary file left behind");
    }

    /// Two writers of one path, with a reader watching: every read sees one writer's whole file
    /// (never a mix or a prefix), and no temporary file is left.
    #[test]
    fn two_writers_of_one_path_leave_one_whole_file() {
        const SIZE: usize = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        super::write_atomic(&path, &vec![0u8; SIZE]).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for byte in [1u8, 2] {
                let path = &path;
                scope.spawn(move || (0..20).for_each(|_| super::write_atomic(path, &vec![byte; SIZE]).unwrap()));
            }
            let reader = scope.spawn(|| {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let bytes = std::fs::read(&path).unwrap();
                    assert_eq!(bytes.len(), SIZE, "a partial file was visible");
                    assert!(bytes.iter().all(|&b| b == bytes[0]), "two writers' bytes mixed");
                    reads += 1;
                }
                reads
            });
            std::thread::sleep(std::time::Duration::from_millis(300));
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left behind");
    }

    /// Run as a child by `a_write_killed_midway_leaves_the_old_file`: writes forever.
    #[test]
    #[ignore = "a helper process, started by another test"]
    fn helper_writes_until_killed() {
        if let Some(path) = std::env::var_os("FQGAN_TEST_WRITE_FOREVER") {
            let big = vec![7u8; 256 << 20];
            loop {
                super::write_atomic(std::path::Path::new(&path), &big).unwrap();
            }
        }
    }

    /// A process killed (SIGKILL) while writing leaves the previous file whole: at worst a
    /// stray temporary file, which no reader opens.
    #[cfg(unix)]
    #[test]
    fn a_write_killed_midway_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.safetensors");
        std::fs::write(&path, b"the old model").unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "weights::tests::helper_writes_until_killed", "--nocapture"])
            .env("FQGAN_TEST_WRITE_FOREVER", &path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let temporary = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                .and_then(|e| e.metadata().ok())
                .is_some_and(|m| m.len() > 0)
        };
        let start = std::time::Instant::now();
        while !temporary() && start.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(temporary(), "the helper never started writing");
        // Killed during its first write, or (on a loaded machine) a later one: either way the file
        // is one whole version, never a prefix.
        let bytes = std::fs::read(&path).unwrap();
        let whole_new = bytes.len() == 256 << 20 && bytes.iter().all(|&b| b == 7);
        assert!(bytes == b"the old model" || whole_new, "the killed write left {} bytes", bytes.len());
    }
}

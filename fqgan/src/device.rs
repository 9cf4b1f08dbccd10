//! The compute device a command runs on, chosen once (`--device cpu|ndarray|cuda[:N]`) and
//! dispatched to code that is generic over the burn backend.

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::Backend;
use burn::tensor::{BasicOps, Tensor, TensorData};

use crate::error::{Error, Result};

/// The default CPU backend: burn's pure-Rust Flex (measured faster than NdArray on conv2d).
pub type Cpu = burn::backend::Flex;
/// The alternative CPU backend.
pub type NdArray = burn::backend::NdArray;
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;

/// Runs `draw` with the backend's global RNG seeded to `seed`, holding a process-wide lock:
/// burn's RNG is one per process, so two threads building models at once (tests, a host
/// loading several models) would interleave their draws and get weights that depend on timing.
/// (A command that seeds once and runs alone, like the trainers, may seed the backend itself.)
pub fn seeded<B: Backend, T>(device: &B::Device, seed: u64, draw: impl FnOnce() -> T) -> T {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    B::seed(device, seed);
    draw()
}

/// Device-to-host reads made through [`read_back`] in this process.
static HOST_READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Copies `tensor` to the host. The inference paths read through here only, so a test can
/// count their syncs ([`host_reads`]): one per generated token, one per decoded batch.
pub fn read_back<B: Backend, const D: usize, K: BasicOps<B>>(tensor: Tensor<B, D, K>) -> TensorData {
    HOST_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tensor.into_data()
}

/// How many times [`read_back`] has run in this process.
pub fn host_reads() -> usize {
    HOST_READS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether this build of the library has the CUDA backend (`--features cuda`).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    NdArray,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = Error;

    /// "auto" resolves here, once: see [`DeviceChoice::auto`].
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::auto()),
            "cpu" | "flex" => Ok(Self::Cpu),
            "ndarray" => Ok(Self::NdArray),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(index)) => Ok(Self::Cuda(index)),
                _ => Err(Error::Device(format!("unknown device '{s}'; expected auto, cpu, ndarray, cuda or cuda:N"))),
            },
        }
    }
}

impl DeviceChoice {
    /// The first CUDA device when this build and machine have one, else the CPU; the reason
    /// for falling back goes to the log (`log` crate, info level).
    pub fn auto() -> Self {
        let devices = devices();
        match devices.list.iter().find(|d| matches!(d, Self::Cuda(_))) {
            Some(&cuda) => cuda,
            None => {
                log::info!("device \"auto\" uses the CPU: {}", devices.why_no_cuda);
                Self::Cpu
            }
        }
    }
}

/// What this build can use on this machine, probed once per process.
struct Devices {
    list: Vec<DeviceChoice>,
    /// The probe error of the first CUDA index that did not answer (of cuda:0 when `list` has
    /// no CUDA device).
    why_no_cuda: String,
}

fn devices() -> &'static Devices {
    static DEVICES: std::sync::OnceLock<Devices> = std::sync::OnceLock::new();
    DEVICES.get_or_init(|| {
        let mut list = vec![DeviceChoice::Cpu, DeviceChoice::NdArray];
        let mut why_no_cuda = format!("more than {MAX_CUDA_DEVICES} CUDA devices");
        for index in 0..MAX_CUDA_DEVICES {
            match probe(index) {
                Ok(()) => list.push(DeviceChoice::Cuda(index)),
                Err(e) => {
                    why_no_cuda = e.to_string();
                    break;
                }
            }
        }
        Devices { list, why_no_cuda }
    })
}

/// Every device this build can use on this machine: the two CPU backends, then each CUDA device
/// that answers a probe (looked for once per process, stopping at the first index that does not).
pub fn available() -> &'static [DeviceChoice] {
    &devices().list
}

/// The most CUDA devices [`available`] looks for.
const MAX_CUDA_DEVICES: usize = 16;

#[cfg(not(feature = "cuda"))]
const NO_CUDA: &str = "this build has no CUDA support; rebuild with `--features cuda`";

#[cfg(not(feature = "cuda"))]
fn probe(_: usize) -> Result<()> {
    Err(Error::Device(NO_CUDA.into()))
}

#[cfg(feature = "cuda")]
fn probe(index: usize) -> Result<()> {
    probe_cuda(&burn::backend::cuda::CudaDevice::new(index), index)
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::NdArray => write!(f, "ndarray"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// Work that runs on any backend; [`DeviceChoice::run`] picks the backend at run time.
pub trait BackendTask {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

impl DeviceChoice {
    /// Runs `task` on this device; on the CPU backends, on the CPU thread pool
    /// ([`crate::threads::on_pool`]).
    pub fn run<T: BackendTask + Send>(self, task: T) -> Result<T::Output>
    where
        T::Output: Send,
    {
        match self {
            Self::Cpu => Ok(crate::threads::on_pool(|| task.run::<Cpu>(Default::default()))),
            Self::NdArray => Ok(crate::threads::on_pool(|| task.run::<NdArray>(Default::default()))),
            Self::Cuda(index) => run_cuda(index, task),
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn run_cuda<T: BackendTask>(_: usize, _: T) -> Result<T::Output> {
    Err(Error::Device(NO_CUDA.into()))
}

#[cfg(feature = "cuda")]
fn run_cuda<T: BackendTask>(index: usize, task: T) -> Result<T::Output> {
    let device = burn::backend::cuda::CudaDevice::new(index);
    probe_cuda(&device, index)?;
    Ok(task.run::<Cuda>(device))
}

/// burn-cuda panics inside device set-up when there is no driver or no such device; turn
/// that into an error before any real work starts.
#[cfg(feature = "cuda")]
fn probe_cuda(device: &burn::backend::cuda::CudaDevice, index: usize) -> Result<()> {
    use burn::tensor::Tensor;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| Tensor::<Cuda, 1>::zeros([1], device).into_data());
    std::panic::set_hook(hook);
    probe.map(|_| ()).map_err(|panic| {
        let detail = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Error::Device(format!("CUDA driver not found or CUDA device {index} unusable ({detail})"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_an_available_device() {
        let auto = "auto".parse::<DeviceChoice>().unwrap();
        assert!(available().contains(&auto), "{auto} not in {:?}", available());
        assert_eq!(&available()[..2], &[DeviceChoice::Cpu, DeviceChoice::NdArray]);
        if !CUDA_BUILT {
            assert_eq!(auto, DeviceChoice::Cpu);
        }
    }

    #[test]
    fn parses_every_device_form() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("ndarray".parse::<DeviceChoice>().unwrap(), DeviceChoice::NdArray);
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(3));
        let err = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("tpu"), "{err}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        struct Noop;
        impl BackendTask for Noop {
            type Output = ();
            fn run<B: Backend>(self, _: B::Device) {}
        }
        let err = DeviceChoice::Cuda(0).run(Noop).unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}

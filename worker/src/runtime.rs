//! Loading ONNX Runtime's shared library and choosing the execution provider.
//!
//! The library is opened at run time (ort's `load-dynamic`): from `ORT_DYLIB_PATH` when set,
//! otherwise from `.ort/lib/libonnxruntime.so` in the current directory or one of its parents
//! (or the executable's), which is where `tools/setup-ort.sh` unpacks it from the PyPI wheel.
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use ort::ep::{self, ExecutionProvider as _};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

/// Where `tools/setup-ort.sh` puts the library, relative to the repository root.
pub const BUNDLED_LIBRARY: &str = ".ort/lib/libonnxruntime.so";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found: set ORT_DYLIB_PATH to libonnxruntime.so, or run `tools/setup-ort.sh` to unpack it into {BUNDLED_LIBRARY} (searched: {searched})")]
    LibraryNotFound { searched: String },
    #[error("could not load ONNX Runtime from {path}: {message}")]
    LibraryLoad { path: PathBuf, message: String },
    #[error("the CUDA execution provider is not available in {path} (install the onnxruntime-gpu wheel's library: `tools/setup-ort.sh gpu`): {message}")]
    CudaUnavailable { path: PathBuf, message: String },
    #[error("could not load {path}: {message}")]
    Session { path: PathBuf, message: String },
}

/// The execution provider asked for: `cpu`, `cuda` / `cuda:N`, or `auto` (CUDA if it loads, else CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderChoice {
    Cpu,
    Cuda { device_id: i32 },
    Auto { device_id: i32 },
}

impl FromStr for ProviderChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let (name, device) = match s.split_once(':') {
            Some((name, id)) => (name.to_string(), id.parse::<i32>().map_err(|_| format!("bad CUDA device id in {s:?}: expected e.g. cuda:0"))?),
            None => (s.clone(), 0),
        };
        match name.as_str() {
            "cpu" => Ok(ProviderChoice::Cpu),
            "cuda" | "gpu" => Ok(ProviderChoice::Cuda { device_id: device }),
            "auto" => Ok(ProviderChoice::Auto { device_id: device }),
            _ => Err(format!("unknown execution provider {s:?}: expected cpu, cuda, cuda:N or auto")),
        }
    }
}

/// The provider actually in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda { device_id: i32 },
}

impl Provider {
    /// The provider's kind, without the device: `cpu` or `cuda`.
    pub fn kind(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda { .. } => "cuda",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Cpu => write!(f, "cpu"),
            Provider::Cuda { device_id } => write!(f, "cuda:{device_id}"),
        }
    }
}

/// A loaded ONNX Runtime with the chosen provider; makes sessions.
pub struct Runtime {
    env: ort::environment::Environment,
    library: PathBuf,
    /// Resolved lazily for `auto`: the first session tells whether CUDA really loads.
    provider: Mutex<Option<Provider>>,
    choice: ProviderChoice,
    intra_threads: Option<usize>,
}

/// Find the ONNX Runtime shared library (see the module docs for the search order).
pub fn find_library() -> Result<PathBuf, RuntimeError> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(path));
    }
    let mut searched = Vec::new();
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            roots.push(dir.to_path_buf());
        }
    }
    for root in roots {
        for dir in root.ancestors() {
            let candidate = dir.join(BUNDLED_LIBRARY);
            if candidate.is_file() {
                return Ok(candidate);
            }
            searched.push(candidate.display().to_string());
        }
    }
    Err(RuntimeError::LibraryNotFound { searched: searched.join(", ") })
}

impl Runtime {
    /// Load ONNX Runtime and prepare sessions on `choice`. `intra_threads` limits each session's
    /// CPU thread pool (ONNX Runtime's default when `None`).
    pub fn new(choice: ProviderChoice, intra_threads: Option<usize>) -> Result<Runtime, RuntimeError> {
        let library = find_library()?;
        let load_err = |message: String| RuntimeError::LibraryLoad { path: library.clone(), message };
        let env = ort::init_from(&library)
            .map_err(|e| load_err(e.to_string()))?
            .with_name("darkroom")
            .with_telemetry(false)
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        let provider = match choice {
            ProviderChoice::Cpu => Some(Provider::Cpu),
            ProviderChoice::Cuda { device_id } => {
                if !ep::CUDA::is_available().unwrap_or(false) {
                    return Err(RuntimeError::CudaUnavailable { path: library, message: "this build lists no CUDAExecutionProvider".into() });
                }
                Some(Provider::Cuda { device_id })
            }
            ProviderChoice::Auto { .. } => None,
        };
        if let Some(p) = provider {
            tracing::info!(library = %library.display(), "execution provider: {p}");
        }
        Ok(Runtime { env, library, provider: Mutex::new(provider), choice, intra_threads })
    }

    /// The library in use.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The provider in use; for `auto`, known once the first session is made.
    pub fn provider(&self) -> Option<Provider> {
        *self.provider.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open an ONNX model file as a session on the runtime's provider.
    pub fn session(&self, path: &Path) -> Result<Session, RuntimeError> {
        let mut guard = self.provider.lock().unwrap_or_else(|p| p.into_inner());
        let provider = match *guard {
            Some(p) => p,
            None => {
                let ProviderChoice::Auto { device_id } = self.choice else { unreachable!("only auto resolves lazily") };
                let cuda = Provider::Cuda { device_id };
                let listed = ep::CUDA::is_available().unwrap_or(false);
                let chosen = match listed.then(|| self.open(path, cuda)) {
                    Some(Ok(session)) => {
                        tracing::info!(library = %self.library.display(), "execution provider: {cuda} (auto: CUDA loaded)");
                        *guard = Some(cuda);
                        return Ok(session);
                    }
                    Some(Err(e)) => format!("CUDA failed to load ({e})"),
                    None => "the library has no CUDA provider".to_string(),
                };
                tracing::info!(library = %self.library.display(), "execution provider: cpu (auto: {chosen})");
                *guard = Some(Provider::Cpu);
                Provider::Cpu
            }
        };
        drop(guard);
        self.open(path, provider)
    }

    fn open(&self, path: &Path, provider: Provider) -> Result<Session, RuntimeError> {
        let err = |e: &dyn std::fmt::Display| RuntimeError::Session { path: path.to_path_buf(), message: e.to_string() };
        let mut builder = Session::builder(&self.env).map_err(|e| err(&e))?;
        builder = builder.with_optimization_level(GraphOptimizationLevel::All).map_err(|e| err(&e))?;
        if let Some(n) = self.intra_threads {
            builder = builder.with_intra_threads(n).map_err(|e| err(&e))?;
        }
        if let Provider::Cuda { device_id } = provider {
            let cuda = ep::CUDA::default().with_device_id(device_id).build().error_on_failure();
            builder =
                builder.with_execution_providers([cuda]).map_err(|e| RuntimeError::CudaUnavailable { path: self.library.clone(), message: e.to_string() })?;
        }
        builder.commit_from_file(path).map_err(|e| err(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_choices_parse() {
        assert_eq!("cpu".parse::<ProviderChoice>(), Ok(ProviderChoice::Cpu));
        assert_eq!("CUDA".parse::<ProviderChoice>(), Ok(ProviderChoice::Cuda { device_id: 0 }));
        assert_eq!("cuda:2".parse::<ProviderChoice>(), Ok(ProviderChoice::Cuda { device_id: 2 }));
        assert_eq!("auto".parse::<ProviderChoice>(), Ok(ProviderChoice::Auto { device_id: 0 }));
        assert!("tpu".parse::<ProviderChoice>().unwrap_err().contains("cpu, cuda"));
        assert!("cuda:x".parse::<ProviderChoice>().is_err());
    }
}

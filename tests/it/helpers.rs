//! Helpers shared by the end-to-end tests: fixture paths, a shared ONNX Runtime, image diffs.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use darkroom_worker::pipeline::RgbImage;
use darkroom_worker::runtime::{ProviderChoice, Runtime};

/// The repository's tests/fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

/// One CPU runtime for the whole test binary (ONNX Runtime's environment is process-wide).
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(ProviderChoice::Cpu, Some(1)).expect("ONNX Runtime loads: run tools/setup-ort.sh"))
}

/// Decode a PNG file into RGB.
pub fn read_png(path: &Path) -> RgbImage {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    RgbImage { width: img.width() as usize, height: img.height() as usize, pixels: img.into_raw() }
}

/// The largest per-channel difference between two images of the same size.
pub fn max_pixel_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!((a.width, a.height), (b.width, b.height), "image sizes differ");
    a.pixels.iter().zip(&b.pixels).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

/// The worker binary built alongside this test binary.
pub fn worker_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("darkroom-worker")
}

/// A fresh empty directory under the target dir, removed at the start of the next run.
pub fn scratch(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("deps dir").join("scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

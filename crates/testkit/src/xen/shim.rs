//! Compiling the shim: once per source text, shared by every test process.

use std::hash::{Hash as _, Hasher as _};
use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The shim's C source (ours; see the comment at its top).
const SOURCE: &str = include_str!("shim.c");

/// Builds the shim if no build of this exact source exists yet, and returns the library's
/// path. Concurrent test processes each compile to a private name and rename into place,
/// so none ever loads a half-written library.
pub(super) fn build() -> io::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| compile().map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

fn compile() -> io::Result<PathBuf> {
    let mut hasher = std::hash::DefaultHasher::new();
    SOURCE.hash(&mut hasher);
    let dir = std::env::temp_dir().join("xsio-xen-shim");
    std::fs::create_dir_all(&dir)?;
    let library = dir.join(format!("xsio-xen-shim-{:016x}.so", hasher.finish()));
    if library.exists() {
        return Ok(library);
    }
    let scratch = tempfile::Builder::new().prefix("build-").tempdir_in(&dir)?;
    let source = scratch.path().join("shim.c");
    std::fs::write(&source, SOURCE)?;
    let output = scratch.path().join("shim.so");
    let result = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&output)
        .arg(&source)
        .args(["-ldl", "-lpthread"])
        .output()?;
    if !result.status.success() {
        return Err(io::Error::other(format!(
            "cc failed: {}",
            String::from_utf8_lossy(&result.stderr)
        )));
    }
    std::fs::rename(&output, &library)?;
    Ok(library)
}

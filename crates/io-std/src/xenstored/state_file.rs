//! The `--state` file: checked at start, loaded whole or refused, saved so that a crash at
//! any moment leaves the previous good state or the new one, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use xsio_xenstored::{Config, Server};

/// An error that names `path` and the step that failed.
fn named(path: &Path, step: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("state file {}: {step}: {e}", path.display()))
}

/// The temporary file a save writes before renaming it over `path`.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The directory holding `path` (`.` for a bare file name).
fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Checks, before the daemon serves anyone, that a save to `path` can succeed: its
/// directory exists and a file can be created there (a failed save at stop would lose the
/// whole tree).
pub(super) fn check_writable(path: &Path) -> io::Result<()> {
    let dir = directory(path);
    let meta =
        fs::metadata(dir).map_err(|e| named(path, &format!("directory {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(named(
            path,
            &format!("{}", dir.display()),
            "not a directory",
        ));
    }
    if path.is_dir() {
        return Err(named(path, "the path", "is a directory"));
    }
    let probe = temporary(path);
    create(&probe).map_err(|e| named(path, &format!("cannot write in {}", dir.display()), e))?;
    fs::remove_file(&probe).map_err(|e| named(path, "removing the probe file", e))
}

fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// The server saved at `path`, or `None` if there is no file yet. A file that is damaged
/// (cut short, a changed byte, not a state file) is an error naming it and what is wrong.
pub(super) fn load(path: &Path, config: &Config, now: Instant) -> io::Result<Option<Server>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(named(path, "reading", e)),
    };
    Server::load(config.clone(), now, &bytes)
        .map(Some)
        .map_err(|e| named(path, "refusing to load", e))
}

/// Saves `server` to `path`: written to `<path>.tmp`, flushed to disk, renamed over `path`,
/// and the directory flushed, so that after a crash at any point `path` holds either the
/// previous state or this one, whole.
pub(super) fn save(path: &Path, server: &Server) -> io::Result<()> {
    let tmp = temporary(path);
    let mut file = create(&tmp).map_err(|e| named(path, "creating the temporary file", e))?;
    file.write_all(&server.save())
        .and_then(|()| file.sync_all())
        .map_err(|e| named(path, "writing the temporary file", e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| named(path, "renaming the temporary file", e))?;
    File::open(directory(path))
        .and_then(|dir| dir.sync_all())
        .map_err(|e| named(path, "flushing its directory", e))
}

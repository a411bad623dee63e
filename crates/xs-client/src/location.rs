//! Where a client finds xenstored, as libxenstore looks: the daemon's Unix socket, or the
//! xenbus device (the only way in for a guest or a driver domain; the same wire).
//!
//! Pure: the caller passes how to read an environment variable, and opens what it gets.
//!
//! ```
//! use std::path::PathBuf;
//! use xsio_xs_client::location::socket_paths;
//!
//! let env = |name: &str| (name == "XENSTORED_RUNDIR").then(|| "/r".into());
//! assert_eq!(socket_paths(env), [PathBuf::from("/r/socket")]);
//! ```

use std::ffi::OsString;
use std::path::PathBuf;

/// The socket paths tried when `XENSTORED_PATH` and `XENSTORED_RUNDIR` are unset, in order
/// (libxenstore's compiled-in `<rundir>/xenstored/socket`; on Debian `/var/run` is `/run`).
pub const DEFAULT_SOCKET_PATHS: [&str; 2] = ["/run/xenstored/socket", "/var/run/xenstored/socket"];

/// The xenbus device of a Linux domain: read and write xenstore frames on it as on the
/// socket. libxenstore falls back to it when no socket answers.
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";

/// Where the daemon's socket is, as libxenstore looks for it: `$XENSTORED_PATH`, else
/// `$XENSTORED_RUNDIR/socket`, else [`DEFAULT_SOCKET_PATHS`]. `env` reads a variable (pass
/// `|name| std::env::var_os(name)`). `$XENSTORED_PATH` may also name the xenbus device:
/// a client looks at what the path is before it connects.
pub fn socket_paths(env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    if let Some(path) = env("XENSTORED_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(path)];
    }
    if let Some(dir) = env("XENSTORED_RUNDIR").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(dir).join("socket")];
    }
    DEFAULT_SOCKET_PATHS.iter().map(PathBuf::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn socket_paths_follow_libxenstore() {
        assert_eq!(
            socket_paths(env(&[
                ("XENSTORED_PATH", "/tmp/s"),
                ("XENSTORED_RUNDIR", "/r")
            ])),
            vec![PathBuf::from("/tmp/s")]
        );
        assert_eq!(
            socket_paths(env(&[("XENSTORED_RUNDIR", "/r")])),
            vec![PathBuf::from("/r/socket")]
        );
        assert_eq!(
            socket_paths(env(&[("XENSTORED_PATH", "")])),
            vec![
                PathBuf::from("/run/xenstored/socket"),
                PathBuf::from("/var/run/xenstored/socket")
            ]
        );
    }
}

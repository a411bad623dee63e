//! Xenstore paths: the allowed bytes, absolute, relative and special (`@`) forms, limits.
//!
//! Daemons check these (the wire codec does not: a request with a bad path is well-formed
//! and gets an `EINVAL` reply); clients check them before sending to fail early.

/// The longest absolute path `xs_wire.h` allows.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// The longest relative path `xs_wire.h` allows.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

/// The three forms of path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// Starts with `/`.
    Absolute,
    /// Neither `/` nor `@` first: resolved against the connection's home,
    /// `/local/domain/<domid>` (`/local/domain/0` for a socket connection).
    Relative,
    /// Starts with `@`: a watch-only pseudo path such as `@introduceDomain`.
    Special,
}

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is empty.
    #[error("empty path")]
    Empty,
    /// A byte outside `A-Z a-z 0-9 - / _ @`.
    #[error("invalid byte {byte:#04x} at {at} (allowed: A-Za-z0-9-/_@)")]
    InvalidByte {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// Two slashes in a row.
    #[error("empty path component (//)")]
    DoubleSlash,
    /// A trailing slash on anything but `/`.
    #[error("trailing slash")]
    TrailingSlash,
    /// Longer than the limit of its form.
    #[error("path of {len} bytes is longer than {max}")]
    TooLong {
        /// The path's length.
        len: usize,
        /// The limit of its form.
        max: usize,
    },
}

/// Checks a path against the rules of `xs_wire.h` and xenstored, and tells its form.
///
/// ```
/// use xsio_xs_wire::path::{PathError, PathKind, check};
///
/// assert_eq!(check("/local/domain/0/name"), Ok(PathKind::Absolute));
/// assert_eq!(check("device/vbd"), Ok(PathKind::Relative));
/// assert_eq!(check("@releaseDomain"), Ok(PathKind::Special));
/// assert_eq!(check("/a//b"), Err(PathError::DoubleSlash));
/// assert_eq!(check("/a/"), Err(PathError::TrailingSlash));
/// assert!(check("/a b").is_err());
/// ```
pub fn check(path: &str) -> Result<PathKind, PathError> {
    let bytes = path.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(PathError::Empty);
    };
    let kind = match first {
        b'/' => PathKind::Absolute,
        b'@' => PathKind::Special,
        _ => PathKind::Relative,
    };
    if let Some(at) = bytes.iter().position(|&b| !is_path_byte(b)) {
        return Err(PathError::InvalidByte {
            byte: bytes[at],
            at,
        });
    }
    if kind != PathKind::Special {
        if path.contains("//") {
            return Err(PathError::DoubleSlash);
        }
        if path.len() > 1 && path.ends_with('/') {
            return Err(PathError::TrailingSlash);
        }
    }
    let max = match kind {
        PathKind::Absolute => XENSTORE_ABS_PATH_MAX,
        PathKind::Relative | PathKind::Special => XENSTORE_REL_PATH_MAX,
    };
    if path.len() > max {
        return Err(PathError::TooLong {
            len: path.len(),
            max,
        });
    }
    Ok(kind)
}

/// Whether xenstore allows this byte in a path.
pub const fn is_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'/' | b'_' | b'@')
}

/// The absolute form of `path` for a connection whose home is `home`
/// (`/local/domain/<domid>`): relative paths get `home/` in front, others are unchanged.
///
/// ```
/// use xsio_xs_wire::path::resolve;
/// assert_eq!(resolve("device/vbd", "/local/domain/0"), "/local/domain/0/device/vbd");
/// assert_eq!(resolve("/tool", "/local/domain/0"), "/tool");
/// ```
pub fn resolve(path: &str, home: &str) -> String {
    match path.as_bytes().first() {
        Some(b'/') | Some(b'@') => path.to_owned(),
        _ => format!("{home}/{path}"),
    }
}

/// `dir/name`, without doubling the slash when `dir` is `/`.
///
/// ```
/// use xsio_xs_wire::path::join;
/// assert_eq!(join("/local/domain/1", "name"), "/local/domain/1/name");
/// assert_eq!(join("/", "tool"), "/tool");
/// ```
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The parent of an absolute path; `None` for `/` and for paths without a slash.
///
/// ```
/// use xsio_xs_wire::path::parent;
/// assert_eq!(parent("/a/b"), Some("/a"));
/// assert_eq!(parent("/a"), Some("/"));
/// assert_eq!(parent("/"), None);
/// ```
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/')? {
        0 => Some("/"),
        at => Some(&path[..at]),
    }
}

/// The home of a domain's connection: `/local/domain/<domid>`, which is also what
/// `GET_DOMAIN_PATH` answers.
pub fn domain_path(domid: u32) -> String {
    format!("/local/domain/{domid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_form() {
        let abs = format!("/{}", "a".repeat(XENSTORE_ABS_PATH_MAX - 1));
        assert_eq!(check(&abs), Ok(PathKind::Absolute));
        let too_long = format!("{abs}b");
        assert_eq!(
            check(&too_long),
            Err(PathError::TooLong {
                len: XENSTORE_ABS_PATH_MAX + 1,
                max: XENSTORE_ABS_PATH_MAX
            })
        );
        let rel = "a".repeat(XENSTORE_REL_PATH_MAX);
        assert_eq!(check(&rel), Ok(PathKind::Relative));
        assert!(check(&format!("{rel}a")).is_err());
        assert_eq!(check("/"), Ok(PathKind::Absolute));
        assert_eq!(check(""), Err(PathError::Empty));
        assert_eq!(
            check("/a.b"),
            Err(PathError::InvalidByte { byte: b'.', at: 2 })
        );
        assert_eq!(check("a//b"), Err(PathError::DoubleSlash));
        assert_eq!(parent("noslash"), None);
        assert_eq!(domain_path(7), "/local/domain/7");
    }
}

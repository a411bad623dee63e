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
    /// Not absolute where a node path must be (after resolving a relative path).
    #[error("not an absolute path")]
    NotAbsolute,
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
    // One pass: the first byte outside the set, and whether two slashes meet.
    let mut double_slash = false;
    let mut prev = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if !is_path_byte(byte) {
            return Err(PathError::InvalidByte { byte, at });
        }
        double_slash |= byte == b'/' && prev == b'/';
        prev = byte;
    }
    if kind != PathKind::Special {
        if double_slash {
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
    PATH_BYTES[byte as usize]
}

/// The bytes a path may hold, as a table: a daemon checks every byte of every request's
/// path.
const PATH_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'@');
        byte += 1;
    }
    table
};

/// The absolute form of `path` for a connection whose home is `home`
/// (`/local/domain/<domid>`): relative paths get `home/` in front, others are unchanged.
///
/// ```
/// use xsio_xs_wire::path::resolve;
/// assert_eq!(resolve("device/vbd", "/local/domain/0"), "/local/domain/0/device/vbd");
/// assert_eq!(resolve("/tool", "/local/domain/0"), "/tool");
/// ```
pub fn resolve(path: &str, home: &str) -> String {
    resolve_owned(path.to_owned(), home)
}

/// [`resolve`] for a path the caller owns: absolute and special paths come back as they
/// are, without a copy (a daemon resolves the path of every request).
pub fn resolve_owned(path: String, home: &str) -> String {
    match path.as_bytes().first() {
        Some(b'/') | Some(b'@') => path,
        _ => format!("{home}/{path}"),
    }
}

/// Checks a resolved node path as xenstored 4.17 does: the rules of [`check`], absolute,
/// and at most `path_max` bytes counted after a leading `/local/domain/<id>/` (else the
/// whole path), so every domain gets the same budget under its home.
///
/// ```
/// use xsio_xs_wire::path::{PathError, check_node};
///
/// let tail = "x".repeat(2047);
/// assert_eq!(check_node(&format!("/local/domain/1/{tail}"), 2048), Ok(()));
/// assert!(check_node(&format!("/{tail}xx"), 2048).is_err());
/// assert_eq!(check_node("@releaseDomain", 2048), Err(PathError::NotAbsolute));
/// ```
pub fn check_node(path: &str, path_max: usize) -> Result<(), PathError> {
    if check(path)? != PathKind::Absolute {
        return Err(PathError::NotAbsolute);
    }
    let counted = path.len() - domain_prefix_len(path);
    if counted > path_max {
        return Err(PathError::TooLong {
            len: counted,
            max: path_max,
        });
    }
    Ok(())
}

/// Length of a leading `/local/domain/<digits>/` (at most 5 digits, as a domid has), or 0.
fn domain_prefix_len(path: &str) -> usize {
    const PREFIX: &str = "/local/domain/";
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return 0;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 5 || rest.as_bytes().get(digits) != Some(&b'/') {
        return 0;
    }
    PREFIX.len() + digits + 1
}

/// The last component of an absolute path (empty for `/`).
///
/// ```
/// use xsio_xs_wire::path::base_name;
/// assert_eq!(base_name("/a/b"), "b");
/// assert_eq!(base_name("/"), "");
/// ```
pub fn base_name(path: &str) -> &str {
    path.rfind('/').map_or(path, |cut| &path[cut + 1..])
}

/// Whether `path` is `ancestor` itself or lies below it: the watch matching rule (a watch
/// on `/` sees every node).
///
/// ```
/// use xsio_xs_wire::path::is_at_or_below;
/// assert!(is_at_or_below("/a/b", "/a"));
/// assert!(is_at_or_below("/a", "/a"));
/// assert!(!is_at_or_below("/ab", "/a"));
/// assert!(is_at_or_below("/ab", "/"));
/// ```
pub fn is_at_or_below(path: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
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
        let allowed: Vec<u8> = (0..=255u8).filter(|b| is_path_byte(*b)).collect();
        let mut expected: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .collect();
        expected.extend_from_slice(b"-/@_");
        expected.sort_unstable();
        assert_eq!(allowed, expected);
    }

    #[test]
    fn node_paths_as_the_daemon_checks_them() {
        for ok in ["/", "/a", "/a-b/c_d/@x", "/local/domain/7/x"] {
            assert_eq!(check_node(ok, 2048), Ok(()), "{ok}");
        }
        for bad in ["", "a", "/a/", "/a//b", "/a b", "/a.b", "@x", "/\u{e9}"] {
            assert!(check_node(bad, 2048).is_err(), "{bad}");
        }
        let tail = "x".repeat(2047);
        assert_eq!(check_node(&format!("/{tail}"), 2048), Ok(()));
        // The prefix is free only with a domid of at most five digits and a slash after it.
        assert!(check_node(&format!("/local/domain/123456/{tail}"), 2048).is_err());
        assert!(check_node(&format!("/local/domain/1{tail}"), 2048).is_err());
        assert_eq!(
            check_node(&format!("/local/domain/12345/{tail}"), 2048),
            Ok(())
        );
        assert_eq!(
            resolve_owned("a".into(), "/local/domain/3"),
            "/local/domain/3/a"
        );
        assert_eq!(resolve_owned("@x".into(), "/local/domain/3"), "@x");
    }
}

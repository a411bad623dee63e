//! Node paths: resolving relative paths, validating, and walking the hierarchy.

/// Longest absolute path accepted, whatever its prefix.
pub(crate) const ABS_PATH_MAX: usize = 3072;

/// Resolves `raw` against the connection's home: absolute (`/...`) and special (`@...`) paths
/// stay as they are; anything else is taken relative to `home`.
pub(crate) fn resolve(home: &str, raw: &str) -> String {
    if raw.starts_with('/') || raw.starts_with('@') {
        raw.to_owned()
    } else {
        format!("{home}/{raw}")
    }
}

/// Whether `path` (already resolved) names a node: starts with `/`, has no empty component,
/// no trailing `/` except the root, only the characters xenstored allows, and is short
/// enough. The length limit counts only what follows a `/local/domain/<id>/` prefix, as
/// xenstored does, so every domain gets the same budget under its home.
pub(crate) fn is_valid_node(path: &str, path_max: usize) -> bool {
    if !path.starts_with('/') || path.len() > ABS_PATH_MAX {
        return false;
    }
    if path.len() > 1 && path.ends_with('/') {
        return false;
    }
    if path.contains("//") {
        return false;
    }
    let counted = path.len() - domain_prefix_len(path);
    if counted > path_max {
        return false;
    }
    path.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'@'))
}

/// Length of a leading `/local/domain/<digits>/`, or 0.
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

/// Whether `path` is a special watch path such as `@introduceDomain`.
pub(crate) fn is_special(path: &str) -> bool {
    path.starts_with('@')
}

/// The parent of a node path; `None` for the root.
pub(crate) fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    let cut = path.rfind('/')?;
    Some(if cut == 0 { "/" } else { &path[..cut] })
}

/// The last component of a node path (empty for the root).
pub(crate) fn base_name(path: &str) -> &str {
    path.rfind('/').map_or(path, |cut| &path[cut + 1..])
}

/// The path of child `name` under `parent`.
pub(crate) fn child(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether `path` is `ancestor` itself or lies below it (a watch on `/` sees everything).
pub(crate) fn is_at_or_below(path: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_under_home() {
        assert_eq!(resolve("/local/domain/0", "a/b"), "/local/domain/0/a/b");
        assert_eq!(resolve("/local/domain/0", "/a"), "/a");
        assert_eq!(
            resolve("/local/domain/0", "@releaseDomain"),
            "@releaseDomain"
        );
    }

    #[test]
    fn validation_follows_xenstored() {
        for ok in ["/", "/a", "/a-b/c_d/@x", "/local/domain/7/x"] {
            assert!(is_valid_node(ok, 2048), "{ok}");
        }
        for bad in ["", "a", "/a/", "/a//b", "/a b", "/a.b", "@x", "/é"] {
            assert!(!is_valid_node(bad, 2048), "{bad}");
        }
    }

    #[test]
    fn length_limit_counts_after_the_domain_prefix() {
        let tail = "x".repeat(2047);
        assert!(is_valid_node(&format!("/local/domain/1/{tail}"), 2048));
        assert!(!is_valid_node(&format!("/{tail}xx"), 2048));
        assert!(is_valid_node(&format!("/{tail}"), 2048));
    }

    #[test]
    fn hierarchy_helpers() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(base_name("/a/b"), "b");
        assert_eq!(child("/", "a"), "/a");
        assert_eq!(child("/a", "b"), "/a/b");
        assert!(is_at_or_below("/a/b", "/a"));
        assert!(is_at_or_below("/a", "/a"));
        assert!(!is_at_or_below("/ab", "/a"));
        assert!(is_at_or_below("/ab", "/"));
    }
}

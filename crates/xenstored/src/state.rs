//! Saving the tree to bytes and loading it back (the daemon's `--state FILE`).
//!
//! The format is text, one node per line in depth-first order (so a parent always comes
//! before its children and child order survives): `path perms hex-value`, after a header line.
//! Permissions are written as `b0,r5`; the value is hex so any bytes round-trip.

use std::fmt::Write as _;

use crate::perms::Perms;
use crate::tree::{Node, Tree};
use xsio_xs_wire::{Perm, XENSTORE_ABS_PATH_MAX, path};

use crate::{Config, Server};

const HEADER: &str = "xsio-xenstored-state 1";

/// Why saved state could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadError {
    /// The first line is not the expected header.
    #[error("not an xsio-xenstored state file (bad header)")]
    BadHeader,
    /// A node line is malformed or out of order.
    #[error("line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The loaded tree breaks an invariant.
    #[error("inconsistent tree: {0}")]
    Inconsistent(String),
}

impl Server {
    /// The committed tree as bytes that [`Server::load`] turns back into the same tree.
    /// Open transactions, watches and connections are not saved.
    pub fn save(&self) -> Vec<u8> {
        let mut out = String::new();
        out.push_str(HEADER);
        out.push('\n');
        for (node_path, node) in self.tree().walk() {
            let _ = write!(out, "{node_path} {} ", node.perms);
            for byte in node.value.iter() {
                let _ = write!(out, "{byte:02x}");
            }
            out.push('\n');
        }
        out.into_bytes()
    }

    /// A server whose tree is the one saved in `bytes`.
    pub fn load(
        config: Config,
        now: std::time::Instant,
        bytes: &[u8],
    ) -> Result<Server, LoadError> {
        let text = std::str::from_utf8(bytes).map_err(|_| LoadError::BadHeader)?;
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(LoadError::BadHeader);
        }
        let mut tree = Tree::empty_root();
        for (idx, line) in lines.enumerate() {
            let line_no = idx + 2;
            let bad = |reason| LoadError::BadLine {
                line: line_no,
                reason,
            };
            let mut fields = line.split(' ');
            let (Some(node_path), Some(perms), Some(value), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("expected: path perms hex-value"));
            };
            if path::check_node(node_path, XENSTORE_ABS_PATH_MAX).is_err() {
                return Err(bad("invalid path"));
            }
            let perms = perms
                .split(',')
                .map(str::parse::<Perm>)
                .collect::<Result<Vec<_>, _>>()
                .ok()
                .and_then(Perms::from_entries)
                .ok_or_else(|| bad("invalid permissions"))?;
            let value = decode_hex(value).ok_or_else(|| bad("invalid hex value"))?;
            let existing_children = tree.get(node_path).map(|n| n.children.clone());
            let mut node = Node::new(&value, perms);
            match (path::parent(node_path), existing_children) {
                (None, Some(children)) => node.children = children,
                (Some(parent), None) => {
                    if tree.get(parent).is_none() {
                        return Err(bad("node before its parent"));
                    }
                    tree.link_child(parent, path::base_name(node_path));
                }
                _ => return Err(bad("duplicate node")),
            }
            tree.put(node_path, node);
        }
        tree.check().map_err(LoadError::Inconsistent)?;
        Ok(Server::with_tree(config, tree, now))
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

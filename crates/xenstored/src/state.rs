//! Saving the tree to bytes and loading it back (the daemon's `--state FILE`).
//!
//! The format is text. A header line, then one node per line in depth-first order (so a
//! parent always comes before its children and child order survives): `path perms
//! hex-value`, permissions written as `b0,r5`, the value in hex so any bytes round-trip.
//! Then an end marker, `end <nodes> <checksum>`: the number of node lines and the FNV-1a
//! 64-bit hash of every byte before the marker, in hex. A file cut anywhere lacks the
//! marker, and a changed byte changes the hash, so a damaged file is refused whole, never
//! loaded in part.

use std::fmt::Write as _;

use crate::perms::Perms;
use crate::tree::Tree;
use xsio_xs_wire::{Perm, XENSTORE_ABS_PATH_MAX, path};

use crate::{Config, Server};

const HEADER: &str = "xsio-xenstored-state 2";
const END: &str = "end ";

/// Why saved state could not be loaded. Each names what is wrong; the caller names the file.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadError {
    /// The first line is not the expected header.
    #[error("not an xsio-xenstored state file of version 2 (bad header)")]
    BadHeader,
    /// The file ends before its end marker: it was cut short (or never finished).
    #[error("truncated: no end marker after {nodes} node lines")]
    Truncated {
        /// Node lines found before the file ended.
        nodes: usize,
    },
    /// The end marker counts another number of nodes than the file holds.
    #[error("the end marker counts {expected} nodes, the file holds {found}")]
    CountMismatch {
        /// The marker's count.
        expected: usize,
        /// Node lines found.
        found: usize,
    },
    /// The content does not hash to the end marker's checksum: some byte changed.
    #[error("corrupted: checksum {found:016x} differs from the end marker's {expected:016x}")]
    ChecksumMismatch {
        /// The marker's checksum.
        expected: u64,
        /// The checksum of what is there.
        found: u64,
    },
    /// A node line is malformed or out of order, or the end marker is.
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

/// FNV-1a, 64 bits: cheap, and any changed byte changes it (corruption, not an adversary,
/// is what it detects).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Server {
    /// The committed tree as bytes that [`Server::load`] turns back into the same tree.
    /// Open transactions, watches and connections are not saved.
    pub fn save(&self) -> Vec<u8> {
        save_tree(self.tree())
    }

    /// A server whose tree is the one saved in `bytes`; a damaged file is refused whole.
    pub fn load(
        config: Config,
        now: std::time::Instant,
        bytes: &[u8],
    ) -> Result<Server, LoadError> {
        let body = check_integrity(bytes)?;
        let text = std::str::from_utf8(body).map_err(|_| LoadError::BadHeader)?;
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
            match path::parent(node_path) {
                // The root exists already: it is the first line.
                None if idx == 0 => {
                    tree.set_value(node_path, &value);
                    tree.set_perms(node_path, &perms);
                }
                None => return Err(bad("duplicate node")),
                Some(parent) => {
                    if tree.get(parent).is_none() {
                        return Err(bad("node before its parent"));
                    }
                    if !tree.create(node_path, &value, &perms) {
                        return Err(bad("duplicate node"));
                    }
                }
            }
        }
        tree.check().map_err(LoadError::Inconsistent)?;
        Ok(Server::with_tree(config, tree, now))
    }
}

/// The bytes of a saved `tree` (see the module doc).
fn save_tree(tree: &Tree) -> Vec<u8> {
    let mut out = String::new();
    out.push_str(HEADER);
    out.push('\n');
    let mut nodes = 0;
    for (node_path, node) in tree.walk() {
        let _ = write!(out, "{node_path} {} ", node.perms());
        for byte in node.value() {
            let _ = write!(out, "{byte:02x}");
        }
        out.push('\n');
        nodes += 1;
    }
    let checksum = fnv1a(out.as_bytes());
    let _ = writeln!(out, "{END}{nodes} {checksum:016x}");
    out.into_bytes()
}

/// Checks the end marker of a saved file; returns the bytes before it.
fn check_integrity(bytes: &[u8]) -> Result<&[u8], LoadError> {
    if !bytes.starts_with(HEADER.as_bytes()) {
        return Err(LoadError::BadHeader);
    }
    // Whole lines after the header.
    let node_lines = |text: &[u8]| {
        text.iter()
            .filter(|b| **b == b'\n')
            .count()
            .saturating_sub(1)
    };
    // The marker is the last line, and the file ends with its newline.
    let Some(content) = bytes.strip_suffix(b"\n") else {
        return Err(LoadError::Truncated {
            nodes: node_lines(bytes),
        });
    };
    let marker_at = content
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |at| at + 1);
    let (body, marker) = content.split_at(marker_at);
    let Some(marker) = marker.strip_prefix(END.as_bytes()) else {
        return Err(LoadError::Truncated {
            nodes: node_lines(bytes),
        });
    };
    let found_nodes = node_lines(body);
    let bad_marker = LoadError::BadLine {
        line: found_nodes + 2,
        reason: "malformed end marker",
    };
    let marker = std::str::from_utf8(marker).map_err(|_| bad_marker.clone())?;
    let (count, checksum) = marker.split_once(' ').ok_or_else(|| bad_marker.clone())?;
    let count: usize = count.parse().map_err(|_| bad_marker.clone())?;
    let checksum = u64::from_str_radix(checksum, 16).map_err(|_| bad_marker.clone())?;
    if count != found_nodes {
        return Err(LoadError::CountMismatch {
            expected: count,
            found: found_nodes,
        });
    }
    let found = fnv1a(body);
    if found != checksum {
        return Err(LoadError::ChecksumMismatch {
            expected: checksum,
            found,
        });
    }
    Ok(body)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> Vec<u8> {
        let mut tree = Tree::default();
        let perms = Perms::owned_by(0, crate::perms::Access::Read);
        tree.create("/data", b"\x00\x01bin", &perms);
        save_tree(&tree)
    }

    #[test]
    fn the_end_marker_counts_nodes_and_hashes_the_rest() {
        let bytes = saved();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let last = text.lines().last().unwrap();
        let body = &bytes[..bytes.len() - last.len() - 1];
        assert_eq!(last, format!("end 4 {:016x}", fnv1a(body)));
        assert_eq!(check_integrity(&bytes), Ok(body));
    }

    #[test]
    fn damage_anywhere_is_named() {
        let bytes = saved();
        // Cut at every length: never accepted.
        for len in 0..bytes.len() {
            assert!(check_integrity(&bytes[..len]).is_err(), "cut at {len}");
        }
        // Any changed byte of the body: a checksum or count error, never a load.
        for at in HEADER.len()..bytes.len() - 30 {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert!(check_integrity(&damaged).is_err(), "byte {at}");
        }
        let without_marker = {
            let text = String::from_utf8(bytes.clone()).unwrap();
            let keep = text.lines().count() - 1;
            text.lines().take(keep).collect::<Vec<_>>().join("\n") + "\n"
        };
        assert_eq!(
            check_integrity(without_marker.as_bytes()),
            Err(LoadError::Truncated { nodes: 4 })
        );
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

//! Property test of watch fan-out against a reference that scans every watch of every
//! connection, as the daemon did before it indexed watches by path: random WATCH, UNWATCH,
//! RESET_WATCHES, reconnections, writes and removals over a few connections. A write's
//! events reach each connection in registration order; a removal's events are compared as
//! a multiset per connection (their order across the removed nodes is checked against Xen
//! in `watches.rs` and the peer test). The harness checks that the index lists exactly the
//! connections' watches after every request.

mod common;

use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use xsio_xs_wire::path::is_at_or_below;

const PATHS: [&str; 7] = ["/", "/a", "/a/b", "/a/b/c", "/a/c", "/b", "/b/a"];
const WATCHERS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Watch { conn: usize, path: usize, token: u8 },
    Unwatch { conn: usize, path: usize, token: u8 },
    Reset { conn: usize },
    Reconnect { conn: usize },
    Write { path: usize },
    Rm { path: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let conn = 0..WATCHERS;
    let path = 0..PATHS.len();
    prop_oneof![
        3 => (conn.clone(), path.clone(), 0..3u8)
            .prop_map(|(conn, path, token)| Op::Watch { conn, path, token }),
        1 => (conn.clone(), path.clone(), 0..3u8)
            .prop_map(|(conn, path, token)| Op::Unwatch { conn, path, token }),
        1 => conn.clone().prop_map(|conn| Op::Reset { conn }),
        1 => conn.prop_map(|conn| Op::Reconnect { conn }),
        3 => (1..PATHS.len()).prop_map(|path| Op::Write { path }),
        1 => (1..PATHS.len()).prop_map(|path| Op::Rm { path }),
    ]
}

/// What every change should deliver to connection `watches` (in registration order).
fn expected_write(watches: &[(String, String)], path: &str) -> Vec<(String, String)> {
    watches
        .iter()
        .filter(|(watched, _)| is_at_or_below(path, watched))
        .map(|(_, token)| ev(path, token))
        .collect()
}

proptest! {
    #[test]
    fn indexed_fan_out_matches_a_scan_of_every_watch(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let mut h = Harness::new();
        let writer = h.dom0();
        let mut conns: Vec<_> = (0..WATCHERS).map(|_| h.dom0()).collect();
        // Per watcher: (path, token) in registration order.
        let mut watches: Vec<Vec<(String, String)>> = vec![Vec::new(); WATCHERS];
        let mut nodes: BTreeSet<String> =
            ["/", "/tool", "/tool/xenstored"].map(String::from).into();
        for op in ops {
            match op {
                Op::Watch { conn, path, token } => {
                    let entry = (PATHS[path].to_owned(), format!("t{token}"));
                    let reply = h.op(conns[conn], WATCH, 0, &[&entry.0, &entry.1]);
                    if watches[conn].contains(&entry) {
                        prop_assert_eq!(reply, err("EEXIST"));
                    } else {
                        prop_assert_eq!(reply, ok());
                        prop_assert_eq!(h.take_events(conns[conn]), vec![ev(&entry.0, &entry.1)]);
                        watches[conn].push(entry);
                    }
                }
                Op::Unwatch { conn, path, token } => {
                    let entry = (PATHS[path].to_owned(), format!("t{token}"));
                    let reply = h.op(conns[conn], UNWATCH, 0, &[&entry.0, &entry.1]);
                    match watches[conn].iter().position(|w| *w == entry) {
                        Some(at) => {
                            prop_assert_eq!(reply, ok());
                            watches[conn].remove(at);
                        }
                        None => prop_assert_eq!(reply, err("ENOENT")),
                    }
                }
                Op::Reset { conn } => {
                    prop_assert_eq!(h.op(conns[conn], RESET_WATCHES, 0, &[]), ok());
                    watches[conn].clear();
                }
                Op::Reconnect { conn } => {
                    h.server.disconnect(h.now, conns[conn]);
                    h.server.check_invariants().unwrap();
                    conns[conn] = h.dom0();
                    watches[conn].clear();
                }
                Op::Write { path } => {
                    let path = PATHS[path];
                    prop_assert_eq!(h.write(writer, 0, path, "v"), ok());
                    let mut at = Some(path);
                    while let Some(dir) = at {
                        nodes.insert(dir.to_owned());
                        at = xsio_xs_wire::path::parent(dir);
                    }
                    for (conn, held) in conns.iter().zip(&watches) {
                        prop_assert_eq!(h.take_events(*conn), expected_write(held, path));
                    }
                }
                Op::Rm { path } => {
                    let path = PATHS[path];
                    let reply = h.op(writer, RM, 0, &[path]);
                    // Removing a missing node under an existing parent succeeds, as in Xen.
                    let parent = xsio_xs_wire::path::parent(path).unwrap();
                    if nodes.contains(path) || nodes.contains(parent) {
                        prop_assert_eq!(reply, ok());
                    } else {
                        prop_assert_eq!(reply, err("ENOENT"));
                    }
                    let removed: Vec<String> = nodes
                        .iter()
                        .filter(|n| is_at_or_below(n, path))
                        .cloned()
                        .collect();
                    for (conn, held) in conns.iter().zip(&watches) {
                        let mut expected = Vec::new();
                        for node in &removed {
                            if node == path {
                                expected.extend(expected_write(held, path));
                            } else {
                                expected.extend(
                                    held.iter()
                                        .filter(|(watched, _)| watched == node)
                                        .map(|(_, token)| ev(node, token)),
                                );
                            }
                        }
                        let mut got = h.take_events(*conn);
                        got.sort();
                        expected.sort();
                        prop_assert_eq!(got, expected);
                    }
                    nodes.retain(|n| !is_at_or_below(n, path));
                }
            }
        }
    }
}

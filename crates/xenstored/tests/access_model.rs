//! Property test of the access rule from a guest's side: dom0 builds random trees with random
//! permission lists; guest 3 (targeting nobody) and guest 4 read, list, write and remove at
//! random. Every guest reply must be what the permission rule predicts from dom0's view of
//! the tree, so a guest learns nothing it may not read and changes nothing it may not write.

mod common;

use common::*;
use proptest::prelude::*;

const PATHS: &[&str] = &["/a", "/a/b", "/a/b/c", "/a/d", "/e", "/e/f"];

#[derive(Clone, Debug)]
enum Op {
    /// dom0 writes a node.
    Dom0Write(usize),
    /// dom0 sets a permission list: owner, default letter, then (domid, letter) entries.
    Dom0Chmod(usize, u32, char, Vec<(u32, char)>),
    /// dom0 removes a node.
    Dom0Rm(usize),
    GuestRead(u32, usize),
    GuestDir(u32, usize),
    GuestWrite(u32, usize),
    GuestRm(u32, usize),
}

fn letter() -> impl Strategy<Value = char> {
    prop::sample::select(vec!['n', 'r', 'w', 'b'])
}

fn domid() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0u32, 3, 4])
}

fn op() -> impl Strategy<Value = Op> {
    let path = 0..PATHS.len();
    let guest = prop::sample::select(vec![3u32, 4]);
    prop_oneof![
        2 => path.clone().prop_map(Op::Dom0Write),
        2 => (path.clone(), domid(), letter(), prop::collection::vec((domid(), letter()), 0..3))
            .prop_map(|(p, o, d, e)| Op::Dom0Chmod(p, o, d, e)),
        1 => path.clone().prop_map(Op::Dom0Rm),
        2 => (guest.clone(), path.clone()).prop_map(|(g, p)| Op::GuestRead(g, p)),
        1 => (guest.clone(), path.clone()).prop_map(|(g, p)| Op::GuestDir(g, p)),
        2 => (guest.clone(), path.clone()).prop_map(|(g, p)| Op::GuestWrite(g, p)),
        1 => (guest, path).prop_map(|(g, p)| Op::GuestRm(g, p)),
    ]
}

/// (read, write) for `domid` under the wire-form permission list `perms`.
fn rule(perms: &[u8], domid: u32) -> (bool, bool) {
    let entries: Vec<(char, u32)> = split_nul(perms)
        .iter()
        .map(|e| (e.chars().next().unwrap(), e[1..].parse().unwrap()))
        .collect();
    if entries[0].1 == domid {
        return (true, true);
    }
    let letter = entries[1..]
        .iter()
        .find(|(_, d)| *d == domid)
        .map_or(entries[0].0, |(l, _)| *l);
    (matches!(letter, 'r' | 'b'), matches!(letter, 'w' | 'b'))
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(cut) => &path[..cut],
        None => "/",
    }
}

struct World {
    h: Harness,
    dom0: xsio_xenstored::ConnId,
    guests: [(u32, xsio_xenstored::ConnId); 2],
}

impl World {
    fn perms(&mut self, path: &str) -> Option<Vec<u8>> {
        self.h.op(self.dom0, GET_PERMS, 0, &[path]).ok()
    }

    /// (read, write) of `guest` on `path`, or on its nearest existing ancestor if missing;
    /// the flag says whether `path` exists.
    fn predicted(&mut self, guest: u32, path: &str) -> (bool, (bool, bool)) {
        let mut current = path;
        loop {
            if let Some(perms) = self.perms(current) {
                return (current == path, rule(&perms, guest));
            }
            current = parent(current);
        }
    }

    fn conn(&self, guest: u32) -> xsio_xenstored::ConnId {
        self.guests.iter().find(|(d, _)| *d == guest).unwrap().1
    }
}

fn expect(allowed: bool, exists: bool) -> Result<(), String> {
    match (allowed, exists) {
        (false, _) => Err("EACCES".into()),
        (true, true) => Ok(()),
        (true, false) => Err("ENOENT".into()),
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    let dom0 = h.dom0();
    let g3 = h.domain(3);
    let g4 = h.domain(4);
    let mut w = World {
        h,
        dom0,
        guests: [(3, g3), (4, g4)],
    };
    for op in ops {
        match op {
            Op::Dom0Write(p) => {
                w.h.write(dom0, 0, PATHS[p], "dom0").unwrap();
            }
            Op::Dom0Chmod(p, owner, default, entries) => {
                let mut args = vec![PATHS[p].to_owned(), format!("{default}{owner}")];
                args.extend(entries.iter().map(|(d, l)| format!("{l}{d}")));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let _ = w.h.op(dom0, SET_PERMS, 0, &args);
            }
            Op::Dom0Rm(p) => {
                let _ = w.h.op(dom0, RM, 0, &[PATHS[p]]);
            }
            Op::GuestRead(g, p) => {
                let (exists, (read, _)) = w.predicted(g, PATHS[p]);
                let conn = w.conn(g);
                let got = w.h.read(conn, 0, PATHS[p]).map(|_| ());
                prop_assert_eq!(got, expect(read, exists), "guest {} read {}", g, PATHS[p]);
            }
            Op::GuestDir(g, p) => {
                let (exists, (read, _)) = w.predicted(g, PATHS[p]);
                let conn = w.conn(g);
                let got = w.h.dir(conn, 0, PATHS[p]).map(|_| ());
                prop_assert_eq!(got, expect(read, exists), "guest {} dir {}", g, PATHS[p]);
            }
            Op::GuestWrite(g, p) => {
                let (exists, (_, write)) = w.predicted(g, PATHS[p]);
                let conn = w.conn(g);
                let got = w.h.write(conn, 0, PATHS[p], "guest").map(|_| ());
                let expected = if write {
                    Ok(())
                } else {
                    Err("EACCES".to_owned())
                };
                prop_assert_eq!(
                    &got,
                    &expected,
                    "guest {} write {} (exists {})",
                    g,
                    PATHS[p],
                    exists
                );
                let value = w.h.read(dom0, 0, PATHS[p]);
                if got.is_ok() {
                    prop_assert_eq!(value, Ok("guest".to_owned()));
                    if !exists {
                        // A created node belongs to its creator.
                        let perms = split_nul(&w.perms(PATHS[p]).unwrap());
                        prop_assert_eq!(&perms[0][1..], g.to_string());
                    }
                } else if !exists {
                    prop_assert_eq!(
                        value,
                        Err("ENOENT".to_owned()),
                        "a refused write created nothing"
                    );
                }
            }
            Op::GuestRm(g, p) => {
                let path = PATHS[p];
                let (exists, (_, write)) = w.predicted(g, path);
                let parent_exists = w.perms(parent(path)).is_some();
                let conn = w.conn(g);
                let got = w.h.op(conn, RM, 0, &[path]).map(|_| ());
                let expected = match (write, exists, parent_exists) {
                    (false, _, _) => Err("EACCES".to_owned()),
                    (true, true, _) | (true, false, true) => Ok(()),
                    (true, false, false) => Err("ENOENT".to_owned()),
                };
                prop_assert_eq!(&got, &expected, "guest {} rm {}", g, path);
                prop_assert_eq!(w.perms(path).is_some(), exists && got.is_err());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn guests_get_exactly_what_the_permission_rule_allows(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}

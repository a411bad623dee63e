//! Per-domain memory (C xenstored 4.17's quota): a guest is charged for the nodes it owns,
//! the messages queued for it and the requests it sent that wait, across all of its
//! connections; past the hard quota none of its requests is answered until it drops below,
//! while everyone else is served; past the soft quota it is reported once.

mod common;

use common::*;
use xsio_xenstored::{Config, ConnId, Origin, Output};

fn memory_of(h: &mut Harness, dom0: ConnId, domid: u32) -> usize {
    let report = h.op(dom0, 0, 0, &["quota", &domid.to_string()]).unwrap();
    let report = String::from_utf8(report).unwrap();
    report
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            (name.trim() == "memory").then(|| value.trim().trim_end_matches('\0').parse().ok())?
        })
        .unwrap_or_else(|| panic!("no memory in {report:?}"))
}

#[test]
fn a_guest_is_charged_for_the_nodes_it_owns() {
    let (mut h, c) = Harness::with_dom0();
    h.give_home(c, 3);
    let g = h.domain(3);
    let home = memory_of(&mut h, c, 3);
    // The home node: its record (24 bytes), its path, one permission (8).
    assert_eq!(home, 24 + "/local/domain/3".len() + 8);
    h.write(g, 0, "big", &"x".repeat(1000)).unwrap();
    let with_node = memory_of(&mut h, c, 3);
    // The new node, and the home's child list grown by "big\0".
    let node = 24 + "/local/domain/3/big".len() + 1000 + 8;
    assert_eq!(with_node, home + node + 4);
    h.op(g, RM, 0, &["big"]).unwrap();
    assert_eq!(memory_of(&mut h, c, 3), home);
    // dom0's nodes are not the guest's, even those it may read.
    h.write(c, 0, "/public", &"y".repeat(500)).unwrap();
    h.op(c, SET_PERMS, 0, &["/public", "n0", "r3"]).unwrap();
    assert_eq!(memory_of(&mut h, c, 3), home);
}

#[test]
fn past_the_hard_quota_a_guest_waits_and_others_are_served() {
    let mut config = Config::default();
    config.quotas.memory_per_domain = 8_000;
    config.quotas.memory_per_domain_soft = 4_000;
    let mut h = Harness::with_config(config);
    let c = h.dom0();
    h.write(c, 0, "/public", "").unwrap();
    h.op(c, SET_PERMS, 0, &["/public", "n0", "r3"]).unwrap();
    let watcher = h.domain(3);
    let asker = h.server.connect(h.now, Origin::Domain(3));
    h.watch(watcher, "/public", "t");
    h.server.pause_output(h.now, watcher);
    // About 31 bytes of event each.
    for i in 0..400 {
        h.write(c, 0, &format!("/public/n{i}"), "v").unwrap();
    }
    assert!(memory_of(&mut h, c, 3) > 8_000);
    assert!(
        !h.server.wants_input(asker),
        "a guest past its quota is not read"
    );
    // A request that arrives anyway waits.
    let read = frame(READ, 77, 0, b"/public\0");
    h.server.handle_input(h.now, asker, &read);
    let mut answered = false;
    while let Some(out) = h.server.poll_output() {
        match out {
            Output::Transmit { conn, .. } => answered |= conn == asker,
            other => panic!("{other:?}"),
        }
    }
    assert!(!answered);
    let reported = &h.memory_reports;
    assert_eq!(reported.len(), 1, "reported once: {reported:?}");
    assert!(reported[0].0 == 3 && reported[0].1 > 4_000, "{reported:?}");
    // Another guest is served.
    let other = h.domain(4);
    assert_eq!(
        h.op(other, GET_DOMAIN_PATH, 0, &["4"]),
        Ok(b"/local/domain/4\0".to_vec())
    );
    // The watcher takes its events: the guest is below its quota and answered.
    h.server.resume_output(h.now, watcher);
    while let Some(out) = h.server.poll_output() {
        if let Output::Transmit { conn, .. } = out {
            answered |= conn == asker;
        }
    }
    assert!(answered);
    assert!(h.server.wants_input(asker));
}

//! An unprivileged domain against permissions and quotas.

mod common;

use common::*;
use xsio_xenstored::{CloseReason, Config, ConnId, Quotas};

#[test]
fn a_guest_cannot_see_or_touch_what_it_may_not() {
    let (mut h, c) = Harness::with_dom0();
    h.write(c, 0, "/vm/secret", "key").unwrap();
    let g = h.domain(4);
    assert_eq!(h.read(g, 0, "/vm/secret"), err("EACCES"));
    assert_eq!(h.dir(g, 0, "/vm"), err("EACCES"));
    assert_eq!(h.op(g, GET_PERMS, 0, &["/vm/secret"]), err("EACCES"));
    // A missing node under an unreadable parent is EACCES too: no existence leak.
    assert_eq!(h.read(g, 0, "/vm/nothing"), err("EACCES"));
    assert_eq!(h.write(g, 0, "/vm/secret", "mine"), err("EACCES"));
    assert_eq!(h.write(g, 0, "/vm/new", "mine"), err("EACCES"));
    assert_eq!(h.op(g, MKDIR, 0, &["/vm/new"]), err("EACCES"));
    assert_eq!(h.op(g, RM, 0, &["/vm/secret"]), err("EACCES"));
    assert_eq!(h.op(g, SET_PERMS, 0, &["/vm/secret", "b4"]), err("EACCES"));
    assert_eq!(h.op(g, INTRODUCE, 0, &["9", "0", "0"]), err("EACCES"));
    assert_eq!(h.op(g, 0, 0, &["check"]), err("EACCES"));
    // Special names are no nodes: GET_PERMS there is EINVAL for everyone, as in Xen 4.17.
    assert_eq!(h.op(g, GET_PERMS, 0, &["@introduceDomain"]), err("EINVAL"));
    let tx = h.start(g);
    assert_eq!(h.read(g, tx, "/vm/secret"), err("EACCES"));
    h.end(g, tx, true).unwrap();
    assert_eq!(h.read(c, 0, "/vm/secret"), Ok("key".into()));
}

#[test]
fn a_guest_owns_what_it_creates_in_its_home_and_cannot_give_it_away() {
    let (mut h, c) = Harness::with_dom0();
    h.write(c, 0, "/local/domain/4", "").unwrap();
    h.op(c, SET_PERMS, 0, &["/local/domain/4", "n0", "b4"])
        .unwrap();
    let g = h.domain(4);
    assert_eq!(h.write(g, 0, "data/x", "1"), ok());
    assert_eq!(
        h.op(g, GET_PERMS, 0, &["data/x"]),
        Ok(b"n4\0b4\0".to_vec()),
        "the creator becomes owner, the rest of the list is inherited"
    );
    assert_eq!(h.op(g, SET_PERMS, 0, &["data/x", "n4", "r0"]), ok());
    assert_eq!(h.op(g, SET_PERMS, 0, &["data/x", "b7"]), err("EPERM"));
    let six = ["n4", "r1", "r2", "r3", "r5", "r6"];
    let mut args = vec!["data/x"];
    args.extend(six);
    assert_eq!(h.op(g, SET_PERMS, 0, &args), err("ENOSPC"));
    // Another guest sees nothing of it.
    let other = h.domain(5);
    assert_eq!(h.read(other, 0, "/local/domain/4/data/x"), err("EACCES"));
    assert_eq!(h.read(other, 0, "/local/domain/4/data/none"), err("EACCES"));
}

fn guest_home(h: &mut Harness, domid: u32) -> ConnId {
    let c = h.dom0();
    h.give_home(c, domid);
    h.domain(domid)
}

#[test]
fn node_quota_stops_a_flooding_guest_only() {
    let mut quotas = Quotas::default();
    quotas.nodes_per_domain = 20;
    let mut config = Config::default();
    config.quotas = quotas;
    let mut h = Harness::with_config(config);
    let g = guest_home(&mut h, 3);
    // The home node itself is owned by the guest: 1 of 20.
    let mut created = 0;
    let result = loop {
        match h.write(g, 0, &format!("n{created}"), "") {
            Ok(_) => created += 1,
            Err(e) => break e,
        }
    };
    assert_eq!((result.as_str(), created), ("ENOSPC", 19));
    // Deep creation needing several nodes is refused whole, leaving nothing behind.
    h.op(g, RM, 0, &["n0"]).unwrap();
    assert_eq!(h.write(g, 0, "deep/a/b", ""), err("ENOSPC"));
    assert_eq!(h.read(g, 0, "deep"), err("ENOENT"));
    // In a transaction too.
    let tx = h.start(g);
    h.write(g, tx, "t1", "").unwrap();
    assert_eq!(h.write(g, tx, "t2", ""), err("ENOSPC"));
    h.end(g, tx, false).unwrap();
    // Other domains and dom0 are unaffected.
    let other = guest_home(&mut h, 4);
    assert_eq!(h.write(other, 0, "fine", "1"), ok());
    let c = h.dom0();
    for i in 0..50 {
        h.write(c, 0, &format!("/dom0/{i}"), "").unwrap();
    }
}

#[test]
fn node_size_quota_binds_guests_not_dom0() {
    let mut h = Harness::new();
    let g = guest_home(&mut h, 3);
    assert_eq!(h.write(g, 0, "big", &"x".repeat(3000)), err("ENOSPC"));
    assert_eq!(h.write(g, 0, "ok", &"x".repeat(2000)), ok());
    // Xen's record: 24-byte header + 8 per permission + value must stay below 2048.
    assert_eq!(h.write(g, 0, "edge", &"x".repeat(2015)), ok());
    assert_eq!(h.write(g, 0, "edge", &"x".repeat(2016)), err("ENOSPC"));
    // A new node in between lists the next name: a 2020-byte name is too much for it.
    let long = "n".repeat(2020);
    assert_eq!(h.write(g, 0, &format!("mid/{long}"), ""), err("ENOSPC"));
    // A refused write in a transaction: the commit is refused too (ENOMEM), as in Xen.
    let tx = h.start(g);
    assert_eq!(h.write(g, tx, "edge", &"x".repeat(2016)), err("ENOSPC"));
    assert_eq!(h.end(g, tx, true), err("ENOMEM"));
    let c = h.dom0();
    assert_eq!(h.write(c, 0, "/big", &"x".repeat(4000)), ok());
}

#[test]
fn watch_and_transaction_quotas() {
    let mut h = Harness::new();
    let g = guest_home(&mut h, 3);
    for i in 0..128 {
        assert_eq!(h.op(g, WATCH, 0, &[&format!("w{i}"), "t"]), ok());
    }
    assert_eq!(h.op(g, WATCH, 0, &["w-more", "t"]), err("E2BIG"));
    // The quota is per domain: a second connection of the same guest is refused too.
    let g2 = h.server.connect(h.now, xsio_xenstored::Origin::Domain(3));
    assert_eq!(h.op(g2, WATCH, 0, &["w-more", "t"]), err("E2BIG"));
    for _ in 0..10 {
        h.start(g);
    }
    assert_eq!(h.op(g, TX_START, 0, &[""]), err("ENOSPC"));
    let c = h.dom0();
    for i in 0..200 {
        assert_eq!(h.op(c, WATCH, 0, &[&format!("/w{i}"), "t"]), ok());
    }
    for _ in 0..20 {
        h.start(c);
    }
}

#[test]
fn a_flooding_guest_is_answered_in_slices_of_its_outstanding_limit() {
    let mut h = Harness::new();
    let g = guest_home(&mut h, 3);
    h.server.handle_input(
        h.now,
        g,
        &frames(READ, 50, |_| b"/local/domain/3\0".to_vec()),
    );
    assert_eq!(h.server.queued_replies(g), 20);
    assert!(h.server.buffered_input(g) > 0);
    let mut frames = 0;
    while let Some(out) = h.server.poll_output() {
        if let xsio_xenstored::Output::Transmit { bytes, .. } = out {
            let mut decoder = xsio_xs_wire::FrameDecoder::default();
            decoder.feed(&bytes);
            while decoder.next_frame().unwrap().is_some() {
                frames += 1;
            }
        }
    }
    assert_eq!(frames, 50);
    assert_eq!(h.server.buffered_input(g), 0);
}

#[test]
fn an_oversized_header_closes_only_that_connection() {
    let (mut h, c) = Harness::with_dom0();
    let bad = h.domain(3);
    let header = xsio_xs_wire::Header {
        msg_type: WRITE,
        req_id: 0,
        tx_id: 0,
        len: 4097,
    };
    h.server.handle_input(h.now, bad, &header.to_bytes());
    let closed = closed(&mut h);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].0, bad);
    assert!(matches!(closed[0].1, CloseReason::Protocol(_)));
    assert_eq!(h.write(c, 0, "/still", "fine"), ok());
}

/// Drains the server's output; returns the connections it closed, and why.
fn closed(h: &mut Harness) -> Vec<(ConnId, CloseReason)> {
    let mut closed = Vec::new();
    while let Some(out) = h.server.poll_output() {
        if let xsio_xenstored::Output::Close { conn, reason } = out {
            closed.push((conn, reason));
        }
    }
    closed
}

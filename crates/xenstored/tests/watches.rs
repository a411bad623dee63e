//! Watches: the initial event, recursive matching, removal rules, special paths.

mod common;

use common::*;

#[test]
fn initial_event_follows_the_ack() {
    let mut h = Harness::new();
    let c = h.dom0();
    assert_eq!(h.op(c, WATCH, 0, &["/w", "t1"]), ok());
    assert_eq!(h.take_events(c), vec![ev("/w", "t1")]);
    assert_eq!(h.op(c, WATCH, 0, &["/w", "t1"]), err("EEXIST"));
    assert_eq!(h.op(c, WATCH, 0, &["/w"]), err("EINVAL"));
    assert_eq!(h.op(c, WATCH, 0, &["/w/", "t"]), err("EINVAL"));
}

#[test]
fn recursive_matching_and_one_event_per_watch() {
    let mut h = Harness::new();
    let c = h.dom0();
    let w = h.dom0();
    h.op(w, WATCH, 0, &["/w", "a"]).unwrap();
    h.op(w, WATCH, 0, &["/w/x", "b"]).unwrap();
    h.op(w, WATCH, 0, &["/", "root"]).unwrap();
    h.take_events(w);
    h.write(c, 0, "/w/x/y", "1").unwrap();
    assert_eq!(
        h.take_events(w),
        vec![ev("/w/x/y", "a"), ev("/w/x/y", "b"), ev("/w/x/y", "root")]
    );
    h.write(c, 0, "/wx", "1").unwrap();
    assert_eq!(h.take_events(w), vec![ev("/wx", "root")]);
    // Writing the same value again still fires; MKDIR of an existing node does not.
    h.write(c, 0, "/wx", "1").unwrap();
    h.op(c, MKDIR, 0, &["/wx"]).unwrap();
    assert_eq!(h.take_events(w), vec![ev("/wx", "root")]);
    assert_eq!(h.op(w, UNWATCH, 0, &["/", "root"]), ok());
    assert_eq!(h.op(w, UNWATCH, 0, &["/", "root"]), err("ENOENT"));
    h.write(c, 0, "/wx", "2").unwrap();
    assert_eq!(h.take_events(w), vec![]);
}

#[test]
fn removal_fires_exact_watches_on_descendants() {
    let mut h = Harness::new();
    let c = h.dom0();
    h.write(c, 0, "/r/a/b", "1").unwrap();
    h.write(c, 0, "/r/a/c", "1").unwrap();
    let w = h.dom0();
    h.op(w, WATCH, 0, &["/r", "up"]).unwrap();
    h.op(w, WATCH, 0, &["/r/a/b", "exact"]).unwrap();
    h.op(w, WATCH, 0, &["/r/a/b/never", "below"]).unwrap();
    h.take_events(w);
    h.op(c, RM, 0, &["/r/a"]).unwrap();
    // Descendants first, the removed node last: Xen 4.17's order (peer_xen_xenstored).
    assert_eq!(
        h.take_events(w),
        vec![ev("/r/a/b", "exact"), ev("/r/a", "up")]
    );
}

#[test]
fn relative_watches_report_relative_paths() {
    let mut h = Harness::new();
    let c = h.dom0();
    h.op(c, WATCH, 0, &["rel", "tok"]).unwrap();
    assert_eq!(h.take_events(c), vec![ev("rel", "tok")]);
    h.write(c, 0, "/local/domain/0/rel/x", "1").unwrap();
    assert_eq!(h.take_events(c), vec![ev("rel/x", "tok")]);
    assert_eq!(h.op(c, UNWATCH, 0, &["/local/domain/0/rel", "tok"]), ok());
}

#[test]
fn special_watches_see_domain_introduction_and_release() {
    let mut h = Harness::new();
    let c = h.dom0();
    h.op(c, WATCH, 0, &["@introduceDomain", "in"]).unwrap();
    h.op(c, WATCH, 0, &["@releaseDomain", "out"]).unwrap();
    h.take_events(c);
    h.op(c, INTRODUCE, 0, &["5", "0", "0"]).unwrap();
    assert_eq!(h.take_events(c), vec![ev("@introduceDomain", "in")]);
    let g = h.server.connect(h.now, xsio_xenstored::Origin::Domain(5));
    h.op(g, WATCH, 0, &["@releaseDomain", "guest"]).unwrap();
    h.take_events(g);
    h.op(c, RELEASE, 0, &["5"]).unwrap();
    assert_eq!(h.take_events(c), vec![ev("@releaseDomain", "out")]);
    assert_eq!(
        h.take_events(g),
        vec![],
        "a guest without permission hears nothing"
    );
    assert!(
        !h.server.is_connected(g),
        "released domain's connection is closed"
    );
}

#[test]
fn watch_events_respect_read_permission() {
    let mut h = Harness::new();
    let c = h.dom0();
    h.write(c, 0, "/secret/key", "x").unwrap();
    h.write(c, 0, "/public/key", "x").unwrap();
    h.op(c, SET_PERMS, 0, &["/public/key", "n0", "r3"]).unwrap();
    let g = h.domain(3);
    h.op(g, WATCH, 0, &["/", "all"]).unwrap();
    assert_eq!(h.take_events(g), vec![ev("/", "all")]);
    h.write(c, 0, "/secret/key", "y").unwrap();
    h.write(c, 0, "/public/key", "y").unwrap();
    assert_eq!(h.take_events(g), vec![ev("/public/key", "all")]);
    // A permission change is seen by those who could read before it.
    h.op(c, SET_PERMS, 0, &["/public/key", "n0"]).unwrap();
    assert_eq!(h.take_events(g), vec![ev("/public/key", "all")]);
    h.write(c, 0, "/public/key", "z").unwrap();
    assert_eq!(h.take_events(g), vec![]);
}

#[test]
fn reset_watches_drops_every_watch() {
    let mut h = Harness::new();
    let c = h.dom0();
    h.op(c, WATCH, 0, &["/a", "1"]).unwrap();
    h.op(c, WATCH, 0, &["/b", "2"]).unwrap();
    h.take_events(c);
    h.op(c, RESET_WATCHES, 0, &[""]).unwrap();
    h.write(c, 0, "/a", "x").unwrap();
    assert_eq!(h.take_events(c), vec![]);
}

#[test]
fn a_readable_parent_lets_a_guest_hear_of_unreadable_children() {
    let mut h = Harness::new();
    let c = h.dom0();
    h.write(c, 0, "/dir", "").unwrap();
    h.op(c, SET_PERMS, 0, &["/dir", "n0", "r3"]).unwrap();
    h.write(c, 0, "/dir/child", "").unwrap();
    h.op(c, SET_PERMS, 0, &["/dir/child", "n0"]).unwrap();
    h.write(c, 0, "/dir/child/grandchild", "").unwrap();
    let g = h.domain(3);
    h.op(g, WATCH, 0, &["/dir", "t"]).unwrap();
    h.take_events(g);
    h.write(c, 0, "/dir/child", "changed").unwrap();
    h.write(c, 0, "/dir/child/grandchild", "changed").unwrap();
    assert_eq!(h.take_events(g), vec![ev("/dir/child", "t")]);
    assert_eq!(
        h.read(g, 0, "/dir/child"),
        err("EACCES"),
        "hearing is not reading"
    );
}

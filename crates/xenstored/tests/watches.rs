//! Watches: the initial event, recursive matching, removal rules, special paths.

mod common;

use common::*;

#[test]
fn initial_event_follows_the_ack() {
    let (mut h, c) = Harness::with_dom0();
    assert_eq!(h.op(c, WATCH, 0, &["/w", "t1"]), ok());
    assert_eq!(h.take_events(c), vec![ev("/w", "t1")]);
    assert_eq!(h.op(c, WATCH, 0, &["/w", "t1"]), err("EEXIST"));
    assert_eq!(h.op(c, WATCH, 0, &["/w"]), err("EINVAL"));
    assert_eq!(h.op(c, WATCH, 0, &["/w/", "t"]), err("EINVAL"));
}

#[test]
fn recursive_matching_and_one_event_per_watch() {
    let (mut h, c) = Harness::with_dom0();
    let w = h.dom0();
    for (path, token) in [("/w", "a"), ("/w/x", "b"), ("/", "root")] {
        h.watch(w, path, token);
    }
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
    let (mut h, c) = Harness::with_dom0();
    h.seed(c, &[("/r/a/b", "1"), ("/r/a/c", "1")]);
    let w = h.dom0();
    for (path, token) in [("/r", "up"), ("/r/a/b", "exact"), ("/r/a/b/never", "below")] {
        h.watch(w, path, token);
    }
    h.op(c, RM, 0, &["/r/a"]).unwrap();
    // Descendants first, the removed node last: Xen 4.17's order (peer_xen_xenstored).
    assert_eq!(
        h.take_events(w),
        vec![ev("/r/a/b", "exact"), ev("/r/a", "up")]
    );
}

#[test]
fn relative_watches_report_relative_paths() {
    let (mut h, c) = Harness::with_dom0();
    h.op(c, WATCH, 0, &["rel", "tok"]).unwrap();
    assert_eq!(h.take_events(c), vec![ev("rel", "tok")]);
    h.write(c, 0, "/local/domain/0/rel/x", "1").unwrap();
    assert_eq!(h.take_events(c), vec![ev("rel/x", "tok")]);
    assert_eq!(h.op(c, UNWATCH, 0, &["/local/domain/0/rel", "tok"]), ok());
}

#[test]
fn special_watches_see_domain_introduction_and_release() {
    let (mut h, c) = Harness::with_dom0();
    h.watch(c, "@introduceDomain", "in");
    h.watch(c, "@releaseDomain", "out");
    h.op(c, INTRODUCE, 0, &["5", "0", "0"]).unwrap();
    assert_eq!(h.take_events(c), vec![ev("@introduceDomain", "in")]);
    let g = h.server.connect(h.now, xsio_xenstored::Origin::Domain(5));
    h.watch(g, "@releaseDomain", "guest");
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
    let (mut h, c) = Harness::with_dom0();
    h.seed(c, &[("/secret/key", "x"), ("/public/key", "x")]);
    h.op(c, SET_PERMS, 0, &["/public/key", "n0", "r3"]).unwrap();
    let g = h.domain(3);
    h.watch(g, "/", "all");
    h.seed(c, &[("/secret/key", "y"), ("/public/key", "y")]);
    assert_eq!(h.take_events(g), vec![ev("/public/key", "all")]);
    // A permission change is seen by those who could read before it.
    h.op(c, SET_PERMS, 0, &["/public/key", "n0"]).unwrap();
    assert_eq!(h.take_events(g), vec![ev("/public/key", "all")]);
    h.write(c, 0, "/public/key", "z").unwrap();
    assert_eq!(h.take_events(g), vec![]);
}

#[test]
fn reset_watches_drops_every_watch() {
    let (mut h, c) = Harness::with_dom0();
    h.watch(c, "/a", "1");
    h.watch(c, "/b", "2");
    h.op(c, RESET_WATCHES, 0, &[""]).unwrap();
    h.write(c, 0, "/a", "x").unwrap();
    assert_eq!(h.take_events(c), vec![]);
}

#[test]
fn a_readable_parent_lets_a_guest_hear_of_unreadable_children() {
    let (mut h, c) = Harness::with_dom0();
    h.seed(c, &[("/dir", "")]);
    h.op(c, SET_PERMS, 0, &["/dir", "n0", "r3"]).unwrap();
    h.seed(c, &[("/dir/child", "")]);
    h.op(c, SET_PERMS, 0, &["/dir/child", "n0"]).unwrap();
    h.seed(c, &[("/dir/child/grandchild", "")]);
    let g = h.domain(3);
    h.watch(g, "/dir", "t");
    h.seed(
        c,
        &[
            ("/dir/child", "changed"),
            ("/dir/child/grandchild", "changed"),
        ],
    );
    assert_eq!(h.take_events(g), vec![ev("/dir/child", "t")]);
    assert_eq!(
        h.read(g, 0, "/dir/child"),
        err("EACCES"),
        "hearing is not reading"
    );
}

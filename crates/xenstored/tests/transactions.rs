//! Transactions: snapshot isolation and the C daemon's conflict rule.

mod common;

use common::*;

/// A server where `/t` is "a", and a transaction of dom0's that has read it.
fn reading_t() -> (Harness, xsio_xenstored::ConnId, u32) {
    let (mut h, c) = Harness::with_dom0();
    h.seed(c, &[("/t", "a")]);
    let tx = h.start(c);
    assert_eq!(h.read(c, tx, "/t"), Ok("a".into()));
    (h, c, tx)
}

#[test]
fn read_modify_write_is_isolated_until_commit() {
    let (mut h, c, tx) = reading_t();
    h.write(c, tx, "/t", "b").unwrap();
    assert_eq!(h.read(c, tx, "/t"), Ok("b".into()));
    assert_eq!(
        h.read(c, 0, "/t"),
        Ok("a".into()),
        "outside sees no uncommitted write"
    );
    assert_eq!(h.end(c, tx, true), ok());
    assert_eq!(h.read(c, 0, "/t"), Ok("b".into()));
    // After END the id is gone.
    assert_eq!(h.read(c, tx, "/t"), err("ENOENT"));
}

#[test]
fn abort_discards_writes() {
    let (mut h, c) = Harness::with_dom0();
    h.seed(c, &[("/t", "a")]);
    let tx = h.start(c);
    h.write(c, tx, "/t", "b").unwrap();
    h.write(c, tx, "/t/new/deep", "x").unwrap();
    assert_eq!(h.end(c, tx, false), ok());
    assert_eq!(h.read(c, 0, "/t"), Ok("a".into()));
    assert_eq!(h.read(c, 0, "/t/new"), err("ENOENT"));
}

#[test]
fn ta_err_conflict_gives_eagain_and_applies_nothing() {
    // test-xenstore's "ta err": tx read; outside write; tx still sees the old value.
    let (mut h, c, tx) = reading_t();
    h.write(c, 0, "/t", "b").unwrap();
    assert_eq!(h.read(c, tx, "/t"), Ok("a".into()));
    h.write(c, tx, "/t", "c").unwrap();
    assert_eq!(h.read(c, tx, "/t"), Ok("c".into()));
    assert_eq!(h.end(c, tx, true), err("EAGAIN"));
    assert_eq!(h.read(c, 0, "/t"), Ok("b".into()));
}

#[test]
fn a_lookup_that_found_nothing_conflicts_with_a_later_create() {
    let (mut h, c) = Harness::with_dom0();
    h.seed(c, &[("/t", "")]);
    let tx = h.start(c);
    assert_eq!(h.read(c, tx, "/t/flag"), err("ENOENT"));
    h.write(c, tx, "/t/other", "1").unwrap();
    h.write(c, 0, "/t/flag", "set").unwrap();
    assert_eq!(h.end(c, tx, true), err("EAGAIN"));
    assert_eq!(h.read(c, 0, "/t/other"), err("ENOENT"));
}

#[test]
fn unrelated_changes_do_not_conflict() {
    let (mut h, c) = Harness::with_dom0();
    h.seed(c, &[("/x/a", "1"), ("/y/b", "2")]);
    let tx = h.start(c);
    assert_eq!(h.read(c, tx, "/x/a"), Ok("1".into()));
    h.write(c, tx, "/x/a", "3").unwrap();
    h.seed(c, &[("/y/b", "4"), ("/y/c", "5")]);
    assert_eq!(h.end(c, tx, true), ok());
    assert_eq!(h.read(c, 0, "/x/a"), Ok("3".into()));
    assert_eq!(h.read(c, 0, "/y/c"), Ok("5".into()));
}

#[test]
fn empty_transactions_always_commit() {
    let (mut h, c) = Harness::with_dom0();
    let tx = h.start(c);
    h.write(c, 0, "/busy", "x").unwrap();
    assert_eq!(h.end(c, tx, true), ok());
}

#[test]
fn rm_inside_a_transaction_hides_the_subtree() {
    let (mut h, c) = Harness::with_dom0();
    h.seed(c, &[("/d/a/b", "1")]);
    let tx = h.start(c);
    h.op(c, RM, tx, &["/d/a"]).unwrap();
    assert_eq!(h.read(c, tx, "/d/a/b"), err("ENOENT"));
    assert_eq!(h.dir(c, tx, "/d"), Ok(vec![]));
    assert_eq!(h.read(c, 0, "/d/a/b"), Ok("1".into()));
    assert_eq!(h.end(c, tx, true), ok());
    assert_eq!(h.read(c, 0, "/d/a"), err("ENOENT"));
    assert_eq!(h.dir(c, 0, "/d"), Ok(vec![]));
}

#[test]
fn watch_events_fire_on_commit_only() {
    let (mut h, c) = Harness::with_dom0();
    let w = h.dom0();
    h.watch(w, "/e", "tok");
    let tx = h.start(c);
    h.write(c, tx, "/e/1", "a").unwrap();
    h.write(c, tx, "/e/2", "b").unwrap();
    h.write(c, tx, "/e/1", "c").unwrap();
    assert_eq!(h.take_events(w), vec![]);
    h.end(c, tx, true).unwrap();
    assert_eq!(h.take_events(w), vec![ev("/e/1", "tok"), ev("/e/2", "tok")]);
    let tx = h.start(c);
    h.write(c, tx, "/e/3", "a").unwrap();
    h.end(c, tx, false).unwrap();
    assert_eq!(h.take_events(w), vec![]);
}

#[test]
fn transaction_ids_and_errors() {
    let (mut h, c) = Harness::with_dom0();
    let other = h.dom0();
    let t1 = h.start(c);
    let t2 = h.start(c);
    assert_ne!(t1, t2);
    assert_eq!(h.op(c, TX_START, t1, &[""]), err("EBUSY"));
    assert_eq!(h.op(c, TX_START, 999, &[""]), err("ENOENT"));
    assert_eq!(
        h.read(other, t1, "/"),
        err("ENOENT"),
        "ids are per connection"
    );
    assert_eq!(h.op(c, TX_END, 0, &["T"]), err("ENOENT"));
    assert_eq!(h.op(c, TX_END, t1, &["X"]), err("EINVAL"));
    // RESET_WATCHES discards open transactions.
    assert_eq!(h.op(c, RESET_WATCHES, 0, &[""]), ok());
    assert_eq!(h.end(c, t2, true), err("ENOENT"));
}

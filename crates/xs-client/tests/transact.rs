//! Transactions: `transact` retries `EAGAIN` up to its limit, aborts on other errors, and
//! the helpers send the right requests in one transaction.

mod common;

use bytes::Bytes;
use common::Harness;
use xsio_core::OpId;
use xsio_xs_client::{Config, DeviceArea, Error, Response, TxId, TxOp};
use xsio_xs_wire::{Access, ErrorKind, Packet, Perm, Reply, Request};

fn config(attempts: u32) -> Config {
    let mut c = Config::default();
    c.transact_attempts = attempts;
    c
}

/// The client commits transaction `tx`, and the daemon accepts.
fn commit(h: &mut Harness, tx: u32) {
    let end = end(h, true, tx);
    h.reply(&end, Reply::TransactionEnd);
}

/// The write of the transactions here: `/b` = 1.
fn write_b() -> TxOp {
    TxOp::Write("/b".into(), "1".into())
}

/// A client of `attempts` transaction attempts, transacting `ops`.
fn transacting(attempts: u32, ops: Vec<TxOp>) -> (Harness, OpId) {
    let mut h = Harness::new(config(attempts));
    let op = h.client.transact(h.now, ops);
    (h, op)
}

/// The client starts a transaction (outside any); the daemon gives it id `tx`.
fn start(h: &mut Harness, tx: u32) {
    let start = h.expect_request(Request::TransactionStart);
    assert_eq!(start.tx_id, 0);
    h.reply(&start, Reply::TransactionStart(tx));
}

/// The client ends transaction `tx`, committing or not; returns that request.
fn end(h: &mut Harness, commit: bool, tx: u32) -> Packet<Request> {
    let end = h.next_request();
    assert_eq!(
        (end.body.clone(), end.tx_id),
        (Request::TransactionEnd { commit }, tx)
    );
    end
}

#[test]
fn conflicts_are_retried_then_commit() {
    let (mut h, op) = transacting(5, vec![TxOp::Read("/a".into()), write_b()]);
    for attempt in 0..3u32 {
        start(&mut h, 10 + attempt);
        let read = h.next_request();
        let write = h.next_request();
        assert_eq!((read.tx_id, write.tx_id), (10 + attempt, 10 + attempt));
        assert_eq!(read.body, Request::Read { path: "/a".into() });
        h.reply(&read, Reply::Read(Bytes::from(format!("v{attempt}"))));
        assert!(h.inbox.is_empty(), "commit waits for every op");
        h.reply(&write, Reply::Write);
        let end = end(&mut h, true, 10 + attempt);
        if attempt < 2 {
            h.reply(&end, Reply::Error(ErrorKind::Eagain));
            assert!(h.seen.done.is_empty());
        } else {
            h.reply(&end, Reply::TransactionEnd);
        }
    }
    assert_eq!(
        h.result_of(op),
        &Ok(Response::List(vec![
            Response::Value("v2".into()),
            Response::Unit
        ]))
    );
}

#[test]
fn the_limit_ends_in_a_typed_error() {
    let (mut h, op) = transacting(3, vec![write_b()]);
    let mut starts = 0;
    while h.seen.done.is_empty() {
        let req = h.next_request();
        let body = match req.body {
            Request::TransactionStart => {
                starts += 1;
                Reply::TransactionStart(starts)
            }
            Request::TransactionEnd { commit: true } => Reply::Error(ErrorKind::Eagain),
            _ => Reply::Write,
        };
        h.reply(&req, body);
    }
    assert_eq!(starts, 3);
    assert_eq!(h.result_of(op), &Err(Error::Conflict { attempts: 3 }));
    assert!(h.inbox.is_empty(), "nothing is sent after giving up");
    assert_eq!(h.client.ops_in_flight(), 0);
}

#[test]
fn an_op_error_aborts_and_fails_with_it() {
    let (mut h, op) = transacting(3, vec![TxOp::Read("/missing".into()), write_b()]);
    start(&mut h, 4);
    h.answer(Reply::Error(ErrorKind::Enoent));
    h.answer(Reply::Write);
    let end = end(&mut h, false, 4);
    assert!(
        h.seen.done.is_empty(),
        "done only after the abort is answered"
    );
    h.reply(&end, Reply::TransactionEnd);
    assert_eq!(h.result_of(op), &Err(Error::Xs(ErrorKind::Enoent)));
}

#[test]
fn an_op_conflict_aborts_and_retries() {
    let (mut h, op) = transacting(3, vec![write_b()]);
    start(&mut h, 1);
    h.answer(Reply::Error(ErrorKind::Eagain));
    let abort = end(&mut h, false, 1);
    h.reply(&abort, Reply::TransactionEnd);
    start(&mut h, 2);
    h.answer(Reply::Write);
    commit(&mut h, 2);
    assert_eq!(h.result_of(op), &Ok(Response::List(vec![Response::Unit])));
}

#[test]
fn an_empty_transaction_commits() {
    let mut h = Harness::default();
    let op = h.client.transact(h.now, vec![]);
    start(&mut h, 9);
    commit(&mut h, 9);
    assert_eq!(h.result_of(op), &Ok(Response::List(vec![])));
}

#[test]
fn write_all_writes_every_key_under_the_directory() {
    let mut h = Harness::default();
    let op = h.client.write_all(
        h.now,
        "/local/domain/0/backend/vbd/5/51712",
        &[("state", "1".into()), ("mode", "w".into())],
    );
    start(&mut h, 2);
    let a = h.expect_request(Request::Write {
        path: "/local/domain/0/backend/vbd/5/51712/state".into(),
        value: "1".into(),
    });
    let b = h.expect_request(Request::Write {
        path: "/local/domain/0/backend/vbd/5/51712/mode".into(),
        value: "w".into(),
    });
    h.reply(&a, Reply::Write);
    h.reply(&b, Reply::Write);
    commit(&mut h, 2);
    assert!(h.result_of(op).is_ok());
}

#[test]
fn create_device_area_sets_crossed_permissions_in_one_transaction() {
    let mut h = Harness::default();
    let area = DeviceArea {
        frontend_path: "/local/domain/5/device/vbd/51712".into(),
        frontend_domid: 5,
        backend_path: "/local/domain/0/backend/vbd/5/51712".into(),
        backend_domid: 0,
        frontend_keys: vec![("backend-id".into(), "0".into())],
        backend_keys: vec![("frontend-id".into(), "5".into())],
    };
    let op = h.client.create_device_area(h.now, &area);
    start(&mut h, 3);
    let mut bodies = Vec::new();
    for _ in 0..6 {
        let req = h.next_request();
        assert_eq!(req.tx_id, 3);
        bodies.push(req.body.clone());
        let reply = match req.body {
            Request::Mkdir { .. } => Reply::Mkdir,
            Request::SetPerms { .. } => Reply::SetPerms,
            _ => Reply::Write,
        };
        h.reply(&req, reply);
    }
    assert_eq!(
        bodies,
        vec![
            Request::Mkdir {
                path: area.frontend_path.clone()
            },
            Request::SetPerms {
                path: area.frontend_path.clone(),
                perms: vec![Perm::new(Access::None, 5), Perm::new(Access::Read, 0)]
            },
            Request::Mkdir {
                path: area.backend_path.clone()
            },
            Request::SetPerms {
                path: area.backend_path.clone(),
                perms: vec![Perm::new(Access::None, 0), Perm::new(Access::Read, 5)]
            },
            Request::Write {
                path: format!("{}/backend-id", area.frontend_path),
                value: "0".into()
            },
            Request::Write {
                path: format!("{}/frontend-id", area.backend_path),
                value: "5".into()
            },
        ]
    );
    commit(&mut h, 3);
    assert!(h.result_of(op).is_ok());
}

#[test]
fn manual_transactions_carry_their_id() {
    let mut h = Harness::default();
    let started = h.client.transaction_start(h.now);
    start(&mut h, 77);
    assert_eq!(h.result_of(started), &Ok(Response::Tx(TxId(77))));
    let read = h.client.read(h.now, Some(TxId(77)), "/a");
    let req = h.next_request();
    assert_eq!(req.tx_id, 77);
    h.reply(&req, Reply::Read("x".into()));
    assert_eq!(h.result_of(read), &Ok(Response::Value("x".into())));
    let ended = h.client.transaction_end(h.now, TxId(77), true);
    let req = end(&mut h, true, 77);
    h.reply(&req, Reply::Error(ErrorKind::Eagain));
    assert_eq!(h.result_of(ended), &Err(Error::Xs(ErrorKind::Eagain)));
}

#[test]
fn a_timed_out_transaction_is_aborted_on_the_daemon() {
    let mut h = Harness::default();
    let op = h.client.transact(h.now, vec![write_b()]);
    start(&mut h, 5);
    let _write = h.next_request();
    h.advance(std::time::Duration::from_secs(61));
    assert_eq!(h.result_of(op), &Err(Error::Timeout));
    let abort = end(&mut h, false, 5);
    // The late replies are ignored.
    h.reply(&abort, Reply::TransactionEnd);
    assert_eq!(h.seen.done.len(), 1);
}

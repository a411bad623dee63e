//! Several transactions on one connection, in flight together, removing overlapping parts
//! of a tree (what a toolstack does when it destroys a guest's devices at once): whatever
//! order they commit in, what one of them removed stays removed.

use std::time::Instant;

use xsio_harness::{Harness, Owner, Record, XenstoredStore};
use xsio_ops::{Op, Reply, Txn, TxnOp, XsOp};
use xsio_xenbus::StateWaiter;

fn txn(guard: Option<&str>, ops: Vec<TxnOp>) -> Op {
    Op::Xs(XsOp::Transaction(Txn {
        only_if_exists: guard.map(str::to_owned),
        ops,
    }))
}

fn rm(path: &str) -> TxnOp {
    TxnOp::Rm { path: path.into() }
}

#[test]
fn a_parent_removed_by_one_transaction_stays_removed() {
    #[allow(clippy::disallowed_methods)]
    let epoch = Instant::now(); // tidy:allow: a test epoch
    let mut store = XenstoredStore::new(epoch);
    let mut world: Harness<StateWaiter> = Harness::new(epoch);
    store.server().introduce_domain(epoch, 9);
    let dom0 = store.connect_dom0(&mut world);
    let mut create = Vec::new();
    for dev in ["1", "2", "3", "4"] {
        create.push(TxnOp::write(format!("/b/9/{dev}/state"), "6"));
        create.push(TxnOp::write(format!("/f/9/dev/{dev}/state"), "6"));
        // The guest owns its device's directory, as the frontend area is owned.
        for node in [format!("/f/9/dev/{dev}"), format!("/f/9/dev/{dev}/state")] {
            create.push(TxnOp::SetPerms {
                path: node,
                perms: vec![
                    xsio_ops::Perm::new(xsio_ops::Access::None, 9),
                    xsio_ops::Perm::new(xsio_ops::Access::Read, 0),
                ],
            });
        }
    }
    world.submit(dom0, txn(None, create));
    world.settle(&mut store).unwrap();
    // Three remove their own areas; the last prunes both parents.
    for dev in ["1", "2", "3"] {
        world.submit(
            dom0,
            txn(
                Some(&format!("/b/9/{dev}")),
                vec![rm(&format!("/b/9/{dev}")), rm(&format!("/f/9/dev/{dev}"))],
            ),
        );
    }
    world.submit(dom0, txn(Some("/b/9/4"), vec![rm("/b/9"), rm("/f/9")]));
    world.settle(&mut store).unwrap();
    let mut results = Vec::new();
    for record in world.take_log() {
        if let Record::Reply {
            owner: Owner::Caller,
            result,
            ..
        } = record
        {
            results.push(result);
        }
    }
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for path in [
        "/b/9",
        "/f/9",
        "/f/9/dev/4",
        "/f/9/dev/4/state",
        "/b/9/4/state",
    ] {
        world.submit(dom0, Op::Xs(XsOp::Read { path: path.into() }));
    }
    world.settle(&mut store).unwrap();
    let reads: Vec<_> = world
        .take_log()
        .into_iter()
        .filter_map(|r| match r {
            Record::Reply {
                op: Op::Xs(XsOp::Read { path }),
                result,
                ..
            } => Some((path, result)),
            _ => None,
        })
        .collect();
    for (path, result) in &reads {
        assert_eq!(
            result,
            &Ok(Reply::Value(None)),
            "{path} is still there: {reads:?}"
        );
    }
    store.server().check_invariants().unwrap();
}

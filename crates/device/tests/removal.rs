//! The removal table (design note, section 4), one test per row, through the harness
//! with the real xenstored core, a simulated host and deterministic time. Rows are named
//! as in the note (R_START, R_DOMINFO, ...); the fixes of section 8 are named "fix".

mod common;

use std::time::Duration;

use common::*;
use xsio_device::{
    BackendEnd, Completion, Config, Device, DeviceEvent, DeviceOp, Force, Removal, RemoveError,
    Removed, TxnKind, WaitFor,
};
use xsio_ops::{DomainState, HostOp, Op, OpErrorKind, ProcessExit, XsOp};
use xsio_xenbus::XenbusState;

const SCRIPT: &str = "/etc/xen/scripts/block";

fn remove(world: &mut World, device: &Device, force: Force) -> xsio_harness::ActorId {
    remove_with(world, Config::default(), device, force)
}

fn remove_with(
    world: &mut World,
    config: Config,
    device: &Device,
    force: Force,
) -> xsio_harness::ActorId {
    let op = DeviceOp::remove(config, device.clone(), force, world.h.now());
    world.start(op)
}

fn removal(world: &World, id: xsio_harness::ActorId) -> Removal {
    match world.completion(id) {
        Some(Completion::Removed(removal)) => removal,
        other => panic!("not a completed removal: {other:?}"),
    }
}

fn ok(backend: BackendEnd, escalated: bool, scripts: u32) -> Result<Removed, RemoveError> {
    Ok(Removed {
        backend,
        escalated,
        scripts,
    })
}

/// The normal case in full: guest running, blkback closes on request, frontend follows,
/// the script runs, everything is pruned (parents left empty included).
#[test]
fn normal_removal_closes_runs_the_script_and_prunes_everything() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "4", "4", Some(SCRIPT));
    w.write("/local/domain/0/name", "Domain-0"); // the backend domain's home keeps a value
    let id = remove(&mut w, &d, Force::Auto);

    // R_TXN_READ present: online=0 and state=5 in one transaction.
    assert_eq!(w.read(&d.backend_key("online")).as_deref(), Some("0"));
    assert_eq!(w.read(&d.backend_key("state")).as_deref(), Some("5"));
    assert!(w.completion(id).is_none(), "R_WAIT6: waiting");

    // The frontend closes, then the backend.
    w.advance(Duration::from_millis(100));
    w.write(&d.frontend_key("state"), "6");
    w.write(&d.backend_key("state"), "6");
    w.drive();

    let r = removal(&w, id);
    assert_eq!(r.result, ok(BackendEnd::Closed, false, 1));
    assert!(r.pruned);
    let (argv, env) = &w.host().spawned[0];
    assert_eq!(argv, &[SCRIPT, "remove"]);
    assert!(env.contains(&("XENBUS_PATH".into(), "backend/vbd/1/51712".into())));
    // Pruned: the three areas and every ancestor left empty, down to the domain homes.
    assert_eq!(w.areas_left(&d), Vec::<String>::new());
    assert_eq!(w.read("/local/domain/1/device"), None);
    assert_eq!(w.read("/local/domain/0/backend"), None);
    assert_eq!(w.read("/libxl/1"), None);
    assert!(w.read("/libxl").is_some(), "the toolstack root stays");
    assert!(
        w.read("/local/domain/1").is_some(),
        "the guest's home stays"
    );
}

#[test]
fn r_start_in_dom0_asks_domain_info() {
    let mut w = World::new();
    w.seed(&vbd(), "4", "4", None);
    remove(&mut w, &vbd(), Force::Auto);
    assert_eq!(
        w.requests.first(),
        Some(&Op::Host(HostOp::DomainInfo { domid: 1 }))
    );
}

#[test]
fn r_start_in_a_driver_domain_goes_straight_to_the_transaction_and_never_bodges() {
    let mut w = World::new();
    // A QEMU backend in driver domain 7, a paused guest, QEMU gone: dom0 would bodge.
    let d = Device::new("vbd", 1, 51712).with_backend(7, "qdisk");
    w.seed(&d, "4", "4", None);
    w.host().guest = Some(DomainState::Paused);
    w.host().dm_alive = Some(false);
    let config = Config {
        my_domid: 7,
        ..Config::default()
    };
    let id = remove_with(&mut w, config, &d, Force::Auto);
    assert_eq!(w.host().domain_infos, 0);
    assert_eq!(w.host().dm_queries, 0);
    assert!(matches!(w.requests[0], Op::Xs(XsOp::TxnStart)));
    assert_eq!(w.read(&d.backend_key("state")).as_deref(), Some("5"));
    w.write(&d.frontend_key("state"), "6");
    w.write(&d.backend_key("state"), "6");
    w.drive();
    let r = removal(&w, id);
    assert_eq!(r.result, ok(BackendEnd::Closed, false, 0));
    assert_eq!(w.saw(|e| matches!(e, DeviceEvent::Bodged { .. })), 0);
    // A driver domain removes only its own backend area (frontend and entry are dom0's).
    assert_eq!(w.read(&d.backend_path()), None);
    assert!(w.read(&d.frontend_path()).is_some());
}

#[test]
fn r_dominfo_error_fails_and_leaves_the_areas_unless_forced() {
    for (force, pruned) in [(Force::Auto, false), (Force::Off, false), (Force::On, true)] {
        let mut w = World::new();
        w.seed(&vbd(), "4", "4", None);
        w.host().guest = None;
        let id = remove(&mut w, &vbd(), force);
        let r = removal(&w, id);
        assert!(
            matches!(r.result, Err(RemoveError::DomainInfo(_))),
            "{force}: {r:?}"
        );
        assert_eq!(r.pruned, pruned, "{force}");
        assert_eq!(w.areas_left(&vbd()).is_empty(), pruned, "{force}");
        if !pruned {
            assert_eq!(w.read(&vbd().backend_key("state")).as_deref(), Some("4"));
        }
    }
}

/// Row "QEMU_BACKEND and guest paused or dying or shutdown": when the host cannot tell
/// whether the device model lives, libxl's rule: a blind 2 s, then the bodge.
#[test]
fn r_dominfo_qemu_backend_with_a_stopped_guest_and_unknown_device_model_bodges_after_2s() {
    for guest in [
        DomainState::Paused,
        DomainState::Dying,
        DomainState::Shutdown,
        DomainState::Dead,
        DomainState::Absent,
    ] {
        let mut w = World::new();
        let d = qdisk();
        w.seed(&d, "4", "4", None);
        w.host().guest = Some(guest);
        w.host().dm_alive = None;
        let id = remove(&mut w, &d, Force::Auto);
        assert_eq!(
            w.saw(|e| *e == DeviceEvent::BodgeWait(Duration::from_secs(2))),
            1
        );
        assert_eq!(w.read(&d.backend_key("state")).as_deref(), Some("4"));
        w.advance(Duration::from_millis(1900));
        assert_eq!(
            w.read(&d.backend_key("state")).as_deref(),
            Some("4"),
            "{guest:?}: blind"
        );
        w.advance(Duration::from_millis(200));
        let r = removal(&w, id);
        assert_eq!(r.result, ok(BackendEnd::Bodged, false, 0), "{guest:?}");
        assert!(r.pruned);
        assert_eq!(w.saw(|e| *e == DeviceEvent::Bodged { wrote: true }), 1);
        // No removal request was written: only the bodge's state 6.
        assert_eq!(
            w.asked(|op| is_txn_write(op, &d.backend_key("state"), "5")),
            0
        );
        assert_eq!(
            w.asked(|op| is_txn_write(op, &d.backend_key("state"), "6")),
            1
        );
        assert!(w.areas_left(&d).is_empty());
    }
}

/// Fix: the device model's own liveness decides. Gone: the toolstack closes the backend at
/// once (nothing else ever will), with a running guest too.
#[test]
fn fix_a_dead_device_model_is_bodged_at_once() {
    for guest in [DomainState::Paused, DomainState::Running] {
        let mut w = World::new();
        let d = qdisk();
        w.seed(&d, "4", "6", None);
        w.host().guest = Some(guest);
        w.host().dm_alive = Some(false);
        let id = remove(&mut w, &d, Force::Auto);
        let r = removal(&w, id);
        assert_eq!(r.result, ok(BackendEnd::Bodged, false, 0), "{guest:?}");
        assert!(w.elapsed() < Duration::from_millis(100), "no blind wait");
        assert_eq!(w.saw(|e| matches!(e, DeviceEvent::BodgeWait(_))), 0);
    }
}

/// Fix: a user-paused guest with a live QEMU is not closed blind: the normal request, QEMU
/// answers it.
#[test]
fn fix_a_paused_guest_with_a_live_device_model_is_not_closed_blind() {
    let mut w = World::new();
    let d = qdisk();
    w.seed(&d, "4", "4", None);
    w.host().guest = Some(DomainState::Paused);
    w.host().dm_alive = Some(true);
    let id = remove(&mut w, &d, Force::Auto);
    w.advance(Duration::from_secs(3));
    assert_eq!(w.saw(|e| matches!(e, DeviceEvent::Bodged { .. })), 0);
    assert_eq!(w.read(&d.backend_key("state")).as_deref(), Some("5"));
    // QEMU closes its backend (the frontend of a paused guest is left as it is).
    w.write(&d.backend_key("state"), "6");
    w.drive();
    let r = removal(&w, id);
    assert_eq!(r.result, ok(BackendEnd::Closed, false, 0));
    assert!(r.pruned);
}

#[test]
fn r_dominfo_otherwise_goes_to_the_transaction() {
    // Not QEMU: a paused guest's blkback disk is never bodged, and the device model is
    // not even asked about.
    let mut w = World::new();
    w.seed(&vbd(), "4", "4", None);
    w.host().guest = Some(DomainState::Paused);
    remove(&mut w, &vbd(), Force::Auto);
    assert_eq!(w.host().dm_queries, 0);
    assert_eq!(w.read(&vbd().backend_key("state")).as_deref(), Some("5"));
}

#[test]
fn r_txn_with_force_on_removes_the_frontend_in_the_same_transaction() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "4", "4", None);
    let id = remove(&mut w, &d, Force::On);
    assert_eq!(w.read(&d.frontend_path()), None);
    assert_eq!(w.read("/local/domain/1/device"), None, "empty parents too");
    assert_eq!(w.read(&d.backend_key("state")).as_deref(), Some("5"));
    // One transaction: the removal of the frontend precedes its only commit.
    let rm = w
        .requests
        .iter()
        .position(|op| is_txn_rm(op, &d.frontend_path()));
    let commit = w.requests.iter().position(is_commit);
    assert!(rm.is_some() && rm < commit, "{:?}", w.requests);
    // The backend sees its frontend vanish and closes; no frontend wait with force.
    w.write(&d.backend_key("state"), "6");
    w.drive();
    assert_eq!(removal(&w, id).result, ok(BackendEnd::Closed, false, 0));
    assert_eq!(
        w.saw(|e| *e == DeviceEvent::Waiting(WaitFor::FrontendClosed)),
        0
    );
}

#[test]
fn r_txn_read_state_absent_is_a_clean_end_with_the_areas_pruned() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "4", "4", None);
    w.rm(&d.backend_key("state"));
    let id = remove(&mut w, &d, Force::Off);
    let r = removal(&w, id);
    assert_eq!(r.result, ok(BackendEnd::Gone, false, 0));
    assert!(r.pruned);
    assert!(w.areas_left(&d).is_empty());
    // The transaction was aborted, not committed with nothing in it.
    assert_eq!(w.asked(is_commit), 1, "only the prune commits");
    assert_eq!(
        w.asked(|op| matches!(op, Op::Xs(XsOp::TxnEnd { commit: false, .. }))),
        1
    );
}

#[test]
fn r_txn_read_error_aborts_and_fails() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "4", "4", None);
    w.faults().add(1, OpErrorKind::Access, |op| {
        matches!(op, Op::Xs(XsOp::TxnRead { .. }))
    });
    let id = remove(&mut w, &d, Force::Auto);
    let r = removal(&w, id);
    assert!(
        matches!(&r.result, Err(RemoveError::Xenstore { error, .. }) if error.kind == OpErrorKind::Access),
        "{r:?}"
    );
    assert!(!r.pruned);
    assert_eq!(w.read(&d.backend_key("state")).as_deref(), Some("4"));
    assert_eq!(
        w.asked(|op| matches!(op, Op::Xs(XsOp::TxnEnd { commit: false, .. }))),
        1,
        "D4: the transaction was ended"
    );
}

/// D5: a backend already at 6 gets `online`=0, never Closing written over its Closed.
#[test]
fn r_txn_read_present_never_writes_closing_over_closed() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "6", "6", Some(SCRIPT));
    let id = remove(&mut w, &d, Force::Auto);
    assert_eq!(
        w.asked(|op| is_txn_write(op, &d.backend_key("state"), "5")),
        0
    );
    assert_eq!(
        w.asked(|op| is_txn_write(op, &d.backend_key("online"), "0")),
        1
    );
    // The watch fires at registration, reads 6: no waiting for a state already reached.
    w.drive();
    let r = removal(&w, id);
    assert_eq!(r.result, ok(BackendEnd::Closed, false, 1));
    assert_eq!(
        w.saw(|e| *e
            == DeviceEvent::RemovalRequested {
                backend: XenbusState::Closed,
                force: Force::Auto
            }),
        1
    );
}

/// Fix: conflicts are retried from fresh reads, but not for ever.
#[test]
fn r_commit_conflict_starts_again_and_is_bounded() {
    // Below the limit: the transaction is redone (fresh read each time) and succeeds.
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "4", "6", None);
    w.faults().add(3, OpErrorKind::Conflict, is_commit);
    let id = remove(&mut w, &d, Force::Auto);
    let txn_reads = |op: &Op| matches!(op, Op::Xs(XsOp::TxnRead { path, .. }) if *path == d.backend_key("state"));
    assert_eq!(w.asked(txn_reads), 4, "a fresh read per attempt");
    assert_eq!(w.saw(|e| matches!(e, DeviceEvent::Conflict { .. })), 3);
    w.write(&d.backend_key("state"), "6");
    w.drive();
    assert!(removal(&w, id).result.is_ok());

    // At the limit: a typed error, after exactly `transaction_attempts` commits.
    let mut w = World::new();
    w.seed(&d, "4", "4", None);
    w.faults().add(usize::MAX, OpErrorKind::Conflict, is_commit);
    let config = Config {
        transaction_attempts: 5,
        ..Config::default()
    };
    let id = remove_with(&mut w, config, &d, Force::Auto);
    let r = removal(&w, id);
    assert_eq!(
        r.result,
        Err(RemoveError::Conflicts {
            txn: TxnKind::RemovalRequest,
            attempts: 5
        })
    );
    assert_eq!(w.asked(is_commit), 5);
    assert!(!r.pruned, "AUTO leaves the areas after an error");
}

#[test]
fn r_commit_error_fails() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "4", "4", None);
    w.faults().add(1, OpErrorKind::Quota, is_commit);
    let id = remove(&mut w, &d, Force::Off);
    let r = removal(&w, id);
    assert!(
        matches!(&r.result, Err(RemoveError::Xenstore { error, .. }) if error.kind == OpErrorKind::Quota)
    );
    assert!(!r.pruned);
}

#[test]
fn r_commit_ok_arms_the_destroy_timeout_and_watches_the_backend_state() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "4", "4", None);
    let id = remove(&mut w, &d, Force::Off);
    let watch = Op::Xs(XsOp::Watch {
        path: d.backend_key("state"),
        token: "xsio-device/1/vbd/51712/1".into(),
    });
    assert!(w.requests.contains(&watch), "{:?}", w.requests);
    // The deadline is 10 s after the commit (a few virtual milliseconds ago).
    let left = w.h.actor(id).poll_timeout().unwrap() - w.h.now();
    assert!(
        left <= Duration::from_secs(10) && left > Duration::from_millis(9_990),
        "{left:?}"
    );
}

/// Watch events carry no value: every event is a fresh read, and only Closed ends the
/// wait (stale, intermediate and garbage values keep it going).
#[test]
fn r_wait6_other_values_keep_waiting_and_6_ends_it() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "4", "6", Some(SCRIPT));
    let id = remove(&mut w, &d, Force::Off);
    for value in ["5", "4", "garbage", "5"] {
        w.advance(Duration::from_millis(500));
        w.write(&d.backend_key("state"), value);
    }
    assert!(w.completion(id).is_none());
    assert!(
        w.saw(|e| matches!(
            e,
            DeviceEvent::StillWaiting {
                state: XenbusState::Unknown,
                ..
            }
        )) >= 1
    );
    w.write(&d.backend_key("state"), "6");
    w.drive();
    assert_eq!(removal(&w, id).result, ok(BackendEnd::Closed, false, 1));
    assert_eq!(w.host().spawned.len(), 1, "D2: once");
}

/// Fix: the state node vanishing while waiting (QEMU's clean exit deletes both
/// directories) is the same clean end as a backend gone before the request.
#[test]
fn fix_r_wait6_a_vanished_state_node_is_a_clean_end_for_every_force() {
    for force in [Force::Auto, Force::Off, Force::On] {
        let mut w = World::new();
        let d = qdisk();
        w.seed(&d, "4", "4", None);
        let id = remove(&mut w, &d, force);
        w.advance(Duration::from_millis(300));
        w.rm(&d.backend_path());
        w.rm(&d.frontend_path());
        w.drive();
        let r = removal(&w, id);
        assert_eq!(r.result, ok(BackendEnd::Gone, false, 0), "{force}");
        assert!(r.pruned, "{force}");
        assert!(w.areas_left(&d).is_empty(), "{force}");
        assert!(
            w.elapsed() < Duration::from_secs(1),
            "{force}: no timeout waited"
        );
    }
}

#[test]
fn r_wait6_read_error_fails() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "4", "4", None);
    w.faults().add(1, OpErrorKind::Other, |op| {
        matches!(op, Op::Xs(XsOp::Read { .. }))
    });
    let id = remove(&mut w, &d, Force::Off);
    let r = removal(&w, id);
    assert!(
        matches!(r.result, Err(RemoveError::Xenstore { .. })),
        "{r:?}"
    );
    assert!(!r.pruned);
}

/// Row "TimerFired, force==AUTO": once, everything again with force ON, domain info
/// included; the second timeout is a typed error, the areas pruned, no script run.
#[test]
fn r_wait6_timeout_with_auto_escalates_then_times_out_and_prunes() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "4", "4", Some(SCRIPT));
    let id = remove(&mut w, &d, Force::Auto);
    // The deadline is 10 s after the commit, a few virtual milliseconds after the start.
    w.advance(Duration::from_millis(9_980));
    assert!(w.read(&d.frontend_path()).is_some(), "not yet");
    w.advance(Duration::from_millis(40));
    assert_eq!(w.saw(|e| *e == DeviceEvent::Escalated), 1);
    assert_eq!(w.host().domain_infos, 2, "the whole entry again");
    assert_eq!(
        w.read(&d.frontend_path()),
        None,
        "force ON removed the frontend"
    );
    assert_eq!(w.h.actor(id).force(), Force::On);
    w.advance(Duration::from_secs(10));
    let r = removal(&w, id);
    assert_eq!(
        r.result,
        Err(RemoveError::TimedOut {
            wait: WaitFor::BackendClosed,
            last: Some(XenbusState::Closing)
        })
    );
    assert!(r.pruned);
    assert!(w.areas_left(&d).is_empty());
    assert!(
        w.host().spawned.is_empty(),
        "no hotplug script after a timeout"
    );
    assert_eq!(w.elapsed().as_secs(), 20);
}

#[test]
fn r_wait6_timeout_with_on_or_off_is_a_typed_timeout() {
    for (force, pruned) in [(Force::On, true), (Force::Off, false)] {
        let mut w = World::new();
        let d = vbd();
        w.seed(&d, "4", "4", Some(SCRIPT));
        let id = remove(&mut w, &d, force);
        w.advance(Duration::from_secs(11));
        let r = removal(&w, id);
        assert!(
            matches!(
                r.result,
                Err(RemoveError::TimedOut {
                    wait: WaitFor::BackendClosed,
                    ..
                })
            ),
            "{force}: {r:?}"
        );
        assert_eq!(r.pruned, pruned, "{force}");
        assert_eq!(w.areas_left(&d).is_empty(), pruned, "{force}");
        assert_eq!(w.saw(|e| *e == DeviceEvent::Escalated), 0);
        assert!(w.host().spawned.is_empty());
    }
}

/// Fix: the bodge's read and write happen inside one real transaction; its decisions
/// ("already 6?", "gone?") are taken from the read inside it.
#[test]
fn fix_r_bodge_reads_and_writes_inside_one_transaction() {
    // Present and not 6: state 6 written, between the transaction's start and its commit.
    let mut w = World::new();
    let d = qdisk();
    w.seed(&d, "4", "4", None);
    w.host().guest = Some(DomainState::Dying);
    w.host().dm_alive = Some(false);
    let id = remove(&mut w, &d, Force::On);
    let ops = &w.requests;
    let start = ops
        .iter()
        .position(|op| matches!(op, Op::Xs(XsOp::TxnStart)))
        .unwrap();
    let read = ops
        .iter()
        .position(|op| matches!(op, Op::Xs(XsOp::TxnRead { .. })))
        .unwrap();
    let write = ops
        .iter()
        .position(|op| is_txn_write(op, &d.backend_key("state"), "6"))
        .unwrap();
    let commit = ops.iter().position(is_commit).unwrap();
    assert!(start < read && read < write && write < commit, "{ops:?}");
    assert_eq!(removal(&w, id).result, ok(BackendEnd::Bodged, false, 0));

    // Already 6: nothing written, the transaction aborted.
    let mut w = World::new();
    w.seed(&d, "6", "6", None);
    w.host().guest = Some(DomainState::Dying);
    w.host().dm_alive = Some(false);
    let id = remove(&mut w, &d, Force::On);
    assert_eq!(
        w.asked(|op| is_txn_write(op, &d.backend_key("state"), "6")),
        0
    );
    assert_eq!(w.saw(|e| *e == DeviceEvent::Bodged { wrote: false }), 1);
    assert_eq!(removal(&w, id).result, ok(BackendEnd::Closed, false, 0));

    // Gone: the clean end.
    let mut w = World::new();
    w.seed(&d, "4", "4", None);
    w.rm(&d.backend_key("state"));
    w.host().guest = Some(DomainState::Dying);
    w.host().dm_alive = Some(false);
    let id = remove(&mut w, &d, Force::On);
    assert_eq!(removal(&w, id).result, ok(BackendEnd::Gone, false, 0));

    // A conflicting bodge commit is redone from a fresh read.
    let mut w = World::new();
    w.seed(&d, "4", "4", None);
    w.host().guest = Some(DomainState::Dying);
    w.host().dm_alive = Some(false);
    w.faults().add(2, OpErrorKind::Conflict, is_commit);
    let id = remove(&mut w, &d, Force::On);
    assert_eq!(
        w.saw(|e| matches!(
            e,
            DeviceEvent::Conflict {
                txn: TxnKind::Bodge,
                ..
            }
        )),
        2
    );
    assert_eq!(removal(&w, id).result, ok(BackendEnd::Bodged, false, 0));
}

#[test]
fn r_bodge_xenstore_error_fails() {
    let mut w = World::new();
    let d = qdisk();
    w.seed(&d, "4", "4", None);
    w.host().guest = Some(DomainState::Paused);
    w.host().dm_alive = Some(false);
    w.faults().add(1, OpErrorKind::Other, |op| {
        matches!(op, Op::Xs(XsOp::TxnStart))
    });
    let id = remove(&mut w, &d, Force::Auto);
    let r = removal(&w, id);
    assert!(
        matches!(r.result, Err(RemoveError::Xenstore { .. })),
        "{r:?}"
    );
    assert!(!r.pruned);
}

/// Row "backend_domid != my_domid": dom0 waits for the driver domain to remove the
/// backend directory (ours: while it is there, the wait goes on; then the rest is pruned).
#[test]
fn r_hotplug_backend_in_a_driver_domain_waits_for_its_directory_to_go() {
    let mut w = World::new();
    let d = Device::new("vbd", 1, 51712).with_backend(3, "vbd");
    w.seed(&d, "6", "6", Some(SCRIPT));
    let id = remove(&mut w, &d, Force::Auto);
    assert_eq!(
        w.saw(|e| *e == DeviceEvent::Waiting(WaitFor::BackendRemoved)),
        1
    );
    w.advance(Duration::from_secs(2));
    w.write(&d.backend_key("hotplug-status"), "connected"); // still there: still waiting
    assert!(w.completion(id).is_none());
    w.rm(&d.backend_path());
    w.drive();
    let r = removal(&w, id);
    assert_eq!(r.result, ok(BackendEnd::RemovedByDriverDomain, false, 0));
    assert!(r.pruned);
    assert!(
        w.host().spawned.is_empty(),
        "the driver domain runs its own scripts"
    );
    assert!(w.areas_left(&d).is_empty());
}

#[test]
fn r_wait_be_gone_timeout_is_a_typed_timeout() {
    let mut w = World::new();
    let d = Device::new("vbd", 1, 51712).with_backend(3, "vbd");
    w.seed(&d, "6", "6", None);
    let id = remove(&mut w, &d, Force::Auto);
    w.advance(Duration::from_secs(11));
    let r = removal(&w, id);
    assert!(
        matches!(
            r.result,
            Err(RemoveError::TimedOut {
                wait: WaitFor::BackendRemoved,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(!r.pruned, "AUTO: left for a look");
}

#[test]
fn r_hotplug_script_info_error_fails() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "6", "6", Some(SCRIPT));
    w.faults().add(1, OpErrorKind::Access, |op| {
        is_read_of(op, "/local/domain/0/backend/vbd/1/51712/script")
    });
    let id = remove(&mut w, &d, Force::Auto);
    w.drive();
    let r = removal(&w, id);
    assert!(
        matches!(r.result, Err(RemoveError::Xenstore { .. })),
        "{r:?}"
    );
    assert!(w.host().spawned.is_empty());
}

#[test]
fn r_hotplug_no_script_is_success() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "6", "6", None);
    let id = remove(&mut w, &d, Force::Auto);
    w.drive();
    assert_eq!(removal(&w, id).result, ok(BackendEnd::Closed, false, 0));
    assert!(w.host().spawned.is_empty());
}

/// Fix: a failed remove script is reported (libxl resets it to success); the areas go
/// only with force ON.
#[test]
fn fix_r_script_a_failed_remove_script_is_reported() {
    for (force, pruned) in [(Force::Auto, false), (Force::On, true)] {
        let mut w = World::new();
        let d = vbd();
        w.seed(&d, "6", "6", Some(SCRIPT));
        w.write(&d.backend_key("hotplug-error"), "losetup -d failed");
        w.host().scripts.push_back(Script::Exit {
            after: Duration::from_millis(30),
            code: 1,
        });
        let id = remove(&mut w, &d, force);
        w.drive();
        let r = removal(&w, id);
        let Err(RemoveError::Scripts(failures)) = &r.result else {
            panic!("{force}: {r:?}");
        };
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].exit, ProcessExit::Exited(1));
        assert_eq!(
            failures[0].hotplug_error.as_deref(),
            Some("losetup -d failed")
        );
        assert!(!failures[0].timed_out);
        assert_eq!(r.pruned, pruned, "{force}");
        assert_eq!(w.host().spawned.len(), 1, "D2");
    }
}

/// Row "R_SCRIPT TimerFired": SIGKILL after the hotplug timeout; the removal goes on and
/// reports the timeout.
#[test]
fn r_script_timeout_kills_the_script_and_goes_on() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "6", "6", Some(SCRIPT));
    w.host().scripts.push_back(Script::Hang);
    let id = remove(&mut w, &d, Force::On);
    w.advance(Duration::from_secs(39));
    assert_eq!(w.host().kills, 0);
    w.advance(Duration::from_secs(2));
    assert_eq!(w.host().kills, 1);
    let r = removal(&w, id);
    let Err(RemoveError::Scripts(failures)) = &r.result else {
        panic!("{r:?}");
    };
    assert!(failures[0].timed_out);
    assert_eq!(failures[0].exit, ProcessExit::Signalled(9));
    assert!(r.pruned);
    assert_eq!(w.host().still_running(), 0);
}

/// A killed script the driver never reaps is given up on after the grace.
#[test]
fn r_script_an_unreaped_script_is_given_up_on_after_the_grace() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "6", "6", Some(SCRIPT));
    w.host().scripts.push_back(Script::Unreapable);
    let id = remove(&mut w, &d, Force::On);
    w.advance(Duration::from_secs(46));
    let r = removal(&w, id);
    assert!(
        matches!(&r.result, Err(RemoveError::Scripts(f)) if f[0].timed_out),
        "{r:?}"
    );
    assert!(r.pruned);
    assert_eq!(
        w.h.actor(id).in_flight(),
        1,
        "its answer would still be accepted"
    );
}

#[test]
fn r_script_that_cannot_start_is_a_failure() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "6", "6", Some(SCRIPT));
    w.host().scripts.push_back(Script::NoStart);
    let id = remove(&mut w, &d, Force::On);
    w.drive();
    let r = removal(&w, id);
    assert!(
        matches!(&r.result, Err(RemoveError::Scripts(f)) if matches!(f[0].exit, ProcessExit::FailedToStart(_))),
        "{r:?}"
    );
}

/// Fix: with the guest running, the frontend is waited for before the hotplug step.
#[test]
fn fix_a_live_frontend_is_waited_for_before_the_script() {
    let mut w = World::new();
    let d = qdisk();
    w.seed(&d, "4", "4", None);
    let id = remove(&mut w, &d, Force::Auto);
    // QEMU closes its backend at once (the frontend is busy): the frontend still at 4.
    w.write(&d.backend_key("state"), "6");
    assert!(w.completion(id).is_none());
    assert_eq!(
        w.saw(|e| *e == DeviceEvent::Waiting(WaitFor::FrontendClosed)),
        1
    );
    assert!(
        w.read(&d.backend_path()).is_some(),
        "nothing removed under the frontend"
    );
    w.advance(Duration::from_secs(1));
    w.write(&d.frontend_key("state"), "6");
    w.drive();
    assert_eq!(removal(&w, id).result, ok(BackendEnd::Closed, false, 0));

    // A frontend that never closes: AUTO escalates (its directory goes), then completes.
    let mut w = World::new();
    w.seed(&d, "4", "4", None);
    let id = remove(&mut w, &d, Force::Auto);
    w.write(&d.backend_key("state"), "6");
    w.advance(Duration::from_secs(11));
    assert_eq!(w.saw(|e| *e == DeviceEvent::Escalated), 1);
    w.drive();
    assert_eq!(removal(&w, id).result, ok(BackendEnd::Closed, true, 0));

    // A frontend that never connected (still Initialising) holds no ring: no wait.
    let mut w = World::new();
    w.seed(&d, "2", "1", None);
    let id = remove(&mut w, &d, Force::Auto);
    w.write(&d.backend_key("state"), "6");
    w.settle();
    assert_eq!(removal(&w, id).result, ok(BackendEnd::Closed, false, 0));
    assert!(w.elapsed() < Duration::from_secs(1));

    // With OFF: a typed timeout, nothing removed.
    let mut w = World::new();
    w.seed(&d, "4", "4", None);
    let id = remove(&mut w, &d, Force::Off);
    w.write(&d.backend_key("state"), "6");
    w.advance(Duration::from_secs(11));
    let r = removal(&w, id);
    assert!(
        matches!(
            r.result,
            Err(RemoveError::TimedOut {
                wait: WaitFor::FrontendClosed,
                last: Some(XenbusState::Connected)
            })
        ),
        "{r:?}"
    );
    assert!(!r.pruned);
}

/// FINISH: "prune" removes the node, then each ancestor left empty, and stops at the
/// first one with a value or another child.
#[test]
fn finish_prune_stops_at_the_first_ancestor_in_use() {
    let mut w = World::new();
    let d = vbd();
    let other = Device::new("vbd", 1, 51728);
    w.seed(&d, "6", "6", None);
    w.seed(&other, "4", "4", None);
    let id = remove(&mut w, &d, Force::Auto);
    w.drive();
    assert!(removal(&w, id).pruned);
    assert!(w.areas_left(&d).is_empty());
    assert_eq!(
        w.areas_left(&other).len(),
        3,
        "the other device is untouched"
    );
    let pruned = w
        .events
        .iter()
        .find_map(|(_, e)| match e {
            DeviceEvent::Pruned { paths } => Some(paths.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        pruned,
        [d.frontend_path(), d.toolstack_path(), d.backend_path()],
        "no parent was in use-free"
    );
}

/// A console is only removed from xenstore (no state machine).
#[test]
fn consoles_are_only_pruned() {
    let mut w = World::new();
    let console = Device::new("console", 1, 0).with_backend(0, "console");
    w.write(&format!("{}/state", console.frontend_path()), "4");
    w.write(&console.backend_key("state"), "4");
    w.write(
        &format!("{}/backend", console.toolstack_path()),
        &console.backend_path(),
    );
    let id = remove(&mut w, &console, Force::Auto);
    let r = removal(&w, id);
    assert_eq!(r.result, ok(BackendEnd::NotNegotiated, false, 0));
    assert!(r.pruned);
    assert_eq!(w.read("/local/domain/1/console"), None);
    assert_eq!(w.host().domain_infos, 0);
}

#[test]
fn cancel_completes_once_kills_the_script_and_prunes_nothing() {
    let mut w = World::new();
    let d = vbd();
    w.seed(&d, "6", "6", Some(SCRIPT));
    w.host().scripts.push_back(Script::Hang);
    let id = remove(&mut w, &d, Force::On);
    assert_eq!(w.host().spawned.len(), 1);
    let now = w.h.now();
    w.h.actor_mut(id).cancel(now);
    w.h.drain(id);
    w.drive();
    let r = removal(&w, id);
    assert_eq!(r.result, Err(RemoveError::Cancelled));
    assert!(!r.pruned);
    assert_eq!(w.host().kills, 1);
    assert_eq!(w.saw(|e| matches!(e, DeviceEvent::Done(_))), 1, "D1");
    w.h.actor_mut(id).cancel(now);
    w.h.drain(id);
    w.settle();
    assert_eq!(w.saw(|e| matches!(e, DeviceEvent::Done(_))), 1, "D1");
}

//! Media changes on a simulated host, step by step: what is sent to QEMU and written to
//! xenstore, every error of the design note's table, and the state each failure leaves.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use xsio_cdrom::{CdromError, DeviceModel, Format, MediaChange, Medium, QmpStep};
use xsio_harness::qemu::{Fate, Seen};
use xsio_harness::{Actor, Harness, HarnessError, Owner, Record, Store};
use xsio_ops::{DomainState, HostOp, Op, QemuVersion, QmpOp};

fn args_of(world: &World, name: &str) -> serde_json::Value {
    world
        .qemu()
        .seen
        .iter()
        .find_map(|s| match s {
            Seen::Command(n, args, _) if n == name => args.clone(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{name} was not sent"))
}

#[test]
fn an_insert_over_qmp_passes_the_image_as_an_fd_and_removes_the_fd_set() {
    let mut world = World::new();
    let (result, _) = world.run(insert(config()));
    let changed = result.expect("inserted");
    assert_eq!(changed.params, "aio:/srv/new.iso");
    assert_eq!(changed.fdset, Some(0));
    assert_eq!(
        world.commands(),
        [
            "query-version",
            "eject",
            "add-fd",
            "blockdev-change-medium",
            "remove-fd"
        ]
    );
    assert_eq!(
        args_of(&world, "eject"),
        json!({"id": "ide-5632", "force": true})
    );
    assert_eq!(
        args_of(&world, "add-fd"),
        json!({"opaque": "cdrom:ide-5632:aio:/srv/new.iso"})
    );
    assert_eq!(
        args_of(&world, "blockdev-change-medium"),
        json!({"id": "ide-5632", "filename": "/dev/fdset/0", "format": "raw"})
    );
    assert_eq!(world.medium().as_deref(), Some("/dev/fdset/0"));
    assert_eq!(world.params(), "aio:/srv/new.iso");
    world.assert_agree();
    // The set's own descriptor is gone; QEMU's medium keeps the set until it leaves.
    let set = &world.qemu().fdsets[&0];
    assert!(!set.has_fd && set.users == 1);
    assert_eq!(
        world.qemu().ledger.open_count(),
        0,
        "C2: the image fd was passed"
    );
    assert_eq!(world.qemu().ledger.opened_total(), 1);
    assert_eq!(world.host().lock_holder(DOMID), None, "C3: lock given back");
    assert_eq!(
        world.xenstore().transactions(),
        0,
        "C3: no transaction left open"
    );

    let (result, _) = world.run(eject(config()));
    assert_eq!(result.expect("ejected").params, "");
    assert_eq!(world.medium(), None);
    assert!(
        world.qemu().fdsets.is_empty(),
        "the set went with the medium"
    );
    assert!(world.qemu().seen.contains(&Seen::FdSetRemoved(0)));
    assert_eq!(world.params(), "");
}

#[test]
fn the_insert_writes_an_empty_drive_between_eject_and_insert() {
    let mut world = World::new();
    world.harness.set_log(true);
    world.run(insert(config())).0.expect("inserted");
    let writes: Vec<String> = world
        .log()
        .into_iter()
        .filter_map(|r| match r {
            Record::Request { request, .. } => match request.op {
                Op::Xs(xsio_ops::XsOp::TxnApply {
                    op: xsio_ops::TxnOp::Write { path, value },
                    ..
                }) if path == format!("{BACKEND}/params") => Some(value),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(writes, ["", "aio:/srv/new.iso"]);
}

#[test]
fn qemu_s_format_names_vhd_is_vpc() {
    for (format, driver, prefix) in [
        (Format::Vhd, "vpc", "vhd"),
        (Format::Qcow2, "qcow2", "qcow2"),
    ] {
        let mut world = World::new();
        let medium = Medium {
            path: NEW_ISO.into(),
            format,
        };
        let (result, _) = world.run(|now| MediaChange::insert(config(), medium, now));
        assert_eq!(result.unwrap().params, format!("{prefix}:{NEW_ISO}"));
        assert_eq!(
            args_of(&world, "blockdev-change-medium")["format"],
            json!(driver)
        );
    }
}

#[test]
fn qemu_before_2_8_is_asked_by_device_and_with_change() {
    let mut world = World::new();
    world.qemu_mut().version = QemuVersion {
        major: 2,
        minor: 7,
        micro: 0,
    };
    let (result, _) = world.run(insert(config()));
    result.expect("inserted");
    assert_eq!(
        args_of(&world, "eject"),
        json!({"device": "ide-5632", "force": true})
    );
    assert_eq!(
        args_of(&world, "change"),
        json!({"device": "ide-5632", "target": "/dev/fdset/0", "arg": "raw"})
    );
    world.assert_agree();
}

#[test]
fn the_xenstore_path_rewrites_type_and_params_in_one_transaction() {
    let mut world = World::new();
    world.write("/libxl/5/dm-version", "qemu_xen_traditional");
    let xs = xsio_cdrom::Config::new(DOMID, "hdc", DeviceModel::Xenstore);
    let (result, _) = world.run(insert(xs.clone()));
    assert_eq!(result.unwrap().params, "aio:/srv/new.iso");
    assert_eq!(world.params(), "aio:/srv/new.iso");
    assert!(world.commands().is_empty(), "no QMP at all");
    assert_eq!(world.qemu().ledger.opened_total(), 0, "no file opened");
    // A phy backend takes the bare path.
    world.write(&format!("{BACKEND}/type"), "phy");
    let (result, _) = world.run(insert(xs.clone()));
    assert_eq!(result.unwrap().params, NEW_ISO);
    assert_eq!(world.xenstore().read(&format!("{ENTRY}/type")), Some("phy"));
    let (result, _) = world.run(eject(xs));
    assert_eq!(result.unwrap().params, "");
    assert_eq!(world.params(), "");
}

/// A name, a world's setup, the change's configuration, the error expected.
type ErrorCase = (
    &'static str,
    Box<dyn Fn(&mut World)>,
    xsio_cdrom::Config,
    fn(&CdromError) -> bool,
);

#[test]
fn every_row_of_the_error_table_is_its_own_error() {
    let xs = || xsio_cdrom::Config::new(DOMID, "hdc", DeviceModel::Xenstore);
    let cases: Vec<ErrorCase> = vec![
        (
            "not a cdrom",
            Box::new(|w| w.write(&format!("{BACKEND}/device-type"), "disk")),
            config(),
            |e| matches!(e, CdromError::NotCdrom { device_type, .. } if device_type == "disk"),
        ),
        (
            "no such device",
            Box::new(|w| w.remove(ENTRY)),
            config(),
            |e| matches!(e, CdromError::NoSuchDevice { vdev, .. } if vdev == "hdc"),
        ),
        (
            "stub domain",
            Box::new(|w| w.write("/local/domain/5/image/device-model-domid", "6")),
            config(),
            |e| matches!(e, CdromError::StubDomain { stubdom: 6, .. }),
        ),
        (
            "upstream QEMU asked through xenstore",
            Box::new(|_| {}),
            xs(),
            |e| {
                matches!(
                    e,
                    CdromError::WrongDeviceModel {
                        asked: "xenstore",
                        ..
                    }
                )
            },
        ),
        (
            "unknown device model",
            Box::new(|w| w.write("/libxl/5/dm-version", "bochs")),
            config(),
            |e| matches!(e, CdromError::DmVersion(v) if v == "bochs"),
        ),
        (
            "backend neither qdisk nor phy",
            Box::new(|w| w.write(&format!("{BACKEND}/type"), "vbd3")),
            config(),
            |e| matches!(e, CdromError::UnsupportedBackend(t) if t == "vbd3"),
        ),
        (
            "not HVM",
            Box::new(|w| w.write("/libxl/5/type", "pv")),
            config(),
            |e| matches!(e, CdromError::NotHvm { kind, .. } if kind == "pv"),
        ),
        (
            "no such domain",
            Box::new(|w| w.host().guest = DomainState::Absent),
            config(),
            |e| matches!(e, CdromError::NoSuchDomain(5)),
        ),
        (
            "not a vdev",
            Box::new(|_| {}),
            xsio_cdrom::Config::new(DOMID, "floppy", DeviceModel::Qmp),
            |e| matches!(e, CdromError::BadVdev { .. }),
        ),
    ];
    for (name, setup, config, expected) in cases {
        let mut world = World::new();
        setup(&mut world);
        let (result, _) = world.run(insert(config));
        let err = result.expect_err(name);
        assert!(expected(&err), "{name}: {err}");
        assert!(world.commands().is_empty(), "{name}: QEMU untouched");
        assert_eq!(
            world.host().lock_holder(DOMID),
            None,
            "{name}: lock given back"
        );
        assert_eq!(
            world.xenstore().read(&format!("{BACKEND}/params")),
            Some("aio:/srv/old.iso"),
            "{name}"
        );
    }
    // An insert of nothing.
    let mut world = World::new();
    let empty = Medium {
        path: String::new(),
        format: Format::Raw,
    };
    let (result, _) = world.run(|now| MediaChange::insert(config(), empty, now));
    assert_eq!(result, Err(CdromError::EmptyImagePath));
}

#[test]
fn an_image_that_cannot_be_opened_leaves_the_drive_empty_and_xenstore_saying_so() {
    // Connect, query-version, eject, then the open.
    let mut world = World::new().with_fates(Fate::after_answers(3, Fate::Refuse(Duration::ZERO)));
    let (result, _) = world.run(insert(config()));
    assert!(matches!(result, Err(CdromError::OpenImage { ref path, .. }) if path == NEW_ISO));
    assert_eq!(world.medium(), None);
    assert_eq!(world.params(), "");
    world.assert_agree();
    assert_eq!(world.host().lock_holder(DOMID), None);
}

#[test]
fn qemu_dying_between_add_fd_and_the_change_fails_once_and_xenstore_says_empty() {
    // Connect, query-version, eject, open, add-fd, then QEMU dies on the change.
    let mut world = World::new().with_fates(Fate::after_answers(5, Fate::Die));
    let (result, _) = world.run(insert(config()));
    assert!(matches!(result, Err(CdromError::Exited(_))), "{result:?}");
    assert!(!world.qemu().is_alive());
    assert_eq!(world.params(), "", "QEMU's drive went with it");
    assert_eq!(world.qemu().ledger.open_count(), 0, "C2");
    assert_eq!(world.host().lock_holder(DOMID), None);
}

#[test]
fn a_refused_change_removes_the_fd_set_and_xenstore_follows_query_block() {
    let mut world = World::new().with_fates(Fate::after_answers(5, Fate::Refuse(Duration::ZERO)));
    let (result, _) = world.run(insert(config()));
    assert!(matches!(
        result,
        Err(CdromError::Qmp {
            step: QmpStep::ChangeMedium,
            ..
        })
    ));
    let commands = world.commands();
    assert_eq!(
        &commands[3..],
        ["blockdev-change-medium", "remove-fd", "query-block"]
    );
    assert!(world.qemu().fdsets.is_empty(), "C2: the set is gone");
    world.assert_agree();
    assert_eq!(world.params(), "");
}

#[test]
fn a_locked_tray_refuses_an_eject_without_force_and_nothing_changes() {
    let mut world = World::new();
    world
        .qemu_mut()
        .drives
        .get_mut("ide-5632")
        .expect("drive")
        .locked = true;
    let mut gentle = config();
    gentle.force = false;
    let (result, _) = world.run(insert(gentle));
    assert!(matches!(
        result,
        Err(CdromError::Qmp {
            step: QmpStep::Eject,
            ..
        })
    ));
    assert_eq!(world.medium().as_deref(), Some(OLD_ISO));
    assert_eq!(world.params(), "aio:/srv/old.iso");
    // With force (the default) it goes through.
    let (result, _) = world.run(insert(config()));
    result.expect("forced");
    world.assert_agree();
}

#[test]
fn a_qemu_that_never_answers_times_out_at_40_seconds_and_gives_the_lock_back_when_it_dies() {
    // Connect, then query-version hangs.
    let mut world = World::new().with_fates(Fate::after_answers(1, Fate::Hang));
    let id = world.add(insert(config()));
    world.drive().unwrap();
    let op = world.harness.actor(id);
    assert_eq!(
        op.machine.result(),
        Some(&Err(CdromError::TimedOut(Duration::from_secs(40))))
    );
    assert_eq!(
        op.completions[0].saturating_duration_since(world.epoch),
        Duration::from_secs(40)
    );
    assert!(
        world.host().lock_holder(DOMID).is_some(),
        "held while a step is out"
    );
    world
        .stores
        .0
        .die(&mut world.harness, xsio_ops::ProcessExit::Signalled(9))
        .unwrap();
    world.drive().unwrap();
    let op = world.harness.actor(id);
    assert!(op.machine.is_settled());
    assert_eq!(op.completions.len(), 1);
    assert_eq!(world.host().lock_holder(DOMID), None);
    assert_eq!(world.params(), "aio:/srv/old.iso", "nothing was ejected");
}

#[test]
fn no_deadline_with_duration_max() {
    let mut world = World::new();
    let mut forever = config();
    forever.timeout = Duration::MAX;
    let id = world.add(insert(forever));
    assert_eq!(world.harness.actor(id).machine.poll_timeout(), None);
    world.drive().unwrap();
    assert!(world.harness.actor(id).machine.result().unwrap().is_ok());
}

/// Makes every commit conflict.
struct Conflicting;

impl<A: Actor> Store<A> for Conflicting {
    fn step(&mut self, harness: &mut Harness<A>) -> Result<bool, HarnessError> {
        let mut moved = false;
        for conn in harness.conns().collect::<Vec<_>>() {
            while let Some((owner, request)) = harness.take_request_where(conn, is_commit) {
                moved = true;
                harness.reply(owner, request.id, conflict())?;
            }
        }
        Ok(moved)
    }
}

#[test]
fn conflicting_commits_are_retried_a_bounded_number_of_times() {
    let mut world = World::new();
    world.write("/libxl/5/dm-version", "qemu_xen_traditional");
    let xs = xsio_cdrom::Config::new(DOMID, "hdc", DeviceModel::Xenstore);
    let id = world.add(insert(xs));
    let mut stores = (Conflicting, &mut world.stores);
    world.harness.drive(&mut stores).unwrap();
    let op = world.harness.actor(id);
    assert_eq!(op.machine.result(), Some(&Err(CdromError::Conflicts(10))));
    assert_eq!(world.params(), "aio:/srv/old.iso");
    assert_eq!(world.host().lock_holder(DOMID), None);
}

#[test]
fn two_changes_to_one_domain_never_interleave() {
    let mut world = World::new();
    world.harness.set_log(true);
    let first = world.add(insert(config()));
    let second = world.add(eject(config()));
    world.drive().unwrap();
    for id in [first, second] {
        assert!(world.harness.actor(id).machine.result().unwrap().is_ok());
    }
    // The second's lock came after the first gave its back; every QMP command of one
    // before every QMP command of the other.
    let owners: Vec<Owner> = world
        .log()
        .into_iter()
        .filter_map(|r| match r {
            Record::Request { owner, request }
                if matches!(
                    request.op,
                    Op::Qmp(QmpOp::Command(_)) | Op::Host(HostOp::Unlock { .. })
                ) =>
            {
                Some(owner)
            }
            _ => None,
        })
        .collect();
    let switches = owners.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(switches, 1, "{owners:?}");
    assert_eq!(world.medium(), None);
    assert_eq!(world.params(), "");
}

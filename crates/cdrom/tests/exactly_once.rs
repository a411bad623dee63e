//! C1–C5 under random answers: delays, refusals, hangs, dropped connections and QEMU
//! dying at any step, old and new QEMU, inserts and ejects by QMP and by xenstore, two
//! changes of one domain at once, timeouts from a millisecond to `Duration::MAX`, and a
//! clock near the end of `Instant`'s range.

mod common;

use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use xsio_cdrom::{CdromError, DeviceModel, MediaChange};
use xsio_core::last_instant;
use xsio_harness::qemu::{Fate, Seen};
use xsio_ops::{ProcessExit, QemuVersion};

fn fate() -> impl Strategy<Value = Fate> {
    let delay = prop_oneof![
        Just(Duration::ZERO),
        (0u64..20_000).prop_map(Duration::from_millis),
    ];
    prop_oneof![
        8 => delay.clone().prop_map(Fate::Answer),
        1 => delay.prop_map(Fate::Refuse),
        1 => Just(Fate::Hang),
        1 => Just(Fate::Drop),
        1 => Just(Fate::Die),
    ]
}

fn timeout() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(5)),
        Just(Duration::from_secs(40)),
        Just(Duration::MAX),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    inserts: Vec<bool>,
    qmp: bool,
    fates: Vec<Fate>,
    exit_first: bool,
    timeout: Duration,
    old_qemu: bool,
    end_of_time: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(any::<bool>(), 1..3),
        prop::bool::weighted(0.8),
        prop::collection::vec(fate(), 0..14),
        any::<bool>(),
        timeout(),
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(inserts, qmp, fates, exit_first, timeout, old_qemu, end_of_time)| Case {
                inserts,
                qmp,
                fates,
                exit_first,
                timeout,
                old_qemu,
                end_of_time,
            },
        )
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let real = real_now();
    let epoch = if case.end_of_time {
        last_instant(real)
            .checked_sub(Duration::from_secs(100))
            .unwrap_or(real)
    } else {
        real
    };
    let mut world = World::at(epoch).with_fates(case.fates.clone());
    world.qemu_mut().exit_first = case.exit_first;
    if case.old_qemu {
        world.qemu_mut().version = QemuVersion {
            major: 2,
            minor: 7,
            micro: 0,
        };
    }
    if !case.qmp {
        world.write("/libxl/5/dm-version", "qemu_xen_traditional");
    }
    let model = if case.qmp {
        DeviceModel::Qmp
    } else {
        DeviceModel::Xenstore
    };
    let ids: Vec<_> = case
        .inserts
        .iter()
        .map(|&insert| {
            let mut config = xsio_cdrom::Config::new(DOMID, "hdc", model);
            config.timeout = case.timeout;
            world.add(move |now: Instant| {
                if insert {
                    MediaChange::insert(config, new_iso(), now)
                } else {
                    MediaChange::eject(config, now)
                }
            })
        })
        .collect();
    world
        .drive()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    // Whatever hangs ends when QEMU does.
    let hung = ids
        .iter()
        .any(|&id| !world.harness.actor(id).machine.is_settled());
    if hung {
        world
            .stores
            .0
            .die(&mut world.harness, ProcessExit::Signalled(9))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        world
            .drive()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    for &id in &ids {
        let op = world.harness.actor(id);
        // C1
        prop_assert_eq!(op.completions.len(), 1, "completed exactly once");
        prop_assert!(op.machine.is_settled(), "every request answered");
        // C5: the deadline holds.
        let at = op.completions[0].saturating_duration_since(epoch);
        if let Some(Err(CdromError::TimedOut(_))) = op.machine.result() {
            prop_assert!(at <= case.timeout.saturating_add(Duration::from_secs(200)));
        }
        if case.timeout == Duration::MAX {
            prop_assert!(!matches!(
                op.machine.result(),
                Some(Err(CdromError::TimedOut(_)))
            ));
        }
    }
    // C2: every handle passed or closed; no set keeps its descriptor while QEMU lives.
    prop_assert_eq!(world.qemu().ledger.open_count(), 0);
    prop_assert_eq!(world.qemu().open_handles(), 0);
    // ... and remove-fd was sent for every set that keeps its descriptor (QEMU may refuse
    // it: the change then says so) while the connection lasted.
    if world.qemu().is_alive() && !case.fates.contains(&Fate::Drop) {
        for (id, set) in &world.qemu().fdsets {
            let asked = world.qemu().seen.iter().any(|s| {
                matches!(s, Seen::Command(name, Some(args), _)
                    if name == "remove-fd" && args["fdset-id"] == serde_json::json!(id))
            });
            prop_assert!(
                !set.has_fd || asked,
                "fd set {} left: {:?}",
                id,
                world.qemu().seen
            );
        }
    }
    // C3
    prop_assert_eq!(world.host().lock_holder(DOMID), None);
    prop_assert_eq!(world.host().lock_waiters(), 0);
    prop_assert_eq!(world.xenstore().transactions(), 0);
    // C4 (the xenstore path never asks QEMU: nothing to agree with)
    if case.qmp {
        world.assert_agree();
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn every_change_completes_once_consumes_its_handles_and_leaves_xenstore_agreeing(case in case()) {
        run(&case)?;
    }
}

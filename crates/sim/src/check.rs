//! What must hold after every run, whatever the seed and the faults.

use xsio_device::disk::Format;
use xsio_xenbus::XenbusState;
use xsio_xs_client::Response;

use crate::scenario::DeviceKind;
use crate::world::{Phase, Sim};

/// Every broken rule of a finished run, as sentences (empty: the run is good).
pub(crate) fn violations(sim: &mut Sim) -> Vec<String> {
    let mut found = Vec::new();
    // Every request answered exactly once: the harness refuses a second answer, so what
    // is left to check is that none is outstanding.
    if !sim.harness.is_idle() {
        found.push(format!(
            "{} operation(s) never completed",
            sim.harness.in_flight()
        ));
    }
    // Every toolstack operation reported its completion exactly once.
    for (actor, count) in sim.completions.iter().enumerate() {
        if let Some(n) = count
            && *n != 1
        {
            found.push(format!(
                "toolstack operation #{actor} completed {n} time(s)"
            ));
        }
    }
    if let Err(err) = sim.store.1.server().check_invariants() {
        found.push(format!("xenstored's tree is inconsistent: {err}"));
    }
    found.extend(fd_leaks(sim));
    found.extend(cdroms_disagree(sim));
    for i in 0..sim.devices.len() {
        let name = format!("d{} {}", sim.devices[i].domid, sim.devices[i].name);
        for problem in &sim.devices[i].problems {
            found.push(format!("{name}: {problem}"));
        }
        let (backend, frontend) = sim.states(i);
        let serving = sim.backend_process_alive(i);
        let destroyed = sim.domains[&sim.devices[i].domid].destroyed;
        let d = &sim.devices[i];
        match d.phase {
            Phase::Absent => {}
            Phase::Running if destroyed => {
                found.push(format!(
                    "{name}: still running after its domain was destroyed"
                ));
            }
            // A backend whose process died stays where it was; nothing to expect of it.
            Phase::Running if !serving || d.backend.is_none() => {}
            Phase::Running => {
                let want_frontend = if d.silent {
                    None
                } else {
                    Some(XenbusState::Connected)
                };
                let want_backend = if d.silent {
                    XenbusState::InitWait
                } else {
                    XenbusState::Connected
                };
                if backend != Some(want_backend) || frontend != want_frontend {
                    found.push(format!(
                        "{name}: running but backend {backend:?}, frontend {frontend:?}"
                    ));
                }
            }
            Phase::Removed => {
                let areas = [
                    d.areas.backend_path(),
                    d.areas.frontend_path(),
                    d.device().toolstack_path(),
                ];
                let roots = [
                    format!("/local/domain/{}/backend", d.areas.backend_domid),
                    format!("/local/domain/{}", d.domid),
                    "/libxl".to_owned(),
                ];
                for (area, root) in areas.iter().zip(&roots) {
                    if exists(sim, area) {
                        found.push(format!("{name}: {area} is still there after removal"));
                    }
                    let mut dir = area.as_str();
                    while let Some((up, _)) = dir.rsplit_once('/') {
                        if up.len() <= root.len() {
                            break;
                        }
                        if exists(sim, up) && children(sim, up).is_empty() {
                            found.push(format!("{name}: empty directory {up} left behind"));
                        }
                        dir = up;
                    }
                }
            }
            other => found.push(format!("{name}: stuck in {other:?}")),
        }
    }
    found
}

/// No descriptor leaked: the driver holds none for the machines, a live QEMU holds no fd
/// set (every one was removed), and nothing else is open (what a dead QEMU held went
/// with it).
fn fd_leaks(sim: &Sim) -> Vec<String> {
    let mut found = Vec::new();
    let host = &sim.store.0;
    if host.open_handles() > 0 {
        found.push(format!(
            "{} descriptor(s) opened for the machines were never passed on or closed",
            host.open_handles()
        ));
    }
    let mut held_by_qemu = 0;
    for domid in sim.domains.keys() {
        if let Some(qemu) = host.qemu(*domid) {
            for (set, opaques) in qemu.fdsets() {
                found.push(format!(
                    "d{domid}: QEMU still holds fd set {set} ({})",
                    opaques.join(", ")
                ));
            }
            held_by_qemu += qemu.held();
        }
    }
    let open = host.ledger.open_count();
    if open != held_by_qemu {
        found.push(format!(
            "{open} descriptor(s) open at the end, {held_by_qemu} of them held by a live QEMU"
        ));
    }
    found
}

/// Xenstore agrees with the simulated QEMU for every CD-ROM it serves: the backend's
/// `params` names the image QEMU's drive holds (empty: none; a medium passed as a
/// descriptor is the file the driver opened for it, in the format QEMU was told), and the
/// toolstack entry's copy says the same as the backend.
fn cdroms_disagree(sim: &mut Sim) -> Vec<String> {
    let mut found = Vec::new();
    for i in 0..sim.devices.len() {
        let d = &sim.devices[i];
        if d.kind != Some(DeviceKind::Cdrom) || d.phase != Phase::Running {
            continue;
        }
        let drive = xsio_cdrom::drive_id(d.areas.devid);
        let Some(held) = sim.store.0.medium(d.domid, &drive) else {
            continue;
        };
        let name = format!("d{} {}", d.domid, d.name);
        let backend = d.areas.backend_path() + "/params";
        let entry = d.device().toolstack_path() + "/params";
        let params = read(sim, &backend);
        let held = held.map(|(path, format)| match format {
            Some(format) => format!("{format}:{path}"),
            None => path,
        });
        let want = held.clone().unwrap_or_default();
        if params.as_deref().map(in_qemu_terms).as_deref() != Some(want.as_str()) {
            found.push(format!(
                "{name}: xenstore's params {params:?} but QEMU holds {held:?}"
            ));
        }
        let copy = read(sim, &entry);
        if copy != params {
            found.push(format!(
                "{name}: the toolstack entry's params {copy:?} but the backend's {params:?}"
            ));
        }
    }
    found
}

/// `params` as QEMU would name the image: `<QEMU format>:<path>` for `<prefix>:<path>`
/// (`aio:` is raw), the bare path otherwise.
fn in_qemu_terms(params: &str) -> String {
    let formats = [
        Format::Raw,
        Format::Qcow,
        Format::Qcow2,
        Format::Vhd,
        Format::Qed,
    ];
    if let Some((prefix, path)) = params.split_once(':')
        && let Some(format) = formats.iter().find(|f| f.params_prefix() == prefix)
    {
        return format!("{}:{path}", format.qemu_driver());
    }
    params.to_owned()
}

fn read(sim: &mut Sim, path: &str) -> Option<String> {
    let conn = sim.harness.conns().next()?;
    match sim
        .store
        .1
        .call(&mut sim.harness, conn, |c, now| c.read(now, None, path))
    {
        Ok(Ok(Response::Value(value))) => Some(String::from_utf8_lossy(&value).into_owned()),
        _ => None,
    }
}

fn exists(sim: &mut Sim, path: &str) -> bool {
    let toolstack = sim.harness.conns().next();
    let Some(conn) = toolstack else {
        return false;
    };
    matches!(
        sim.store
            .1
            .call(&mut sim.harness, conn, |c, now| c.read(now, None, path)),
        Ok(Ok(Response::Value(_)))
    )
}

fn children(sim: &mut Sim, path: &str) -> Vec<String> {
    let Some(conn) = sim.harness.conns().next() else {
        return Vec::new();
    };
    match sim.store.1.call(&mut sim.harness, conn, |c, now| {
        c.directory(now, None, path)
    }) {
        Ok(Ok(Response::Names(names))) => names,
        // Missing or unreadable: nothing under it for this check.
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::scenario::{Scenario, one_disk};
    use crate::world::Sim;

    fn finished(text: &str) -> Sim {
        #[allow(clippy::disallowed_methods)]
        let epoch = Instant::now(); // tidy:allow: a unit-test epoch
        let mut sim = Sim::new(Scenario::parse(text).unwrap(), 1, epoch);
        sim.run().unwrap();
        sim
    }

    /// Writes `value` at `path` as dom0, behind the simulation's back.
    fn write(sim: &mut Sim, path: &str, value: &'static [u8]) {
        let conn = sim.harness.conns().next().unwrap();
        let made = sim.store.1.call(&mut sim.harness, conn, |c, now| {
            c.write(now, None, path, value)
        });
        assert!(matches!(made, Ok(Ok(_))), "{made:?}");
    }

    /// Guest 1's disk created, then removed.
    fn one() -> String {
        one_disk(&[(0, "create"), (100, "remove")], "silent_frontend = 0.0")
    }

    #[test]
    fn a_clean_run_has_no_violation() {
        let mut sim = finished(&one());
        assert_eq!(super::violations(&mut sim), Vec::<String>::new());
    }

    #[test]
    fn an_empty_directory_left_behind_is_caught() {
        let mut sim = finished(&one());
        let conn = sim.harness.conns().next().unwrap();
        let made = sim.store.1.call(&mut sim.harness, conn, |c, now| {
            c.mkdir(now, None, "/local/domain/0/backend/qdisk/1")
        });
        assert!(matches!(made, Ok(Ok(_))), "{made:?}");
        let found = super::violations(&mut sim);
        assert_eq!(
            found,
            ["d1 xvda: empty directory /local/domain/0/backend/qdisk/1 left behind"]
        );
    }

    #[test]
    fn a_node_left_under_a_removed_device_is_caught() {
        let mut sim = finished(&one());
        write(&mut sim, "/local/domain/1/device/vbd/51712/state", b"6");
        let found = super::violations(&mut sim);
        assert!(
            found
                .iter()
                .any(|v| v.contains("/local/domain/1/device/vbd/51712 is still there")),
            "{found:?}"
        );
    }

    /// Guest 1's disk created, its device model saved and resumed.
    fn saved() -> String {
        let steps = [(0, "create"), (100, "save"), (200, "resume")];
        one_disk(&steps, "silent_frontend = 0.0")
    }

    #[test]
    fn a_descriptor_left_open_is_caught() {
        let mut sim = finished(&saved());
        assert_eq!(super::violations(&mut sim), Vec::<String>::new());
        // A descriptor the driver opened and nobody closed.
        let leaked = sim.store.0.ledger.open();
        let found = super::violations(&mut sim);
        assert_eq!(
            found,
            ["1 descriptor(s) open at the end, 0 of them held by a live QEMU"]
        );
        drop(leaked);
    }

    #[test]
    fn an_fd_set_left_in_a_live_qemu_is_caught() {
        // Save without the resume: QEMU (paused) keeps the saved state's fd set.
        let text = saved().replace("action = \"resume\"", "action = \"pause\"");
        let mut sim = finished(&text);
        let found = super::violations(&mut sim);
        assert_eq!(found, ["d1: QEMU still holds fd set 0 (saved_state)"]);
    }

    #[test]
    fn an_operation_completed_twice_or_never_is_caught() {
        let mut sim = finished(&one());
        let ops: Vec<usize> = (0..sim.completions.len())
            .filter(|&i| sim.completions[i].is_some())
            .collect();
        assert!(ops.len() >= 2, "{:?}", sim.completions);
        sim.completions[ops[0]] = Some(2);
        sim.completions[ops[1]] = Some(0);
        let found = super::violations(&mut sim);
        assert_eq!(
            found,
            [
                format!("toolstack operation #{} completed 2 time(s)", ops[0]),
                format!("toolstack operation #{} completed 0 time(s)", ops[1]),
            ]
        );
    }

    #[test]
    fn a_device_stuck_half_way_is_caught() {
        let mut sim = finished(&one());
        sim.devices[0].phase = crate::world::Phase::Removing;
        let found = super::violations(&mut sim);
        assert_eq!(found, ["d1 xvda: stuck in Removing"]);
    }

    #[test]
    fn a_cdrom_whose_medium_xenstore_and_qemu_disagree_on_is_caught() {
        let text = one()
            .replace(
                "vdev = \"xvda\", kind = \"disk\"",
                "vdev = \"hdc\", kind = \"cdrom\"",
            )
            .replace("action = \"remove\"", "action = \"pause\"");
        let mut sim = finished(&text);
        assert_eq!(super::violations(&mut sim), Vec::<String>::new());
        write(
            &mut sim,
            "/local/domain/0/backend/qdisk/1/5632/params",
            b"/srv/other.iso",
        );
        let found = super::violations(&mut sim);
        assert_eq!(
            found,
            [
                "d1 hdc: xenstore's params Some(\"/srv/other.iso\") but QEMU holds Some(\"/d\")",
                "d1 hdc: the toolstack entry's params Some(\"/d\") but the backend's Some(\"/srv/other.iso\")",
            ]
        );
    }

    #[test]
    fn a_changed_medium_that_xenstore_does_not_name_is_caught() {
        let text = one()
            .replace(
                "vdev = \"xvda\", kind = \"disk\"",
                "vdev = \"hdc\", kind = \"cdrom\"",
            )
            .replace(
                "action = \"remove\"",
                "action = \"insert\"\n        medium = \"/srv/new.iso\"",
            );
        let mut sim = finished(&text);
        // Inserted through an fd set: QEMU's drive holds the file the driver opened.
        assert_eq!(
            sim.store.0.medium(1, "ide-5632"),
            Some(Some(("/srv/new.iso".to_owned(), Some("raw".to_owned()))))
        );
        assert_eq!(super::violations(&mut sim), Vec::<String>::new());
        // xenstore still naming the old medium, in the backend and then in the toolstack
        // entry only.
        let backend = "/local/domain/0/backend/qdisk/1/5632/params";
        write(&mut sim, backend, b"/d");
        assert_eq!(
            super::violations(&mut sim),
            [
                "d1 hdc: xenstore's params Some(\"/d\") but QEMU holds Some(\"raw:/srv/new.iso\")",
                "d1 hdc: the toolstack entry's params Some(\"aio:/srv/new.iso\") but the backend's Some(\"/d\")",
            ]
        );
        write(&mut sim, backend, b"aio:/srv/new.iso");
        write(&mut sim, "/libxl/1/device/vbd/5632/params", b"");
        assert_eq!(
            super::violations(&mut sim),
            [
                "d1 hdc: the toolstack entry's params Some(\"\") but the backend's Some(\"aio:/srv/new.iso\")"
            ]
        );
    }
}

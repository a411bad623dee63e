//! Scenario files: the domains of a host, their devices, what happens to them over time,
//! the faults to inject, as TOML (`testdata/scenarios/*.toml`).
//!
//! ```toml
//! name = "disk-and-cdrom"
//! description = "A guest's disk and CD-ROM connect, then are removed."
//!
//! [[domain]]
//! domid = 1
//! devices = [
//!   { vdev = "xvda", kind = "disk", params = "/srv/guest/disk.img" },
//!   { vdev = "hdc", kind = "cdrom", params = "/srv/iso/install.iso" },
//! ]
//! vifs = [{ bridge = "xenbr0" }]   # vif0 (steps without `device` include it)
//! vfb = true          # vfb0 and vkbd0, served by the guest's QEMU
//!
//! [[domain]]
//! domid = 10
//! count = 100         # domains 10 to 109, each with these devices
//! devices = [
//!   { vdev = "xvda", kind = "disk", params = "/srv/disk.img" },
//!   # served by driver domain 9 (blkback there; only `phy` disks and vifs can be)
//!   { vdev = "xvdb", kind = "phy", params = "/dev/vg0/data", backend = 9 },
//! ]
//! vifs = [{ bridge = "xenbr0", backend = 9 }]
//!
//! [[domain]]
//! domid = 9
//! driver = true       # a driver domain: backends for other guests, no devices, no QEMU
//!
//! [[step]]
//! at_ms = 0
//! action = "create"   # every device of the domain; without `domain`, of every domain
//! domain = 1
//!
//! [[step]]
//! at_ms = 1000
//! action = "remove"
//! domain = 1
//! device = "hdc"      # one device; all when absent
//!
//! [[step]]
//! at_ms = 1500
//! action = "insert"   # a media change (`xsio-cdrom`): also "eject" (no medium)
//! domain = 1
//! device = "hdc"      # a CD-ROM; every CD-ROM of the domain when absent
//! medium = "/srv/iso/drivers.iso"
//!
//! [[step]]
//! at_ms = 2000
//! action = "save"     # also: resume, pause, unpause, destroy, crash-qemu (per domain)
//! domain = 1
//!
//! [[step]]
//! at_ms = 1500
//! action = "crash-qemu"
//! domain = 1
//! on_command = "add-fd"   # not at once: as the next add-fd reaches QEMU
//!
//! [[step]]
//! at_ms = 2500
//! action = "crash-domain"  # driver domain 9 dies: its backends stop answering
//! domain = 9
//!
//! [faults]
//! silent_frontend = 0.0   # chance that a guest never starts a device's frontend
//! reorder = true          # deliver answers across connections in a seeded random order
//! max_jitter_ms = 2       # up to this much virtual time between two steps
//! qemu_crash = 0.0        # chance that QEMU dies as a QMP message reaches it
//! script_slow = 0.0       # chance that a hotplug script takes slow_script_ms
//! slow_script_ms = 45000
//! script_fail = 0.0       # chance that a hotplug script exits 1
//! script_hang = 0.0       # chance that a hotplug script never ends (killed at 40 s)
//! conflicts = 0.0         # chance that a node a toolstack transaction read is rewritten
//! qemu_late_write = false # QEMU 7.2's second, unguarded Closed before its unplug deletion
//! driver_domain_death = 0.0 # chance that each driver domain dies, at a seeded moment
//!                           # between the first and the last step
//! ```

use serde::Deserialize;
use thiserror::Error;
use xsio_vbd::Vbd;

/// A whole scenario, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Short name, shown in traces.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// The guests.
    pub domains: Vec<Domain>,
    /// The driver domains: domains that run backends for the guests' `phy` disks and
    /// vifs (blkback, netback), in domid order.
    pub drivers: Vec<u32>,
    /// What happens, in time order.
    pub steps: Vec<Step>,
    /// What goes wrong.
    pub faults: Faults,
}

/// A guest domain and its devices.
#[derive(Clone, Debug, PartialEq)]
pub struct Domain {
    /// The domain id (1 or more; 0 is the toolstack's).
    pub domid: u32,
    /// Its block devices.
    pub devices: Vec<Device>,
    /// Its network interfaces (`vif0`, `vif1`, ...: netback in dom0, the `vif-bridge`
    /// hotplug script).
    pub vifs: Vec<Vif>,
    /// Whether it has a display: a framebuffer (`vfb0`) and a keyboard (`vkbd0`), both
    /// served by its QEMU.
    pub vfb: bool,
}

/// A network interface of a guest.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vif {
    /// The bridge its backend joins.
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// The domain of its backend (netback): 0, or a driver domain.
    #[serde(default)]
    pub backend: u32,
}

fn default_bridge() -> String {
    "xenbr0".to_owned()
}

/// A block device of a guest.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// The guest's name for it.
    pub vdev: Vbd,
    /// Disk or CD-ROM.
    pub kind: DeviceKind,
    /// The image the backend serves.
    pub params: String,
    /// The domain of its backend: 0, or a driver domain (`phy` disks only).
    pub backend: u32,
}

/// What a block device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A read-write disk (`xen-disk`).
    Disk,
    /// A read-only CD-ROM (`xen-cdrom`).
    Cdrom,
    /// A read-write disk served by dom0's kernel (`blkback`, backend kind `vbd`), set up
    /// by the `block` hotplug script; it does not depend on QEMU.
    Phy,
}

/// One thing the toolstack does at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Virtual milliseconds from the start.
    pub at_ms: u64,
    /// What.
    pub action: Action,
    /// To which domain (`None`: every domain).
    pub domain: Option<u32>,
    /// To which device (`None`: every device of the domain).
    pub device: Option<Vbd>,
    /// The image an [`Action::Insert`] puts in the drive.
    pub medium: Option<String>,
    /// For [`Action::CrashQemu`]: QEMU dies as the next QMP command of this name reaches
    /// it, instead of at once (a crash in the middle of an operation).
    pub on_command: Option<String>,
}

/// What a [`Step`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Create the device areas and start the backends and frontends.
    Create,
    /// Remove devices: `online`=0 and Closing, wait for Closed (10 s), remove the areas.
    Remove,
    /// Save the device model's state (`xsio-dm`'s `Save`: `stop`, `add-fd`,
    /// `xen-save-devices-state`, `remove-fd`).
    Save,
    /// Let the guest run again after a save (`xsio-dm`'s `Control`: `cont`, then the
    /// saved state's fd sets).
    Resume,
    /// A user pauses the guest (`xl pause`): its QEMU stays alive.
    Pause,
    /// The user unpauses it.
    Unpause,
    /// Destroy the domain: QEMU is told to quit (`xsio-dm`'s `Shutdown`) while every
    /// device is removed with force ON (`xsio-device`'s `MultiDev::remove_all`).
    Destroy,
    /// QEMU dies now (SIGSEGV): its backends stop where they are.
    CrashQemu,
    /// A driver domain dies (backend domain death): its backends stop answering, and
    /// nothing of it cleans up after them.
    CrashDomain,
    /// Put the step's `medium` into CD-ROM drives (`xsio-cdrom`'s `MediaChange` over QMP:
    /// the per-domain lock, `eject`, the image opened read-only and passed with `add-fd`,
    /// `blockdev-change-medium` on `/dev/fdset/N`, `remove-fd`, xenstore's `params`).
    Insert,
    /// Empty CD-ROM drives (`MediaChange`: `eject`, then xenstore's `params` = "").
    Eject,
}

/// Faults to inject, each drawn from the run's seed.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// The chance (0 to 1) that a device's frontend never starts (a guest that ignores
    /// the device): its removal then ends with the waiter's timeout and a forced destroy.
    pub silent_frontend: f64,
    /// Deliver answers and events across connections in a seeded random order instead of
    /// the order they were produced (each connection keeps its own order, as a socket does).
    pub reorder: bool,
    /// Up to this many virtual milliseconds between two steps of the world.
    pub max_jitter_ms: u64,
    /// The chance (0 to 1) that QEMU dies as a QMP message reaches it (QEMU crashing at
    /// any step of start-up, save, resume or shutdown).
    pub qemu_crash: f64,
    /// The chance that a hotplug script takes `slow_script_ms`.
    pub script_slow: f64,
    /// How long a slow script takes (past the hotplug timeout of 40 s, it is killed).
    pub slow_script_ms: u64,
    /// The chance that a hotplug script exits 1.
    pub script_fail: f64,
    /// The chance that a hotplug script never ends by itself.
    pub script_hang: f64,
    /// The chance that another dom0 process rewrites (with its own value, in its own
    /// transaction) a node the toolstack's transaction just read, so that the toolstack's
    /// commit conflicts and starts again.
    pub conflicts: f64,
    /// QEMU's unplug as QEMU 7.2 does it (`testdata/xen-qemu/unplug.txt`): a second,
    /// unguarded write of Closed before it deletes the device's directories. Off by
    /// default: it is a known open finding (a write landing after the toolstack's prune
    /// recreates the emptied parents, and QEMU's deletion removes only the device).
    pub qemu_late_write: bool,
    /// The chance that each driver domain dies (as a `crash-domain` step would kill it),
    /// at a seeded moment between the scenario's first and last step.
    pub driver_domain_death: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            silent_frontend: 0.0,
            reorder: true,
            max_jitter_ms: 2,
            qemu_crash: 0.0,
            script_slow: 0.0,
            slow_script_ms: 45_000,
            script_fail: 0.0,
            script_hang: 0.0,
            conflicts: 0.0,
            qemu_late_write: false,
            driver_domain_death: 0.0,
        }
    }
}

/// Why a scenario file was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// Not TOML of the expected shape.
    #[error("scenario is not valid: {0}")]
    Toml(#[from] toml::de::Error),
    /// A device name that is not a VBD name.
    #[error("device {name:?} of domain {domid}: {source}")]
    Vdev {
        /// The domain.
        domid: u32,
        /// The name given.
        name: String,
        /// Why it is not one.
        source: xsio_vbd::ParseError,
    },
    /// Something the file says that cannot be.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "domain")]
    domains: Vec<FileDomain>,
    #[serde(default, rename = "step")]
    steps: Vec<FileStep>,
    #[serde(default)]
    faults: Faults,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDomain {
    domid: u32,
    /// This many domains, `domid`, `domid + 1`, ..., each with these devices.
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    devices: Vec<FileDevice>,
    #[serde(default)]
    vifs: Vec<Vif>,
    #[serde(default)]
    vfb: bool,
    /// A driver domain: it runs backends for the guests, and has no devices of its own.
    #[serde(default)]
    driver: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDevice {
    vdev: String,
    kind: DeviceKind,
    params: String,
    #[serde(default)]
    backend: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStep {
    at_ms: u64,
    action: Action,
    domain: Option<u32>,
    device: Option<String>,
    /// The image of an `insert`.
    medium: Option<String>,
    /// The QMP command a `crash-qemu` waits for.
    on_command: Option<String>,
    /// With no `domain`: the k-th domain (in domid order, from 0) acts at
    /// `at_ms + k * stagger_ms` instead of all at once (a host's guests are not all created
    /// or destroyed in the same millisecond).
    #[serde(default)]
    stagger_ms: u64,
}

impl Scenario {
    /// Parses and checks a scenario file's text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let file: File = toml::from_str(text)?;
        let mut domains = Vec::new();
        let mut drivers = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for d in file.domains {
            if d.count == 0 || d.domid.checked_add(d.count - 1).is_none() {
                return Err(ScenarioError::Invalid(format!(
                    "domain {}: count {} does not fit",
                    d.domid, d.count
                )));
            }
            if d.domid == 0 {
                return Err(ScenarioError::Invalid(
                    "domain 0 is the toolstack's; guests start at 1".into(),
                ));
            }
            for domid in d.domid..=d.domid + (d.count - 1) {
                if !seen.insert(domid) {
                    return Err(ScenarioError::Invalid(format!(
                        "domain {domid} is listed twice"
                    )));
                }
            }
            if d.driver {
                if !d.devices.is_empty() || !d.vifs.is_empty() || d.vfb {
                    return Err(ScenarioError::Invalid(format!(
                        "driver domain {} serves other domains' devices and has none of its own",
                        d.domid
                    )));
                }
                drivers.extend(d.domid..=d.domid + (d.count - 1));
                continue;
            }
            let mut devices: Vec<Device> = Vec::new();
            for dev in d.devices {
                let vdev = parse_vdev(d.domid, &dev.vdev)?;
                if devices
                    .iter()
                    .any(|seen| seen.vdev.number() == vdev.number())
                {
                    return Err(ScenarioError::Invalid(format!(
                        "domain {}: device {} is listed twice",
                        d.domid, dev.vdev
                    )));
                }
                if dev.backend != 0 && dev.kind != DeviceKind::Phy {
                    return Err(ScenarioError::Invalid(format!(
                        "domain {}: device {} is served by its QEMU, not by domain {}",
                        d.domid, dev.vdev, dev.backend
                    )));
                }
                devices.push(Device {
                    vdev,
                    kind: dev.kind,
                    params: dev.params,
                    backend: dev.backend,
                });
            }
            for domid in d.domid..=d.domid + (d.count - 1) {
                domains.push(Domain {
                    domid,
                    devices: devices.clone(),
                    vifs: d.vifs.clone(),
                    vfb: d.vfb,
                });
            }
        }
        drivers.sort_unstable();
        let backends = domains
            .iter()
            .flat_map(|d| d.devices.iter().map(|dev| dev.backend))
            .chain(
                domains
                    .iter()
                    .flat_map(|d| d.vifs.iter().map(|v| v.backend)),
            );
        for backend in backends {
            if backend != 0 && drivers.binary_search(&backend).is_err() {
                return Err(ScenarioError::Invalid(format!(
                    "a device's backend is in domain {backend}, which is not a driver domain"
                )));
            }
        }
        let mut steps = Vec::new();
        for s in file.steps {
            if let Some(domid) = s.domain
                && drivers.binary_search(&domid).is_ok()
            {
                if s.action != Action::CrashDomain {
                    return Err(ScenarioError::Invalid(format!(
                        "a step at {} ms names driver domain {domid}: only crash-domain does",
                        s.at_ms
                    )));
                }
                steps.push(Step {
                    at_ms: s.at_ms,
                    action: s.action,
                    domain: s.domain,
                    device: None,
                    medium: None,
                    on_command: None,
                });
                continue;
            }
            if s.action == Action::CrashDomain {
                return Err(ScenarioError::Invalid(format!(
                    "the crash-domain at {} ms names no driver domain",
                    s.at_ms
                )));
            }
            let named: Vec<&Domain> = match s.domain {
                None => domains.iter().collect(),
                Some(domid) => match domains.iter().find(|d| d.domid == domid) {
                    Some(d) => vec![d],
                    None => {
                        return Err(ScenarioError::Invalid(format!(
                            "a step at {} ms names domain {domid}, which is not listed",
                            s.at_ms
                        )));
                    }
                },
            };
            let media = matches!(s.action, Action::Insert | Action::Eject);
            match (s.action, s.medium.as_deref()) {
                (Action::Insert, None | Some("")) => {
                    return Err(ScenarioError::Invalid(format!(
                        "the insert at {} ms needs a medium (an image path)",
                        s.at_ms
                    )));
                }
                (Action::Insert, _) | (_, None) => {}
                (_, Some(_)) => {
                    return Err(ScenarioError::Invalid(format!(
                        "the step at {} ms has a medium, which only an insert takes",
                        s.at_ms
                    )));
                }
            }
            if s.on_command.is_some() && s.action != Action::CrashQemu {
                return Err(ScenarioError::Invalid(format!(
                    "the step at {} ms has on_command, which only crash-qemu takes",
                    s.at_ms
                )));
            }
            if media
                && !named
                    .iter()
                    .any(|d| d.devices.iter().any(|dev| dev.kind == DeviceKind::Cdrom))
            {
                return Err(ScenarioError::Invalid(format!(
                    "the media change at {} ms names no domain with a CD-ROM",
                    s.at_ms
                )));
            }
            let device = match &s.device {
                None => None,
                Some(name) => {
                    let domid = s.domain.unwrap_or(0);
                    let vdev = parse_vdev(domid, name)?;
                    if !named.iter().any(|d| {
                        d.devices.iter().any(|dev| {
                            dev.vdev == vdev && (!media || dev.kind == DeviceKind::Cdrom)
                        })
                    }) {
                        return Err(ScenarioError::Invalid(format!(
                            "a step at {} ms names device {name}, which no domain it names has",
                            s.at_ms
                        )));
                    }
                    Some(vdev)
                }
            };
            if s.stagger_ms > 0 && s.domain.is_none() {
                let mut ids: Vec<u32> = domains.iter().map(|d| d.domid).collect();
                ids.sort_unstable();
                for (k, domid) in ids.into_iter().enumerate() {
                    let at_ms = (k as u64)
                        .checked_mul(s.stagger_ms)
                        .and_then(|offset| offset.checked_add(s.at_ms))
                        .ok_or_else(|| {
                            ScenarioError::Invalid(format!(
                                "a step at {} ms staggered by {} ms ends past the end of time",
                                s.at_ms, s.stagger_ms
                            ))
                        })?;
                    steps.push(Step {
                        at_ms,
                        action: s.action,
                        domain: Some(domid),
                        device,
                        medium: s.medium.clone(),
                        on_command: s.on_command.clone(),
                    });
                }
                continue;
            }
            steps.push(Step {
                at_ms: s.at_ms,
                action: s.action,
                domain: s.domain,
                device,
                medium: s.medium,
                on_command: s.on_command,
            });
        }
        // A stable sort keeps the file's order for steps at the same time.
        steps.sort_by_key(|s| s.at_ms);
        let faults = file.faults;
        for (name, p) in [
            ("silent_frontend", faults.silent_frontend),
            ("qemu_crash", faults.qemu_crash),
            ("script_slow", faults.script_slow),
            ("script_fail", faults.script_fail),
            ("script_hang", faults.script_hang),
            ("conflicts", faults.conflicts),
            ("driver_domain_death", faults.driver_domain_death),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ScenarioError::Invalid(format!(
                    "faults.{name} is a chance between 0 and 1, not {p}"
                )));
            }
        }
        Ok(Scenario {
            name: file.name,
            description: file.description,
            domains,
            drivers,
            steps,
            faults,
        })
    }
}

fn one() -> u32 {
    1
}

fn parse_vdev(domid: u32, name: &str) -> Result<Vbd, ScenarioError> {
    Vbd::parse(name).map_err(|source| ScenarioError::Vdev {
        domid,
        name: name.to_owned(),
        source,
    })
}

/// A test scenario's text: guest 1 with one disk, `xvda` (`/d`), and `steps`, each
/// `(at_ms, action)` on guest 1, in the order given; `faults`, the keys of a `[faults]`
/// table (empty: no table).
#[cfg(test)]
pub(crate) fn one_disk(steps: &[(u64, &str)], faults: &str) -> String {
    let mut text = String::from(
        "name = \"test\"\n[[domain]]\ndomid = 1\n\
         devices = [{ vdev = \"xvda\", kind = \"disk\", params = \"/d\" }]\n",
    );
    for (at_ms, action) in steps {
        text += &format!("[[step]]\nat_ms = {at_ms}\naction = \"{action}\"\ndomain = 1\n");
    }
    if !faults.is_empty() {
        text += &format!("[faults]\n{faults}\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remove listed before create: the parse sorts them.
    fn two() -> String {
        one_disk(&[(5, "remove"), (0, "create")], "")
    }

    #[test]
    fn steps_come_out_in_time_order() {
        let s = Scenario::parse(&two()).unwrap();
        assert_eq!(s.steps[0].action, Action::Create);
        assert_eq!(s.steps[1].action, Action::Remove);
        assert_eq!(s.domains[0].devices[0].vdev.number(), 51712);
        assert_eq!(s.faults, Faults::default());
    }

    #[test]
    fn a_count_makes_many_domains_and_a_step_without_domain_names_them_all() {
        let text = r#"
            name = "many"
            [[domain]]
            domid = 10
            count = 3
            devices = [{ vdev = "xvda", kind = "disk", params = "/d" }]
            [[step]]
            at_ms = 0
            action = "create"
        "#;
        let s = Scenario::parse(text).unwrap();
        let ids: Vec<u32> = s.domains.iter().map(|d| d.domid).collect();
        assert_eq!(ids, [10, 11, 12]);
        assert_eq!(s.steps[0].domain, None);
        let overlap = format!("{text}\n[[domain]]\ndomid = 12\n");
        assert!(
            Scenario::parse(&overlap)
                .unwrap_err()
                .to_string()
                .contains("domain 12 is listed twice")
        );
        let huge = text.replace("count = 3", &format!("count = {}", u32::MAX));
        assert!(
            Scenario::parse(&huge)
                .unwrap_err()
                .to_string()
                .contains("does not fit")
        );
    }

    #[test]
    fn vifs_are_listed_with_a_default_bridge() {
        let text = two().replace(
            "devices = [{ vdev = \"xvda\", kind = \"disk\", params = \"/d\" }]",
            "devices = []\nvifs = [{}, { bridge = \"xenbr1\" }]",
        );
        let s = Scenario::parse(&text).unwrap();
        let bridges: Vec<&str> = s.domains[0]
            .vifs
            .iter()
            .map(|v| v.bridge.as_str())
            .collect();
        assert_eq!(bridges, ["xenbr0", "xenbr1"]);
        assert!(s.domains[0].devices.is_empty());
    }

    #[test]
    fn a_staggered_step_becomes_one_step_per_domain_in_domid_order() {
        let text = r#"
            name = "staggered"
            [[domain]]
            domid = 20
            devices = [{ vdev = "xvda", kind = "disk", params = "/d" }]
            [[domain]]
            domid = 10
            count = 2
            devices = [{ vdev = "xvda", kind = "disk", params = "/d" }]
            [[step]]
            at_ms = 100
            action = "remove"
            stagger_ms = 7
            [[step]]
            at_ms = 0
            action = "create"
        "#;
        let s = Scenario::parse(text).unwrap();
        let steps: Vec<(u64, Action, Option<u32>)> = s
            .steps
            .iter()
            .map(|s| (s.at_ms, s.action, s.domain))
            .collect();
        assert_eq!(
            steps,
            [
                (0, Action::Create, None),
                (100, Action::Remove, Some(10)),
                (107, Action::Remove, Some(11)),
                (114, Action::Remove, Some(20)),
            ]
        );
        let overflow = text.replace("stagger_ms = 7", &format!("stagger_ms = {}", u64::MAX));
        assert!(
            Scenario::parse(&overflow)
                .unwrap_err()
                .to_string()
                .contains("end of time")
        );
    }

    #[test]
    fn mistakes_are_named() {
        let two = two();
        let bad = [
            (two.replace("xvda", "xvd"), "xvd"),
            (two.replace("domid = 1", "domid = 0"), "domain 0"),
            (
                two.replace("domain = 1\n[[step]]", "domain = 2\n[[step]]"),
                "domain 2",
            ),
            (
                two.replace("action = \"remove\"", "action = \"explode\""),
                "explode",
            ),
            (
                format!("{two}\n[faults]\nsilent_frontend = 2.0"),
                "between 0 and 1",
            ),
            (format!("{two}\n[faults]\nsilent = 1"), "silent"),
            (
                format!("{two}\n[faults]\nqemu_crash = -0.5"),
                "faults.qemu_crash is a chance",
            ),
        ];
        for (text, needle) in bad {
            let err = Scenario::parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }
}

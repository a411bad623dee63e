//! Which hotplug scripts a device runs, with which arguments and environment (libxl's
//! `libxl__get_hotplug_script_info` for Linux).
//!
//! libxl asks again with `num_exec` + 1 after each successful run until the answer is
//! "none": block backends (`vbd`, `vbd3`) run one script, `vif` backends one (two for an
//! emulated NIC, `type` = `vif_ioemu`), other kinds none. The script path is the
//! backend's `script` key. Where libxl fails because that key is missing, this crate runs
//! no script: a device written by another toolstack may have none (documented
//! difference).

use crate::device::Device;

/// Which way a script runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    Add,
    Remove,
}

/// A script to run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Script {
    pub(crate) argv: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
}

/// The backend keys the scripts of `device` need, read once before the first run.
pub(crate) fn keys_needed(device: &Device) -> &'static [&'static str] {
    match device.backend_kind.as_str() {
        "vbd" | "vbd3" => &["script"],
        "vif" => &["script", "type", "vifname", "gatewaydev"],
        _ => &[],
    }
}

/// The `num_exec`-th script of `device` for `action`, given the values of
/// [`keys_needed`] (in that order); `None` when there is no (further) script.
pub(crate) fn script(
    device: &Device,
    action: Action,
    num_exec: u32,
    values: &[Option<String>],
) -> Option<Script> {
    let value = |key: &str| {
        let index = keys_needed(device).iter().position(|k| *k == key)?;
        values.get(index)?.clone()
    };
    let path = value("script").filter(|p| !p.is_empty())?;
    let mut env = vec![
        ("script".to_owned(), path.clone()),
        ("XENBUS_TYPE".to_owned(), device.backend_kind.clone()),
        ("XENBUS_PATH".to_owned(), device.xenbus_path()),
        ("XENBUS_BASE_PATH".to_owned(), "backend".to_owned()),
    ];
    let argv = match (device.backend_kind.as_str(), num_exec) {
        ("vbd" | "vbd3", 0) => vec![path, verb(action).to_owned()],
        ("vif", 0 | 1) => {
            let name = value("vifname")
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("vif{}.{}", device.frontend_domid, device.devid));
            env.push(("vif".to_owned(), name.clone()));
            env.push(("netdev".to_owned(), value("gatewaydev").unwrap_or_default()));
            if num_exec == 0 {
                let online = match action {
                    Action::Add => "online",
                    Action::Remove => "offline",
                };
                vec![path, online.to_owned(), "type_if=vif".to_owned()]
            } else if value("type").as_deref() == Some("vif_ioemu") {
                env.push(("INTERFACE".to_owned(), format!("{name}-emu")));
                vec![path, verb(action).to_owned(), "type_if=tap".to_owned()]
            } else {
                return None;
            }
        }
        _ => return None,
    };
    Some(Script { argv, env })
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Add => "add",
        Action::Remove => "remove",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn block_backends_run_one_script_with_libxl_s_arguments() {
        let disk = Device::new("vbd", 7, 51712);
        let values = [some("/etc/xen/scripts/block")];
        let first = script(&disk, Action::Remove, 0, &values).unwrap();
        assert_eq!(first.argv, ["/etc/xen/scripts/block", "remove"]);
        let env = crate::borrowed(&first.env);
        assert_eq!(
            env,
            [
                ("script", "/etc/xen/scripts/block"),
                ("XENBUS_TYPE", "vbd"),
                ("XENBUS_PATH", "backend/vbd/7/51712"),
                ("XENBUS_BASE_PATH", "backend"),
            ]
        );
        assert_eq!(script(&disk, Action::Remove, 1, &values), None);
        assert_eq!(
            script(&disk, Action::Add, 0, &[None]),
            None,
            "no script key"
        );
        let qdisk = Device::new("vbd", 7, 51712).with_backend(0, "qdisk");
        assert!(keys_needed(&qdisk).is_empty());
        assert_eq!(script(&qdisk, Action::Add, 0, &[]), None);
    }

    #[test]
    fn vif_runs_online_then_tap_for_an_emulated_nic() {
        let nic = Device::new("vif", 3, 0);
        let plain = [some("/s/vif-bridge"), some("vif"), None, None];
        let first = script(&nic, Action::Add, 0, &plain).unwrap();
        assert_eq!(first.argv, ["/s/vif-bridge", "online", "type_if=vif"]);
        assert!(first.env.contains(&("vif".into(), "vif3.0".into())));
        assert!(first.env.contains(&("netdev".into(), String::new())));
        assert_eq!(script(&nic, Action::Add, 1, &plain), None);

        let ioemu = [
            some("/s/vif-bridge"),
            some("vif_ioemu"),
            some("eth9"),
            some("br0"),
        ];
        let second = script(&nic, Action::Remove, 1, &ioemu).unwrap();
        assert_eq!(second.argv, ["/s/vif-bridge", "remove", "type_if=tap"]);
        assert!(second.env.contains(&("vif".into(), "eth9".into())));
        assert!(
            second
                .env
                .contains(&("INTERFACE".into(), "eth9-emu".into()))
        );
        assert!(second.env.contains(&("netdev".into(), "br0".into())));
        let off = script(&nic, Action::Remove, 0, &ioemu).unwrap();
        assert_eq!(off.argv[1], "offline");
        assert_eq!(script(&nic, Action::Remove, 2, &ioemu), None);
    }
}

//! Where a split device lives in xenstore, who may read it, and the toolstack's
//! transaction that creates it. (Its removal is `xsio-device`'s: one removal algorithm.)

use xsio_xs_wire::{Access, Perm};

use crate::state::XenbusState;
use xsio_ops::{Txn, TxnOp};

/// The two xenstore directories of one split device.
///
/// ```
/// use xsio_xenbus::DeviceAreas;
///
/// let areas = DeviceAreas::new(0, "qdisk", 1, "vbd", 51712);
/// assert_eq!(areas.backend_path(), "/local/domain/0/backend/qdisk/1/51712");
/// assert_eq!(areas.frontend_path(), "/local/domain/1/device/vbd/51712");
/// assert_eq!(areas.backend_key("state"), "/local/domain/0/backend/qdisk/1/51712/state");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceAreas {
    /// The domain running the backend (0 for dom0's QEMU).
    pub backend_domid: u32,
    /// The backend kind in the path (`qdisk` for QEMU's xen-block, `vbd` for blkback).
    pub backend_kind: String,
    /// The guest.
    pub frontend_domid: u32,
    /// The frontend kind in the path (`vbd` for every block device).
    pub frontend_kind: String,
    /// The device id (for block devices, the `virtual-device` number).
    pub devid: u32,
}

impl DeviceAreas {
    /// A device's areas.
    pub fn new(
        backend_domid: u32,
        backend_kind: impl Into<String>,
        frontend_domid: u32,
        frontend_kind: impl Into<String>,
        devid: u32,
    ) -> DeviceAreas {
        DeviceAreas {
            backend_domid,
            backend_kind: backend_kind.into(),
            frontend_domid,
            frontend_kind: frontend_kind.into(),
            devid,
        }
    }

    /// `/local/domain/<backend>/backend/<kind>/<guest>/<devid>`.
    pub fn backend_path(&self) -> String {
        format!(
            "/local/domain/{}/backend/{}/{}/{}",
            self.backend_domid, self.backend_kind, self.frontend_domid, self.devid
        )
    }

    /// `/local/domain/<guest>/device/<kind>/<devid>`.
    pub fn frontend_path(&self) -> String {
        format!(
            "/local/domain/{}/device/{}/{}",
            self.frontend_domid, self.frontend_kind, self.devid
        )
    }

    /// A key in the backend directory.
    pub fn backend_key(&self, key: &str) -> String {
        format!("{}/{key}", self.backend_path())
    }

    /// A key in the frontend directory.
    pub fn frontend_key(&self, key: &str) -> String {
        format!("{}/{key}", self.frontend_path())
    }

    /// The backend directory's permissions: the backend domain owns it, the guest reads it.
    pub fn backend_perms(&self) -> Vec<Perm> {
        vec![
            Perm::new(Access::None, self.backend_domid),
            Perm::new(Access::Read, self.frontend_domid),
        ]
    }

    /// The frontend directory's permissions: the guest owns it, the backend domain reads it.
    pub fn frontend_perms(&self) -> Vec<Perm> {
        vec![
            Perm::new(Access::None, self.frontend_domid),
            Perm::new(Access::Read, self.backend_domid),
        ]
    }

    /// The toolstack's transaction that creates both directories, as libxl and QEMU's
    /// xen-bus helpers do: each directory made with its permissions, the generic keys
    /// (`frontend`, `frontend-id`, `online`=1, `state`=1 in the backend; `backend`,
    /// `backend-id`, `state`=1 in the frontend), then the device's own keys.
    ///
    /// Every node is written with its directory's permissions (each key gets an explicit
    /// `SetPerms`), so the result does not depend on how a daemon inherits permissions.
    /// The directories are expected to be absent (remove an old device first, with
    /// `xsio-device`'s removal): keys left from an earlier device would survive.
    pub fn create(
        &self,
        backend_keys: &[(String, String)],
        frontend_keys: &[(String, String)],
    ) -> Txn {
        let mut ops = Vec::new();
        let be = self.backend_path();
        let fe = self.frontend_path();
        let initialising = XenbusState::Initialising.wire().to_owned();

        let generic_be = [
            ("frontend".to_owned(), fe.clone()),
            ("frontend-id".to_owned(), self.frontend_domid.to_string()),
            ("online".to_owned(), "1".to_owned()),
            ("state".to_owned(), initialising.clone()),
        ];
        let be_keys = generic_be.iter().chain(backend_keys);
        push_area(&mut ops, &be, &self.backend_perms(), be_keys);
        let generic_fe = [
            ("backend".to_owned(), be.clone()),
            ("backend-id".to_owned(), self.backend_domid.to_string()),
            ("state".to_owned(), initialising),
        ];
        let fe_keys = generic_fe.iter().chain(frontend_keys);
        push_area(&mut ops, &fe, &self.frontend_perms(), fe_keys);
        Txn {
            only_if_exists: None,
            ops,
        }
    }
}

/// Creates the directory `dir` and writes `keys` in it, every node with `perms`.
fn push_area<'k>(
    ops: &mut Vec<TxnOp>,
    dir: &str,
    perms: &[Perm],
    keys: impl Iterator<Item = &'k (String, String)>,
) {
    ops.push(TxnOp::Mkdir {
        path: dir.to_owned(),
    });
    ops.push(TxnOp::SetPerms {
        path: dir.to_owned(),
        perms: perms.to_vec(),
    });
    for (key, value) in keys {
        let path = format!("{dir}/{key}");
        ops.push(TxnOp::write(path.clone(), value.as_str()));
        ops.push(TxnOp::SetPerms {
            path,
            perms: perms.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_gives_each_domain_the_right_access() {
        let areas = DeviceAreas::new(0, "qdisk", 7, "vbd", 5632);
        let txn = areas.create(&[("params".into(), "/img".into())], &[]);
        let perms_of = |path: &str| {
            txn.ops.iter().rev().find_map(|op| match op {
                TxnOp::SetPerms { path: p, perms } if p == path => Some(perms.clone()),
                _ => None,
            })
        };
        let be = areas.backend_path();
        let fe = areas.frontend_path();
        let be_perms: Vec<String> = perms_of(&be)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        let fe_perms: Vec<String> = perms_of(&fe)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(be_perms, ["n0", "r7"]);
        assert_eq!(fe_perms, ["n7", "r0"]);
        assert_eq!(
            perms_of(&format!("{be}/params")).unwrap(),
            areas.backend_perms()
        );
        assert!(
            txn.ops
                .contains(&TxnOp::write(format!("{fe}/backend"), be.clone()))
        );
        assert!(txn.ops.contains(&TxnOp::write(format!("{be}/online"), "1")));
        assert!(txn.ops.contains(&TxnOp::write(format!("{be}/state"), "1")));
        assert!(txn.ops.contains(&TxnOp::write(format!("{fe}/state"), "1")));
    }
}

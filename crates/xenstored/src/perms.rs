//! Node permissions: the list a node carries and the access rule.

use std::fmt;
use std::sync::Arc;

// One permission type and one grammar in the workspace: the entries are `xsio-xs-wire`'s
// value types, parsed by its decoder; what lives here is the list a node carries and the
// access rule.
pub use xsio_xs_wire::{Access, Perm};

/// A node's permission list. Entry 0 names the owner, and its access is the default for every
/// domain without an entry of its own. Never empty. Shared, so copying one (every change that
/// fires watches carries one) costs no allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Perms(Arc<[Perm]>);

/// What a connection may do with one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Granted {
    pub(crate) read: bool,
    pub(crate) write: bool,
    pub(crate) owner: bool,
}

impl Granted {
    const ALL: Granted = Granted {
        read: true,
        write: true,
        owner: true,
    };
}

/// Who is asking: the facts the access rule needs about a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caller {
    pub(crate) domid: u32,
    pub(crate) privileged: bool,
    pub(crate) target: Option<u32>,
}

impl Perms {
    /// A list owned by `domid` granting `access` to everyone else.
    pub fn owned_by(domid: u32, access: Access) -> Self {
        Perms(Arc::new([Perm::new(access, domid)]))
    }

    /// Builds a list from its entries; `None` when `entries` is empty.
    pub fn from_entries(entries: Vec<Perm>) -> Option<Self> {
        (!entries.is_empty()).then(|| Perms(entries.into()))
    }

    /// The entries, owner first.
    pub fn entries(&self) -> &[Perm] {
        &self.0
    }

    /// The owning domain.
    pub fn owner(&self) -> u32 {
        self.0[0].domid
    }

    /// The same list with the owner replaced (what an unprivileged creator gets).
    pub(crate) fn with_owner(&self, domid: u32) -> Perms {
        let mut entries = self.0.to_vec();
        entries[0].domid = domid;
        Perms(entries.into())
    }

    /// What `caller` may do: the owner, privileged callers, and a domain whose target owns the
    /// node get everything; otherwise the first later entry naming the caller (or its target)
    /// decides, and the owner entry's access is the default.
    pub(crate) fn granted(&self, caller: Caller) -> Granted {
        let owner = self.owner();
        if caller.privileged || owner == caller.domid || caller.target == Some(owner) {
            return Granted::ALL;
        }
        let access = self.0[1..]
            .iter()
            .find(|p| p.domid == caller.domid || caller.target == Some(p.domid))
            .map_or(self.0[0].access, |p| p.access);
        Granted {
            read: access.can_read(),
            write: access.can_write(),
            owner: false,
        }
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (idx, perm) in self.0.iter().enumerate() {
            if idx > 0 {
                f.write_str(",")?;
            }
            write!(f, "{perm}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(items: &[&str]) -> Perms {
        Perms::from_entries(items.iter().map(|s| s.parse().unwrap()).collect()).unwrap()
    }

    fn caller(domid: u32) -> Caller {
        Caller {
            domid,
            privileged: false,
            target: None,
        }
    }

    #[test]
    fn lists_are_never_empty_and_print_with_commas() {
        assert_eq!(Perms::from_entries(Vec::new()), None);
        assert_eq!(parse(&["b0", "r16", "w8"]).to_string(), "b0,r16,w8");
        assert_eq!(parse(&["n5", "r7"]).owner(), 5);
    }

    #[test]
    fn access_rule() {
        let perms = parse(&["r5", "w6", "n7"]);
        assert!(perms.granted(caller(5)).owner);
        let six = perms.granted(caller(6));
        assert!(six.write && !six.read && !six.owner);
        let seven = perms.granted(caller(7));
        assert!(!seven.read && !seven.write);
        let other = perms.granted(caller(9));
        assert!(other.read && !other.write);
        let dom0 = Caller {
            domid: 0,
            privileged: true,
            target: None,
        };
        assert!(perms.granted(dom0).owner);
        let stub = Caller {
            domid: 9,
            privileged: false,
            target: Some(5),
        };
        assert!(perms.granted(stub).owner);
    }
}

//! Node permissions: the list a node carries, its parsing and printing, and the access rule.

use std::fmt;

use xsio_xs_wire::ErrorKind;

// One permission type in the workspace: the entries are `xsio-xs-wire`'s value types; what
// lives here is the list a node carries, the daemon's lenient parsing, and the access rule.
pub use xsio_xs_wire::{Access, Perm};

/// A node's permission list. Entry 0 names the owner, and its access is the default for every
/// domain without an entry of its own. Never empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Perms(Box<[Perm]>);

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
        Perms(Box::new([Perm::new(access, domid)]))
    }

    /// Builds a list from its entries; `None` when `entries` is empty.
    pub fn from_entries(entries: Vec<Perm>) -> Option<Self> {
        (!entries.is_empty()).then(|| Perms(entries.into_boxed_slice()))
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
        let mut entries = self.0.clone();
        entries[0].domid = domid;
        Perms(entries)
    }

    /// Parses the wire form: one `<letter><domid>` string per entry.
    pub(crate) fn parse<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Result<Perms, ErrorKind> {
        let entries = items
            .into_iter()
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()?;
        Perms::from_entries(entries).ok_or(ErrorKind::Einval)
    }

    /// The wire form: every entry followed by a NUL.
    pub(crate) fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for perm in self.entries() {
            out.extend_from_slice(perm.to_string().as_bytes());
            out.push(0);
        }
        out
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

/// Parses one `<letter><number>` entry. The number follows C `strtol` with base 0 (leading
/// spaces, a sign, `0x` hex and `0` octal are accepted) because that is what clients may send;
/// trailing junk or a missing number is refused.
fn parse_entry(item: &[u8]) -> Result<Perm, ErrorKind> {
    let (&letter, number) = item.split_first().ok_or(ErrorKind::Einval)?;
    let access = Access::from_letter(char::from(letter)).ok_or(ErrorKind::Einval)?;
    let domid = parse_c_long(number).ok_or(ErrorKind::Einval)?;
    // C stores the parsed long in an unsigned int: negative ids wrap, as they do there.
    Ok(Perm::new(access, domid as u32))
}

/// `strtol(text, &end, 0)` that must consume everything; `None` on junk or overflow.
pub(crate) fn parse_c_long(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let text = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i64::from_str_radix(digits, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(items: &[&str]) -> Result<Perms, ErrorKind> {
        Perms::parse(items.iter().map(|s| s.as_bytes()))
    }

    fn caller(domid: u32) -> Caller {
        Caller {
            domid,
            privileged: false,
            target: None,
        }
    }

    #[test]
    fn parses_like_strtol_base_zero() {
        let perms = parse(&["b0", "r0x10", "w010", "n-1"]).unwrap();
        assert_eq!(perms.to_string(), "b0,r16,w8,n4294967295");
        for bad in ["", "x1", "r", "r1x", "r 1 ", "r0x"] {
            assert_eq!(parse(&[bad]), Err(ErrorKind::Einval), "{bad}");
        }
        assert_eq!(parse(&[]), Err(ErrorKind::Einval));
    }

    #[test]
    fn wire_form_has_a_nul_after_each_entry() {
        assert_eq!(parse(&["n5", "r7"]).unwrap().to_wire(), b"n5\0r7\0");
    }

    #[test]
    fn access_rule() {
        let perms = parse(&["r5", "w6", "n7"]).unwrap();
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

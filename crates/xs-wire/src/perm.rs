//! Permission strings: `n0`, `r5`, `w7`, `b0`.

use std::fmt;
use std::str::FromStr;

use crate::c_number::{Radix, c_u32};

/// What a permission entry grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: nothing.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write ("both").
    Both,
}

impl Access {
    /// The letter on the wire.
    pub const fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }

    /// The access a letter stands for.
    pub fn from_letter(letter: char) -> Option<Access> {
        match letter {
            'n' => Some(Access::None),
            'r' => Some(Access::Read),
            'w' => Some(Access::Write),
            'b' => Some(Access::Both),
            _ => None,
        }
    }

    /// Whether this access allows reading.
    pub const fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::Both)
    }

    /// Whether this access allows writing.
    pub const fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Both)
    }
}

/// One entry of a node's permission list: a letter and a domain id.
///
/// In a list, entry 0 names the owner, and its letter is the default for every domain
/// without an entry of its own.
///
/// ```
/// use xsio_xs_wire::{Access, Perm};
///
/// let perm: Perm = "r5".parse()?;
/// assert_eq!(perm, Perm::new(Access::Read, 5));
/// assert_eq!(perm.to_string(), "r5");
/// // Like libxenstore's strtoul(.., 0): hex and octal are read, and printed back in decimal.
/// assert_eq!("b0x10".parse::<Perm>()?.to_string(), "b16");
/// assert!("x1".parse::<Perm>().is_err());
/// # Ok::<(), xsio_xs_wire::PermError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perm {
    /// What the domain may do.
    pub access: Access,
    /// The domain.
    pub domid: u32,
}

impl Perm {
    /// An entry.
    pub const fn new(access: Access, domid: u32) -> Perm {
        Perm { access, domid }
    }
}

/// Why a permission string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermError {
    /// The string is empty.
    #[error("empty permission")]
    Empty,
    /// The first character is not one of `n`, `r`, `w`, `b`.
    #[error("permission letter must be n, r, w or b")]
    BadLetter,
    /// The domain id is missing, has junk, or does not fit in 32 bits.
    #[error("bad domain id in permission")]
    BadDomid,
}

impl FromStr for Perm {
    type Err = PermError;

    /// Parses `<letter><domid>`. The domid is read as C's `strtoul(s, &end, 0)` reads it
    /// (decimal, `0x` hex, leading-`0` octal), but without signs or spaces: what a client
    /// meets in a daemon's reply. A daemon reading requests uses [`Perm::parse_lenient`].
    fn from_str(s: &str) -> Result<Perm, PermError> {
        let (access, number) = split_letter(s)?;
        if !number.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(PermError::BadDomid);
        }
        let domid = c_u32(number.as_bytes(), Radix::C).ok_or(PermError::BadDomid)?;
        Ok(Perm { access, domid })
    }
}

impl Perm {
    /// Parses `<letter><domid>` as Xen's C daemon does (`xs_strings_to_perms`: the domid is
    /// `strtol(s, &end, 0)` and nothing may follow it): leading white space and a sign are
    /// accepted too, a negative domid wraps to 32 bits (`r-1` is domain 4294967295, and
    /// libxenstore prints domids at or above 2^31 that way), and a domid that does not fit
    /// 32 bits is refused where C would truncate it. The grammar is the crate's one
    /// lenient number grammar (see [`Packet::decode_lenient`](crate::Packet::decode_lenient)).
    ///
    /// ```
    /// use xsio_xs_wire::{Access, Perm};
    ///
    /// assert_eq!(Perm::parse_lenient("r-1")?, Perm::new(Access::Read, u32::MAX));
    /// assert_eq!(Perm::parse_lenient("b 0x10")?, Perm::new(Access::Both, 16));
    /// assert!("r-1".parse::<Perm>().is_err());
    /// assert!(Perm::parse_lenient("r4294967296").is_err());
    /// # Ok::<(), xsio_xs_wire::PermError>(())
    /// ```
    pub fn parse_lenient(s: &str) -> Result<Perm, PermError> {
        let (access, number) = split_letter(s)?;
        let domid = c_u32(number.as_bytes(), Radix::C).ok_or(PermError::BadDomid)?;
        Ok(Perm { access, domid })
    }
}

fn split_letter(s: &str) -> Result<(Access, &str), PermError> {
    let mut chars = s.chars();
    let letter = chars.next().ok_or(PermError::Empty)?;
    let access = Access::from_letter(letter).ok_or(PermError::BadLetter)?;
    Ok((access, chars.as_str()))
}

/// Prints `<letter><decimal domid>`, as libxenstore and xenstored do.
impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_and_numbers() {
        assert_eq!("n0".parse(), Ok(Perm::new(Access::None, 0)));
        assert_eq!("w7".parse(), Ok(Perm::new(Access::Write, 7)));
        assert_eq!("r010".parse(), Ok(Perm::new(Access::Read, 8)));
        assert_eq!("b4294967295".parse(), Ok(Perm::new(Access::Both, u32::MAX)));
        assert_eq!("b4294967296".parse::<Perm>(), Err(PermError::BadDomid));
        assert_eq!("".parse::<Perm>(), Err(PermError::Empty));
        assert_eq!("r".parse::<Perm>(), Err(PermError::BadDomid));
        assert_eq!("r0x".parse::<Perm>(), Err(PermError::BadDomid));
        assert_eq!("r-1".parse::<Perm>(), Err(PermError::BadDomid));
        assert_eq!("r 1".parse::<Perm>(), Err(PermError::BadDomid));
        assert_eq!("r1x".parse::<Perm>(), Err(PermError::BadDomid));
        assert_eq!("R1".parse::<Perm>(), Err(PermError::BadLetter));
        assert!(Access::Both.can_read() && Access::Both.can_write());
        assert!(!Access::Read.can_write() && !Access::None.can_read());
    }
}

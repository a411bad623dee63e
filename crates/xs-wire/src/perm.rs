//! Permission strings: `n0`, `r5`, `w7`, `b0`.

use std::fmt;
use std::str::FromStr;

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
    /// (decimal, `0x` hex, leading-`0` octal), but without signs or spaces.
    fn from_str(s: &str) -> Result<Perm, PermError> {
        let mut chars = s.chars();
        let letter = chars.next().ok_or(PermError::Empty)?;
        let access = Access::from_letter(letter).ok_or(PermError::BadLetter)?;
        let domid = parse_c_uint(chars.as_str()).ok_or(PermError::BadDomid)?;
        Ok(Perm { access, domid })
    }
}

/// Prints `<letter><decimal domid>`, as libxenstore and xenstored do.
impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

fn parse_c_uint(digits: &str) -> Option<u32> {
    let (body, radix) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (hex, 16)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (&digits[1..], 8)
    } else {
        (digits, 10)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(body, radix).ok()
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

//! Numbers as Xen's C daemon reads them: the one place the lenient number grammar lives.
//!
//! xenstored 4.17 reads the domids of `INTRODUCE`, `RELEASE`, `RESUME`, `GET_DOMAIN_PATH`,
//! `IS_DOMAIN_INTRODUCED` and `SET_TARGET`, the event channel of `INTRODUCE` and the offset
//! of `DIRECTORY_PART` with `atoi`, which converts like `strtoul(s, &end, 10)` and stores the
//! result in an `unsigned int`; it reads the domid of a permission entry with
//! `strtol(s, &end, 0)` and refuses trailing bytes there. So, as C converts them:
//! - leading white space (space, `\t`, `\n`, `\v`, `\f`, `\r`) is skipped;
//! - an optional `+` or `-` follows; a `-` negates modulo 2^32, as the conversion to
//!   `unsigned int` does (`-1` is 4294967295);
//! - then the digits: always decimal for the request fields ([`Radix::Decimal`]: `010` is
//!   ten, leading zeros are not octal); for permissions ([`Radix::C`]) a `0x`/`0X` prefix
//!   means hex and a leading `0` octal (`r010` is domain 8, `r0x10` domain 16).
//!
//! Where C turns garbage into a number, we refuse the field (the daemon answers `EINVAL`),
//! knowingly:
//! - no digit at all (`atoi("abc")` is 0: `GET_DOMAIN_PATH abc` would answer
//!   `/local/domain/0`, and `INTRODUCE abc ...` would name dom0);
//! - bytes after the number (`atoi("7abc")` is 7);
//! - a magnitude that does not fit 32 bits (C truncates it: `r4294967296` would name dom0).

/// How the digits of a C number are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Radix {
    /// `strtoul(s, &end, 10)` / `atoi`: decimal digits only.
    Decimal,
    /// `strtol(s, &end, 0)`: `0x` hex, leading-`0` octal, else decimal.
    C,
}

/// A domid as Xen's C daemon reads one in a request (`atoi` where it reads the whole
/// field): `+7`, `007` and ` 7` are 7, `-1` is 4294967295; `abc`, `7abc` and values beyond
/// 32 bits are `None`. The one domid grammar of the workspace for text from a client: the
/// lenient request decoder uses it for every domid field.
///
/// ```
/// use xsio_xs_wire::parse_domid;
///
/// assert_eq!(parse_domid("+7"), Some(7));
/// assert_eq!(parse_domid("010"), Some(10));
/// assert_eq!(parse_domid("7abc"), None);
/// ```
pub fn parse_domid(text: &str) -> Option<u32> {
    c_u32(text.as_bytes(), Radix::Decimal)
}

/// The value of `field` read as C reads it (see the module doc), or `None`.
pub(crate) fn c_u32(field: &[u8], radix: Radix) -> Option<u32> {
    let (negative, magnitude) = c_magnitude(field, radix)?;
    let value = u32::try_from(magnitude).ok()?;
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

/// Like [`c_u32`] for a 64-bit field (the grant frame of `INTRODUCE`).
pub(crate) fn c_u64(field: &[u8], radix: Radix) -> Option<u64> {
    let (negative, magnitude) = c_magnitude(field, radix)?;
    Some(if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    })
}

fn c_magnitude(field: &[u8], radix: Radix) -> Option<(bool, u64)> {
    let start = field
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))?;
    let rest = &field[start..];
    let (negative, rest) = match rest.first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    let (base, digits) = match radix {
        Radix::Decimal => (10, rest),
        Radix::C => match rest {
            [b'0', b'x' | b'X', hex @ ..] => (16, hex),
            [b'0', octal @ ..] if !octal.is_empty() => (8, octal),
            _ => (10, rest),
        },
    };
    if digits.is_empty() || !digits.iter().all(|&b| char::from(b).is_digit(base)) {
        return None;
    }
    // Only ASCII digits are left, so the text is valid UTF-8.
    let digits = std::str::from_utf8(digits).ok()?;
    let magnitude = u64::from_str_radix(digits, base).ok()?;
    Some((negative, magnitude))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (field, what C's atoi gives as an unsigned int, what we give). The C column is
    /// glibc's conversion, worked out by hand from its documented rules.
    const DECIMAL_VECTORS: &[(&str, Option<u32>, Option<u32>)] = &[
        ("7", Some(7), Some(7)),
        ("+7", Some(7), Some(7)),
        ("007", Some(7), Some(7)),
        ("010", Some(10), Some(10)),
        (" \t7", Some(7), Some(7)),
        ("-1", Some(u32::MAX), Some(u32::MAX)),
        ("-0", Some(0), Some(0)),
        ("4294967295", Some(u32::MAX), Some(u32::MAX)),
        ("32752", Some(0x7ff0), Some(0x7ff0)),
        // C accepts these by reading a prefix or nothing; we refuse them.
        ("4294967296", Some(0), None),
        ("abc", Some(0), None),
        ("", Some(0), None),
        ("7abc", Some(7), None),
        ("7 ", Some(7), None),
        ("0x10", Some(0), None),
        ("+", Some(0), None),
        ("- 1", Some(0), None),
        ("+-1", Some(0), None),
        ("١", Some(0), None),
    ];

    #[test]
    fn request_numbers_follow_atoi_where_it_reads_a_whole_field() {
        for &(field, c, ours) in DECIMAL_VECTORS {
            assert_eq!(c_u32(field.as_bytes(), Radix::Decimal), ours, "{field:?}");
            if ours.is_some() {
                assert_eq!(ours, c, "{field:?}: we differ from C only by refusing");
            }
        }
    }

    #[test]
    fn permission_numbers_follow_strtol_base_zero() {
        for (field, expected) in [
            ("5", Some(5)),
            ("010", Some(8)),
            ("0x10", Some(16)),
            ("0X1f", Some(31)),
            ("0", Some(0)),
            (" 5", Some(5)),
            ("+5", Some(5)),
            ("-1", Some(u32::MAX)),
            ("-0x10", Some(16u32.wrapping_neg())),
            ("08", None),
            ("0x", None),
            ("0xg", None),
            ("5 ", None),
            ("", None),
            ("x5", None),
            ("0x100000000", None),
        ] {
            assert_eq!(c_u32(field.as_bytes(), Radix::C), expected, "{field:?}");
        }
    }

    #[test]
    fn sixty_four_bit_fields() {
        assert_eq!(
            c_u64(b"18446744073709551615", Radix::Decimal),
            Some(u64::MAX)
        );
        assert_eq!(c_u64(b"18446744073709551616", Radix::Decimal), None);
        assert_eq!(c_u64(b"-1", Radix::Decimal), Some(u64::MAX));
        assert_eq!(c_u64(b"0012", Radix::Decimal), Some(12));
    }
}

//! libxl's compatibility path: a bare number written in place of a name.

use crate::Vbd;

/// Why [`parse_raw`] refused its input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RawError {
    /// Neither a VBD name nor a number.
    #[error("neither a VBD name ({name}) nor a raw number")]
    Invalid {
        /// Why it is not a name.
        name: crate::ParseError,
    },
    /// A number above `i32::MAX`, which libxl cannot store as a device id.
    #[error("raw number above 2147483647")]
    TooLarge,
}

/// Reads a disk's `vdev` as libxl does for old configurations: a VBD name, or else a raw
/// `virtual-device` number in decimal, `0x` hexadecimal or `0`-prefixed octal, taken verbatim
/// (up to `i32::MAX`). Returns the number to write to xenstore.
///
/// Names take precedence, and unlike libxl there are no signs, spaces or empty inputs.
///
/// ```
/// use xsio_vbd::parse_raw;
/// assert_eq!(parse_raw("xvda"), Ok(51712));
/// assert_eq!(parse_raw("51712"), Ok(51712));
/// assert_eq!(parse_raw("0xca00"), Ok(51712));
/// assert_eq!(parse_raw("0145000"), Ok(51712));
/// assert!(parse_raw("").is_err());
/// ```
pub fn parse_raw(input: &str) -> Result<u32, RawError> {
    let name_error = match Vbd::parse(input) {
        Ok(vbd) => return Ok(vbd.number()),
        Err(e) => e,
    };
    let invalid = || RawError::Invalid {
        name: name_error.clone(),
    };
    let (digits, radix) = if let Some(hex) = input.strip_prefix("0x") {
        (hex, 16)
    } else if input.len() > 1 && input.starts_with('0') {
        (&input[1..], 8)
    } else {
        (input, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(invalid());
    }
    let value = u64::from_str_radix(digits, radix).map_err(|_| RawError::TooLarge)?;
    if value > i32::MAX as u64 {
        return Err(RawError::TooLarge);
    }
    Ok(value as u32)
}

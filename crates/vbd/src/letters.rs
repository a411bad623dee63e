//! Disk letters: bijective base 26 (`a` = 0, `z` = 25, `aa` = 26).

use std::fmt;

/// Decodes lower-case letters into a disk index, or `None` once the index reaches `limit`.
///
/// Stops at the first letter that takes the value past the limit, so no input length can
/// overflow (QEMU's parser wraps at 2^32 instead).
pub(crate) fn decode(letters: &str, limit: u32) -> Option<u32> {
    // Bijective base 26: each letter is a digit 1..=26; the index is the value minus one.
    let mut value: u64 = 0;
    for b in letters.bytes() {
        value = value * 26 + u64::from(b - b'a' + 1);
        if value > u64::from(limit) {
            return None;
        }
    }
    u32::try_from(value.checked_sub(1)?).ok()
}

/// Writes the letters of disk index `disk`.
pub(crate) fn write(f: &mut fmt::Formatter<'_>, disk: u32) -> fmt::Result {
    // At most 5 letters below 2^20, 7 below 2^32.
    let mut buf = [0u8; 8];
    let mut start = buf.len();
    let mut n = u64::from(disk) + 1;
    while n > 0 {
        n -= 1;
        start -= 1;
        buf[start] = b'a' + (n % 26) as u8;
        n /= 26;
    }
    for &b in &buf[start..] {
        fmt::Write::write_char(f, char::from(b))?;
    }
    Ok(())
}

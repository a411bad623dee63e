//! Name → device: the strict grammar of VBD names.

use nom::IResult;
use nom::bytes::complete::take_while;

use crate::{Style, Vbd, letters};

/// Why a VBD name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The name is empty.
    #[error("empty name")]
    Empty,
    /// The name does not start with `xvd`, `hd`, `sd` or `d`.
    #[error("unknown prefix: a VBD name starts with xvd, hd, sd or d")]
    UnknownPrefix,
    /// A character that the grammar never allows here (upper case, space, sign, ...).
    #[error("invalid character {ch:?} at byte {at}")]
    InvalidCharacter {
        /// The character.
        ch: char,
        /// Its byte offset in the name.
        at: usize,
    },
    /// The prefix is not followed by disk letters (or, for `d`, a disk number).
    #[error("missing disk after the prefix")]
    MissingDisk,
    /// `d<N>p` with no partition number after `p`.
    #[error("missing partition number after 'p'")]
    MissingPartition,
    /// A number with a leading zero (`xvda01`, `d010`): libxl reads these as octal, QEMU as
    /// decimal, so we refuse them.
    #[error("number with a leading zero at byte {at}")]
    LeadingZero {
        /// Byte offset of the zero.
        at: usize,
    },
    /// `xvda0`: the whole disk is written without a partition.
    #[error("explicit partition 0: the whole disk is written without a partition number")]
    ExplicitPartitionZero,
    /// The disk is beyond the limit of this form.
    #[error("disk out of range: {name} disks are below {limit}")]
    DiskOutOfRange {
        /// The form's prefix.
        name: &'static str,
        /// The exclusive limit.
        limit: u32,
    },
    /// The partition is beyond the limit of this form.
    #[error("partition out of range: {name} partitions are below {limit}")]
    PartitionOutOfRange {
        /// The form's prefix.
        name: &'static str,
        /// The exclusive limit.
        limit: u32,
    },
}

pub(crate) fn parse(name: &str) -> Result<Vbd, ParseError> {
    let first = name.chars().next().ok_or(ParseError::Empty)?;
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(ParseError::InvalidCharacter { ch: first, at: 0 });
    }
    let (style, rest) = [Style::Xvd, Style::Hd, Style::Sd, Style::D]
        .into_iter()
        .find_map(|style| name.strip_prefix(style.prefix()).map(|rest| (style, rest)))
        .ok_or(ParseError::UnknownPrefix)?;
    let cursor = Cursor { name, rest };
    match style {
        Style::D => parse_numeric(cursor),
        _ => parse_lettered(style, cursor),
    }
}

/// The unparsed tail of a name, and the whole name for error offsets.
struct Cursor<'a> {
    name: &'a str,
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> usize {
        self.name.len() - self.rest.len()
    }

    fn take(&mut self, pred: fn(char) -> bool) -> (&'a str, usize) {
        let at = self.offset();
        let res: IResult<&str, &str> = take_while(pred)(self.rest);
        // `take_while` on complete input never fails; fall back to "nothing taken" anyway.
        let (rest, taken) = res.unwrap_or((self.rest, ""));
        self.rest = rest;
        (taken, at)
    }

    /// An error for the first character left, or `Ok` when the name is fully consumed.
    fn finish(&self) -> Result<(), ParseError> {
        match self.next_char() {
            None => Ok(()),
            Some(ch) => Err(self.invalid(ch)),
        }
    }

    /// `ch`, the next character, does not belong here.
    fn invalid(&self, ch: char) -> ParseError {
        ParseError::InvalidCharacter {
            ch,
            at: self.offset(),
        }
    }

    fn next_char(&self) -> Option<char> {
        self.rest.chars().next()
    }
}

/// `xvd`, `hd`, `sd`: letters, then an optional decimal partition.
fn parse_lettered(style: Style, mut cursor: Cursor<'_>) -> Result<Vbd, ParseError> {
    let (disk_limit, partition_limit) = style.limits();
    let (letters, _) = cursor.take(|c| c.is_ascii_lowercase());
    if letters.is_empty() {
        return Err(match cursor.next_char() {
            Some(ch) if !ch.is_ascii_digit() => cursor.invalid(ch),
            _ => ParseError::MissingDisk,
        });
    }
    let disk = letters::decode(letters, disk_limit).ok_or(ParseError::DiskOutOfRange {
        name: style.prefix(),
        limit: disk_limit,
    })?;
    let (digits, at) = cursor.take(|c| c.is_ascii_digit());
    cursor.finish()?;
    let partition = match digits {
        "" => 0,
        "0" => return Err(ParseError::ExplicitPartitionZero),
        _ => decimal(digits, at, partition_limit).ok_or(ParseError::PartitionOutOfRange {
            name: style.prefix(),
            limit: partition_limit,
        })??,
    };
    Vbd::new(style, disk, partition)
}

/// `d<disk>[p<partition>]`.
fn parse_numeric(mut cursor: Cursor<'_>) -> Result<Vbd, ParseError> {
    let (disk_limit, partition_limit) = Style::D.limits();
    let (digits, at) = cursor.take(|c| c.is_ascii_digit());
    if digits.is_empty() {
        return Err(match cursor.next_char() {
            Some(ch) if ch != 'p' => cursor.invalid(ch),
            _ => ParseError::MissingDisk,
        });
    }
    let disk = decimal(digits, at, disk_limit).ok_or(ParseError::DiskOutOfRange {
        name: "d",
        limit: disk_limit,
    })??;
    let mut partition = 0;
    if cursor.next_char() == Some('p') {
        cursor.rest = &cursor.rest[1..];
        let (digits, at) = cursor.take(|c| c.is_ascii_digit());
        if digits.is_empty() {
            return Err(match cursor.next_char() {
                Some(ch) => cursor.invalid(ch),
                None => ParseError::MissingPartition,
            });
        }
        partition =
            decimal(digits, at, partition_limit).ok_or(ParseError::PartitionOutOfRange {
                name: "d",
                limit: partition_limit,
            })??;
    }
    cursor.finish()?;
    Vbd::new(Style::D, disk, partition)
}

/// Decodes canonical decimal digits. `None` when the value reaches `limit`; `Some(Err)` for a
/// leading zero. Stops reading at the limit, so any number of digits is safe.
fn decimal(digits: &str, at: usize, limit: u32) -> Option<Result<u32, ParseError>> {
    if digits.len() > 1 && digits.starts_with('0') {
        return Some(Err(ParseError::LeadingZero { at }));
    }
    let mut value: u64 = 0;
    for b in digits.bytes() {
        value = value * 10 + u64::from(b - b'0');
        if value >= u64::from(limit) {
            return None;
        }
    }
    u32::try_from(value).ok().map(Ok)
}

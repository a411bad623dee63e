//! The xenbus state values written as decimal text in `<dir>/state`.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The state one end of a split device announces in its `state` node.
///
/// The wire value is the decimal number (`"4"` for [`Connected`](XenbusState::Connected)).
/// A missing node reads as [`Unknown`](XenbusState::Unknown), as every implementation
/// does; see [`XenbusState::from_node`].
///
/// ```
/// use xsio_xenbus::XenbusState;
///
/// assert_eq!(XenbusState::parse("4")?, XenbusState::Connected);
/// assert_eq!(XenbusState::Closed.wire(), "6");
/// assert_eq!(XenbusState::from_node(None)?, XenbusState::Unknown);
/// assert!(XenbusState::parse("9").is_err());
/// # Ok::<(), xsio_xenbus::StateError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum XenbusState {
    /// 0: the node is missing or was never written.
    Unknown,
    /// 1: written by the toolstack for both ends when it creates the device.
    Initialising,
    /// 2: the backend finished early setup and waits for the frontend.
    InitWait,
    /// 3: the frontend published its transport (ring, event channel) and waits.
    Initialised,
    /// 4: the ring is live.
    Connected,
    /// 5: teardown was requested.
    Closing,
    /// 6: resources are released.
    Closed,
    /// 7: used by a few network drivers; block drivers ignore it.
    Reconfiguring,
    /// 8: used by a few network drivers; block drivers ignore it.
    Reconfigured,
}

/// Every state, in wire order (`ALL_STATES[n]` has wire value `n`).
pub const ALL_STATES: [XenbusState; 9] = [
    XenbusState::Unknown,
    XenbusState::Initialising,
    XenbusState::InitWait,
    XenbusState::Initialised,
    XenbusState::Connected,
    XenbusState::Closing,
    XenbusState::Closed,
    XenbusState::Reconfiguring,
    XenbusState::Reconfigured,
];

/// Why a `state` node's text is not a xenbus state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum StateError {
    /// The node holds the empty string.
    #[error("empty state value")]
    Empty,
    /// The node holds something other than decimal digits.
    #[error("state value {value:?} is not a decimal number")]
    NotDecimal {
        /// The text found (at most 32 bytes of it, to keep errors small).
        value: String,
    },
    /// A decimal number that names no xenbus state (blkback calls this "saw state N").
    #[error("state value {value} names no xenbus state (0..=8)")]
    UnknownValue {
        /// The number read, saturated at `u64::MAX`.
        value: u64,
    },
}

impl XenbusState {
    /// The number this state is written as.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The text written in the `state` node.
    pub const fn wire(self) -> &'static str {
        match self {
            XenbusState::Unknown => "0",
            XenbusState::Initialising => "1",
            XenbusState::InitWait => "2",
            XenbusState::Initialised => "3",
            XenbusState::Connected => "4",
            XenbusState::Closing => "5",
            XenbusState::Closed => "6",
            XenbusState::Reconfiguring => "7",
            XenbusState::Reconfigured => "8",
        }
    }

    /// The state a number stands for.
    pub fn from_number(number: u64) -> Result<XenbusState, StateError> {
        usize::try_from(number)
            .ok()
            .and_then(|n| ALL_STATES.get(n).copied())
            .ok_or(StateError::UnknownValue { value: number })
    }

    /// Parses a `state` node's text: decimal digits only (leading zeros are accepted, as the
    /// C readers' `%d` does), no sign, no whitespace.
    pub fn parse(text: &str) -> Result<XenbusState, StateError> {
        if text.is_empty() {
            return Err(StateError::Empty);
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            let mut value: String = text.chars().take(32).collect();
            value.shrink_to_fit();
            return Err(StateError::NotDecimal { value });
        }
        // Saturate instead of failing: "99999999999999999999999" is as unknown as "9".
        let number = text.bytes().fold(0u64, |acc, b| {
            acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        });
        XenbusState::from_number(number)
    }

    /// The state a read of a `state` node gives: `None` (the node is missing) is
    /// [`Unknown`](XenbusState::Unknown).
    pub fn from_node(value: Option<&str>) -> Result<XenbusState, StateError> {
        value.map_or(Ok(XenbusState::Unknown), XenbusState::parse)
    }

    /// Whether a frontend in this state is using (or about to use) the device: the backend
    /// must go through Closing and wait for it rather than close at once.
    pub const fn frontend_active(self) -> bool {
        matches!(
            self,
            XenbusState::InitWait
                | XenbusState::Initialised
                | XenbusState::Connected
                | XenbusState::Closing
        )
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            XenbusState::Unknown => "Unknown",
            XenbusState::Initialising => "Initialising",
            XenbusState::InitWait => "InitWait",
            XenbusState::Initialised => "Initialised",
            XenbusState::Connected => "Connected",
            XenbusState::Closing => "Closing",
            XenbusState::Closed => "Closed",
            XenbusState::Reconfiguring => "Reconfiguring",
            XenbusState::Reconfigured => "Reconfigured",
        };
        f.write_str(name)
    }
}

impl FromStr for XenbusState {
    type Err = StateError;

    fn from_str(text: &str) -> Result<XenbusState, StateError> {
        XenbusState::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `enum xenbus_state` of Xen's `xen/include/public/io/xenbus.h`, written out here by
    /// hand (not from `ALL_STATES`): the number, the variant, and the name after
    /// `XenbusState` in the C enumerator.
    const XENBUS_H: [(u8, XenbusState, &str); 9] = [
        (0, XenbusState::Unknown, "Unknown"),
        (1, XenbusState::Initialising, "Initialising"),
        (2, XenbusState::InitWait, "InitWait"),
        (3, XenbusState::Initialised, "Initialised"),
        (4, XenbusState::Connected, "Connected"),
        (5, XenbusState::Closing, "Closing"),
        (6, XenbusState::Closed, "Closed"),
        (7, XenbusState::Reconfiguring, "Reconfiguring"),
        (8, XenbusState::Reconfigured, "Reconfigured"),
    ];

    #[test]
    fn every_xenbus_h_number_is_its_state() {
        for (number, state, name) in XENBUS_H {
            let text = ["0", "1", "2", "3", "4", "5", "6", "7", "8"][usize::from(number)];
            assert_eq!(state.number(), number, "{name}");
            assert_eq!(state.wire(), text, "{name}");
            assert_eq!(state.to_string(), name);
            assert_eq!(XenbusState::parse(text), Ok(state), "{text}");
            assert_eq!(text.parse::<XenbusState>(), Ok(state), "{text}");
            assert_eq!(XenbusState::from_number(u64::from(number)), Ok(state));
        }
        // `ALL_STATES[n]` has wire value n, as its documentation promises.
        let all: Vec<XenbusState> = XENBUS_H.iter().map(|&(_, state, _)| state).collect();
        assert_eq!(ALL_STATES.to_vec(), all);
        assert_eq!(
            XenbusState::from_number(9),
            Err(StateError::UnknownValue { value: 9 })
        );
    }

    #[test]
    fn a_missing_node_is_unknown() {
        assert_eq!(XenbusState::from_node(None), Ok(XenbusState::Unknown));
        assert_eq!(XenbusState::from_node(Some("6")), Ok(XenbusState::Closed));
        assert_eq!(XenbusState::from_node(Some("")), Err(StateError::Empty));
    }

    #[test]
    fn refuses_what_is_not_a_state() {
        assert_eq!(XenbusState::parse(""), Err(StateError::Empty));
        assert_eq!(
            XenbusState::parse("9"),
            Err(StateError::UnknownValue { value: 9 })
        );
        assert_eq!(
            XenbusState::parse("99999999999999999999999"),
            Err(StateError::UnknownValue { value: u64::MAX })
        );
        for bad in ["-1", "+4", " 4", "4\n", "0x4", "four"] {
            assert!(
                matches!(XenbusState::parse(bad), Err(StateError::NotDecimal { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(XenbusState::parse("04"), Ok(XenbusState::Connected));
    }
}

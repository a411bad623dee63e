//! Device keys a machine reads from the other end, and how their values are checked.

use thiserror::Error;

/// A key one end reads from the other end's directory when it connects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeySpec {
    /// The key name relative to the other end's directory (`ring-ref`).
    pub name: String,
    /// Whether connecting fails without it (`protocol` is optional: absent means native).
    pub required: bool,
}

impl KeySpec {
    /// A key that must be present.
    pub fn required(name: impl Into<String>) -> KeySpec {
        KeySpec {
            name: name.into(),
            required: true,
        }
    }

    /// A key that may be absent.
    pub fn optional(name: impl Into<String>) -> KeySpec {
        KeySpec {
            name: name.into(),
            required: false,
        }
    }
}

/// How the values read on connect are checked before the machine declares Connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyCheck {
    /// Presence of required keys only.
    PresenceOnly,
    /// The values must form a [`BlockTransport`](crate::block::BlockTransport) (backend side).
    BlockTransport,
    /// The values must form a [`DiskInfo`](crate::block::DiskInfo) (frontend side).
    BlockDiskInfo,
}

impl KeyCheck {
    /// Applies the check to the values read (present keys only).
    pub fn check(self, values: &[(String, String)]) -> Result<(), KeyError> {
        match self {
            KeyCheck::PresenceOnly => Ok(()),
            KeyCheck::BlockTransport => crate::block::BlockTransport::from_keys(values).map(drop),
            KeyCheck::BlockDiskInfo => crate::block::DiskInfo::from_keys(values).map(drop),
        }
    }
}

/// Why the keys read from the other end cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A required key is missing.
    #[error("required key {key:?} is missing")]
    Missing {
        /// The key name.
        key: String,
    },
    /// A key holds a value that does not parse.
    #[error("key {key:?} holds {value:?}: {reason}")]
    Invalid {
        /// The key name.
        key: String,
        /// The value (at most 64 bytes of it).
        value: String,
        /// What was expected.
        reason: &'static str,
    },
}

impl KeyError {
    pub(crate) fn invalid(key: &str, value: &str, reason: &'static str) -> KeyError {
        KeyError::Invalid {
            key: key.to_owned(),
            value: value.chars().take(64).collect(),
            reason,
        }
    }
}

/// Values collected by a connect attempt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KeyRead {
    pub(crate) generation: u32,
    pub(crate) values: Vec<Option<String>>,
    pub(crate) waiting: usize,
}

impl KeyRead {
    pub(crate) fn new(generation: u32, n_keys: usize) -> KeyRead {
        KeyRead {
            generation,
            values: vec![None; n_keys],
            waiting: n_keys,
        }
    }

    /// Records one value; true when every key has answered.
    pub(crate) fn record(&mut self, index: usize, value: Option<String>) -> bool {
        if let Some(slot) = self.values.get_mut(index) {
            *slot = value;
            self.waiting = self.waiting.saturating_sub(1);
        }
        self.waiting == 0
    }

    /// The present values, after checking that every required key is there.
    pub(crate) fn finish(
        &self,
        specs: &[KeySpec],
        check: KeyCheck,
    ) -> Result<Vec<(String, String)>, KeyError> {
        let mut present = Vec::new();
        for (spec, value) in specs.iter().zip(&self.values) {
            match value {
                Some(value) => present.push((spec.name.clone(), value.clone())),
                None if spec.required => {
                    return Err(KeyError::Missing {
                        key: spec.name.clone(),
                    });
                }
                None => {}
            }
        }
        check.check(&present)?;
        Ok(present)
    }
}

/// Looks a key up in a list of values.
pub(crate) fn lookup<'a>(values: &'a [(String, String)], key: &str) -> Option<&'a str> {
    values
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

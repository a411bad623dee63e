//! A command to submit, and the value of a successful reply.

use std::borrow::Cow;
use std::os::fd::OwnedFd;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::CommandError;

/// One QMP command with its options, built up and handed to [`Client::execute`].
///
/// ```
/// use std::time::Duration;
/// use xsio_qmp::Command;
///
/// let cmd: Command<u32> = Command::new("eject")
///     .arguments(serde_json::json!({"id": "cd0"}))
///     .timeout(Duration::from_secs(3));
/// assert_eq!(cmd.name(), "eject");
/// ```
///
/// [`Client::execute`]: crate::Client::execute
#[derive(Debug)]
pub struct Command<F = OwnedFd> {
    pub(crate) name: Cow<'static, str>,
    pub(crate) arguments: Option<Value>,
    pub(crate) fds: Vec<F>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) out_of_band: bool,
    pub(crate) chained: bool,
    pub(crate) eof_is_success: bool,
}

impl<F> Command<F> {
    /// A command with no arguments, no fds and the configured timeout.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Command {
            name: name.into(),
            arguments: None,
            fds: Vec::new(),
            timeout: None,
            out_of_band: false,
            chained: false,
            eof_is_success: false,
        }
    }

    /// Sets the `arguments` member (a JSON object).
    pub fn arguments(mut self, arguments: Value) -> Self {
        self.arguments = Some(arguments);
        self
    }

    /// Attaches a descriptor, passed with the command's first byte (SCM_RIGHTS).
    ///
    /// The client owns it from now on and closes it exactly once: after it is handed to the
    /// driver in a transmit, or when the command fails before being sent.
    pub fn fd(mut self, fd: F) -> Self {
        self.fds.push(fd);
        self
    }

    /// Overrides `Config::command_timeout` for this command (counted from submission). A
    /// timeout too large to represent (`Duration::MAX`) means the command has no deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends it with `exec-oob` when out-of-band execution was negotiated (else in-band).
    ///
    /// Only commands QEMU marks `allow-oob` accept this. An out-of-band command goes out
    /// ahead of queued in-band commands and does not count against the in-flight window.
    pub fn out_of_band(mut self) -> Self {
        self.out_of_band = true;
        self
    }

    /// Sends it ahead of commands queued but not yet sent (still after out-of-band ones).
    ///
    /// Meant for a command issued from the completion of another, like a
    /// `blockdev-change-medium` that uses the fd set an `add-fd` just created.
    pub fn chained(mut self) -> Self {
        self.chained = true;
        self
    }

    /// Counts QEMU closing the connection before replying as success (for `quit`).
    pub fn eof_is_success(mut self) -> Self {
        self.eof_is_success = true;
        self
    }

    /// The command name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The `return` member of a success reply, as JSON text.
#[derive(Clone, Debug)]
pub struct Return(Box<RawValue>);

impl Return {
    pub(crate) fn new(raw: Box<RawValue>) -> Self {
        Return(raw)
    }

    /// `{}`: what a command without a result returns, and what `quit` gets on EOF.
    pub fn empty() -> Self {
        // The literal is valid JSON, so this cannot fail.
        Return(RawValue::from_string("{}".to_owned()).expect("literal JSON"))
    }

    /// The JSON text, exactly as QEMU sent it.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Decodes it into a typed reply; unknown members are ignored by this crate's types.
    ///
    /// Fails with [`CommandError::BadReply`] when the reply does not have the shape of `T`,
    /// or is nested deeper than `serde_json` builds values (128 levels).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, CommandError> {
        serde_json::from_str(self.0.get()).map_err(|e| CommandError::BadReply {
            reason: e.to_string(),
        })
    }

    /// Decodes it into a `serde_json::Value`.
    ///
    /// The text is valid JSON (it was checked when the reply was decoded), but it may be
    /// nested deeper than `serde_json` builds values (128 levels): that is
    /// [`CommandError::BadReply`], never a silent `Null`. [`as_str`](Return::as_str) still
    /// gives the text.
    ///
    /// ```
    /// use xsio_qmp::{CommandError, Return};
    ///
    /// assert_eq!(Return::empty().to_value()?, serde_json::json!({}));
    /// # Ok::<(), CommandError>(())
    /// ```
    pub fn to_value(&self) -> Result<Value, CommandError> {
        self.parse()
    }
}

impl PartialEq for Return {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

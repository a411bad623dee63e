//! The host operations that only the caller can answer on a real host: a guest's state
//! ([`HostOp::DomainInfo`](xsio_ops::HostOp::DomainInfo)) and whether its device model is
//! alive ([`HostOp::DeviceModelAlive`](xsio_ops::HostOp::DeviceModelAlive)). The caller
//! knows them from its hypervisor binding, its QMP connection or a command-line flag, and
//! hands them over as closures; the blocking host of `xsio-io-std` and the async one of
//! `xsio-io-tokio` answer through this one value, so both word their answers the same.

use std::fmt;

use xsio_ops::{DomainState, OpError, OpErrorKind, Reply};

/// The caller's answers to the host queries: `domain_info(domid)` for a guest's state (an
/// `Err` text fails the operation), `device_model(domid)` for its device model's liveness
/// (`None`: the host cannot tell). A query without its closure is answered
/// [`OpErrorKind::Unsupported`].
///
/// `D` and `M` are the closures' types: a driver stores boxed trait objects (with `Send`
/// when its host moves between threads).
///
/// ```
/// use xsio_harness::HostAnswers;
/// use xsio_ops::{DomainState, OpErrorKind, Reply};
///
/// type Info = Box<dyn FnMut(u32) -> Result<DomainState, String>>;
/// type Alive = Box<dyn FnMut(u32) -> Option<bool>>;
/// let mut answers: HostAnswers<Info, Alive> = HostAnswers::default();
/// answers.domain_info = Some(Box::new(|domid| match domid {
///     1 => Ok(DomainState::Paused),
///     _ => Err(format!("no domain {domid}")),
/// }));
/// answers.device_model = Some(Box::new(|domid| (domid == 1).then_some(true)));
///
/// assert_eq!(answers.answer_domain_info(1), Ok(Reply::Domain(DomainState::Paused)));
/// assert_eq!(answers.answer_domain_info(2).unwrap_err().kind, OpErrorKind::Other);
/// assert_eq!(answers.answer_device_model(1), Ok(Reply::DeviceModel { alive: true }));
/// assert_eq!(answers.answer_device_model(2).unwrap_err().kind, OpErrorKind::Unsupported);
///
/// let mut silent: HostAnswers<Info, Alive> = HostAnswers::default();
/// assert_eq!(silent.answer_domain_info(1).unwrap_err().kind, OpErrorKind::Unsupported);
/// ```
pub struct HostAnswers<D, M> {
    /// Answers `DomainInfo`.
    pub domain_info: Option<D>,
    /// Answers `DeviceModelAlive`.
    pub device_model: Option<M>,
}

impl<D, M> Default for HostAnswers<D, M> {
    /// No answers: both queries are answered `Unsupported`.
    fn default() -> Self {
        HostAnswers {
            domain_info: None,
            device_model: None,
        }
    }
}

impl<D, M> fmt::Debug for HostAnswers<D, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostAnswers")
            .field("domain_info", &self.domain_info.is_some())
            .field("device_model", &self.device_model.is_some())
            .finish()
    }
}

impl<D, M> HostAnswers<D, M>
where
    D: FnMut(u32) -> Result<DomainState, String>,
    M: FnMut(u32) -> Option<bool>,
{
    /// The answer to `DomainInfo { domid }`.
    pub fn answer_domain_info(&mut self, domid: u32) -> Result<Reply, OpError> {
        match &mut self.domain_info {
            Some(info) => info(domid)
                .map(Reply::Domain)
                .map_err(|e| OpError::new(OpErrorKind::Other, e)),
            None => Err(no_provider("domain info")),
        }
    }

    /// The answer to `DeviceModelAlive { domid }`.
    pub fn answer_device_model(&mut self, domid: u32) -> Result<Reply, OpError> {
        match self.device_model.as_mut().and_then(|alive| alive(domid)) {
            Some(alive) => Ok(Reply::DeviceModel { alive }),
            None => Err(no_provider("device-model liveness")),
        }
    }
}

/// The error of a host operation nothing on this host provides (`what`: "domain info",
/// "per-domain lock", ...): [`OpErrorKind::Unsupported`].
///
/// ```
/// let err = xsio_harness::host_answers::no_provider("per-domain lock");
/// assert_eq!(err.kind, xsio_ops::OpErrorKind::Unsupported);
/// assert!(err.to_string().contains("no per-domain lock provider"), "{err}");
/// ```
pub fn no_provider(what: &str) -> OpError {
    OpError::new(OpErrorKind::Unsupported, format!("no {what} provider"))
}

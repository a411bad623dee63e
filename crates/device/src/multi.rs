//! Many devices at once (libxl's multidev): every device of a domain removed in parallel
//! (found in the toolstack area), or a list added in parallel; one completion when every
//! one has completed, with each one's result.

use std::collections::VecDeque;
use std::time::Instant;

use thiserror::Error;
use xsio_core::OpId;
use xsio_ops::{
    Answer, HostOp, InputError, Op, OpError, OpErrorKind, Output, Reply, Request, XsOp,
    expect_children, expect_value,
};

use crate::config::Config;
use crate::device::{Device, EntryError, Force, toolstack_devices};
use crate::op::{AddSpec, DeviceOp};
use crate::outcome::{Completion, DeviceEvent};

/// What a [`MultiDev`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MultiEvent {
    /// The devices found in the toolstack area, and the entries that describe none.
    Found {
        /// The devices, in path order.
        devices: Vec<Device>,
        /// Entries that are not a device (reported again at the end).
        bad: Vec<EntryError>,
    },
    /// One device's step.
    Device {
        /// The device.
        device: Device,
        /// Its event (its own [`DeviceEvent::Done`] included).
        event: DeviceEvent,
    },
    /// Every device completed. Reported exactly once.
    Done(Result<MultiDone, MultiError>),
}

/// Every device's result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MultiDone {
    /// Each device with its completion, in the order they were found or given.
    pub devices: Vec<(Device, Completion)>,
    /// Toolstack entries that describe no device (left in place).
    pub bad_entries: Vec<EntryError>,
}

impl MultiDone {
    /// Whether every device succeeded and every entry was a device.
    pub fn is_ok(&self) -> bool {
        self.bad_entries.is_empty() && self.devices.iter().all(|(_, c)| c.is_ok())
    }
}

/// Why the devices could not even be listed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum MultiError {
    /// Listing the toolstack area failed.
    #[error("listing {path}: {error}")]
    Enumerate {
        /// What was listed or read.
        path: String,
        /// The error.
        error: OpError,
    },
    /// The caller cancelled before the devices were found.
    #[error("cancelled")]
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Own {
    Kinds,
    Devids(String),
    Backend(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Route {
    Own(Own),
    Sub { index: usize, inner: OpId },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Stage {
    Enumerating {
        pending: usize,
        /// (kind, devid, backend path if read).
        found: Vec<(String, String, Option<String>)>,
    },
    Running,
    Done,
}

/// Many [`DeviceOp`]s as one machine: their requests get ids of its own (a `Kill` names
/// its `Spawn` by that id), their answers and watch events go back to them.
///
/// ```
/// use std::time::Instant;
/// use xsio_device::{Config, Force, MultiDev};
/// use xsio_ops::{Op, Output, XsOp};
///
/// # #[allow(clippy::disallowed_methods)] // a doc example's epoch
/// let now = Instant::now();
/// let mut all = MultiDev::remove_all(Config::default(), 5, Force::On, now);
/// let Some(Output::Request(list)) = all.poll_output() else { unreachable!() };
/// assert_eq!(list.op, Op::Xs(XsOp::Directory { path: "/libxl/5/device".into() }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MultiDev {
    config: Config,
    domid: u32,
    force: Force,
    stage: Stage,
    ops: Vec<DeviceOp>,
    bad: Vec<EntryError>,
    next: u64,
    routes: Vec<(OpId, Route)>,
    /// Spawns of the sub-operations in flight: (index, inner id, outer id).
    spawns: Vec<(usize, OpId, OpId)>,
    out: VecDeque<Output<MultiEvent>>,
    done: Option<Result<MultiDone, MultiError>>,
}

impl MultiDev {
    /// Removes every device of domain `domid` with `force` (domain destruction: force ON),
    /// finding them under `/libxl/<domid>/device/<kind>/<devid>` by their `backend` key.
    pub fn remove_all(config: Config, domid: u32, force: Force, now: Instant) -> MultiDev {
        let mut multi = MultiDev::empty(config, domid, force);
        multi.stage = Stage::Enumerating {
            pending: 1,
            found: Vec::new(),
        };
        let path = toolstack_devices(domid);
        multi.own(Own::Kinds, XsOp::Directory { path });
        let _ = now;
        multi
    }

    /// Adds every device of `specs` in parallel.
    pub fn add_all(config: Config, specs: Vec<AddSpec>, now: Instant) -> MultiDev {
        let domid = specs.first().map_or(0, |s| s.device.frontend_domid);
        let mut multi = MultiDev::empty(config.clone(), domid, Force::Auto);
        multi.ops = specs
            .into_iter()
            .map(|spec| DeviceOp::add(config.clone(), spec, now))
            .collect();
        multi.run(now);
        multi
    }

    fn empty(config: Config, domid: u32, force: Force) -> MultiDev {
        MultiDev {
            config,
            domid,
            force,
            stage: Stage::Running,
            ops: Vec::new(),
            bad: Vec::new(),
            next: 0,
            routes: Vec::new(),
            spawns: Vec::new(),
            out: VecDeque::new(),
            done: None,
        }
    }

    /// The operations (empty while the devices are being found).
    pub fn ops(&self) -> &[DeviceOp] {
        &self.ops
    }

    /// The result, once every device completed.
    pub fn result(&self) -> Option<&Result<MultiDone, MultiError>> {
        self.done.as_ref()
    }

    /// Whether every device completed.
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }

    /// Requests awaiting an answer.
    pub fn in_flight(&self) -> usize {
        self.routes.len()
    }

    /// Cancels every operation (or the search for them).
    pub fn cancel(&mut self, now: Instant) {
        if self.done.is_some() {
            return;
        }
        if matches!(self.stage, Stage::Enumerating { .. }) {
            self.finish(Err(MultiError::Cancelled));
            return;
        }
        for index in 0..self.ops.len() {
            self.ops[index].cancel(now);
            self.drain(index);
        }
        self.check_done();
    }

    /// A watch event, for whichever operation registered the token.
    pub fn handle_watch(&mut self, now: Instant, path: &str, token: &str) {
        for index in 0..self.ops.len() {
            self.ops[index].handle_watch(now, path, token);
            self.drain(index);
        }
    }

    /// The answer to request `id`.
    pub fn handle_reply(&mut self, now: Instant, answer: Answer) -> Result<(), InputError> {
        let Answer { id, result } = answer;
        let position = self
            .routes
            .iter()
            .position(|(op, _)| *op == id)
            .ok_or(InputError::UnknownOp(id))?;
        let (_, route) = self.routes.remove(position);
        match route {
            Route::Sub { index, inner } => {
                self.spawns.retain(|(_, _, outer)| *outer != id);
                let answer = match self.ops.get_mut(index) {
                    Some(op) => op.handle_reply(now, Answer::new(inner, result)),
                    None => Ok(()),
                };
                self.drain(index);
                self.check_done();
                // The sub-operation's own complaint is about its id: say it about ours.
                answer.map_err(|err| match err {
                    InputError::UnknownOp(_) => InputError::UnknownOp(id),
                    InputError::WrongReply { expected, .. } => {
                        InputError::WrongReply { id, expected }
                    }
                    other => other,
                })
            }
            Route::Own(own) => self.on_own(now, id, own, result),
        }
    }

    /// Time passed, for every operation.
    pub fn handle_timeout(&mut self, now: Instant) {
        for index in 0..self.ops.len() {
            self.ops[index].handle_timeout(now);
            self.drain(index);
        }
        self.check_done();
    }

    /// The next output, `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output<MultiEvent>> {
        self.out.pop_front()
    }

    /// The earliest deadline of any operation.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ops.iter().filter_map(DeviceOp::poll_timeout).min()
    }

    fn own(&mut self, own: Own, op: XsOp) {
        let id = self.next_id();
        self.routes.push((id, Route::Own(own)));
        self.out
            .push_back(Output::Request(Request { id, op: Op::Xs(op) }));
    }

    fn next_id(&mut self) -> OpId {
        let id = OpId::from_raw(self.next);
        self.next = self.next.wrapping_add(1);
        id
    }

    fn on_own(
        &mut self,
        now: Instant,
        id: OpId,
        own: Own,
        result: Result<Reply, OpError>,
    ) -> Result<(), InputError> {
        let listing = matches!(own, Own::Kinds | Own::Devids(_));
        let checked = if listing {
            expect_children(id, result).map(|r| r.map(Listing::Names))
        } else {
            expect_value(id, result).map(|r| r.map(Listing::Value))
        };
        let (answer, wrong) = match checked {
            Ok(answer) => (answer, None),
            Err(wrong) => (
                Err(OpError::new(OpErrorKind::Invalid, wrong.to_string())),
                Some(wrong),
            ),
        };
        if matches!(self.stage, Stage::Enumerating { .. }) {
            self.on_listing(now, own, answer);
        }
        wrong.map_or(Ok(()), Err)
    }

    fn on_listing(&mut self, now: Instant, own: Own, answer: Result<Listing, OpError>) {
        let base = toolstack_devices(self.domid);
        let path = match &own {
            Own::Kinds => base.clone(),
            Own::Devids(kind) => format!("{base}/{kind}"),
            Own::Backend(kind, devid) => format!("{base}/{kind}/{devid}/backend"),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => return self.finish(Err(MultiError::Enumerate { path, error })),
        };
        let Stage::Enumerating { pending, found } = &mut self.stage else {
            return;
        };
        *pending = pending.saturating_sub(1);
        let mut asks = Vec::new();
        match (own, answer) {
            (Own::Kinds, Listing::Names(names)) => {
                for kind in sorted(names) {
                    asks.push((
                        Own::Devids(kind.clone()),
                        XsOp::Directory {
                            path: format!("{base}/{kind}"),
                        },
                    ));
                }
            }
            (Own::Devids(kind), Listing::Names(names)) => {
                for devid in sorted(names) {
                    let path = format!("{base}/{kind}/{devid}/backend");
                    asks.push((Own::Backend(kind.clone(), devid), XsOp::Read { path }));
                }
            }
            (Own::Backend(kind, devid), Listing::Value(backend)) => {
                found.push((kind, devid, backend));
            }
            _ => {}
        }
        *pending = pending.saturating_add(asks.len());
        let left = *pending;
        for (own, op) in asks {
            self.own(own, op);
        }
        if left == 0 {
            self.start_found(now);
        }
    }

    fn start_found(&mut self, now: Instant) {
        let Stage::Enumerating { found, .. } = std::mem::replace(&mut self.stage, Stage::Running)
        else {
            return;
        };
        let mut found = found;
        found.sort();
        let mut devices = Vec::new();
        for (kind, devid, backend) in found {
            let device = match backend {
                Some(backend) => Device::from_toolstack_entry(self.domid, &kind, &devid, &backend),
                None => Err(EntryError {
                    entry: format!("{}/{kind}/{devid}", toolstack_devices(self.domid)),
                    why: "it has no backend key",
                }),
            };
            match device {
                Ok(device) => devices.push(device),
                Err(bad) => self.bad.push(bad),
            }
        }
        self.out.push_back(Output::Event(MultiEvent::Found {
            devices: devices.clone(),
            bad: self.bad.clone(),
        }));
        self.ops = devices
            .into_iter()
            .map(|d| DeviceOp::remove(self.config.clone(), d, self.force, now))
            .collect();
        self.run(now);
    }

    fn run(&mut self, _now: Instant) {
        self.stage = Stage::Running;
        for index in 0..self.ops.len() {
            self.drain(index);
        }
        self.check_done();
    }

    /// Moves operation `index`'s outputs out, under ids of this machine.
    fn drain(&mut self, index: usize) {
        loop {
            let Some(op) = self.ops.get_mut(index) else {
                return;
            };
            let Some(output) = op.poll_output() else {
                return;
            };
            match output {
                Output::Request(Request { id: inner, op }) => {
                    let outer = self.next_id();
                    let op = match op {
                        Op::Host(HostOp::Kill { spawn }) => {
                            let spawn = self
                                .spawns
                                .iter()
                                .find(|(i, s, _)| *i == index && *s == spawn)
                                .map_or(spawn, |(_, _, outer)| *outer);
                            Op::Host(HostOp::Kill { spawn })
                        }
                        other => other,
                    };
                    if matches!(op, Op::Host(HostOp::Spawn { .. })) {
                        self.spawns.push((index, inner, outer));
                    }
                    self.routes.push((outer, Route::Sub { index, inner }));
                    self.out
                        .push_back(Output::Request(Request { id: outer, op }));
                }
                Output::Event(event) => {
                    let device = self.ops[index].device().clone();
                    self.out
                        .push_back(Output::Event(MultiEvent::Device { device, event }));
                }
            }
        }
    }

    fn check_done(&mut self) {
        if self.done.is_some() || !matches!(self.stage, Stage::Running) {
            return;
        }
        if !self.ops.iter().all(DeviceOp::is_done) {
            return;
        }
        let devices = self
            .ops
            .iter()
            .filter_map(|op| Some((op.device().clone(), op.completion()?.clone())))
            .collect();
        let done = MultiDone {
            devices,
            bad_entries: self.bad.clone(),
        };
        self.finish(Ok(done));
    }

    fn finish(&mut self, result: Result<MultiDone, MultiError>) {
        if self.done.is_some() {
            return;
        }
        self.stage = Stage::Done;
        self.done = Some(result.clone());
        self.out.push_back(Output::Event(MultiEvent::Done(result)));
    }
}

enum Listing {
    Names(Option<Vec<String>>),
    Value(Option<String>),
}

fn sorted(names: Option<Vec<String>>) -> Vec<String> {
    let mut names = names.unwrap_or_default();
    names.sort();
    names
}

xsio_ops::impl_machine!(MultiDev, MultiEvent, watch: handle_watch);

//! Dev-only support shared by the tests and benches that talk to real peers.
//!
//! Every crate's `peer_*` test binaries need the same few things: decide whether a peer is
//! installed (and FAIL when it is missing and env `CI` is set, be reported as skipped in the
//! runner's summary otherwise), start QEMU on a QMP socket in a fresh temp directory and
//! kill it on drop, start `xsio xenstored` the same way, and run a child process with a time
//! limit. They live here once instead of in a copy per test file.
//!
//! This crate spawns processes, so it is a driver-side crate (listed as such in
//! `xtask/src/tidy.rs`), and it is only ever a `[dev-dependencies]` entry: no machine crate
//! links it into a library.
//!
//! - [`peer`]: [`peer::Tests`], the `main` of every `peer_*` test binary (its tests listed by
//!   [`tests!`]), and [`peer::Peer`], what each test needs; [`peer::require`] for a check
//!   inside a test;
//! - [`block`]: guest 1's disk and CD-ROM, created by the toolstack, and their two ends;
//! - [`hotplug`]: the recording hotplug script behind a wrapper ([`hotplug::Hotplug`]);
//! - [`xenbus`]: the xenbus tests' machines on one harness ([`xenbus::Machine`]) and what
//!   the tests ask of them;
//! - [`process`]: [`process::wait_with_timeout`], [`process::output_within`],
//!   [`process::stdout_within`], [`process::logged_output_within`],
//!   [`process::assert_succeeded`], [`process::assert_fails_with`];
//! - [`qemu`]: [`qemu::Qemu`] and its [`qemu::QemuBuilder`], [`qemu::peer`];
//! - [`qmp_peer`]: around a QEMU in the QMP and device-model tests: [`qmp_peer::connect`],
//!   a CD image, transcripts, this process's descriptors counted;
//! - [`xenstored`]: [`xenstored::Daemon`] (`xsio xenstored` on temp sockets), Xen's
//!   xenstore-utils run against it, [`xenstored::Watcher`];
//! - [`xen`]: Xen's own peers without a hypervisor, under an `LD_PRELOAD` shim of ours
//!   compiled at test time: [`xen::World`] (guest memory, event channels, dying domains),
//!   [`xen::XenStored`] (Xen's C xenstored and oxenstored, guests over real rings bridged
//!   to sockets), [`xen::XenQemu`] (QEMU's `xenpv` backend).
//!
//! ```
//! // A peer that is there is simply reported as present.
//! assert!(xsio_testkit::peer::require(true, "the peer in this example"));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod block;
pub mod hotplug;
pub mod peer;
pub mod process;
pub mod qemu;
pub mod qmp_peer;
pub mod xen;
pub mod xenbus;
pub mod xenstored;

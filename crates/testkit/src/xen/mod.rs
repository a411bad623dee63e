//! Xen's own components as peers on a machine without a hypervisor.
//!
//! Xen 4.17's C `xenstored` and `oxenstored`, and QEMU's Xen PV block backend
//! (`qemu-system-xen`), run here unmodified under one `LD_PRELOAD` shim of ours
//! (`shim.c`, compiled at test time with the system C compiler) that replaces only the
//! calls that would reach the hypervisor: domain info, foreign memory and grant mappings,
//! event channels, and the few paths under `/proc/xen` and `/var/run/xenstored`. Their own
//! store, permission, watch, transaction, quota and backend code is what the tests talk
//! to. `../shared/design/xen-peers.md` records why each piece is needed.
//!
//! A [`World`] is one work directory shared by the shim (env `XSIO_XEN_DIR`) and the test:
//! - guest memory: grant reference `R` of domain `D` (and foreign frame `R`) is page `R` of
//!   the file `grants-D` ([`GuestMemory`]); a guest's xenstore ring is its page 1;
//! - event channels: two FIFOs per (domain, port), one the guest kicks and one the backend's
//!   notify writes to ([`EventChannel`]);
//! - a domain is dying when the file `dead-D` exists; the `virq-dom-exc` FIFO tells the
//!   daemons to look ([`World::kill_domain`]).
//!
//! On top of it: [`XenStored`] (the C daemon or oxenstored on a temp socket, killed on
//! drop), guests that talk to it over a real ring ([`XenStored::introduce`], which gives the
//! test a Unix socket bridged to the ring, so any client, `xsio-xs-client` included, runs
//! over it unchanged), [`XenQemu`] (QEMU's `-machine xenpv` backend), and [`Recorder`], a
//! proxy that logs every xenstore message a client (QEMU) exchanges with its daemon, the
//! source of the transcripts in `testdata/xen-qemu/`.

pub mod blkif;
mod memory;
mod qemu;
mod record;
mod ring;
mod shim;
mod xenstored;

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

pub use memory::{EventChannel, GuestMemory, PAGE_SIZE};
pub use qemu::{XEN_QEMU, XenQemu, XenQemuBuilder};
pub use record::{Direction, Record, Recorder};
pub use ring::{RING_REF, RingLayout};
pub use xenstored::{C_XENSTORED, Flavour, OXENSTORED, XenStored};

/// One work directory shared by the shim and a test: guest memory files, event-channel
/// FIFOs, dying-domain marks, and the stand-ins for `/proc/xen/xsd_*`. Cheap to clone (the
/// directory goes when the last clone does).
#[derive(Clone, Debug)]
pub struct World {
    dir: Arc<tempfile::TempDir>,
    shim: PathBuf,
}

impl World {
    /// A fresh work directory with the shim built, under the missing-peer rule (the peer
    /// here is the system C compiler `cc`): `None` after a SKIPPED line (or a panic under
    /// CI) when it is missing. Panics if the shim does not compile.
    pub fn new() -> Option<World> {
        if !crate::peer::program("cc", &["--version"]) {
            return None;
        }
        let shim = shim::build().unwrap_or_else(|e| panic!("building the Xen shim: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("xsio-xen-")
            .tempdir()
            .unwrap();
        let world = World {
            dir: Arc::new(dir),
            shim,
        };
        world.lay_out().expect("laying out the Xen work directory");
        Some(world)
    }

    fn lay_out(&self) -> io::Result<()> {
        std::fs::create_dir_all(self.path("run"))?;
        // Dom0's own ring (only the daemons' start-up maps it; every dom0 client here uses
        // the socket) and its event channel port, without a newline: oxenstored parses
        // the file as a bare integer.
        std::fs::write(self.path("xsd_kva"), vec![0u8; PAGE_SIZE])?;
        std::fs::write(self.path("xsd_port"), "1")?;
        GuestMemory::create(self, 0, 2).map(drop)
    }

    /// The work directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the work directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The compiled shim (`LD_PRELOAD` it yourself, or use [`World::preload`]).
    pub fn shim(&self) -> &Path {
        &self.shim
    }

    /// Makes `command` run under the shim in this world.
    pub fn preload(&self, command: &mut Command) {
        command
            .env("LD_PRELOAD", &self.shim)
            .env("XSIO_XEN_DIR", self.dir());
    }

    /// Marks `domid` dying and raises VIRQ_DOM_EXC, as the hypervisor does when a domain
    /// dies: daemons then find it dying and release it (`@releaseDomain`).
    pub fn kill_domain(&self, domid: u32) -> io::Result<()> {
        std::fs::write(self.path(&format!("dead-{domid}")), b"")?;
        let mut virq = memory::open_fifo(&self.path("virq-dom-exc"))?;
        virq.write_all(&[0; 4])
    }
}

//! The blocking driver of the xenbus peer tests (`peer_xenbus` on our daemon,
//! `peer_xen_xenbus` on Xen's C xenstored): `xsio-io-std`'s L2 driver running the world of
//! `xsio_testkit::xenbus`, and the toolstack's own transactions.

use std::time::Duration;

use xsio_harness::{Conn, Harness};
use xsio_io_std::l2::{XsLinks, run_until};
use xsio_io_std::xenbus;
use xsio_ops::{OpError, Reply, XsOp};
use xsio_testkit::xenbus::{Machine, assert_nothing_failed};

/// Runs the world until `done` (20 s at most), failing on any machine's failure event.
pub(crate) fn drive(
    world: &mut Harness<Machine>,
    links: &mut XsLinks,
    done: impl Fn(&Harness<Machine>) -> bool,
) {
    run_until(world, links, Duration::from_secs(20), done).expect("the machines get there");
    assert_nothing_failed(world);
}

/// A transaction of the toolstack's own, executed directly on its connection.
pub(crate) fn toolstack(links: &mut XsLinks, conn: Conn, op: XsOp) -> Result<Reply, OpError> {
    let mut watches = xsio_harness::xs::Watches::default();
    let conn = links.conn_mut(conn).expect("the toolstack's connection");
    xenbus::execute(conn, &op, &mut watches)
}

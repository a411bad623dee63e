//! The model checker's world: the xenbus machines on `xsio-harness`, against its tiny
//! xenstore.

pub(crate) mod removal;
pub(crate) mod world;

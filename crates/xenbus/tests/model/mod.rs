//! The model checker's pieces: a tiny xenstore and the world built on it.

pub(crate) mod store;
pub(crate) mod world;

//! The toolstack's removal writes, fixed: shared by the model checker's world and the
//! handshake bench (`#[path]`-included there).

use xsio_ops::{Txn, TxnOp};
use xsio_xenbus::{DeviceAreas, XenbusState};

/// What a toolstack writes to ask for a removal and to destroy the areas, as fixed
/// transactions: input for the backend and frontend machines here. The toolstack's removal
/// algorithm (the decisions, the waits, the prune) is `xsio-device`'s, model-checked with
/// these machines in `crates/device/tests/model_check.rs`.
pub(crate) fn removal_request(areas: &DeviceAreas) -> Txn {
    Txn {
        only_if_exists: Some(areas.backend_key("state")),
        ops: vec![
            TxnOp::write(areas.backend_key("online"), "0"),
            TxnOp::write(areas.backend_key("state"), XenbusState::Closing.wire()),
        ],
    }
}

/// Both directories removed (see `removal_request`).
pub(crate) fn destroy(areas: &DeviceAreas) -> Txn {
    let rm = |path| TxnOp::Rm { path };
    Txn {
        only_if_exists: None,
        ops: vec![rm(areas.frontend_path()), rm(areas.backend_path())],
    }
}

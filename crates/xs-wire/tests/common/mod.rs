//! proptest strategies covering every request and reply type.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use proptest::prelude::*;
use xsio_xs_wire::{ALL_ERROR_KINDS, Access, Perm, Reply, Request};

/// Text without NULs, including non-path bytes and non-ASCII: the codec does not check paths.
pub fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9/_@-]{0,40}",
        "/local/domain/[0-9]{1,4}/device/vbd/[0-9]{1,6}/[a-z-]{1,12}",
        "[^\u{0}]{0,12}",
    ]
}

pub fn name() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,16}"
}

pub fn value() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

pub fn perm() -> impl Strategy<Value = Perm> {
    (
        prop_oneof![
            Just(Access::None),
            Just(Access::Read),
            Just(Access::Write),
            Just(Access::Both)
        ],
        any::<u32>(),
    )
        .prop_map(|(a, d)| Perm::new(a, d))
}

pub fn perms() -> impl Strategy<Value = Vec<Perm>> {
    proptest::collection::vec(perm(), 1..6)
}

pub fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        proptest::collection::vec(field(), 1..4).prop_map(|args| Request::Control { args }),
        field().prop_map(|path| Request::Directory { path }),
        field().prop_map(|path| Request::Read { path }),
        field().prop_map(|path| Request::GetPerms { path }),
        (field(), field()).prop_map(|(path, token)| Request::Watch { path, token }),
        (field(), field()).prop_map(|(path, token)| Request::Unwatch { path, token }),
        Just(Request::TransactionStart),
        any::<bool>().prop_map(|commit| Request::TransactionEnd { commit }),
        (any::<u32>(), any::<u64>(), any::<u32>())
            .prop_map(|(domid, gfn, evtchn)| Request::Introduce { domid, gfn, evtchn }),
        any::<u32>().prop_map(|domid| Request::Release { domid }),
        any::<u32>().prop_map(|domid| Request::GetDomainPath { domid }),
        (field(), value()).prop_map(|(path, value)| Request::Write { path, value }),
        field().prop_map(|path| Request::Mkdir { path }),
        field().prop_map(|path| Request::Rm { path }),
        (field(), perms()).prop_map(|(path, perms)| Request::SetPerms { path, perms }),
        any::<u32>().prop_map(|domid| Request::IsDomainIntroduced { domid }),
        any::<u32>().prop_map(|domid| Request::Resume { domid }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(domid, target)| Request::SetTarget { domid, target }),
        Just(Request::ResetWatches),
        (field(), any::<u32>()).prop_map(|(path, offset)| Request::DirectoryPart { path, offset }),
    ]
}

pub fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        value().prop_map(Reply::Control),
        proptest::collection::vec(field(), 0..8).prop_map(Reply::Directory),
        value().prop_map(Reply::Read),
        perms().prop_map(Reply::GetPerms),
        Just(Reply::Watch),
        Just(Reply::Unwatch),
        any::<u32>().prop_map(Reply::TransactionStart),
        Just(Reply::TransactionEnd),
        Just(Reply::Introduce),
        Just(Reply::Release),
        field().prop_map(Reply::GetDomainPath),
        Just(Reply::Write),
        Just(Reply::Mkdir),
        Just(Reply::Rm),
        Just(Reply::SetPerms),
        (field(), field()).prop_map(|(path, token)| Reply::WatchEvent { path, token }),
        proptest::sample::select(ALL_ERROR_KINDS.to_vec()).prop_map(Reply::Error),
        any::<bool>().prop_map(Reply::IsDomainIntroduced),
        Just(Reply::Resume),
        Just(Reply::SetTarget),
        Just(Reply::ResetWatches),
        (
            any::<u64>(),
            proptest::collection::vec(name(), 0..8),
            any::<bool>()
        )
            .prop_map(|(generation, children, complete)| Reply::DirectoryPart {
                generation,
                children,
                complete
            }),
    ]
}

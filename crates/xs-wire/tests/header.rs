//! The numbers and names of Xen's `xen/include/public/io/xs_wire.h`, written out here by hand
//! (not derived from this crate's tables), so that a wrong entry in `MsgType` or `ErrorKind`
//! fails.
//!
//! `enum xsd_sockmsg_type` counts from `XS_CONTROL` = 0 to `XS_SET_TARGET` = 19, skips the
//! removed `XS_RESTRICT` (20; `XS_RESET_WATCHES` is declared as `XS_SET_TARGET + 2`), goes on
//! to `XS_DIRECTORY_PART` = 22, and in Xen 4.19+ to the feature and quota messages (23..=26),
//! so `XS_TYPE_COUNT` is 27 (23 in Xen 4.17, which ends at `XS_DIRECTORY_PART`).
//! `XS_INVALID` is 0xffff. The error table `xsd_errors[]` lists errno names in a fixed order
//! (new ones only at its end); the numbers beside them are Linux's (`asm-generic/errno*.h`).

use xsio_xs_wire::{ALL_ERROR_KINDS, ErrorKind, HEADER_LEN, Header, MsgType};

/// `(wire number, C name without XS_)` for every type `xs_wire.h` defines.
const XS_WIRE_H_TYPES: &[(u32, &str)] = &[
    (0, "CONTROL"),
    (1, "DIRECTORY"),
    (2, "READ"),
    (3, "GET_PERMS"),
    (4, "WATCH"),
    (5, "UNWATCH"),
    (6, "TRANSACTION_START"),
    (7, "TRANSACTION_END"),
    (8, "INTRODUCE"),
    (9, "RELEASE"),
    (10, "GET_DOMAIN_PATH"),
    (11, "WRITE"),
    (12, "MKDIR"),
    (13, "RM"),
    (14, "SET_PERMS"),
    (15, "WATCH_EVENT"),
    (16, "ERROR"),
    (17, "IS_DOMAIN_INTRODUCED"),
    (18, "RESUME"),
    (19, "SET_TARGET"),
    (20, "RESTRICT"),
    (21, "RESET_WATCHES"),
    (22, "DIRECTORY_PART"),
    (23, "GET_FEATURE"),
    (24, "SET_FEATURE"),
    (25, "GET_QUOTA"),
    (26, "SET_QUOTA"),
    (0xffff, "INVALID"),
];

/// `XS_TYPE_COUNT` of Xen 4.19+: one past the last valid type.
const XS_TYPE_COUNT: u32 = 27;

#[test]
fn every_xs_wire_h_number_names_its_type() {
    for &(number, name) in XS_WIRE_H_TYPES {
        let kind = MsgType::from_u32(number).unwrap_or_else(|| panic!("{number} ({name})"));
        assert_eq!(kind.name(), name, "type {number}");
        assert_eq!(kind.to_string(), name, "type {number}");
        assert_eq!(kind.as_u32(), number, "XS_{name}");
    }
}

#[test]
fn the_types_that_matter_most_are_the_right_variants() {
    // The variants this workspace builds and matches on, named one by one.
    for (kind, number) in [
        (MsgType::Control, 0),
        (MsgType::Directory, 1),
        (MsgType::Read, 2),
        (MsgType::GetPerms, 3),
        (MsgType::Watch, 4),
        (MsgType::Unwatch, 5),
        (MsgType::TransactionStart, 6),
        (MsgType::TransactionEnd, 7),
        (MsgType::GetDomainPath, 10),
        (MsgType::Write, 11),
        (MsgType::Mkdir, 12),
        (MsgType::Rm, 13),
        (MsgType::SetPerms, 14),
        (MsgType::WatchEvent, 15),
        (MsgType::Error, 16),
        (MsgType::Restrict, 20),
        (MsgType::ResetWatches, 21),
        (MsgType::DirectoryPart, 22),
        (MsgType::Invalid, 0xffff),
    ] {
        assert_eq!(kind.as_u32(), number, "{kind:?}");
        assert_eq!(MsgType::from_u32(number), Some(kind), "{number}");
    }
}

#[test]
fn numbers_outside_xs_wire_h_name_no_type() {
    for number in [
        XS_TYPE_COUNT,
        XS_TYPE_COUNT + 1,
        0x100,
        0xfffe,
        0x1_0000,
        u32::MAX,
    ] {
        assert_eq!(MsgType::from_u32(number), None, "{number}");
    }
    // Exactly the listed numbers are known, in 0..=0xffff.
    let known = (0..=0xffff)
        .filter(|&n| MsgType::from_u32(n).is_some())
        .count();
    assert_eq!(known, XS_WIRE_H_TYPES.len());
}

#[test]
fn the_header_is_four_little_endian_u32s() {
    // struct xsd_sockmsg { type; req_id; tx_id; len; }
    let header = Header {
        msg_type: 11,
        req_id: 0x0102_0304,
        tx_id: 7,
        len: 0x1000,
    };
    assert_eq!(HEADER_LEN, 16);
    assert_eq!(
        header.to_bytes(),
        [
            0x0b, 0, 0, 0, //
            0x04, 0x03, 0x02, 0x01, //
            7, 0, 0, 0, //
            0x00, 0x10, 0, 0,
        ]
    );
    assert_eq!(header.kind(), Some(MsgType::Write));
}

/// `xsd_errors[]` in its order, with the Linux errno of each name.
const XSD_ERRORS: &[(&str, i32)] = &[
    ("EINVAL", 22),
    ("EACCES", 13),
    ("EEXIST", 17),
    ("EISDIR", 21),
    ("ENOENT", 2),
    ("ENOMEM", 12),
    ("ENOSPC", 28),
    ("EIO", 5),
    ("ENOTEMPTY", 39),
    ("ENOSYS", 38),
    ("EROFS", 30),
    ("EBUSY", 16),
    ("EAGAIN", 11),
    ("EISCONN", 106),
    ("E2BIG", 7),
    ("EPERM", 1),
];

#[test]
fn the_error_table_is_xsd_errors_in_order() {
    let names: Vec<&str> = ALL_ERROR_KINDS.iter().map(|k| k.name()).collect();
    let expected: Vec<&str> = XSD_ERRORS.iter().map(|&(name, _)| name).collect();
    assert_eq!(names, expected);
}

#[test]
fn every_error_name_has_its_linux_errno() {
    for &(name, errno) in XSD_ERRORS {
        let kind = ErrorKind::from_name(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(kind.name(), name);
        assert_eq!(kind.to_string(), name);
        assert_eq!(kind.errno(), errno, "{name}");
        assert_eq!(ErrorKind::from_errno(errno), kind, "{errno}");
    }
    for (kind, name) in [
        (ErrorKind::Enoent, "ENOENT"),
        (ErrorKind::Eacces, "EACCES"),
        (ErrorKind::Eagain, "EAGAIN"),
        (ErrorKind::Eexist, "EEXIST"),
        (ErrorKind::E2big, "E2BIG"),
        (ErrorKind::Enosys, "ENOSYS"),
        (ErrorKind::Einval, "EINVAL"),
    ] {
        assert_eq!(kind.name(), name);
    }
}

#[test]
fn names_and_errnos_outside_the_table_are_einval_as_libxenstore_reads_them() {
    for name in ["enoent", "ENOENT\0", "", "ETIMEDOUT", "EWOULDBLOCK"] {
        assert_eq!(ErrorKind::from_name(name), None, "{name:?}");
        assert_eq!(ErrorKind::from_name_or_einval(name), ErrorKind::Einval);
    }
    // ETIMEDOUT (110), EBADF (9), 0, negative: sent as EINVAL by a daemon.
    for errno in [110, 9, 0, -2, i32::MAX] {
        assert_eq!(ErrorKind::from_errno(errno), ErrorKind::Einval, "{errno}");
    }
}

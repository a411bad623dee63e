//! One test per decision where libxl, QEMU and Linux disagree (crate docs, "Policy").

use xsio_vbd::{NumberError, ParseError, Style, Vbd, parse_raw};

#[test]
fn d_form_without_p_follows_the_spec_not_libxl() {
    assert_eq!(Vbd::parse("d0").unwrap().number(), 51712);
    assert_eq!(Vbd::parse("d5").unwrap().number(), 51792);
    assert_eq!(Vbd::parse("d16").unwrap().number(), 268439552);
}

#[test]
fn explicit_partition_zero_is_refused_like_libxl_not_qemu() {
    for name in ["xvda0", "xvdq0", "sda0", "hda0"] {
        assert_eq!(Vbd::parse(name), Err(ParseError::ExplicitPartitionZero));
    }
    assert_eq!(Vbd::parse("d0p0").unwrap().number(), 51712);
}

#[test]
fn leading_zeros_are_refused_where_libxl_reads_octal_and_qemu_decimal() {
    assert_eq!(Vbd::parse("d010p1"), Err(ParseError::LeadingZero { at: 1 }));
    assert_eq!(Vbd::parse("d0p08"), Err(ParseError::LeadingZero { at: 3 }));
    assert_eq!(Vbd::parse("xvda01"), Err(ParseError::LeadingZero { at: 4 }));
}

#[test]
fn strtoul_laxness_signs_spaces_and_hex_are_refused() {
    for (name, ch, at) in [
        ("xvda 1", ' ', 4),
        ("xvda+1", '+', 4),
        ("d 1p2", ' ', 1),
        ("d+1p2", '+', 1),
        ("d0x1p0", 'x', 2),
        ("d1 2", ' ', 2),
    ] {
        assert_eq!(
            Vbd::parse(name),
            Err(ParseError::InvalidCharacter { ch, at }),
            "{name}"
        );
    }
}

#[test]
fn bare_numbers_only_through_the_explicit_raw_api_like_libxl() {
    assert_eq!(Vbd::parse("51712"), Err(ParseError::UnknownPrefix));
    assert_eq!(parse_raw("51712"), Ok(51712));
    assert_eq!(parse_raw("0xca00"), Ok(51712));
    assert_eq!(parse_raw("0145000"), Ok(51712));
    assert_eq!(parse_raw("0"), Ok(0));
    assert!(parse_raw("2147483648").is_err(), "above INT_MAX, as libxl");
    assert!(parse_raw("-1").is_err());
    assert!(parse_raw("08").is_err(), "8 is not an octal digit");
}

#[test]
fn libxl_negative_and_empty_results_are_errors() {
    assert_eq!(Vbd::parse(""), Err(ParseError::Empty));
    assert!(
        parse_raw("").is_err(),
        "libxl returns 0 for the empty string"
    );
    for name in ["xvd", "xvd1", "sd", "hd", "hd1"] {
        assert_eq!(Vbd::parse(name), Err(ParseError::MissingDisk), "{name}");
    }
    assert!(matches!(
        Vbd::parse("d-1p0"),
        Err(ParseError::InvalidCharacter { ch: '-', at: 1 })
    ));
}

#[test]
fn qemu_letter_wraparound_is_refused() {
    // 2^32 + 1 in bijective base 26: QEMU wraps it to xvda.
    assert_eq!(
        Vbd::parse("xvdmwlqkww"),
        Err(ParseError::DiskOutOfRange {
            name: "xvd",
            limit: 1 << 20
        })
    );
    // Any length of letters is safe.
    let long = format!("xvd{}", "z".repeat(10_000));
    assert!(matches!(
        Vbd::parse(&long),
        Err(ParseError::DiskOutOfRange { .. })
    ));
    let long_digits = format!("d{}", "9".repeat(10_000));
    assert!(matches!(
        Vbd::parse(&long_digits),
        Err(ParseError::DiskOutOfRange { .. })
    ));
}

#[test]
fn disks_past_4095_are_valid_though_linux_cannot_name_them() {
    let fan = Vbd::parse("xvdfan").unwrap();
    let fao = Vbd::parse("xvdfao").unwrap();
    assert_eq!((fan.disk(), fao.disk()), (4095, 4096));
    assert!(fan.linux_can_name());
    assert!(!fao.linux_can_name());
    assert!(Vbd::parse("hdd").unwrap().linux_can_name());
}

#[test]
fn ide_numbers_keep_ide_names_unlike_libxl() {
    // libxl: hdb -> xvde, hdc -> xvda (it ignores the major).
    assert_eq!(Vbd::from_number(832).unwrap().to_string(), "hdb");
    assert_eq!(Vbd::from_number(5632).unwrap().to_string(), "hdc");
    assert_eq!(Vbd::from_number(769).unwrap().style(), Style::Hd);
}

#[test]
fn partition_zero_is_omitted_when_printing_unlike_qemu() {
    assert_eq!(Vbd::parse("d0p0").unwrap().to_string(), "xvda");
    assert_eq!(Vbd::parse("hdc").unwrap().to_string(), "hdc");
}

#[test]
fn deprecated_majors_are_refused_though_linux_decodes_them() {
    for major in [65, 128] {
        assert_eq!(
            Vbd::from_number(major << 8),
            Err(NumberError::UnknownMajor { major })
        );
    }
    assert!(Vbd::parse("sdq").is_err());
    assert!(Vbd::parse("hde").is_err());
}

#[test]
fn non_canonical_extended_numbers_are_refused_with_the_canonical_one() {
    for (number, canonical) in [(1 << 28, 51712), (1 << 28 | 15 << 8 | 15, 51967)] {
        assert_eq!(
            Vbd::from_number(number),
            Err(NumberError::NonCanonical { canonical })
        );
    }
}

#[test]
fn upper_ide_minors_are_refused_though_linux_reads_them_as_the_next_disks() {
    // Linux reads 3:128 as hdc; Xen writes hdc as 22:0.
    assert_eq!(
        Vbd::from_number(3 << 8 | 128),
        Err(NumberError::NonCanonical { canonical: 5632 })
    );
    assert_eq!(
        Vbd::from_number(22 << 8 | 128),
        Err(NumberError::IdeDiskOutOfRange { disk: 4 })
    );
}

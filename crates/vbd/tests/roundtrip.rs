//! Property tests: number → name → number over the whole valid range, and name → number →
//! name for canonical names.

use proptest::prelude::*;
use xsio_vbd::{Style, Vbd};

/// Any device within its style's limits.
fn any_vbd() -> impl Strategy<Value = Vbd> {
    prop_oneof![
        Just(Style::Xvd),
        Just(Style::D),
        Just(Style::Sd),
        Just(Style::Hd)
    ]
    .prop_flat_map(|style| {
        let (disks, parts) = style.limits();
        (Just(style), 0..disks, 0..parts)
    })
    .prop_map(|(style, disk, part)| Vbd::new(style, disk, part).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn number_name_number_is_identity(number in any::<u32>()) {
        if let Ok(vbd) = Vbd::from_number(number) {
            let name = vbd.to_string();
            let reparsed = Vbd::parse(&name).unwrap();
            prop_assert_eq!(reparsed.number(), number, "{}", name);
            prop_assert_eq!(Vbd::from_number(reparsed.number()).unwrap(), vbd);
        }
    }

    #[test]
    fn name_number_name_is_identity_for_canonical_names(vbd in any_vbd()) {
        let name = vbd.to_string();
        let number = vbd.number();
        let decoded = Vbd::from_number(number).unwrap();
        prop_assert_eq!(decoded.to_string(), name.clone());
        prop_assert_eq!(Vbd::parse(&name).unwrap().number(), number);
        prop_assert_eq!((decoded.disk(), decoded.partition()), (vbd.disk(), vbd.partition()));
    }

    #[test]
    fn arbitrary_text_never_panics_and_valid_parses_round_trip(name in "[a-z0-9 +xp-]{0,12}") {
        if let Ok(vbd) = Vbd::parse(&name) {
            prop_assert_eq!(Vbd::from_number(vbd.number()).unwrap().number(), vbd.number());
        }
    }
}

#[test]
fn every_small_number_round_trips_exhaustively() {
    // Every number below 2^16 covers every xvd, sd and hd small-form device.
    let mut valid = 0;
    for number in 0..=u16::MAX as u32 {
        if let Ok(vbd) = Vbd::from_number(number) {
            valid += 1;
            assert_eq!(Vbd::parse(&vbd.to_string()).unwrap().number(), number);
        }
    }
    // 256 xvd + 256 sd, and two IDE majors of two disks with 64 partitions each.
    assert_eq!(valid, 256 + 256 + 128 + 128);
}

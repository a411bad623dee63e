//! Any text: parsing never panics, and whatever parses round-trips through its number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xsio_vbd::{Vbd, parse_raw};

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(vbd) = Vbd::parse(name) {
        let number = vbd.number();
        let decoded = Vbd::from_number(number).expect("a parsed name's number decodes");
        assert_eq!(decoded.number(), number);
        assert_eq!((decoded.disk(), decoded.partition()), (vbd.disk(), vbd.partition()));
        let canonical = decoded.to_string();
        assert_eq!(Vbd::parse(&canonical).expect("canonical name parses"), decoded);
        assert_eq!(parse_raw(name), Ok(number));
    }
    if data.len() >= 4 {
        let number = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        if let Ok(vbd) = Vbd::from_number(number) {
            assert_eq!(Vbd::parse(&vbd.to_string()).map(|v| v.number()), Ok(number));
        }
    }
});

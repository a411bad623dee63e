//! Names per second for parse and format. Run with `cargo xtask bench -p xsio-vbd`.

use std::hint::black_box;

use xsio_vbd::Vbd;

fn main() {
    divan::main();
}

/// A realistic mix: small and extended xvd, d-form, hd and sd.
const NAMES: &[&str] = &[
    "xvda", "xvdb2", "xvdp15", "xvdq", "xvdaa", "xvdtq37", "d536p37", "d0", "hdc2", "sdb3",
];

#[divan::bench(name = "parse (10 names)")]
fn parse() -> u32 {
    let mut sum = 0u32;
    for name in black_box(NAMES) {
        sum = sum.wrapping_add(Vbd::parse(name).map(|v| v.number()).unwrap_or(0));
    }
    sum
}

#[divan::bench(name = "format (10 numbers)")]
fn format(bencher: divan::Bencher<'_, '_>) {
    let vbds: Vec<Vbd> = NAMES.iter().map(|n| Vbd::parse(n).unwrap()).collect();
    let mut buf = String::with_capacity(32);
    bencher.bench_local(|| {
        let mut len = 0;
        for vbd in black_box(&vbds) {
            buf.clear();
            std::fmt::Write::write_fmt(&mut buf, format_args!("{vbd}")).unwrap();
            len += buf.len();
        }
        len
    });
}

#[divan::bench(name = "from_number (10 numbers)")]
fn from_number(bencher: divan::Bencher<'_, '_>) {
    let numbers: Vec<u32> = NAMES
        .iter()
        .map(|n| Vbd::parse(n).unwrap().number())
        .collect();
    bencher.bench_local(|| {
        black_box(&numbers)
            .iter()
            .filter_map(|&n| Vbd::from_number(n).ok())
            .count()
    });
}

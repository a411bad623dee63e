//! Differential test: seeded random operation sequences from dom0 and two guests, played
//! against Xen 4.17's C xenstored (guests over real rings, under the testkit's shim) and
//! against `xsio xenstored`; replies and watch events must be identical except for the
//! differences in the table of `xsio-xenstored`'s crate docs. A failing sequence is
//! minimised before it is reported.
//!
//! `XSIO_DIFF_SEED` picks the seed (default: fixed), `XSIO_DIFF_OPS` the length
//! (default: a short run; the long run is `XSIO_DIFF_OPS=100000`).

mod xen_diff;

use std::path::Path;
use std::time::Duration;

use xen_diff::generate::Generator;
use xen_diff::{Limits, Side, failure, minimise, play};
use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::xen::Flavour;

const DEFAULT_SEED: u64 = 0x5eed_0001;
const DEFAULT_OPS: usize = 1500;
/// Time the minimiser may spend replaying (the test's limit is 5 minutes).
const MINIMISE_BUDGET: Duration = Duration::from_secs(150);

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn xsio_xenstored_answers_as_xen_c_xenstored() {
    let limits = Limits {
        nodes: 40,
        watches: 8,
    };
    let seed = env_number("XSIO_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let count = env_number("XSIO_DIFF_OPS").map_or(DEFAULT_OPS, |n| n as usize);
    let ops = Generator::new(seed).ops(count);
    let xsio = Path::new(env!("CARGO_BIN_EXE_xsio"));
    let mut start = || (Side::xen(&limits).unwrap(), Side::xsio(xsio, &limits));
    match play(&mut start, &ops) {
        Err(divergence) => {
            eprintln!(
                "difference at operation {}:\n{}\nminimising...",
                divergence.index, divergence.report
            );
            let (ops, divergence) = minimise(&mut start, &ops, divergence, MINIMISE_BUDGET);
            panic!("{}", failure(seed, &ops, &divergence));
        }
        Ok(summary) => {
            eprintln!("seed {seed:#x}: no unaccepted difference; {summary}");
            // A run that compared little proves little.
            assert!(summary.ok_replies > count / 4, "{summary}");
            assert!(summary.error_replies > count / 10, "{summary}");
            assert!(summary.events > count / 20, "{summary}");
            assert_eq!(summary.given_up, 0, "{summary}");
        }
    }
}

/// Every rule that can accept a difference is a row of the one table in the crate docs.
fn every_accepted_difference_is_in_the_crate_docs_table() {
    let docs = include_str!("../../xenstored/src/lib.rs");
    for name in xen_diff::accepted::rule_names() {
        assert!(
            docs.contains(&format!("//! | `{name}` |")),
            "rule {name} has no row in xsio-xenstored's table of accepted differences"
        );
    }
    assert!(docs.contains("//! | `quota-off-by-one` |"));
}

// The comparison with Xen's C xenstored (under the shim).
const AGAINST_XEN: &[(&str, fn())] =
    xsio_testkit::tests![xsio_xenstored_answers_as_xen_c_xenstored];

// The check of the docs table, which needs no peer.
const DOCS_ONLY: &[(&str, fn())] =
    xsio_testkit::tests![every_accepted_difference_is_in_the_crate_docs_table];

fn main() -> std::process::ExitCode {
    // The shim is C compiled at test time; the reference is Xen's C xenstored.
    let cc = Peer::runs("cc", "cc", &["--version"]);
    let xen = Peer::file(Flavour::C.program());
    Tests::new()
        .each(&[&cc, &xen], AGAINST_XEN)
        .each(&[], DOCS_ONLY)
        .run()
}

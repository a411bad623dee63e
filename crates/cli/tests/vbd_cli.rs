//! `xsio vbd` on the vectors of the design notes (vbd.md), through the real binary.

use std::process::Command;

fn xsio(args: &[&str]) -> (String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_xsio"))
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        out.status.code().unwrap(),
    )
}

#[test]
fn names_print_their_numbers_one_line_each() {
    let (out, code) = xsio(&["vbd", "xvda", "hdc2", "d536p37"]);
    assert_eq!(out, "xvda\t51712\nhdc2\t5634\nd536p37\t268572709\n");
    assert_eq!(code, 0);
}

#[test]
fn an_invalid_name_prints_its_reason_and_sets_status_1() {
    let (out, code) = xsio(&["vbd", "xvda", "xvda0", "hde"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "xvda\t51712");
    assert!(
        lines[1].starts_with("xvda0\terror: explicit partition 0"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("hde\terror: disk out of range"),
        "{out}"
    );
    assert_eq!(code, 1);
}

#[test]
fn numbers_print_canonical_names() {
    let (out, code) = xsio(&["vbd", "--number", "51712", "268572709", "832", "2067"]);
    assert_eq!(
        out,
        "51712\txvda\n268572709\txvdtq37\n832\thdb\n2067\tsdb3\n"
    );
    assert_eq!(code, 0);
}

#[test]
fn bad_numbers_are_reported_per_line() {
    let (out, code) = xsio(&["vbd", "--number", "0x10", "536870912", "51712"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0x10\terror: not a decimal number");
    assert!(lines[1].starts_with("536870912\terror: reserved"), "{out}");
    assert_eq!(lines[2], "51712\txvda");
    assert_eq!(code, 1);
}

#[test]
fn every_design_vector_agrees_with_the_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vbd/valid.tsv");
    let text = std::fs::read_to_string(path).unwrap();
    let rows: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut cols = l.split('\t');
            (cols.next().unwrap(), cols.next().unwrap())
        })
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let mut args = vec!["vbd"];
    args.extend(&names);
    let (out, code) = xsio(&args);
    assert_eq!(code, 0);
    for (line, (name, number)) in out.lines().zip(&rows) {
        assert_eq!(line, format!("{name}\t{number}"));
    }
}

//! Table-driven vectors from `testdata/vbd/` (sources named in each file).

use xsio_vbd::{NumberError, ParseError, Vbd};

fn rows(file: &str) -> Vec<Vec<String>> {
    let path = format!("{}/../../testdata/vbd/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert!(rows.len() > 10, "{path} has too few vectors");
    rows
}

fn variant<E: std::fmt::Debug>(err: &E) -> String {
    let dbg = format!("{err:?}");
    dbg.split([' ', '{', '(']).next().unwrap().to_owned()
}

#[test]
fn valid_names_give_their_numbers() {
    for row in rows("valid.tsv") {
        let (name, number) = (&row[0], row[1].parse::<u32>().unwrap());
        let vbd = Vbd::parse(name).unwrap_or_else(|e| panic!("{name:?} refused: {e}"));
        assert_eq!(vbd.number(), number, "{name}");
    }
}

#[test]
fn invalid_names_give_the_named_error() {
    for row in rows("invalid.tsv") {
        let (name, expected) = (&row[0], &row[1]);
        let err: ParseError = Vbd::parse(name).expect_err(name);
        assert_eq!(&variant(&err), expected, "{name:?}: {err}");
        // Every error can be shown to a person.
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn numbers_give_their_canonical_names() {
    for row in rows("numbers.tsv") {
        let (number, expected) = (row[0].parse::<u32>().unwrap(), &row[1]);
        match expected.strip_prefix("error:") {
            Some(want) => {
                let err: NumberError = Vbd::from_number(number).expect_err(expected);
                assert_eq!(&variant(&err), want, "{number}");
            }
            None => {
                let vbd = Vbd::from_number(number).unwrap();
                assert_eq!(&vbd.to_string(), expected, "{number}");
                assert_eq!(vbd.number(), number);
            }
        }
    }
}

#[test]
fn every_valid_name_in_canonical_form_prints_back_unchanged() {
    for row in rows("valid.tsv") {
        let name = &row[0];
        let vbd = Vbd::parse(name).unwrap();
        if !name.starts_with('d') {
            assert_eq!(&vbd.to_string(), name);
        }
    }
}

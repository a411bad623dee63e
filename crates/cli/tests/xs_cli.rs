//! `xsio xs` against the golden transcripts of Xen's own xenstore-utils: for the same
//! daemon answers, our commands send the same bytes and print the same values.

mod golden;

use golden::{Replay, run, transcript};

const XSIO: &str = env!("CARGO_BIN_EXE_xsio");

fn xsio_xs(args: &[&str], golden: &str) -> (golden::Run, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let t = transcript(golden);
    let replay = Replay::start(&t);
    let mut argv = vec!["xs".to_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let out = run(XSIO, &argv, &replay.socket);
    (out, replay.received(), t.client_frames())
}

fn without_req_ids(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f[4..8].fill(0);
            f
        })
        .collect()
}

#[test]
fn single_read_sends_exactly_what_xenstore_read_sends() {
    let (out, sent, golden) = xsio_xs(&["read", "/a"], "read-single");
    assert_eq!(
        sent, golden,
        "byte-identical to xenstore-read, req_id included"
    );
    out.assert_printed("b\n");
}

#[test]
fn single_write_sends_exactly_what_xenstore_write_sends() {
    let (out, sent, golden) = xsio_xs(&["write", "/a", "b"], "write-single");
    assert_eq!(sent, golden);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let (out, sent, golden) = xsio_xs(&["write", "/local/domain/1/name", ""], "write-empty-value");
    assert_eq!(sent, golden);
    assert_eq!(out.status, 0, "{}", out.stderr);
}

#[test]
fn multi_path_write_and_read_use_one_transaction_like_xen() {
    let (out, sent, golden) = xsio_xs(&["write", "/x/y", "1", "/x/z", "2"], "write-multi");
    assert_eq!(out.status, 0, "{}", out.stderr);
    // Same requests; only the req_ids differ (ours count up, libxenstore's are all 0).
    assert_eq!(without_req_ids(&sent), without_req_ids(&golden));
    let (out, sent, golden) = xsio_xs(&["read", "/x/y", "/x/z"], "read-multi");
    out.assert_printed("1\n2\n");
    assert_eq!(without_req_ids(&sent), without_req_ids(&golden));
}

#[test]
fn an_error_reply_exits_1_with_its_name() {
    let (out, sent, golden) = xsio_xs(&["read", "/nope"], "read-enoent");
    assert_eq!(sent, golden);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("ENOENT"), "{}", out.stderr);
    assert_eq!(out.stdout, "");
}

#[test]
fn watch_prints_path_and_token_per_event() {
    let (out, sent, golden) = xsio_xs(&["watch", "/x", "-n", "2"], "watch");
    assert_eq!(sent, golden, "WATCH /x with token /x, as xenstore-watch");
    out.assert_printed("/x\t/x\n/x/y\t/x\n");
}

#[test]
fn ls_walks_the_tree() {
    // xenstore-ls sends DIRECTORY, then per child READ and DIRECTORY; ours sends the same
    // requests in the same order, and with -p a GET_PERMS after each READ.
    let (out, sent, golden) = xsio_xs(&["ls", "/x"], "ls");
    assert_eq!(without_req_ids(&sent), without_req_ids(&golden));
    out.assert_printed("y = \"1\"\nz = \"2\"\n");
    let (out, _, _) = xsio_xs(&["ls", "-p", "/x"], "ls-perms");
    out.assert_printed("y = \"1\"  (n0,r5)\nz = \"2\"  (n0,r5)\n");
}

#[test]
fn no_daemon_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        XSIO,
        &["xs".into(), "read".into(), "/a".into()],
        &dir.path().join("none"),
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("xenstored"), "{}", out.stderr);
}

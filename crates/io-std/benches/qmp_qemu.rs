//! QMP round trips against a real QEMU, our client next to a raw socket client, in one run.
//!
//! `cargo bench -p xsio-io-std --bench qmp_qemu` starts one
//! `qemu-system-x86_64 -machine none` (no guest, no CPU use) and measures, over the same
//! socket, one connection at a time:
//!
//! - `sequential/*`: one `query-status` round trip per iteration, with [`QmpConn::execute`]
//!   and with a raw client (one `write` of the command line, read one reply line);
//! - `pipelined/*`: [`PIPELINED`] `query-status` commands per iteration, submitted together
//!   (our client, default window of 8) and by a raw client whose writer thread sends them all
//!   while the reader reads every reply;
//! - `cpu/*`: no QEMU: the client machine's own cost per message (submit, transmit, decode the
//!   recorded reply, complete) next to `serde_json` parsing the same reply bytes to a `Value`.
//!
//! Before the divan tables, `side_by_side` runs interleaved rounds of every client (and of
//! PyPI `qemu.qmp` through `benches/qemu_qmp_peer.py`, when a venv at
//! `target/qmp-bench-venv` or `XSIO_BENCH_PYTHON` has it) and prints medians and ratios.
//! Set `XSIO_BENCH_NO_AB=1` to skip it.
//!
//! Without QEMU the QEMU groups print SKIPPED and do nothing; the `cpu` group still runs.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};
use std::sync::OnceLock;

use divan::Bencher;
use divan::counter::ItemsCount;
use xsio_core::Input;
use xsio_io_std::now;
use xsio_io_std::qmp::QmpConn;
use xsio_qmp::{Client, Config, Output, typed};
use xsio_testkit::qemu::Qemu;

/// Commands per iteration of the pipelined benches.
const PIPELINED: usize = 200;

static SOCKET: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Starts QEMU (no guest) if it is installed; a bench goes on without it.
fn start_qemu() -> Option<Qemu> {
    let qemu = Qemu::builder(&["-machine", "none"]).spawn()?;
    let _ = SOCKET.set(Some(qemu.socket().to_path_buf()));
    Some(qemu)
}

fn main() {
    let qemu = start_qemu();
    if qemu.is_none() {
        let _ = SOCKET.set(None);
        eprintln!("SKIPPED: qemu-system-x86_64 is not installed; only the cpu benches run");
    }
    if let Some(socket) = socket() {
        if std::env::var_os("XSIO_BENCH_NO_AB").is_none() {
            side_by_side::run(socket);
        }
    }
    divan::main();
    drop(qemu);
}

fn socket() -> Option<&'static PathBuf> {
    SOCKET.get().and_then(Option::as_ref)
}

fn by_order() -> Config {
    Config {
        match_by_order: true,
        ..Config::default()
    }
}

fn ours(socket: &PathBuf) -> QmpConn {
    QmpConn::connect(socket, Config::default()).expect("connect to QEMU")
}

/// The floor: a minimal client, one `write` per command, one line read per reply.
struct Raw {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    line: String,
}

impl Raw {
    fn connect(socket: &PathBuf) -> Raw {
        let writer = UnixStream::connect(socket).expect("connect to QEMU");
        let mut raw = Raw {
            reader: BufReader::new(writer.try_clone().unwrap()),
            writer,
            line: String::new(),
        };
        raw.read_line(); // greeting
        raw.writer
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
            .unwrap();
        raw.read_line();
        raw
    }

    fn read_line(&mut self) -> usize {
        self.line.clear();
        self.reader.read_line(&mut self.line).unwrap()
    }

    /// `n` `query-status` commands with ids, one line each.
    fn batch(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("{{\"execute\":\"query-status\",\"id\":{i}}}\n").into_bytes())
            .collect()
    }

    /// Writes `batch` (`n` commands) a line per `write` from a second thread while this
    /// one reads the `n` replies.
    fn pipeline(&mut self, batch: Vec<u8>, n: usize) {
        let mut writer = self.writer.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            for line in batch.split_inclusive(|&b| b == b'\n') {
                writer.write_all(line).unwrap();
            }
        });
        for _ in 0..n {
            self.read_line();
        }
        sender.join().unwrap();
    }
}

#[divan::bench_group(sample_count = 30)]
mod sequential {
    use super::*;

    #[divan::bench]
    fn xsio_qmp(bencher: Bencher<'_, '_>) {
        let Some(socket) = socket() else { return };
        let mut qmp = ours(socket);
        bencher.bench_local(|| qmp.execute(typed::query_status()).unwrap());
    }

    #[divan::bench]
    fn xsio_qmp_by_order(bencher: Bencher<'_, '_>) {
        let Some(socket) = socket() else { return };
        let mut qmp = QmpConn::connect(socket, by_order()).unwrap();
        bencher.bench_local(|| qmp.execute(typed::query_status()).unwrap());
    }

    #[divan::bench]
    fn raw_socket(bencher: Bencher<'_, '_>) {
        let Some(socket) = socket() else { return };
        let mut raw = Raw::connect(socket);
        bencher.bench_local(|| {
            raw.writer
                .write_all(b"{\"execute\":\"query-status\"}\n")
                .unwrap();
            raw.read_line()
        });
    }

    #[divan::bench]
    fn raw_socket_with_id(bencher: Bencher<'_, '_>) {
        let Some(socket) = socket() else { return };
        let mut raw = Raw::connect(socket);
        let mut id = 0u64;
        bencher.bench_local(|| {
            id += 1;
            raw.writer
                .write_all(format!("{{\"execute\":\"query-status\",\"id\":{id}}}\n").as_bytes())
                .unwrap();
            raw.read_line()
        });
    }
}

#[divan::bench_group(sample_count = 30)]
mod pipelined {
    use super::*;

    /// [`PIPELINED`] commands submitted together, then every reply waited for.
    fn ours_pipelined(bencher: Bencher<'_, '_>, config: Config) {
        let Some(socket) = socket() else { return };
        let mut qmp = QmpConn::connect(socket, config).expect("connect to QEMU");
        bencher.counter(ItemsCount::new(PIPELINED)).bench_local(|| {
            let ops: Vec<_> = (0..PIPELINED)
                .map(|_| qmp.submit(typed::query_status()))
                .collect();
            for op in ops {
                qmp.wait(op).unwrap();
            }
        });
    }

    #[divan::bench]
    fn xsio_qmp(bencher: Bencher<'_, '_>) {
        ours_pipelined(bencher, Config::default());
    }

    #[divan::bench]
    fn xsio_qmp_by_order(bencher: Bencher<'_, '_>) {
        ours_pipelined(bencher, by_order());
    }

    #[divan::bench]
    fn raw_socket(bencher: Bencher<'_, '_>) {
        let Some(socket) = socket() else { return };
        let mut raw = Raw::connect(socket);
        let batch = Raw::batch(PIPELINED);
        bencher
            .counter(ItemsCount::new(PIPELINED))
            .bench_local(|| raw.pipeline(batch.clone(), PIPELINED));
    }
}

/// A reply as QEMU 7.2 sends it to `query-status`.
fn reply(id: u64) -> Vec<u8> {
    format!(
        "{{\"return\": {{\"status\": \"running\", \"singlestep\": false, \"running\": true}}, \"id\": {id}}}\r\n"
    )
    .into_bytes()
}

/// Messages per iteration of the cpu benches.
const MESSAGES: usize = 1000;

#[divan::bench_group]
mod cpu {
    use super::*;

    /// Submit `query-status`, take its transmit, feed the reply, take the completion.
    #[divan::bench]
    fn client_round_trip(bencher: Bencher<'_, '_>) {
        let replies: Vec<Vec<u8>> = (1..=MESSAGES as u64).map(reply).collect();
        bencher
            .counter(ItemsCount::new(MESSAGES))
            .with_inputs(|| {
                let t = now();
                let mut qmp: Client<std::os::fd::OwnedFd> = Client::new(Config::default(), t);
                qmp.handle_input(t, Input::Bytes(br#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#));
                qmp.handle_input(t, Input::Bytes(b"{\"return\": {}, \"id\": 0}\r\n"));
                while qmp.poll_output().is_some() {}
                (qmp, t)
            })
            .bench_local_values(|(mut qmp, t)| {
                for reply in &replies {
                    qmp.execute(t, typed::query_status());
                    while let Some(out) = qmp.poll_output() {
                        black_box(out);
                    }
                    qmp.handle_input(t, Input::Bytes(reply));
                    while let Some(out) = qmp.poll_output() {
                        if let Output::Done { result, .. } = out {
                            black_box(result.unwrap());
                        }
                    }
                }
            });
    }

    /// The yardstick: `serde_json` parsing the same reply bytes into a `Value`.
    #[divan::bench]
    fn serde_json_value(bencher: Bencher<'_, '_>) {
        let replies: Vec<Vec<u8>> = (1..=MESSAGES as u64).map(reply).collect();
        bencher.counter(ItemsCount::new(MESSAGES)).bench_local(|| {
            for reply in &replies {
                let v: serde_json::Value = serde_json::from_slice(black_box(reply)).unwrap();
                black_box(v);
            }
        });
    }
}

/// Interleaved rounds (raw, ours, raw, ours, ...) so that machine noise hits both alike;
/// prints the medians and the ratios the issue asks for.
mod side_by_side {
    use std::time::Instant;

    use super::*;

    const N: usize = 1000;
    const ROUNDS: usize = 11;

    fn rate(start: Instant) -> f64 {
        N as f64 / (now() - start).as_secs_f64()
    }

    fn raw_sequential(socket: &PathBuf, with_id: bool) -> f64 {
        let mut raw = Raw::connect(socket);
        let lines: Vec<Vec<u8>> = (0..N)
            .map(|i| {
                if with_id {
                    format!("{{\"execute\":\"query-status\",\"id\":{}}}\n", i + 1).into_bytes()
                } else {
                    b"{\"execute\":\"query-status\"}\n".to_vec()
                }
            })
            .collect();
        let start = now();
        for line in &lines {
            raw.writer.write_all(line).unwrap();
            raw.read_line();
        }
        rate(start)
    }

    fn raw_pipelined(socket: &PathBuf) -> f64 {
        let mut raw = Raw::connect(socket);
        let batch = Raw::batch(N);
        let start = now();
        raw.pipeline(batch, N);
        rate(start)
    }

    fn ours_sequential(socket: &PathBuf, config: Config) -> f64 {
        let mut qmp = QmpConn::connect(socket, config).unwrap();
        let start = now();
        for _ in 0..N {
            qmp.execute(typed::query_status()).unwrap();
        }
        rate(start)
    }

    fn ours_pipelined(socket: &PathBuf, config: Config) -> f64 {
        let mut qmp = QmpConn::connect(socket, config).unwrap();
        let start = now();
        let ops: Vec<_> = (0..N).map(|_| qmp.submit(typed::query_status())).collect();
        for op in ops {
            qmp.wait(op).unwrap();
        }
        rate(start)
    }

    /// The Python interpreter of the venv with `qemu.qmp`, if one was made (see the README).
    fn python() -> Option<PathBuf> {
        let path = std::env::var_os("XSIO_BENCH_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/qmp-bench-venv/bin/python")
            });
        let works = Process::new(&path)
            .args(["-c", "import qemu.qmp"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        works.then_some(path)
    }

    fn qemu_qmp(python: &PathBuf, socket: &PathBuf, mode: &str) -> f64 {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/qemu_qmp_peer.py");
        let out = Process::new(python)
            .arg(script)
            .arg(socket)
            .arg(N.to_string())
            .arg(mode)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(f64::NAN)
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }

    pub(super) fn run(socket: &PathBuf) {
        let names = [
            "raw sequential, no id",
            "raw sequential, ids",
            "xsio sequential, ids",
            "xsio sequential, by order",
            "raw pipelined, ids",
            "xsio pipelined, ids",
            "xsio pipelined, by order",
            "qemu.qmp sequential",
            "qemu.qmp pipelined",
        ];
        let python = python();
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        for _ in 0..ROUNDS {
            rates[0].push(raw_sequential(socket, false));
            rates[3].push(ours_sequential(socket, by_order()));
            rates[1].push(raw_sequential(socket, true));
            rates[2].push(ours_sequential(socket, Config::default()));
            rates[4].push(raw_pipelined(socket));
            rates[5].push(ours_pipelined(socket, Config::default()));
            rates[6].push(ours_pipelined(socket, by_order()));
            if let Some(python) = &python {
                rates[7].push(qemu_qmp(python, socket, "sequential"));
                rates[8].push(qemu_qmp(python, socket, "pipelined"));
            }
        }
        if python.is_none() {
            rates.truncate(7);
            eprintln!(
                "qemu.qmp not measured: python3 -m venv target/qmp-bench-venv && \\
                 target/qmp-bench-venv/bin/pip install qemu.qmp (or set XSIO_BENCH_PYTHON)"
            );
        }
        let m: Vec<f64> = rates.into_iter().map(median).collect();
        eprintln!("side by side, {ROUNDS} interleaved rounds of {N} query-status, medians:");
        for (name, rate) in names.iter().zip(&m) {
            eprintln!("  {name:<26} {rate:>8.0} commands/s");
        }
        for (ratio, top, bottom) in [
            ("xsio sequential by order / raw no id", 3, 0),
            ("xsio sequential ids / raw ids", 2, 1),
            ("xsio sequential ids / raw no id", 2, 0),
            ("xsio pipelined ids / raw pipelined", 5, 4),
            ("xsio pipelined by order / raw pipel.", 6, 4),
        ] {
            eprintln!("  ratio {ratio:<37} {:.3}", m[top] / m[bottom]);
        }
    }
}

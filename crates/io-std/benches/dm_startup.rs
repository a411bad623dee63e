//! Time from spawning QEMU to a ready QEMU (greeting, negotiation, `query-status` is
//! `prelaunch`), on a pre-opened socket next to connect-polling every 100 ms (what xapi's
//! xenopsd does), in one run.
//!
//! `cargo bench -p xsio-io-std --bench dm_startup` spawns a paused PC guest
//! (`-machine pc -accel tcg -S -nodefaults -display none`) per iteration:
//!
//! - `ready/pre_opened`: `xsio_io_std::dm::QemuLinks::spawn` binds and listens on the QMP
//!   socket, hands it to QEMU (`-chardev socket,fd=0,...`), and the `xsio_dm::StartUp`
//!   operation connects at once and waits for the greeting;
//! - `ready/connect_polling_100ms`: QEMU creates its own socket (`-qmp unix:...`), and the
//!   client tries to connect (and negotiate) every 100 ms until it can, then asks
//!   `query-status` with the same blocking client.
//!
//! QEMU is killed and reaped outside the timed part. Before the divan tables,
//! `side_by_side` alternates the two for [`ROUNDS`] rounds and prints the medians and
//! their ratio (set `XSIO_BENCH_NO_AB=1` to skip it). Without QEMU everything prints
//! SKIPPED.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use divan::Bencher;
use xsio_dm::{StartConfig, StartUp};
use xsio_harness::Harness;
use xsio_io_std::dm::QemuLinks;
use xsio_io_std::l2::run_until;
use xsio_io_std::now;
use xsio_io_std::qmp::QmpConn;
use xsio_qmp::{Config, typed};
use xsio_testkit::qemu::{BARE_PAUSED_PC, QEMU};

/// The polling interval of the baseline (xenopsd polls every 50 to 100 ms).
const POLL: Duration = Duration::from_millis(100);

/// Rounds of the side-by-side comparison.
const ROUNDS: usize = 15;

fn qemu() -> Command {
    let mut command = Command::new(QEMU);
    command
        .args(BARE_PAUSED_PC)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Spawns QEMU on a socket bound here first and waits until it is ready; the links kill
/// QEMU when dropped.
fn ready_pre_opened(dir: &Path) -> QemuLinks {
    let mut world: Harness<StartUp> = Harness::new(now());
    world.set_log(false);
    let mut links = QemuLinks::default();
    let conn = links
        .spawn(&mut world, qemu(), &dir.join("pre.sock"))
        .expect("spawn QEMU");
    let start = world.add(conn, StartUp::new(StartConfig::fresh(), world.now()));
    world.drain(start);
    run_until(&mut world, &mut links, Duration::from_secs(60), |w| {
        w.actor(start).is_settled()
    })
    .expect("start-up");
    let ready = world.actor(start).result().cloned();
    assert!(matches!(ready, Some(Ok(_))), "{ready:?}");
    links
}

/// QEMU killed and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns QEMU with its own QMP socket, connects every [`POLL`] until it can, and asks
/// `query-status`.
fn ready_polling(dir: &Path) -> Killed {
    let socket = dir.join("polled.sock");
    let child = qemu()
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .spawn()
        .expect("spawn QEMU");
    let child = Killed(child);
    let give_up = now() + Duration::from_secs(60);
    let mut qmp = loop {
        match QmpConn::connect(&socket, Config::default()) {
            Ok(qmp) => break qmp,
            Err(err) => {
                assert!(now() < give_up, "QEMU never listened: {err}");
                std::thread::sleep(POLL);
            }
        }
    };
    let status: typed::StatusInfo = qmp
        .execute(typed::query_status())
        .expect("query-status")
        .parse()
        .expect("a status");
    assert_eq!(status.status, "prelaunch");
    child
}

fn main() {
    if !xsio_testkit::peer::runs(QEMU, &["--version"]) {
        eprintln!("SKIPPED: {QEMU} is not installed; no device-model bench runs");
        return;
    }
    if std::env::var_os("XSIO_BENCH_NO_AB").is_none() {
        side_by_side();
    }
    divan::main();
}

/// Alternates the two ways for [`ROUNDS`] rounds and prints medians and the ratio.
fn side_by_side() {
    let mut pre_opened = Vec::new();
    let mut polling = Vec::new();
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let started = now();
        let links = ready_pre_opened(dir.path());
        pre_opened.push(now() - started);
        drop(links);
        let started = now();
        let child = ready_polling(dir.path());
        polling.push(now() - started);
        drop(child);
    }
    let a = median(&mut pre_opened);
    let b = median(&mut polling);
    println!("side_by_side ({ROUNDS} alternating rounds, spawn to ready, medians):");
    println!(
        "  pre-opened socket        {:>8.1} ms",
        a.as_secs_f64() * 1e3
    );
    println!(
        "  connect-polling 100 ms   {:>8.1} ms",
        b.as_secs_f64() * 1e3
    );
    println!(
        "  polling / pre-opened     {:>8.2}",
        b.as_secs_f64() / a.as_secs_f64()
    );
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[divan::bench_group(sample_count = 10, sample_size = 1)]
mod ready {
    use super::*;

    #[divan::bench]
    fn pre_opened(bencher: Bencher<'_, '_>) {
        bench_ready(bencher, ready_pre_opened);
    }

    #[divan::bench]
    fn connect_polling_100ms(bencher: Bencher<'_, '_>) {
        bench_ready(bencher, ready_polling);
    }

    /// `ready(dir)` in a fresh temp dir per iteration; what it returns (QEMU) is killed
    /// outside the timed part, with the directory.
    fn bench_ready<T>(bencher: Bencher<'_, '_>, ready: fn(&Path) -> T) {
        bencher
            .with_inputs(|| tempfile::tempdir().unwrap())
            .bench_local_values(|dir| (ready(dir.path()), dir));
    }
}

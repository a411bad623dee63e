//! Installs what the tests need: the real peers (Debian packages) and cargo tools.

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

/// The Debian packages that provide the real peers, and a file each one installs.
const PEERS: &[(&str, &str)] = &[
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("xenstore-utils", "/usr/bin/xenstore-read"),
    ("xen-utils-4.17", "/usr/lib/xen-4.17/bin/test-xenstore"),
    (
        "python3-pyxs",
        "/usr/lib/python3/dist-packages/pyxs/__init__.py",
    ),
    ("socat", "/usr/bin/socat"),
    // QEMU's Xen PV backend, and the C compiler (with libc headers) that builds the
    // testkit's shim which lets it and Xen's own xenstored run without a hypervisor.
    ("qemu-system-xen", "/usr/libexec/xen-qemu-system-i386"),
    ("gcc", "/usr/bin/cc"),
    ("libc6-dev", "/usr/include/stdio.h"),
];

/// Installs every missing peer package with apt-get.
pub(crate) fn ensure_peers(sh: &Shell) -> Result<()> {
    let missing: Vec<&str> = PEERS
        .iter()
        .filter(|(_, file)| !std::path::Path::new(file).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        println!("peers: all installed");
        return Ok(());
    }
    println!("peers: installing {}", missing.join(" "));
    // As root (CI, the dev machines) apt-get runs directly; otherwise through sudo.
    let (program, mut prefix) = if is_root(sh) {
        ("apt-get", vec![])
    } else {
        ("sudo", vec!["apt-get"])
    };
    let update = prefix.clone();
    cmd!(sh, "{program} {update...} update -qq")
        .run()
        .context("apt-get update")?;
    prefix.extend(["install", "-y", "-qq", "--no-install-recommends"]);
    let mut missing: Vec<String> = missing.iter().map(|p| (*p).to_owned()).collect();
    // Some images carry a backported qemu-utils whose version breaks bookworm's QEMU 7.2
    // (the peer the tests are written against): install the matching one alongside.
    if backported(sh, "qemu-utils") {
        prefix.push("--allow-downgrades");
        missing.push("qemu-utils/bookworm".to_owned());
    }
    cmd!(sh, "{program} {prefix...} {missing...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .context("apt-get install")?;
    for (pkg, file) in PEERS {
        if !std::path::Path::new(file).exists() {
            bail!("package {pkg} installed but {file} is missing");
        }
    }
    Ok(())
}

/// Installs cargo-nextest and cargo-fuzz when missing.
pub(crate) fn ensure_cargo_tools(sh: &Shell) -> Result<()> {
    if cmd!(sh, "cargo nextest --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_err()
    {
        cmd!(sh, "cargo install cargo-nextest --locked").run()?;
    }
    ensure_cargo_fuzz(sh)
}

/// Installs cargo-fuzz when missing.
pub(crate) fn ensure_cargo_fuzz(sh: &Shell) -> Result<()> {
    if cmd!(sh, "cargo fuzz --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_err()
    {
        cmd!(sh, "cargo install cargo-fuzz --locked").run()?;
    }
    Ok(())
}

/// Whether `package` is installed from a backports suite.
fn backported(sh: &Shell, package: &str) -> bool {
    let format = "${Version}";
    cmd!(sh, "dpkg-query -W -f {format} {package}")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok_and(|version| version.contains("bpo"))
}

fn is_root(sh: &Shell) -> bool {
    cmd!(sh, "id -u")
        .quiet()
        .read()
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

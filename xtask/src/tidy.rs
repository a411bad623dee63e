//! Architecture invariants checked mechanically (run by `cargo xtask tidy` and as a test).
//!
//! - Every crate under `crates/` is named `xsio-<directory>`.
//! - Every crate root says `#![forbid(unsafe_code)]`.
//! - A machine crate (anything that is not a driver) has no I/O crate anywhere in its normal
//!   dependency tree, and its sources never read a clock, spawn a thread or touch the network,
//!   the file system or processes.
//! - Every machine (a type with a public `poll_output`) in a machine crate implements
//!   `xsio_core::Machine`, the one shape that the harness and drivers are generic over.
//! - A toolstack (L2) crate depends on no protocol (L1) machine crate: it speaks
//!   `xsio-ops` operations and a driver connects it.
//! - Every `peer_*` test binary is a `harness = false` target whose `main` runs
//!   `xsio_testkit::peer::Tests` (so a missing peer shows as a skip in the summary, or fails
//!   under `CI`), and has no `#[test]` function (it would silently never run).
//! - Outside `xsio-core`, no source under `src/` adds to an `Instant` (`now + …`,
//!   `+ Duration::…`, `checked_add` on an instant): every deadline goes through
//!   `xsio_core::deadline`, where overflow means "no deadline" rather than a panic.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;

use anyhow::{Context, Result};

/// Crates that do I/O. Their names start with these; everything else is a machine or codec.
/// `xsio-testkit` is here because it spawns QEMU and `xsio xenstored` for the peer tests; it
/// is only ever a dev-dependency, so no machine crate links it.
const DRIVER_PREFIXES: &[&str] = &["xsio-io-", "xsio-cli", "xsio-sim", "xsio-testkit"];

/// The toolstack (L2) crates, and the protocol (L1) machine crates they must not name.
const L2_CRATES: &[&str] = &["xsio-xenbus", "xsio-device", "xsio-dm", "xsio-cdrom"];
const L1_CRATES: &[&str] = &["xsio-xs-client", "xsio-xenstored", "xsio-qmp"];

/// Crates a machine crate must never depend on, even indirectly.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio-util",
    "rustix",
    "nix",
    "libc",
    "mio",
    "socket2",
    "async-std",
    "smol",
];

/// Source text a machine crate must not contain (outside comments).
const FORBIDDEN_IN_MACHINES: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "std::net",
    "std::thread",
    "std::fs",
    "std::process",
    "std::env",
];

/// Returns every violation found, as readable sentences.
pub(crate) fn check(root: &Path) -> Result<Vec<String>> {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root)
        .output()
        .context("cargo metadata")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let mut problems = Vec::new();

    let mut names_by_id = HashMap::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        names_by_id.insert(
            pkg["id"].as_str().unwrap_or_default().to_owned(),
            pkg["name"].as_str().unwrap_or_default().to_owned(),
        );
    }
    let mut normal_deps: HashMap<String, Vec<String>> = HashMap::new();
    for node in meta["resolve"]["nodes"].as_array().into_iter().flatten() {
        let id = node["id"].as_str().unwrap_or_default().to_owned();
        let deps = node["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null())
            })
            .filter_map(|d| d["pkg"].as_str().map(str::to_owned))
            .collect();
        normal_deps.insert(id, deps);
    }

    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let id = pkg["id"].as_str().unwrap_or_default();
        if !members.contains(id) {
            continue;
        }
        let name = pkg["name"].as_str().unwrap_or_default();
        let manifest = Path::new(pkg["manifest_path"].as_str().unwrap_or_default());
        let dir = manifest.parent().unwrap_or(Path::new("."));
        check_peer_tests(pkg, manifest, &mut problems)?;
        if name == "xtask" {
            continue;
        }
        if name != "xsio-core" {
            check_deadline_arithmetic(&dir.join("src"), &mut problems)?;
        }
        let dir_name = dir.file_name().map(|d| d.to_string_lossy().into_owned());
        if dir_name.as_deref().map(|d| format!("xsio-{d}")) != Some(name.to_owned()) {
            problems.push(format!(
                "crate {name} lives in {}; crates live in crates/<name> as xsio-<name>",
                dir.display()
            ));
        }
        for root_file in ["src/lib.rs", "src/main.rs"] {
            let path = dir.join(root_file);
            if let Ok(text) = std::fs::read_to_string(&path) {
                if !text.contains("#![forbid(unsafe_code)]") {
                    problems.push(format!("{} lacks #![forbid(unsafe_code)]", path.display()));
                }
            }
        }
        if DRIVER_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        if let Some(path) = io_dependency_path(id, &normal_deps, &names_by_id) {
            problems.push(format!(
                "machine crate {name} depends on an I/O crate: {}",
                path.join(" -> ")
            ));
        }
        scan_sources(&dir.join("src"), name, &mut problems)?;
        check_machines_implement_the_trait(&dir.join("src"), name, &mut problems)?;
        if L2_CRATES.contains(&name) {
            for dep in normal_deps.get(id).into_iter().flatten() {
                let dep_name = names_by_id.get(dep).map(String::as_str).unwrap_or_default();
                if L1_CRATES.contains(&dep_name) {
                    problems.push(format!(
                        "toolstack crate {name} depends on the protocol machine crate {dep_name}; L2 speaks xsio-ops operations"
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// The `peer_*` test targets of one package run under the peer harness.
fn check_peer_tests(
    pkg: &serde_json::Value,
    manifest: &Path,
    problems: &mut Vec<String>,
) -> Result<()> {
    let manifest_text = std::fs::read_to_string(manifest)?;
    let manifest_lines: Vec<&str> = manifest_text.lines().map(str::trim).collect();
    for target in pkg["targets"].as_array().into_iter().flatten() {
        let name = target["name"].as_str().unwrap_or_default();
        let is_test = target["kind"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|k| k == "test");
        if !is_test || !name.starts_with("peer_") {
            continue;
        }
        let declared = manifest_lines
            .windows(2)
            .any(|w| w[0] == format!("name = \"{name}\"") && w[1] == "harness = false");
        if !declared {
            problems.push(format!(
                "{}: test {name} needs `[[test]] name = \"{name}\"` with `harness = false` on the \
                 next line (peer tests run under xsio_testkit::peer::Tests)",
                manifest.display()
            ));
        }
        let src = Path::new(target["src_path"].as_str().unwrap_or_default());
        let text = std::fs::read_to_string(src)?;
        if !text.contains("Tests::new()") {
            problems.push(format!(
                "{}: a peer test binary's main runs xsio_testkit::peer::Tests",
                src.display()
            ));
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("").trim();
            if code.starts_with("#[test]") || code.starts_with("#[tokio::test") {
                problems.push(format!(
                    "{}:{}: `{code}` in a harness = false peer binary never runs; list the \
                     function in main's Tests with the peers it needs",
                    src.display(),
                    n + 1
                ));
            }
        }
    }
    Ok(())
}

/// Every type with a public `poll_output` method is a machine and must implement
/// `xsio_core::Machine` (directly, or through a crate's `impl_machine!`).
fn check_machines_implement_the_trait(
    dir: &Path,
    crate_name: &str,
    problems: &mut Vec<String>,
) -> Result<()> {
    let mut sources = Vec::new();
    collect_sources(dir, &mut sources)?;
    let all: String = sources.iter().map(|(_, text)| text.as_str()).collect();
    for (path, text) in &sources {
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("impl") {
                current = (!line.contains(" for ")).then(|| impl_type_name(rest));
            }
            if line.trim_start().starts_with("pub fn poll_output(") {
                let Some(name) = current.as_deref() else {
                    continue;
                };
                let implemented = all.contains(&format!("Machine for {name}"))
                    || all.contains(&format!("impl_machine!({name},"));
                if !implemented {
                    problems.push(format!(
                        "{}: machine {name} of {crate_name} has poll_output but does not implement xsio_core::Machine",
                        path.display()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Words that make a `checked_add` operand a point in time or a span of it.
const TIME_WORDS: &[&str] = &[
    "now", "instant", "deadline", "start", "epoch", "clock", "duration", "timeout", "interval",
    "backoff", "delay", "wait", "limit", "grace", "after",
];

/// Every `Instant + Duration` computation in the sources below `dir`.
fn check_deadline_arithmetic(dir: &Path, problems: &mut Vec<String>) -> Result<()> {
    let mut sources = Vec::new();
    collect_sources(dir, &mut sources)?;
    for (path, text) in &sources {
        for (n, line) in text.lines().enumerate() {
            if let Some(what) = instant_arithmetic(line) {
                problems.push(format!(
                    "{}:{}: `{what}` adds to an Instant and panics past its range; compute \
                     deadlines with xsio_core::deadline (overflow = no deadline)",
                    path.display(),
                    n + 1
                ));
            }
        }
    }
    Ok(())
}

/// The first piece of `line` that adds a duration to an instant, if any: `+ Duration::…`,
/// an addition to something named `…now`/`…now()`, or a `checked_add` whose receiver or
/// argument names time (an integer's `checked_add` is left alone). Doc comments count (their
/// examples run); other comments and lines marked `tidy:allow` do not.
fn instant_arithmetic(line: &str) -> Option<&'static str> {
    if line.contains("tidy:allow") {
        return None;
    }
    let trimmed = line.trim_start();
    let code = match trimmed
        .strip_prefix("///")
        .or_else(|| trimmed.strip_prefix("//!"))
    {
        Some(doc) => doc,
        None => line.split("//").next().unwrap_or(""),
    };
    let squeezed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if squeezed.contains("+Duration::") || squeezed.contains("+=Duration::") {
        return Some("+ Duration");
    }
    for (at, _) in squeezed.match_indices('+') {
        let before = squeezed[..at].trim_end_matches("()");
        if before.ends_with("now") || before.ends_with("Now") {
            return Some("now + …");
        }
    }
    if squeezed.contains("Instant::checked_add") {
        return Some("Instant::checked_add");
    }
    for (at, _) in squeezed.match_indices(".checked_add(") {
        let receiver = squeezed[..at]
            .trim_end_matches("()")
            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == ':'))
            .next()
            .unwrap_or_default()
            .to_lowercase();
        let argument = squeezed[at + ".checked_add(".len()..].to_lowercase();
        let argument = argument.split(')').next().unwrap_or_default();
        if TIME_WORDS
            .iter()
            .any(|w| receiver.contains(w) || argument.contains(w))
        {
            return Some("checked_add");
        }
    }
    None
}

/// `<F> Client<F> {` → `Client`.
fn impl_type_name(rest: &str) -> String {
    let rest = rest.trim_start();
    let rest = match rest.strip_prefix('<') {
        Some(generic) => generic.split_once('>').map_or("", |(_, after)| after),
        None => rest,
    };
    rest.trim_start()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn collect_sources(dir: &Path, out: &mut Vec<(std::path::PathBuf, String)>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect_sources(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)?;
            out.push((path, text));
        }
    }
    Ok(())
}

/// Breadth-first search for an I/O crate among the normal dependencies of `start`.
fn io_dependency_path(
    start: &str,
    normal_deps: &HashMap<String, Vec<String>>,
    names: &HashMap<String, String>,
) -> Option<Vec<String>> {
    let mut parent: HashMap<&str, &str> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(id) = queue.pop_front() {
        for dep in normal_deps.get(id).into_iter().flatten() {
            if dep == start || parent.contains_key(dep.as_str()) {
                continue;
            }
            parent.insert(dep, id);
            if IO_CRATES.contains(&names[dep].as_str()) {
                let mut path = vec![names[dep].clone()];
                let mut cur = id;
                while cur != start {
                    path.push(names[cur].clone());
                    cur = parent[cur];
                }
                path.push(names[start].clone());
                path.reverse();
                return Some(path);
            }
            queue.push_back(dep);
        }
    }
    None
}

fn scan_sources(dir: &Path, crate_name: &str, problems: &mut Vec<String>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            scan_sources(&path, crate_name, problems)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)?;
            for (n, line) in text.lines().enumerate() {
                // A test in a machine crate may read the clock once for its epoch, marked so.
                if line.contains("tidy:allow") {
                    continue;
                }
                let code = line.split("//").next().unwrap_or("");
                for bad in FORBIDDEN_IN_MACHINES {
                    if code.contains(bad) {
                        problems.push(format!(
                            "{}:{}: machine crate {crate_name} uses `{bad}`; machines do no I/O and read no clock",
                            path.display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn impl_headers_name_their_type() {
        assert_eq!(super::impl_type_name(" Backend {"), "Backend");
        assert_eq!(super::impl_type_name("<F> Client<F> {"), "Client");
        assert_eq!(super::impl_type_name("<A: Actor> Harness<A> {"), "Harness");
    }

    #[test]
    fn instant_arithmetic_is_found() {
        use super::instant_arithmetic as found;
        // Each shape the workspace used before `xsio_core::deadline`.
        for line in [
            "        let deadline = Instant::now() + LISTEN_WAIT;",
            "    let give_up = now() + Duration::from_secs(60);",
            "        self.now += by;",
            "                .then(|| now.checked_add(timeout))",
            "            self.last_now.checked_add(self.config.watch_event_timeout)",
            "    let give_up = now().checked_add(limit);",
            "            next: start.checked_add(interval),",
            "        .checked_add(Duration::from_millis(ms))",
            "        let later = Instant::checked_add(&at, by);",
            "/// machine.handle_timeout(now + Duration::from_secs(1));",
            "        let at = deadline+Duration::from_millis(5);",
        ] {
            assert!(found(line).is_some(), "not found in {line:?}");
        }
        // Integer arithmetic, the sanctioned function, comments and marked lines pass.
        for line in [
            "            if d.count == 0 || d.domid.checked_add(d.count - 1).is_none() {",
            "    let end = len.checked_add(HEADER_LEN)?;",
            "            out[start..start + HEADER_LEN].copy_from_slice(&bytes);",
            "    let expires = xsio_core::deadline(now, timeout);",
            "    let later = elapsed + step; // not an instant",
            "    // now + Duration::from_secs(1) would panic at the end of time",
            "    let t = now + Duration::from_secs(1); // tidy:allow (a fixed test epoch)",
        ] {
            assert_eq!(found(line), None, "wrongly found in {line:?}");
        }
    }

    #[test]
    fn architecture_invariants_hold() {
        let problems = super::check(&crate::project_root()).unwrap();
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }
}

//! The recording hotplug script of the device tests (`testdata/hotplug/record.sh`: it
//! records its argv and libxl's environment, and exits as its mode says), run through a
//! wrapper that fixes its record file and mode, so the test process's own environment is
//! left alone.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let hotplug = xsio_testkit::hotplug::Hotplug::new(dir.path(), "ok");
//! let ran = std::process::Command::new(&hotplug.wrapper).arg("add").status().unwrap();
//! assert!(ran.success());
//! let recorded = std::fs::read_to_string(&hotplug.record).unwrap();
//! assert!(recorded.starts_with(&format!("argv: {} add\n", hotplug.script.display())));
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A wrapper of the recording script, written into a test's directory.
#[derive(Clone, Debug)]
pub struct Hotplug {
    /// The executable to give as the device's hotplug script (`<dir>/hotplug-<mode>`).
    pub wrapper: PathBuf,
    /// Where each run appends its record (`<dir>/record-<mode>`).
    pub record: PathBuf,
    /// Where each run leaves its process id (`<dir>/pid-<mode>`): a test kills a hanging
    /// script's process through it, or checks that it is gone.
    pub pid: PathBuf,
    /// The recording script itself, which the wrapper runs.
    pub script: PathBuf,
}

impl Hotplug {
    /// Writes the wrapper into `dir`, running the script in `mode` (`ok`: exit 0, `fail`:
    /// report an error and exit 1, `hang`: sleep until killed).
    pub fn new(dir: &Path, mode: &str) -> Hotplug {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/hotplug/record.sh");
        let hotplug = Hotplug {
            wrapper: dir.join(format!("hotplug-{mode}")),
            record: dir.join(format!("record-{mode}")),
            pid: dir.join(format!("pid-{mode}")),
            script,
        };
        std::fs::write(
            &hotplug.wrapper,
            format!(
                "#!/bin/sh\necho $$ > '{}'\nXSIO_HOTPLUG_RECORD='{}' XSIO_HOTPLUG_MODE={mode} exec '{}' \"$@\"\n",
                hotplug.pid.display(),
                hotplug.record.display(),
                hotplug.script.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hotplug.wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        hotplug
    }

    /// What one run with `verb` (`add`, `remove`) for guest 1's `vbd` 51712 records: libxl's
    /// argv and environment for a kernel-backed disk, the wrapper as `script`.
    pub fn record_of(&self, verb: &str) -> String {
        format!(
            "argv: {} {verb}\nscript={}\nXENBUS_TYPE=vbd\nXENBUS_PATH=backend/vbd/1/51712\nXENBUS_BASE_PATH=backend\n--\n",
            self.script.display(),
            self.wrapper.display()
        )
    }
}

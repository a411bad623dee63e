//! The constants of device add and removal, as configuration (libxl's values by default).

use std::time::Duration;

use thiserror::Error;

/// Timeouts and limits of a [`DeviceOp`](crate::DeviceOp). `Default` gives libxl's values
/// (Xen 4.2 to today, see the crate docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// The domain the toolstack runs in (libxl's own domid): 0 in dom0; anything else is a
    /// driver domain, which never bodges and never runs the guest's scripts for backends
    /// elsewhere.
    pub my_domid: u32,
    /// Add: how long the backend may take to reach InitWait (`LIBXL_INIT_TIMEOUT`, 10 s).
    pub init_timeout: Duration,
    /// Removal: how long the backend may take to reach Closed, and a driver domain to
    /// remove its backend directory (`LIBXL_DESTROY_TIMEOUT`, 10 s).
    pub destroy_timeout: Duration,
    /// Removal: how long a live frontend may take to reach Closed after its backend did,
    /// before the hotplug step (not in libxl: xenopsd's wait; 10 s, as the destroy timeout).
    pub frontend_close_timeout: Duration,
    /// One hotplug script run, then SIGKILL (`LIBXL_HOTPLUG_TIMEOUT`, 40 s).
    pub hotplug_timeout: Duration,
    /// How long a killed script may take to be reaped before the operation goes on
    /// without it (not in libxl, which waits for ever; 5 s).
    pub kill_grace: Duration,
    /// The blind wait before the toolstack closes a QEMU backend itself, when the device
    /// model's liveness is unknown (`LIBXL_QEMU_BODGE_TIMEOUT`, 2 s).
    pub qemu_bodge_timeout: Duration,
    /// Commits of one transaction before it fails with a conflict error (the first try
    /// counts; libxl retries for ever). 16, as `xsio-xs-client`'s `transact`.
    pub transaction_attempts: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            my_domid: 0,
            init_timeout: Duration::from_secs(10),
            destroy_timeout: Duration::from_secs(10),
            frontend_close_timeout: Duration::from_secs(10),
            hotplug_timeout: Duration::from_secs(40),
            kill_grace: Duration::from_secs(5),
            qemu_bodge_timeout: Duration::from_secs(2),
            transaction_attempts: 16,
        }
    }
}

/// A timeout scale that is not a finite, non-negative number.
#[derive(Clone, Copy, Debug, PartialEq, Error)]
#[error("timeout scale {0} is not a finite number >= 0")]
pub struct ScaleError(pub f64);

impl Config {
    /// Every timeout multiplied by `factor` (0.1 makes a test ten times faster); a product
    /// too large to represent becomes `Duration::MAX` (no deadline).
    ///
    /// ```
    /// use std::time::Duration;
    /// use xsio_device::Config;
    ///
    /// let fast = Config::default().scaled(0.1)?;
    /// assert_eq!(fast.hotplug_timeout, Duration::from_secs(4));
    /// assert_eq!(fast.qemu_bodge_timeout, Duration::from_millis(200));
    /// assert!(Config::default().scaled(-1.0).is_err());
    /// # Ok::<(), xsio_device::ScaleError>(())
    /// ```
    pub fn scaled(&self, factor: f64) -> Result<Config, ScaleError> {
        if !factor.is_finite() || factor < 0.0 {
            return Err(ScaleError(factor));
        }
        let scale = |d: Duration| {
            Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
        };
        Ok(Config {
            init_timeout: scale(self.init_timeout),
            destroy_timeout: scale(self.destroy_timeout),
            frontend_close_timeout: scale(self.frontend_close_timeout),
            hotplug_timeout: scale(self.hotplug_timeout),
            kill_grace: scale(self.kill_grace),
            qemu_bodge_timeout: scale(self.qemu_bodge_timeout),
            ..self.clone()
        })
    }
}

//! What the two ends of a simulated device are configured with: a block device (qdisk or
//! blkback), a display (QEMU's vfb and vkbd) or a network interface (netback in dom0, set
//! up by the `vif-bridge` script).

use std::time::Duration;

use xsio_xenbus::block::{BlockDevice, BlockTransport, Protocol};
use xsio_xenbus::{BackendConfig, DeviceAreas, FrontendConfig, KeyCheck, KeySpec};

/// Keys of a directory, relative to it.
type Keys = Vec<(String, String)>;

/// A device's own configuration.
#[derive(Debug)]
pub(crate) enum Ends {
    /// A disk or CD-ROM.
    Block(BlockDevice),
    /// A paravirtual framebuffer or keyboard (`vfb`, `vkbd`), served by QEMU.
    Display {
        /// `vfb` or `vkbd`.
        kind: &'static str,
    },
    /// A network interface on a bridge.
    Vif {
        /// Its MAC address.
        mac: String,
        /// The bridge its backend joins.
        bridge: String,
    },
}

impl Ends {
    /// The keys the toolstack writes in the backend and the frontend directory.
    pub(crate) fn toolstack_keys(&self, devid: u32, script: Option<&str>) -> (Keys, Keys) {
        let keys = |pairs: &[(&str, String)]| -> Keys {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        let (mut backend, frontend) = match self {
            Ends::Block(block) => (
                block.toolstack_backend_keys(),
                block.toolstack_frontend_keys(),
            ),
            Ends::Display { kind: "vfb" } => (
                keys(&[
                    ("vnc", "1".into()),
                    ("vnclisten", "127.0.0.1".into()),
                    ("vncdisplay", "0".into()),
                    ("sdl", "0".into()),
                ]),
                Vec::new(),
            ),
            Ends::Display { .. } => (Vec::new(), Vec::new()),
            Ends::Vif { mac, bridge } => (
                keys(&[
                    ("bridge", bridge.clone()),
                    ("mac", mac.clone()),
                    ("handle", devid.to_string()),
                    ("type", "vif".into()),
                ]),
                keys(&[("mac", mac.clone()), ("handle", devid.to_string())]),
            ),
        };
        if let Some(script) = script {
            backend.push(("script".to_owned(), script.to_owned()));
        }
        (backend, frontend)
    }

    /// The backend machine's configuration.
    pub(crate) fn backend_config(&self, areas: DeviceAreas) -> BackendConfig {
        match self {
            Ends::Block(block) => block.backend_config(areas),
            Ends::Display { kind } => BackendConfig {
                areas,
                features: vec![if *kind == "vfb" {
                    ("feature-resize".to_owned(), "1".to_owned())
                } else {
                    ("feature-abs-pointer".to_owned(), "1".to_owned())
                }],
                connect_keys: Vec::new(),
                frontend_keys: ["page-ref", "event-channel"]
                    .into_iter()
                    .map(KeySpec::required)
                    .collect(),
                check: KeyCheck::PresenceOnly,
            },
            Ends::Vif { .. } => BackendConfig {
                areas,
                features: vec![
                    ("feature-sg".to_owned(), "1".to_owned()),
                    ("feature-rx-copy".to_owned(), "1".to_owned()),
                    ("feature-gso-tcpv4".to_owned(), "1".to_owned()),
                ],
                connect_keys: Vec::new(),
                frontend_keys: ["tx-ring-ref", "rx-ring-ref", "event-channel"]
                    .into_iter()
                    .map(KeySpec::required)
                    .collect(),
                check: KeyCheck::PresenceOnly,
            },
        }
    }

    /// The frontend machine's configuration; `n` numbers its rings and event channel.
    pub(crate) fn frontend_config(&self, areas: DeviceAreas, n: u32) -> FrontendConfig {
        match self {
            Ends::Block(block) => {
                let transport = BlockTransport {
                    ring_ref: 8 + 8 * n,
                    event_channel: 20 + n,
                    protocol: Some(Protocol::X86_64),
                };
                block.frontend_config(areas, &transport)
            }
            Ends::Display { kind } => FrontendConfig {
                areas,
                transport: vec![
                    ("page-ref".to_owned(), (8 + 8 * n).to_string()),
                    ("event-channel".to_owned(), (20 + n).to_string()),
                ],
                backend_keys: vec![KeySpec::required(if *kind == "vfb" {
                    "feature-resize"
                } else {
                    "feature-abs-pointer"
                })],
                check: KeyCheck::PresenceOnly,
                close_timeout: Duration::from_secs(5),
            },
            Ends::Vif { .. } => FrontendConfig {
                areas,
                transport: vec![
                    ("tx-ring-ref".to_owned(), (8 + 8 * n).to_string()),
                    ("rx-ring-ref".to_owned(), (9 + 8 * n).to_string()),
                    ("event-channel".to_owned(), (20 + n).to_string()),
                    ("request-rx-copy".to_owned(), "1".to_owned()),
                ],
                backend_keys: vec![KeySpec::required("feature-rx-copy")],
                check: KeyCheck::PresenceOnly,
                close_timeout: Duration::from_secs(5),
            },
        }
    }
}

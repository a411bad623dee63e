//! The device model's operations as one actor kind: the four `xsio-dm` machines (start-up,
//! save, control, shutdown) on one harness, as the `xsio dm` command, the real-QEMU tests
//! and the transcript replays all run them.

use xsio_dm::{
    Control, ControlError, Ready, Save, SaveError, Saved, Shutdown, ShutdownError, StartError,
    StartUp, Stopped,
};

crate::actors! {
    /// One `xsio-dm` operation on the harness.
    #[derive(Debug)]
    pub enum Dm / DmEvent {
        Start(StartUp, Result<Ready, StartError>),
        Save(Save, Result<Saved, SaveError>),
        Control(Control, Result<(), ControlError>),
        Shutdown(Shutdown, Result<Stopped, ShutdownError>),
    }
}

impl Dm {
    /// Whether the operation is over: its completion reported and every request it made
    /// answered (each machine's own `is_settled`).
    pub fn is_settled(&self) -> bool {
        match self {
            Dm::Start(m) => m.is_settled(),
            Dm::Save(m) => m.is_settled(),
            Dm::Control(m) => m.is_settled(),
            Dm::Shutdown(m) => m.is_settled(),
        }
    }
}

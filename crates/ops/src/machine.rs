//! [`impl_machine!`]: the one `xsio_core::Machine` implementation of L2 machines.

/// Implements [`xsio_core::Machine`] for an L2 machine from its inherent methods, in this
/// crate's vocabulary: [`Input::Reply`](crate::Input::Reply) goes to `handle_reply(now, answer)` (an [`Answer`](crate::Answer)); with
/// `watch: method`, [`Input::Watch`](crate::Input::Watch) goes to `method(now, path, token)`; with
/// `peer: method`, [`Input::Peer`](crate::Input::Peer) goes to `method(now, event)`; any other input is one the
/// machine never asks for and is ignored. `handle_timeout`, `poll_output` and `poll_timeout`
/// are the inherent methods of the same names.
///
/// ```
/// use std::time::Instant;
/// use xsio_core::Machine;
/// use xsio_ops::{Answer, Input, InputError, Output, Reply, Requests, XsOp, impl_machine};
///
/// /// Reads one node, once; reports its value.
/// struct ReadOnce {
///     requests: Requests<(), Option<String>>,
/// }
///
/// impl ReadOnce {
///     fn handle_reply(&mut self, _now: Instant, answer: Answer) -> Result<(), InputError> {
///         self.requests.finish(answer.id)?;
///         if let Ok(Reply::Value(value)) = answer.result {
///             self.requests.event(value);
///         }
///         Ok(())
///     }
///     fn handle_watch(&mut self, _now: Instant, _path: &str, _token: &str) {}
///     fn handle_timeout(&mut self, _now: Instant) {}
///     fn poll_output(&mut self) -> Option<Output<Option<String>>> {
///         self.requests.next_output()
///     }
///     fn poll_timeout(&self) -> Option<Instant> {
///         None
///     }
/// }
///
/// impl_machine!(ReadOnce, Option<String>, watch: handle_watch);
///
/// let now = Instant::now(); // tidy:allow (a doc example's epoch)
/// let mut requests = Requests::new();
/// let id = requests.request((), XsOp::Read { path: "/vm/name".into() });
/// let mut machine = ReadOnce { requests };
/// assert!(matches!(machine.poll_output(), Some(Output::Request(_))));
/// let reply = Ok(Reply::Value(Some("guest".into())));
/// Machine::handle_input(&mut machine, now, Input::Reply { id, result: reply })?;
/// assert_eq!(machine.poll_output(), Some(Output::Event(Some("guest".into()))));
/// # Ok::<(), InputError>(())
/// ```
#[macro_export]
macro_rules! impl_machine {
    ($machine:ty, $event:ty $(, watch: $watch:ident)? $(, peer: $peer:ident)?) => {
        impl $crate::__private::xsio_core::Machine for $machine {
            type Input<'a> = $crate::Input<'a>;
            type Output = $crate::Output<$event>;
            type Error = $crate::InputError;

            fn handle_input(
                &mut self,
                now: ::std::time::Instant,
                input: $crate::Input<'_>,
            ) -> ::std::result::Result<(), $crate::InputError> {
                match input {
                    $crate::Input::Reply { id, result } => {
                        <$machine>::handle_reply(self, now, $crate::Answer { id, result })
                    }
                    $($crate::Input::Watch { path, token } => {
                        <$machine>::$watch(self, now, path, token);
                        Ok(())
                    })?
                    $($crate::Input::Peer(event) => {
                        <$machine>::$peer(self, now, event);
                        Ok(())
                    })?
                    // Inputs of operations this machine never requests.
                    _ => Ok(()),
                }
            }

            fn handle_timeout(&mut self, now: ::std::time::Instant) {
                <$machine>::handle_timeout(self, now);
            }

            fn poll_output(&mut self) -> ::std::option::Option<$crate::Output<$event>> {
                <$machine>::poll_output(self)
            }

            fn poll_timeout(&self) -> ::std::option::Option<::std::time::Instant> {
                <$machine>::poll_timeout(self)
            }
        }
    };
}

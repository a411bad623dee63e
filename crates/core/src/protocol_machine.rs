//! The [`Machine`](crate::Machine) implementation every protocol machine (L1) shares.

/// Implements [`Machine`](crate::Machine) for a protocol machine whose inherent
/// `handle_timeout`, `poll_output` and `poll_timeout` already have the trait's shape and
/// whose input never fails (`Error = Infallible`: a bad input ends the connection, it is not
/// refused). The closure-like last argument feeds one input to the inherent method; generic
/// machines name their parameters in `impl<..>`.
///
/// ```
/// use std::time::Instant;
/// use xsio_core::Machine;
///
/// /// Counts the bytes it is given, and says so once asked.
/// #[derive(Default)]
/// struct Counter { seen: usize, told: bool }
///
/// impl Counter {
///     fn feed(&mut self, _now: Instant, bytes: &[u8]) { self.seen += bytes.len(); }
///     fn handle_timeout(&mut self, _now: Instant) {}
///     fn poll_output(&mut self) -> Option<usize> {
///         (!std::mem::replace(&mut self.told, true)).then_some(self.seen)
///     }
///     fn poll_timeout(&self) -> Option<Instant> { None }
/// }
///
/// xsio_core::impl_protocol_machine!(impl Machine for Counter {
///     input<'a> = &'a [u8];
///     output = usize;
///     |counter, now, bytes| counter.feed(now, bytes)
/// });
///
/// # #[allow(clippy::disallowed_methods)] // a doc example's epoch
/// let now = Instant::now();
/// let mut counter = Counter::default();
/// assert_eq!(Machine::handle_input(&mut counter, now, &b"abc"[..]), Ok(()));
/// assert_eq!(Machine::poll_output(&mut counter), Some(3));
/// assert_eq!(Machine::poll_output(&mut counter), None);
/// assert_eq!(Machine::poll_timeout(&counter), None);
/// ```
#[macro_export]
macro_rules! impl_protocol_machine {
    (
        impl $(<$($generic:ident),+>)? Machine for $machine:ty {
            input<$a:lifetime> = $input:ty;
            output = $output:ty;
            |$me:ident, $now:ident, $fed:ident| $feed:expr
        }
    ) => {
        impl $(<$($generic),+>)? $crate::Machine for $machine {
            type Input<$a> = $input;
            type Output = $output;
            type Error = ::std::convert::Infallible;

            fn handle_input(
                &mut self,
                now: ::std::time::Instant,
                input: Self::Input<'_>,
            ) -> ::std::result::Result<(), Self::Error> {
                let ($me, $now, $fed) = (self, now, input);
                $feed;
                Ok(())
            }

            fn handle_timeout(&mut self, now: ::std::time::Instant) {
                <$machine>::handle_timeout(self, now);
            }

            fn poll_output(&mut self) -> ::std::option::Option<$output> {
                <$machine>::poll_output(self)
            }

            fn poll_timeout(&self) -> ::std::option::Option<::std::time::Instant> {
                <$machine>::poll_timeout(self)
            }
        }
    };
}

//! [`Answer`]: the answer to one request, what every L2 machine's `handle_reply` takes.

use xsio_core::OpId;

use crate::{InputError, OpError, Reply, split_checked};

/// The answer to one request: its id and its result, as [`Input::Reply`](crate::Input::Reply)
/// carries them. Every L2 machine takes it in `handle_reply(now, answer)`.
///
/// [`check`](Answer::check) is what a machine does first with it: check the reply against
/// the kind of operation it answers (one of the `expect_*` functions) and split the outcome
/// from the refusal ([`split_checked`]).
///
/// ```
/// use xsio_core::OpId;
/// use xsio_ops::{Answer, InputError, Reply, expect_done, expect_value};
///
/// let id = OpId::from_raw(3);
/// let (value, refused) = Answer::new(id, Ok(Reply::Value(None))).check(expect_value);
/// assert_eq!((value, refused), (Ok(None), Ok(())));
/// let (done, refused) = Answer::new(id, Ok(Reply::Value(None))).check(expect_done);
/// assert!(done.is_err());
/// assert!(matches!(refused, Err(InputError::WrongReply { .. })));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Answer {
    /// The request's id.
    pub id: OpId,
    /// Its result.
    pub result: Result<Reply, OpError>,
}

impl Answer {
    /// The answer `result` to request `id`.
    pub fn new(id: OpId, result: Result<Reply, OpError>) -> Answer {
        Answer { id, result }
    }

    /// Checks the reply with `expect` (an `expect_*` function) and splits it as
    /// [`split_checked`] does: what the operation goes on with, and what `handle_reply`
    /// returns (`Err` for a reply of the wrong kind, which fails the request too).
    pub fn check<V>(
        self,
        expect: impl FnOnce(OpId, Result<Reply, OpError>) -> Result<Result<V, OpError>, InputError>,
    ) -> (Result<V, OpError>, Result<(), InputError>) {
        split_checked(expect(self.id, self.result))
    }
}

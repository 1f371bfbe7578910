//! The write protocol shared by [`secrets`](crate::secrets) and
//! [`registration`](crate::registration), which several replicas run at once:
//!
//! - create with `create`; on 409 `AlreadyExists` another replica won: read again and judge
//!   what it stored;
//! - update with `replace` carrying the `resourceVersion` that was read; on 409 `Conflict`
//!   someone wrote in between: read again and judge again.
//!
//! Each round re-reads, so replicas converge on whatever was stored first, and at most
//! [`MAX_ATTEMPTS`] rounds are made before the caller gets
//! [`crate::Error::TooManyConflicts`] (the next periodic check
//! retries).

use kube::core::response::reason;

use crate::error::Error;

/// Rounds of read-judge-write before giving up until the next check.
pub const MAX_ATTEMPTS: usize = 5;

/// What a converging write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// What was stored is kept (perhaps after losing a race to another replica).
    Kept,
    /// Nothing was stored; ours was created.
    Created,
    /// What was stored was replaced by ours.
    Updated,
}

/// Whether `e` is the API server answering 409 `AlreadyExists`.
pub fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.reason == reason::ALREADY_EXISTS)
}

/// Whether `e` is the API server answering 409 `Conflict` (stale `resourceVersion`).
pub fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.is_conflict())
}

/// Wraps a client error with the verb and object it is about.
pub fn kube_error(verb: &'static str, object: &str) -> impl FnOnce(kube::Error) -> Error {
    let object = object.to_owned();
    move |source| Error::Kube {
        verb,
        object,
        source,
    }
}

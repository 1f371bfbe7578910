//! The kube glue of the three reconcilers, and of the address-conflict handler
//! ([`conflict`]). Decisions are made by the pure modules
//! ([`crate::pool_plan`], [`crate::alloc`], [`crate::netcfg_plan`], [`crate::kubevirt`]);
//! these functions read what those need, carry out what they decide, and write statuses with
//! optimistic concurrency. Each pass is counted and timed by [`measured`].

pub mod conflict;
pub mod ippool;
pub mod vm;
pub mod vmnetcfg;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use kube::runtime::controller::Action;
use kube::runtime::finalizer;

use crate::error::Error;
use crate::metrics::{Kind, Registry};

/// Runs one reconcile of `kind`, counting it by result and error label and timing it in
/// `metrics`.
///
/// # Errors
/// The reconcile's own.
pub async fn measured(
    kind: Kind,
    metrics: &Registry,
    reconcile: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let start = Instant::now();
    let result = reconcile.await;
    metrics.record_reconcile(
        kind,
        start.elapsed(),
        result.as_ref().err().map(Error::metric_label),
    );
    result
}

/// Turns a finalizer helper error into ours.
pub fn from_finalizer(e: finalizer::Error<Error>) -> Error {
    match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(source) | finalizer::Error::RemoveFinalizer(source) => {
            Error::kube("update finalizers", source)
        }
        other => Error::Config(other.to_string()),
    }
}

/// The finalizer helper's outcome: an object that is already gone when its finalizer is to be
/// removed is done with (a second reconcile queued by the deletion itself gets there after the
/// first removed the finalizer and the API server deleted the object); other errors are ours.
///
/// # Errors
/// Every other error.
pub fn gone(e: finalizer::Error<Error>) -> Result<Action, Error> {
    match e {
        finalizer::Error::RemoveFinalizer(kube::Error::Api(status)) if status.code == 404 => {
            Ok(Action::await_change())
        }
        other => Err(from_finalizer(other)),
    }
}

/// The error policy of all three controllers: log and retry, later after each failure.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature kube-runtime's Controller::run expects"
)]
pub fn error_policy<K: kube::Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<crate::context::Context>,
) -> Action {
    let key = kube::runtime::reflector::ObjectRef::from_obj(obj.as_ref()).to_string();
    let delay = ctx.backoffs.next(&key);
    tracing::warn!(object = %key, retry_in = ?delay, "reconcile failed: {error}");
    Action::requeue(delay)
}

//! Kubernetes mode's source: a list and watch of the one IPPool ([`stream`]: kube-runtime's
//! watcher, reading each event as it arrives instead of through kube-client's line buffer).
//! The initial list fills the lease table (upstream ignored it and served nothing after a
//! restart until the pool happened to change), every later version replaces it, and a failing
//! watch never touches it: the watch reconnects while the last table keeps serving.
//!
//! Retries wait [`vmdhcp_api::runtime::watch_backoff`] (0.5 s doubling to 4 s, plus jitter), not
//! kube-runtime's default that grows to 30 s, and a `410 Gone` restarts them from the minimum
//! (see [`vmdhcp_api::runtime::retry_delay`]). A restarted API server answers a watch from the old resourceVersion
//! with 410, so an IPPool edit made right after the restart reaches the next reply within
//! seconds, where kube-runtime's default took more than a minute.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::runtime::watcher::Event;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use vmdhcp_api::runtime::{is_expired, retrying};

use crate::error::Error;
use crate::metrics;
use crate::pool::Pool;
use crate::state::{self, Served};

pub mod stream;

/// What to do with the served state after a watcher event. Pure: see [`Sync::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Serve this version of the pool.
    Apply(Box<Pool>),
    /// A complete list came back and this version of the pool is in it: serve it and count
    /// the agent as synced.
    ApplyListed(Box<Pool>),
    /// A complete list came back without the pool: keep serving what we have, say so.
    Missing,
    /// The pool was deleted: stop answering.
    Clear,
}

/// Turns watcher events for the pool `name` into [`Action`]s, buffering the initial list so
/// the table is replaced once, atomically, when it is complete.
#[derive(Debug, Default)]
pub struct Sync {
    name: String,
    /// The pool found so far by the initial list in progress, if any.
    listed: Option<Pool>,
}

impl Sync {
    /// A sync for the pool called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            listed: None,
        }
    }

    /// The action an event calls for, if any. Events about other objects are ignored (the
    /// watch is filtered by name; this guards against a server that ignores the selector).
    pub fn handle(&mut self, event: Event<Pool>) -> Option<Action> {
        match event {
            Event::Init => {
                self.listed = None;
                None
            }
            Event::InitApply(pool) => {
                if self.is_ours(&pool) {
                    self.listed = Some(pool);
                }
                None
            }
            Event::InitDone => Some(match self.listed.take() {
                Some(pool) => Action::ApplyListed(Box::new(pool)),
                None => Action::Missing,
            }),
            Event::Apply(pool) if self.is_ours(&pool) => Some(Action::Apply(Box::new(pool))),
            Event::Delete(pool) if self.is_ours(&pool) => Some(Action::Clear),
            Event::Apply(_) | Event::Delete(_) => None,
        }
    }

    fn is_ours(&self, pool: &Pool) -> bool {
        pool.metadata.name.as_deref() == Some(self.name.as_str())
    }
}

/// Carries out `action` on `served`. Returns whether the options may have changed (so NTP
/// names should be resolved again).
pub fn perform(action: Action, served: &Served, ready: &AtomicBool, pool_ref: &str) -> bool {
    match action {
        Action::Apply(pool) => apply(&pool, served),
        Action::ApplyListed(pool) => {
            let applied = apply(&pool, served);
            if applied {
                if ready.swap(true, Ordering::AcqRel) {
                    tracing::info!(
                        pool = pool_ref,
                        leases = served.leases().len(),
                        "IPPool listed again; serving the listed version"
                    );
                } else {
                    metrics::ready(true);
                    tracing::info!(
                        pool = pool_ref,
                        leases = served.leases().len(),
                        "first sync complete"
                    );
                }
            }
            applied
        }
        Action::Missing => {
            tracing::warn!(
                pool = pool_ref,
                leases = served.leases().len(),
                "IPPool not found; serving the last known table"
            );
            false
        }
        Action::Clear => {
            let removed = served.clear();
            tracing::warn!(
                pool = pool_ref,
                removed = removed.removed.len(),
                "IPPool deleted; no leases served"
            );
            false
        }
    }
}

fn apply(pool: &Pool, served: &Served) -> bool {
    let name = state::pool_name(pool);
    match served.apply(pool) {
        Ok(applied) => {
            metrics::sync(true);
            state::log_applied(&name, &applied);
            true
        }
        Err(e) => {
            metrics::sync(false);
            tracing::error!("{e}; still serving the previous version");
            false
        }
    }
}

/// Watches `namespace/name` until `stop`, feeding `served`. `options_changed` is notified
/// after every applied version (the NTP resolver listens). Failed attempts are retried after
/// [`vmdhcp_api::runtime::retry_delay`].
///
/// The watch reads IPPools as [`Pool`]s (name, spec, parsed allocations; no managedFields)
/// and keeps no store: the one object it passes on is dropped once its table is served.
pub async fn follow(
    client: Client,
    namespace: &str,
    name: &str,
    served: &Served,
    ready: &AtomicBool,
    options_changed: &tokio::sync::Notify,
    stop: CancellationToken,
) {
    let api: Api<Pool> = Api::namespaced(client.clone(), namespace);
    let source = stream::Source::new(client, api.resource_url(), name);
    let mut events = std::pin::pin!(retrying(stream::watch(source)));
    let mut sync = Sync::new(name);
    let pool_ref = format!("{namespace}/{name}");
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return,
            next = events.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                if matches!(event, Event::InitDone) {
                    metrics::listed();
                }
                if let Some(action) = sync.handle(event)
                    && perform(action, served, ready, &pool_ref)
                {
                    options_changed.notify_one();
                }
            }
            Some(Err(error)) if is_expired(&error) => {
                metrics::watch_expired();
                tracing::info!(
                    pool = %pool_ref,
                    error = %error,
                    "IPPool watch expired (410 Gone); listing the pool again"
                );
            }
            Some(Err(error)) => {
                metrics::source_error();
                tracing::warn!(
                    pool = %pool_ref,
                    error = %error,
                    leases = served.leases().len(),
                    "IPPool watch failed; retrying, serving the last table"
                );
            }
            None => return,
        }
    }
}

/// `<namespace>/<name>` from `--ippool-ref`.
///
/// # Errors
/// [`Error::PoolRef`] naming the value.
pub fn parse_ref(value: &str) -> Result<(String, String), Error> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(Error::PoolRef {
            value: value.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;

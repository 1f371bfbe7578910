//! What the controller, the agent and the webhook share around kube-runtime.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, ExponentialBackoff};

/// The shortest delay before a failed watch or list is retried.
pub const WATCH_RETRY_MIN: Duration = Duration::from_millis(500);
/// The longest delay between two attempts while the API server is unreachable, jitter
/// included.
pub const WATCH_RETRY_MAX: Duration = Duration::from_secs(4);

/// The retry delays of every watch of the three binaries: the first between
/// [`WATCH_RETRY_MIN`] and twice that, then doubling, never more than [`WATCH_RETRY_MAX`]; back
/// to the minimum after the next event that arrives.
///
/// kube-runtime's default grows to 30 s (client-go's reflector values): after an outage of the
/// API server a watcher then waits up to half a minute before it notices the server is back,
/// and a relist after `410 Gone` waits again, so a change made right after the restart reached
/// an agent only a minute or more later. The cap keeps that to seconds; the jitter spreads the
/// reconnects of many agents. The jitter adds up to the delay itself, so the exponential part is
/// capped at half of [`WATCH_RETRY_MAX`].
///
/// ```
/// use kube::runtime::utils::Backoff;
/// let mut backoff = vmdhcp_api::runtime::watch_backoff();
/// let delays: Vec<_> = backoff.by_ref().take(10).collect();
/// assert!(delays.iter().all(|d| *d <= vmdhcp_api::runtime::WATCH_RETRY_MAX));
/// backoff.reset();
/// ```
pub fn watch_backoff() -> ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(WATCH_RETRY_MIN)
        .with_max_delay(WATCH_RETRY_MAX / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

/// Whether the API server ended a watch because its resourceVersion is gone (`410 Gone`, "too
/// old resource version": after an API server restart or an etcd compaction). The server is up
/// then, and the watcher lists again.
pub fn is_expired(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(status)
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::InitialListFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// How long to wait after `error` before the next attempt: the next delay of `backoff`, which
/// a `410 Gone` first resets. The server that answered 410 is up, so the relist it calls for
/// should follow at once, not after the delays an outage just before it built up (after an API
/// server restart that outage always comes first).
pub fn retry_delay(backoff: &mut impl Backoff, error: &watcher::Error) -> Duration {
    if is_expired(error) {
        backoff.reset();
    }
    backoff.next().unwrap_or(WATCH_RETRY_MAX)
}

/// A watcher stream that waits [`retry_delay`] after each error before polling again, with
/// [`watch_backoff`] reset by every event that arrives. Errors are still passed on, so callers
/// can log and count them; what kube-runtime's `default_backoff()` does, with the bounds and
/// the `410` rule of this module.
pub fn retrying<K, S>(stream: S) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    K: Send + 'static,
{
    let state = (stream.boxed(), watch_backoff(), None::<Duration>);
    futures::stream::unfold(state, |(mut inner, mut backoff, wait)| async move {
        if let Some(delay) = wait {
            tokio::time::sleep(delay).await;
        }
        let item = inner.next().await?;
        let wait = match &item {
            Ok(_) => {
                backoff.reset();
                None
            }
            Err(e) => Some(retry_delay(&mut backoff, e)),
        };
        Some((item, (inner, backoff, wait)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let delays: Vec<Duration> = watch_backoff().take(12).collect();
        assert_eq!(delays.len(), 12, "the backoff never gives up");
        // Jitter adds up to one more delay on top of the exponential value.
        assert!(delays[0] >= WATCH_RETRY_MIN && delays[0] <= 2 * WATCH_RETRY_MIN);
        for d in &delays {
            assert!(*d <= WATCH_RETRY_MAX, "{d:?} exceeds the bound");
        }
        assert!(
            delays[11] >= WATCH_RETRY_MAX / 2,
            "the last delays reach the cap"
        );
    }

    fn expired() -> watcher::Error {
        watcher::Error::WatchError(Box::new(
            kube::core::Status::failure("too old resource version: 241 (246)", "Expired")
                .with_code(410),
        ))
    }

    #[test]
    fn a_410_is_expired_other_errors_are_not() {
        assert!(is_expired(&expired()));
        assert!(!is_expired(&watcher::Error::NoResourceVersion));
        let internal = watcher::Error::WatchError(Box::new(
            kube::core::Status::failure("etcd is down", "InternalError").with_code(500),
        ));
        assert!(!is_expired(&internal));
    }

    #[test]
    fn a_410_restarts_the_delays_from_the_minimum() {
        let mut backoff = watch_backoff();
        for _ in 0..8 {
            retry_delay(&mut backoff, &watcher::Error::NoResourceVersion);
        }
        let after_outage = retry_delay(&mut backoff, &watcher::Error::NoResourceVersion);
        assert!(after_outage >= WATCH_RETRY_MAX / 2, "{after_outage:?}");
        let after_410 = retry_delay(&mut backoff, &expired());
        assert!(after_410 <= 2 * WATCH_RETRY_MIN, "{after_410:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retrying_waits_after_errors_and_passes_everything_on() {
        let script: Vec<Result<watcher::Event<()>, watcher::Error>> = vec![
            Err(watcher::Error::NoResourceVersion),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::InitDone),
            Err(expired()),
        ];
        let start = tokio::time::Instant::now();
        let seen: Vec<(bool, Duration)> = retrying(futures::stream::iter(script))
            .map(|item| (item.is_ok(), start.elapsed()))
            .collect()
            .await;
        let kinds: Vec<bool> = seen.iter().map(|(ok, _)| *ok).collect();
        assert_eq!(
            kinds,
            [false, false, true, false],
            "every item is passed on"
        );
        assert_eq!(seen[0].1, Duration::ZERO, "the first attempt does not wait");
        let first_wait = seen[1].1;
        assert!(first_wait >= WATCH_RETRY_MIN && first_wait <= 2 * WATCH_RETRY_MIN);
        let second_wait = seen[2].1.saturating_sub(seen[1].1);
        assert!(
            second_wait >= 2 * WATCH_RETRY_MIN,
            "delays grow: {second_wait:?}"
        );
        let after_event = seen[3].1.saturating_sub(seen[2].1);
        assert_eq!(
            after_event,
            Duration::ZERO,
            "an event resets and nothing waits"
        );
    }
}

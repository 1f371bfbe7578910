//! Leader election on a `coordination.k8s.io` Lease, speaking client-go's protocol
//! (`holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime`, `leaseTransitions`,
//! every write guarded by `resourceVersion`), so that our controller and the Go one, which
//! share the Lease `kube-system/vm-dhcp-controllers` during a migration, never lead at once.
//!
//! Like client-go, a lease held by someone else counts as expired only when this replica has
//! seen the same record, unchanged, for a whole lease duration on its own clock: clocks of
//! different nodes are never compared.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, is_status};

/// Durations of the election (upstream: 45 s, 30 s, 2 s; `CATTLE_DEV_MODE`: hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease is valid without renewal.
    pub lease: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry: Duration,
}

impl Timing {
    /// Upstream's durations (45 s, 30 s, 2 s; in hours in development mode), each replaced by
    /// the one given.
    ///
    /// # Errors
    /// Durations that cannot work, naming them.
    pub fn new(
        lease: Option<Duration>,
        renew_deadline: Option<Duration>,
        retry: Option<Duration>,
        dev_mode: bool,
    ) -> Result<Self, String> {
        use vmdhcp_api::consts::{
            LEASE_DURATION_SECS, LEASE_RENEW_DEADLINE_SECS, LEASE_RETRY_PERIOD_SECS,
        };
        let unit = if dev_mode { 3600 } else { 1 };
        let timing = Self {
            lease: lease.unwrap_or(Duration::from_secs(LEASE_DURATION_SECS * unit)),
            renew_deadline: renew_deadline
                .unwrap_or(Duration::from_secs(LEASE_RENEW_DEADLINE_SECS * unit)),
            retry: retry.unwrap_or(Duration::from_secs(LEASE_RETRY_PERIOD_SECS * unit)),
        };
        if timing.renew_deadline >= timing.lease || timing.retry.is_zero() {
            return Err(format!(
                "leader election needs retry > 0 and renew deadline < lease duration (got lease {:?}, renew deadline {:?}, retry {:?})",
                timing.lease, timing.renew_deadline, timing.retry
            ));
        }
        Ok(timing)
    }
}

/// Parses the Go durations operators write (`45s`, `1m30s`, `500ms`, `2h`).
///
/// # Errors
/// A value that is not one, naming it.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    go_duration(s).ok_or_else(|| format!("{s:?} is not a duration such as 45s, 1m30s or 500ms"))
}

fn go_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (num, tail) = rest.split_at(digits);
        let value: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(value * secs).ok()?;
        rest = next;
    }
    Some(total)
}

/// What one attempt should write.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Write this spec: we take or keep the lease.
    Write(LeaseSpec),
    /// Someone else holds a valid lease.
    Held(String),
}

/// Decides an attempt. `current` is the Lease spec as read (`None`: no Lease yet);
/// `unchanged_since` is when this replica first saw that exact spec.
pub fn decide(
    current: Option<&LeaseSpec>,
    unchanged_since: Timestamp,
    me: &str,
    timing: &Timing,
    now: Timestamp,
) -> Decision {
    let lease_secs = i32::try_from(timing.lease.as_secs()).unwrap_or(i32::MAX);
    let mine = |acquire: Timestamp, transitions: i32| LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(lease_secs),
        acquire_time: Some(MicroTime(acquire)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(spec) = current else {
        return Decision::Write(mine(now, 0));
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let transitions = spec.lease_transitions.unwrap_or(0);
    if holder == me {
        let acquired = spec.acquire_time.as_ref().map_or(now, |t| t.0);
        return Decision::Write(mine(acquired, transitions));
    }
    let duration = SignedDuration::from_secs(i64::from(
        spec.lease_duration_seconds.unwrap_or(lease_secs).max(1),
    ));
    if !holder.is_empty() && now.duration_since(unchanged_since) < duration {
        return Decision::Held(holder);
    }
    Decision::Write(mine(now, transitions.saturating_add(1)))
}

/// Runs the election until `stop`: `leading` turns true when this replica acquires the lease.
/// Returns `Ok` on `stop` (after releasing the lease if held), or [`Error::LostLease`] when
/// the lease could not be renewed within the renew deadline — the caller must stop
/// reconciling at once (upstream exits the process).
///
/// # Errors
/// [`Error::LostLease`].
pub async fn run(
    api: Api<Lease>,
    name: &str,
    me: &str,
    timing: Timing,
    leading: watch::Sender<bool>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let mut seen: Option<(Option<LeaseSpec>, Timestamp)> = None;
    let mut last_renew = tokio::time::Instant::now();
    loop {
        let is_leader = *leading.borrow();
        // A leader's attempt may not outlive its renew deadline (client-go bounds it the same
        // way): a call stuck in the network must not keep us leading past it.
        let budget = if is_leader {
            timing.renew_deadline.saturating_sub(last_renew.elapsed())
        } else {
            timing.renew_deadline
        };
        let outcome = tokio::time::timeout(budget, attempt(&api, name, me, &timing, &mut seen))
            .await
            .unwrap_or(Err(Attempt::TimedOut));
        match outcome {
            Ok(()) => {
                last_renew = tokio::time::Instant::now();
                if !is_leader {
                    tracing::info!(
                        lease = name,
                        identity = me,
                        "acquired the leader-election lease"
                    );
                    leading.send_replace(true);
                }
            }
            Err(Attempt::Held(holder)) if is_leader => {
                leading.send_replace(false);
                return Err(Error::LostLease(format!("{name}: taken over by {holder}")));
            }
            Err(Attempt::Held(_)) => {}
            Err(e) => {
                // A conflict (someone touched the Lease) or an API error: try again until the
                // deadline, as client-go does.
                tracing::warn!(lease = name, "leader election: {e}");
                if is_leader && last_renew.elapsed() >= timing.renew_deadline {
                    leading.send_replace(false);
                    return Err(Error::LostLease(format!(
                        "{name}: not renewed within {:?}: {e}",
                        timing.renew_deadline
                    )));
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(timing.retry) => {}
        }
    }
    if *leading.borrow() {
        release(&api, name, me).await;
        leading.send_replace(false);
    }
    Ok(())
}

/// Why an attempt did not leave us holding the lease.
#[derive(Debug)]
enum Attempt {
    /// Another holder's lease is valid.
    Held(String),
    /// Our write lost to a concurrent one.
    Conflict,
    /// The API call failed.
    Api(kube::Error),
    /// The attempt ran out of time.
    TimedOut,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Held(holder) => write!(f, "held by {holder}"),
            Self::Conflict => f.write_str("the Lease changed while we wrote it"),
            Self::Api(e) => write!(f, "{e}"),
            Self::TimedOut => f.write_str("timed out"),
        }
    }
}

/// One try: read, decide, write. `Ok` when we hold the lease afterwards.
async fn attempt(
    api: &Api<Lease>,
    name: &str,
    me: &str,
    timing: &Timing,
    seen: &mut Option<(Option<LeaseSpec>, Timestamp)>,
) -> Result<(), Attempt> {
    let now = Timestamp::now();
    let current = api.get_opt(name).await.map_err(Attempt::Api)?;
    let spec = current.as_ref().and_then(|l| l.spec.clone());
    let since = match seen {
        Some((prev, at)) if *prev == spec => *at,
        _ => {
            *seen = Some((spec.clone(), now));
            now
        }
    };
    match decide(spec.as_ref(), since, me, timing, now) {
        Decision::Held(holder) => {
            tracing::debug!(lease = name, holder, "lease held by another replica");
            Err(Attempt::Held(holder))
        }
        Decision::Write(new) => {
            let result = match current {
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.to_owned()),
                            ..ObjectMeta::default()
                        },
                        spec: Some(new),
                    };
                    api.create(&PostParams::default(), &lease).await
                }
                Some(mut lease) => {
                    // resourceVersion stays set: a concurrent writer makes this a 409.
                    lease.spec = Some(new);
                    api.replace(name, &PostParams::default(), &lease).await
                }
            };
            match result {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 409) => Err(Attempt::Conflict),
                Err(e) => Err(Attempt::Api(e)),
            }
        }
    }
}

/// Gives the lease up on shutdown, as client-go's `ReleaseOnCancel`: empty holder, 1 s
/// duration, so the next replica takes over at once.
async fn release(api: &Api<Lease>, name: &str, me: &str) {
    let Ok(Some(mut lease)) = api.get_opt(name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(me) {
        return;
    }
    spec.holder_identity = Some(String::new());
    spec.lease_duration_seconds = Some(1);
    let now = MicroTime(Timestamp::now());
    spec.renew_time = Some(now.clone());
    spec.acquire_time = Some(now);
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => tracing::info!(lease = name, "released the leader-election lease"),
        Err(e) => tracing::warn!(lease = name, "could not release the lease: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn timing() -> Timing {
        Timing {
            lease: Duration::from_secs(45),
            renew_deadline: Duration::from_secs(30),
            retry: Duration::from_secs(2),
        }
    }

    fn held_by(holder: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(45),
            acquire_time: Some(MicroTime(t("2026-01-01T00:00:00Z"))),
            renew_time: Some(MicroTime(t("2026-01-01T00:00:40Z"))),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn no_lease_is_created_with_us_as_holder() {
        let now = t("2026-01-01T00:01:00Z");
        let Decision::Write(spec) = decide(None, now, "me", &timing(), now) else {
            panic!("should write")
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(45));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.acquire_time, Some(MicroTime(now)));
    }

    #[test]
    fn another_holder_is_respected_for_a_full_duration_of_our_own_observation() {
        let other = held_by("go-controller", 3);
        let first_seen = t("2026-01-01T00:05:00Z");
        // Its renewTime is long past by our clock, but we only just saw the record: wait.
        assert_eq!(
            decide(
                Some(&other),
                first_seen,
                "me",
                &timing(),
                t("2026-01-01T00:05:44Z")
            ),
            Decision::Held("go-controller".into())
        );
        let Decision::Write(spec) = decide(
            Some(&other),
            first_seen,
            "me",
            &timing(),
            t("2026-01-01T00:05:45Z"),
        ) else {
            panic!("expired after 45 s unchanged");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(
            spec.acquire_time,
            Some(MicroTime(t("2026-01-01T00:05:45Z")))
        );
    }

    #[test]
    fn renewing_keeps_acquire_time_and_transitions_and_a_released_lease_is_free() {
        let ours = held_by("me", 2);
        let now = t("2026-01-01T00:01:00Z");
        let Decision::Write(spec) = decide(Some(&ours), now, "me", &timing(), now) else {
            panic!("renew")
        };
        assert_eq!(
            (spec.acquire_time, spec.lease_transitions),
            (Some(MicroTime(t("2026-01-01T00:00:00Z"))), Some(2))
        );
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
        let released = held_by("", 2);
        assert!(matches!(
            decide(Some(&released), now, "me", &timing(), now),
            Decision::Write(_)
        ));
    }

    #[test]
    fn durations_default_to_upstreams_and_development_mode_counts_hours() {
        assert_eq!(
            Timing::new(None, None, None, false).expect("defaults"),
            timing()
        );
        let dev = Timing::new(None, None, None, true).expect("dev");
        assert_eq!(dev.lease, Duration::from_secs(45 * 3600));
        let custom = Timing::new(
            Some(Duration::from_secs(90)),
            None,
            Some(Duration::from_millis(500)),
            false,
        )
        .expect("custom");
        assert_eq!(
            (custom.lease, custom.renew_deadline, custom.retry),
            (
                Duration::from_secs(90),
                Duration::from_secs(30),
                Duration::from_millis(500)
            )
        );
        let bad = Timing::new(Some(Duration::from_secs(10)), None, None, false).expect_err("bad");
        assert!(bad.contains("renew deadline < lease duration"), "{bad}");
    }

    #[test]
    fn go_durations_parse_and_bad_ones_are_named() {
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("2h"), Ok(Duration::from_secs(7200)));
        let bad = parse_go_duration("soon").expect_err("not a duration");
        assert!(bad.contains("\"soon\""), "{bad}");
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("5").is_err(), "Go requires a unit");
    }
}

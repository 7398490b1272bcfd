//! The throttling rules as pure functions over one counter's state, so that the in-process
//! store and the Redis script (`redis.rs`, the same rules in Lua) can be tested against one
//! definition. Times are microseconds on the store's clock.

/// The limit of one kind of counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Failures at which refusals start.
    pub threshold: u32,
    /// A counter is forgotten this long after its last failure.
    pub window: u64,
    /// The first refusal's length.
    pub base: u64,
    /// The longest refusal.
    pub cap: u64,
}

/// One failure counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub failures: u32,
    /// Submissions are refused until then.
    pub blocked_until: u64,
    /// The counter is forgotten then.
    pub expires_at: u64,
}

impl Counter {
    /// The counter if it has not been forgotten at `now`.
    pub fn live(self, now: u64) -> Option<Counter> {
        (self.expires_at > now).then_some(self)
    }

    /// How long submissions must still wait at `now`, if at all.
    pub fn retry_after(self, now: u64) -> Option<u64> {
        (self.expires_at > now && self.blocked_until > now).then(|| self.blocked_until - now)
    }
}

/// The refusal after `failures` failures: `base` at the threshold, doubled with each failure
/// past it, at most `cap`.
pub fn backoff(limit: &Limit, failures: u32) -> u64 {
    let over = failures.saturating_sub(limit.threshold).min(40);
    limit.base.saturating_mul(1u64 << over).min(limit.cap)
}

/// The counter after one more failure at `now`.
pub fn record_failure(prev: Option<Counter>, now: u64, limit: &Limit) -> Counter {
    let prev = prev.and_then(|c| c.live(now)).unwrap_or_default();
    let failures = prev.failures.saturating_add(1);
    let mut blocked_until = prev.blocked_until;
    if failures >= limit.threshold {
        blocked_until = blocked_until.max(now.saturating_add(backoff(limit, failures)));
    }
    Counter {
        failures,
        blocked_until,
        expires_at: now.saturating_add(limit.window).max(blocked_until),
    }
}

/// The counter after an attempt counted by [`record_failure`] turned out not to be a failure:
/// one failure fewer, and no refusal below the threshold. `None`: nothing left to keep.
pub fn refund(prev: Option<Counter>, now: u64, limit: &Limit) -> Option<Counter> {
    let prev = prev.and_then(|c| c.live(now))?;
    let failures = prev.failures.saturating_sub(1);
    if failures == 0 {
        return None;
    }
    let blocked_until = if failures < limit.threshold {
        0
    } else {
        prev.blocked_until
    };
    Some(Counter {
        failures,
        blocked_until,
        expires_at: prev.expires_at,
    })
}

/// A rate of `burst` submissions at once, then one per `interval` (GCRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub interval: u64,
    pub burst: u32,
}

impl Rate {
    /// `submissions` per `per` microseconds, all of them allowed at once.
    pub fn new(submissions: u32, per: u64) -> Option<Rate> {
        (submissions > 0).then(|| Rate {
            interval: (per / u64::from(submissions)).max(1),
            burst: submissions,
        })
    }
}

/// The generic cell rate algorithm: `tat` is the theoretical arrival time kept per network.
/// `Ok(new tat)` admits the submission; `Err(wait)` refuses it and leaves `tat` as it was.
pub fn gcra(tat: Option<u64>, now: u64, rate: &Rate) -> Result<u64, u64> {
    let tat = tat.unwrap_or(now).max(now);
    let tolerance = rate
        .interval
        .saturating_mul(u64::from(rate.burst.saturating_sub(1)));
    let ahead = tat - now;
    if ahead > tolerance {
        Err(ahead - tolerance)
    } else {
        Ok(tat.saturating_add(rate.interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;
    const LIMIT: Limit = Limit {
        threshold: 3,
        window: 900 * S,
        base: 30 * S,
        cap: 240 * S,
    };

    #[test]
    fn nothing_is_refused_below_the_threshold() {
        let mut c = None;
        for n in 1..3 {
            let next = record_failure(c, 0, &LIMIT);
            assert_eq!(next.failures, n);
            assert_eq!(next.retry_after(0), None);
            c = Some(next);
        }
    }

    #[test]
    fn the_threshold_refuses_for_base_then_doubles_up_to_the_cap() {
        let mut c = None;
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let next = record_failure(c, now, &LIMIT);
            if let Some(wait) = next.retry_after(now) {
                waits.push(wait / S);
                now += wait; // the next attempt comes when it is allowed again
            }
            c = Some(next);
        }
        assert_eq!(waits, vec![30, 60, 120, 240, 240, 240]);
    }

    #[test]
    fn a_counter_is_forgotten_a_window_after_its_last_failure() {
        let c = record_failure(None, 0, &LIMIT);
        let c = record_failure(Some(c), 100 * S, &LIMIT);
        assert_eq!(c.expires_at, 1000 * S);
        let later = record_failure(Some(c), 1000 * S, &LIMIT);
        assert_eq!(later.failures, 1, "expired counters start again");
        let within = record_failure(Some(c), 999 * S, &LIMIT);
        assert_eq!(within.failures, 3);
        assert!(within.retry_after(999 * S).is_some());
    }

    #[test]
    fn a_refusal_outlives_the_window_when_longer() {
        let limit = Limit {
            window: 10 * S,
            ..LIMIT
        };
        let mut c = None;
        for _ in 0..3 {
            c = Some(record_failure(c, 0, &limit));
        }
        let c = c.expect("counter");
        assert_eq!(c.blocked_until, 30 * S);
        assert_eq!(c.expires_at, 30 * S);
        assert_eq!(c.retry_after(29 * S), Some(S));
        assert_eq!(c.retry_after(30 * S), None);
    }

    #[test]
    fn a_refund_takes_back_one_attempt_and_its_refusal_below_the_threshold() {
        let mut c = None;
        for _ in 0..3 {
            c = Some(record_failure(c, 0, &LIMIT));
        }
        assert!(c.expect("c").retry_after(0).is_some());
        let r = refund(c, 0, &LIMIT).expect("two left");
        assert_eq!((r.failures, r.retry_after(0)), (2, None));
        let r = refund(Some(r), 0, &LIMIT).expect("one left");
        assert_eq!(refund(Some(r), 0, &LIMIT), None);
        assert_eq!(refund(None, 0, &LIMIT), None);
    }

    #[test]
    fn backoff_never_overflows() {
        let limit = Limit {
            threshold: 1,
            window: 1,
            base: u64::MAX / 2,
            cap: u64::MAX,
        };
        assert_eq!(backoff(&limit, u32::MAX), u64::MAX);
        assert_eq!(
            record_failure(None, u64::MAX - 1, &limit).blocked_until,
            u64::MAX
        );
    }

    #[test]
    fn gcra_admits_a_burst_then_one_per_interval() {
        let rate = Rate::new(5, 60 * S).expect("rate");
        assert_eq!(rate.interval, 12 * S);
        let mut tat = None;
        for _ in 0..5 {
            tat = Some(gcra(tat, 0, &rate).expect("burst"));
        }
        let wait = gcra(tat, 0, &rate).expect_err("sixth");
        assert_eq!(wait, 12 * S);
        assert!(gcra(tat, 12 * S - 1, &rate).is_err());
        let t = gcra(tat, 12 * S, &rate).expect("one more after the interval");
        assert!(gcra(Some(t), 12 * S, &rate).is_err());
        // Idle for the whole period: the full burst again.
        let mut tat = Some(t);
        for _ in 0..5 {
            tat = Some(gcra(tat, 200 * S, &rate).expect("burst again"));
        }
        assert!(gcra(tat, 200 * S, &rate).is_err());
        assert_eq!(Rate::new(0, 60 * S), None);
    }
}

//! Token-bucket rate limiting per (action, key): a client IP or a user ID.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    Error, Result,
    config::{RateLimit, RateLimitsConfig},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Login,
    Register,
    LoginFailure,
    /// Sending an event (message, state, redaction), per user.
    Message,
    /// Reserving a media ID (`POST /_matrix/media/v1/create`), per user.
    MediaCreate,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets beyond this many are pruned of full ones, bounding memory under IP churn.
const PRUNE_AT: usize = 100_000;

pub struct RateLimiter {
    config: RateLimitsConfig,
    buckets: Mutex<HashMap<(Action, String), Bucket>>,
}

impl RateLimiter {
    pub fn new(config: RateLimitsConfig) -> Self {
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn limit(&self, action: Action) -> RateLimit {
        match action {
            Action::Login => self.config.login,
            Action::Register => self.config.register,
            Action::LoginFailure => self.config.login_failures,
            Action::Message => self.config.message,
            Action::MediaCreate => self.config.media_create,
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn check(&self, action: Action, key: &str) -> Result<()> {
        self.check_at(action, key, Instant::now())
    }

    /// Gives back a token taken by [`RateLimiter::check`]: for limits that count only
    /// failures, taken before the attempt (so concurrent attempts cannot all pass) and given
    /// back when it succeeds.
    pub fn refund(&self, action: Action, key: &str) {
        let burst = f64::from(self.limit(action).burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(&(action, key.to_owned())) {
            bucket.tokens = (bucket.tokens + 1.0).min(burst);
        }
    }

    fn check_at(&self, action: Action, key: &str, now: Instant) -> Result<()> {
        if !self.config.enabled {
            return Ok(());
        }
        let limit = self.limit(action);
        let burst = f64::from(limit.burst);
        // A poisoned lock only means another request panicked mid-update; the map is still valid.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= PRUNE_AT {
            buckets.retain(|(a, _), b| {
                let l = self.limit(*a);
                b.tokens + now.duration_since(b.updated).as_secs_f64() * l.per_second
                    < f64::from(l.burst)
            });
        }
        let bucket = buckets.entry((action, key.to_owned())).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        // Config validation bounds the rate below, so the wait is finite; the cap is defence.
        let wait = Duration::try_from_secs_f64((1.0 - bucket.tokens) / limit.per_second)
            .unwrap_or(Duration::from_secs(86_400));
        Err(Error::LimitExceeded {
            retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        let limit = RateLimit { per_second, burst };
        RateLimiter::new(RateLimitsConfig {
            enabled: true,
            login: limit,
            register: limit,
            login_failures: limit,
            message: limit,
            media_create: limit,
        })
    }

    #[test]
    fn burst_then_refusal_with_retry_after_then_refill() {
        let limiter = limiter(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check_at(Action::Login, "1.2.3.4", t0).unwrap();
        }
        match limiter.check_at(Action::Login, "1.2.3.4", t0) {
            Err(Error::LimitExceeded { retry_after_ms }) => assert_eq!(retry_after_ms, 500),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Other keys and other actions have their own buckets.
        limiter.check_at(Action::Login, "5.6.7.8", t0).unwrap();
        limiter.check_at(Action::Register, "1.2.3.4", t0).unwrap();
        limiter
            .check_at(Action::Login, "1.2.3.4", t0 + Duration::from_millis(500))
            .unwrap();
    }

    #[test]
    fn refund_gives_a_token_back() {
        let limiter = limiter(0.001, 1);
        for _ in 0..3 {
            limiter.check(Action::LoginFailure, "@a:x").unwrap();
            limiter.refund(Action::LoginFailure, "@a:x");
        }
        limiter.check(Action::LoginFailure, "@a:x").unwrap();
        assert!(limiter.check(Action::LoginFailure, "@a:x").is_err());
    }

    #[test]
    fn disabled_never_refuses() {
        let limit = RateLimit {
            per_second: 0.001,
            burst: 1,
        };
        let limiter = RateLimiter::new(RateLimitsConfig {
            enabled: false,
            login: limit,
            register: limit,
            login_failures: limit,
            message: limit,
            media_create: limit,
        });
        for _ in 0..10 {
            limiter.check(Action::Login, "k").unwrap();
        }
    }
}

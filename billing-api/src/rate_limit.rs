//! Per-key rate limiting: each API key (the bearer token, keyed by a SHA-256
//! prefix, never stored) may make `BILLING_RATE_LIMIT_PER_SECOND` requests a second
//! with bursts up to `BILLING_RATE_LIMIT_BURST` (GCRA, the `governor` crate); beyond
//! that the answer is `429 rate_limited` problem+json with `Retry-After` in whole
//! seconds. Requests without a bearer token (provider callbacks, health) are not
//! limited here. A limit of 0 turns it off.

use std::num::NonZeroU32;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{Error, ResponseError};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Keys remembered before idle ones are dropped (random tokens cannot grow it unbounded).
const MAX_KEYS: usize = 100_000;

/// The limiter shared by the server's workers.
pub struct Limits {
    limiter: Option<DefaultKeyedRateLimiter<[u8; 16]>>,
    clock: DefaultClock,
}

impl Limits {
    /// `per_second` requests a second per key, bursts of `burst`; 0 = no limit.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Limits { limiter, clock: DefaultClock::default() }
    }

    /// `Err(seconds to wait)` when `token` is over its rate.
    pub fn check(&self, token: &str) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        if limiter.len() > MAX_KEYS {
            limiter.retain_recent();
        }
        let digest = Sha256::digest(token.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// The middleware: answers 429 for a key over its rate, else passes the request on.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    // The token exactly as authentication reads it.
    let over = match (crate::extract::bearer(req.request()), req.app_data::<Data<Limits>>()) {
        (Some(token), Some(limits)) => limits.check(&token).err(),
        _ => None,
    };
    let Some(wait) = over else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let detail = format!("too many requests for this API key; retry in {wait} s");
    let mut res = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail).error_response();
    res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(wait.max(1)));
    Ok(req.into_response(res).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_budget() {
        let limits = Limits::new(1, 2);
        assert_eq!(limits.check("a"), Ok(()));
        assert_eq!(limits.check("a"), Ok(()));
        assert_eq!(limits.check("a"), Err(1), "burst spent: wait about a second");
        assert_eq!(limits.check("b"), Ok(()), "another key is not affected");
        let off = Limits::new(0, 0);
        assert!((0..10_000).all(|_| off.check("a").is_ok()));
    }
}

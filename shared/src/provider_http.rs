//! What every provider's HTTP client shares (CloudPayments, YooKassa, ATOL Online):
//! how the client is built and which answers leave a call's outcome unknown.

use std::time::Duration;

use reqwest::StatusCode;

/// A client whose calls give up after `timeout` (connecting after at most 10 s of
/// it); errors only when TLS cannot be set up.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().timeout(timeout).connect_timeout(timeout.min(Duration::from_secs(10))).build()
}

/// A 5xx, 408 or 429: the request may or may not have been carried out (408 and
/// 429 say it was not processed yet), so the outcome is settled by asking the
/// provider again, never by assuming a refusal.
pub fn outcome_unknown(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_server_errors_timeouts_and_throttling_are_unknown() {
        for s in [500, 502, 503, 408, 429] {
            assert!(outcome_unknown(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 202, 400, 401, 403, 404, 422] {
            assert!(!outcome_unknown(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}

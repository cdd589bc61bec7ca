//! Bounded polling. The cluster is an external system with no event stream we
//! can subscribe to, so every wait is a poll with a deadline; each reports how
//! long it actually took, or what it last saw when the deadline passed.

use std::future::Future;
use std::time::{Duration, Instant};

use super::error::TesterError;

/// How often a condition is re-checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Re-runs `probe` every [`POLL_INTERVAL`] until it returns `Ok`, for at most
/// `bound`. `probe` returns `Err(observed)` while the condition does not hold;
/// the last `observed` goes into the timeout error next to `expected`.
/// Returns the value and the time the condition took to hold.
pub async fn until<T, F, Fut>(
    what: &str,
    expected: &str,
    bound: Duration,
    mut probe: F,
) -> Result<(T, Duration), TesterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let deadline = start + bound;
    loop {
        let observed = match probe().await {
            Ok(v) => return Ok((v, start.elapsed())),
            Err(observed) => observed,
        };
        if Instant::now() >= deadline {
            return Err(TesterError::Timeout {
                what: what.to_owned(),
                bound,
                expected: expected.to_owned(),
                observed,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

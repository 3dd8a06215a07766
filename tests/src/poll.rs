//! Waiting for a condition, with a deadline, instead of sleeping and hoping.

use std::time::{Duration, Instant};

/// Polls `condition` every 20 ms until it holds or `timeout` passes; panics with `what`
/// and the last observed value if it never holds.
#[track_caller]
pub fn until<T: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> (bool, T),
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let (done, value) = condition();
        if done {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {value:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! Restart policies (`no`, `always`, `unless-stopped`, `on-failure[:N]`) and dockerd's back-off:
//! 100 ms doubling after each restart, back to 100 ms once a run lasted 10 s or more.

use std::time::Duration;

pub const INITIAL_DELAY: Duration = Duration::from_millis(100);
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// Whether a container that just exited should be restarted.
pub fn should_restart(
    policy: &str,
    max_retries: i64,
    restart_count: i64,
    exit_code: i64,
    manually_stopped: bool,
) -> bool {
    if manually_stopped {
        return false;
    }
    match policy {
        "always" | "unless-stopped" => true,
        "on-failure" => exit_code != 0 && (max_retries == 0 || restart_count < max_retries),
        _ => false,
    }
}

/// The delay before the next restart, given the previous one and how long the run lasted.
pub fn next_delay(previous: Option<Duration>, ran_for: Duration) -> Duration {
    match previous {
        _ if ran_for >= RESET_AFTER => INITIAL_DELAY,
        None => INITIAL_DELAY,
        Some(d) => (d * 2).min(MAX_DELAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert!(!should_restart("no", 0, 0, 1, false));
        assert!(should_restart("always", 0, 5, 0, false));
        assert!(!should_restart("always", 0, 5, 0, true));
        assert!(should_restart("on-failure", 2, 1, 1, false));
        assert!(!should_restart("on-failure", 2, 2, 1, false));
        assert!(!should_restart("on-failure", 2, 0, 0, false));
        assert!(should_restart("on-failure", 0, 100, 3, false));
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let d = next_delay(None, Duration::ZERO);
        assert_eq!(d, INITIAL_DELAY);
        let d = next_delay(Some(d), Duration::from_millis(5));
        assert_eq!(d, Duration::from_millis(200));
        assert_eq!(next_delay(Some(d), RESET_AFTER), INITIAL_DELAY);
        assert_eq!(next_delay(Some(MAX_DELAY), Duration::ZERO), MAX_DELAY);
    }
}

//! Waiting on a condition, never a fixed sleep: [`wait_for`] polls a probe until it yields a
//! value, and fails with what it waited for and the probe's last error.

use std::time::{Duration, Instant};

/// How often [`wait_for`] asks its probe.
pub const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
#[error("{what}: not within {timeout:?} ({last})")]
pub struct WaitTimeout {
    pub what: String,
    pub timeout: Duration,
    /// The probe's last error, or "no answer yet".
    pub last: String,
}

/// Polls `probe` every [`POLL`] until it yields `Some`; an `Err` from the probe is remembered
/// (a service not up yet) and polling goes on until `timeout`.
pub fn wait_for<T, E: std::fmt::Display>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>, E>,
) -> Result<T, WaitTimeout> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            return Err(WaitTimeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_the_value_or_names_the_last_error() {
        let mut n = 0;
        let got = wait_for("three", Duration::from_secs(5), || {
            n += 1;
            Ok::<_, String>((n == 3).then_some(n))
        });
        assert_eq!(got.unwrap(), 3);
        let err = wait_for("never", Duration::ZERO, || Err::<Option<()>, _>("down")).unwrap_err();
        assert_eq!(err.to_string(), "never: not within 0ns (down)");
    }
}

//! The default lock lifetime and `TICKET_LOCK_LIFETIME`.

use std::time::Duration;

use crate::{Error, Result};

/// Rasa's default lock lifetime: 60 seconds.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// The environment variable that overrides the default lifetime (whole
/// seconds; empty or 0 keeps the default), as in Rasa.
pub const LIFETIME_ENV: &str = "TICKET_LOCK_LIFETIME";

/// The default lifetime, from `TICKET_LOCK_LIFETIME` when it is set.
///
/// Empty or `0` means the default (60 s), as in Rasa; anything but a
/// non-negative whole number of seconds is a configuration error, as in
/// Rasa Pro.
pub fn lifetime_from_env() -> Result<Duration> {
    parse_lifetime(std::env::var(LIFETIME_ENV).ok().as_deref())
}

pub(crate) fn parse_lifetime(value: Option<&str>) -> Result<Duration> {
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_LIFETIME);
    };
    match raw.parse::<u64>() {
        Ok(0) => Ok(DEFAULT_LIFETIME),
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => Err(Error::config(
            LIFETIME_ENV,
            format!(
                "{raw:?} is not a whole number of seconds; set it to e.g. 60, or unset it for the default of 60"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_zero_means_the_default() {
        for v in [None, Some(""), Some("  "), Some("0")] {
            assert_eq!(parse_lifetime(v).unwrap(), DEFAULT_LIFETIME, "{v:?}");
        }
    }

    #[test]
    fn whole_seconds_override_the_default() {
        assert_eq!(parse_lifetime(Some("15")).unwrap(), Duration::from_secs(15));
        assert_eq!(
            parse_lifetime(Some(" 90 ")).unwrap(),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn non_integers_and_negatives_are_errors_naming_the_variable() {
        for v in ["1.5", "-3", "abc", "1e3"] {
            let e = parse_lifetime(Some(v)).unwrap_err();
            assert!(
                matches!(e, Error::Config { ref key, .. } if key == LIFETIME_ENV),
                "{v}: {e}"
            );
            assert!(e.to_string().contains(v), "{e}");
        }
    }
}

//! How durations are shown to people: `1.0 s`, `12.5 ms`, `794 us`.
//!
//! Messages and human-readable reports use [`human`]; JSON output carries
//! durations as numbers of microseconds (see `json.rs`).

use std::time::Duration;

/// A duration with one decimal and a unit fit for its size: seconds from
/// one second up, milliseconds from one millisecond, else whole
/// microseconds.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        format!("{secs:.1} s")
    } else if d >= Duration::from_millis(1) {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{} us", d.as_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human(Duration::from_secs(1)), "1.0 s");
        assert_eq!(human(Duration::from_nanos(1_003_982_773)), "1.0 s");
        assert_eq!(human(Duration::from_millis(61_500)), "61.5 s");
        assert_eq!(human(Duration::from_micros(12_500)), "12.5 ms");
        assert_eq!(human(Duration::from_micros(794)), "794 us");
        assert_eq!(human(Duration::ZERO), "0 us");
    }
}

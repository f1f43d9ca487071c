//! The device's clock. Key-package lifetimes and key renewals are counted
//! in days and months; tests cannot wait that long, so the test build
//! (feature `failpoints`, never a release) shifts the clock by
//! `VALISE_TEST_CLOCK_OFFSET_MS`.

/// Wall-clock time as this device counts it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset_ms: i64,
}

impl Clock {
    /// The system clock (shifted in test builds, see the module doc).
    pub fn system() -> Self {
        Self {
            offset_ms: test_offset_ms(),
        }
    }

    /// The system clock shifted by `offset_ms` (tests of the engine).
    pub fn shifted(offset_ms: i64) -> Self {
        Self { offset_ms }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        real.saturating_add(self.offset_ms)
    }

    /// Seconds since the Unix epoch (MLS lifetimes count in seconds).
    pub fn now_s(&self) -> u64 {
        u64::try_from(self.now_ms() / 1000).unwrap_or(0)
    }
}

#[cfg(feature = "failpoints")]
fn test_offset_ms() -> i64 {
    std::env::var("VALISE_TEST_CLOCK_OFFSET_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(not(feature = "failpoints"))]
fn test_offset_ms() -> i64 {
    0
}

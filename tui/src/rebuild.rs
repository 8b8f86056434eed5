//! Rebuild rate and time-to-go, computed from successive progress samples
//! (the REST API reports only a percentage per rebuilding child).
//!
//! For each rebuilding child the tracker keeps the first and the latest
//! sample of the current rebuild; the rate is the bytes copied between them
//! (percent of the child's size) over the time between them. A progress
//! that goes backwards starts a new rebuild.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: SystemTime,
    percent: u8,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Samples {
    first: Sample,
    last: Sample,
}

/// How fast a rebuild goes and when it should end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub bytes_per_sec: f64,
    /// `None` while nothing was copied between the samples.
    pub eta: Option<Duration>,
}

/// Progress samples per (volume uuid, child uri).
#[derive(Debug, Clone, Default)]
pub struct RebuildTracker {
    samples: HashMap<(String, String), Samples>,
}

impl RebuildTracker {
    /// Records `percent` for a child seen rebuilding at `at`.
    pub fn observe(&mut self, volume: &str, child: &str, percent: u8, at: SystemTime) {
        let sample = Sample {
            at,
            percent: percent.min(100),
        };
        let key = (volume.to_string(), child.to_string());
        match self.samples.get_mut(&key) {
            Some(s) if sample.percent >= s.last.percent && at >= s.last.at => s.last = sample,
            _ => {
                self.samples.insert(
                    key,
                    Samples {
                        first: sample,
                        last: sample,
                    },
                );
            }
        }
    }

    /// Forgets every child not in `alive` (children no longer rebuilding).
    pub fn retain(&mut self, alive: &[(String, String)]) {
        self.samples.retain(|key, _| alive.contains(key));
    }

    /// Rate and time-to-go of a child's rebuild whose size is `size_bytes`;
    /// `None` until two samples some time apart exist.
    pub fn estimate(&self, volume: &str, child: &str, size_bytes: u64) -> Option<Estimate> {
        let s = self.samples.get(&(volume.to_string(), child.to_string()))?;
        let elapsed = s.last.at.duration_since(s.first.at).ok()?;
        if elapsed.is_zero() {
            return None;
        }
        let done = f64::from(s.last.percent - s.first.percent) / 100.0 * size_bytes as f64;
        let bytes_per_sec = done / elapsed.as_secs_f64();
        let eta = (bytes_per_sec > 0.0).then(|| {
            let left = f64::from(100 - s.last.percent) / 100.0 * size_bytes as f64;
            Duration::from_secs_f64((left / bytes_per_sec).min(1.0e9))
        });
        Some(Estimate { bytes_per_sec, eta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn rate_and_eta_from_two_samples() {
        let mut r = RebuildTracker::default();
        r.observe("v", "c", 10, t(100));
        assert_eq!(r.estimate("v", "c", 1000), None);
        r.observe("v", "c", 55, t(110));
        let e = r.estimate("v", "c", 1000).expect("two samples");
        assert!((e.bytes_per_sec - 45.0).abs() < 1e-9);
        assert_eq!(e.eta, Some(Duration::from_secs(10)));
    }

    #[test]
    fn stalled_and_restarted_rebuilds() {
        let mut r = RebuildTracker::default();
        r.observe("v", "c", 30, t(1));
        r.observe("v", "c", 30, t(5));
        let e = r.estimate("v", "c", 1000).expect("two samples");
        assert_eq!(e.eta, None);
        // backwards: a new rebuild, one sample only
        r.observe("v", "c", 5, t(6));
        assert_eq!(r.estimate("v", "c", 1000), None);
        r.retain(&[]);
        r.observe("v", "c", 50, t(7));
        assert_eq!(r.estimate("v", "c", 1000), None);
    }
}

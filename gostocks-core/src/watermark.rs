//! Admitting ticks into the dataflow: the event-time grid and the lateness rule.
//!
//! Results exist at grid times, multiples of the resolution: a trade at `t` enters the
//! dataflow at [`grid_ceil`]`(t)`, and the stats "at `g`" cover the trades of `g - W < t <= g`.
//! An input may arrive out of order by up to its lateness: a [`Watermark`] tracks the greatest
//! time seen and says which grid times can no longer receive a trade, so the dataflow can
//! finalize them; a trade later than that is refused with a [`Late`] that says by how much.
//! Several inputs each keep their own watermark ([`crate::batch::Watermarks`]).

use serde::{Deserialize, Serialize};

/// The first grid time at or after `t`: the earliest result a trade at `t` belongs to (the stats
/// "at grid time g" cover `g - W < t <= g`).
///
/// ```
/// use gostocks_core::watermark::grid_ceil;
/// assert_eq!(grid_ceil(1_000, 1_000), 1_000);
/// assert_eq!(grid_ceil(1_001, 1_000), 2_000);
/// ```
pub fn grid_ceil(t: u64, resolution: u64) -> u64 {
    t.div_ceil(resolution) * resolution
}

/// A tick refused because it arrived too late.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error(
    "late by {behind_ns} ns: t={time_ns} is more than the lateness {lateness_ns} ns behind the greatest t seen ({max_seen_ns})"
)]
#[non_exhaustive]
pub struct Late {
    /// The tick's event time.
    pub time_ns: u64,
    /// The greatest event time seen from its input before it.
    pub max_seen_ns: u64,
    /// How far behind that it is.
    pub behind_ns: u64,
    /// The allowed lateness.
    pub lateness_ns: u64,
}

/// The watermark of one input (a file, a Kafka partition): the greatest event time seen, minus
/// the allowed lateness.
///
/// A tick whose `t` is more than `lateness` behind the greatest `t` already seen from its input
/// is late; every other tick is admitted at its grid time, which is never below
/// [`Watermark::input_time`]. Results for grid times below the minimum `input_time` over all
/// inputs are final.
///
/// ```
/// use gostocks_core::watermark::Watermark;
/// let mut w = Watermark::new(2_000, 1_000);
/// assert_eq!(w.admit(10_500), Ok(11_000));
/// assert_eq!(w.admit(8_500), Ok(9_000)); // 2 µs behind: within the lateness
/// assert!(w.admit(8_499).is_err());
/// assert_eq!(w.input_time(), 9_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermark {
    lateness: u64,
    resolution: u64,
    max_seen: Option<u64>,
}

impl Watermark {
    /// A watermark with the allowed `lateness` on a grid of `resolution` (both in ns).
    pub fn new(lateness: u64, resolution: u64) -> Watermark {
        Watermark {
            lateness,
            resolution: resolution.max(1),
            max_seen: None,
        }
    }

    /// A watermark that has already seen ticks up to `max_seen` (`None`: none), as a reader of
    /// a file's later part picks up where the earlier parts left off: the same ticks are late,
    /// and for the same reason, as if it had read them all.
    ///
    /// ```
    /// use gostocks_core::watermark::Watermark;
    /// let mut w = Watermark::resumed(0, 1_000, Some(10_500));
    /// assert!(w.admit(10_000).is_err());
    /// assert_eq!(w.max_seen(), Some(10_500));
    /// ```
    pub fn resumed(lateness: u64, resolution: u64, max_seen: Option<u64>) -> Watermark {
        Watermark {
            max_seen,
            ..Watermark::new(lateness, resolution)
        }
    }

    /// The greatest event time admitted so far.
    pub fn max_seen(&self) -> Option<u64> {
        self.max_seen
    }

    /// Admits a tick at `t`: its grid time, or why it is late.
    pub fn admit(&mut self, t: u64) -> Result<u64, Late> {
        if let Some(max) = self.max_seen {
            if t < max.saturating_sub(self.lateness) {
                return Err(Late {
                    time_ns: t,
                    max_seen_ns: max,
                    behind_ns: max - t,
                    lateness_ns: self.lateness,
                });
            }
            if t > max {
                self.max_seen = Some(t);
            }
        } else {
            self.max_seen = Some(t);
        }
        Ok(grid_ceil(t, self.resolution))
    }

    /// The least grid time a future admitted tick can have.
    pub fn input_time(&self) -> u64 {
        self.max_seen.map_or(0, |m| {
            grid_ceil(m.saturating_sub(self.lateness), self.resolution)
        })
    }

    /// The time past every grid time seen: where an input that has gone quiet lets event time
    /// advance to, so that its last grid time becomes final.
    ///
    /// ```
    /// use gostocks_core::watermark::Watermark;
    /// let mut w = Watermark::new(0, 1_000);
    /// w.admit(10_500).unwrap();
    /// assert_eq!((w.input_time(), w.closed_time()), (11_000, 12_000));
    /// ```
    pub fn closed_time(&self) -> u64 {
        self.max_seen
            .map_or(0, |m| grid_ceil(m, self.resolution) + self.resolution)
    }
}

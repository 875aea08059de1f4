//! Durations written the way users write them: `500ms`, `1s`, `60s`, `5m`, `1h`.
//!
//! Windows, bars, the resolution and alert cooldowns are [`Span`]s: parsed from that text,
//! exact in nanoseconds, and keeping the text for the labels of the outputs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A positive duration in nanoseconds that remembers how it was written, so that outputs label
/// windows and bars exactly as configured (`"window":"300s"`, `"bar":"1m"`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    ns: u64,
    label: String,
}

/// Why a text is not a [`Span`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} is not a duration: write a whole number and a unit (ns, us, ms, s, m, h, d), e.g. `60s`"
)]
pub struct SpanError(pub String);

impl Span {
    /// A span of `ns` nanoseconds labelled `label`.
    pub fn new(ns: u64, label: impl Into<String>) -> Span {
        Span {
            ns,
            label: label.into(),
        }
    }

    /// Length in nanoseconds.
    pub fn ns(&self) -> u64 {
        self.ns
    }

    /// The label it was written with.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl FromStr for Span {
    type Err = SpanError;

    /// ```
    /// use gostocks_core::Span;
    /// assert_eq!("1m".parse::<Span>().unwrap().ns(), 60_000_000_000);
    /// assert!("0s".parse::<Span>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SpanError(crate::symbol::excerpt(s));
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| err())?;
        let mult: u64 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(err()),
        };
        let ns = n.checked_mul(mult).filter(|&ns| ns > 0).ok_or_else(err)?;
        Ok(Span {
            ns,
            label: t.to_owned(),
        })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.label)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

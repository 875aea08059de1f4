//! Dataflow operators: thin extension traits over timely streams and differential collections,
//! one per file. The maths they apply lives in [`crate::indicators`].

pub mod last_price;
pub mod sequence;

pub use last_price::LastPrice;
pub use sequence::{Point, Sequence, Sequenced};

use std::hash::{Hash, Hasher};

use crate::symbol::Symbol;

/// The worker-routing hash of a symbol: every operator that partitions by symbol uses this one,
/// so that consecutive exchanges by symbol stay on the same worker.
pub fn symbol_route(symbol: &Symbol) -> u64 {
    // FNV-1a: stable across runs and platforms, so outputs do not depend on a random seed.
    let mut h = FnvHasher(0xcbf2_9ce4_8422_2325);
    symbol.hash(&mut h);
    h.0
}

struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

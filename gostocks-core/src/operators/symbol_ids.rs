//! `SymbolIds`: dense ids for symbols, so that per-symbol state can live in plain vectors.

use rustc_hash::FxHashMap as HashMap;

use crate::symbol::Symbol;

/// Every symbol seen, numbered `0, 1, ...` as they come. Records come in runs of one symbol:
/// the last symbol asked is remembered, and a run costs one lookup.
/// The places of the symbols seen last, direct-mapped by [`Symbol::quick_hash`]: a trade's
/// symbol found in a few instructions where a map's lookup hashes and probes. Trades of many
/// symbols interleave (a grid time holds about one trade of each), so remembering only the last
/// one seldom helps; 256 slots hold a market's busy symbols, and a miss costs the map lookup it
/// saves otherwise.
pub(crate) struct RecentSymbols {
    slots: Box<[(Symbol, u32); 256]>,
}

impl Default for RecentSymbols {
    fn default() -> RecentSymbols {
        let empty = Symbol::new("-").expect("a valid symbol");
        RecentSymbols {
            slots: Box::new([(empty, u32::MAX); 256]),
        }
    }
}

impl RecentSymbols {
    #[inline(always)]
    fn slot(symbol: &Symbol) -> usize {
        (symbol.quick_hash() >> 56) as usize
    }

    /// The place remembered for `symbol`.
    #[inline(always)]
    pub(crate) fn get(&self, symbol: &Symbol) -> Option<u32> {
        let (s, place) = &self.slots[Self::slot(symbol)];
        (*place != u32::MAX && s == symbol).then_some(*place)
    }

    /// Remembers `place` for `symbol` (in place of the symbol of the same slot).
    #[inline]
    pub(crate) fn put(&mut self, symbol: Symbol, place: u32) {
        self.slots[Self::slot(&symbol)] = (symbol, place);
    }
}

#[derive(Default)]
pub(crate) struct SymbolIds {
    ids: HashMap<Symbol, u32>,
    symbols: Vec<Symbol>,
    /// The last symbol asked, with its id.
    last: Option<(Symbol, u32)>,
}

impl SymbolIds {
    /// The id of `symbol`; a new symbol gets the next one ([`SymbolIds::len`] before the call).
    #[inline]
    pub(crate) fn id(&mut self, symbol: Symbol) -> u32 {
        if let Some((last, id)) = self.last
            && last == symbol
        {
            return id;
        }
        let fresh = self.symbols.len() as u32;
        let id = *self.ids.entry(symbol).or_insert(fresh);
        if id == fresh {
            self.symbols.push(symbol);
        }
        self.last = Some((symbol, id));
        id
    }

    /// How many symbols have an id.
    pub(crate) fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Every symbol, by id.
    pub(crate) fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_symbols_as_they_come() {
        let [a, b] = ["A", "B"].map(|s| Symbol::new(s).unwrap());
        let mut ids = SymbolIds::default();
        let got: Vec<u32> = [b, b, a, b, a, a].into_iter().map(|s| ids.id(s)).collect();
        assert_eq!(got, [0, 0, 1, 0, 1, 1]);
        assert_eq!(ids.len(), 2);
        assert_eq!(ids.symbols(), [b, a]);
    }
}

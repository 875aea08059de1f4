//! `SymbolIds`: dense ids for symbols, so that per-symbol state can live in plain vectors.

use rustc_hash::FxHashMap as HashMap;

use crate::symbol::Symbol;

/// Every symbol seen, numbered `0, 1, ...` as they come. Records come in runs of one symbol:
/// the last symbol asked is remembered, and a run costs one lookup.
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

//! Inline, copyable instrument symbols.
//!
//! Every trade carries its [`Symbol`], so it is stored inline (up to [`MAX_SYMBOL_LEN`] bytes,
//! no allocation) and is `Copy`; [`Symbol::new`] refuses what a symbol cannot be (empty, too
//! long, whitespace or control characters), and [`excerpt`] is how every error quotes untrusted
//! text: short and bounded.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest symbol, in bytes, that gostocks carries.
pub const MAX_SYMBOL_LEN: usize = 23;

/// An instrument symbol of at most 23 bytes, stored inline so that ticks are `Copy` and
/// moving them through the dataflow never allocates.
///
/// The 24 bytes (zero padded, length last) are ordered and hashed as three big-endian words:
/// three integer operations, and the order is the text's lexicographic order. Equality compares
/// the bytes as they are.
#[derive(Clone, Copy)]
pub struct Symbol {
    /// The text, zero padded, then its length in the last byte: one array, so that words are
    /// plain loads.
    bytes: [u8; MAX_SYMBOL_LEN + 1],
}

impl Symbol {
    /// The 8 bytes from `8 * i`, read as a `from` word.
    #[inline]
    fn word(&self, i: usize, from: fn([u8; 8]) -> u64) -> u64 {
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(&self.bytes[8 * i..8 * i + 8]);
        from(chunk)
    }

    #[inline]
    fn words(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.word(i, u64::from_be_bytes))
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.bytes[MAX_SYMBOL_LEN])
    }

    /// A quick mix of the symbol's three words, for a small cache's slot (not for a map's
    /// hash: it is not built to resist crafted keys).
    #[inline(always)]
    pub(crate) fn quick_hash(&self) -> u64 {
        let [a, b, c] = [0, 1, 2].map(|i| self.word(i, u64::from_ne_bytes));
        (a ^ b.rotate_left(21) ^ c.rotate_left(42)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl PartialEq for Symbol {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        // Equality needs no byte order: the 24 bytes as they are, three words.
        (0..3).all(|i| self.word(i, u64::from_ne_bytes) == other.word(i, u64::from_ne_bytes))
    }
}

impl Eq for Symbol {}

impl PartialOrd for Symbol {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Symbol {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.words().cmp(&other.words())
    }
}

impl std::hash::Hash for Symbol {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.words().hash(state);
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// `FNV_PRIME^k` for `k` zero bytes of padding.
const FNV_PRIME_POWERS: [u64; MAX_SYMBOL_LEN + 1] = {
    let mut powers = [1u64; MAX_SYMBOL_LEN + 1];
    let mut k = 1;
    while k <= MAX_SYMBOL_LEN {
        powers[k] = powers[k - 1].wrapping_mul(FNV_PRIME);
        k += 1;
    }
    powers
};

/// Why a text is not a [`Symbol`]. Each variant carries at most a short excerpt of the text
/// (see [`excerpt`]), never the whole of an untrusted input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolError {
    /// The symbol is empty.
    #[error("must not be empty")]
    Empty,
    /// The symbol is longer than [`MAX_SYMBOL_LEN`] bytes (after case folding).
    #[error("{0} is longer than 23 bytes")]
    TooLong(String),
    /// The symbol contains whitespace or control characters.
    #[error("{0} contains whitespace or control characters")]
    BadCharacter(String),
}

/// The longest excerpt of untrusted text that an error message echoes, in characters.
pub const EXCERPT_CHARS: usize = 32;

/// A short, quoted excerpt of untrusted text for an error message: at most [`EXCERPT_CHARS`]
/// characters (control characters escaped), followed by how long the whole was when it is cut.
///
/// ```
/// use gostocks_core::symbol::excerpt;
/// assert_eq!(excerpt("AAPL"), "`AAPL`");
/// let long = "X".repeat(10_000);
/// assert_eq!(excerpt(&long), format!("`{}`... (10000 bytes)", "X".repeat(32)));
/// ```
pub fn excerpt(text: &str) -> String {
    let mut out = String::with_capacity(EXCERPT_CHARS + 24);
    out.push('`');
    for (n, c) in text.chars().enumerate() {
        if n == EXCERPT_CHARS {
            out.push_str(&format!("`... ({} bytes)", text.len()));
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

impl Symbol {
    /// Makes a symbol by the one canonical rule that every entry applies (file and WebSocket
    /// decoders, Kafka, REST, gRPC, alert creation): letters are folded to upper case (Unicode
    /// upper case; ASCII without allocating), the result is 1 to [`MAX_SYMBOL_LEN`] bytes of UTF-8
    /// with no whitespace and no control characters. See [`SymbolError`] for what is refused.
    ///
    /// ```
    /// use gostocks_core::Symbol;
    /// assert_eq!(Symbol::new("AAPL").unwrap().as_str(), "AAPL");
    /// assert_eq!(Symbol::new("btc/usd").unwrap().as_str(), "BTC/USD");
    /// assert_eq!(Symbol::new("äpfel").unwrap().as_str(), "ÄPFEL");
    /// assert!(Symbol::new("").is_err());
    /// assert!(Symbol::new("A B").is_err());
    /// ```
    pub fn new(s: &str) -> Result<Symbol, SymbolError> {
        if s.is_empty() {
            return Err(SymbolError::Empty);
        }
        if s.is_ascii() {
            if s.len() > MAX_SYMBOL_LEN {
                return Err(SymbolError::TooLong(excerpt(s)));
            }
            if s.bytes().any(|c| !c.is_ascii_graphic()) {
                return Err(SymbolError::BadCharacter(excerpt(s)));
            }
            let mut bytes = [0u8; MAX_SYMBOL_LEN + 1];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            bytes[..s.len()].make_ascii_uppercase();
            bytes[MAX_SYMBOL_LEN] = s.len() as u8;
            return Ok(Symbol { bytes });
        }
        // Upper case can grow a text by a factor of three at most: anything this long is too
        // long, and is refused before folding it.
        if s.len() > 4 * MAX_SYMBOL_LEN {
            return Err(SymbolError::TooLong(excerpt(s)));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SymbolError::BadCharacter(excerpt(s)));
        }
        let folded = s.to_uppercase();
        if folded.len() > MAX_SYMBOL_LEN {
            return Err(SymbolError::TooLong(excerpt(s)));
        }
        let mut bytes = [0u8; MAX_SYMBOL_LEN + 1];
        bytes[..folded.len()].copy_from_slice(folded.as_bytes());
        bytes[MAX_SYMBOL_LEN] = folded.len() as u8;
        Ok(Symbol { bytes })
    }

    /// A hash of the symbol that is the same on every platform and in every run: what routes a
    /// symbol to a worker. It is FNV-1a over the 24 bytes (the text, its zero padding, its
    /// length); the padding is folded in with one multiply, since a zero byte only multiplies.
    ///
    /// ```
    /// use gostocks_core::Symbol;
    /// // FNV-1a of "A", 22 zero bytes and the length 1.
    /// let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    /// for b in [b"A".as_slice(), &[0; 22], &[1]].concat() {
    ///     h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    /// }
    /// assert_eq!(Symbol::new("A").unwrap().stable_hash(), h);
    /// ```
    #[inline]
    pub fn stable_hash(&self) -> u64 {
        let len = self.len();
        let mut h = FNV_OFFSET;
        for &b in &self.bytes[..len] {
            h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        h = h.wrapping_mul(FNV_PRIME_POWERS[MAX_SYMBOL_LEN - len]);
        (h ^ len as u64).wrapping_mul(FNV_PRIME)
    }

    /// The symbol's text.
    #[inline]
    pub fn as_str(&self) -> &str {
        // Built only from a `&str` in `new`, so the bytes are valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len()]).unwrap_or_default()
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Symbol::new(&s).map_err(serde::de::Error::custom)
    }
}

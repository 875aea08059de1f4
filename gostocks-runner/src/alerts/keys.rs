//! API keys: `gsk_<user id>_<32 random hex digits>`. Only `salt$sha256(salt ‖ key)` is stored;
//! the user id in the key says which hash to check, so a lookup never scans users.

use rand::Rng;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(salt: &str, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(key.as_bytes());
    hex(&h.finalize())
}

/// A fresh key for user `id`.
pub fn new_key(id: i64) -> String {
    let secret: [u8; 16] = rand::rng().random();
    format!("gsk_{id}_{}", hex(&secret))
}

/// The stored form of `key`: a random salt and the salted hash.
pub fn hash_key(key: &str) -> String {
    let salt: [u8; 8] = rand::rng().random();
    let salt = hex(&salt);
    let d = digest(&salt, key);
    format!("{salt}${d}")
}

/// Whether `key` matches the stored `hash` (compared in constant time).
pub fn verify_key(key: &str, hash: &str) -> bool {
    let Some((salt, want)) = hash.split_once('$') else {
        return false;
    };
    let got = digest(salt, key);
    got.len() == want.len()
        && got
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The user id a key claims (checked by [`verify_key`]).
pub fn user_of_key(key: &str) -> Option<i64> {
    let rest = key.strip_prefix("gsk_")?;
    let (id, secret) = rest.split_once('_')?;
    (secret.len() == 32).then_some(())?;
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_verifies_against_its_hash_only() {
        let key = new_key(7);
        let stored = hash_key(&key);
        assert!(!stored.contains(&key[4..]), "the key is not stored");
        assert!(verify_key(&key, &stored));
        assert!(!verify_key(&new_key(7), &stored));
        assert_eq!(user_of_key(&key), Some(7));
        assert_eq!(user_of_key("gsk_x_1"), None);
    }
}

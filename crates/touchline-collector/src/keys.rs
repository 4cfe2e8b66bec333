//! Write and secret keys: lookups by SHA-256 hash, so the store never holds a key in clear.

use std::collections::HashMap;
use std::sync::RwLock;

use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Sends records (SDKs, pixels, browsers). Safe to embed in a page.
    Write,
    /// Server-side: sends records, manages links, reads reports. Never put in a page.
    Secret,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub account_id: Uuid,
    pub kind: KeyKind,
    /// The account's `anonymize_ip`: zero the host part of every address its records carry.
    pub anonymize_ip: bool,
}

/// Where the collector looks up keys. The hot path calls `lookup` once per request; an
/// implementation answers from memory and may consult its store on a miss.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync + 'static {
    async fn lookup(&self, key: &str) -> Option<KeyInfo>;

    /// The key's info when memory alone knows it is valid, without asking a store; `None` when
    /// only [`KeyStore::lookup`] can tell. The collector asks this first, so its failure throttle
    /// and negative cache, which only guard the store, never hold back a key known valid.
    fn known_valid(&self, _key: &str) -> Option<KeyInfo> {
        None
    }
}

/// SHA-256 of a key, hex encoded: what stores keep instead of the key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Generates a key: `tl_wk_…` (write) or `tl_sk_…` (secret), 32 random base62 characters.
pub fn generate_key(kind: KeyKind) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::from(match kind {
        KeyKind::Write => "tl_wk_",
        KeyKind::Secret => "tl_sk_",
    });
    // Two v4 UUIDs give 244 bits from the OS RNG; 32 base62 characters keep ~190 of them.
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    for b in bytes {
        out.push(ALPHABET[(b as usize) % ALPHABET.len()] as char);
    }
    out
}

/// An in-memory key store keyed by hash; replaceable at run time (catalog refresh).
#[derive(Default)]
pub struct MemoryKeys {
    by_hash: RwLock<HashMap<String, KeyInfo>>,
}

impl MemoryKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key given by its hash.
    pub fn insert_hash(&self, hash: String, info: KeyInfo) {
        self.by_hash.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(hash, info);
    }

    /// Adds a key given in clear (tests, env-fixed keys).
    pub fn insert(&self, key: &str, info: KeyInfo) {
        self.insert_hash(hash_key(key), info);
    }

    /// Replaces the whole set.
    pub fn replace(&self, all: HashMap<String, KeyInfo>) {
        *self.by_hash.write().unwrap_or_else(std::sync::PoisonError::into_inner) = all;
    }
}

#[async_trait::async_trait]
impl KeyStore for MemoryKeys {
    async fn lookup(&self, key: &str) -> Option<KeyInfo> {
        self.known_valid(key)
    }

    fn known_valid(&self, key: &str) -> Option<KeyInfo> {
        if key.is_empty() || key.len() > 256 {
            return None;
        }
        self.by_hash.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&hash_key(key)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn generated_keys_are_distinct_and_look_up_by_hash() {
        let a = generate_key(KeyKind::Write);
        let b = generate_key(KeyKind::Write);
        assert_ne!(a, b);
        assert!(a.starts_with("tl_wk_") && a.len() == 38);
        let keys = MemoryKeys::new();
        let info = KeyInfo { account_id: Uuid::from_u128(1), kind: KeyKind::Write, anonymize_ip: false };
        keys.insert(&a, info);
        assert_eq!(keys.lookup(&a).await, Some(info));
        assert_eq!(keys.lookup(&b).await, None);
        assert_eq!(hash_key(&a).len(), 64);
    }
}

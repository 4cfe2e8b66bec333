//! Account `default` and its keys, kept in the SQL catalog (SQLite in the embedded default,
//! Postgres when configured). Keys are stored as SHA-256 hashes; a key is shown in clear only
//! once, when it is generated.

use std::sync::Arc;

use async_trait::async_trait;
use touchline_collector::{generate_key, hash_key, KeyInfo, KeyKind, KeyStore};
use touchline_sql::{Account, ApiKey, CatalogCache, Store};
use uuid::Uuid;

/// What bootstrapping did, for the banner.
#[derive(Debug, Default)]
pub struct NewKeys {
    pub account_id: Option<Uuid>,
    pub account_created: bool,
    /// Keys generated on this start, shown once.
    pub write: Option<String>,
    pub secret: Option<String>,
}

fn sql_kind(k: KeyKind) -> touchline_sql::KeyKind {
    match k {
        KeyKind::Write => touchline_sql::KeyKind::Write,
        KeyKind::Secret => touchline_sql::KeyKind::Secret,
    }
}

/// Ensures account `default` exists with a write and a secret key. `write_key`/`secret_key`
/// (from the config) fix its keys: a fixed key is added and the account's other keys of that
/// kind are revoked. Missing keys are generated on first start and returned in clear.
pub async fn bootstrap(store: &dyn Store, write_key: Option<&str>, secret_key: Option<&str>) -> anyhow::Result<NewKeys> {
    let catalog = store.load_catalog().await?;
    let mut out = NewKeys::default();
    let account_id = match catalog.accounts.iter().find(|a| a.name == "default") {
        Some(a) => a.id,
        None => {
            let id = Uuid::new_v4();
            store.upsert_account(&Account::new(id, "default")).await?;
            out.account_created = true;
            id
        }
    };
    out.account_id = Some(account_id);
    for (kind, fixed) in [(KeyKind::Write, write_key), (KeyKind::Secret, secret_key)] {
        let live = catalog.keys.iter().any(|k| k.account_id == account_id && k.kind == sql_kind(kind) && !k.revoked);
        let key = match fixed {
            Some(k) => k.to_owned(),
            None if live => continue,
            None => {
                let k = generate_key(kind);
                match kind {
                    KeyKind::Write => out.write = Some(k.clone()),
                    KeyKind::Secret => out.secret = Some(k.clone()),
                }
                k
            }
        };
        let hash = hash_key(&key);
        store
            .insert_key(&ApiKey {
                account_id,
                kind: sql_kind(kind),
                key_hash: hash.clone(),
                prefix: key.chars().take(10).collect(),
                revoked: false,
            })
            .await?;
        if fixed.is_some() {
            store.revoke_keys(account_id, sql_kind(kind), Some(&hash)).await?;
        }
    }
    Ok(out)
}

/// The collector's key lookups, answered by the catalog cache.
pub struct CatalogKeys(pub Arc<CatalogCache>);

impl CatalogKeys {
    fn info(&self, k: &ApiKey) -> KeyInfo {
        // A key found by a direct lookup may belong to an account newer than the snapshot; its
        // addresses are anonymized until the snapshot knows the account, rather than kept in clear.
        let anonymize_ip = self.0.snapshot().accounts.get(&k.account_id).is_none_or(|a| a.anonymize_ip);
        KeyInfo {
            account_id: k.account_id,
            anonymize_ip,
            kind: match k.kind {
                touchline_sql::KeyKind::Write => KeyKind::Write,
                touchline_sql::KeyKind::Secret => KeyKind::Secret,
            },
        }
    }
}

#[async_trait]
impl KeyStore for CatalogKeys {
    async fn lookup(&self, key: &str) -> Option<KeyInfo> {
        if key.is_empty() || key.len() > 256 {
            return None;
        }
        let k = self.0.lookup_key_hash(&hash_key(key)).await?;
        Some(self.info(&k))
    }

    fn known_valid(&self, key: &str) -> Option<KeyInfo> {
        if key.is_empty() || key.len() > 256 {
            return None;
        }
        self.0.snapshot().keys.get(&hash_key(key)).map(|k| self.info(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let s = touchline_sql::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        s.migrate().await.unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn first_start_creates_default_with_hashed_keys() {
        let (_d, s) = store().await;
        let new = bootstrap(s.as_ref(), None, None).await.unwrap();
        assert!(new.account_created);
        let (w, sk) = (new.write.unwrap(), new.secret.unwrap());
        let cat = s.load_catalog().await.unwrap();
        assert!(cat.keys.iter().all(|k| k.key_hash != w && k.key_hash != sk), "stored hashed");
        let keys = CatalogKeys(CatalogCache::load(s.clone(), Duration::from_secs(1)).await.unwrap());
        assert_eq!(keys.lookup(&w).await.unwrap().account_id, new.account_id.unwrap());
        assert_eq!(keys.lookup(&sk).await.unwrap().kind, KeyKind::Secret);
        // Second start: same account, nothing new.
        let again = bootstrap(s.as_ref(), None, None).await.unwrap();
        assert!(!again.account_created && again.write.is_none() && again.secret.is_none());
        assert_eq!(again.account_id, new.account_id);
    }

    #[tokio::test]
    async fn keys_carry_their_accounts_anonymize_ip() {
        let (_d, s) = store().await;
        let new = bootstrap(s.as_ref(), Some("tl_wk_fixed_for_tests_0002"), None).await.unwrap();
        let keys = CatalogKeys(CatalogCache::load(s.clone(), Duration::from_secs(1)).await.unwrap());
        assert!(!keys.lookup("tl_wk_fixed_for_tests_0002").await.unwrap().anonymize_ip);
        let mut account = Account::new(new.account_id.unwrap(), "default");
        account.anonymize_ip = true;
        s.upsert_account(&account).await.unwrap();
        let keys = CatalogKeys(CatalogCache::load(s.clone(), Duration::from_secs(1)).await.unwrap());
        assert!(keys.lookup("tl_wk_fixed_for_tests_0002").await.unwrap().anonymize_ip);
    }

    #[tokio::test]
    async fn fixed_keys_replace_generated_ones() {
        let (_d, s) = store().await;
        let first = bootstrap(s.as_ref(), None, None).await.unwrap();
        let new = bootstrap(s.as_ref(), Some("tl_wk_fixed_for_tests_0001"), None).await.unwrap();
        assert!(new.write.is_none());
        let keys = CatalogKeys(CatalogCache::load(s.clone(), Duration::from_secs(1)).await.unwrap());
        assert!(keys.lookup("tl_wk_fixed_for_tests_0001").await.is_some());
        assert!(keys.lookup(&first.write.unwrap()).await.is_none(), "the generated write key is revoked");
        assert!(keys.lookup(&first.secret.unwrap()).await.is_some(), "the secret key is kept");
    }
}

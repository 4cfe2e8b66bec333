//! Accounts and their keys for the embedded default, in `{data_dir}/accounts.json`.
//! Keys are stored as SHA-256 hashes with a short prefix for display; a key is shown in clear
//! only once, when it is generated.
//!
//! (The SQL catalog of the Postgres/SQLite issue replaces this file when a database is configured.)

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use touchline_collector::{generate_key, hash_key, KeyInfo, KeyKind, MemoryKeys};
use uuid::Uuid;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AccountsFile {
    pub accounts: Vec<Account>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub keys: Vec<StoredKey>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredKey {
    pub kind: KeyKind,
    /// SHA-256 of the key, hex.
    pub hash: String,
    /// The first characters, to recognise a key without storing it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
}

/// Keys created on this start, to print once.
#[derive(Debug, Default)]
pub struct NewKeys {
    pub account_created: bool,
    pub write: Option<String>,
    pub secret: Option<String>,
}

pub struct Accounts {
    path: PathBuf,
    pub file: AccountsFile,
}

fn stored(kind: KeyKind, key: &str) -> StoredKey {
    StoredKey { kind, hash: hash_key(key), prefix: key.chars().take(10).collect(), created_at: Utc::now() }
}

impl Accounts {
    /// Loads the accounts file, creating account `default` on first start. `write_key` and
    /// `secret_key` (from the config) fix the default account's keys; missing ones are
    /// generated on first start and returned in clear to be printed once.
    pub fn open(data_dir: &Path, write_key: Option<&str>, secret_key: Option<&str>) -> anyhow::Result<(Accounts, NewKeys)> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let path = data_dir.join("accounts.json");
        let mut file: AccountsFile = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{} is not a valid accounts file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AccountsFile::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut new = NewKeys::default();
        let mut changed = false;
        if !file.accounts.iter().any(|a| a.name == "default") {
            file.accounts.push(Account { id: Uuid::new_v4(), name: "default".into(), created_at: Utc::now(), keys: Vec::new() });
            new.account_created = true;
            changed = true;
        }
        let default = file.accounts.iter_mut().find(|a| a.name == "default").context("default account")?;
        for (kind, fixed) in [(KeyKind::Write, write_key), (KeyKind::Secret, secret_key)] {
            match fixed {
                Some(k) => {
                    let h = hash_key(k);
                    if !default.keys.iter().any(|s| s.kind == kind && s.hash == h) {
                        // A fixed key replaces the default account's keys of that kind.
                        default.keys.retain(|s| s.kind != kind);
                        default.keys.push(stored(kind, k));
                        changed = true;
                    }
                }
                None if !default.keys.iter().any(|s| s.kind == kind) => {
                    let k = generate_key(kind);
                    default.keys.push(stored(kind, &k));
                    match kind {
                        KeyKind::Write => new.write = Some(k),
                        KeyKind::Secret => new.secret = Some(k),
                    }
                    changed = true;
                }
                None => {}
            }
        }
        let accounts = Accounts { path, file };
        if changed {
            accounts.save()?;
        }
        Ok((accounts, new))
    }

    fn save(&self) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.file)?;
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }

    /// The key store the collector uses.
    pub fn key_store(&self) -> MemoryKeys {
        let keys = MemoryKeys::new();
        for a in &self.file.accounts {
            for k in &a.keys {
                keys.insert_hash(k.hash.clone(), KeyInfo { account_id: a.id, kind: k.kind });
            }
        }
        keys
    }

    pub fn default_account(&self) -> Option<&Account> {
        self.file.accounts.iter().find(|a| a.name == "default")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchline_collector::KeyStore;

    #[test]
    fn first_start_creates_default_with_hashed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (acc, new) = Accounts::open(dir.path(), None, None).unwrap();
        assert!(new.account_created);
        let (w, s) = (new.write.unwrap(), new.secret.unwrap());
        let text = std::fs::read_to_string(dir.path().join("accounts.json")).unwrap();
        assert!(!text.contains(&w) && !text.contains(&s), "keys are stored hashed");
        let store = acc.key_store();
        let id = acc.default_account().unwrap().id;
        assert_eq!(store.lookup(&w).unwrap().account_id, id);
        assert_eq!(store.lookup(&s).unwrap().kind, KeyKind::Secret);
        // Second start: same account, nothing new printed, old keys still valid.
        let (acc2, new2) = Accounts::open(dir.path(), None, None).unwrap();
        assert!(!new2.account_created && new2.write.is_none());
        assert_eq!(acc2.default_account().unwrap().id, id);
        assert!(acc2.key_store().lookup(&w).is_some());
    }

    #[test]
    fn fixed_keys_replace_generated_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (_, first) = Accounts::open(dir.path(), None, None).unwrap();
        let (acc, new) = Accounts::open(dir.path(), Some("tl_wk_fixed_for_tests_0001"), None).unwrap();
        assert!(new.write.is_none());
        let store = acc.key_store();
        assert!(store.lookup("tl_wk_fixed_for_tests_0001").is_some());
        assert!(store.lookup(&first.write.unwrap()).is_none(), "the generated write key is replaced");
        assert!(store.lookup(&first.secret.unwrap()).is_some(), "the secret key is kept");
    }
}

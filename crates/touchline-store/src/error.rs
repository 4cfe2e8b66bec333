//! The one error every store returns, whatever its backend. What matters to a caller is
//! whether to retry: [`StoreError::is_refusal`] says the rows themselves were refused, so the
//! same write would fail again; every other error is worth retrying as a whole.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database did not do the write or read: unreachable, busy, out of space, timed
    /// out, or an error of its own. Retrying may succeed.
    #[error("database error: {0}")]
    Backend(String),
    /// The database refused the data itself (a value out of range, a character it cannot
    /// store, a constraint, a sum that overflows its column); the same rows fail again.
    #[error("refused: {0}")]
    Refused(String),
    #[error("migration failed: {0}")]
    Migrate(String),
    #[error("invalid database URL {0:?}: use postgres://… or sqlite://…")]
    BadUrl(String),
    /// Stored data or an argument that cannot be right (an unknown key kind, a bad date).
    #[error("{0}")]
    Invalid(String),
    /// The transaction that held this write was cancelled before it committed, so nothing
    /// of it was written; writing again succeeds.
    #[error("the transaction holding this write was cancelled before it committed")]
    Cancelled,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// True when the database refused the data itself: retrying the same rows is pointless.
    /// Connection, timeout, lock and space errors are not refusals.
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::Refused(_))
    }
}

#[cfg(feature = "sqlx")]
mod from_sqlx {
    use super::StoreError;

    impl From<sqlx::Error> for StoreError {
        fn from(e: sqlx::Error) -> StoreError {
            let refused = match &e {
                sqlx::Error::Database(db) => {
                    let code = db.code();
                    let code = code.as_deref().unwrap_or("");
                    if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                        postgres_refusal(code)
                    } else {
                        sqlite_refusal(code)
                    }
                }
                _ => false,
            };
            if refused {
                StoreError::Refused(e.to_string())
            } else {
                StoreError::Backend(e.to_string())
            }
        }
    }

    impl From<sqlx::migrate::MigrateError> for StoreError {
        fn from(e: sqlx::migrate::MigrateError) -> StoreError {
            StoreError::Migrate(e.to_string())
        }
    }

    /// SQLSTATE classes 22 (data exception: numeric out of range, invalid text such as NUL,
    /// bad datetime) and 23 (integrity constraint violation).
    fn postgres_refusal(sqlstate: &str) -> bool {
        sqlstate.starts_with("22") || sqlstate.starts_with("23")
    }

    /// SQLite's primary result codes (the low byte of an extended code): TOOBIG (18),
    /// CONSTRAINT (19), MISMATCH (20), RANGE (25). BUSY, LOCKED, IOERR and FULL are worth
    /// retrying.
    fn sqlite_refusal(code: &str) -> bool {
        code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
    }
}

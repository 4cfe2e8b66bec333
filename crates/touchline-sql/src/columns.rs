//! Reading a column of either backend. Postgres has native uuid, date, timestamptz and
//! numeric types; SQLite stores those as text (uuids and dates as written, timestamps in RFC
//! 3339, money as exact decimal text). [`Columns`] hides the difference, so each row type is
//! mapped once (`crate::rows`) for both stores.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use crate::{Result, StoreError};

/// One result row, read column by column in the store's own representation.
pub(crate) trait Columns {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int32(&self, col: &str) -> Result<i32>;
    fn int64(&self, col: &str) -> Result<i64>;
    fn real(&self, col: &str) -> Result<f64>;
    fn opt_real(&self, col: &str) -> Result<Option<f64>>;
    fn flag(&self, col: &str) -> Result<bool>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>>;
    fn uuid(&self, col: &str) -> Result<Uuid>;
    fn date(&self, col: &str) -> Result<NaiveDate>;
    fn opt_date(&self, col: &str) -> Result<Option<NaiveDate>>;
    fn time(&self, col: &str) -> Result<DateTime<Utc>>;
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>>;
    /// Normalised (`12.3`, never `12.300000`), so equal amounts compare equal.
    fn money(&self, col: &str) -> Result<Decimal>;
    fn opt_money(&self, col: &str) -> Result<Option<Decimal>>;
}

/// The columns both backends store natively (text, integers, doubles, booleans, bytes).
macro_rules! same_on_both_backends {
    () => {
        fn text(&self, col: &str) -> Result<String> {
            Ok(self.try_get(col)?)
        }
        fn opt_text(&self, col: &str) -> Result<Option<String>> {
            Ok(self.try_get(col)?)
        }
        fn int32(&self, col: &str) -> Result<i32> {
            Ok(self.try_get(col)?)
        }
        fn int64(&self, col: &str) -> Result<i64> {
            Ok(self.try_get(col)?)
        }
        fn real(&self, col: &str) -> Result<f64> {
            Ok(self.try_get(col)?)
        }
        fn opt_real(&self, col: &str) -> Result<Option<f64>> {
            Ok(self.try_get(col)?)
        }
        fn flag(&self, col: &str) -> Result<bool> {
            Ok(self.try_get(col)?)
        }
        fn bytes(&self, col: &str) -> Result<Vec<u8>> {
            Ok(self.try_get(col)?)
        }
    };
}

impl Columns for PgRow {
    same_on_both_backends!();
    fn uuid(&self, col: &str) -> Result<Uuid> {
        Ok(self.try_get(col)?)
    }
    fn date(&self, col: &str) -> Result<NaiveDate> {
        Ok(self.try_get(col)?)
    }
    fn opt_date(&self, col: &str) -> Result<Option<NaiveDate>> {
        Ok(self.try_get(col)?)
    }
    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        Ok(self.try_get(col)?)
    }
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.try_get(col)?)
    }
    fn money(&self, col: &str) -> Result<Decimal> {
        Ok(self.try_get::<Decimal, _>(col)?.normalize())
    }
    fn opt_money(&self, col: &str) -> Result<Option<Decimal>> {
        Ok(self.try_get::<Option<Decimal>, _>(col)?.map(|d| d.normalize()))
    }
}

impl Columns for SqliteRow {
    same_on_both_backends!();
    fn uuid(&self, col: &str) -> Result<Uuid> {
        parse_uuid(self.try_get(col)?)
    }
    fn date(&self, col: &str) -> Result<NaiveDate> {
        parse_date(self.try_get(col)?)
    }
    fn opt_date(&self, col: &str) -> Result<Option<NaiveDate>> {
        self.try_get::<Option<&str>, _>(col)?.map(parse_date).transpose()
    }
    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        parse_time(self.try_get(col)?)
    }
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        self.try_get::<Option<&str>, _>(col)?.map(parse_time).transpose()
    }
    fn money(&self, col: &str) -> Result<Decimal> {
        parse_money(col, self.try_get(col)?)
    }
    fn opt_money(&self, col: &str) -> Result<Option<Decimal>> {
        self.try_get::<Option<&str>, _>(col)?.map(|s| parse_money(col, s)).transpose()
    }
}

fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Invalid(format!("bad uuid {s:?}: {e}")))
}

fn parse_date(s: &str) -> Result<NaiveDate> {
    NaiveDate::from_str(s).map_err(|e| StoreError::Invalid(format!("bad date {s:?}: {e}")))
}

fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(|e| StoreError::Invalid(format!("bad timestamp {s:?}: {e}")))
}

fn parse_money(col: &str, s: &str) -> Result<Decimal> {
    Decimal::from_str(s)
        .or_else(|_| Decimal::from_scientific(s))
        .map(|d| d.normalize())
        .map_err(|e| StoreError::Invalid(format!("bad decimal {s:?} in {col}: {e}")))
}

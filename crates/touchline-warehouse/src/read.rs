//! What touchline itself reads back from the warehouse: clicks per short link.

use std::collections::HashMap;
use std::fs::File;
use std::io;

use arrow_array::{Array, BooleanArray, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use uuid::Uuid;

use crate::files::FileName;
use crate::schema::{Entity, OFFSET_COLUMN};
use crate::{Result, Warehouse, WarehouseError};

/// Clicks per short code: `(human, bot)`.
pub type ClickCounts = HashMap<String, (i64, i64)>;

/// Rows read from a file at a time.
const READ_BATCH_ROWS: usize = 16 * 1024;

/// A merge may remove a file between the listing and the read: list again, this many times.
const ATTEMPTS: usize = 3;

impl Warehouse {
    /// Clicks per short code of `account`, `(human, bot)`, over every link click stored.
    /// Blocking: a scan of three columns of the `link_clicks` files.
    pub fn link_click_counts(&self, account: Uuid) -> Result<ClickCounts> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.count_link_clicks_once(&account.to_string()) {
                Err(WarehouseError::Io(e)) if e.kind() == io::ErrorKind::NotFound && attempt < ATTEMPTS => continue,
                other => return other,
            }
        }
    }

    fn count_link_clicks_once(&self, account: &str) -> Result<ClickCounts> {
        let mut counts = ClickCounts::new();
        for f in self.visible_files()?.iter().filter(|f| f.entity == Entity::LinkClicks) {
            for batch in self.read_columns(f, Some(&["account_id", "short_code", "bot"]))? {
                add_clicks(&mut counts, account, &batch?)?;
            }
        }
        Ok(counts)
    }

    /// The named columns of one file (all with `None`), batch by batch.
    pub(crate) fn read_columns(&self, f: &FileName, columns: Option<&[&str]>) -> Result<ParquetRecordBatchReader> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(f.path(&self.root))?)?.with_batch_size(READ_BATCH_ROWS);
        let Some(columns) = columns else { return Ok(builder.build()?) };
        let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
        Ok(builder.with_projection(mask).build()?)
    }

    /// The record ids in `entity`'s visible files, with the offset each was read at, in file
    /// order: what tools see, for checks that every record is there once.
    pub fn record_ids(&self, entity: Entity) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for f in self.visible_files()?.iter().filter(|f| f.entity == entity) {
            for batch in self.read_columns(f, Some(&["record_id", OFFSET_COLUMN]))? {
                let batch = batch?;
                let ids = batch.column_by_name("record_id").and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
                let offsets = batch.column_by_name(OFFSET_COLUMN).and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
                let (Some(ids), Some(offsets)) = (ids, offsets) else { return Err(missing("record_id or _offset")) };
                out.extend(ids.iter().zip(offsets.iter()).map(|(i, o)| (i.unwrap_or_default().to_owned(), o.unwrap_or(-1))));
            }
        }
        Ok(out)
    }

    /// Every row of every table as `{entity}:{record id}`, sorted: what a check that each
    /// record is stored exactly once compares.
    pub fn all_record_keys(&self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for e in Entity::ALL {
            keys.extend(self.record_ids(e)?.into_iter().map(|(id, _)| format!("{}:{id}", e.dir())));
        }
        keys.sort();
        Ok(keys)
    }
}

fn add_clicks(counts: &mut ClickCounts, account: &str, batch: &RecordBatch) -> Result<()> {
    let column = |name: &str| batch.column_by_name(name).ok_or_else(|| missing(name));
    let accounts = column("account_id")?;
    let codes = column("short_code")?;
    let bots = column("bot")?;
    let (Some(accounts), Some(codes), Some(bots)) = (
        accounts.as_any().downcast_ref::<StringArray>(),
        codes.as_any().downcast_ref::<StringArray>(),
        bots.as_any().downcast_ref::<BooleanArray>(),
    ) else {
        return Err(missing("account_id, short_code or bot of the expected type"));
    };
    for i in 0..batch.num_rows() {
        if accounts.value(i) != account || codes.is_null(i) {
            continue;
        }
        let entry = counts.entry(codes.value(i).to_owned()).or_default();
        if bots.value(i) {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
    }
    Ok(())
}

pub(crate) fn missing(what: &str) -> WarehouseError {
    WarehouseError::Arrow(arrow_schema::ArrowError::SchemaError(format!("link_clicks file without column {what}")))
}

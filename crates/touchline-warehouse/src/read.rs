//! Reading the warehouse back: the record ids each file holds, for the checks that every
//! record is stored exactly once.

use std::fs::File;

use arrow_array::{Array, Int64Array, StringArray};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use crate::files::FileName;
use crate::schema::{Entity, OFFSET_COLUMN};
use crate::{Result, Warehouse, WarehouseError};

/// Rows read from a file at a time.
const READ_BATCH_ROWS: usize = 16 * 1024;

impl Warehouse {
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

pub(crate) fn missing(what: &str) -> WarehouseError {
    WarehouseError::Arrow(arrow_schema::ArrowError::SchemaError(format!("a warehouse file without column {what}")))
}

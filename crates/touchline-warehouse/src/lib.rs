//! Raw entities as Parquet files, the embedded default's warehouse.
//!
//! Each aggregator flush writes the records it consumed as one Parquet file per entity and
//! arrival date (the date the collector received them, UTC, as Snowplow's loaders partition:
//! a flush then writes a file or two per entity, and a late event never rewrites an old
//! directory), under `{root}/{entity}/date=YYYY-MM-DD/`. DuckDB
//! (`read_parquet('{root}/events/*/*.parquet', hive_partitioning = true)`), ClickHouse
//! (`file()`), Polars and pandas read them as they are. The layout and the names are in
//! [`files`], the columns in [`schema`].
//!
//! # Exactly once
//!
//! A flush writes its files before the checkpoint that covers it, so files can hold records
//! past the partition's checkpoint: written by a flush whose checkpoint never landed. Before a
//! partition reads again from some offsets (its checkpoint's, or a replay's start),
//! [`Warehouse::resume`] removes every row of that partition at or past them: files wholly
//! past go, a file straddling the offset is rewritten with the rows before it (each row keeps
//! its `_offset`). The partition then writes those records again, batched as it likes. One
//! process owns a warehouse, as it owns the embedded log beside it.
//!
//! # Compaction
//!
//! A flush every few seconds makes small files, so they are merged in tiers ([`compact`]):
//! eight files of one level in a directory become one file of the next, covering their
//! offsets. A record is rewritten at most [`compact::MAX_LEVEL`] times. Merging writes the
//! new file before removing the ones it replaces; a crash in between leaves files that another
//! covers, which the next start removes and readers here skip.

pub mod compact;
pub mod files;
pub mod read;
pub mod schema;
pub mod sink;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::{BooleanArray, Int64Array, RecordBatch};
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use touchline_model::Record;

pub use files::FileName;
pub use schema::Entity;
pub use sink::WarehouseSink;

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("warehouse file system: {0}")]
    Io(#[from] std::io::Error),
    #[error("warehouse Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("warehouse Arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

pub type Result<T, E = WarehouseError> = std::result::Result<T, E>;

/// Rows per Parquet row group: what a writer holds in memory, and what a reader skips at once.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The warehouse under one root directory.
#[derive(Clone, Debug)]
pub struct Warehouse {
    root: PathBuf,
}

/// A flush's files, ready to encode: see [`Warehouse::prepare`].
#[derive(Debug)]
pub struct Prepared {
    files: Vec<(FileName, RecordBatch)>,
}

/// What one write produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub files: Vec<FileName>,
    pub rows: usize,
}

impl Warehouse {
    pub fn new(root: impl Into<PathBuf>) -> Warehouse {
        Warehouse { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes the records one flush of `partition` consumed (`offsets[i]` is `records[i]`'s
    /// offset in its topic) as level-0 files, one per entity and arrival date. Blocking: call
    /// it off the async workers, or split it into [`Warehouse::prepare`] and [`Warehouse::store`].
    pub fn write(&self, partition: u32, records: &[Record], offsets: &[u64]) -> Result<Written> {
        self.store(Warehouse::prepare(partition, records, offsets)?)
    }

    /// The files a flush writes, as Arrow batches: the columnar copy of the records, built
    /// where the records are (CPU only), so they need not be copied to the writer's thread.
    pub fn prepare(partition: u32, records: &[Record], offsets: &[u64]) -> Result<Prepared> {
        let mut groups: BTreeMap<(Entity, NaiveDate), Vec<(&Record, u64)>> = BTreeMap::new();
        for (r, o) in records.iter().zip(offsets) {
            groups.entry((Entity::of(r), r.meta.received_at.date_naive())).or_default().push((r, *o));
        }
        let mut files = Vec::with_capacity(groups.len());
        for ((entity, date), rows) in groups {
            let start = rows.iter().map(|(_, o)| *o).min().unwrap_or(0);
            let end = rows.iter().map(|(_, o)| *o).max().map_or(0, |o| o.saturating_add(1));
            let name = FileName { entity, date, partition, start, end, level: 0 };
            files.push((name, entity.batch(partition, &rows)?));
        }
        Ok(Prepared { files })
    }

    /// Encodes and writes prepared files. Blocking.
    pub fn store(&self, prepared: Prepared) -> Result<Written> {
        let mut written = Written::default();
        for (name, batch) in prepared.files {
            written.rows += batch.num_rows();
            self.write_batches(&name, [batch])?;
            written.files.push(name);
        }
        Ok(written)
    }

    /// Writes `batches` as the file `name`, whole or not at all.
    fn write_batches(&self, name: &FileName, batches: impl IntoIterator<Item = RecordBatch>) -> Result<()> {
        files::write_atomically(&self.root, name, |file| {
            let mut writer = ArrowWriter::try_new(file, name.entity.schema(), Some(writer_properties())).map_err(into_io)?;
            for batch in batches {
                writer.write(&batch).map_err(into_io)?;
            }
            writer.into_inner().map_err(into_io)
        })?;
        Ok(())
    }

    /// Removes every row `partition` holds at or past `offsets` (next offset per topic), and
    /// what an interrupted merge or write left behind. Returns how many files changed.
    pub fn resume(&self, partition: u32, offsets: &BTreeMap<String, u64>) -> Result<usize> {
        let listing = files::list(&self.root)?;
        let prefix = format!(".part-p{partition:05}-");
        let mut changed = 0;
        for temp in &listing.temporary {
            if temp.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)) {
                std::fs::remove_file(temp)?;
                changed += 1;
            }
        }
        let mine: Vec<FileName> = listing.files.into_iter().filter(|f| f.partition == partition).collect();
        changed += files::remove_all(&self.root, &superseded(&mine))?;
        let from = |f: &FileName| offsets.get(f.entity.topic()).copied().unwrap_or(0);
        let past: Vec<&FileName> = mine.iter().filter(|f| f.start >= from(f)).collect();
        changed += files::remove_all(&self.root, past.iter().copied())?;
        for f in mine.iter().filter(|f| f.start < from(f) && from(f) < f.end) {
            self.trim(f, from(f))?;
            changed += 1;
        }
        if changed > 0 {
            tracing::info!(partition, changed, "warehouse: removed or trimmed files at or past where the partition resumes");
        }
        Ok(changed)
    }

    /// Rewrites `f` with its rows before offset `end` only. The shorter file is in place before
    /// the longer one goes; a crash in between leaves the longer, which the next start trims
    /// again (into the same name).
    fn trim(&self, f: &FileName, end: u64) -> Result<()> {
        let kept = FileName { end, ..f.clone() };
        let mut batches = Vec::new();
        for batch in self.read_columns(f, None)? {
            let batch = batch?;
            let offsets = batch.column_by_name(schema::OFFSET_COLUMN).and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
            let Some(offsets) = offsets else { return Err(read::missing(schema::OFFSET_COLUMN)) };
            let before: BooleanArray = offsets.iter().map(|o| Some(o.is_some_and(|o| (o as u64) < end))).collect();
            batches.push(arrow_select::filter::filter_record_batch(&batch, &before)?);
        }
        self.write_batches(&kept, batches)?;
        files::remove_all(&self.root, [f])?;
        Ok(())
    }

    /// Every file readers should see: those no other file covers.
    pub fn visible_files(&self) -> Result<Vec<FileName>> {
        let all = files::list(&self.root)?.files;
        let hidden = superseded(&all);
        Ok(all.into_iter().filter(|f| !hidden.contains(f)).collect())
    }
}

/// Files that another file of the same entity, date and partition covers: the inputs of a
/// merge whose output is already in place.
pub fn superseded(files: &[FileName]) -> Vec<FileName> {
    let mut groups: BTreeMap<(Entity, NaiveDate, u32), Vec<&FileName>> = BTreeMap::new();
    for f in files {
        groups.entry((f.entity, f.date, f.partition)).or_default().push(f);
    }
    groups
        .values()
        .flat_map(|group| group.iter().filter(|f| group.iter().any(|g| g.level > f.level && g.covers(f))).map(|f| (*f).clone()))
        .collect()
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(ROW_GROUP_ROWS)).build()
}

fn into_io(e: parquet::errors::ParquetError) -> std::io::Error {
    std::io::Error::other(e)
}

//! Tiered merging of a partition's small files.
//!
//! Within one directory (entity and date) and one partition, [`FANOUT`] files of level `k`
//! become one file of level `k + 1` covering their offsets. Level-0 files are the newest, and
//! all the files of one level lie side by side in offset order (a merge takes every file of
//! its level), so a merged file covers exactly the files it replaces. A replay that starts
//! inside a merged file trims it like any other (see [`Warehouse::resume`]). Files stop merging at
//! [`MAX_LEVEL`]: 8³ = 512 flushes, about 43 minutes of 5-second flushes, per file.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;

use crate::files::{self, FileName};
use crate::schema::Entity;
use crate::{into_io, writer_properties, Result, Warehouse};

/// Files of one level merged at once.
pub const FANOUT: usize = 8;
/// The level past which files are not merged again.
pub const MAX_LEVEL: u8 = 3;

/// What a compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    pub merged: Vec<FileName>,
    pub removed: usize,
}

impl Warehouse {
    /// Merges `partition`'s files in the directories `dirs`, except `fresh` (the files of the
    /// flush being written, which its checkpoint does not cover yet). Blocking.
    pub fn compact(&self, partition: u32, dirs: &[(Entity, NaiveDate)], fresh: &[FileName]) -> Result<Compacted> {
        let mut done = Compacted::default();
        let dirs: BTreeSet<&(Entity, NaiveDate)> = dirs.iter().collect();
        for (entity, date) in dirs {
            let mut dir_files: Vec<FileName> = files::list_dir(&self.root, *entity, *date)?
                .files
                .into_iter()
                .filter(|f| f.partition == partition && !fresh.contains(f))
                .collect();
            while let Some(inputs) = next_merge(&dir_files) {
                let merged = self.merge(&inputs)?;
                done.removed += files::remove_all(&self.root, &inputs)?;
                dir_files.retain(|f| !inputs.contains(f));
                dir_files.push(merged.clone());
                done.merged.push(merged);
            }
        }
        Ok(done)
    }

    /// Writes one file holding every row of `inputs` (side by side, one level, one directory).
    fn merge(&self, inputs: &[FileName]) -> Result<FileName> {
        let first = &inputs[0];
        let name = FileName {
            start: inputs.iter().map(|f| f.start).min().unwrap_or(first.start),
            end: inputs.iter().map(|f| f.end).max().unwrap_or(first.end),
            level: first.level + 1,
            ..first.clone()
        };
        let schema = first.entity.schema();
        files::write_atomically(&self.root, &name, |file| {
            let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(writer_properties())).map_err(into_io)?;
            for input in inputs {
                for batch in self.read_columns(input, None).map_err(std::io::Error::other)? {
                    writer.write(&batch.map_err(std::io::Error::other)?).map_err(into_io)?;
                }
            }
            writer.into_inner().map_err(into_io)
        })?;
        Ok(name)
    }
}

/// The lowest level holding [`FANOUT`] files or more, below [`MAX_LEVEL`]: its files, in
/// offset order.
fn next_merge(dir_files: &[FileName]) -> Option<Vec<FileName>> {
    (0..MAX_LEVEL).find_map(|level| {
        let mut of_level: Vec<FileName> = dir_files.iter().filter(|f| f.level == level).cloned().collect();
        (of_level.len() >= FANOUT).then(|| {
            of_level.sort_by_key(|f| f.start);
            of_level
        })
    })
}

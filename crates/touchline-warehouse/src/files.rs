//! Where files live, what their names say, and how one appears: whole or not at all.
//!
//! ```text
//! {root}/{entity}/date={YYYY-MM-DD}/part-p{partition:05}-{start:020}-{end:020}-l{level}.parquet
//!                                        │                │         │        └ 0: one flush; k: merged k times
//!                                        │                └─────────┴ offsets in the entity's topic, [start, end):
//!                                        │                            the first row's and one past the last row's
//!                                        └ the bus partition
//! ```
//!
//! Every file holds one topic's records (an entity's), so offset spans of one partition's files
//! in a directory never overlap. A file is first written under a hidden name (`.part-….tmp`,
//! which readers' `*.parquet` globs skip), synced, then renamed into place and the directory
//! synced.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::schema::Entity;

/// A file's place in the layout, read from or made into its path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName {
    pub entity: Entity,
    pub date: NaiveDate,
    pub partition: u32,
    /// The first row's offset.
    pub start: u64,
    /// One past the last row's offset.
    pub end: u64,
    /// How many merges made it (0: written by a flush).
    pub level: u8,
}

impl FileName {
    /// The directory of the file, under the warehouse root.
    pub fn dir(&self, root: &Path) -> PathBuf {
        date_dir(root, self.entity, self.date)
    }

    pub fn path(&self, root: &Path) -> PathBuf {
        self.dir(root).join(self.file_name())
    }

    /// Where the file is written before it is renamed into place.
    pub fn temp_path(&self, root: &Path) -> PathBuf {
        self.dir(root).join(format!(".{}.tmp", self.file_name()))
    }

    fn file_name(&self) -> String {
        format!("part-p{:05}-{:020}-{:020}-l{}.parquet", self.partition, self.start, self.end, self.level)
    }

    /// Reads a file name of the layout; anything else (temporary files, a user's notes) is `None`.
    pub fn parse(entity: Entity, date: NaiveDate, name: &str) -> Option<FileName> {
        let rest = name.strip_prefix("part-p")?.strip_suffix(".parquet")?;
        let mut parts = rest.split('-');
        let partition = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        let end = parts.next()?.parse().ok()?;
        let level = parts.next()?.strip_prefix('l')?.parse().ok()?;
        if parts.next().is_some() || end < start {
            return None;
        }
        Some(FileName { entity, date, partition, start, end, level })
    }

    /// True when every offset of `other` lies within this file's span.
    pub fn covers(&self, other: &FileName) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

pub fn date_dir(root: &Path, entity: Entity, date: NaiveDate) -> PathBuf {
    root.join(entity.dir()).join(format!("date={date}"))
}

/// Every file of the layout under `root`, and the temporary files left by writes that never
/// finished.
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<FileName>,
    pub temporary: Vec<PathBuf>,
}

pub fn list(root: &Path) -> io::Result<Listing> {
    let mut out = Listing::default();
    for entity in Entity::ALL {
        for date_entry in read_dir_if_any(&root.join(entity.dir()))? {
            let date_entry = date_entry?;
            let name = date_entry.file_name();
            let Some(date) = name.to_str().and_then(|n| n.strip_prefix("date=")).and_then(|d| d.parse::<NaiveDate>().ok()) else {
                continue;
            };
            list_into(&mut out, root, entity, date)?;
        }
    }
    out.files.sort();
    Ok(out)
}

/// The files of one directory (entity and date) only.
pub fn list_dir(root: &Path, entity: Entity, date: NaiveDate) -> io::Result<Listing> {
    let mut out = Listing::default();
    list_into(&mut out, root, entity, date)?;
    out.files.sort();
    Ok(out)
}

fn list_into(out: &mut Listing, root: &Path, entity: Entity, date: NaiveDate) -> io::Result<()> {
    for file in read_dir_if_any(&date_dir(root, entity, date))? {
        let file = file?;
        let name = file.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(f) = FileName::parse(entity, date, name) {
            out.files.push(f);
        } else if name.starts_with(".part-") && name.ends_with(".tmp") {
            out.temporary.push(file.path());
        }
    }
    Ok(())
}

fn read_dir_if_any(dir: &Path) -> io::Result<Box<dyn Iterator<Item = io::Result<fs::DirEntry>>>> {
    match fs::read_dir(dir) {
        Ok(it) => Ok(Box::new(it)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Box::new(std::iter::empty())),
        Err(e) => Err(e),
    }
}

/// Creates `name`'s directory (and syncs the directories above it, so the new entries survive
/// a crash), then hands a new temporary file to `fill`, syncs it and renames it into place.
pub fn write_atomically(root: &Path, name: &FileName, fill: impl FnOnce(File) -> io::Result<File>) -> io::Result<()> {
    let dir = name.dir(root);
    if !dir.exists() {
        fs::create_dir_all(&dir)?;
        for d in [root, &root.join(name.entity.dir()), dir.as_path()] {
            sync_dir(d)?;
        }
    }
    let temp = name.temp_path(root);
    let file = fill(File::create(&temp)?)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, name.path(root))?;
    sync_dir(&dir)
}

/// Removes files; each directory touched is synced once at the end.
pub fn remove_all<'a>(root: &Path, names: impl IntoIterator<Item = &'a FileName>) -> io::Result<usize> {
    let mut dirs = std::collections::BTreeSet::new();
    let mut n = 0;
    for name in names {
        match fs::remove_file(name.path(root)) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        dirs.insert(name.dir(root));
    }
    for d in dirs {
        sync_dir(&d)?;
    }
    Ok(n)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 7).unwrap_or_default()
    }

    #[test]
    fn names_read_back_and_strangers_are_left_alone() {
        let n = FileName { entity: Entity::Events, date: date(), partition: 3, start: 10, end: 250, level: 1 };
        let path = n.path(Path::new("/w"));
        assert_eq!(path, Path::new("/w/events/date=2026-12-07/part-p00003-00000000000000000010-00000000000000000250-l1.parquet"));
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default();
        assert_eq!(FileName::parse(Entity::Events, date(), file), Some(n));
        for stranger in ["notes.txt", ".part-p00003-1-2-l0.parquet.tmp", "part-p3-20-10-l0.parquet", "part-p3-1-2-l0-x.parquet"] {
            assert_eq!(FileName::parse(Entity::Events, date(), stranger), None, "{stranger}");
        }
    }

    proptest! {
        #[test]
        fn any_name_reads_back(partition in 0u32..100_000, start in any::<u64>(), len in 0u64..1_000_000, level in 0u8..10) {
            let end = start.saturating_add(len);
            let n = FileName { entity: Entity::Spend, date: date(), partition, start, end, level };
            let path = n.path(Path::new("/w"));
            let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            prop_assert_eq!(FileName::parse(Entity::Spend, date(), file), Some(n));
        }
    }

    #[test]
    fn a_written_file_appears_whole_and_listing_finds_it_and_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let n = FileName { entity: Entity::Touchpoints, date: date(), partition: 0, start: 0, end: 5, level: 0 };
        write_atomically(root, &n, |mut f| {
            io::Write::write_all(&mut f, b"PAR1")?;
            Ok(f)
        })
        .expect("written");
        let left = FileName { end: 9, start: 5, ..n.clone() };
        fs::write(left.temp_path(root), b"half").expect("a torn write");
        let listing = list(root).expect("listed");
        assert_eq!(listing.files, vec![n.clone()]);
        assert_eq!(listing.temporary, vec![left.temp_path(root)]);
        assert_eq!(remove_all(root, [&n, &n]).expect("removed"), 1, "a file already gone is not an error");
        assert!(list(root).expect("listed").files.is_empty());
    }
}

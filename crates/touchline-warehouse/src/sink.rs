//! The warehouse as an aggregator sink: raw records only (results go to the SQL store).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use touchline_store::sink::{RefusedRow, Sink, SinkBatch, SinkError};

use crate::{Entity, Warehouse};

pub struct WarehouseSink {
    pub warehouse: Arc<Warehouse>,
    /// One flush encodes at a time: partitions flushing together would otherwise take every
    /// core from the collector beside them, for work that is a few percent of a flush.
    encoding: tokio::sync::Semaphore,
}

impl WarehouseSink {
    pub fn new(warehouse: Warehouse) -> WarehouseSink {
        WarehouseSink { warehouse: Arc::new(warehouse), encoding: tokio::sync::Semaphore::new(1) }
    }
}

#[async_trait]
impl Sink for WarehouseSink {
    fn name(&self) -> &str {
        "warehouse"
    }

    /// Writes the flush's files, then merges the partition's older files in the same
    /// directories (checkpoints cover them all: a flush starts after the last one landed).
    /// Every record fits a column, so nothing is refused; a failure (disk full, permissions)
    /// is retried.
    async fn write(&self, batch: &SinkBatch<'_>) -> Result<Vec<RefusedRow>, SinkError> {
        if batch.raw.is_empty() {
            return Ok(Vec::new());
        }
        let warehouse = self.warehouse.clone();
        let partition = batch.partition;
        let _turn = self.encoding.acquire().await.map_err(|e| SinkError(format!("warehouse writer closed: {e}")))?;
        let prepared = Warehouse::prepare(partition, batch.raw, batch.raw_offsets).map_err(|e| SinkError(e.to_string()))?;
        let job = move || {
            let written = warehouse.store(prepared)?;
            let dirs: Vec<(Entity, chrono::NaiveDate)> = written.files.iter().map(|f| (f.entity, f.date)).collect();
            warehouse.compact(partition, &dirs, &written.files)
        };
        match tokio::task::spawn_blocking(job).await {
            Ok(Ok(_)) => Ok(Vec::new()),
            Ok(Err(e)) => Err(SinkError(e.to_string())),
            Err(e) => Err(SinkError(format!("warehouse writer stopped: {e}"))),
        }
    }

    async fn resume(&self, partition: u32, offsets: &BTreeMap<String, u64>) -> Result<(), SinkError> {
        let (warehouse, offsets) = (self.warehouse.clone(), offsets.clone());
        match tokio::task::spawn_blocking(move || warehouse.resume(partition, &offsets)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SinkError(e.to_string())),
            Err(e) => Err(SinkError(format!("warehouse cleanup stopped: {e}"))),
        }
    }
}

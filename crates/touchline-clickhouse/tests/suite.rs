//! The result-store conformance suite of `touchline-store` on the real ClickHouse server
//! (a database per test): what `ClickHouseSink` writes, `ClickHouseStore` reads back exactly
//! as the SQL stores do.

mod common;

use std::sync::Arc;

use common::TestDb;
use touchline_clickhouse::{ClickHouseSink, ClickHouseStore};
use touchline_store::testsuite::ResultStores;

async fn results() -> (TestDb, ResultStores) {
    let db = TestDb::migrated("suite").await;
    let stores = ResultStores {
        sink: Arc::new(ClickHouseSink::new(db.ch.clone())),
        reader: Arc::new(ClickHouseStore::new(db.ch.clone())),
        catalog: None,
    };
    (db, stores)
}

touchline_store::result_store_suite!(results);

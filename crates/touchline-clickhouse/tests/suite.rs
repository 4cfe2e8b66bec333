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

/// BI's path to reach over a range, on the real server: the `uniqCombined` states the
/// materialized view builds from the sink's identity hashes merge to the people of the union,
/// the highest version per partition winning (FINAL). Same writes and hand-computed figures as
/// the suite's `reach_unions_partitions_and_days`: Nov 20 ann, bob | bob, cat; Nov 21 ann, dan
/// | eve, fay (rewritten), a stale owner's zed ignored → 3, 4 and 6 people over both days.
#[tokio::test]
async fn uniq_combined_states_give_reach_over_a_range() {
    use touchline_store::testsuite::people_partial;
    use touchline_store::{PartialRow, ResultSink};
    let db = TestDb::migrated("reachbi").await;
    let sink = ClickHouseSink::new(db.ch.clone());
    let a = common::account(1);
    sink.publish_partials(&[people_partial(a, 0, 20, &["ann", "bob"]), people_partial(a, 0, 21, &["ann", "dan"])]).await.expect("p0");
    sink.publish_partials(&[people_partial(a, 1, 20, &["bob", "cat"]), people_partial(a, 1, 21, &["eve"])]).await.expect("p1");
    sink.publish_partials(&[people_partial(a, 1, 21, &["eve", "fay"])]).await.expect("p1 again");
    sink.publish_partials(&[PartialRow { epoch: 0, ..people_partial(a, 1, 21, &["zed", "eve", "fay"]) }]).await.expect("stale");
    let per_day = db
        .tsv(&format!(
            "SELECT metric_date, uniqCombinedMerge(reach_state) FROM {}.campaign_reach_partials FINAL GROUP BY metric_date ORDER BY metric_date",
            db.name
        ))
        .await;
    assert_eq!(per_day, "2026-11-20\t3\n2026-11-21\t4\n");
    let range = db.tsv(&format!("SELECT uniqCombinedMerge(reach_state) FROM {}.campaign_reach_partials FINAL", db.name)).await;
    assert_eq!(range, "6\n");
    // The sketch's identity hash is the server's sipHash64.
    let server = db.tsv("SELECT sipHash64('ann'), sipHash64('cust-1'), sipHash64('')").await;
    let ours = ["ann", "cust-1", ""].map(touchline_model::reach::identity_hash);
    assert_eq!(server, format!("{}\t{}\t{}\n", ours[0], ours[1], ours[2]));
}

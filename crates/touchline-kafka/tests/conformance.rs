//! The Bus conformance suite of touchline-bus, run on Kafka.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use touchline_bus::{conformance, Bus};
use touchline_kafka::KafkaBus;

fn opener() -> impl Fn() -> Pin<Box<dyn Future<Output = Arc<dyn Bus>>>> {
    || Box::pin(async { KafkaBus::connect(common::config(4)).unwrap() as Arc<dyn Bus> })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_kafka() {
    common::init_tracing();
    let prefix = common::prefix("conf");
    let bus: Arc<dyn Bus> = KafkaBus::connect(common::config(4)).unwrap();
    bus.ready().await.unwrap();
    conformance::ordering_and_offsets(bus.as_ref(), &prefix).await;
    conformance::read_waits_for_new_records(bus.clone(), &prefix).await;
    conformance::concurrent_appends(bus.clone(), &prefix).await;
    drop(bus);
    conformance::commit_and_resume(opener(), &prefix).await;
    conformance::redelivery_after_uncommitted_crash(opener(), &prefix).await;
}

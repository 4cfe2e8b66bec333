//! The tables of the warehouse and how a record becomes one of their rows.
//!
//! Every table starts with the envelope's columns (`account_id`, `record_id`, `timestamp`,
//! `received_at`, `anonymous_id`, `customer_id`), carries the entity's own columns under the
//! names the SQLite and ClickHouse raw tables use, then `payload`, the whole record as the bus
//! JSON, so nothing the columns leave out is lost, and ends with where the record was read:
//! `_partition` and `_offset` in its topic (the names of ClickHouse's Kafka virtual columns).

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Decimal128Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use touchline_model::{Body, Record};

/// The bus partition a row was read from.
pub const PARTITION_COLUMN: &str = "_partition";
/// The row's offset in its topic's partition.
pub const OFFSET_COLUMN: &str = "_offset";

/// Money as ClickHouse keeps it: `Decimal(38, 6)`, exact.
pub const MONEY_PRECISION: u8 = 38;
pub const MONEY_SCALE: i8 = 6;

/// One warehouse table, a directory under the warehouse root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    Events,
    Sessions,
    Touchpoints,
    LinkClicks,
    Conversions,
    Spend,
    Identities,
}

impl Entity {
    pub const ALL: [Entity; 7] =
        [Entity::Events, Entity::Sessions, Entity::Touchpoints, Entity::LinkClicks, Entity::Conversions, Entity::Spend, Entity::Identities];

    /// The directory name, also the name of the SQLite and ClickHouse raw table.
    pub fn dir(self) -> &'static str {
        match self {
            Entity::Events => "events",
            Entity::Sessions => "sessions",
            Entity::Touchpoints => "touchpoints",
            Entity::LinkClicks => "link_clicks",
            Entity::Conversions => "conversions",
            Entity::Spend => "spend",
            Entity::Identities => "identities",
        }
    }

    pub fn from_dir(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.dir() == name)
    }

    /// The bus topic this table's records are read from.
    pub fn topic(self) -> &'static str {
        use touchline_model::topics;
        match self {
            Entity::Events => topics::EVENTS,
            Entity::Sessions => topics::SESSIONS,
            Entity::Touchpoints => topics::TOUCHPOINTS,
            Entity::LinkClicks => topics::LINK_CLICKS,
            Entity::Conversions => topics::CONVERSIONS,
            Entity::Spend => topics::SPEND,
            Entity::Identities => topics::IDENTITIES,
        }
    }

    /// The table a record belongs to (identify and alias share `identities`).
    pub fn of(record: &Record) -> Entity {
        match &record.body {
            Body::Event(_) => Entity::Events,
            Body::Session(_) => Entity::Sessions,
            Body::Touchpoint(_) => Entity::Touchpoints,
            Body::LinkClick(_) => Entity::LinkClicks,
            Body::Conversion(_) => Entity::Conversions,
            Body::Spend(_) => Entity::Spend,
            Body::Identify(_) | Body::Alias(_) => Entity::Identities,
        }
    }

    fn own_columns(self) -> &'static [Column] {
        match self {
            Entity::Events => EVENT_COLUMNS,
            Entity::Sessions => SESSION_COLUMNS,
            Entity::Touchpoints => TOUCHPOINT_COLUMNS,
            Entity::LinkClicks => LINK_CLICK_COLUMNS,
            Entity::Conversions => CONVERSION_COLUMNS,
            Entity::Spend => SPEND_COLUMNS,
            Entity::Identities => IDENTITY_COLUMNS,
        }
    }

    fn columns(self) -> impl Iterator<Item = &'static Column> {
        ENVELOPE_COLUMNS.iter().chain(self.own_columns()).chain(PAYLOAD_COLUMN)
    }

    /// The Arrow schema of the table's files.
    pub fn schema(self) -> SchemaRef {
        let mut fields: Vec<Field> = self.columns().map(Column::field).collect();
        fields.push(Field::new(PARTITION_COLUMN, DataType::Int64, false));
        fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
        Arc::new(Schema::new(fields))
    }

    /// The rows of `records` (all of this entity, each with its offset in the topic's
    /// `partition`) as one batch.
    pub fn batch(self, partition: u32, records: &[(&Record, u64)]) -> Result<RecordBatch, ArrowError> {
        let mut arrays: Vec<ArrayRef> = self
            .columns()
            .map(|c| {
                let mut b = ColumnBuilder::new(c.kind, records.len());
                for (r, _) in records {
                    b.append((c.get)(r));
                }
                b.finish()
            })
            .collect();
        arrays.push(Arc::new(Int64Array::from(vec![i64::from(partition); records.len()])));
        arrays.push(Arc::new(records.iter().map(|(_, o)| i64::try_from(*o).unwrap_or(i64::MAX)).collect::<Int64Array>()));
        RecordBatch::try_new(self.schema(), arrays)
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Text,
    Time,
    Money,
    Bool,
    Int,
}

struct Column {
    name: &'static str,
    kind: Kind,
    nullable: bool,
    get: fn(&Record) -> Cell<'_>,
}

impl Column {
    const fn required(name: &'static str, kind: Kind, get: fn(&Record) -> Cell<'_>) -> Column {
        Column { name, kind, nullable: false, get }
    }

    const fn optional(name: &'static str, kind: Kind, get: fn(&Record) -> Cell<'_>) -> Column {
        Column { name, kind, nullable: true, get }
    }

    fn field(&self) -> Field {
        let data_type = match self.kind {
            Kind::Text => DataType::Utf8,
            Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Money => DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE),
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
        };
        Field::new(self.name, data_type, self.nullable)
    }
}

/// One value of a row, borrowed from the record where it can be.
enum Cell<'a> {
    Text(Option<Cow<'a, str>>),
    Time(Option<DateTime<Utc>>),
    Money(Option<Decimal>),
    Bool(Option<bool>),
    Int(Option<i64>),
}

fn text<'a>(s: Option<&'a str>) -> Cell<'a> {
    Cell::Text(s.map(Cow::Borrowed))
}

fn owned(s: Option<String>) -> Cell<'static> {
    Cell::Text(s.map(Cow::Owned))
}

fn id(i: &Option<touchline_model::Id>) -> Cell<'_> {
    text(i.as_deref())
}

fn int(v: Option<u64>) -> Cell<'static> {
    Cell::Int(v.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
}

/// The body's fields when the record is of entity `E`; the column lists only read records of
/// their own entity, so the fallback (an empty cell) is never stored.
macro_rules! body {
    ($r:expr, $variant:ident, |$x:ident| $cell:expr) => {
        match &$r.body {
            Body::$variant($x) => $cell,
            _ => Cell::Text(None),
        }
    };
}

const ENVELOPE_COLUMNS: &[Column] = &[
    Column::required("account_id", Kind::Text, |r| owned(Some(r.meta.account_id.to_string()))),
    Column::required("record_id", Kind::Text, |r| text(Some(&r.meta.record_id))),
    Column::required("timestamp", Kind::Time, |r| Cell::Time(Some(r.meta.timestamp))),
    Column::required("received_at", Kind::Time, |r| Cell::Time(Some(r.meta.received_at))),
    Column::optional("anonymous_id", Kind::Text, |r| id(&r.meta.anonymous_id)),
    Column::optional("customer_id", Kind::Text, |r| id(&r.meta.customer_id)),
];

const PAYLOAD_COLUMN: &[Column] =
    &[Column::required("payload", Kind::Text, |r| owned(Some(String::from_utf8_lossy(&r.to_json()).into_owned())))];

const EVENT_COLUMNS: &[Column] = &[
    Column::required("event_name", Kind::Text, |r| body!(r, Event, |e| text(Some(&e.event_name)))),
    Column::optional("session_id", Kind::Text, |r| body!(r, Event, |e| id(&e.session_id))),
    Column::optional("campaign_id", Kind::Text, |r| body!(r, Event, |e| id(&e.campaign_id))),
    Column::optional("advertisement_id", Kind::Text, |r| body!(r, Event, |e| id(&e.advertisement_id))),
    Column::optional("page_url", Kind::Text, |r| body!(r, Event, |e| text(e.context.page_url.as_deref()))),
    Column::optional("referrer", Kind::Text, |r| body!(r, Event, |e| text(e.context.referrer.as_deref()))),
    Column::optional("utm_source", Kind::Text, |r| body!(r, Event, |e| text(e.context.utm_source.as_deref()))),
    Column::optional("utm_medium", Kind::Text, |r| body!(r, Event, |e| text(e.context.utm_medium.as_deref()))),
    Column::optional("utm_campaign", Kind::Text, |r| body!(r, Event, |e| text(e.context.utm_campaign.as_deref()))),
];

const SESSION_COLUMNS: &[Column] = &[
    Column::required("session_id", Kind::Text, |r| body!(r, Session, |s| text(Some(&s.session_id)))),
    Column::required("started_at", Kind::Time, |r| body!(r, Session, |s| Cell::Time(Some(s.started_at)))),
    Column::optional("ended_at", Kind::Time, |r| body!(r, Session, |s| Cell::Time(s.ended_at))),
    Column::optional("device_id", Kind::Text, |r| body!(r, Session, |s| id(&s.device_id))),
    Column::optional("utm_source", Kind::Text, |r| body!(r, Session, |s| text(s.utm_source.as_deref()))),
    Column::optional("utm_medium", Kind::Text, |r| body!(r, Session, |s| text(s.utm_medium.as_deref()))),
    Column::optional("utm_campaign", Kind::Text, |r| body!(r, Session, |s| text(s.utm_campaign.as_deref()))),
    Column::optional("referrer", Kind::Text, |r| body!(r, Session, |s| text(s.referrer.as_deref()))),
    Column::optional("landing_page", Kind::Text, |r| body!(r, Session, |s| text(s.landing_page.as_deref()))),
];

const TOUCHPOINT_COLUMNS: &[Column] = &[
    Column::required("type", Kind::Text, |r| body!(r, Touchpoint, |t| text(Some(t.kind.as_str())))),
    Column::optional("channel", Kind::Text, |r| body!(r, Touchpoint, |t| text(t.channel.as_deref()))),
    Column::optional("campaign_id", Kind::Text, |r| body!(r, Touchpoint, |t| id(&t.campaign_id))),
    Column::optional("advertisement_id", Kind::Text, |r| body!(r, Touchpoint, |t| id(&t.advertisement_id))),
    Column::optional("utm_source", Kind::Text, |r| body!(r, Touchpoint, |t| text(t.utm_source.as_deref()))),
    Column::optional("utm_medium", Kind::Text, |r| body!(r, Touchpoint, |t| text(t.utm_medium.as_deref()))),
    Column::optional("utm_campaign", Kind::Text, |r| body!(r, Touchpoint, |t| text(t.utm_campaign.as_deref()))),
];

const LINK_CLICK_COLUMNS: &[Column] = &[
    Column::optional("link_id", Kind::Text, |r| body!(r, LinkClick, |c| id(&c.link_id))),
    Column::optional("short_code", Kind::Text, |r| body!(r, LinkClick, |c| id(&c.short_code))),
    Column::optional("device_id", Kind::Text, |r| body!(r, LinkClick, |c| id(&c.device_id))),
    Column::optional("campaign_id", Kind::Text, |r| body!(r, LinkClick, |c| id(&c.campaign_id))),
    Column::optional("advertisement_id", Kind::Text, |r| body!(r, LinkClick, |c| id(&c.advertisement_id))),
    Column::optional("referer", Kind::Text, |r| body!(r, LinkClick, |c| text(c.referer.as_deref()))),
    Column::optional("user_agent", Kind::Text, |r| body!(r, LinkClick, |c| text(c.user_agent.as_deref()))),
    Column::optional("ip", Kind::Text, |r| body!(r, LinkClick, |c| text(c.ip.as_deref()))),
    Column::required("bot", Kind::Bool, |r| body!(r, LinkClick, |c| Cell::Bool(Some(c.bot)))),
    Column::optional("is_unique", Kind::Bool, |r| body!(r, LinkClick, |c| Cell::Bool(c.unique))),
];

const CONVERSION_COLUMNS: &[Column] = &[
    Column::required("type", Kind::Text, |r| body!(r, Conversion, |c| text(Some(c.kind.as_str())))),
    Column::optional("value", Kind::Money, |r| body!(r, Conversion, |c| Cell::Money(c.value))),
    Column::optional("currency", Kind::Text, |r| body!(r, Conversion, |c| text(c.currency.as_ref().map(|c| c.as_str())))),
    Column::optional("order_id", Kind::Text, |r| body!(r, Conversion, |c| id(&c.order_id))),
    Column::optional("campaign_id", Kind::Text, |r| body!(r, Conversion, |c| id(&c.campaign_id))),
    Column::optional("advertisement_id", Kind::Text, |r| body!(r, Conversion, |c| id(&c.advertisement_id))),
];

const SPEND_COLUMNS: &[Column] = &[
    Column::required("date", Kind::Text, |r| body!(r, Spend, |s| owned(Some(s.date.to_string())))),
    Column::required("campaign_id", Kind::Text, |r| body!(r, Spend, |s| text(Some(&s.campaign_id)))),
    Column::optional("advertisement_id", Kind::Text, |r| body!(r, Spend, |s| id(&s.advertisement_id))),
    Column::required("cost", Kind::Money, |r| body!(r, Spend, |s| Cell::Money(Some(s.cost)))),
    Column::required("currency", Kind::Text, |r| body!(r, Spend, |s| text(Some(s.currency.as_str())))),
    Column::optional("impressions", Kind::Int, |r| body!(r, Spend, |s| int(s.impressions))),
    Column::optional("clicks", Kind::Int, |r| body!(r, Spend, |s| int(s.clicks))),
    Column::required("source", Kind::Text, |r| body!(r, Spend, |s| text(Some(&s.source)))),
];

const IDENTITY_COLUMNS: &[Column] = &[
    Column::required("type", Kind::Text, |r| text(Some(r.kind().as_str()))),
    Column::optional("previous_id", Kind::Text, |r| match &r.body {
        Body::Alias(a) => text(Some(&a.previous_id)),
        _ => Cell::Text(None),
    }),
];

/// Builds one column, whatever its kind.
enum ColumnBuilder {
    Text(StringBuilder),
    Time(TimestampMicrosecondBuilder),
    Money(Decimal128Builder),
    Bool(BooleanBuilder),
    Int(Int64Builder),
}

impl ColumnBuilder {
    fn new(kind: Kind, rows: usize) -> ColumnBuilder {
        match kind {
            Kind::Text => ColumnBuilder::Text(StringBuilder::with_capacity(rows, rows * 16)),
            Kind::Time => ColumnBuilder::Time(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC")),
            Kind::Money => ColumnBuilder::Money(
                Decimal128Builder::with_capacity(rows)
                    .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                    .unwrap_or_else(|_| Decimal128Builder::with_capacity(rows)),
            ),
            Kind::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::Int => ColumnBuilder::Int(Int64Builder::with_capacity(rows)),
        }
    }

    fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (ColumnBuilder::Text(b), Cell::Text(v)) => b.append_option(v),
            (ColumnBuilder::Time(b), Cell::Time(v)) => b.append_option(v.map(|t| t.timestamp_micros())),
            (ColumnBuilder::Money(b), Cell::Money(v)) => b.append_option(v.and_then(money_units)),
            (ColumnBuilder::Bool(b), Cell::Bool(v)) => b.append_option(v),
            (ColumnBuilder::Int(b), Cell::Int(v)) => b.append_option(v),
            (ColumnBuilder::Text(b), _) => b.append_null(),
            (ColumnBuilder::Time(b), _) => b.append_null(),
            (ColumnBuilder::Money(b), _) => b.append_null(),
            (ColumnBuilder::Bool(b), _) => b.append_null(),
            (ColumnBuilder::Int(b), _) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Text(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Time(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Money(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int(mut b) => Arc::new(b.finish()),
        }
    }
}

/// `d` in millionths. The collector rounds money to six places, so nothing is lost here.
fn money_units(d: Decimal) -> Option<i128> {
    let mut d = d;
    d.rescale(MONEY_SCALE.unsigned_abs() as u32);
    (d.scale() == MONEY_SCALE.unsigned_abs() as u32).then(|| d.mantissa())
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, BooleanArray, Decimal128Array, StringArray, TimestampMicrosecondArray};

    use super::*;

    fn record(json: &str) -> Record {
        Record::from_json(json.as_bytes()).expect("a valid record")
    }

    #[test]
    fn a_conversion_keeps_its_money_exact_and_its_whole_record() {
        let r = record(
            r#"{"v":1,"type":"conversion","record_id":"c1","account_id":"00000000-0000-0000-0000-000000000001",
                "timestamp":"2026-03-01T10:00:00.123456Z","received_at":"2026-03-01T10:00:01Z","customer_id":"u1",
                "kind":"purchase","value":"19.990001","currency":"EUR","order_id":"o-7"}"#,
        );
        let batch = Entity::Conversions.batch(2, &[(&r, 41)]).expect("a batch");
        let col = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}")).clone();
        let value = col("value");
        let value = value.as_any().downcast_ref::<Decimal128Array>().expect("decimal");
        // 19.990001 in millionths.
        assert_eq!(value.value(0), 19_990_001);
        let ts = col("timestamp");
        let ts = ts.as_any().downcast_ref::<TimestampMicrosecondArray>().expect("timestamp");
        // 2026-03-01T10:00:00Z is 1772359200 s after the epoch (date -u -d 2026-03-01T10:00:00Z +%s).
        assert_eq!(ts.value(0), 1_772_359_200_123_456);
        let payload = col("payload");
        let payload = payload.as_any().downcast_ref::<StringArray>().expect("text");
        assert_eq!(record(payload.value(0)), r, "the payload is the record itself");
        let currency = col("currency");
        assert_eq!(currency.as_any().downcast_ref::<StringArray>().expect("text").value(0), "EUR");
        let anonymous = col("anonymous_id");
        assert!(anonymous.is_null(0));
        let at = |name: &str| col(name).as_any().downcast_ref::<Int64Array>().expect("int").value(0);
        assert_eq!((at("_partition"), at("_offset")), (2, 41));
    }

    #[test]
    fn link_clicks_carry_their_bot_flag_and_every_table_its_schema() {
        let r = record(
            r#"{"v":1,"type":"link_click","record_id":"k1","account_id":"00000000-0000-0000-0000-000000000001",
                "timestamp":"2026-03-01T10:00:00Z","received_at":"2026-03-01T10:00:00Z","short_code":"spring","bot":true}"#,
        );
        let batch = Entity::LinkClicks.batch(0, &[(&r, 0)]).expect("a batch");
        let bot = batch.column_by_name("bot").expect("bot");
        assert!(bot.as_any().downcast_ref::<BooleanArray>().expect("bool").value(0));
        for e in Entity::ALL {
            let names: Vec<String> = e.schema().fields().iter().map(|f| f.name().clone()).collect();
            assert_eq!(&names[..4], ["account_id", "record_id", "timestamp", "received_at"], "{e:?}");
            assert_eq!(&names[names.len() - 3..], ["payload", "_partition", "_offset"], "{e:?}");
            assert_eq!(Entity::from_dir(e.dir()), Some(e));
            assert!(e.batch(0, &[]).is_ok_and(|b| b.num_rows() == 0), "{e:?}");
        }
    }
}

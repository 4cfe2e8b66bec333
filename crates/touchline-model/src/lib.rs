//! touchline's data model: the entities of the design brief, their decoding from native JSON,
//! Segment's spec, pixel query strings and beacon bodies, validation, and the partition key.
//!
//! Pure: no I/O, no async. The collector, the engine and the sinks all speak these types.

pub mod check;
pub mod decode;
pub mod entity;
mod envelope;
pub mod error;
mod fields;
pub mod ids;
pub mod limits;
pub mod partition;
pub mod reach;
pub mod results;
pub mod rfc3339;

pub use check::{check_stored, round_money, time_in_window};
pub use decode::{
    decode_item, decode_items, decode_pixel, parse_body, DecodeOptions, Decoded, Expect, ParsedBody, RequestCtx, SegmentType,
};
pub use entity::*;
pub use error::{BodyError, RecordError};
pub use ids::{Currency, Id, Kind, MAX_ID_LEN};
pub use limits::truncate_utf8;
pub use partition::{murmur2, partition_for};
pub use results::{
    publish_cells, summarize_range, AttributionRow, DailyMetricRow, DailyTotals, DerivedRatios, PartialRow, RangeMetricRow, ReachUnion,
};

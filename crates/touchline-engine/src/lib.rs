//! touchline's engine: turns the records of one bus partition into results.
//!
//! Pure: no I/O, no async, no clock. Time comes from the records and from the watermark the
//! caller advances ([`Engine::advance_watermark`]).
//!
//! # Driving it
//!
//! ```text
//! let mut engine = Engine::new(config);            // or Engine::restore(config, &checkpoint)?
//! for record in batch { engine.ingest(&record); }   // identities topic: engine.ingest_identities_message(bytes)
//! engine.advance_watermark(max_received_at);       // optional, bounds state
//! let out = engine.flush();                        // attribution sets, session changes, daily partials, transfers
//! sinks.write(&out); bus.append(out.transfers);    // then:
//! let checkpoint = engine.snapshot();              // store with the consumed offsets
//! ```
//!
//! # Touches (what attribution credits)
//!
//! - `touchpoint` records: every kind; `impression`/`view` are view-class (view lookback), the
//!   rest click-class (click lookback).
//! - `link_click` records that are not bots and carry a `campaign_id`: click-class, channel
//!   `short_link`.
//! - `event` records whose context carries a UTM source/medium/campaign (also parsed from
//!   `page_url`) or that carry a `campaign_id`, and `session` records with UTMs or a
//!   `campaign_id`: click-class, channel = utm_source. Events and sessions of one client session
//!   with the same UTMs/campaign collapse into one touch (dedup key
//!   `s:{session_id}|{source}|{medium}|{campaign}|{campaign_id}`; the earliest record represents
//!   it), so a visit counts once however many of its pages carry the UTMs.
//!
//! Channel of a touch: the touchpoint's `channel`, else `utm_source`, else `short_link` for link
//! clicks, else `(none)`. A touch is *direct* when it has no campaign id and no utm_source.
//!
//! # Order independence and versions
//!
//! Every result is a function of the deduplicated record set: touches and conversions are
//! deduplicated by key with a deterministic winner (smallest `(timestamp, record id)`), spend by
//! `(date, campaign, ad, source)` with the greatest `(timestamp, received_at, record id)`, derived
//! sessions are recomputed from the sorted events. Attribution of a conversion is recomputed when
//! a touch in its reach arrives, when its identity is stitched, or when a duplicate replaces it;
//! if any model's rows change, the conversion's `version` increases and the changed
//! [`AttributionSet`]s are emitted. Sinks keep per `(account, conversion_key, model)` the set with
//! the highest version.
//!
//! See [`metrics`] for the per-partition partial rows, [`journeys`] for the converting and
//! non-converting journeys the data-driven models read, and [`Engine::snapshot`] for checkpoints.

pub mod attribution;
mod channel_credit;
pub mod config;
pub mod currency;
pub mod datadriven;
mod emitted;
mod engine;
mod held;
mod idents;
pub mod journeys;
pub mod linkclicks;
pub mod metrics;
pub mod session;
pub mod text;
mod util;

pub use attribution::{
    model_weights, AttributedConversion, AttributionRow, AttributionSet, Credit, CreditedTouch, Model, Touch, TouchSource, DIRECT,
};
pub use config::{AccountSettings, Catalog, ChannelWeights, EngineConfig};
pub use currency::{RateRow, Rates, RefusedRecord};
pub use datadriven::{
    aggregate_paths, markov, markov_of_order, markov_transitions, shapley, ChannelCredit, MarkovResult, PathCount, ShapleyMethod,
    ShapleyOptions, ShapleyResult, MAX_MARKOV_ORDER,
};
pub use engine::{Counters, Engine, EngineError, Flush, IdentityTransfer, Ingest, StateStats, SNAPSHOT_VERSION};
pub use journeys::JourneyPartial;
pub use linkclicks::LinkClickPartial;
pub use metrics::{combine_partials, CellKey, DailyPartial, DailyReportRow};
pub use session::{SessionChange, SessionRow};
pub use text::Text;

//! The touchline binary's pieces: configuration, accounts, and the roles it runs.

pub mod accounts;
pub mod app;
pub mod config;
pub mod datadriven;
pub mod dataset;
pub mod demo;
pub mod generate;
pub mod loadgen;
pub mod paths;
pub mod rates;
pub mod reports;
pub mod tail;
pub mod telemetry;
pub mod weights;

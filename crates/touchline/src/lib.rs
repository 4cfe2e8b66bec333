//! The touchline binary's pieces: configuration, accounts, and the roles it runs.

pub mod accounts;
pub mod app;
pub mod config;
pub mod demo;
pub mod links;
pub mod reports;
pub mod results;
pub mod tail;

//! Tandem: one sidecar per pod. A reverse proxy that runs every request
//! through a chain of WebAssembly component plugins (`wit/tandem.wit`).
//!
//! The binary is `tandem`; this library is what it is made of, so that tests
//! and benchmarks use the same code.

pub mod admin;
pub mod app;
pub mod chain;
pub mod check;
pub mod cli;
pub mod config;
pub mod config_location;
pub mod http_client;
pub mod listener;
pub mod metrics;
pub mod plugin_settings;
#[cfg(test)]
mod proptests;
pub mod proxy;
pub mod records;
pub mod reload;
pub mod replay;
pub mod run;
pub mod runtime;
pub mod shared_state;
pub mod starter;
pub mod telemetry;

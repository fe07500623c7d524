//! Write Tandem plugins in Rust.
//!
//! A Tandem plugin is a WebAssembly component that targets the `plugin`
//! world of `wit/tandem.wit`. This crate hides the generated bindings behind
//! a small API: implement [`Plugin`], name the hooks you implement with
//! [`export_plugin!`], and build for `wasm32-wasip2`.
//!
//! # Phases
//!
//! The host calls a plugin in these phases, named the same everywhere (WIT,
//! host, SDK, metrics, docs):
//!
//! | phase         | when                                                    | a plugin may                           |
//! |---------------|---------------------------------------------------------|----------------------------------------|
//! | `init`        | once in every new instance, with the plugin's `[config]` | reject the config                      |
//! | `on-request`  | in chain order, before the upstream is called           | edit the request, or answer the client |
//! | `on-response` | in reverse chain order, with the response head          | edit the head, or replace the response |
//! | `on-log`      | in reverse chain order, after the response was sent     | observe, log and count                 |
//! | `on-app-log`  | in chain order, per application log record (`POST /logs`) | change the record, or drop it        |
//!
//! [`Plugin::init`] builds the plugin from its [`Config`]; the other phases
//! are the methods [`Plugin::on_request`], [`Plugin::on_response`],
//! [`Plugin::on_log`] and [`Plugin::on_app_log`]. The host calls only the hooks listed in
//! [`export_plugin!`], so an unlisted hook costs nothing per request.
//!
//! A hook that returns `Err` goes through the plugin's failure policy in the
//! host, as does a panic (which traps the instance). Host calls never panic
//! in this crate: they return `Result` or `Option`.
//!
//! # Example
//!
//! ```no_run
//! use tandem_sdk::{Action, Config, Plugin, Reply, Request};
//!
//! /// Answers 403 to every request under a configured prefix.
//! struct Deny {
//!     prefix: String,
//! }
//!
//! impl Plugin for Deny {
//!     fn init(config: Config) -> Result<Self, String> {
//!         let prefix = config
//!             .get_str("prefix")
//!             .ok_or("config key `prefix` is required and must be a string")?;
//!         Ok(Deny { prefix: prefix.to_owned() })
//!     }
//!
//!     fn on_request(&self, req: &Request) -> Result<Action, String> {
//!         if req.path().starts_with(&self.prefix) {
//!             let reply = Reply::new(403)
//!                 .header("content-type", "text/plain")
//!                 .body("forbidden\n");
//!             return Ok(reply.into());
//!         }
//!         Ok(Action::Continue)
//!     }
//! }
//!
//! tandem_sdk::export_plugin!(Deny, hooks: [on_request]);
//! ```
//!
//! The crate must be a `cdylib`; `cargo build --release --target
//! wasm32-wasip2` then writes the component to
//! `target/wasm32-wasip2/release/<crate_name>.wasm`.

mod app_log;
#[doc(hidden)]
pub mod bindings;
mod config;
mod export;
mod http;
pub mod log;
pub mod metrics;
pub mod properties;
pub mod records;
pub mod routes;
pub mod shared;

pub use app_log::AppLog;
pub use config::Config;
pub use http::{Action, EditError, Exchange, Reply, Request, Response};

/// A Tandem plugin: one value per instance, built by [`Plugin::init`] and
/// handed to every hook.
///
/// A component instance is single-threaded and handles one hook call at a
/// time, so hooks take `&self`; keep mutable state in a `Cell` or `RefCell`.
/// State is per instance: the host may run several instances of a plugin and
/// replace them at any time. Use [`shared`] for state that all instances see.
///
/// Every hook has a default that does nothing (and continues), so implement
/// only the ones you list in [`export_plugin!`].
pub trait Plugin: Sized + 'static {
    /// Phase `init`: builds the plugin from its config, once per instance.
    ///
    /// Returning `Err` stops the plugin from loading; say which config key is
    /// wrong and why.
    fn init(config: Config) -> Result<Self, String>;

    /// Phase `on-request`: runs in chain order before the upstream is called.
    ///
    /// Return [`Action::Continue`] to go on, or a reply to answer the client
    /// without calling the upstream. `Err` goes through the failure policy.
    fn on_request(&self, req: &Request) -> Result<Action, String> {
        let _ = req;
        Ok(Action::Continue)
    }

    /// Phase `on-response`: runs in reverse chain order once the response
    /// head (from the upstream or a later plugin's reply) is known.
    ///
    /// Edit `resp` and return [`Action::Continue`], or return a reply that
    /// replaces the response. `Err` goes through the failure policy.
    fn on_response(&self, req: &Request, resp: &Response) -> Result<Action, String> {
        let _ = (req, resp);
        Ok(Action::Continue)
    }

    /// Phase `on-log`: runs in reverse chain order after the response has
    /// been sent. Observe only: changes to `req` and `resp` are ignored.
    fn on_log(&self, req: &Request, resp: &Response, info: &Exchange) {
        let _ = (req, resp, info);
    }

    /// Phase `on-app-log`: runs in chain order for every record of the
    /// application's own log that arrives on `POST /logs`, before it goes
    /// to the sink.
    ///
    /// Return the record, changed or not (add or redact
    /// [metadata](AppLog::metadata_map)), or `None` to drop it; the next
    /// plugin gets what you return. `Err` goes through the failure policy:
    /// `open` passes the record on unchanged, `closed` drops it.
    fn on_app_log(&self, entry: AppLog) -> Result<Option<AppLog>, String> {
        Ok(Some(entry))
    }
}

/// The glue that `export_plugin!` expands to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::__tandem_export_component as export_component;
    pub use crate::bindings::exports::tandem::plugin::hooks::{
        AppLog as RawAppLog, Exchange as RawExchange, Guest, HookSet, Request as RawRequest,
        Response as RawResponse,
    };
    pub use crate::export::{Hooks, Slot, init, on_app_log, on_log, on_request, on_response};
}

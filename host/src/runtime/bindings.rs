//! The one place that runs `bindgen!` over `wit/`: the rest of the host uses
//! the names re-exported here and never the generated paths.

#[allow(missing_docs, reason = "generated code; the WIT documents it")]
mod generated {
    wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    with: {
        "tandem:plugin/types.request": crate::runtime::exchange::RequestHandle,
        "tandem:plugin/types.response": crate::runtime::exchange::ResponseHandle,
    },
    // Hooks run on fibers so that a guest past its time slice yields its
    // worker thread; host imports are plain functions.
    exports: { default: async },
    });
}

use generated::{exports, tandem};

pub use exports::tandem::plugin::hooks::{AppLog, HookSet};
pub use tandem::plugin::log::Level as LogLevel;
pub use tandem::plugin::metrics::Kind as MetricKind;
pub use tandem::plugin::shared_state::BucketDecision;
pub use tandem::plugin::types::{Action, EditError, Exchange, Reply};

/// Host traits the guest imports, implemented in `host_impl`.
pub mod host_traits {
    pub use super::tandem::plugin::log::Host as LogHost;
    pub use super::tandem::plugin::metrics::Host as MetricsHost;
    pub use super::tandem::plugin::records::Host as RecordsHost;
    pub use super::tandem::plugin::shared_state::Host as SharedStateHost;
    pub use super::tandem::plugin::types::{Host as TypesHost, HostRequest, HostResponse};
}

/// Generated world entry points: `Plugin` (an instance's exports) and
/// `PluginPre` (a pre-instantiated plugin version).
pub use generated::{Plugin as PluginBindings, PluginPre as PluginBindingsPre};

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

/// The same world with synchronous exports: a call that runs to its end on
/// the caller's stack, with no fiber. The imports are the ones above.
#[allow(missing_docs, reason = "generated code; the WIT documents it")]
mod generated_sync {
    wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    with: {
        "tandem:plugin/types": super::generated::tandem::plugin::types,
        "tandem:plugin/log": super::generated::tandem::plugin::log,
        "tandem:plugin/metrics": super::generated::tandem::plugin::metrics,
        "tandem:plugin/shared-state": super::generated::tandem::plugin::shared_state,
        "tandem:plugin/records": super::generated::tandem::plugin::records,
    },
    });
}

/// Generated world entry points with synchronous hook calls, and the export
/// indices that load them from an instance.
pub use generated_sync::{Plugin as PluginSyncBindings, PluginIndices as PluginSyncIndices};

/// The export side of each binding has its own `app-log` record; the
/// synchronous calls convert.
mod app_log_conversion {
    use super::AppLog;
    use super::generated_sync::exports::tandem::plugin::hooks::AppLog as SyncAppLog;

    impl From<&AppLog> for SyncAppLog {
        fn from(entry: &AppLog) -> Self {
            Self {
                level: entry.level.clone(),
                message: entry.message.clone(),
                metadata: entry.metadata.clone(),
                timestamp: entry.timestamp.clone(),
            }
        }
    }

    impl From<SyncAppLog> for AppLog {
        fn from(entry: SyncAppLog) -> Self {
            Self {
                level: entry.level,
                message: entry.message,
                metadata: entry.metadata,
                timestamp: entry.timestamp,
            }
        }
    }
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
pub use generated::{
    Plugin as PluginBindings, PluginIndices as PluginBindingsIndices,
    PluginPre as PluginBindingsPre,
};

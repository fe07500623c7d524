//! One loaded plugin version: its compiled component, its pre-instance
//! (linked and type-checked once), its pool of idle instances, and the hook
//! calls that move the request head in and out of a store.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, StatusCode};
use tokio::sync::TryAcquireError;
use wasmtime::component::{Component, InstancePre, Resource};
use wasmtime::{Engine, Store, UpdateDeadline};

use super::bindings::{
    Action, AppLog, Exchange, HookSet, PluginBindings, PluginBindingsIndices, PluginBindingsPre,
    PluginSyncBindings, PluginSyncIndices, Reply,
};
use super::breaker::{Admission, Breaker, BreakerState};
use super::call_mode::{CallMode, CallStyle};
use super::exchange::{
    MAX_HEADERS, RequestHandle, RequestHead, ResponseHandle, ResponseHead, parse_header,
};
use super::lane::Lane;
use super::quarantine::{Placement, Quarantine};
use super::state::{HostState, PluginServices};
use super::thread_stack;
use super::yielder::YieldToBack;
use crate::metrics::HookMetrics;
use crate::plugin_settings::{InstanceMode, PluginSettings};

/// Largest body a plugin may answer with, in bytes.
pub const MAX_REPLY_BODY_BYTES: usize = 4 << 20;
/// Idle instances kept per plugin version. Hook calls never await, so at
/// most one instance per worker thread is busy at a time.
pub const MAX_IDLE_INSTANCES: usize = 64;
/// How long past its deadline a call that is blocked in a host call (a
/// WASI sleep or poll, where no guest code runs to be interrupted) may
/// take before it is abandoned. A busy guest is stopped at the deadline
/// itself by the epoch callback.
pub const BLOCKED_CALL_GRACE: Duration = Duration::from_millis(20);
/// Epoch ticks before a call first yields: two, so that it has run for at
/// least one whole tick. A call of microseconds then never yields, even
/// when it happens to straddle a tick.
const FIRST_YIELD_TICKS: u64 = 2;
/// How many hook deadlines `init` gets: it may parse keys or compile
/// patterns.
pub const INIT_DEADLINE_FACTOR: u32 = 10;
/// Calls of one quarantined plugin that may be under way at once, on a
/// worker or on the quarantine lane; more fail at once with kind
/// `unavailable`, so a flood of requests to a quarantined plugin cannot
/// pile up work on the lane.
pub const LANE_CALLS_PER_PLUGIN: usize = 16;

/// The hooks after `init`, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `on-request`.
    OnRequest,
    /// `on-response`.
    OnResponse,
    /// `on-log`.
    OnLog,
    /// `on-app-log`.
    OnAppLog,
}

impl Hook {
    /// The hook's position in the phase order (0 to 3).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The hook's name as used in the WIT, metrics and docs.
    pub fn name(self) -> &'static str {
        match self {
            Hook::OnRequest => "on-request",
            Hook::OnResponse => "on-response",
            Hook::OnLog => "on-log",
            Hook::OnAppLog => "on-app-log",
        }
    }
}

/// Which hooks a plugin asked for in `init`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Calls `on-request`.
    pub on_request: bool,
    /// Calls `on-response`.
    pub on_response: bool,
    /// Calls `on-log`.
    pub on_log: bool,
    /// Calls `on-app-log`.
    pub on_app_log: bool,
}

impl Hooks {
    fn from_flags(flags: HookSet) -> Self {
        Self {
            on_request: flags.contains(HookSet::ON_REQUEST),
            on_response: flags.contains(HookSet::ON_RESPONSE),
            on_log: flags.contains(HookSet::ON_LOG),
            on_app_log: flags.contains(HookSet::ON_APP_LOG),
        }
    }

    /// The hook names, e.g. `["on-request", "on-log"]`.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.on_request, Hook::OnRequest),
            (self.on_response, Hook::OnResponse),
            (self.on_log, Hook::OnLog),
            (self.on_app_log, Hook::OnAppLog),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, hook)| hook.name())
        .collect()
    }
}

/// A response built by a plugin, validated.
#[derive(Debug, Clone)]
pub struct PluginReply {
    /// Status code.
    pub status: StatusCode,
    /// Headers (hop-by-hop ones removed by the proxy).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// What a hook decided.
#[derive(Debug)]
pub enum HookOutcome {
    /// Go on.
    Continue,
    /// Answer the client with this.
    Respond(PluginReply),
}

/// Why a hook call failed; each goes through the plugin's failure policy.
#[derive(Debug, thiserror::Error)]
pub enum HookFailure {
    /// The guest trapped (panic, out-of-bounds access, unreachable).
    #[error("trapped: {0}")]
    Trap(String),
    /// The guest tried to grow its memory past its limit.
    #[error("ran out of memory: {0}")]
    OutOfMemory(String),
    /// The guest's call stack grew past the engine's stack limit.
    #[error("overflowed its stack")]
    StackOverflow,
    /// The guest ran past its CPU deadline.
    #[error("ran past its {0:?} deadline")]
    Timeout(Duration),
    /// The guest returned an error.
    #[error("returned an error: {0}")]
    Error(String),
    /// The guest returned something the host cannot use.
    #[error("returned an invalid result: {0}")]
    Invalid(String),
    /// No instance could be created.
    #[error("no instance available: {0}")]
    Unavailable(String),
    /// The plugin is tripped after consecutive failures and was not called;
    /// the cool-down ends in this long.
    #[error("tripped after consecutive failures; not called for another {0:?}")]
    Tripped(Duration),
}

/// The plugin is quarantined and as many of its calls as the lane takes
/// are under way.
fn lane_full() -> HookFailure {
    HookFailure::Unavailable(format!(
        "quarantined, and {LANE_CALLS_PER_PLUGIN} of its calls are already under way"
    ))
}

impl HookFailure {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HookFailure::Trap(_) => "trap",
            HookFailure::OutOfMemory(_) => "memory",
            HookFailure::StackOverflow => "stack",
            HookFailure::Timeout(_) => "timeout",
            HookFailure::Error(_) => "error",
            HookFailure::Invalid(_) => "invalid",
            HookFailure::Unavailable(_) => "unavailable",
            HookFailure::Tripped(_) => "tripped",
        }
    }
}

/// Why a plugin version could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not WebAssembly at all.
    #[error("not a WebAssembly file (no \\0asm header)")]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "a core WebAssembly module, not a component: build for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// Compilation failed.
    #[error("does not compile: {0:#}")]
    Compile(wasmtime::Error),
    /// Imports or exports do not match the `tandem:plugin/plugin` world.
    #[error("is not a tandem:plugin@0.1.0 plugin: {0:#}")]
    WrongWorld(wasmtime::Error),
    /// `init` failed or trapped.
    #[error("init failed: {0}")]
    Init(HookFailure),
}

struct PluginInstance {
    store: Store<HostState>,
    /// The entry points on a fiber.
    bindings: PluginBindings,
    /// The synchronous entry points, on an instance whose WASI is linked
    /// synchronously (`sync_wasi`); `None` on one whose WASI is linked
    /// asynchronously, which only a fiber can call.
    sync: Option<PluginSyncBindings>,
}

/// Per-hook host metrics of one plugin, only for the hooks it implements
/// (so `/metrics` carries no empty series).
#[derive(Default)]
struct PluginHookMetrics {
    on_request: Option<HookMetrics>,
    on_response: Option<HookMetrics>,
    on_log: Option<HookMetrics>,
    on_app_log: Option<HookMetrics>,
}

impl PluginHookMetrics {
    fn resolve(metrics: &crate::metrics::Metrics, name: &str, hooks: Hooks) -> Self {
        let resolve = |on: bool, hook: Hook| on.then(|| metrics.hook(name, hook.name()));
        Self {
            on_request: resolve(hooks.on_request, Hook::OnRequest),
            on_response: resolve(hooks.on_response, Hook::OnResponse),
            on_log: resolve(hooks.on_log, Hook::OnLog),
            on_app_log: resolve(hooks.on_app_log, Hook::OnAppLog),
        }
    }
}

/// One loaded version of a plugin.
pub struct PluginVersion {
    /// The plugin's name: the file name without `.wasm`.
    pub name: Arc<str>,
    /// The `.wasm` file.
    pub file: PathBuf,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// Settings from `NAME.toml`.
    pub settings: PluginSettings,
    /// Hooks the plugin implements.
    pub hooks: Hooks,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
    /// Failed hook calls of this version.
    pub failures: AtomicU64,
    /// Text of the last failure, for `/plugins`.
    pub last_failure: Mutex<Option<String>>,
    /// Trips the plugin out of the chain after consecutive failures.
    pub breaker: Breaker,
    /// After a timeout, moves the plugin's long calls to the quarantine
    /// lane for a while.
    pub quarantine: Quarantine,
    lane: Lane,
    /// One permit per call under way while quarantined, up to
    /// [`LANE_CALLS_PER_PLUGIN`].
    lane_slots: Arc<tokio::sync::Semaphore>,
    /// One permit per instance in use, up to `max_instances`.
    in_use: tokio::sync::Semaphore,
    engine: Engine,
    /// Pre-instance with WASI linked asynchronously, for a version whose
    /// calls wait.
    pre: PluginBindingsPre<HostState>,
    /// Pre-instance with WASI linked synchronously, and where its exports
    /// are for calls on a fiber and for synchronous ones.
    sync_pre: InstancePre<HostState>,
    fiber_indices: PluginBindingsIndices,
    sync_indices: PluginSyncIndices,
    services: Arc<PluginServices>,
    /// The stack one call may need; a synchronous call is made only on a
    /// thread that keeps this much room.
    call_stack_bytes: usize,
    /// Boxed: an instance moves out of the pool, through the call and back
    /// at every call, and a pointer moves for nothing.
    #[allow(clippy::vec_box, reason = "the boxes move, not the vector")]
    idle: Mutex<Vec<Box<PluginInstance>>>,
    metrics: PluginHookMetrics,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Checks the header of a file before handing it to the compiler, to give a
/// clearer error than the parser would.
fn check_component_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Core modules have layer 0 in bytes 6..8; components have layer 1.
    if bytes[6..8] == [0, 0] {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

/// Compiles a component from bytes. Compilation is CPU-heavy: call it off
/// the async workers.
pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, LoadError> {
    check_component_header(bytes)?;
    Component::new(engine, bytes).map_err(LoadError::Compile)
}

/// Names what stopped a guest. `memory_refused` says whether the store's
/// limiter refused to grow its memory during the call.
fn classify_trap(error: wasmtime::Error, deadline: Duration, memory_refused: bool) -> HookFailure {
    // The root cause fits on one log line; the wasm backtrace is kept for
    // debug logs.
    tracing::debug!("guest stopped: {error:?}");
    let cause = error.root_cause().to_string();
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => HookFailure::Timeout(deadline),
        Some(wasmtime::Trap::StackOverflow) => HookFailure::StackOverflow,
        _ if memory_refused => HookFailure::OutOfMemory(cause),
        _ => HookFailure::Trap(cause),
    }
}

/// Turns a plugin's reply into one the proxy can send, or says why not.
pub fn validate_reply(reply: Reply) -> Result<PluginReply, HookFailure> {
    let status = super::exchange::final_status(reply.status).ok_or_else(|| {
        HookFailure::Invalid(format!("status {} is not 200 to 599", reply.status))
    })?;
    if reply.body.len() > MAX_REPLY_BODY_BYTES {
        return Err(HookFailure::Invalid(format!(
            "body of {} bytes is over the {MAX_REPLY_BODY_BYTES}-byte limit",
            reply.body.len()
        )));
    }
    if reply.headers.len() > MAX_HEADERS {
        return Err(HookFailure::Invalid(format!(
            "{} headers are over the limit of {MAX_HEADERS}",
            reply.headers.len()
        )));
    }
    let mut headers = HeaderMap::with_capacity(reply.headers.len());
    for (name, value) in &reply.headers {
        let (name, value) = parse_header(name, value)
            .map_err(|_| HookFailure::Invalid(format!("header {name:?} is not valid")))?;
        headers.append(name, value);
    }
    // The host frames the body it was given: a plugin's own length or
    // transfer coding could only disagree with it and break the response.
    headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(http::header::TRANSFER_ENCODING);
    Ok(PluginReply {
        status,
        headers,
        body: Bytes::from(reply.body),
    })
}

fn decide(result: Result<Action, String>) -> Result<HookOutcome, HookFailure> {
    match result {
        Ok(Action::Continue) => Ok(HookOutcome::Continue),
        Ok(Action::Respond(reply)) => validate_reply(reply).map(HookOutcome::Respond),
        Err(message) => Err(HookFailure::Error(message)),
    }
}

/// The arguments of one hook call besides the heads: the exchange or the
/// application log record, borrowed for a call on the workers and owned
/// for one that may move to the quarantine lane.
enum HookCall<'a> {
    Request,
    Response,
    Log(Cow<'a, Exchange>),
    AppLog(Cow<'a, AppLog>),
}

impl HookCall<'_> {
    fn hook(&self) -> Hook {
        match self {
            HookCall::Request => Hook::OnRequest,
            HookCall::Response => Hook::OnResponse,
            HookCall::Log(_) => Hook::OnLog,
            HookCall::AppLog(_) => Hook::OnAppLog,
        }
    }

    /// The same call, owning its arguments (cloned: an exchange is a few
    /// numbers and short strings, an app-log record one log line; the heads
    /// move, they are never copied).
    fn into_owned(self) -> HookCall<'static> {
        match self {
            HookCall::Request => HookCall::Request,
            HookCall::Response => HookCall::Response,
            HookCall::Log(exchange) => HookCall::Log(Cow::Owned(exchange.into_owned())),
            HookCall::AppLog(entry) => HookCall::AppLog(Cow::Owned(entry.into_owned())),
        }
    }
}

/// What one hook call gives back: the heads, moved out of the store again
/// (`on-app-log` has none), and the result.
type Returned = (
    Option<RequestHead>,
    Option<ResponseHead>,
    Result<HookReturn, HookFailure>,
);

/// What a hook call returned, before the host judges it.
enum HookReturn {
    Action(Result<Action, String>),
    Logged,
    AppLogged(Result<Option<AppLog>, String>),
}

/// Moves the heads into an instance's store and sets up the call.
fn prepare(
    instance: &mut PluginInstance,
    request: Option<RequestHead>,
    response: Option<ResponseHead>,
    deadline: Instant,
    move_to_lane: Option<Arc<AtomicBool>>,
    synchronous: bool,
) {
    let state = instance.store.data_mut();
    state.request = request;
    state.response = response;
    state.deadline = deadline;
    state.move_to_lane = move_to_lane;
    state.synchronous = synchronous;
    // Before any guest code runs; replaces the count of the previous call
    // on this instance, if any.
    state.in_call = Some(state.services.ticks.call_started());
    instance.store.set_epoch_deadline(FIRST_YIELD_TICKS);
}

/// Makes a hook call synchronously on an instance whose WASI is linked
/// synchronously. A panic in a host function under it (wasmtime-wasi's
/// synchronous socket calls enter the tokio runtime, which panics on a
/// worker thread) fails the call like a trap rather than the request's
/// task.
fn call_synchronously(
    instance: &mut PluginInstance,
    call: HookCall<'_>,
) -> wasmtime::Result<HookReturn> {
    let PluginInstance { store, sync, .. } = instance;
    let hooks = sync
        .as_ref()
        .expect("a synchronous call is made on a synchronously linked instance")
        .tandem_plugin_hooks();
    let request_handle = Resource::<RequestHandle>::new_borrow(0);
    let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match call {
        HookCall::Request => hooks
            .call_on_request(&mut *store, request_handle)
            .map(HookReturn::Action),
        HookCall::Response => hooks
            .call_on_response(
                &mut *store,
                request_handle,
                Resource::<ResponseHandle>::new_borrow(0),
            )
            .map(HookReturn::Action),
        HookCall::Log(exchange) => hooks
            .call_on_log(
                &mut *store,
                request_handle,
                Resource::<ResponseHandle>::new_borrow(0),
                &exchange,
            )
            .map(|()| HookReturn::Logged),
        HookCall::AppLog(entry) => hooks
            .call_on_app_log(&mut *store, &(&*entry).into())
            .map(|kept| HookReturn::AppLogged(kept.map(|entry| entry.map(AppLog::from)))),
    }));
    called.unwrap_or_else(|panic| Err(host_panic(panic)))
}

/// A panic in a host function under a hook call, as the call's error: the
/// call fails like a trap (and its instance is dropped) instead of taking
/// the request's task down.
fn host_panic(panic: Box<dyn std::any::Any + Send>) -> wasmtime::Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|m| m.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    wasmtime::format_err!("a host function panicked under the call: {message}")
}

impl PluginVersion {
    /// Links, type-checks against the world and initialises a compiled
    /// plugin. The first instance (which ran `init`) is kept for reuse.
    pub async fn load(
        runtime: &super::Runtime,
        name: &str,
        file: PathBuf,
        sha256: String,
        component: &Component,
        settings: PluginSettings,
    ) -> Result<Self, LoadError> {
        let pre = runtime
            .linker
            .instantiate_pre(component)
            .map_err(LoadError::WrongWorld)?;
        let pre = PluginBindingsPre::new(pre).map_err(LoadError::WrongWorld)?;
        let sync_pre = runtime
            .sync_linker
            .instantiate_pre(component)
            .map_err(LoadError::WrongWorld)?;
        let fiber_indices = PluginBindingsIndices::new(&sync_pre).map_err(LoadError::WrongWorld)?;
        let sync_indices = PluginSyncIndices::new(&sync_pre).map_err(LoadError::WrongWorld)?;
        let services = Arc::new(PluginServices::new(
            name,
            &settings,
            runtime.metrics.clone(),
            runtime.shared.clone(),
            runtime.records.clone(),
            runtime.ticks.clone(),
        ));
        let breaker = Breaker::new(settings.trip_after, settings.trip_cooldown);
        let quarantine = Quarantine::new(settings.quarantine);
        let in_use = tokio::sync::Semaphore::new(settings.max_instances as usize);
        let mut version = Self {
            name: name.into(),
            file,
            sha256,
            settings,
            hooks: Hooks::default(),
            loaded_at: SystemTime::now(),
            failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            breaker,
            quarantine,
            lane: runtime.lane.clone(),
            lane_slots: Arc::new(tokio::sync::Semaphore::new(LANE_CALLS_PER_PLUGIN)),
            in_use,
            engine: runtime.engine.clone(),
            pre,
            sync_pre,
            fiber_indices,
            sync_indices,
            services,
            call_stack_bytes: runtime.call_stack_bytes,
            idle: Mutex::new(Vec::new()),
            metrics: PluginHookMetrics::default(),
        };
        let (first, hooks) = version
            .instantiate(CallStyle::Synchronous)
            .await
            .map_err(LoadError::Init)?;
        version.hooks = hooks;
        version.metrics = PluginHookMetrics::resolve(&runtime.metrics, name, hooks);
        version.give_back(first);
        Ok(version)
    }

    /// A new instance with `init` run on it (on a fiber), its WASI linked
    /// asynchronously for [`CallStyle::FiberWithAsyncWasi`] and
    /// synchronously otherwise.
    async fn instantiate(
        &self,
        style: CallStyle,
    ) -> Result<(Box<PluginInstance>, Hooks), HookFailure> {
        let state = HostState::new(self.services.clone(), self.settings.memory_limit_bytes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // At every epoch tick the guest yields its thread (so a busy plugin
        // cannot starve other requests; see `yielder`) and traps once past
        // its deadline. A call of a quarantined plugin is also told to move
        // to the quarantine lane when it yields.
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            if Instant::now() >= state.deadline {
                Ok(UpdateDeadline::Interrupt)
            } else if state.synchronous {
                // A synchronous call cannot yield: it runs on to its end or
                // its deadline, and the version's calls go on a fiber from
                // now on (told now, not when this call ends, so that calls
                // starting meanwhile already go there).
                state.services.mode.ran_long();
                Ok(UpdateDeadline::Continue(1))
            } else {
                // A hook call on a fiber that runs a whole tick keeps the
                // version's calls there (a long `init` does not count: it
                // says nothing about the calls).
                if state.in_hook_call {
                    state.services.mode.ran_long();
                }
                if let Some(moving) = &context.data().move_to_lane {
                    moving.store(true, Ordering::Relaxed);
                }
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(YieldToBack::default()),
                ))
            }
        });
        store.set_epoch_deadline(FIRST_YIELD_TICKS);
        let init_deadline = self.settings.hook_timeout * INIT_DEADLINE_FACTOR;
        let deadline = Instant::now() + init_deadline;
        store.data_mut().deadline = deadline;
        // Before the instance exists: a start function is guest code too.
        store.data_mut().in_call = Some(self.services.ticks.call_started());
        let unavailable = |e: wasmtime::Error| HookFailure::Unavailable(format!("{e:#}"));
        let started = async {
            let (bindings, sync) = if style == CallStyle::FiberWithAsyncWasi {
                let bindings = self
                    .pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(unavailable)?;
                (bindings, None)
            } else {
                // Asynchronously, so that a long start function (a
                // language runtime's) yields its thread like `init`.
                let instance = self
                    .sync_pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(unavailable)?;
                let bindings = self
                    .fiber_indices
                    .load(&mut store, &instance)
                    .map_err(unavailable)?;
                let sync = self
                    .sync_indices
                    .load(&mut store, &instance)
                    .map_err(unavailable)?;
                (bindings, Some(sync))
            };
            // On a fiber, so that a long `init` yields its thread; a host
            // panic under it fails it, as under a hook call.
            let flags = std::panic::AssertUnwindSafe(
                bindings
                    .tandem_plugin_hooks()
                    .call_init(&mut store, &self.settings.config_json),
            )
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(host_panic(panic)));
            Ok::<_, HookFailure>((bindings, sync, flags))
        };
        let backstop = tokio::time::Instant::from_std(deadline + BLOCKED_CALL_GRACE);
        let (bindings, sync, flags) = match tokio::time::timeout_at(backstop, started).await {
            Ok(started) => started?,
            Err(_) => return Err(HookFailure::Timeout(init_deadline)),
        };
        let memory_refused = store.data().limits.memory_refused;
        let flags = flags
            .map_err(|e| classify_trap(e, init_deadline, memory_refused))?
            .map_err(HookFailure::Error)?;
        let instance = Box::new(PluginInstance {
            store,
            bindings,
            sync,
        });
        Ok((instance, Hooks::from_flags(flags)))
    }

    /// An idle instance that can make a call of `style`, or a new one; true
    /// if it is new.
    async fn checkout(&self, style: CallStyle) -> Result<(Box<PluginInstance>, bool), HookFailure> {
        if let Some(instance) = self.take_idle(style) {
            return Ok((instance, false));
        }
        // Boxed: instantiation is the rare path, and its future is large;
        // inline, every hook call's future would carry (and move) its size.
        Box::pin(self.instantiate(style))
            .await
            .map(|(instance, _)| (instance, true))
    }

    /// An idle instance that can make a call of `style`, if there is one:
    /// the newest that fits. Once the version's calls wait for good, the
    /// synchronously linked ones are of no more use and are dropped (after
    /// the lock is released: dropping a store unmaps its memory); while it
    /// is only quarantined they stay for the calls after it.
    fn take_idle(&self, style: CallStyle) -> Option<Box<PluginInstance>> {
        if self.settings.instances == InstanceMode::Fresh {
            return None;
        }
        let fits = |instance: &PluginInstance| match style {
            CallStyle::Synchronous => instance.sync.is_some(),
            CallStyle::Fiber => true,
            CallStyle::FiberWithAsyncWasi => instance.sync.is_none(),
        };
        let waits_for_good = self.mode().waits_for_good();
        let mut unused: Vec<Box<PluginInstance>> = Vec::new();
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            // Checked first, so that the common call allocates nothing.
            if waits_for_good && idle.iter().any(|instance| instance.sync.is_some()) {
                let (synchronous, rest) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|instance| instance.sync.is_some());
                *idle = rest;
                unused = synchronous;
            }
            let newest_fit = idle.iter().rposition(|instance| fits(instance));
            newest_fit.map(|index| idle.remove(index))
        };
        drop(unused);
        found
    }

    fn give_back(&self, mut instance: Box<PluginInstance>) {
        if self.settings.instances == InstanceMode::Fresh {
            return;
        }
        // Idle in the pool, it runs no guest code.
        instance.store.data_mut().in_call = None;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_INSTANCES {
            idle.push(instance);
        }
    }

    fn hook_metrics(&self, hook: Hook) -> Option<&HookMetrics> {
        match hook {
            Hook::OnRequest => self.metrics.on_request.as_ref(),
            Hook::OnResponse => self.metrics.on_response.as_ref(),
            Hook::OnLog => self.metrics.on_log.as_ref(),
            Hook::OnAppLog => self.metrics.on_app_log.as_ref(),
        }
    }

    /// Runs one hook with the heads moved into a store, and moves them back:
    /// on the proxy's workers, and while the plugin is quarantined, its long
    /// calls on the quarantine lane.
    ///
    /// A plain function that hands back the future of the path taken (and
    /// boxes the cold ones), rather than an `async fn` around them: every
    /// layer of `async` copies the future beneath it into its own, and at
    /// a microsecond per call those copies showed in the profile.
    fn call<'a>(
        self: &'a Arc<Self>,
        call: HookCall<'a>,
        request: Option<RequestHead>,
        response: Option<ResponseHead>,
    ) -> impl Future<Output = Returned> + 'a {
        use futures_util::future::{Either, ready};
        let hook = call.hook();
        if let Admission::Tripped(remaining) = self.breaker.admit() {
            if let Some(metrics) = self.hook_metrics(hook) {
                metrics.tripped();
            }
            let refused = (request, response, Err(HookFailure::Tripped(remaining)));
            return Either::Left(ready(refused));
        }
        match self.quarantine.admit() {
            Placement::Workers => {}
            Placement::Released => {
                self.services.metrics.plugin_released(&self.name);
                tracing::info!(
                    plugin = &*self.name,
                    "plugin left quarantine: no timeout for a whole cool-down; its calls run on the workers again"
                );
            }
            Placement::Lane => {
                let quarantined = Box::pin(self.call_quarantined(call, request, response));
                return Either::Right(Either::Left(quarantined));
            }
        }
        match self.ready_to_run_now() {
            Some((slot, instance)) => {
                Either::Left(ready(self.run_now(slot, instance, call, request, response)))
            }
            // Boxed: with synchronous calls the common path, the fiber
            // path's future (over a kilobyte) would otherwise be moved,
            // as part of this one, through every layer above at every call.
            None => Either::Right(Either::Right(Box::pin(
                self.run(call, request, response, None),
            ))),
        }
    }

    /// Runs a call of a quarantined plugin: here while it is quick, and
    /// on the quarantine lane from its first epoch tick on (after at least
    /// one whole tick of running), so that a plugin that spins holds a
    /// worker for a tick rather than to its deadline, while its calls that
    /// finish within a tick (most of them, for most plugins) cost nothing
    /// more. A call that has moved keeps its deadline, so its request
    /// still gets its answer in time.
    async fn call_quarantined(
        self: &Arc<Self>,
        call: HookCall<'_>,
        request: Option<RequestHead>,
        response: Option<ResponseHead>,
    ) -> Returned {
        let hook = call.hook();
        // The slot is taken before the call starts: once the guest runs,
        // the request head is in its store and the call cannot be refused.
        let Ok(slot) = self.lane_slots.clone().try_acquire_owned() else {
            let failure = lane_full();
            self.record_failure(hook, &failure);
            return (request, response, Err(failure));
        };
        let moving = Arc::new(AtomicBool::new(false));
        let plugin = Arc::clone(self);
        let call = call.into_owned();
        let flag = moving.clone();
        // Boxed, so that it can be moved to the lane between two polls;
        // the guest's fiber resumes on whichever thread polls it, as it
        // does when tokio moves a task between workers.
        let mut run =
            Box::pin(async move { plugin.run(call, request, response, Some(flag)).await });
        let finished = std::future::poll_fn(|cx| match run.as_mut().poll(cx) {
            Poll::Ready(returned) => Poll::Ready(Some(returned)),
            Poll::Pending if moving.load(Ordering::Relaxed) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        if let Some(returned) = finished {
            return returned;
        }
        if let Some(metrics) = self.hook_metrics(hook) {
            metrics.quarantined();
        }
        // If the request goes away meanwhile, the call still runs to its
        // end (its deadline at most) and gives its instance back.
        let task = self.lane.spawn(async move {
            let returned = run.await;
            drop(slot);
            returned
        });
        match task.await {
            Ok(returned) => returned,
            // The call panicked: the same as if it had panicked here.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Every plugin version holds a handle on the lane, which stops
            // only once the last one is gone.
            Err(error) => unreachable!("the quarantine lane stopped under a plugin: {error}"),
        }
    }

    /// An instance slot and an idle, synchronously linked instance, if the
    /// version's calls are synchronous and both are free without waiting:
    /// the common case, in which [`run_now`](Self::run_now) makes the call
    /// with no future and no fiber.
    fn ready_to_run_now(&self) -> Option<(tokio::sync::SemaphorePermit<'_>, Box<PluginInstance>)> {
        if self.mode().style() != CallStyle::Synchronous
            || thread_stack::room_for_calls() < self.call_stack_bytes
        {
            return None;
        }
        let slot = self.in_use.try_acquire().ok()?;
        let instance = self.take_idle(CallStyle::Synchronous)?;
        Some((slot, instance))
    }

    /// Makes the call synchronously, here and now, with what
    /// [`ready_to_run_now`](Self::ready_to_run_now) found.
    fn run_now(
        &self,
        _slot: tokio::sync::SemaphorePermit<'_>,
        mut instance: Box<PluginInstance>,
        call: HookCall<'_>,
        request: Option<RequestHead>,
        response: Option<ResponseHead>,
    ) -> Returned {
        let hook = call.hook();
        let started = Instant::now();
        let deadline = started + self.settings.hook_timeout;
        prepare(&mut instance, request, response, deadline, None, true);
        let result = call_synchronously(&mut instance, call);
        self.finish(hook, started, instance, Some(result))
    }

    /// Runs one hook call where it is polled: synchronously if the
    /// version's calls are, else on a fiber. `move_to_lane`, for a call of
    /// a quarantined plugin (always on a fiber), is set at the call's first
    /// epoch tick. A failed instance is dropped rather than reused.
    async fn run(
        &self,
        call: HookCall<'_>,
        request: Option<RequestHead>,
        response: Option<ResponseHead>,
        move_to_lane: Option<Arc<AtomicBool>>,
    ) -> Returned {
        let hook = call.hook();
        let started = Instant::now();
        // The call's own time starts once it has an instance: waiting for
        // one is bounded (and reported) as `unavailable`, and a new
        // instance's `init` has its own deadline. In the common case (a
        // free slot, an idle instance) that is now, so the clock is read
        // again only after a wait.
        let mut waited = false;
        let slot = match self.in_use.try_acquire() {
            Ok(permit) => Some(permit),
            // All instances busy: wait, but no longer than a call may take.
            // (Only here, so the common call sets no timer.)
            Err(TryAcquireError::NoPermits) => {
                waited = true;
                Box::pin(tokio::time::timeout(
                    self.settings.hook_timeout,
                    self.in_use.acquire(),
                ))
                .await
                .ok()
                .and_then(Result::ok)
            }
            Err(TryAcquireError::Closed) => None,
        };
        let Some(_slot) = slot else {
            let failure = HookFailure::Unavailable(format!(
                "all {} instances busy for {:?}",
                self.settings.max_instances, self.settings.hook_timeout
            ));
            self.record_failure(hook, &failure);
            return (request, response, Err(failure));
        };
        // A quarantined call may move to the lane, a single thread for
        // every quarantined plugin: a wait there must yield, not sleep.
        let style = match move_to_lane {
            Some(_) => CallStyle::FiberWithAsyncWasi,
            None => self.mode().style(),
        };
        let mut instance = match self.checkout(style).await {
            Ok((instance, instantiated)) => {
                waited |= instantiated;
                instance
            }
            Err(failure) => {
                self.record_failure(hook, &failure);
                return (request, response, Err(failure));
            }
        };
        let call_start = if waited { Instant::now() } else { started };
        let deadline = call_start + self.settings.hook_timeout;
        // Read again: getting the instance may have taken a while (an
        // `init`), and the mode may have moved to a fiber meanwhile.
        let synchronous = style == CallStyle::Synchronous
            && self.mode().style() == CallStyle::Synchronous
            && instance.sync.is_some()
            && thread_stack::room_for_calls() >= self.call_stack_bytes;
        prepare(
            &mut instance,
            request,
            response,
            deadline,
            move_to_lane,
            synchronous,
        );
        if synchronous {
            let result = call_synchronously(&mut instance, call);
            return self.finish(hook, started, instance, Some(result));
        }
        let PluginInstance {
            store, bindings, ..
        } = &mut *instance;
        let hooks = bindings.tandem_plugin_hooks();
        let request_handle = Resource::<RequestHandle>::new_borrow(0);
        let run = async {
            match call {
                HookCall::Request => hooks
                    .call_on_request(&mut *store, request_handle)
                    .await
                    .map(HookReturn::Action),
                HookCall::Response => hooks
                    .call_on_response(
                        &mut *store,
                        request_handle,
                        Resource::<ResponseHandle>::new_borrow(0),
                    )
                    .await
                    .map(HookReturn::Action),
                HookCall::Log(exchange) => hooks
                    .call_on_log(
                        &mut *store,
                        request_handle,
                        Resource::<ResponseHandle>::new_borrow(0),
                        &exchange,
                    )
                    .await
                    .map(|()| HookReturn::Logged),
                HookCall::AppLog(entry) => hooks
                    .call_on_app_log(&mut *store, &entry)
                    .await
                    .map(HookReturn::AppLogged),
            }
        };
        // As on the synchronous path, a host panic fails the call.
        let run = std::panic::AssertUnwindSafe(run)
            .catch_unwind()
            .map(|called| called.unwrap_or_else(|panic| Err(host_panic(panic))));
        // Guest code is interrupted at the deadline by the epoch callback;
        // this backstop abandons a call blocked in a host call instead.
        let backstop = tokio::time::Instant::from_std(deadline + BLOCKED_CALL_GRACE);
        let result = {
            let mut run = std::pin::pin!(run);
            // Most calls end within their first poll; only one that yields
            // (at an epoch tick, or in a host call that waits) needs the
            // timer.
            let first_poll = std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await;
            match first_poll {
                Poll::Ready(result) => Some(result),
                Poll::Pending => Box::pin(tokio::time::timeout_at(backstop, run)).await.ok(),
            }
        };
        self.finish(hook, started, instance, result)
    }

    /// After a call: moves the heads out of the store, counts the call,
    /// and gives the instance back or, if the call failed, drops it. `None`: the call was
    /// abandoned at its backstop.
    fn finish(
        &self,
        hook: Hook,
        started: Instant,
        mut instance: Box<PluginInstance>,
        result: Option<wasmtime::Result<HookReturn>>,
    ) -> Returned {
        let state = instance.store.data_mut();
        state.in_hook_call = false;
        // Ends a probe (whichever way it was made in the end); a call that
        // ran a whole tick has already started a new period instead.
        self.mode().call_ended();
        let request = state.request.take();
        let response = state.response.take();
        if let Some(metrics) = self.hook_metrics(hook) {
            metrics.observe(started.elapsed());
        }
        let memory_refused = state.limits.memory_refused;
        let failure = match result {
            Some(Ok(value)) => {
                self.give_back(instance);
                return (request, response, Ok(value));
            }
            Some(Err(error)) => classify_trap(error, self.settings.hook_timeout, memory_refused),
            None => HookFailure::Timeout(self.settings.hook_timeout),
        };
        // The failed instance is dropped here, never reused.
        drop(instance);
        self.record_failure(hook, &failure);
        (request, response, Err(failure))
    }

    fn record_failure(&self, hook: Hook, failure: &HookFailure) {
        if let Some(metrics) = self.hook_metrics(hook) {
            metrics.failed(failure.kind());
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            plugin = &*self.name,
            hook = hook.name(),
            kind = failure.kind(),
            "plugin failed: {failure}"
        );
        let text = format!("{}: {failure}", hook.name());
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
        if matches!(failure, HookFailure::Timeout(_)) && self.quarantine.timed_out() {
            self.services.metrics.plugin_quarantined(&self.name);
            tracing::warn!(
                plugin = &*self.name,
                hook = hook.name(),
                cooldown = ?self.quarantine.cooldown(),
                "plugin quarantined after running past its deadline: its calls that run for a whole tick move to the low-priority lane until a cool-down passes without a timeout"
            );
        }
        if self.breaker.failed(hook.index()) {
            self.services.metrics.plugin_tripped(&self.name);
            tracing::error!(
                plugin = &*self.name,
                consecutive_failures = self.settings.trip_after,
                cooldown = ?self.settings.trip_cooldown,
                policy = ?self.settings.failure,
                "plugin tripped out of the chain after consecutive failures"
            );
        }
    }

    fn record_success(&self, hook: Hook) {
        if self.breaker.succeeded(hook.index()) {
            self.services.metrics.plugin_recovered(&self.name);
            tracing::info!(plugin = &*self.name, "plugin serving again after a trip");
        }
    }

    /// Judges what an `on-request` or `on-response` hook returned.
    fn judge(
        &self,
        hook: Hook,
        returned: Result<HookReturn, HookFailure>,
    ) -> Result<HookOutcome, HookFailure> {
        let outcome = match returned? {
            HookReturn::Action(action) => decide(action).inspect_err(|failure| {
                // Errors the guest returned were not yet recorded; invalid
                // results neither.
                self.record_failure(hook, failure);
            })?,
            HookReturn::Logged | HookReturn::AppLogged(_) => {
                unreachable!("judge is only called for on-request and on-response")
            }
        };
        self.record_success(hook);
        Ok(outcome)
    }

    // The three hooks below are plain functions returning the call's future
    // with the result mapped, not `async fn`s, for the reason given at
    // `call`.

    /// Calls `on-request`.
    pub fn on_request(
        self: &Arc<Self>,
        request: RequestHead,
    ) -> impl Future<Output = (RequestHead, Result<HookOutcome, HookFailure>)> + '_ {
        self.call(HookCall::Request, Some(request), None)
            .map(|(request, _, returned)| {
                (
                    request.expect("the host put a request in"),
                    self.judge(Hook::OnRequest, returned),
                )
            })
    }

    /// Calls `on-response`.
    pub fn on_response(
        self: &Arc<Self>,
        request: RequestHead,
        response: ResponseHead,
    ) -> impl Future<Output = (RequestHead, ResponseHead, Result<HookOutcome, HookFailure>)> + '_
    {
        self.call(HookCall::Response, Some(request), Some(response))
            .map(|(request, response, returned)| {
                (
                    request.expect("the host put a request in"),
                    response.expect("the host put a response in"),
                    self.judge(Hook::OnResponse, returned),
                )
            })
    }

    /// Calls `on-log`.
    pub fn on_log<'a>(
        self: &'a Arc<Self>,
        request: RequestHead,
        response: ResponseHead,
        exchange: &'a Exchange,
    ) -> impl Future<Output = (RequestHead, ResponseHead, Result<(), HookFailure>)> + 'a {
        self.call(
            HookCall::Log(Cow::Borrowed(exchange)),
            Some(request),
            Some(response),
        )
        .map(|(request, response, returned)| {
            if returned.is_ok() {
                self.record_success(Hook::OnLog);
            }
            (
                request.expect("the host put a request in"),
                response.expect("the host put a response in"),
                returned.map(|_| ()),
            )
        })
    }

    /// Calls `on-app-log` with one application log record, like the other
    /// hooks (breaker, quarantine, instance limit, deadline, output to the
    /// log) but with no heads. `Ok(None)`: the plugin dropped it. A
    /// returned record that is not valid (metadata not a JSON object, ...)
    /// is a failure like any other.
    pub async fn on_app_log(
        self: &Arc<Self>,
        entry: &AppLog,
    ) -> Result<Option<AppLog>, HookFailure> {
        let hook = Hook::OnAppLog;
        let (_, _, returned) = self
            .call(HookCall::AppLog(Cow::Borrowed(entry)), None, None)
            .await;
        let judged = match returned? {
            HookReturn::AppLogged(Ok(Some(entry))) => crate::records::app_logs::check_entry(&entry)
                .map(|_| Some(entry))
                .map_err(HookFailure::Invalid),
            HookReturn::AppLogged(Ok(None)) => Ok(None),
            HookReturn::AppLogged(Err(message)) => Err(HookFailure::Error(message)),
            HookReturn::Action(_) | HookReturn::Logged => {
                unreachable!("an on-app-log call returns what on-app-log returns")
            }
        };
        match &judged {
            Ok(_) => self.record_success(hook),
            // Errors the guest returned and invalid records were not yet
            // recorded.
            Err(failure) => self.record_failure(hook, failure),
        }
        judged
    }

    /// `serving`, `quarantined` or `tripped`, for `/plugins`. A tripped
    /// plugin is not called at all, which says more than where its calls
    /// would run.
    pub fn state_name(&self) -> &'static str {
        match self.breaker.state() {
            BreakerState::Tripped { .. } => "tripped",
            BreakerState::Serving if self.quarantine.remaining().is_some() => "quarantined",
            BreakerState::Serving => "serving",
        }
    }

    /// Whether the version's calls are synchronous or on a fiber.
    pub fn mode(&self) -> &CallMode {
        &self.services.mode
    }

    /// Idle instances in the pool.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

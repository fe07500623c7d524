//! One loaded plugin version: its compiled component, its pre-instance
//! (linked and type-checked once), its pool of idle instances, and the hook
//! calls that move the request head in and out of a store.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use wasmtime::component::{Component, Resource};
use wasmtime::{Engine, Store, UpdateDeadline};

use super::bindings::{Action, Exchange, HookSet, PluginBindings, PluginBindingsPre, Reply};
use super::exchange::{RequestHandle, RequestHead, ResponseHandle, ResponseHead, parse_header};
use super::state::{HostState, PluginServices};
use crate::metrics::HookMetrics;
use crate::plugin_settings::{InstanceMode, PluginSettings};

/// Largest body a plugin may answer with, in bytes.
pub const MAX_REPLY_BODY_BYTES: usize = 4 << 20;
/// Idle instances kept per plugin version. Hook calls never await, so at
/// most one instance per worker thread is busy at a time.
pub const MAX_IDLE_INSTANCES: usize = 64;

/// The three request hooks, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `on-request`.
    OnRequest,
    /// `on-response`.
    OnResponse,
    /// `on-log`.
    OnLog,
}

impl Hook {
    /// The hook's name as used in the WIT, metrics and docs.
    pub fn name(self) -> &'static str {
        match self {
            Hook::OnRequest => "on-request",
            Hook::OnResponse => "on-response",
            Hook::OnLog => "on-log",
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
}

impl Hooks {
    fn from_flags(flags: HookSet) -> Self {
        Self {
            on_request: flags.contains(HookSet::ON_REQUEST),
            on_response: flags.contains(HookSet::ON_RESPONSE),
            on_log: flags.contains(HookSet::ON_LOG),
        }
    }

    /// The hook names, e.g. `["on-request", "on-log"]`.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.on_request, Hook::OnRequest),
            (self.on_response, Hook::OnResponse),
            (self.on_log, Hook::OnLog),
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
    /// The guest trapped (panic, out-of-bounds, stack overflow, out of memory).
    #[error("trapped: {0}")]
    Trap(String),
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
}

impl HookFailure {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HookFailure::Trap(_) => "trap",
            HookFailure::Timeout(_) => "timeout",
            HookFailure::Error(_) => "error",
            HookFailure::Invalid(_) => "invalid",
            HookFailure::Unavailable(_) => "unavailable",
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
    bindings: PluginBindings,
}

/// Per-hook host metrics of one plugin, only for the hooks it implements
/// (so `/metrics` carries no empty series).
#[derive(Default)]
struct PluginHookMetrics {
    on_request: Option<HookMetrics>,
    on_response: Option<HookMetrics>,
    on_log: Option<HookMetrics>,
}

impl PluginHookMetrics {
    fn resolve(metrics: &crate::metrics::Metrics, name: &str, hooks: Hooks) -> Self {
        let resolve = |on: bool, hook: Hook| on.then(|| metrics.hook(name, hook.name()));
        Self {
            on_request: resolve(hooks.on_request, Hook::OnRequest),
            on_response: resolve(hooks.on_response, Hook::OnResponse),
            on_log: resolve(hooks.on_log, Hook::OnLog),
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
    engine: Engine,
    pre: PluginBindingsPre<HostState>,
    services: Arc<PluginServices>,
    idle: Mutex<Vec<PluginInstance>>,
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

fn classify_trap(error: wasmtime::Error, deadline: Duration) -> HookFailure {
    if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
        return HookFailure::Timeout(deadline);
    }
    HookFailure::Trap(format!("{error:#}"))
}

/// Turns a plugin's reply into one the proxy can send, or says why not.
fn validate_reply(reply: Reply) -> Result<PluginReply, HookFailure> {
    let status = StatusCode::from_u16(reply.status)
        .ok()
        .filter(|s| s.as_u16() >= 200)
        .ok_or_else(|| {
            HookFailure::Invalid(format!("status {} is not 200 to 999", reply.status))
        })?;
    if reply.body.len() > MAX_REPLY_BODY_BYTES {
        return Err(HookFailure::Invalid(format!(
            "body of {} bytes is over the {MAX_REPLY_BODY_BYTES}-byte limit",
            reply.body.len()
        )));
    }
    let mut headers = HeaderMap::with_capacity(reply.headers.len());
    for (name, value) in &reply.headers {
        let (name, value) = parse_header(name, value)
            .map_err(|_| HookFailure::Invalid(format!("header {name:?} is not valid")))?;
        headers.append(name, value);
    }
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

/// The arguments of one hook call.
enum HookCall<'a> {
    Request,
    Response,
    Log(&'a Exchange),
}

/// What a hook call returned, before the host judges it.
enum HookReturn {
    Action(Result<Action, String>),
    Logged,
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
        let services = Arc::new(PluginServices::new(
            name,
            runtime.metrics.clone(),
            runtime.shared.clone(),
        ));
        let mut version = Self {
            name: name.into(),
            file,
            sha256,
            settings,
            hooks: Hooks::default(),
            loaded_at: SystemTime::now(),
            failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            engine: runtime.engine.clone(),
            pre,
            services,
            idle: Mutex::new(Vec::new()),
            metrics: PluginHookMetrics::default(),
        };
        let (first, hooks) = version.instantiate().await.map_err(LoadError::Init)?;
        version.hooks = hooks;
        version.metrics = PluginHookMetrics::resolve(&runtime.metrics, name, hooks);
        version.give_back(first);
        Ok(version)
    }

    /// A new instance with `init` run on it.
    async fn instantiate(&self) -> Result<(PluginInstance, Hooks), HookFailure> {
        let state = HostState::new(self.services.clone(), self.settings.memory_limit_bytes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // At every epoch tick the guest yields its thread (so a busy plugin
        // cannot starve other requests) and traps once past its deadline.
        store.epoch_deadline_callback(|context| {
            if Instant::now() >= context.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        // init may parse keys or compile patterns: give it ten hook deadlines.
        let init_deadline = self.settings.hook_timeout * 10;
        store.data_mut().deadline = Instant::now() + init_deadline;
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| HookFailure::Unavailable(format!("{e:#}")))?;
        let flags = bindings
            .tandem_plugin_hooks()
            .call_init(&mut store, &self.settings.config_json)
            .await
            .map_err(|e| classify_trap(e, init_deadline))?
            .map_err(HookFailure::Error)?;
        Ok((PluginInstance { store, bindings }, Hooks::from_flags(flags)))
    }

    async fn checkout(&self) -> Result<PluginInstance, HookFailure> {
        if self.settings.instances == InstanceMode::Reuse {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            if let Some(instance) = idle {
                return Ok(instance);
            }
        }
        self.instantiate().await.map(|(instance, _)| instance)
    }

    fn give_back(&self, instance: PluginInstance) {
        if self.settings.instances == InstanceMode::Fresh {
            return;
        }
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
        }
    }

    /// Runs one hook with the heads moved into a store, and moves them back.
    /// A failed instance is dropped rather than reused.
    async fn call(
        &self,
        call: HookCall<'_>,
        request: RequestHead,
        response: Option<ResponseHead>,
    ) -> (
        RequestHead,
        Option<ResponseHead>,
        Result<HookReturn, HookFailure>,
    ) {
        let hook = match call {
            HookCall::Request => Hook::OnRequest,
            HookCall::Response => Hook::OnResponse,
            HookCall::Log(_) => Hook::OnLog,
        };
        let started = Instant::now();
        let mut instance = match self.checkout().await {
            Ok(instance) => instance,
            Err(failure) => {
                self.record_failure(hook, &failure);
                return (request, response, Err(failure));
            }
        };
        let PluginInstance { store, bindings } = &mut instance;
        store.data_mut().request = Some(request);
        store.data_mut().response = response;
        store.data_mut().deadline = Instant::now() + self.settings.hook_timeout;
        store.set_epoch_deadline(1);
        let hooks = bindings.tandem_plugin_hooks();
        let request_handle = Resource::<RequestHandle>::new_borrow(0);
        let result = match call {
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
                    exchange,
                )
                .await
                .map(|()| HookReturn::Logged),
        };
        let request = store
            .data_mut()
            .request
            .take()
            .expect("the host put a request in");
        let response = store.data_mut().response.take();
        if let Some(metrics) = self.hook_metrics(hook) {
            metrics.observe(started.elapsed());
        }
        match result {
            Ok(value) => {
                self.give_back(instance);
                (request, response, Ok(value))
            }
            Err(error) => {
                let failure = classify_trap(error, self.settings.hook_timeout);
                self.record_failure(hook, &failure);
                (request, response, Err(failure))
            }
        }
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
    }

    /// Judges what an `on-request` or `on-response` hook returned.
    fn judge(
        &self,
        hook: Hook,
        returned: Result<HookReturn, HookFailure>,
    ) -> Result<HookOutcome, HookFailure> {
        match returned? {
            HookReturn::Action(action) => decide(action).inspect_err(|failure| {
                // Errors the guest returned were not yet recorded; invalid
                // results neither.
                self.record_failure(hook, failure);
            }),
            HookReturn::Logged => Ok(HookOutcome::Continue),
        }
    }

    /// Calls `on-request`.
    pub async fn on_request(
        &self,
        request: RequestHead,
    ) -> (RequestHead, Result<HookOutcome, HookFailure>) {
        let (request, _, returned) = self.call(HookCall::Request, request, None).await;
        (request, self.judge(Hook::OnRequest, returned))
    }

    /// Calls `on-response`.
    pub async fn on_response(
        &self,
        request: RequestHead,
        response: ResponseHead,
    ) -> (RequestHead, ResponseHead, Result<HookOutcome, HookFailure>) {
        let (request, response, returned) =
            self.call(HookCall::Response, request, Some(response)).await;
        let response = response.expect("the host put a response in");
        (request, response, self.judge(Hook::OnResponse, returned))
    }

    /// Calls `on-log`.
    pub async fn on_log(
        &self,
        request: RequestHead,
        response: ResponseHead,
        exchange: &Exchange,
    ) -> (RequestHead, ResponseHead, Result<(), HookFailure>) {
        let (request, response, returned) = self
            .call(HookCall::Log(exchange), request, Some(response))
            .await;
        (
            request,
            response.expect("the host put a response in"),
            returned.map(|_| ()),
        )
    }

    /// Idle instances in the pool.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

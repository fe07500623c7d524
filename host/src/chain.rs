//! The plugin chain and its phases: `on-request` in chain order, then
//! `on-response` and `on-log` in reverse order; `on-app-log`, for the
//! application's own log records, in chain order.
//!
//! A chain is immutable; a reload builds a new one and swaps it in, and
//! each request keeps the chain it started with until it is finished.

use std::sync::Arc;

use crate::plugin_settings::FailurePolicy;
use crate::runtime::bindings::{AppLog, Exchange};
use crate::runtime::exchange::{RequestHead, ResponseHead};
use crate::runtime::plugin::{HookFailure, HookOutcome, PluginReply, PluginVersion};

/// What the request phase decided.
#[derive(Debug)]
pub enum RequestVerdict {
    /// Every plugin went on: call the upstream.
    Forward,
    /// The plugin at `by` answered the client.
    Reply {
        /// Position of the plugin in the chain.
        by: usize,
        /// Its reply.
        reply: PluginReply,
    },
    /// The plugin at `by`, whose policy is `closed`, failed.
    Failed {
        /// Position of the plugin in the chain.
        by: usize,
        /// What went wrong.
        failure: HookFailure,
    },
}

/// What the response phase decided.
#[derive(Debug)]
pub enum ResponseVerdict {
    /// Send the (possibly rewritten) upstream response.
    Keep,
    /// A plugin replaced the response; the last replacement wins.
    Replace {
        /// Position of the plugin that replaced it last.
        by: usize,
        /// The new body; the head was already put into the response head.
        body: bytes::Bytes,
    },
    /// The plugin at `by`, whose policy is `closed`, failed.
    Failed {
        /// Position of the plugin.
        by: usize,
        /// What went wrong.
        failure: HookFailure,
    },
}

/// What the app-log phase decided.
#[derive(Debug)]
pub enum AppLogVerdict {
    /// Send this record (as the last plugin returned it) to the sink.
    Keep(AppLog),
    /// The plugin at `by` dropped the record.
    Dropped {
        /// Position of the plugin in the chain.
        by: usize,
        /// Why.
        reason: AppLogDrop,
    },
}

/// Why the app-log phase dropped a record.
#[derive(Debug)]
pub enum AppLogDrop {
    /// The plugin returned `none`.
    Filtered,
    /// The plugin, whose policy is `closed`, failed.
    Failed(HookFailure),
}

/// The plugins of one chain version, in order.
#[derive(Default)]
pub struct Chain {
    plugins: Vec<Arc<PluginVersion>>,
    any_on_request: bool,
    any_on_response: bool,
    any_on_log: bool,
}

impl Chain {
    /// A chain of `plugins`, already in chain order.
    pub fn new(plugins: Vec<Arc<PluginVersion>>) -> Self {
        let any_on_request = plugins.iter().any(|p| p.hooks.on_request);
        let any_on_response = plugins.iter().any(|p| p.hooks.on_response);
        let any_on_log = plugins.iter().any(|p| p.hooks.on_log);
        Self {
            plugins,
            any_on_request,
            any_on_response,
            any_on_log,
        }
    }

    /// The plugins, in chain order.
    pub fn plugins(&self) -> &[Arc<PluginVersion>] {
        &self.plugins
    }

    /// The name of the plugin at a position.
    pub fn name(&self, position: usize) -> &str {
        self.plugins.get(position).map(|p| &*p.name).unwrap_or("?")
    }

    /// Whether any plugin has an `on-request` hook.
    pub fn has_on_request(&self) -> bool {
        self.any_on_request
    }

    /// Whether any plugin has an `on-response` hook.
    pub fn has_on_response(&self) -> bool {
        self.any_on_response
    }

    /// Whether any plugin has an `on-log` hook.
    pub fn has_on_log(&self) -> bool {
        self.any_on_log
    }

    /// Whether any plugin reads request or response heads (has any of the
    /// request-path hooks).
    pub fn reads_heads(&self) -> bool {
        self.has_on_request() || self.has_on_response() || self.has_on_log()
    }

    /// Runs `on-request` in chain order until a plugin answers or fails.
    pub async fn on_request(&self, mut request: RequestHead) -> (RequestHead, RequestVerdict) {
        for (position, plugin) in self.plugins.iter().enumerate() {
            if !plugin.hooks.on_request {
                continue;
            }
            let (back, outcome) = plugin.on_request(request).await;
            request = back;
            match outcome {
                Ok(HookOutcome::Continue) => {}
                Ok(HookOutcome::Respond(reply)) => {
                    return (
                        request,
                        RequestVerdict::Reply {
                            by: position,
                            reply,
                        },
                    );
                }
                Err(failure) => match plugin.settings.failure {
                    FailurePolicy::Open => {}
                    FailurePolicy::Closed => {
                        return (
                            request,
                            RequestVerdict::Failed {
                                by: position,
                                failure,
                            },
                        );
                    }
                },
            }
        }
        (request, RequestVerdict::Forward)
    }

    /// Runs `on-response` in reverse order over the first `reached` plugins
    /// (those whose request phase ran).
    pub async fn on_response(
        &self,
        mut request: RequestHead,
        mut response: ResponseHead,
        reached: usize,
    ) -> (RequestHead, ResponseHead, ResponseVerdict) {
        let mut verdict = ResponseVerdict::Keep;
        for (position, plugin) in self.plugins.iter().enumerate().take(reached).rev() {
            if !plugin.hooks.on_response {
                continue;
            }
            let (req_back, resp_back, outcome) = plugin.on_response(request, response).await;
            request = req_back;
            response = resp_back;
            match outcome {
                Ok(HookOutcome::Continue) => {}
                Ok(HookOutcome::Respond(reply)) => {
                    response.parts.status = reply.status;
                    response.parts.headers = reply.headers;
                    verdict = ResponseVerdict::Replace {
                        by: position,
                        body: reply.body,
                    };
                }
                Err(failure) => match plugin.settings.failure {
                    FailurePolicy::Open => {}
                    FailurePolicy::Closed => {
                        return (
                            request,
                            response,
                            ResponseVerdict::Failed {
                                by: position,
                                failure,
                            },
                        );
                    }
                },
            }
        }
        (request, response, verdict)
    }

    /// Runs `on-app-log` in chain order; each plugin gets the record the
    /// previous one returned. A failing plugin with policy `open` passes the
    /// record on as it got it.
    pub async fn on_app_log(&self, mut entry: AppLog) -> AppLogVerdict {
        for (position, plugin) in self.plugins.iter().enumerate() {
            if !plugin.hooks.on_app_log {
                continue;
            }
            match plugin.on_app_log(&entry).await {
                Ok(Some(next)) => entry = next,
                Ok(None) => {
                    return AppLogVerdict::Dropped {
                        by: position,
                        reason: AppLogDrop::Filtered,
                    };
                }
                Err(failure) => match plugin.settings.failure {
                    FailurePolicy::Open => {}
                    FailurePolicy::Closed => {
                        return AppLogVerdict::Dropped {
                            by: position,
                            reason: AppLogDrop::Failed(failure),
                        };
                    }
                },
            }
        }
        AppLogVerdict::Keep(entry)
    }

    /// Runs `on-log` in reverse order over every plugin that has it.
    pub async fn on_log(
        &self,
        mut request: RequestHead,
        mut response: ResponseHead,
        exchange: &Exchange,
    ) {
        for plugin in self.plugins.iter().rev() {
            if !plugin.hooks.on_log {
                continue;
            }
            let (req_back, resp_back, _) = plugin.on_log(request, response, exchange).await;
            request = req_back;
            response = resp_back;
        }
    }
}

//! Integration tests: the real `tandem` binary, a real upstream on
//! 127.0.0.1 port 0, and plugins compiled from source in the same run.

mod admin;
mod auth;
mod auth_jwks_file;
mod chain;
mod check;
mod containment;
mod hot_swap;
mod logging;
mod metrics_plugin;
mod polyglot;
mod proxy;
mod rate_limit;
mod replay;
mod support;

//! Integration tests: the real `tandem` binary, a real upstream on
//! 127.0.0.1 port 0, and plugins compiled from source in the same run.

mod admin;
mod chain;
mod check;
mod hot_swap;
mod polyglot;
mod proxy;
mod support;

//! Structured records in the host's log, tagged with the plugin's name.
//!
//! ```no_run
//! tandem_sdk::log::info("cache miss", &[("key", "orders/7")]);
//! ```
//!
//! The host cuts messages and fields to its limits and drops records below
//! its level; check [`enabled`] before building an expensive message.

use crate::bindings::tandem::plugin::log as raw;

/// The severity of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Details useful while debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin could handle.
    Warn,
    /// Something failed.
    Error,
}

impl From<Level> for raw::Level {
    fn from(level: Level) -> raw::Level {
        match level {
            Level::Trace => raw::Level::Trace,
            Level::Debug => raw::Level::Debug,
            Level::Info => raw::Level::Info,
            Level::Warn => raw::Level::Warn,
            Level::Error => raw::Level::Error,
        }
    }
}

/// Writes one record with a message and `(name, value)` fields.
pub fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
    raw::write(level.into(), message, fields)
}

/// Whether a record of this level would be written.
pub fn enabled(level: Level) -> bool {
    raw::enabled(level.into())
}

/// Writes a record at [`Level::Trace`].
pub fn trace(message: &str, fields: &[(&str, &str)]) {
    write(Level::Trace, message, fields)
}

/// Writes a record at [`Level::Debug`].
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    write(Level::Debug, message, fields)
}

/// Writes a record at [`Level::Info`].
pub fn info(message: &str, fields: &[(&str, &str)]) {
    write(Level::Info, message, fields)
}

/// Writes a record at [`Level::Warn`].
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    write(Level::Warn, message, fields)
}

/// Writes a record at [`Level::Error`].
pub fn error(message: &str, fields: &[(&str, &str)]) {
    write(Level::Error, message, fields)
}

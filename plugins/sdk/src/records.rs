//! Structured records for the log pipeline: access logs, audit events.
//!
//! A record is one JSON object. The host queues it in a bounded buffer and
//! its sink writes it: stdout as JSON lines by default, a file, or an HTTP
//! collector in batches (`[records]` in tandem.toml). Emitting never
//! blocks. These are not the host's own log; for that, see [`log`](crate::log).
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! tandem_sdk::records::emit(r#"{"event":"login","user":"alice"}"#)?;
//! tandem_sdk::records::emit_json(&serde_json::json!({ "event": "logout" }))?;
//! # Ok(())
//! # }
//! ```
//!
//! When a record cannot be taken it is dropped, the host counts it in
//! `tandem_records_dropped_total{reason}`, and the error says why:
//! `invalid` (not a JSON object), `too_large` (over the host's record size
//! limit), `buffer_full` (the sink is slow or down) or `shutdown`. Most
//! plugins ignore the error, since the host has counted the drop already.

use serde::Serialize;

use crate::bindings::tandem::plugin::records as raw;

/// Queues one record, a JSON object as text, for the sink.
///
/// The host checks that the text is one JSON object and writes it as one
/// line. `Err` means the record was dropped (and counted); the text says
/// why.
pub fn emit(record: &str) -> Result<(), String> {
    raw::emit(record)
}

/// Serializes `record` (which must serialize to a JSON object, e.g. a
/// struct or a map) and queues it like [`emit`].
pub fn emit_json<T: Serialize + ?Sized>(record: &T) -> Result<(), String> {
    let text =
        serde_json::to_string(record).map_err(|e| format!("cannot serialize the record: {e}"))?;
    emit(&text)
}

//! The reverse proxy: listener, request flow through the chain, upstream
//! client, bodies, headers and error responses.

pub mod body;
pub mod connection;
pub mod date_header;
pub mod errors;
pub mod handler;
pub mod head_buffer;
pub mod header_map_pool;
pub mod header_spans;
pub mod headers;
pub mod inbound_head;
pub mod limits;
pub mod log_phase;
pub mod own_http1;
pub mod path;
pub mod protocol;
pub mod received_headers;
pub mod request_lines;
pub mod response_encoder;
pub mod rewind;
pub mod server;
pub mod silence;
pub mod upgrade;
pub mod upstream_codec;
pub mod upstream_exchange;
pub mod upstream_pool;
pub mod workers;

pub use handler::Proxy;

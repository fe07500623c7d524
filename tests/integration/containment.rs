//! Containment: a broken or hostile plugin, or a hostile client, never
//! takes Tandem down. Every misbehaviour gets only what its failure policy
//! says, within a bound, while other requests keep being served; and each
//! event shows in the logs and on `/metrics`.

mod boundary;
mod breaker;
mod call_mode;
mod client_limits;
mod framing;
mod hostile;
mod quarantine;
mod sandbox;
mod traffic;

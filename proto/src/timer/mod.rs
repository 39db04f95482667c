//! Timers: one pure hierarchical timing wheel drives every deadline of the reactor (handshake,
//! idle heartbeat, close linger, long-poll hold, ...). Nothing here reads the clock; the reactor
//! converts its monotonic clock to [`Tick`]s and passes them in.
//! Must not: read a clock or know what a timer is for.

mod wheel;

pub use wheel::{Tick, TimerId, Wheel};

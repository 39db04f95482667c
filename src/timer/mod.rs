//! Timers: one pure hierarchical timing wheel drives every deadline of the reactor (handshake,
//! idle heartbeat, close linger, long-poll hold, ...). Nothing here reads the clock; the reactor
//! converts its monotonic clock to [`Tick`]s and passes them in.

mod wheel;

pub use wheel::{Tick, TimerKey, Wheel};

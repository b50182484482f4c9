//! Event types (SPEC §7) and the retention of the event log.

/// Every event type a team can receive.
pub const EVENT_TYPES: [&str; 9] = [
    "message.received",
    "message.received.spam",
    "message.queued",
    "message.sent",
    "message.delivered",
    "message.deferred",
    "message.bounced",
    "message.failed",
    "message.suppressed",
];

/// Events are kept this long (SPEC §7), then removed by the maintenance job.
pub const RETENTION_MS: i64 = 7 * 24 * 3_600_000;

pub fn is_event_type(s: &str) -> bool {
    EVENT_TYPES.contains(&s)
}

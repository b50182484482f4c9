-- The event log (transactional outbox) and usage metering shared by inbound, outbound,
-- webhooks, streams and billing.

CREATE TABLE events (
    -- Position in the log: assigned in commit order per team (see store::events).
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    mailbox_id TEXT,
    delivery_group_id TEXT,
    message_id TEXT,
    -- The exact JSON bytes delivered to webhooks and streams.
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX events_team ON events(team_id, seq);
CREATE INDEX events_mailbox ON events(mailbox_id, seq);
CREATE INDEX events_created ON events(created_at);

-- One row per billable unit of work; unit_key makes a retried or raced unit count once.
CREATE TABLE usage_records (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX usage_records_team ON usage_records(team_id, metric, created_at);

-- Bytes stored per team over time: +size when a body is stored, -size when deleted.
-- Integrating the running total over time gives GB-months.
CREATE TABLE storage_changes (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    mailbox_id TEXT,
    message_id TEXT,
    delta_bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX storage_changes_team ON storage_changes(team_id, created_at);

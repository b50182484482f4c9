-- Signed webhooks: endpoints, their secrets (sealed; several valid during a rotation
-- grace), deliveries (a queue claimed with a lease) and every attempt.

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    description TEXT,
    -- Comma lists; mailbox_ids NULL means every mailbox.
    event_types TEXT NOT NULL,
    mailbox_ids TEXT,
    enabled BIGINT NOT NULL,
    disabled_reason TEXT,
    -- When the current run of failures began (NULL after a success).
    failing_since BIGINT,
    last_success_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhooks_team ON webhooks(team_id, id);

CREATE TABLE webhook_secrets (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    valid_until BIGINT
);
CREATE INDEX webhook_secrets_webhook ON webhook_secrets(webhook_id, created_at);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- The exact bytes sent on every attempt; NULL once purged after 7 days.
    payload TEXT,
    -- pending, succeeded or failed.
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT,
    locked_until BIGINT,
    lease TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, id);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries(created_at);

CREATE TABLE webhook_attempts (
    id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempted_at BIGINT NOT NULL,
    status_code BIGINT,
    latency_ms BIGINT NOT NULL,
    error TEXT,
    response TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, attempted_at);

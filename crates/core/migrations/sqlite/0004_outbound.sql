-- Outbound mail: the send queue (one row per message, claimed with a lease), every
-- delivery attempt, the team's suppression list and idempotency keys of send requests.

CREATE TABLE outbound_messages (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    delivery_group_id TEXT NOT NULL,
    -- queued | sending | sent | delivered | deferred | bounced | failed | suppressed
    status TEXT NOT NULL,
    from_addr TEXT NOT NULL,
    -- JSON array of envelope recipients (to, cc and bcc).
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- The validated request as JSON; the MIME message is built from it on each attempt.
    request TEXT NOT NULL,
    -- The Message-ID header, fixed at acceptance so retries carry the same one.
    mime_message_id TEXT NOT NULL,
    -- The member that took the message: a provider id, or 'managed'.
    provider_id TEXT,
    provider_message_id TEXT,
    last_error TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until BIGINT,
    -- Past this time a transient failure becomes `failed` (the retry window).
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX outbound_messages_team ON outbound_messages(team_id, id);
CREATE INDEX outbound_messages_due ON outbound_messages(next_attempt_at)
    WHERE status IN ('queued', 'sending', 'deferred');
CREATE INDEX outbound_messages_provider_msg ON outbound_messages(provider_message_id);

CREATE TABLE outbound_attempts (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    message_id TEXT NOT NULL,
    delivery_group_id TEXT NOT NULL,
    -- a provider id, or 'managed'
    provider_id TEXT NOT NULL,
    provider_type TEXT NOT NULL,
    -- sent | deferred | bounced | failed | provider_error
    outcome TEXT NOT NULL,
    -- The provider's answer (SMTP reply or SES response), for people to read.
    response TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX outbound_attempts_team ON outbound_attempts(team_id, id);
CREATE INDEX outbound_attempts_message ON outbound_attempts(message_id, id);

CREATE TABLE suppressions (
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    -- lower-cased address
    address TEXT NOT NULL,
    -- hard_bounce | complaint
    reason TEXT NOT NULL,
    message_id TEXT,
    detail TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (team_id, address)
);

CREATE TABLE idempotency_keys (
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    -- the delivery group the sending key is scoped to
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code BIGINT,
    response TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (team_id, scope, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);


-- An accepted request now lives in the blob store beside inbound bodies (`body_key`,
-- flushed before its row commits): a send with a 10 MB attachment no longer travels
-- through the write-ahead log, and the queue row stays small. Rows queued before keep
-- theirs in `request`. SQLite cannot drop a NOT NULL, so the table is rebuilt (nothing
-- references it by foreign key).

CREATE TABLE outbound_messages_new (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    delivery_group_id TEXT NOT NULL,
    -- queued | sending | sent | delivered | deferred | bounced | failed | suppressed
    status TEXT NOT NULL,
    from_addr TEXT NOT NULL,
    -- JSON array of envelope recipients (to, cc and bcc).
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- The validated request as JSON, for rows queued before body_key existed.
    request TEXT,
    -- The blob key of the validated request as JSON; the MIME message is built from it
    -- on each attempt.
    body_key TEXT,
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
INSERT INTO outbound_messages_new (id, team_id, delivery_group_id, status, from_addr, recipients, subject,
    request, mime_message_id, provider_id, provider_message_id, last_error, attempts, next_attempt_at,
    locked_until, expires_at, created_at, updated_at)
SELECT id, team_id, delivery_group_id, status, from_addr, recipients, subject,
    request, mime_message_id, provider_id, provider_message_id, last_error, attempts, next_attempt_at,
    locked_until, expires_at, created_at, updated_at
FROM outbound_messages;
DROP TABLE outbound_messages;
ALTER TABLE outbound_messages_new RENAME TO outbound_messages;
CREATE INDEX outbound_messages_team ON outbound_messages(team_id, id);
CREATE INDEX outbound_messages_due ON outbound_messages(next_attempt_at)
    WHERE status IN ('queued', 'sending', 'deferred');
CREATE INDEX outbound_messages_provider_msg ON outbound_messages(provider_message_id)
    WHERE provider_message_id IS NOT NULL;

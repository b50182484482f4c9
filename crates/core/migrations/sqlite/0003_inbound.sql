-- Inbound mail: one row per message copy delivered to a mailbox. The raw bytes live in
-- the blob store under blob_key (written and flushed before this row is committed);
-- the parsed detail is re-read from them, so only what lists and filters need is here.

CREATE TABLE inbound_messages (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    mailbox_id TEXT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    blob_key TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    -- 'smtp' or 'api'
    source TEXT NOT NULL,
    remote_ip TEXT,
    helo TEXT,
    mail_from TEXT NOT NULL,
    rcpt_to TEXT NOT NULL,
    from_address TEXT,
    from_name TEXT,
    subject TEXT,
    header_message_id TEXT,
    attachment_count BIGINT NOT NULL,
    spam_score DOUBLE PRECISION NOT NULL,
    is_spam BIGINT NOT NULL,
    -- JSON: SPF/DKIM/DMARC results and the score's signals.
    auth_results TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX inbound_messages_mailbox ON inbound_messages(team_id, mailbox_id, id);
CREATE INDEX inbound_messages_retention ON inbound_messages(mailbox_id, received_at);

-- Conversations (SPEC §16): every message, inbound or outbound, belongs to a thread.
-- thread_refs maps what a later message may point at — a Message-ID ("m:<id>") or, for
-- mail without usable headers, a mailbox's normalised subject and correspondent
-- ("s:<mailbox>:<subject>:<address>") — to its thread, per team.
CREATE TABLE thread_refs (
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    ref_key TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (team_id, ref_key)
);

-- Messages stored before threads each start their own (the message's ULID reused).
ALTER TABLE inbound_messages ADD COLUMN thread_id TEXT;
UPDATE inbound_messages SET thread_id = 'thr_' || substr(id, 5);
-- The new text of a message, without quoted history or signature.
ALTER TABLE inbound_messages ADD COLUMN extracted_text TEXT;
-- 'inbound', or 'outbound' for the copy of a message the mailbox sent.
ALTER TABLE inbound_messages ADD COLUMN direction TEXT NOT NULL DEFAULT 'inbound';
CREATE INDEX inbound_messages_thread ON inbound_messages(team_id, mailbox_id, thread_id, id);

ALTER TABLE outbound_messages ADD COLUMN thread_id TEXT;
UPDATE outbound_messages SET thread_id = 'thr_' || substr(id, 5);

-- Search (SPEC §16): from, to, subject and text in one column, matched through a GIN
-- index of its `simple` text-search vector (no stemming, like SQLite's FTS5 default).
-- Older rows get their addresses and subject.
ALTER TABLE inbound_messages ADD COLUMN search_text TEXT;
UPDATE inbound_messages SET search_text =
    coalesce(from_name, '') || ' ' || coalesce(from_address, '') || ' ' || rcpt_to || ' ' || coalesce(subject, '');
CREATE INDEX inbound_messages_search ON inbound_messages
    USING GIN (to_tsvector('simple', coalesce(search_text, '')));

-- Sending from a mailbox (SPEC §16): the delivery group its mail goes through, and the
-- policy (JSON {reply_only, allowed_domains, daily_limit}) that bounds what it may send.
ALTER TABLE mailboxes ADD COLUMN send_delivery_group_id TEXT;
ALTER TABLE mailboxes ADD COLUMN send_policy TEXT;

-- An accepted request now lives in the blob store beside inbound bodies (`body_key`,
-- flushed before its row commits): a send with a 10 MB attachment no longer travels
-- through the database's log, and the queue row stays small. Rows queued before keep
-- theirs in `request`.
ALTER TABLE outbound_messages ADD COLUMN body_key TEXT;
ALTER TABLE outbound_messages ALTER COLUMN request DROP NOT NULL;

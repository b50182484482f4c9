-- Fewer index writes on the hot inserts (accepted mail, the event log); each index is
-- another B-tree page rewritten at every commit.
-- Outbound events carry no mailbox, and accepted mail has no provider message id yet:
-- index only the rows that have one (`x = $1` implies `x IS NOT NULL`, so the lookups
-- still use these indexes).
DROP INDEX events_mailbox;
CREATE INDEX events_mailbox ON events(mailbox_id, seq) WHERE mailbox_id IS NOT NULL;
DROP INDEX outbound_messages_provider_msg;
CREATE INDEX outbound_messages_provider_msg ON outbound_messages(provider_message_id)
    WHERE provider_message_id IS NOT NULL;
-- Expiry walks the log by position (store::events::delete_older_than).
DROP INDEX events_created;

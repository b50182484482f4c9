-- Message bodies to erase from the blob store. Written in the transaction that deletes
-- the rows pointing at them, and removed once the bodies are erased (durably): a crash
-- in between leaves the entry, and the maintenance job erases what it names. `key` is a
-- body's key, or `<team_id>/` for every body of a deleted team.
CREATE TABLE blob_erasures (
    key TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

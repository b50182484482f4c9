-- Rate limits across nodes (PostgreSQL): a node leases a share of a window's requests
-- at a time; `granted` is the share the last lease got (`count` is what all leases took).
ALTER TABLE rate_windows ADD COLUMN granted INTEGER NOT NULL DEFAULT 0;

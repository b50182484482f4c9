-- Team domains (API.md §14): a name a team proves it owns through DNS, then sends from
-- (DKIM-signed with the key here, sealed with the instance key like provider
-- credentials) and receives on. A name may be pending for several teams, but verified
-- for one team at most (the partial unique index). During a DKIM rotation the next key
-- waits in next_dkim_* until its record is published, and the current one keeps signing.

CREATE TABLE domains (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    -- ASCII (IDNs as punycode), lower case, no trailing dot.
    name TEXT NOT NULL,
    -- pending | verified | failed
    status TEXT NOT NULL,
    -- 1 when the MX record points at this instance's SMTP host name.
    receiving BIGINT NOT NULL,
    -- The value of the ownership TXT record, `sendmux-verification=<token>`.
    token TEXT NOT NULL,
    dkim_selector TEXT NOT NULL,
    -- rsa-sha256 | ed25519-sha256
    dkim_algorithm TEXT NOT NULL,
    -- The `p=` of the DKIM record (base64).
    dkim_public_key TEXT NOT NULL,
    -- The private key (DER), sealed.
    dkim_private_key TEXT NOT NULL,
    next_dkim_selector TEXT,
    next_dkim_algorithm TEXT,
    next_dkim_public_key TEXT,
    next_dkim_private_key TEXT,
    -- JSON: per record purpose, {"status", "checked_at"} of the last lookup.
    checks TEXT NOT NULL,
    -- Why the domain is not (or no longer) verified, from the last lookup.
    reason TEXT,
    verified_at BIGINT,
    checked_at BIGINT,
    -- When the background check looks again (also its lease while it looks).
    next_check_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (team_id, name)
);
CREATE UNIQUE INDEX domains_verified_name ON domains(name) WHERE status = 'verified';
CREATE INDEX domains_due ON domains(next_check_at);

-- The `+tag` of the address a message was sent to (`local+tag@domain` delivered to
-- `local@domain` or the domain's catch-all).
ALTER TABLE inbound_messages ADD COLUMN plus_tag TEXT;

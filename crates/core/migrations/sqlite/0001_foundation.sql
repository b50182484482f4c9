-- Foundation: teams, people, keys, team resources, limits, audit.
-- Timestamps are Unix milliseconds (BIGINT) so one query text serves SQLite and PostgreSQL.

CREATE TABLE instance_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX memberships_user ON memberships(user_id, created_at);
-- Exactly one owner per team: a second owner row is a constraint violation.
CREATE UNIQUE INDEX memberships_one_owner ON memberships(team_id) WHERE role = 'owner';

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    invited_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    accepted_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX invitations_team ON invitations(team_id, id);

CREATE TABLE providers (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    sealed_secrets TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX providers_team ON providers(team_id, id);

CREATE TABLE delivery_groups (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    strategy TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX delivery_groups_team ON delivery_groups(team_id, id);

CREATE TABLE delivery_group_members (
    group_id TEXT NOT NULL REFERENCES delivery_groups(id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    -- NULL means the operator's managed SES route.
    provider_id TEXT REFERENCES providers(id),
    priority BIGINT NOT NULL,
    weight BIGINT NOT NULL,
    PRIMARY KEY (group_id, position)
);
CREATE INDEX delivery_group_members_provider ON delivery_group_members(provider_id);

CREATE TABLE mailboxes (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    address TEXT NOT NULL UNIQUE,
    name TEXT,
    spam_threshold DOUBLE PRECISION NOT NULL,
    retention_days BIGINT NOT NULL,
    accept_spam BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX mailboxes_team ON mailboxes(team_id, id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    permissions TEXT NOT NULL,
    delivery_group_id TEXT,
    mailbox_id TEXT,
    prefix TEXT NOT NULL,
    last4 TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_keys_team ON api_keys(team_id, id);
CREATE INDEX api_keys_group ON api_keys(delivery_group_id);
CREATE INDEX api_keys_mailbox ON api_keys(mailbox_id);

-- Every secret a key answers to: the current one, and old ones during a rotation grace.
CREATE TABLE key_secrets (
    secret_hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    valid_until BIGINT
);
CREATE INDEX key_secrets_key ON key_secrets(key_id);

CREATE TABLE team_limits (
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (team_id, name)
);

CREATE TABLE limit_increase_requests (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    limit_name TEXT NOT NULL,
    current_limit BIGINT NOT NULL,
    requested BIGINT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    granted BIGINT
);
CREATE INDEX limit_increase_requests_status ON limit_increase_requests(status, id);
CREATE INDEX limit_increase_requests_team ON limit_increase_requests(team_id, id);

-- Fixed-window request counters shared by every node on PostgreSQL.
CREATE TABLE rate_windows (
    bucket TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    actor_type TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    ip TEXT,
    details TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_log_team ON audit_log(team_id, id);

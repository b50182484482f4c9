//! Who is calling: users (argon2 passwords, hashed session tokens) and API keys (hashed
//! secrets), resolved to a [`Principal`] with its team, permissions and scope before any
//! handler runs.

pub mod password;
pub mod perms;

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::crypto::{secure_eq, token_hash};
use crate::error::{Error, Result};
use crate::store::{Backend, Store, audit::Actor, keys as key_q, now_ms, people};
use perms::{KeyKind, Perm, PermSet, Role};

pub const SESSION_PREFIX: &str = "smx_ses_";
pub const INVITATION_PREFIX: &str = "smx_inv_";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    User { user_id: String, role: Role, session_id: String },
    Key { key_id: String, kind: KeyKind },
}

/// What a key may reach inside its team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Team,
    DeliveryGroup(String),
    Mailbox(String),
}

#[derive(Clone, Debug)]
pub struct Principal {
    pub team_id: crate::ids::TeamId,
    pub credential: Credential,
    pub perms: PermSet,
    pub scope: Scope,
    pub ip: Option<String>,
    /// Requests per minute for this credential, and the bucket counting them.
    pub rate_limit: i64,
    pub rate_bucket: String,
}

impl Principal {
    pub fn require(&self, perm: Perm) -> Result<()> {
        if self.perms.has(perm) {
            Ok(())
        } else {
            Err(Error::forbidden(format!("This credential lacks the `{}` permission", perm.name())))
        }
    }

    pub fn actor(&self) -> Actor {
        let (kind, id) = match &self.credential {
            Credential::User { user_id, .. } => ("user", user_id.clone()),
            Credential::Key { key_id, .. } => ("key", key_id.clone()),
        };
        Actor { kind, id, ip: self.ip.clone() }
    }

    pub fn user_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::User { user_id, .. } => Some(user_id),
            Credential::Key { .. } => None,
        }
    }

    pub fn role(&self) -> Option<Role> {
        match &self.credential {
            Credential::User { role, .. } => Some(*role),
            Credential::Key { .. } => None,
        }
    }

    pub fn key_kind(&self) -> Option<KeyKind> {
        match &self.credential {
            Credential::Key { kind, .. } => Some(*kind),
            Credential::User { .. } => None,
        }
    }

    /// The one mailbox a mailbox key is scoped to.
    pub fn mailbox_scope(&self) -> Option<&str> {
        match &self.scope {
            Scope::Mailbox(id) => Some(id),
            _ => None,
        }
    }
}

struct CacheEntry {
    principal: Principal,
    valid_until: i64,
}

/// Resolves bearer tokens. Resolved credentials are cached in memory and the whole cache
/// is dropped on any change to keys, sessions, members or limits, so a revoked key fails
/// on the very next request. On PostgreSQL a change made on any node reaches every other
/// node's cache as `NOTIFY sendmux_changes` ([`crate::Core::commit_credentials`]); the
/// cache is on only while this node's listener is connected ([`Authenticator::set_caching`]).
pub struct Authenticator {
    store: Store,
    caching: std::sync::atomic::AtomicBool,
    cache: RwLock<HashMap<(String, Option<String>), CacheEntry>>,
    generation: AtomicU64,
    last_touch: Mutex<HashMap<String, i64>>,
    sending_default: i64,
    other_default: i64,
}

/// Cached credentials are re-read at least this often, so changes made by another
/// process on the same SQLite file (the CLI) take effect within it.
const CACHE_TTL_MS: i64 = 30_000;

impl Authenticator {
    pub fn new(store: Store, sending_default: i64, other_default: i64) -> Self {
        Self {
            caching: (store.backend() == Backend::Sqlite).into(),
            store,
            cache: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            last_touch: Mutex::new(HashMap::new()),
            sending_default,
            other_default,
        }
    }

    fn caching(&self) -> bool {
        self.caching.load(Ordering::Acquire)
    }

    /// Turns the cache on or off, forgetting every credential either way.
    pub fn set_caching(&self, on: bool) {
        if !on {
            self.caching.store(false, Ordering::Release);
        }
        self.invalidate();
        if on {
            self.caching.store(true, Ordering::Release);
        }
    }

    /// Forget every cached credential on this node. Services call
    /// [`crate::Core::commit_credentials`] or [`crate::Core::credentials_changed`], which
    /// also tell the other nodes.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.write().clear();
    }

    pub async fn authenticate(&self, token: &str, team: Option<&str>) -> Result<Principal> {
        let hash = token_hash(token);
        let now = now_ms();
        let is_session = token.starts_with(SESSION_PREFIX);
        // A key belongs to one team; only sessions choose a team by header.
        let cache_key = (hash, if is_session { team.map(str::to_owned) } else { None });
        if self.caching()
            && let Some(entry) = self.cache.read().get(&cache_key)
            && entry.valid_until > now
        {
            return key_in_team(entry.principal.clone(), team);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let (principal, valid_until) = if is_session {
            self.resolve_session(&cache_key.0, team, now).await?
        } else if let Some(kind) = KeyKind::from_token(token) {
            self.resolve_key(&cache_key.0, kind, now).await?
        } else {
            return Err(Error::unauthenticated("The bearer token is not a Sendmux key or session"));
        };
        if self.caching() {
            let mut cache = self.cache.write();
            // A change committed while we read must not be hidden by a stale entry.
            if self.generation.load(Ordering::SeqCst) == generation {
                if cache.len() > 50_000 {
                    cache.clear();
                }
                cache.insert(
                    cache_key,
                    CacheEntry { principal: principal.clone(), valid_until: valid_until.min(now + CACHE_TTL_MS) },
                );
            }
        }
        key_in_team(principal, team)
    }

    async fn resolve_key(&self, hash: &str, kind: KeyKind, now: i64) -> Result<(Principal, i64)> {
        let invalid = || Error::unauthenticated("Invalid, expired or revoked API key");
        let mut conn = self.store.pool().acquire().await?;
        let row = key_q::auth_lookup(&mut conn, hash).await?.ok_or_else(invalid)?;
        if !secure_eq(row.secret_hash.as_bytes(), hash.as_bytes()) || row.kind != kind.as_str() {
            return Err(invalid());
        }
        if row.revoked_at.is_some()
            || row.expires_at.is_some_and(|e| e <= now)
            || row.valid_until.is_some_and(|v| v <= now)
        {
            return Err(invalid());
        }
        let granted = parse_permissions(&row.permissions);
        let scope = match kind {
            KeyKind::Infrastructure => Scope::Team,
            KeyKind::Sending => Scope::DeliveryGroup(row.delivery_group_id.clone().unwrap_or_default()),
            KeyKind::Mailbox => Scope::Mailbox(row.mailbox_id.clone().unwrap_or_default()),
        };
        let rate_limit = match kind {
            KeyKind::Sending => row.sending_limit.unwrap_or(self.sending_default),
            _ => self.other_default,
        };
        self.touch(&row.id, now);
        let valid_until = [row.expires_at, row.valid_until].into_iter().flatten().min().unwrap_or(i64::MAX);
        Ok((
            Principal {
                team_id: crate::ids::TeamId::stored(row.team_id),
                credential: Credential::Key { key_id: row.id.clone(), kind },
                perms: kind.effective(granted),
                scope,
                ip: None,
                rate_limit,
                rate_bucket: row.id,
            },
            valid_until,
        ))
    }

    async fn resolve_session(&self, hash: &str, team: Option<&str>, now: i64) -> Result<(Principal, i64)> {
        let mut conn = self.store.pool().acquire().await?;
        let rows = people::session_memberships(&mut conn, hash).await?;
        let first = rows.first().ok_or_else(|| Error::unauthenticated("Invalid or expired session"))?;
        if first.expires_at <= now {
            return Err(Error::unauthenticated("Invalid or expired session"));
        }
        let chosen = match team {
            Some(team) => {
                rows.iter().find(|r| r.team_id.as_deref() == Some(team)).ok_or_else(|| Error::not_found("team"))?
            }
            None => rows
                .iter()
                .find(|r| r.team_id.is_some())
                .ok_or_else(|| Error::forbidden("This user is not a member of any team"))?,
        };
        let role =
            chosen.role.as_deref().and_then(Role::parse).ok_or_else(|| Error::internal("membership without a role"))?;
        Ok((
            Principal {
                team_id: crate::ids::TeamId::stored(chosen.team_id.clone().unwrap_or_default()),
                credential: Credential::User {
                    user_id: first.user_id.clone(),
                    role,
                    session_id: first.session_id.clone(),
                },
                perms: role.permissions(),
                scope: Scope::Team,
                ip: None,
                rate_limit: self.other_default,
                // All of a person's sessions share one window.
                rate_bucket: first.user_id.clone(),
            },
            first.expires_at,
        ))
    }

    /// Records `last_used_at`, at most once a minute per key and off the request path.
    fn touch(&self, key_id: &str, now: i64) {
        {
            let mut seen = self.last_touch.lock();
            if seen.get(key_id).is_some_and(|t| now - t < 60_000) {
                return;
            }
            if seen.len() > 100_000 {
                seen.clear();
            }
            seen.insert(key_id.to_owned(), now);
        }
        let store = self.store.clone();
        let key_id = key_id.to_owned();
        tokio::spawn(async move {
            if let Ok(mut conn) = store.write_conn().await
                && let Err(e) = key_q::touch(&mut conn, &key_id, now).await
            {
                tracing::warn!(key_id, error = %e, "could not record key use");
            }
        });
    }
}

/// A key sent with `X-Sendmux-Team` naming another team finds no such team.
fn key_in_team(principal: Principal, team: Option<&str>) -> Result<Principal> {
    match (&principal.credential, team) {
        (Credential::Key { .. }, Some(team)) if team != principal.team_id.as_str() => Err(Error::not_found("team")),
        _ => Ok(principal),
    }
}

pub fn parse_permissions(stored: &str) -> PermSet {
    PermSet::of(&stored.split(',').filter_map(Perm::parse_key_permission).collect::<Vec<_>>())
}

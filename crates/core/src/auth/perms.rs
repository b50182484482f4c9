//! Roles, key kinds and the permissions each carries. A credential resolves to a
//! [`PermSet`]; handlers ask for one [`Perm`] and never look at roles or kinds.

use serde::{Deserialize, Serialize};

/// Everything a handler may require. `KEY_PERMISSIONS` are the key permissions of API.md §3
/// (the names keys carry); the rest are what roles grant people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Perm {
    ProvidersManage,
    MailboxesManage,
    WebhooksManage,
    KeysManage,
    BillingRead,
    LogsRead,
    EmailSend,
    MailboxRead,
    MailboxSettingsUpdate,
    EmailReceive,
    TeamRead,
    TeamUpdate,
    TeamDelete,
    TeamTransfer,
    MembersRead,
    MembersManage,
    ProvidersRead,
    MailboxesRead,
    KeysRead,
    WebhooksRead,
    LimitsRead,
    LimitsRequest,
    /// Message content (bodies, headers, raw MIME, attachments); `MailboxRead` alone
    /// shows metadata.
    MessageContentRead,
    /// Team domains (API.md §14): adding, verifying, rotating DKIM, deleting.
    DomainsManage,
    DomainsRead,
    /// Send from a mailbox's own address (SPEC §16): a key permission, never a default.
    MailboxSend,
}

impl Perm {
    pub const KEY_PERMISSIONS: [Perm; 12] = [
        Perm::ProvidersManage,
        Perm::MailboxesManage,
        Perm::WebhooksManage,
        Perm::KeysManage,
        Perm::BillingRead,
        Perm::LogsRead,
        Perm::EmailSend,
        Perm::MailboxRead,
        Perm::MailboxSettingsUpdate,
        Perm::EmailReceive,
        Perm::DomainsManage,
        Perm::MailboxSend,
    ];

    /// The dotted name of API.md §3 for key permissions; a descriptive one otherwise.
    pub fn name(self) -> &'static str {
        match self {
            Perm::ProvidersManage => "providers.manage",
            Perm::MailboxesManage => "mailboxes.manage",
            Perm::WebhooksManage => "webhooks.manage",
            Perm::KeysManage => "keys.manage",
            Perm::BillingRead => "billing.read",
            Perm::LogsRead => "logs.read",
            Perm::EmailSend => "email.send",
            Perm::MailboxRead => "mailbox.read",
            Perm::MailboxSettingsUpdate => "mailbox.settings.update",
            Perm::EmailReceive => "email.receive",
            Perm::TeamRead => "team.read",
            Perm::TeamUpdate => "team.update",
            Perm::TeamDelete => "team.delete",
            Perm::TeamTransfer => "team.transfer",
            Perm::MembersRead => "members.read",
            Perm::MembersManage => "members.manage",
            Perm::ProvidersRead => "providers.read",
            Perm::MailboxesRead => "mailboxes.read",
            Perm::KeysRead => "keys.read",
            Perm::WebhooksRead => "webhooks.read",
            Perm::LimitsRead => "limits.read",
            Perm::LimitsRequest => "limits.request",
            Perm::MessageContentRead => "messages.content.read",
            Perm::DomainsManage => "domains.manage",
            Perm::DomainsRead => "domains.read",
            Perm::MailboxSend => "mailbox.send",
        }
    }

    /// Parses a key permission name; other names are not grantable to keys.
    pub fn parse_key_permission(name: &str) -> Option<Perm> {
        Perm::KEY_PERMISSIONS.into_iter().find(|p| p.name() == name)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PermSet(u32);

impl PermSet {
    pub const fn empty() -> Self {
        Self(0)
    }
    pub fn of(perms: &[Perm]) -> Self {
        perms.iter().fold(Self::empty(), |s, p| s.with(*p))
    }
    pub const fn with(self, p: Perm) -> Self {
        Self(self.0 | (1 << p as u8))
    }
    pub const fn has(self, p: Perm) -> bool {
        self.0 & (1 << p as u8) != 0
    }
    pub fn union(self, other: PermSet) -> Self {
        Self(self.0 | other.0)
    }
    /// The key permissions in the set, in API.md order.
    pub fn key_permission_names(self) -> Vec<&'static str> {
        Perm::KEY_PERMISSIONS.into_iter().filter(|p| self.has(*p)).map(Perm::name).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Developer,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "developer" => Some(Role::Developer),
            "member" => Some(Role::Member),
            _ => None,
        }
    }

    /// The role → permission matrix of API.md §2; each role has all of the one below.
    pub fn permissions(self) -> PermSet {
        use Perm::*;
        let member = PermSet::of(&[
            TeamRead,
            MembersRead,
            ProvidersRead,
            MailboxesRead,
            KeysRead,
            WebhooksRead,
            LimitsRead,
            MailboxRead,
            DomainsRead,
        ]);
        // API.md §2: members see metadata, never message content.
        let developer = member.union(PermSet::of(&[KeysManage, WebhooksManage, LogsRead, MessageContentRead]));
        let admin = developer.union(PermSet::of(&[
            TeamUpdate,
            MembersManage,
            ProvidersManage,
            MailboxesManage,
            MailboxSettingsUpdate,
            EmailReceive,
            LimitsRequest,
            BillingRead,
            DomainsManage,
            MailboxSend,
        ]));
        let owner = admin.union(PermSet::of(&[TeamDelete, TeamTransfer]));
        match self {
            Role::Member => member,
            Role::Developer => developer,
            Role::Admin => admin,
            Role::Owner => owner,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Infrastructure,
    Sending,
    Mailbox,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Infrastructure => "infrastructure",
            KeyKind::Sending => "sending",
            KeyKind::Mailbox => "mailbox",
        }
    }
    pub fn parse(s: &str) -> Option<KeyKind> {
        match s {
            "infrastructure" => Some(KeyKind::Infrastructure),
            "sending" => Some(KeyKind::Sending),
            "mailbox" => Some(KeyKind::Mailbox),
            _ => None,
        }
    }
    pub fn token_prefix(self) -> &'static str {
        match self {
            KeyKind::Infrastructure => "smx_inf_",
            KeyKind::Sending => "smx_snd_",
            KeyKind::Mailbox => "smx_mbx_",
        }
    }
    pub fn from_token(token: &str) -> Option<KeyKind> {
        [KeyKind::Infrastructure, KeyKind::Sending, KeyKind::Mailbox]
            .into_iter()
            .find(|k| token.starts_with(k.token_prefix()))
    }

    /// The permissions a key of this kind may carry (API.md §3).
    pub fn allowed(self) -> &'static [Perm] {
        use Perm::*;
        match self {
            KeyKind::Infrastructure => {
                &[ProvidersManage, MailboxesManage, WebhooksManage, KeysManage, BillingRead, LogsRead, DomainsManage]
            }
            KeyKind::Sending => &[EmailSend],
            KeyKind::Mailbox => &[MailboxRead, MailboxSettingsUpdate, EmailReceive, MailboxSend],
        }
    }

    /// What a key of this kind gets when the request names no permissions.
    pub fn default_permissions(self) -> PermSet {
        match self {
            KeyKind::Infrastructure => PermSet::of(&self.allowed()[..3]).union(PermSet::of(&self.allowed()[4..])),
            KeyKind::Sending => PermSet::of(&[Perm::EmailSend]),
            KeyKind::Mailbox => PermSet::of(&[Perm::MailboxRead]),
        }
    }

    /// What a key's granted permissions let it do: a manage permission implies
    /// reading the same resource, and every infrastructure key may read its team and
    /// limits.
    pub fn effective(self, granted: PermSet) -> PermSet {
        use Perm::*;
        let mut set = granted;
        if self == KeyKind::Infrastructure {
            set = set.with(TeamRead).with(LimitsRead);
            for (manage, read) in [
                (ProvidersManage, ProvidersRead),
                (MailboxesManage, MailboxesRead),
                (WebhooksManage, WebhooksRead),
                (KeysManage, KeysRead),
                (DomainsManage, DomainsRead),
            ] {
                if granted.has(manage) {
                    set = set.with(read);
                }
            }
            if granted.has(MailboxesManage) {
                set = set.with(MailboxRead).with(MailboxSettingsUpdate).with(EmailReceive).with(MailboxSend);
            }
        }
        // A key that reads a mailbox reads its messages (API.md §6).
        if set.has(MailboxRead) {
            set = set.with(MessageContentRead);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infrastructure_default_leaves_out_keys_manage() {
        let d = KeyKind::Infrastructure.default_permissions();
        assert!(!d.has(Perm::KeysManage));
        assert_eq!(
            d.key_permission_names(),
            vec![
                "providers.manage",
                "mailboxes.manage",
                "webhooks.manage",
                "billing.read",
                "logs.read",
                "domains.manage"
            ]
        );
        assert_eq!(KeyKind::Mailbox.default_permissions().key_permission_names(), vec!["mailbox.read"]);
    }

    #[test]
    fn each_role_holds_the_one_below() {
        let roles = [Role::Member, Role::Developer, Role::Admin, Role::Owner];
        for w in roles.windows(2) {
            let (lo, hi) = (w[0].permissions(), w[1].permissions());
            assert_eq!(lo.union(hi), hi, "{:?} should include {:?}", w[1], w[0]);
            assert_ne!(lo, hi);
        }
        assert!(!Role::Admin.permissions().has(Perm::TeamDelete));
        assert!(!Role::Member.permissions().has(Perm::LogsRead));
        assert!(!Role::Member.permissions().has(Perm::MessageContentRead));
        assert!(Role::Developer.permissions().has(Perm::MessageContentRead));
        assert!(!Role::Developer.permissions().has(Perm::BillingRead));
    }
}

//! The rules of `outbound::manage` (providers, delivery groups) and `inbound::messages`
//! called as a surface calls them, without HTTP: a `Core` over a fresh store — a SQLite
//! file in a temporary folder, or a new PostgreSQL database dropped afterwards, chosen by
//! `SENDMUX_TEST_STORE=sqlite|postgres` as the API tests choose.

use sendmux_core::Core;
use sendmux_core::auth::perms::{KeyKind, Role};
use sendmux_core::auth::{Credential, Principal, SESSION_PREFIX, Scope};
use sendmux_core::crypto::{random_token, token_hash};
use sendmux_core::error::Error;
use sendmux_core::ids::{DeliveryGroupId, MailboxId, ProviderId, TeamId};
use sendmux_core::inbound::messages;
use sendmux_core::keys::{self, NewKey};
use sendmux_core::mailboxes::{self, NewMailbox};
use sendmux_core::outbound::manage::{
    self, GroupMember, NewGroup, NewProvider, ProviderChange, ProviderType, Strategy,
};
use sendmux_core::teams::{self, NewTeam};
use serde_json::json;

mod common;
use common::{TestCore, core_with};

/// Provider destinations in 10.0.0.0/8 are allowed, as an operator may allow them;
/// every other non-public address is refused.
async fn test_core() -> TestCore {
    core_with(&[
        ("SENDMUX_INBOUND_DOMAINS", "localhost"),
        ("SENDMUX_DNS_SERVER", "off"),
        ("SENDMUX_PROVIDER_ALLOWED_NETWORKS", "10.0.0.0/8"),
    ])
    .await
}

/// A new team and its owner, signed in as the API signs people in.
async fn owner(core: &Core, team: &str) -> Principal {
    let token = random_token(SESSION_PREFIX);
    let email = format!("owner@{team}.example.com");
    teams::create_with_owner(
        &core.store,
        NewTeam {
            name: team,
            owner_email: &email,
            password_hash: Some("not a real hash".into()),
            actor: None,
            ip: None,
            require_new_user: true,
            session: Some((&token_hash(&token), 3_600_000)),
        },
    )
    .await
    .expect("team");
    let p = core.auth.authenticate(&token, None).await.expect("owner session");
    assert_eq!(p.role(), Some(Role::Owner));
    p
}

/// A person of `team` with `role`, as the authenticator would make one.
fn person(team: &TeamId, role: Role) -> Principal {
    Principal {
        team_id: team.clone(),
        credential: Credential::User { user_id: "usr_someone".into(), role, session_id: "ses_x".into() },
        perms: role.permissions(),
        scope: Scope::Team,
        ip: None,
        rate_limit: 100,
        rate_bucket: "usr_someone".into(),
    }
}

fn smtp(name: &str, host: &str) -> NewProvider {
    NewProvider {
        name: name.into(),
        kind: ProviderType::Smtp,
        config: json!({"host": host, "port": 587, "username": "relay", "password": "hunter2"}),
    }
}

fn param(err: &Error) -> Option<&str> {
    match err {
        Error::Invalid { param, .. } => param.as_deref(),
        _ => None,
    }
}

#[tokio::test]
async fn a_provider_may_not_point_at_the_operators_network_unless_allowed() {
    let core = test_core().await;
    let p = owner(&core, "acme").await;
    for host in ["127.0.0.1", "169.254.169.254", "192.168.1.10", "[::1]", "localhost"] {
        let err = manage::create_provider(&core, &p, smtp("internal", host)).await.err().expect(host);
        assert_eq!(param(&err), Some("config.host"), "{host}: {err}");
    }
    let ses = NewProvider {
        name: "ses".into(),
        kind: ProviderType::Ses,
        config: json!({"region": "us-east-1", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s",
                       "endpoint": "http://127.0.0.1:4566"}),
    };
    let err = manage::create_provider(&core, &p, ses).await.err().expect("loopback endpoint");
    assert_eq!(param(&err), Some("config.endpoint"), "{err}");
    // Nothing refused was stored.
    assert!(manage::list_providers(&core, &p, None, 10).await.unwrap().is_empty());

    // The operator allows 10.0.0.0/8: a relay there is saved.
    let relay = manage::create_provider(&core, &p, smtp("relay", "10.1.2.3")).await.expect("allowed network");
    // Moving it to a refused address is refused too, and the stored one stays.
    let change = ProviderChange { config: Some(json!({"host": "127.0.0.1"})), ..Default::default() };
    let id = ProviderId::parse(&relay.id).expect("provider id");
    let err = manage::update_provider(&core, &p, &id, change).await.err().expect("moved to loopback");
    assert_eq!(param(&err), Some("config.host"), "{err}");
    assert_eq!(manage::get_provider(&core, &p, &id).await.unwrap().config["host"], "10.1.2.3");
}

#[tokio::test]
async fn credentials_are_sealed_never_shown_and_do_not_follow_a_new_destination() {
    let core = test_core().await;
    let p = owner(&core, "acme").await;
    let relay = manage::create_provider(&core, &p, smtp("relay", "10.1.2.3")).await.unwrap();
    assert_eq!(relay.config["password_set"], true, "{}", relay.config);
    assert!(!relay.config.to_string().contains("hunter2"), "{}", relay.config);
    let id = ProviderId::parse(&relay.id).unwrap();
    // A rename keeps the credentials; a new port is a new destination and drops them.
    let renamed = manage::update_provider(
        &core,
        &p,
        &id,
        ProviderChange { name: Some("renamed".into()), config: Some(json!({"username": "relay"})) },
    )
    .await
    .unwrap();
    assert_eq!(renamed.config["password_set"], true, "{}", renamed.config);
    let moved =
        manage::update_provider(&core, &p, &id, ProviderChange { config: Some(json!({"port": 2525})), name: None })
            .await
            .unwrap();
    assert_eq!(moved.config["password_set"], false, "{}", moved.config);
}

#[tokio::test]
async fn only_provider_managers_change_providers() {
    let core = test_core().await;
    let p = owner(&core, "acme").await;
    let member = person(&p.team_id, Role::Member);
    let developer = person(&p.team_id, Role::Developer);
    for who in [&member, &developer] {
        let err = manage::create_provider(&core, who, smtp("relay", "10.1.2.3")).await.err().expect("refused");
        assert!(matches!(err, Error::Forbidden(_)), "{err}");
    }
    let relay = manage::create_provider(&core, &p, smtp("relay", "10.1.2.3")).await.unwrap();
    let id = ProviderId::parse(&relay.id).unwrap();
    assert!(matches!(manage::delete_provider(&core, &developer, &id).await, Err(Error::Forbidden(_))));
    assert!(matches!(manage::test_provider(&core, &developer, &id).await, Err(Error::Forbidden(_))));
    manage::delete_provider(&core, &p, &id).await.unwrap();
}

#[tokio::test]
async fn a_delivery_group_routes_over_its_own_teams_providers_only() {
    let core = test_core().await;
    let a = owner(&core, "acme").await;
    let b = owner(&core, "globex").await;
    let theirs = manage::create_provider(&core, &b, smtp("theirs", "10.0.0.2")).await.unwrap();
    let ours = manage::create_provider(&core, &a, smtp("ours", "10.0.0.1")).await.unwrap();
    let member = |id: &str| GroupMember { provider_id: id.into(), priority: None, weight: None };

    let stolen = NewGroup { name: "stolen".into(), strategy: Strategy::Failover, members: vec![member(&theirs.id)] };
    let err = manage::create_group(&core, &a, stolen).await.err().expect("another team's provider");
    assert_eq!(param(&err), Some("members[0].provider_id"), "{err}");
    assert_eq!(err.to_string(), "No such provider");

    let group = NewGroup { name: "main".into(), strategy: Strategy::Failover, members: vec![member(&ours.id)] };
    let group = manage::create_group(&core, &a, group).await.expect("own provider");
    assert_eq!(group.members.len(), 1);
    let id = DeliveryGroupId::parse(&group.row.id).unwrap();
    // Nor can a change slip another team's provider in beside one's own.
    let change =
        manage::GroupChange { members: Some(vec![member(&ours.id), member(&theirs.id)]), ..Default::default() };
    let err = manage::update_group(&core, &a, &id, change).await.err().expect("another team's provider");
    assert_eq!(param(&err), Some("members[1].provider_id"), "{err}");
    // And the other team does not see the group at all.
    assert!(matches!(manage::get_group(&core, &b, &id).await, Err(Error::NotFound("delivery group"))));
    assert_eq!(manage::get_group(&core, &a, &id).await.unwrap().members[0].provider_id.as_deref(), Some(&*ours.id));
}

#[tokio::test]
async fn a_mailbox_key_reads_its_own_mailbox_only() {
    let core = test_core().await;
    let p = owner(&core, "acme").await;
    let new = |address: &str| NewMailbox { address: address.into(), name: None, settings: Default::default() };
    let support = mailboxes::create(&core, &p, new("support@localhost")).await.unwrap();
    let billing = mailboxes::create(&core, &p, new("billing@localhost")).await.unwrap();
    let raw = b"From: a@example.com\r\nTo: billing@localhost\r\nSubject: invoice\r\n\r\nPay up.\r\n".to_vec();
    let stored = messages::inject(&core, &p, Some(&billing.id), async { Ok(raw) }).await.expect("injected");
    let message_id = stored["id"].as_str().expect("message id").to_owned();

    let key = |mailbox: &MailboxId| NewKey {
        name: "reader".into(),
        kind: KeyKind::Mailbox,
        permissions: Some(vec!["mailbox.read".into()]),
        delivery_group_id: None,
        mailbox_id: Some(mailbox.as_str().to_owned()),
        expires_at: None,
    };
    let support_key = keys::create(&core, &p, key(&MailboxId::parse(&support.id).unwrap())).await.unwrap();
    let support_key = core.auth.authenticate(&support_key.secret, None).await.unwrap();
    assert_eq!(support_key.mailbox_scope(), Some(support.id.as_str()));

    // Naming the other mailbox is as if it did not exist; its message is not in this one.
    let err = messages::get(&core, &support_key, Some(&billing.id), &message_id).await.expect_err("other mailbox");
    assert!(matches!(err, Error::NotFound("mailbox")), "{err}");
    let err = messages::get(&core, &support_key, None, &message_id).await.expect_err("not in its mailbox");
    assert!(matches!(err, Error::NotFound("message")), "{err}");
    let err = messages::raw(&core, &support_key, None, &message_id).await.expect_err("not in its mailbox");
    assert!(matches!(err, Error::NotFound("message")), "{err}");
    assert!(messages::list(&core, &support_key, None, None, None, 10).await.unwrap().is_empty());
    let err = messages::list(&core, &support_key, Some(&billing.id), None, None, 10).await.expect_err("other");
    assert!(matches!(err, Error::NotFound("mailbox")), "{err}");

    // The key of the billing mailbox reads it, and the owner reads it by id.
    let billing_key = keys::create(&core, &p, key(&MailboxId::parse(&billing.id).unwrap())).await.unwrap();
    let billing_key = core.auth.authenticate(&billing_key.secret, None).await.unwrap();
    let seen = messages::get(&core, &billing_key, None, &message_id).await.unwrap();
    assert_eq!(seen["subject"], "invoice");
    let listed = messages::list(&core, &billing_key, None, None, None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), [message_id.as_str()]);
    let raw = messages::raw(&core, &p, Some(&billing.id), &message_id).await.unwrap();
    assert!(raw.ends_with(b"Pay up.\r\n"));
    // The owner, with no mailbox of its own, must name one.
    assert!(matches!(messages::get(&core, &p, None, &message_id).await, Err(Error::Forbidden(_))));
}

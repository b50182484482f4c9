//! The services of sendmux-core called directly, without HTTP: a `Core` over a fresh
//! store (a SQLite file in a temporary folder, or with `SENDMUX_TEST_STORE=postgres` a
//! PostgreSQL database made for the test and dropped after it), people and keys made
//! through the services themselves and authenticated as the server would. What is
//! asserted are the rules of docs/API.md: the role matrix of §2, the key ceiling and key
//! limit of §3, increase requests of §4, idempotent sending of §5, the logs of §11.

use sendmux_core::auth::Principal;
use sendmux_core::auth::perms::{KeyKind, Role};
use sendmux_core::error::Error;
use sendmux_core::ids::{DeliveryGroupId, KeyId, UserId};
use sendmux_core::keys::{self, NewKey};
use sendmux_core::limits::{self, IncreaseRequest, LimitName};
use sendmux_core::logs;
use sendmux_core::outbound::accept::Answer;
use sendmux_core::outbound::send::{IdempotencyKey, send_one};
use sendmux_core::people::{self, Acceptance, NewAccount, Session};
use sendmux_core::store::{now_ms, providers};
use sendmux_core::teams::{self, TeamChange};
use sendmux_core::{Core, events, mailboxes};

mod common;
use common::{TestCore as Env, core_with};

const PASSWORD: &str = "correct horse battery staple";

/// A core with open sign-up and `mail.test` for mailboxes, plus `extra`.
async fn env_with(extra: &[(&str, &str)]) -> Env {
    let mut vars =
        vec![("SENDMUX_SIGNUP", "open"), ("SENDMUX_INBOUND_DOMAINS", "mail.test"), ("SENDMUX_DNS_SERVER", "off")];
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k, v));
    }
    core_with(&vars).await
}

async fn env() -> Env {
    env_with(&[]).await
}

/// The variant of a refusal, through `About` (a refusal about one field).
fn kind(e: &Error) -> &'static str {
    match e {
        Error::Malformed(_) => "malformed",
        Error::Invalid { .. } => "invalid",
        Error::Unauthenticated(_) => "unauthenticated",
        Error::Forbidden(_) => "forbidden",
        Error::NotFound(_) => "not_found",
        Error::Conflict(_) => "conflict",
        Error::LimitExceeded(_) => "limit_exceeded",
        Error::TooLarge(_) => "too_large",
        Error::RateLimited { .. } => "rate_limited",
        Error::About { source, .. } => kind(source),
        Error::Internal(_) => "internal",
    }
}

#[track_caller]
fn refused<T>(result: sendmux_core::Result<T>, expected: &str) -> Error {
    match result {
        Ok(_) => panic!("expected a {expected} refusal, got success"),
        Err(e) => {
            assert_eq!(kind(&e), expected, "{e}");
            e
        }
    }
}

async fn principal(core: &Core, session: &Session) -> Principal {
    core.auth.authenticate(&session.token, None).await.expect("the new session authenticates")
}

/// Signs up `email` with a team of its own; returns the owner's session and principal.
async fn sign_up(core: &Core, email: &str) -> (Session, Principal) {
    let new = NewAccount {
        email: email.into(),
        password: PASSWORD.into(),
        team_name: "Acme".into(),
        ip: Some("192.0.2.1".into()),
    };
    let session = people::signup(core, new).await.expect("sign-up");
    let p = principal(core, &session).await;
    (session, p)
}

/// Invites `email` into `inviter`'s team with `role`, accepts, and signs in.
async fn join(core: &Core, inviter: &Principal, email: &str, role: Role) -> Principal {
    let invited = teams::invite(core, inviter, email, role).await.expect("invitation");
    let acceptance = Acceptance { token: invited.token, password: Some(PASSWORD.into()), ip: None };
    let session = people::accept_invitation(core, acceptance).await.expect("acceptance");
    assert_eq!(session.team_id.as_deref(), Some(inviter.team_id.as_str()));
    principal(core, &session).await
}

fn user(p: &Principal) -> UserId {
    UserId::parse(p.user_id().expect("a person")).expect("a user id")
}

async fn role_of(core: &Core, owner: &Principal, who: &Principal) -> String {
    let members = teams::members(core, owner, None, 100).await.unwrap();
    members.into_iter().find(|m| Some(m.user_id.as_str()) == who.user_id()).expect("a member").role
}

async fn audit_actions(core: &Core, caller: &Principal) -> Vec<String> {
    logs::audit(core, caller, None, 100).await.unwrap().into_iter().map(|r| r.action).collect()
}

fn infrastructure(name: &str, permissions: &[&str]) -> NewKey {
    NewKey {
        name: name.into(),
        kind: KeyKind::Infrastructure,
        permissions: Some(permissions.iter().map(|p| p.to_string()).collect()),
        delivery_group_id: None,
        mailbox_id: None,
        expires_at: None,
    }
}

async fn key_principal(core: &Core, secret: &str) -> Principal {
    core.auth.authenticate(secret, None).await.expect("the new key authenticates")
}

#[tokio::test]
async fn team_role_matrix_what_each_role_may_do() {
    let env = env().await;
    let (_, owner) = sign_up(&env, "owner@example.com").await;
    let admin = join(&env, &owner, "admin@example.com", Role::Admin).await;
    let developer = join(&env, &owner, "dev@example.com", Role::Developer).await;
    let member = join(&env, &owner, "member@example.com", Role::Member).await;
    let spare = join(&env, &owner, "spare@example.com", Role::Member).await;

    // Everyone reads the team and its members and invitations.
    for p in [&owner, &admin, &developer, &member] {
        assert_eq!(teams::get(&env, p).await.unwrap().id, owner.team_id.as_str());
        assert_eq!(teams::members(&env, p, None, 100).await.unwrap().len(), 5);
        assert_eq!(teams::invitations(&env, p, None, 100).await.unwrap().len(), 4);
    }

    // Members and developers change nothing about the team or its people.
    for p in [&developer, &member] {
        refused(teams::update(&env, p, TeamChange { name: Some("Mine".into()) }).await, "forbidden");
        refused(teams::invite(&env, p, "x@example.com", Role::Member).await, "forbidden");
        refused(teams::update_member(&env, p, &user(&spare), Role::Developer).await, "forbidden");
        refused(teams::remove_member(&env, p, &user(&spare)).await, "forbidden");
        refused(teams::transfer(&env, p, p.user_id().unwrap()).await, "forbidden");
        refused(teams::delete(&env, p).await, "forbidden");
    }
    let invitation = teams::invite(&env, &owner, "later@example.com", Role::Member).await.unwrap();
    let id = sendmux_core::ids::InvitationId::parse(&invitation.invitation.id).unwrap();
    refused(teams::revoke_invitation(&env, &member, &id).await, "forbidden");

    // An admin renames, invites, changes roles below owner and removes members...
    let team = teams::update(&env, &admin, TeamChange { name: Some("  Acme Two ".into()) }).await.unwrap();
    assert_eq!(team.name, "Acme Two");
    teams::update_member(&env, &admin, &user(&developer), Role::Member).await.unwrap();
    assert_eq!(role_of(&env, &owner, &developer).await, "member");
    teams::update_member(&env, &admin, &user(&developer), Role::Developer).await.unwrap();
    teams::revoke_invitation(&env, &admin, &id).await.unwrap();
    refused(teams::revoke_invitation(&env, &admin, &id).await, "not_found");
    teams::remove_member(&env, &admin, &user(&spare)).await.unwrap();
    // ...but makes nobody owner, does not touch the owner, and deletes or transfers nothing.
    let e = refused(teams::update_member(&env, &admin, &user(&developer), Role::Owner).await, "invalid");
    assert_eq!(e.param(), Some("role"));
    let e = refused(teams::invite(&env, &admin, "boss@example.com", Role::Owner).await, "invalid");
    assert_eq!(e.param(), Some("role"));
    refused(teams::update_member(&env, &admin, &user(&owner), Role::Member).await, "forbidden");
    refused(teams::remove_member(&env, &admin, &user(&owner)).await, "conflict");
    refused(teams::transfer(&env, &admin, admin.user_id().unwrap()).await, "forbidden");
    refused(teams::delete(&env, &admin).await, "forbidden");
    assert_eq!(role_of(&env, &owner, &owner).await, "owner");

    // Inviting an existing member is a conflict about the email; a bad email is invalid.
    let e = refused(teams::invite(&env, &admin, "MEMBER@example.com", Role::Member).await, "conflict");
    assert_eq!(e.param(), Some("email"));
    refused(teams::invite(&env, &admin, "not an address", Role::Member).await, "invalid");

    // Anyone but the owner may leave; the owner cannot.
    teams::remove_member(&env, &member, &user(&member)).await.unwrap();
    refused(teams::remove_member(&env, &owner, &user(&owner)).await, "conflict");
    assert_eq!(teams::members(&env, &owner, None, 100).await.unwrap().len(), 3);

    // A key manages no people, whatever it holds.
    let key = keys::create(&env, &owner, infrastructure("ops", &["keys.manage", "logs.read"])).await.unwrap();
    let key = key_principal(&env, &key.secret).await;
    refused(teams::invite(&env, &key, "k@example.com", Role::Member).await, "forbidden");
    refused(teams::update_member(&env, &key, &user(&developer), Role::Member).await, "forbidden");

    // Every change left its audit entry, by who made it.
    let actions = audit_actions(&env, &owner).await;
    for action in [
        "team.created",
        "member.invited",
        "member.joined",
        "team.updated",
        "member.updated",
        "invitation.revoked",
        "member.removed",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action} missing from {actions:?}");
    }
    let renamed = logs::audit(&env, &owner, None, 100).await.unwrap();
    let renamed = renamed.iter().find(|r| r.action == "team.updated").unwrap();
    assert_eq!(renamed.actor_id, admin.user_id().unwrap());
}

#[tokio::test]
async fn team_roles_are_read_again_under_the_lock() {
    let env = env().await;
    let (_, owner) = sign_up(&env, "owner@example.com").await;
    let admin = join(&env, &owner, "admin@example.com", Role::Admin).await;
    let member = join(&env, &owner, "member@example.com", Role::Member).await;
    // The admin authenticated as admin, then was demoted: the stale principal still
    // carries an admin's permissions, the decision uses the role as it is now.
    teams::update_member(&env, &owner, &user(&admin), Role::Member).await.unwrap();
    assert!(admin.perms.has(sendmux_core::auth::perms::Perm::MembersManage));
    refused(teams::update_member(&env, &admin, &user(&member), Role::Admin).await, "forbidden");
    refused(teams::remove_member(&env, &admin, &user(&member)).await, "forbidden");
    assert_eq!(role_of(&env, &owner, &member).await, "member");
    // Re-authenticated, the demoted admin has a member's permissions.
    let removed = people::login(&env, "admin@example.com", PASSWORD.into()).await.unwrap();
    let now_member = principal(&env, &removed).await;
    refused(teams::invite(&env, &now_member, "x@example.com", Role::Member).await, "forbidden");
}

#[tokio::test]
async fn team_ownership_moves_by_transfer_and_only_the_owner_deletes() {
    let env = env().await;
    let (_, owner) = sign_up(&env, "owner@example.com").await;
    let admin = join(&env, &owner, "admin@example.com", Role::Admin).await;
    let e = refused(teams::transfer(&env, &owner, owner.user_id().unwrap()).await, "invalid");
    assert_eq!(e.param(), Some("user_id"));
    let e = refused(teams::transfer(&env, &owner, "usr_nope").await, "invalid");
    assert_eq!(e.param(), Some("user_id"));
    let e = refused(teams::transfer(&env, &owner, UserId::new().as_str()).await, "invalid");
    assert_eq!(e.param(), Some("user_id"));

    let new_owner = teams::transfer(&env, &owner, admin.user_id().unwrap()).await.unwrap();
    assert_eq!(new_owner.role, "owner");
    assert_eq!(role_of(&env, &admin, &owner).await, "admin");
    // The old owner's credential no longer holds the owner's powers once re-read.
    let old = principal(&env, &people::login(&env, "owner@example.com", PASSWORD.into()).await.unwrap()).await;
    refused(teams::delete(&env, &old).await, "forbidden");
    let owners = teams::members(&env, &old, None, 100).await.unwrap().into_iter().filter(|m| m.role == "owner");
    assert_eq!(owners.count(), 1);

    let new = principal(&env, &people::login(&env, "admin@example.com", PASSWORD.into()).await.unwrap()).await;
    teams::delete(&env, &new).await.unwrap();
    // Gone with everything it owned: the sessions act in no team any more.
    refused(teams::get(&env, &new).await, "not_found");
    let again = people::login(&env, "owner@example.com", PASSWORD.into()).await.unwrap();
    assert_eq!(again.team_id, None);
}

#[tokio::test]
async fn people_sign_up_log_in_out_and_invitations_accepted_once() {
    let env = env().await;
    let (session, owner) = sign_up(&env, "Owner@Example.com").await;
    assert_eq!(session.team_id.as_deref(), Some(owner.team_id.as_str()));
    assert!(session.expires_at > now_ms());
    // One account per email; weak passwords and bad emails are refused before anything.
    let again =
        NewAccount { email: "owner@example.com".into(), password: PASSWORD.into(), team_name: "B".into(), ip: None };
    let e = refused(people::signup(&env, again).await, "conflict");
    assert_eq!(e.param(), Some("email"));
    let weak = NewAccount { email: "w@example.com".into(), password: "short".into(), team_name: "B".into(), ip: None };
    refused(people::signup(&env, weak).await, "invalid");

    refused(people::login(&env, "owner@example.com", "wrong password!".into()).await, "unauthenticated");
    refused(people::login(&env, "nobody@example.com", PASSWORD.into()).await, "unauthenticated");
    let second = people::login(&env, " OWNER@example.com ", PASSWORD.into()).await.unwrap();
    assert_eq!(second.team_id.as_deref(), Some(owner.team_id.as_str()));

    // Log-out ends that session only, at once; a key cannot log out.
    people::logout(&env, &second.token).await.unwrap();
    assert!(env.auth.authenticate(&second.token, None).await.is_err());
    refused(people::logout(&env, &second.token).await, "unauthenticated");
    refused(people::logout(&env, "smx_inf_whatever").await, "unauthenticated");
    env.auth.authenticate(&session.token, None).await.unwrap();

    // An invitation works once, not after it is withdrawn, and wants the account's password.
    let invited = teams::invite(&env, &owner, "new@example.com", Role::Developer).await.unwrap();
    let accept = |token: &str, password: Option<&str>| Acceptance {
        token: token.to_owned(),
        password: password.map(str::to_owned),
        ip: None,
    };
    let e = refused(people::accept_invitation(&env, accept(&invited.token, None)).await, "invalid");
    assert_eq!(e.param(), Some("password"));
    let joined = people::accept_invitation(&env, accept(&invited.token, Some(PASSWORD))).await.unwrap();
    let dev = principal(&env, &joined).await;
    assert_eq!(dev.role(), Some(Role::Developer));
    refused(people::accept_invitation(&env, accept(&invited.token, Some(PASSWORD))).await, "not_found");
    refused(people::accept_invitation(&env, accept("smx_ses_not_an_invitation", Some(PASSWORD))).await, "not_found");

    // An existing account joins a second team with its own password.
    let (_, other) = sign_up(&env, "other@example.com").await;
    let invited = teams::invite(&env, &other, "new@example.com", Role::Member).await.unwrap();
    refused(people::accept_invitation(&env, accept(&invited.token, Some("not the password"))).await, "unauthenticated");
    people::accept_invitation(&env, accept(&invited.token, Some(PASSWORD))).await.unwrap();
    let withdrawn = teams::invite(&env, &other, "late@example.com", Role::Member).await.unwrap();
    let id = sendmux_core::ids::InvitationId::parse(&withdrawn.invitation.id).unwrap();
    teams::revoke_invitation(&env, &other, &id).await.unwrap();
    refused(people::accept_invitation(&env, accept(&withdrawn.token, Some(PASSWORD))).await, "not_found");

    let closed = env_with(&[("SENDMUX_SIGNUP", "closed")]).await;
    let new = NewAccount { email: "c@example.com".into(), password: PASSWORD.into(), team_name: "C".into(), ip: None };
    refused(people::signup(&closed, new).await, "forbidden");
}

#[tokio::test]
async fn limits_refuse_the_key_over_the_limit_until_an_increase_is_approved() {
    let env = env_with(&[("SENDMUX_LIMIT_ACTIVE_KEYS", "2")]).await;
    let (_, owner) = sign_up(&env, "owner@example.com").await;
    let member = join(&env, &owner, "member@example.com", Role::Member).await;
    let first = keys::create(&env, &owner, infrastructure("one", &["logs.read"])).await.unwrap();
    keys::create(&env, &owner, infrastructure("two", &["logs.read"])).await.unwrap();
    refused(keys::create(&env, &owner, infrastructure("three", &["logs.read"])).await, "limit_exceeded");

    let all = limits::list(&env, &member).await.unwrap();
    assert_eq!(all.iter().map(|u| u.name).collect::<Vec<_>>(), LimitName::ALL.to_vec());
    let active = all.iter().find(|u| u.name == LimitName::ActiveKeys).unwrap();
    assert_eq!((active.limit, active.used, active.percent, active.increase_requestable), (2, 2, 100.0, true));
    let webhooks = all.iter().find(|u| u.name == LimitName::Webhooks).unwrap();
    assert_eq!((webhooks.used, webhooks.increase_requestable), (0, false));

    let ask = |name, requested| IncreaseRequest { name, requested, reason: "growing".into() };
    // Members see limits but do not ask; the request must be above the limit, from 80 %.
    refused(limits::request_increase(&env, &member, ask(LimitName::ActiveKeys, 5)).await, "forbidden");
    let e = refused(limits::request_increase(&env, &owner, ask(LimitName::ActiveKeys, 2)).await, "invalid");
    assert_eq!(e.param(), Some("requested"));
    refused(limits::request_increase(&env, &owner, ask(LimitName::Webhooks, 50)).await, "conflict");
    let blank = IncreaseRequest { name: LimitName::ActiveKeys, requested: 5, reason: "  ".into() };
    refused(limits::request_increase(&env, &owner, blank).await, "invalid");
    let request = limits::request_increase(&env, &owner, ask(LimitName::ActiveKeys, 5)).await.unwrap();
    assert_eq!((request.status.as_str(), request.current_limit, request.requested), ("pending", 2, 5));
    refused(limits::request_increase(&env, &owner, ask(LimitName::ActiveKeys, 6)).await, "conflict");
    let listed = limits::increase_requests(&env, &member, None, 20).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [request.id.as_str()]);
    assert!(audit_actions(&env, &owner).await.iter().any(|a| a == "limit.increase_requested"));

    // Revoking frees a place; approval raises the limit.
    keys::revoke(&env, &owner, &KeyId::parse(&first.key.id).unwrap()).await.unwrap();
    keys::create(&env, &owner, infrastructure("three", &["logs.read"])).await.unwrap();
    refused(keys::create(&env, &owner, infrastructure("four", &["logs.read"])).await, "limit_exceeded");
    limits::decide(&env.store, &request.id, true, None, "test").await.unwrap();
    keys::create(&env, &owner, infrastructure("four", &["logs.read"])).await.unwrap();
    let active = limits::list(&env, &owner).await.unwrap().into_iter().find(|u| u.name == LimitName::ActiveKeys);
    assert_eq!(active.map(|u| (u.limit, u.used)), Some((5, 3)));
}

#[tokio::test]
async fn keys_mint_no_power_their_creator_lacks() {
    let env = env().await;
    let (_, owner) = sign_up(&env, "owner@example.com").await;
    let developer = join(&env, &owner, "dev@example.com", Role::Developer).await;
    let mailbox = mailboxes::create(
        &env,
        &owner,
        mailboxes::NewMailbox { address: "inbox@mail.test".into(), name: None, settings: Default::default() },
    )
    .await
    .unwrap();
    let mailbox_key = |permissions: &[&str]| NewKey {
        name: "inbox".into(),
        kind: KeyKind::Mailbox,
        permissions: Some(permissions.iter().map(|p| p.to_string()).collect()),
        delivery_group_id: None,
        mailbox_id: Some(mailbox.id.clone()),
        expires_at: None,
    };

    // A developer holds neither providers.manage nor mailboxes.manage.
    let e = refused(keys::create(&env, &developer, infrastructure("x", &["providers.manage"])).await, "forbidden");
    assert!(e.to_string().contains("providers.manage"), "{e}");
    refused(keys::create(&env, &developer, mailbox_key(&["email.receive"])).await, "forbidden");
    keys::create(&env, &developer, infrastructure("ok", &["webhooks.manage", "logs.read"])).await.unwrap();

    // An infrastructure key with keys.manage but not mailboxes.manage makes no mailbox
    // key; with mailboxes.manage it does, and never an infrastructure key.
    let without = keys::create(&env, &owner, infrastructure("keys", &["keys.manage"])).await.unwrap();
    let without = key_principal(&env, &without.secret).await;
    refused(keys::create(&env, &without, mailbox_key(&["mailbox.read"])).await, "forbidden");
    let with = keys::create(&env, &owner, infrastructure("keys+mbx", &["keys.manage", "mailboxes.manage"])).await;
    let with = key_principal(&env, &with.unwrap().secret).await;
    let made = keys::create(&env, &with, mailbox_key(&["mailbox.read", "email.receive"])).await.unwrap();
    assert_eq!(made.key.kind, "mailbox");
    assert_eq!(made.key.permissions, "mailbox.read,email.receive");
    refused(keys::create(&env, &with, infrastructure("up", &["logs.read"])).await, "forbidden");
    // Nor rotates or revokes one it could not have made.
    let infra = keys::create(&env, &owner, infrastructure("infra", &["providers.manage"])).await.unwrap();
    let infra_id = KeyId::parse(&infra.key.id).unwrap();
    refused(keys::revoke(&env, &with, &infra_id).await, "forbidden");
    refused(keys::rotate(&env, &developer, &infra_id, 0).await, "forbidden");
    keys::revoke(&env, &owner, &infra_id).await.unwrap();
}

#[tokio::test]
async fn sending_with_an_idempotency_key_replays_the_same_body_and_refuses_another() {
    let env = env().await;
    let (_, owner) = sign_up(&env, "owner@example.com").await;
    let group = DeliveryGroupId::new();
    let now = now_ms();
    let row = providers::GroupRow {
        id: group.as_str().to_owned(),
        team_id: owner.team_id.as_str().to_owned(),
        name: "main".into(),
        strategy: "failover".into(),
        created_at: now,
        updated_at: now,
    };
    let mut conn = env.store.write_conn().await.unwrap();
    providers::insert_group(&mut conn, &row, &[]).await.unwrap();
    drop(conn);
    let key = NewKey {
        name: "sender".into(),
        kind: KeyKind::Sending,
        permissions: None,
        delivery_group_id: Some(group.as_str().to_owned()),
        mailbox_id: None,
        expires_at: None,
    };
    let sender = key_principal(&env, &keys::create(&env, &owner, key).await.unwrap().secret).await;

    let body = br#"{"from": "app@example.com", "to": ["someone@example.org"], "subject": "Hi", "text": "Hello"}"#;
    let other = br#"{"from": "app@example.com", "to": ["someone@example.org"], "subject": "Hi", "text": "Bye"}"#;
    let send = |bytes: &'static [u8], key: &str| {
        let core = env.core.clone();
        let sender = sender.clone();
        let key = key.to_owned();
        async move {
            let input = serde_json::from_slice(bytes).unwrap();
            send_one(&core, &sender, input, Some(IdempotencyKey { key, request: bytes })).await
        }
    };
    let first = match send(body, "order-1").await.unwrap() {
        Answer::Fresh(v) => v,
        Answer::Replayed(..) => panic!("the first request is not a replay"),
    };
    assert_eq!(first["status"], "queued");
    match send(body, "order-1").await.unwrap() {
        Answer::Replayed(status, v) => assert_eq!((status, v), (202, first.clone())),
        Answer::Fresh(_) => panic!("the same key and body queued a second message"),
    }
    let e = refused(send(other, "order-1").await, "conflict");
    assert_eq!(e.param(), Some("Idempotency-Key"));
    // Another key is another request.
    match send(other, "order-2").await.unwrap() {
        Answer::Fresh(v) => assert_ne!(v["id"], first["id"]),
        Answer::Replayed(..) => panic!("a new key replayed"),
    }
    // One message per fresh request, and a person sends nothing.
    let queued = sendmux_core::logs::audit(&env, &owner, None, 100).await.unwrap();
    assert!(queued.iter().any(|r| r.action == "key.created"));
    let events = events::list(&env, &owner, Some("message.queued"), None, 100).await.unwrap();
    assert_eq!(events.len(), 2);
    let input = serde_json::from_slice(body).unwrap();
    refused(send_one(&env.core, &owner, input, None).await, "forbidden");
}

#[tokio::test]
async fn logs_and_events_need_their_permissions() {
    let env = env().await;
    let (_, owner) = sign_up(&env, "owner@example.com").await;
    let member = join(&env, &owner, "member@example.com", Role::Member).await;
    refused(logs::audit(&env, &member, None, 20).await, "forbidden");
    refused(logs::deliveries(&env, &member, None, 20).await, "forbidden");
    // Events need `logs.read` or reading webhooks, which every person may.
    assert!(events::list(&env, &member, None, None, 20).await.unwrap().is_empty());
    let billing = keys::create(&env, &owner, infrastructure("billing", &["billing.read"])).await.unwrap();
    let billing = key_principal(&env, &billing.secret).await;
    refused(events::list(&env, &billing, None, None, 20).await, "forbidden");
    refused(logs::audit(&env, &billing, None, 20).await, "forbidden");
    assert!(logs::deliveries(&env, &owner, None, 20).await.unwrap().is_empty());
    assert_eq!(logs::LogKind::parse(None).unwrap(), logs::LogKind::Audit);
    assert_eq!(logs::LogKind::parse(Some("delivery")).unwrap(), logs::LogKind::Delivery);
    assert_eq!(refused(logs::LogKind::parse(Some("x")), "malformed").param(), Some("kind"));
    assert_eq!(
        refused(events::list(&env, &owner, Some("message.nope"), None, 20).await, "malformed").param(),
        Some("type")
    );
    let e = refused(events::list(&env, &owner, None, Some("evt_01J00000000000000000000000"), 20).await, "malformed");
    assert_eq!(e.param(), Some("cursor"));
    // A key with logs.read reads the audit trail, newest first; pages follow the cursor.
    let key = keys::create(&env, &owner, infrastructure("logs", &["logs.read"])).await.unwrap();
    let key = key_principal(&env, &key.secret).await;
    let all = logs::audit(&env, &key, None, 100).await.unwrap();
    assert_eq!(all.first().map(|r| r.action.as_str()), Some("key.created"));
    assert_eq!(all.last().map(|r| r.action.as_str()), Some("team.created"));
    let page = logs::audit(&env, &key, Some(&all[0].id), 100).await.unwrap();
    assert_eq!(page.len(), all.len() - 1);
    // Another team's trail is not this team's.
    let (_, stranger) = sign_up(&env, "stranger@example.com").await;
    assert_eq!(audit_actions(&env, &stranger).await, ["team.created"]);
}

//! Sign-up, login, logout, invitations and users in several teams.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn signup_login_and_logout() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Ada@Example.test", "Engines").await;
    let team = expect_status(app.get("/api/v1/team", &owner.token).await, StatusCode::OK).await;
    assert_eq!(team["name"], "Engines");
    assert!(team["id"].as_str().unwrap().starts_with("team_"));

    let login = |email: &'static str, password: &'static str| {
        app.client.post(app.url("/api/v1/auth/login")).json(&json!({"email": email, "password": password})).send()
    };
    expect_error(
        login("ada@example.test", "wrong password!").await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "authentication_failed",
    )
    .await;
    expect_error(
        login("nobody@example.test", PASSWORD).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "authentication_failed",
    )
    .await;
    let session = expect_status(login("ada@example.test", PASSWORD).await.unwrap(), StatusCode::OK).await;
    let token = session["token"].as_str().unwrap();
    assert!(token.starts_with("smx_ses_"));
    assert_eq!(session["team_id"], owner.team_id);

    expect_status(app.post("/api/v1/auth/logout", token, json!({})).await, StatusCode::NO_CONTENT).await;
    expect_error(app.get("/api/v1/team", token).await, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    // The other session lives on.
    expect_status(app.get("/api/v1/team", &owner.token).await, StatusCode::OK).await;

    let res = app
        .client
        .post(app.url("/api/v1/auth/signup"))
        .json(&json!({"email": "b@example.test", "password": "short", "team_name": "B"}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], "password");
}

#[tokio::test]
async fn signup_can_be_closed() {
    let app = TestApp::spawn_with(&[("SENDMUX_SIGNUP", "closed")]).await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/signup"))
        .json(&json!({"email": "a@b.test", "password": PASSWORD, "team_name": "T"}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    // The operator still creates teams.
    let res = app
        .client
        .post(app.url("/api/v1/admin/teams"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "Made by ops", "owner_email": "ops@b.test", "owner_password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let team = expect_status(res, StatusCode::CREATED).await;
    assert!(team["id"].as_str().unwrap().starts_with("team_"));
    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": "ops@b.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_status(res, StatusCode::OK).await["team_id"], team["id"]);
}

#[tokio::test]
async fn invitations_and_people_in_several_teams() {
    let app = TestApp::spawn().await;
    let alpha = app.signup("a@alpha.test", "Alpha").await;
    let bravo = app.signup("b@bravo.test", "Bravo").await;
    // Alpha's owner joins Bravo as a developer with their existing password.
    let inv = expect_status(
        app.post("/api/v1/team/invitations", &bravo.token, json!({"email": "A@alpha.test", "role": "developer"})).await,
        StatusCode::CREATED,
    )
    .await;
    let token = inv["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("smx_inv_"));
    let accept = |password: &'static str| {
        app.client
            .post(app.url(&format!("/api/v1/auth/invitations/{token}/accept")))
            .json(&json!({"password": password}))
            .send()
    };
    expect_error(accept("not the password").await.unwrap(), StatusCode::UNAUTHORIZED, "authentication_failed").await;
    expect_status(accept(PASSWORD).await.unwrap(), StatusCode::OK).await;
    expect_error(accept(PASSWORD).await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;

    // Without the header the first team applies; the header picks the other.
    let team = expect_status(app.get("/api/v1/team", &alpha.token).await, StatusCode::OK).await;
    assert_eq!(team["id"], alpha.team_id);
    let res = app
        .req(Method::GET, "/api/v1/team", &alpha.token)
        .header("X-Sendmux-Team", &bravo.team_id)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_status(res, StatusCode::OK).await["id"], bravo.team_id);
    // In Bravo they are a developer: keys yes, providers no.
    let res = app
        .req(Method::POST, "/api/v1/keys", &alpha.token)
        .header("X-Sendmux-Team", &bravo.team_id)
        .json(&json!({"name": "k", "kind": "infrastructure"}))
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::CREATED).await;
    let res = app
        .req(Method::POST, "/api/v1/mailboxes", &alpha.token)
        .header("X-Sendmux-Team", &bravo.team_id)
        .json(&json!({"address": "x@localhost"}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    for bad in ["team_nope", "team_01J1M9C3K8ZQ4W8N5T2V7X6Y3B"] {
        let res =
            app.req(Method::GET, "/api/v1/team", &alpha.token).header("X-Sendmux-Team", bad).send().await.unwrap();
        expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }

    // A new person accepts with a fresh password and is a member.
    let inv = expect_status(
        app.post("/api/v1/team/invitations", &bravo.token, json!({"email": "new@bravo.test", "role": "member"})).await,
        StatusCode::CREATED,
    )
    .await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/auth/invitations/{}/accept", inv["token"].as_str().unwrap())))
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let newbie = expect_status(res, StatusCode::OK).await;
    assert_eq!(newbie["team_id"], bravo.team_id);
    let members = expect_status(app.get("/api/v1/team/members", &bravo.token).await, StatusCode::OK).await;
    let mut roles: Vec<String> = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}={}", m["email"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    roles.sort();
    assert_eq!(roles, ["a@alpha.test=developer", "b@bravo.test=owner", "new@bravo.test=member"]);

    // A revoked invitation cannot be accepted; a member can leave.
    let inv = expect_status(
        app.post("/api/v1/team/invitations", &bravo.token, json!({"email": "late@bravo.test", "role": "member"})).await,
        StatusCode::CREATED,
    )
    .await;
    expect_status(
        app.delete(&format!("/api/v1/team/invitations/{}", inv["id"].as_str().unwrap()), &bravo.token).await,
        StatusCode::NO_CONTENT,
    )
    .await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/auth/invitations/{}/accept", inv["token"].as_str().unwrap())))
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .req(Method::DELETE, &format!("/api/v1/team/members/{}", alpha.user_id), &alpha.token)
        .header("X-Sendmux-Team", &bravo.team_id)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::NO_CONTENT).await;
    let res = app
        .req(Method::GET, "/api/v1/team", &alpha.token)
        .header("X-Sendmux-Team", &bravo.team_id)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn password_guessing_is_rate_limited_per_address() {
    let app = TestApp::spawn_with(&[("SENDMUX_AUTH_RATE_LIMIT_PER_MINUTE", "3")]).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let res = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": "x@y.test", "password": "guess guess guess"}))
            .send()
            .await
            .unwrap();
        statuses.push(res.status());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().contains_key("retry-after"));
            expect_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
        }
    }
    assert_eq!(
        statuses,
        [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS]
    );
    // Logging out a token that is not a live session changes nothing and says so.
    let res = app.client.post(app.url("/api/v1/auth/logout")).bearer_auth("smx_ses_notasession").send().await.unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED, "authentication_failed").await;
}

//! One integration-test binary. Every test runs against the real server over HTTP, on
//! the store named by `SENDMUX_TEST_STORE` (sqlite by default, or postgres).

mod helpers;

mod audit;
mod bad_input;
mod billing;
mod cli;
mod console;
mod domains;
mod domains_dkim;
mod domains_inbound;
mod events;
mod group_commit;
mod hostile;
mod hostile_tenant;
mod inbound;
mod inbound_auth;
mod inbound_durability;
mod inbound_hostile;
mod isolation;
mod key_scopes;
mod keys;
mod kill_nodes;
mod limits;
mod mail_servers;
mod mailbox_send;
mod many_nodes;
mod mcp;
mod object_storage;
mod operations;
mod outbound;
mod outbound_api;
mod people;
mod postgres_tls;
mod roles;
mod schema;
mod search;
mod secrets;
mod stream;
mod threads;
mod webhooks;
mod websocket;

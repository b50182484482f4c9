//! Rate limits hold across nodes: on PostgreSQL three limiters (three nodes) share one
//! database and lease shares of a window from it; on SQLite one node counts in memory.

use std::sync::Arc;

use sendmux_core::limits::rate::{RateLimiter, lease_size};
use sendmux_core::store::now_ms;

mod common;
use common::{core_with, on_postgres};

/// 2,400 requests for a sending key (1,800 a minute), spread over the nodes and sent 16
/// at a time on each: at most 1,800 get through, and (on PostgreSQL, where another node
/// may hold unspent tokens) at least 95 % of it.
#[tokio::test]
async fn a_sending_keys_limit_holds_across_three_nodes() {
    const LIMIT: i64 = 1_800;
    let core = core_with(&[("SENDMUX_DNS_SERVER", "off")]).await;
    let nodes: Vec<Arc<RateLimiter>> = if on_postgres() {
        (0..3).map(|_| Arc::new(RateLimiter::new(core.store.clone()))).collect()
    } else {
        vec![Arc::new(RateLimiter::new(core.store.clone()))]
    };
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..48 {
        let node = nodes[lane % nodes.len()].clone();
        tasks.spawn(async move {
            let mut allowed = 0;
            for _ in 0..50 {
                let decision = node.hit("key_sending", LIMIT, now_ms()).await.expect("limiter");
                assert_eq!(decision.limit, LIMIT);
                assert!(decision.reset_secs <= 60, "{decision:?}");
                allowed += i64::from(decision.allowed);
            }
            allowed
        });
    }
    let mut allowed = 0;
    while let Some(n) = tasks.join_next().await {
        allowed += n.expect("lane");
    }
    assert!(allowed <= LIMIT, "{allowed} requests got through a limit of {LIMIT}");
    if on_postgres() {
        // What other nodes may hold unspent: two leases at most.
        assert!(allowed >= LIMIT - 2 * lease_size(LIMIT), "only {allowed} of {LIMIT} got through");
        assert!(allowed as f64 >= LIMIT as f64 * 0.95, "only {allowed} of {LIMIT} got through");
    } else {
        assert_eq!(allowed, LIMIT);
    }
    // Every node refuses from now on, and says when the window resets.
    for node in &nodes {
        let decision = node.hit("key_sending", LIMIT, now_ms()).await.expect("limiter");
        assert!(!decision.allowed && decision.remaining == 0, "{decision:?}");
    }
    // Another bucket is untouched.
    assert!(nodes[0].hit("key_other", LIMIT, now_ms()).await.expect("limiter").allowed);
}

/// A small limit (login failures) is counted exactly, one request per lease.
#[tokio::test]
async fn a_small_limit_is_exact_on_every_node() {
    let core = core_with(&[("SENDMUX_DNS_SERVER", "off")]).await;
    let nodes: Vec<RateLimiter> =
        (0..if on_postgres() { 3 } else { 1 }).map(|_| RateLimiter::new(core.store.clone())).collect();
    let mut allowed = 0;
    for i in 0..20 {
        allowed +=
            i64::from(nodes[i % nodes.len()].hit("addr:192.0.2.1", 10, now_ms()).await.expect("limiter").allowed);
    }
    assert_eq!(allowed, 10);
    let window = nodes[0].window("addr:192.0.2.1", now_ms()).await.expect("window");
    let (counted, reset) = window.expect("a running window");
    assert!(counted >= 10 && reset <= 60, "{counted} {reset}");
}

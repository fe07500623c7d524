//! The rate-limit plugin: exact bursts, the sustained rate, 429 answers with
//! the IETF RateLimit headers, and buckets keyed by the API key that the
//! auth plugin verified.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use sha2::{Digest, Sha256};

use crate::support::client::{client, get_with};
use crate::support::tandem::TandemBuilder;
use crate::support::upstream::Upstream;

fn limit(name: &str, rate: f64, burst: u64, key: &str) -> String {
    format!(
        "order = 20\nfailure = \"open\"\n[config]\n[[config.rules]]\nname = \"{name}\"\nprefix = \"/\"\nrate = {rate}\nburst = {burst}\nkey = {key}\n"
    )
}

#[tokio::test]
async fn a_burst_of_b_plus_50_lets_exactly_b_through() {
    let upstream = Upstream::start().await;
    const BURST: u64 = 40;
    // One token per 1000 s: nothing refills while the burst runs.
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "rate-limit",
            "rate-limit",
            &limit("burst", 0.001, BURST, "\"header:x-client\""),
        )
        .spawn()
        .await;
    let url = tandem.url("/burst");
    let requests = (0..BURST + 50).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { get_with(&url, &[("x-client", "one")]).await })
    });
    let replies = futures_util::future::join_all(requests).await;
    let mut allowed = 0;
    for reply in replies {
        let reply = reply.unwrap();
        match reply.status {
            StatusCode::OK => {
                allowed += 1;
                assert_eq!(
                    reply.header("ratelimit-policy"),
                    Some("\"burst\";q=40;w=40000"),
                    "allowed responses name the policy"
                );
                let state = reply.header("ratelimit").unwrap();
                assert!(state.starts_with("\"burst\";r="), "{state}");
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
                assert!((900..=1000).contains(&retry_after), "{retry_after}");
                assert_eq!(
                    reply.header("ratelimit-policy"),
                    Some("\"burst\";q=40;w=40000")
                );
                assert_eq!(
                    reply.header("ratelimit"),
                    Some(format!("\"burst\";r=0;t={retry_after}").as_str())
                );
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    assert_eq!(allowed, BURST, "exactly the burst is allowed");
    assert_eq!(upstream.seen_at("/burst").len() as u64, BURST);
}

#[tokio::test]
async fn sustained_load_is_allowed_at_the_rate() {
    let upstream = Upstream::start().await;
    const RATE: f64 = 200.0;
    const BURST: u64 = 10;
    const WINDOW: Duration = Duration::from_secs(5);
    const CLIENTS: usize = 16;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "rate-limit",
            "rate-limit",
            &limit("steady", RATE, BURST, "\"client-addr\""),
        )
        .spawn()
        .await;
    let url = Arc::new(tandem.url("/steady"));
    let allowed = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers = (0..CLIENTS).map(|_| {
        let (url, allowed, refused) = (url.clone(), allowed.clone(), refused.clone());
        tokio::spawn(async move {
            let client = client();
            while started.elapsed() < WINDOW {
                let response = client.get(url.parse().unwrap()).await.unwrap();
                let counter = match response.status() {
                    StatusCode::OK => &allowed,
                    StatusCode::TOO_MANY_REQUESTS => &refused,
                    other => panic!("unexpected {other}"),
                };
                counter.fetch_add(1, Ordering::Relaxed);
                http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap();
            }
        })
    });
    futures_util::future::join_all(workers).await;
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = allowed.load(Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    // The bucket starts full, then refills at RATE for the whole window.
    let rate = (allowed - BURST) as f64 / elapsed;
    println!(
        "rate-limit: {allowed} allowed, {refused} refused in {elapsed:.2} s: {rate:.1}/s for {RATE}/s"
    );
    assert!(
        refused > allowed,
        "the load must exceed the limit to test it"
    );
    assert!(
        (rate - RATE).abs() <= RATE * 0.05,
        "allowed {rate:.1}/s, configured {RATE}/s"
    );
}

#[tokio::test]
async fn two_api_keys_are_limited_independently() {
    let upstream = Upstream::start().await;
    let hash = |key: &str| hex::encode(Sha256::digest(key.as_bytes()));
    let auth = format!(
        "order = 10\n[config]\n[config.api_keys]\n[[config.api_keys.keys]]\nid = \"team-a\"\nsha256 = \"{}\"\n[[config.api_keys.keys]]\nid = \"team-b\"\nsha256 = \"{}\"\n",
        hash("secret-a"),
        hash("secret-b")
    );
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("auth", "auth", &auth)
        .plugin(
            "rate-limit",
            "rate-limit",
            &limit("per-key", 0.001, 3, "[\"api-key\", \"client-addr\"]"),
        )
        .spawn()
        .await;
    let status = async |key: &str| {
        get_with(&tandem.url("/keyed"), &[("x-api-key", key)])
            .await
            .status
    };
    for _ in 0..3 {
        assert_eq!(status("secret-a").await, StatusCode::OK);
    }
    assert_eq!(status("secret-a").await, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..3 {
        assert_eq!(
            status("secret-b").await,
            StatusCode::OK,
            "team-b has its own bucket"
        );
    }
    assert_eq!(status("secret-b").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status("secret-a").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(upstream.seen_at("/keyed").len(), 6);
}

//! The auth plugin: JWT bearer tokens of every algorithm family, the ways a
//! token can be bad, scopes and claims, header spoofing and API keys. The
//! tokens come from the `jsonwebtoken` crate, not from the plugin's code.

use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::client::{Reply, get_with, send};
use crate::support::plugins::repo_root;
use crate::support::tandem::{Tandem, TandemBuilder};
use crate::support::upstream::Upstream;

pub(super) const ISSUER: &str = "https://issuer.test";
pub(super) const AUDIENCE: &str = "orders-api";
const HS_SECRET: &str = "test-secret-at-least-32-bytes-long!!";
const API_KEY: &str = "key-ci-0123456789";

pub(super) fn key_file(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("tests/integration/keys").join(name)).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn settings() -> String {
    let api_key_hash = hex::encode(Sha256::digest(API_KEY.as_bytes()));
    format!(
        r#"order = 10
[config]
realm = "tests"
[config.claim_headers]
email = "x-auth-email"
[config.jwt]
issuers = ["{ISSUER}"]
audiences = ["{AUDIENCE}"]
leeway_secs = 5
jwks = '''{jwks}'''
[[config.jwt.keys]]
kid = "hs"
alg = "HS256"
secret = "{HS_SECRET}"
[[config.jwt.keys]]
kid = "ec384"
alg = "ES384"
public_key_pem = '''{ec384}'''
[config.api_keys]
header = "x-api-key"
query = "api_key"
[[config.api_keys.keys]]
id = "ci"
sha256 = "{api_key_hash}"
scopes = ["orders:read"]
[[config.rules]]
prefix = "/public/"
access = "public"
[[config.rules]]
prefix = "/orders/"
methods = ["POST", "DELETE"]
scopes = ["orders:write"]
[[config.rules]]
prefix = "/admin/"
claims = {{ role = ["admin", "root"] }}
"#,
        jwks = key_file("jwks.json"),
        ec384 = key_file("ec384.pub.pem"),
    )
}

async fn start(upstream: &Upstream) -> Tandem {
    TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("auth", "auth", &settings())
        .spawn()
        .await
}

/// Valid claims for `subject`, with `extra` merged over them.
pub(super) fn claims(subject: &str, extra: Value) -> Value {
    let mut claims = json!({
        "sub": subject,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now(),
        "exp": now() + 600,
        "email": format!("{subject}@example.test"),
        "scope": "orders:read orders:write",
    });
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    claims
}

pub(super) fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs_key() -> EncodingKey {
    EncodingKey::from_secret(HS_SECRET.as_bytes())
}

/// A valid HS256 token for `subject` with `extra` claims.
fn hs_token(subject: &str, extra: Value) -> String {
    sign(Algorithm::HS256, "hs", &hs_key(), &claims(subject, extra))
}

/// Unpadded base64url, for tokens the JWT library refuses to make.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

pub(super) async fn bearer(tandem: &Tandem, path: &str, token: &str) -> Reply {
    get_with(
        &tandem.url(path),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

#[tokio::test]
async fn every_algorithm_family_passes_and_forwards_the_subject() {
    let upstream = Upstream::start().await;
    let tandem = start(&upstream).await;
    let rsa = EncodingKey::from_rsa_pem(key_file("rsa.pem").as_bytes()).unwrap();
    let ec256 = EncodingKey::from_ec_pem(key_file("ec256.pem").as_bytes()).unwrap();
    let ec384 = EncodingKey::from_ec_pem(key_file("ec384.pem").as_bytes()).unwrap();
    let ed = EncodingKey::from_ed_pem(key_file("ed25519.pem").as_bytes()).unwrap();
    let cases = [
        (Algorithm::HS256, "hs", &hs_key()),
        (Algorithm::RS256, "rsa", &rsa),
        (Algorithm::RS384, "rsa", &rsa),
        (Algorithm::RS512, "rsa", &rsa),
        (Algorithm::PS256, "rsa", &rsa),
        (Algorithm::ES256, "ec256", &ec256),
        (Algorithm::ES384, "ec384", &ec384),
        (Algorithm::EdDSA, "ed", &ed),
    ];
    for (alg, kid, key) in cases {
        let subject = format!("user-{alg:?}");
        let token = sign(alg, kid, key, &claims(&subject, json!({})));
        let path = format!("/orders/{alg:?}");
        let reply = bearer(&tandem, &path, &token).await;
        assert_eq!(reply.status, StatusCode::OK, "{alg:?}: {}", reply.text());
        let seen = upstream.seen_at(&path);
        assert_eq!(seen.len(), 1, "{alg:?}");
        assert_eq!(
            seen[0].headers["x-auth-subject"],
            subject.as_str(),
            "{alg:?}"
        );
        assert_eq!(
            seen[0].headers["x-auth-email"],
            format!("{subject}@example.test").as_str(),
            "{alg:?}: chosen claims are forwarded"
        );
        // The same token again comes from the cache, with the same result.
        let again = bearer(&tandem, &path, &token).await;
        assert_eq!(again.status, StatusCode::OK, "{alg:?} (cached)");
        assert_eq!(
            upstream.seen_at(&path)[1].headers["x-auth-subject"],
            subject.as_str()
        );
    }
}

#[tokio::test]
async fn bad_tokens_get_401_with_a_bearer_challenge() {
    let upstream = Upstream::start().await;
    let tandem = start(&upstream).await;
    let rsa_public_pem = key_file("rsa.pub.pem");
    let none_token = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(claims("mallory", json!({})).to_string().as_bytes())
    );
    let cases = [
        (
            "expired",
            "token expired",
            hs_token("u", json!({"exp": now() - 3600})),
        ),
        (
            "not yet valid",
            "token not valid yet",
            hs_token("u", json!({"nbf": now() + 3600})),
        ),
        (
            "wrong issuer",
            "issuer not accepted",
            hs_token("u", json!({"iss": "https://evil.test"})),
        ),
        (
            "wrong audience",
            "audience not accepted",
            hs_token("u", json!({"aud": "other-api"})),
        ),
        ("no expiry", "token has no expiry", {
            let mut claims = claims("u", json!({}));
            claims.as_object_mut().unwrap().remove("exp");
            sign(Algorithm::HS256, "hs", &hs_key(), &claims)
        }),
        (
            "bad signature",
            "invalid signature",
            sign(
                Algorithm::HS256,
                "hs",
                &EncodingKey::from_secret(b"another-secret-that-is-32-bytes-long"),
                &claims("u", json!({})),
            ),
        ),
        ("alg none", "algorithm not accepted", none_token),
        (
            "HMAC with the RSA public key, kid of the RSA key",
            "unknown key id",
            sign(
                Algorithm::HS256,
                "rsa",
                &EncodingKey::from_secret(rsa_public_pem.as_bytes()),
                &claims("u", json!({})),
            ),
        ),
        (
            "HMAC with the RSA public key, no kid",
            "invalid signature",
            {
                let header = Header::new(Algorithm::HS256);
                let key = EncodingKey::from_secret(rsa_public_pem.as_bytes());
                jsonwebtoken::encode(&header, &claims("u", json!({})), &key).unwrap()
            },
        ),
        (
            "unknown kid",
            "unknown key id",
            sign(Algorithm::HS256, "nope", &hs_key(), &claims("u", json!({}))),
        ),
        ("malformed", "malformed token", "not-a-jwt".to_owned()),
        ("malformed parts", "malformed token", "a.b.c".to_owned()),
        ("tampered claims", "invalid signature", {
            let token = hs_token("u", json!({}));
            let forged = hs_token("admin", json!({}));
            let parts: Vec<&str> = token.split('.').collect();
            let forged_claims = forged.split('.').nth(1).unwrap();
            format!("{}.{forged_claims}.{}", parts[0], parts[2])
        }),
        ("truncated signature", "invalid token", {
            let token = hs_token("u", json!({}));
            token[..token.len() - 10].to_owned()
        }),
    ];
    for (case, reason, token) in cases {
        let reply = bearer(&tandem, "/orders/1", &token).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{case}: {}",
            reply.text()
        );
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"tests\"")
                && challenge.contains("error=\"invalid_token\""),
            "{case}: {challenge}"
        );
        assert!(
            challenge.ends_with(&format!("error_description=\"{reason}\"")),
            "{case}: {challenge}"
        );
    }
    assert!(upstream.seen().is_empty(), "no bad token reached the app");

    let reply = get_with(&tandem.url("/orders/1"), &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"tests\""),
        "no credentials: a bare challenge (RFC 6750 3.1)"
    );
}

#[tokio::test]
async fn scopes_and_claims_decide_403() {
    let upstream = Upstream::start().await;
    let tandem = start(&upstream).await;
    let post = async |token: &str| {
        send(
            http::Request::post(tandem.url("/orders/9"))
                .header("authorization", format!("Bearer {token}"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
    };
    let reader = hs_token("reader", json!({"scope": "orders:read"}));
    let reply = post(&reader).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"orders:write\""),
        "{challenge}"
    );
    // The same token may read: GET is not under the scoped rule.
    assert_eq!(
        bearer(&tandem, "/orders/9", &reader).await.status,
        StatusCode::OK
    );

    let writer = hs_token("writer", json!({"scp": ["orders:read", "orders:write"]}));
    assert_eq!(
        post(&writer).await.status,
        StatusCode::OK,
        "`scp` arrays count too"
    );

    let user = hs_token("user", json!({"role": "user"}));
    assert_eq!(
        bearer(&tandem, "/admin/x", &user).await.status,
        StatusCode::FORBIDDEN
    );
    let admin = hs_token("boss", json!({"role": "admin"}));
    assert_eq!(
        bearer(&tandem, "/admin/x", &admin).await.status,
        StatusCode::OK
    );
    let root = hs_token("root", json!({"role": ["ops", "root"]}));
    assert_eq!(
        bearer(&tandem, "/admin/x", &root).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_app() {
    let upstream = Upstream::start().await;
    let tandem = start(&upstream).await;
    let spoofed = [
        ("x-auth-subject", "admin"),
        ("x-auth-email", "admin@example.test"),
    ];

    let reply = get_with(&tandem.url("/public/page"), &spoofed).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "public routes need no credentials"
    );
    let seen = &upstream.seen_at("/public/page")[0];
    assert!(
        seen.headers.get("x-auth-subject").is_none(),
        "{:?}",
        seen.headers
    );
    assert!(
        seen.headers.get("x-auth-email").is_none(),
        "{:?}",
        seen.headers
    );

    let token = hs_token("alice", json!({}));
    let mut headers = spoofed.to_vec();
    let authorization = format!("Bearer {token}");
    headers.push(("authorization", &authorization));
    let reply = get_with(&tandem.url("/orders/1"), &headers).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = &upstream.seen_at("/orders/1")[0];
    let subjects: Vec<_> = seen.headers.get_all("x-auth-subject").iter().collect();
    assert_eq!(subjects, ["alice"], "only the verified subject");
    let emails: Vec<_> = seen.headers.get_all("x-auth-email").iter().collect();
    assert_eq!(emails, ["alice@example.test"]);

    let reply = get_with(&tandem.url("/orders/2"), &spoofed).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "a header is no credential"
    );
}

#[tokio::test]
async fn api_keys_pass_and_fail_as_configured() {
    let upstream = Upstream::start().await;
    let tandem = start(&upstream).await;

    let reply = get_with(&tandem.url("/orders/1"), &[("x-api-key", API_KEY)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        upstream.seen_at("/orders/1")[0].headers["x-auth-subject"],
        "ci"
    );

    let reply = get_with(&tandem.url("/orders/2"), &[("x-api-key", "key-ci-wrong")]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );

    let reply = get_with(
        &tandem.url(&format!("/orders/3?a=1&api_key={API_KEY}&b=%20")),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = upstream.seen_at("/orders/3?a=1&b=%20");
    assert_eq!(
        seen.len(),
        1,
        "the key is removed from the query: {:?}",
        upstream.seen()
    );
    assert_eq!(seen[0].headers["x-auth-subject"], "ci");

    // On a public route too, a key in the query never reaches the app.
    let reply = get_with(
        &tandem.url(&format!("/public/key?api_key={API_KEY}&c=3")),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        upstream.seen_at("/public/key?c=3").len(),
        1,
        "the key is removed from a public route's query: {:?}",
        upstream.seen()
    );

    let reply = get_with(&tandem.url("/orders/4?api_key=nope"), &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // The key grants orders:read only.
    let reply = send(
        http::Request::delete(tandem.url("/orders/5"))
            .header("x-api-key", API_KEY)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(upstream.seen_at("/orders/5").is_empty());
}

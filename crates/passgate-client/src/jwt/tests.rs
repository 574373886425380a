//! Every rule of S19, each refused on its own with everything else right.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use super::*;

const ISS: &str = "https://auth.example.com";
const AUD: &str = "prj_app";
const NOW: i64 = 1_795_219_200;

fn key() -> SigningKey {
    SigningKey::from_bytes(&crate::random::bytes::<32>())
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "usr_1", "email": "ada@example.com", "email_verified": true,
        "amr": ["email_link"], "iat": NOW - 10, "exp": NOW + 290, "jti": "jti_1",
    })
}

fn encode(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default())
}

fn sign(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", encode(header), encode(claims));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

fn header(kid: &str) -> Value {
    json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid })
}

fn keys(kid: &str, key: &SigningKey) -> KeySet {
    vec![(kid.to_string(), key.verifying_key().to_bytes())]
}

fn verify(token: &str, jwks: &KeySet) -> Result<Claims, JwtError> {
    verify_with_keys(token, jwks, ISS, AUD, NOW)
}

#[test]
fn a_token_passgate_would_sign_verifies() {
    let k = key();
    let claims = verify(&sign(&k, &header("k1"), &claims()), &keys("k1", &k)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((claims.sub.as_str(), claims.email.as_str(), claims.aud.as_str()), ("usr_1", "ada@example.com", AUD));
    assert_eq!(claims.amr, ["email_link"]);
}

#[test]
fn alg_none_is_refused() {
    let k = key();
    let input = format!("{}.{}", encode(&json!({"alg": "none", "kid": "k1"})), encode(&claims()));
    // Unsigned, or with a signature-shaped third part: the algorithm refuses it.
    assert_eq!(verify(&format!("{input}."), &keys("k1", &k)).err(), Some(JwtError::Algorithm));
    let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
    assert_eq!(verify(&forged, &keys("k1", &k)).err(), Some(JwtError::Algorithm));
}

#[test]
fn hs256_keyed_with_the_public_key_is_refused() {
    let k = key();
    let public = k.verifying_key().to_bytes();
    let input = format!("{}.{}", encode(&json!({"alg": "HS256", "kid": "k1"})), encode(&claims()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&public).unwrap_or_else(|e| panic!("{e}"));
    mac.update(input.as_bytes());
    // An HMAC tag is 32 bytes; pad it to look like an Ed25519 signature too.
    let mut tag = mac.finalize().into_bytes().to_vec();
    for forged_sig in [tag.clone(), {
        tag.resize(64, 0);
        tag
    }] {
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&forged_sig));
        assert_eq!(verify(&forged, &keys("k1", &k)).err(), Some(JwtError::Algorithm));
    }
}

#[test]
fn other_algorithms_and_case_variants_are_refused() {
    let k = key();
    for alg in ["ES256", "RS256", "eddsa", "Ed25519", ""] {
        let token = sign(&k, &json!({"alg": alg, "kid": "k1"}), &claims());
        assert_eq!(verify(&token, &keys("k1", &k)).err(), Some(JwtError::Algorithm), "{alg}");
    }
}

#[test]
fn a_missing_or_unknown_kid_is_refused() {
    let k = key();
    let token = sign(&k, &json!({"alg": "EdDSA"}), &claims());
    assert_eq!(verify(&token, &keys("k1", &k)).err(), Some(JwtError::MissingKid));
    let token = sign(&k, &json!({"alg": "EdDSA", "kid": 7}), &claims());
    assert_eq!(verify(&token, &keys("k1", &k)).err(), Some(JwtError::MissingKid));
    let token = sign(&k, &header("k2"), &claims());
    assert_eq!(verify(&token, &keys("k1", &k)).err(), Some(JwtError::UnknownKid));
}

#[test]
fn key_bearing_and_critical_headers_are_refused() {
    let k = key();
    let public = URL_SAFE_NO_PAD.encode(k.verifying_key().to_bytes());
    for (name, value) in [
        ("jku", json!("https://evil.example/jwks.json")),
        ("x5u", json!("https://evil.example/cert.pem")),
        ("jwk", json!({"kty": "OKP", "crv": "Ed25519", "x": public})),
        ("x5c", json!(["MIIB"])),
        ("crit", json!(["exp"])),
    ] {
        let mut h = header("k1");
        h[name] = value;
        let token = sign(&k, &h, &claims());
        assert_eq!(verify(&token, &keys("k1", &k)).err(), Some(JwtError::ForbiddenHeader(name.into())), "{name}");
    }
}

#[test]
fn a_signature_by_another_key_or_over_other_claims_is_refused() {
    let (k, other) = (key(), key());
    let token = sign(&other, &header("k1"), &claims());
    assert_eq!(verify(&token, &keys("k1", &k)).err(), Some(JwtError::BadSignature));
    // The claims swapped after signing.
    let token = sign(&k, &header("k1"), &claims());
    let mut changed = claims();
    changed["sub"] = json!("usr_admin");
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], encode(&changed), parts[2]);
    assert_eq!(verify(&tampered, &keys("k1", &k)).err(), Some(JwtError::BadSignature));
}

#[test]
fn the_wrong_issuer_or_audience_is_refused() {
    let k = key();
    let jwks = keys("k1", &k);
    for (field, value, error) in [
        ("iss", json!("https://evil.example"), JwtError::Issuer),
        ("aud", json!("prj_other"), JwtError::Audience),
        ("aud", json!(["prj_other"]), JwtError::Audience),
        ("aud", json!(null), JwtError::Audience),
    ] {
        let mut c = claims();
        c[field] = value;
        assert_eq!(verify(&sign(&k, &header("k1"), &c), &jwks).err(), Some(error), "{field}");
    }
    let mut c = claims();
    c["aud"] = json!(["prj_other", AUD]);
    assert!(verify(&sign(&k, &header("k1"), &c), &jwks).is_ok());
}

#[test]
fn time_claims_allow_at_most_thirty_seconds_of_skew() {
    let k = key();
    let jwks = keys("k1", &k);
    let with = |field: &str, value: i64| {
        let mut c = claims();
        c[field] = json!(value);
        verify(&sign(&k, &header("k1"), &c), &jwks)
    };
    assert!(with("exp", NOW - 30).is_ok());
    assert_eq!(with("exp", NOW - 31).err(), Some(JwtError::Expired));
    assert!(with("nbf", NOW + 30).is_ok());
    assert_eq!(with("nbf", NOW + 31).err(), Some(JwtError::NotYetValid));
    assert!(with("iat", NOW + 30).is_ok());
    assert_eq!(with("iat", NOW + 31).err(), Some(JwtError::IssuedInFuture));
    let mut c = claims();
    if let Some(object) = c.as_object_mut() {
        object.remove("exp");
    }
    assert_eq!(verify(&sign(&k, &header("k1"), &c), &jwks).err(), Some(JwtError::Claim("exp")));
}

#[test]
fn malformed_tokens_are_refused() {
    let k = key();
    let jwks = keys("k1", &k);
    let good = sign(&k, &header("k1"), &claims());
    let (longer, broken) = (format!("{good}.x"), good.replace('.', ".!"));
    for bad in ["", "a.b", "a.b.c.d", longer.as_str(), broken.as_str(), "!!!.e30.AAAA"] {
        assert_eq!(verify(bad, &jwks).err(), Some(JwtError::Malformed), "{bad}");
    }
}

/// A JWKS on a real socket that counts its fetches.
async fn jwks_server(keys: Arc<std::sync::Mutex<Value>>) -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let counter = counter.clone();
            let keys = keys.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = keys.lock().map(|k| k.clone()).unwrap_or_default();
                axum::Json(body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), fetches)
}

fn jwk(kid: &str, key: &SigningKey) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
           "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes())})
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_at_most_once_a_minute() {
    let (old, new) = (key(), key());
    let published = Arc::new(std::sync::Mutex::new(json!({"keys": [jwk("old", &old)]})));
    let (url, fetches) = jwks_server(published.clone()).await;
    let client = Client::new(&url, crate::SecretKey::new("sk_test_x")).unwrap_or_else(|e| panic!("{e}"));
    let verifier = JwtVerifier::new(&client, ISS, AUD);

    assert!(verifier.verify_at(&sign(&old, &header("old"), &claims()), NOW).await.is_ok());
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // Forged kids: refused, and only the first one costs a fetch... which
    // the first fetch above already spent within the minute.
    for i in 0..20 {
        let forged = sign(&new, &header(&format!("forged{i}")), &claims());
        assert_eq!(verifier.verify_at(&forged, NOW).await.err(), Some(JwtError::UnknownKid));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "unknown kids must not each fetch the JWKS");

    // After a rotation, a verifier that may refetch picks the new key up once.
    if let Ok(mut keys) = published.lock() {
        *keys = json!({"keys": [jwk("old", &old), jwk("new", &new)]});
    }
    let verifier = verifier.with_refetch_interval(Duration::ZERO);
    assert!(verifier.verify_at(&sign(&new, &header("new"), &claims()), NOW).await.is_ok());
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert!(verifier.verify_at(&sign(&new, &header("new"), &claims()), NOW).await.is_ok());
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "a known kid needs no fetch");
}

#[test]
fn only_ed25519_signing_keys_of_the_jwks_are_used() {
    let k = key();
    let good = passgate_api_types::Jwk {
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        alg: "EdDSA".into(),
        key_use: "sig".into(),
        kid: "k1".into(),
        x: URL_SAFE_NO_PAD.encode(k.verifying_key().to_bytes()),
    };
    let mut short = good.clone();
    short.kid = "short".into();
    short.x = URL_SAFE_NO_PAD.encode([1u8; 31]);
    let mut enc = good.clone();
    enc.kid = "enc".into();
    enc.key_use = "enc".into();
    let mut x25519 = good.clone();
    x25519.kid = "x".into();
    x25519.crv = "X25519".into();
    let set = passgate_api_types::Jwks { keys: vec![good, short, enc, x25519] };
    let usable = ed25519_keys(&set);
    assert_eq!(usable.iter().map(|(kid, _)| kid.as_str()).collect::<Vec<_>>(), ["k1"]);
}

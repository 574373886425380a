//! Micro-benchmarks of the pure pieces on every login's hot path:
//! `cargo bench -p passgate-core` (bench/run.sh records them in BENCHMARKS.md).

use passgate_core::Timestamp;
use passgate_core::code::LoginCode;
use passgate_core::credential::{SessionKeyPair, TargetPublicKey, credential_bundle};
use passgate_core::email::EmailAddress;
use passgate_core::jwt::{JwtSigner, LoginClaims};
use passgate_core::otp::{CodeShape, OtpCode};
use passgate_core::redirect::{ValidationUrl, parse_allowed};
use passgate_core::secret::{Purpose, ServerSecret};
use passgate_core::stamp::StampedRequest;
use passgate_core::token::LinkToken;

fn main() {
    divan::main();
}

/// A fresh 48-character token from the OS CSPRNG and its SHA-256 (start).
#[divan::bench]
fn token_generate_and_hash() -> [u8; 32] {
    LinkToken::generate().hash().0
}

/// Parsing a presented token and hashing it (verify).
#[divan::bench]
fn token_parse_and_hash(bencher: divan::Bencher) {
    let token = LinkToken::generate().expose().to_string();
    bencher.bench(|| LinkToken::parse(divan::black_box(&token)).map(|t| t.hash().0));
}

#[divan::bench(args = ["Ada.Lovelace@Example.com", "  ada@bücher.example "])]
fn email_parse(address: &str) -> Result<EmailAddress, passgate_core::email::EmailError> {
    EmailAddress::parse(divan::black_box(address))
}

/// Matching a validationUrl against a project's allowed redirect URLs,
/// parsing the patterns as the handler does on every start.
#[divan::bench]
fn redirect_match(bencher: divan::Bencher) {
    let patterns = vec![
        "https://app.example.com/auth/callback".to_string(),
        "https://staging.example.com/auth/callback".to_string(),
        "http://localhost:*".to_string(),
    ];
    bencher.bench(|| {
        let allowed = parse_allowed(divan::black_box(&patterns)).unwrap_or_default();
        ValidationUrl::check(divan::black_box("https://app.example.com/auth/callback?next=%2F"), &allowed).is_ok()
    });
}

#[divan::bench]
fn jwt_sign(bencher: divan::Bencher) {
    let signer = JwtSigner::generate();
    let claims = LoginClaims {
        iss: "https://auth.example.com".into(),
        aud: "prj_0193a2b4c5d67e8f9a0b1c2d3e4f5a6b".into(),
        sub: "usr_0193a2b4c5d67e8f9a0b1c2d3e4f5a6c".into(),
        email: "ada@example.com".into(),
        email_verified: true,
        amr: vec!["email_link".into()],
        iat: 1_795_219_200,
        exp: 1_795_219_500,
        jti: "0193a2b4c5d67e8f9a0b1c2d3e4f5a6d".into(),
    };
    bencher.bench(|| signer.sign(divan::black_box(&claims)));
}

/// Sealing the queued email's payload (AES-256-GCM) as start does.
#[divan::bench]
fn seal_email_payload(bencher: divan::Bencher) {
    let secret = ServerSecret::from_bytes(&[7u8; 32]).unwrap_or_else(|e| panic!("{e}"));
    let payload = br#"{"template":"login","projectId":"prj_0193a2b4c5d67e8f9a0b1c2d3e4f5a6b","to":"ada@example.com","appName":"Acme","link":"https://app.example.com/auth/callback?token=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKl","expiresMinutes":15}"#;
    bencher.bench(|| secret.seal(Purpose::Outbox, divan::black_box(payload)));
}

/// A fallback code and its keyed hash (start with includeCode).
#[divan::bench]
fn code_generate_and_keyed_hash(bencher: divan::Bencher) {
    let secret = ServerSecret::from_bytes(&[7u8; 32]).unwrap_or_else(|e| panic!("{e}"));
    bencher.bench(|| {
        let code = LoginCode::generate();
        secret.keyed_hash(Purpose::LoginCode, code.expose().as_bytes())
    });
}

/// A one-time code and its keyed hash (otp/send), and the keyed hash of a
/// typed code read the Crockford way (otp/verify).
#[divan::bench]
fn otp_code_generate_hash_and_read(bencher: divan::Bencher) {
    let secret = ServerSecret::from_bytes(&[7u8; 32]).unwrap_or_else(|e| panic!("{e}"));
    let shape = CodeShape::new(Some(6), false).unwrap_or_else(|e| panic!("{e}"));
    bencher.bench(|| {
        let code = OtpCode::generate(shape);
        let stored = secret.keyed_hash(Purpose::OtpCode, code.expose().as_bytes());
        let typed = OtpCode::parse(divan::black_box(code.expose())).unwrap_or_else(|e| panic!("{e}"));
        (stored, secret.keyed_hash_candidates(Purpose::OtpCode, typed.expose().as_bytes()))
    });
}

/// What a session credential adds to otp/verify: a fresh P-256 key pair
/// (minted for every verify) and, with a target key, the HPKE seal of its
/// private half (one ephemeral key and one ECDH).
#[divan::bench]
fn session_credential_mint_and_seal(bencher: divan::Bencher) {
    let target = TargetPublicKey::parse_hex(
        "04abc7e49a4c6b3566d77d0304addc6ed0e98512ffccf505e6a8e3eb25c685136f853148544876de76c0f2ef99cdc3a05ccf5ded7860c7c021238f9e2073d2356c",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    bencher.bench(|| {
        let session = SessionKeyPair::generate();
        (session.public_key_hex(), credential_bundle(divan::black_box(&target), &session))
    });
}

/// Only the key pair, which every otp/verify mints whether or not a target
/// key turns out to be in play.
#[divan::bench]
fn session_key_mint(bencher: divan::Bencher) {
    bencher.bench(|| SessionKeyPair::generate().public_key_hex());
}

/// What a stamped request costs before the database: decoding X-Stamp,
/// the P-256 signature over the body, the body's action and time, and the
/// replay digest.
#[divan::bench]
fn stamp_verify(bencher: divan::Bencher) {
    use base64::Engine;
    use p256::ecdsa::signature::Signer;
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap_or_else(|e| panic!("{e}"));
    let now = Timestamp(1_795_219_200_000);
    let body = format!(r#"{{"action":"whoami","timestampMs":"{}"}}"#, now.millis());
    let signature: p256::ecdsa::Signature = key.sign(body.as_bytes());
    let stamp = serde_json::json!({
        "publicKey": hex::encode(key.verifying_key().to_sec1_point(true).as_bytes()),
        "scheme": "SIGNATURE_SCHEME_TK_API_P256",
        "signature": hex::encode(signature.to_der().as_bytes()),
    });
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(stamp.to_string());
    bencher.bench(|| {
        StampedRequest::verify(Some(divan::black_box(header.as_bytes())), body.as_bytes(), "whoami", now)
            .map(|s| s.replay_digest())
    });
}

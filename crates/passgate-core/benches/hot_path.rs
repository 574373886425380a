//! Micro-benchmarks of the pure pieces on every login's hot path:
//! `cargo bench -p passgate-core` (bench/run.sh records them in BENCHMARKS.md).

use passgate_core::code::LoginCode;
use passgate_core::email::EmailAddress;
use passgate_core::jwt::{JwtSigner, LoginClaims};
use passgate_core::redirect::{ValidationUrl, parse_allowed};
use passgate_core::secret::{Purpose, ServerSecret};
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

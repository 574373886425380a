//! Verifying passgate's result JWTs (S19).
//!
//! A short verifier of our own rather than a general JWT library, so that
//! every rule is pinned here and cannot be loosened by a header: the
//! algorithm is EdDSA and nothing else (`alg: none`, HS256 keyed with the
//! public key and every other algorithm are refused), a `kid` is required
//! and must name a key of passgate's JWKS, headers that bring their own key
//! or critical extensions (`jku`, `x5u`, `jwk`, `x5c`, `crit`) are refused,
//! the signature is checked strictly (`verify_strict`: no small-order keys,
//! no malleable encodings), and `iss`, `aud`, `exp`, `nbf` and `iat` are
//! checked with at most 30 seconds of leeway.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use url::Url;

use crate::client::Client;

/// The most clock skew the verifier ever allows.
pub const MAX_LEEWAY: Duration = Duration::from_secs(30);
/// How often an unknown `kid` may make the verifier fetch the JWKS again.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// Why a JWT was refused. The variants are for logs and tests; show the
/// end user only that the sign-in failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts, or a part that is not JSON.
    #[error("not a compact JWS")]
    Malformed,
    /// `alg` is not exactly `EdDSA` (`none`, `HS256` and all others).
    #[error("the algorithm is not EdDSA")]
    Algorithm,
    /// The header has no `kid` string.
    #[error("the header has no kid")]
    MissingKid,
    /// The header has this member, which could bring its own key or
    /// extensions (`jku`, `x5u`, `jwk`, `x5c`, `x5t`, `x5t#S256`, `crit`).
    #[error("the header carries `{0}`, which is refused")]
    ForbiddenHeader(String),
    /// No key of the JWKS has the token's `kid`.
    #[error("no key of the JWKS has this kid")]
    UnknownKid,
    /// The signature is not the named key's over this header and claims.
    #[error("the signature does not verify")]
    BadSignature,
    /// `iss` is not passgate's public URL.
    #[error("the issuer is not the expected one")]
    Issuer,
    /// `aud` does not name this project.
    #[error("the audience is not this project")]
    Audience,
    /// `exp` passed more than the leeway ago.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is more than the leeway ahead.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is more than the leeway ahead.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// A claim is missing or of the wrong type.
    #[error("the claims lack or mistype `{0}`")]
    Claim(&'static str),
    /// The JWKS could not be fetched or read.
    #[error("the JWKS could not be fetched: {0}")]
    Jwks(String),
}

/// The claims of a passgate result JWT, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// passgate's public URL.
    pub iss: String,
    /// The project id.
    pub aud: String,
    /// The user id (`usr_…`).
    pub sub: String,
    /// The user's canonical address.
    pub email: String,
    /// Always true: passgate verified the address by its email.
    pub email_verified: bool,
    /// `["email_link"]` or `["email_otp"]`.
    pub amr: Vec<String>,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds): five minutes after `iat`.
    pub exp: i64,
    /// Not before (Unix seconds), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The token's unique id.
    pub jti: String,
}

/// One Ed25519 key of the JWKS: its `kid` and its 32 public bytes.
pub type KeySet = Vec<(String, [u8; 32])>;

/// What a token must say besides its signature.
#[derive(Debug, Clone)]
struct Expectations {
    issuer: String,
    audience: String,
    leeway: Duration,
}

#[derive(Debug, Default)]
struct KeyCache {
    keys: KeySet,
    fetched_at: Option<Instant>,
}

/// Verifies result JWTs against passgate's JWKS, which it fetches on first
/// use and again when a token names a `kid` it does not know (after a key
/// rotation) — at most once a minute, so a flood of forged `kid`s cannot
/// turn into a flood of fetches.
///
/// ```no_run
/// use passgate_client::{Client, JwtVerifier, SecretKey};
///
/// # async fn run(jwt: &str) -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::new("http://127.0.0.1:8080", SecretKey::new("sk_test_…"))?;
/// // The issuer is passgate's public URL; the audience your project id.
/// let verifier = JwtVerifier::new(&client, "http://127.0.0.1:8080", "prj_…");
/// let claims = verifier.verify(jwt).await?;
/// println!("{} signed in", claims.email);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct JwtVerifier {
    http: reqwest::Client,
    jwks_url: Url,
    expect: Expectations,
    refetch_interval: Duration,
    cache: Mutex<KeyCache>,
}

impl JwtVerifier {
    /// A verifier for tokens of `audience` (the project id) issued by
    /// `issuer` (passgate's public URL), with the JWKS of `client`'s server.
    pub fn new(client: &Client, issuer: &str, audience: &str) -> Self {
        let mut jwks_url = client.base_url().clone();
        if let Ok(mut path) = jwks_url.path_segments_mut() {
            path.pop_if_empty().extend([".well-known", "jwks.json"]);
        }
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            jwks_url,
            expect: Expectations { issuer: issuer.into(), audience: audience.into(), leeway: MAX_LEEWAY },
            refetch_interval: JWKS_REFETCH_INTERVAL,
            cache: Mutex::new(KeyCache::default()),
        }
    }

    /// Less clock skew than the default 30 s (more is not allowed).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.expect.leeway = leeway.min(MAX_LEEWAY);
        self
    }

    /// How long to wait before fetching the JWKS again for an unknown `kid`
    /// (default and minimum in production: one minute).
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// Verifies `token` now.
    pub async fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        self.verify_at(token, unix_now()).await
    }

    /// Verifies `token` as of `now` (seconds since the Unix epoch).
    pub async fn verify_at(&self, token: &str, now: i64) -> Result<Claims, JwtError> {
        // Parse and vet the header before any fetch: a forged header costs
        // no network call.
        let parsed = Parsed::new(token)?;
        let mut cache = self.cache.lock().await;
        if cache.fetched_at.is_none() {
            self.refresh(&mut cache).await?;
        }
        if !cache.keys.iter().any(|(kid, _)| kid == &parsed.kid)
            && cache.fetched_at.is_none_or(|at| at.elapsed() >= self.refetch_interval)
        {
            self.refresh(&mut cache).await?;
        }
        let keys = cache.keys.clone();
        drop(cache);
        parsed.verify(&keys, &self.expect, now)
    }

    async fn refresh(&self, cache: &mut KeyCache) -> Result<(), JwtError> {
        // Counted as a fetch even when it fails, so an unreachable JWKS is
        // not hammered either.
        cache.fetched_at = Some(Instant::now());
        let response = self.http.get(self.jwks_url.clone()).send().await.map_err(|e| JwtError::Jwks(e.to_string()))?;
        if !response.status().is_success() {
            return Err(JwtError::Jwks(format!("status {}", response.status())));
        }
        let set: passgate_api_types::Jwks = response.json().await.map_err(|e| JwtError::Jwks(e.to_string()))?;
        cache.keys = ed25519_keys(&set);
        Ok(())
    }
}

/// The usable keys of a JWKS: Ed25519 (`OKP`/`Ed25519`), for signing,
/// with a `kid` and 32 bytes of `x`. Anything else is skipped.
pub(crate) fn ed25519_keys(set: &passgate_api_types::Jwks) -> KeySet {
    set.keys
        .iter()
        .filter(|k| k.kty == "OKP" && k.crv == "Ed25519" && k.alg == "EdDSA" && k.key_use == "sig")
        .filter_map(|k| {
            let x: [u8; 32] = URL_SAFE_NO_PAD.decode(&k.x).ok()?.try_into().ok()?;
            Some((k.kid.clone(), x))
        })
        .collect()
}

/// Verifies `token` against `keys` as of `now` (Unix seconds): the pure
/// core of [`JwtVerifier`], for callers that manage the JWKS themselves.
pub fn verify_with_keys(
    token: &str,
    keys: &KeySet,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Result<Claims, JwtError> {
    let expect = Expectations { issuer: issuer.into(), audience: audience.into(), leeway: MAX_LEEWAY };
    Parsed::new(token)?.verify(keys, &expect, now)
}

struct Parsed<'a> {
    signing_input: &'a str,
    claims_b64: &'a str,
    signature: [u8; 64],
    kid: String,
}

impl<'a> Parsed<'a> {
    fn new(token: &'a str) -> Result<Self, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JwtError::Malformed);
        };
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).map_err(|_| JwtError::Malformed)?)
                .map_err(|_| JwtError::Malformed)?;
        let header = header.as_object().ok_or(JwtError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA") {
            return Err(JwtError::Algorithm);
        }
        if let Some(bad) =
            ["jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "crit"].iter().find(|k| header.contains_key(**k))
        {
            return Err(JwtError::ForbiddenHeader((*bad).to_string()));
        }
        let kid = header.get("kid").and_then(|k| k.as_str()).ok_or(JwtError::MissingKid)?.to_string();
        let signature: [u8; 64] =
            URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?.try_into().map_err(|_| JwtError::Malformed)?;
        Ok(Self { signing_input: &token[..h.len() + 1 + c.len()], claims_b64: c, signature, kid })
    }

    fn verify(&self, keys: &KeySet, expect: &Expectations, now: i64) -> Result<Claims, JwtError> {
        let public = keys.iter().find(|(kid, _)| kid == &self.kid).map(|(_, key)| key).ok_or(JwtError::UnknownKid)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(public).map_err(|_| JwtError::BadSignature)?;
        key.verify_strict(self.signing_input.as_bytes(), &ed25519_dalek::Signature::from_bytes(&self.signature))
            .map_err(|_| JwtError::BadSignature)?;
        let raw: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(self.claims_b64).map_err(|_| JwtError::Malformed)?)
                .map_err(|_| JwtError::Malformed)?;
        check_claims(&raw, expect, now)
    }
}

fn check_claims(raw: &serde_json::Value, expect: &Expectations, now: i64) -> Result<Claims, JwtError> {
    let leeway = expect.leeway.min(MAX_LEEWAY).as_secs() as i64;
    // `aud` may be a string or an array (RFC 7519); passgate sends a string.
    let audience_ok = match raw.get("aud") {
        Some(serde_json::Value::String(a)) => a == &expect.audience,
        Some(serde_json::Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(expect.audience.as_str())),
        _ => false,
    };
    if raw.get("iss").and_then(|v| v.as_str()) != Some(expect.issuer.as_str()) {
        return Err(JwtError::Issuer);
    }
    if !audience_ok {
        return Err(JwtError::Audience);
    }
    let number = |name: &'static str| raw.get(name).and_then(|v| v.as_i64()).ok_or(JwtError::Claim(name));
    let (exp, iat) = (number("exp")?, number("iat")?);
    if now > exp.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    if raw.get("nbf").is_some() && now < number("nbf")?.saturating_sub(leeway) {
        return Err(JwtError::NotYetValid);
    }
    if iat > now.saturating_add(leeway) {
        return Err(JwtError::IssuedInFuture);
    }
    let mut claims = raw.clone();
    if let Some(object) = claims.as_object_mut() {
        object.insert("aud".into(), serde_json::Value::String(expect.audience.clone()));
    }
    serde_json::from_value(claims).map_err(|_| JwtError::Claim("sub/email/amr/jti"))
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests;

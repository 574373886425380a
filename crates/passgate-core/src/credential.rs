//! Session credentials in the format of Turnkey's email-auth bundles, so
//! Turnkey's client libraries open them unchanged: a fresh P-256 private key
//! sealed with RFC 9180 HPKE (base mode, DHKEM(P-256, HKDF-SHA256),
//! HKDF-SHA256, AES-256-GCM) to the public key the browser sent.
//!
//! - `info` is the bytes `turnkey_hpke`;
//! - the associated data is the encapsulated key then the receiver's key,
//!   both 65-byte uncompressed, whatever form the browser sent;
//! - the plaintext is the 32-byte private scalar;
//! - the bundle is base58check (a 4-byte double-SHA-256 checksum) of the
//!   33-byte compressed encapsulated key followed by the ciphertext and its
//!   16-byte tag.
//!
//! The private key exists only in memory, long enough to be sealed; its
//! public half is what passgate stores as the session key.

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::DhP256HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use p256::elliptic_curve::sec1::ToSec1Point;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::random;

const INFO: &[u8] = b"turnkey_hpke";
type Kem = DhP256HkdfSha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("targetPublicKey must be the hex of a P-256 public key: 65 bytes uncompressed or 33 compressed")]
    TargetKey,
    #[error("the credential could not be sealed")]
    Seal,
    #[error("the bundle is not a credential bundle for this key")]
    Open,
}

/// The browser's public key a credential is sealed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPublicKey(p256::PublicKey);

impl TargetPublicKey {
    /// Hex of a SEC1 key, 65 bytes uncompressed or 33 compressed, on the
    /// curve (the identity and off-curve points are refused).
    pub fn parse_hex(text: &str) -> Result<Self, CredentialError> {
        let bytes = hex::decode(text.trim()).map_err(|_| CredentialError::TargetKey)?;
        if !matches!((bytes.len(), bytes.first()), (65, Some(4)) | (33, Some(2 | 3))) {
            return Err(CredentialError::TargetKey);
        }
        p256::PublicKey::from_sec1_bytes(&bytes).map(Self).map_err(|_| CredentialError::TargetKey)
    }

    /// The 65-byte uncompressed encoding (what HPKE and the AAD use).
    pub fn uncompressed(&self) -> [u8; 65] {
        let point = self.0.to_sec1_point(false);
        let mut out = [0u8; 65];
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// As stored and compared: lower-case hex of the uncompressed key, one
    /// spelling for the two forms a client may send.
    pub fn to_hex(&self) -> String {
        hex::encode(self.uncompressed())
    }
}

/// A freshly minted session key pair; the private half is wiped on drop
/// and never leaves but sealed in a bundle.
pub struct SessionKeyPair(p256::SecretKey);

impl std::fmt::Debug for SessionKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKeyPair({})", self.public_key_hex())
    }
}

impl SessionKeyPair {
    /// A new key from the OS CSPRNG (a draw outside the curve's order, or
    /// zero, is drawn again; the chance is about 2^-32).
    pub fn generate() -> Self {
        loop {
            let candidate = Zeroizing::new(random::bytes::<32>());
            if let Ok(secret) = p256::SecretKey::from_slice(&candidate[..]) {
                return Self(secret);
            }
        }
    }

    /// The public key as Turnkey's stamper sends it: hex of the 33-byte
    /// compressed point.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.0.public_key().to_sec1_point(true).as_bytes())
    }

    /// The private scalar (for tests and for sealing).
    fn scalar(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&self.0.to_bytes());
        out
    }
}

fn checksum(payload: &[u8]) -> [u8; 4] {
    let twice = Sha256::digest(Sha256::digest(payload));
    [twice[0], twice[1], twice[2], twice[3]]
}

/// Seals the session's private key to `target`: the `credentialBundle`.
pub fn credential_bundle(target: &TargetPublicKey, session: &SessionKeyPair) -> Result<String, CredentialError> {
    let receiver = target.uncompressed();
    let receiver_key = <Kem as hpke::Kem>::PublicKey::from_bytes(&receiver).map_err(|_| CredentialError::TargetKey)?;
    let (encapped, mut context) = hpke::setup_sender::<AesGcm256, HkdfSha256, Kem>(&OpModeS::Base, &receiver_key, INFO)
        .map_err(|_| CredentialError::Seal)?;
    let encapped = encapped.to_bytes();
    let mut aad = Vec::with_capacity(130);
    aad.extend_from_slice(&encapped);
    aad.extend_from_slice(&receiver);
    let ciphertext = context.seal(&session.scalar()[..], &aad).map_err(|_| CredentialError::Seal)?;
    let encapped_point = p256::PublicKey::from_sec1_bytes(&encapped).map_err(|_| CredentialError::Seal)?;
    let mut payload = encapped_point.to_sec1_point(true).as_bytes().to_vec();
    payload.extend_from_slice(&ciphertext);
    let sum = checksum(&payload);
    payload.extend_from_slice(&sum);
    Ok(bs58::encode(payload).into_string())
}

/// Opens a bundle with the receiver's (the target key's) private scalar, as
/// a client does, and returns what it holds: the session's private scalar.
/// (For tests and tools: the server never holds a receiver key.)
pub fn open_bundle(bundle: &str, receiver_private: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, CredentialError> {
    let raw = bs58::decode(bundle).into_vec().map_err(|_| CredentialError::Open)?;
    let (payload, sum) = raw.split_at_checked(raw.len().saturating_sub(4)).ok_or(CredentialError::Open)?;
    if payload.len() < 33 + 16 || sum != checksum(payload) {
        return Err(CredentialError::Open);
    }
    let (compressed, ciphertext) = payload.split_at(33);
    let encapped_point = p256::PublicKey::from_sec1_bytes(compressed).map_err(|_| CredentialError::Open)?;
    let encapped = encapped_point.to_sec1_point(false);
    let secret = p256::SecretKey::from_slice(receiver_private).map_err(|_| CredentialError::Open)?;
    let receiver = secret.public_key().to_sec1_point(false);
    let receiver_private =
        <Kem as hpke::Kem>::PrivateKey::from_bytes(receiver_private).map_err(|_| CredentialError::Open)?;
    let encapped_key =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(encapped.as_bytes()).map_err(|_| CredentialError::Open)?;
    let mut context =
        hpke::setup_receiver::<AesGcm256, HkdfSha256, Kem>(&OpModeR::Base, &receiver_private, &encapped_key, INFO)
            .map_err(|_| CredentialError::Open)?;
    let mut aad = encapped.as_bytes().to_vec();
    aad.extend_from_slice(receiver.as_bytes());
    let plain = Zeroizing::new(context.open(ciphertext, &aad).map_err(|_| CredentialError::Open)?);
    let mut out = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        return Err(CredentialError::Open);
    }
    out.copy_from_slice(&plain);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public_hex_of(private: &[u8; 32], compressed: bool) -> String {
        let secret = p256::SecretKey::from_slice(private).unwrap_or_else(|e| panic!("{e}"));
        hex::encode(secret.public_key().to_sec1_point(compressed).as_bytes())
    }

    fn bytes32(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&hex::decode(text).unwrap_or_else(|e| panic!("{e}")));
        out
    }

    /// The bundle Turnkey's SDK tests decrypt (tkhq/sdk, packages/crypto):
    /// under the receiver key 20fa65…, it holds the private key 67ee05….
    #[test]
    fn turnkeys_known_bundle_opens_to_its_known_key() {
        let receiver = bytes32("20fa65df11f24833790ae283fc9a0c215eecbbc589549767977994dc69d05a56");
        let bundle = "w99a5xV6A75TfoAUkZn869fVyDYvgVsKrawMALZXmrauZd8hEv66EkPU1Z42CUaHESQjcA5bqd8dynTGBMLWB9ewtXWPEVbZvocB4Tw2K1vQVp7uwjf";
        let opened = open_bundle(bundle, &receiver).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hex::encode(*opened), "67ee05fc3bdf4161bc70701c221d8d77180294cefcfcea64ba83c4d4c732fcb9");
        // Another key, or one changed character, opens nothing.
        let other = bytes32("67ee05fc3bdf4161bc70701c221d8d77180294cefcfcea64ba83c4d4c732fcb9");
        assert_eq!(open_bundle(bundle, &other), Err(CredentialError::Open));
        let tampered = bundle.replacen('w', "x", 1);
        assert_eq!(open_bundle(&tampered, &receiver), Err(CredentialError::Open));
    }

    /// What we seal opens to the session's key, whichever form the target
    /// key came in, and only with the target's private key.
    #[test]
    fn sealed_credentials_open_with_the_target_key_only() {
        let receiver = bytes32("20fa65df11f24833790ae283fc9a0c215eecbbc589549767977994dc69d05a56");
        for compressed in [false, true] {
            let target =
                TargetPublicKey::parse_hex(&public_hex_of(&receiver, compressed)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(target.to_hex(), public_hex_of(&receiver, false), "one spelling for both forms");
            let session = SessionKeyPair::generate();
            let bundle = credential_bundle(&target, &session).unwrap_or_else(|e| panic!("{e}"));
            let opened = open_bundle(&bundle, &receiver).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(*opened, *session.scalar());
            assert_eq!(public_hex_of(&opened, true), session.public_key_hex());
            let stranger = SessionKeyPair::generate();
            assert_eq!(open_bundle(&bundle, &stranger.scalar()), Err(CredentialError::Open));
            // Fresh randomness each time: two bundles of one key differ.
            assert_ne!(credential_bundle(&target, &session).ok(), Some(bundle));
        }
    }

    #[test]
    fn target_keys_are_checked() {
        let receiver = bytes32("20fa65df11f24833790ae283fc9a0c215eecbbc589549767977994dc69d05a56");
        let good = public_hex_of(&receiver, false);
        assert!(TargetPublicKey::parse_hex(&good.to_uppercase()).is_ok(), "hex in either case");
        let mut off_curve = good.clone();
        off_curve.replace_range(128.., "00");
        let compressed = public_hex_of(&receiver, true);
        for bad in [
            "",
            "zz",
            "04",
            &good[..128],
            &off_curve,
            &format!("05{}", &good[2..]),
            &format!("04{}", &compressed[2..]),
            &format!("{good}00"),
            &"00".repeat(65),
        ] {
            assert_eq!(TargetPublicKey::parse_hex(bad), Err(CredentialError::TargetKey), "{bad}");
        }
    }

    /// RFC 9180's suite as the contract names it — KEM 0x0010, KDF 0x0001,
    /// AEAD 0x0002, base mode — against the CFRG's published vector (entry
    /// 68 of test-vectors.json at cfrg/draft-irtf-cfrg-hpke 5f503c5, the
    /// RFC's final key schedule): the receiver key derives from its seed,
    /// and both encryptions of one context open to the known plaintext.
    #[test]
    fn the_suite_matches_the_rfc_9180_vector() {
        use hpke::Kem as _;
        let unhex = |text: &str| hex::decode(text).unwrap_or_else(|e| panic!("{e}"));
        let (sk, pk) = Kem::derive_keypair(&unhex("a0ce15d49e28bd47a18a97e147582d814b08cbe00109fed5ec27d1b4e9f6f5e3"));
        assert_eq!(hex::encode(sk.to_bytes()), "317f915db7bc629c48fe765587897e01e282d3e8445f79f27f65d031a88082b2");
        assert_eq!(
            hex::encode(pk.to_bytes()),
            "04abc7e49a4c6b3566d77d0304addc6ed0e98512ffccf505e6a8e3eb25c685136f853148544876de76c0f2ef99cdc3a05ccf5ded7860c7c021238f9e2073d2356c"
        );
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&unhex(
            "04c06b4f6bebc7bb495cb797ab753f911aff80aefb86fd8b6fcc35525f3ab5f03e0b21bd31a86c6048af3cb2d98e0d3bf01da5cc4c39ff5370d331a4f1f7d5a4e0",
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        let info = unhex("4f6465206f6e2061204772656369616e2055726e");
        let mut context = hpke::setup_receiver::<AesGcm256, HkdfSha256, Kem>(&OpModeR::Base, &sk, &enc, &info)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let plaintext = unhex("4265617574792069732074727574682c20747275746820626561757479");
        for (aad, ciphertext) in [
            (
                "436f756e742d30",
                "58c61a45059d0c5704560e9d88b564a8b63f1364b8d1fcb3c4c6ddc1d291742465e902cd216f8908da49f8f96f",
            ),
            (
                "436f756e742d31",
                "b4e7c90d1dd62cb563694956eb517ab55d5e7d1f6366a0066c04ababaa444dbaf60a30d7bb7d3e91b969762dee",
            ),
        ] {
            let opened = context.open(&unhex(ciphertext), &unhex(aad)).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(opened, plaintext);
        }
    }

    #[test]
    fn session_keys_are_fresh_and_never_shown() {
        let (a, b) = (SessionKeyPair::generate(), SessionKeyPair::generate());
        assert_ne!(a.public_key_hex(), b.public_key_hex());
        assert_eq!(a.public_key_hex().len(), 66);
        let shown = format!("{a:?}");
        assert!(!shown.contains(&hex::encode(*a.scalar())), "{shown}");
    }
}

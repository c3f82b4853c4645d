//! The signed assertion a service-account key trades for an access token
//! (RFC 7523 JWT bearer grant, RS256), signed with ring, the crypto
//! provider rustls already uses.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;

use super::file::Secret;

/// How long an assertion is valid; Google accepts at most an hour.
const ASSERTION_LIFETIME_SECS: i64 = 3600;

/// A service account's RSA key, parsed once when the credentials load.
pub struct SigningKey(ring::rsa::KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// The key of a service-account file's `private_key` (PKCS#8 PEM, as
    /// Google issues them). Errors name the problem, never the key.
    pub fn from_pem(pem: &Secret) -> Result<SigningKey, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.expose().as_bytes())
            .map_err(|_| "its private_key is not a PEM private key (PKCS#8, as Google issues them)".to_owned())?;
        ring::rsa::KeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map(SigningKey)
            .map_err(|error| format!("its private_key is not an RSA key ring can sign with: {error}"))
    }
}

/// The assertion `email` presents to `audience` (the token endpoint) for
/// `scopes`, issued at `now` (seconds since the epoch).
pub fn assertion(key: &SigningKey, email: &str, scopes: &[&str], audience: &str, now: i64) -> Result<Secret, String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": email,
        "scope": scopes.join(" "),
        "aud": audience,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let mut signature = vec![0; key.0.public().modulus_len()];
    key.0
        .sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signed.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "signing the token request failed".to_owned())?;
    Ok(Secret::new(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))))
}

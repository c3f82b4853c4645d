//! One TLS crypto provider for the whole process.
//!
//! The MongoDB driver and reqwest both use rustls. If two providers
//! (ring and aws-lc-rs) are compiled in and none is chosen, rustls panics on
//! first use; choosing ring explicitly, before any client is built, rules that
//! out whatever the dependency tree enables.

/// Installs ring as the process-wide rustls provider. Safe to call many times.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

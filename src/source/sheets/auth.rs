//! The service-account key and the access tokens made from it.
//!
//! yup-oauth2 signs a JWT with the key (RS256, through rustls' ring provider)
//! and trades it at the key's own `token_uri`; it caches the token in memory
//! and fetches a new one a minute before it expires. Its default hyper client
//! connects over https or plain http, which lets the tests run a local token
//! endpoint. Nothing here ever formats the key or a token.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::{DefaultHyperClientBuilder, HyperClientBuilder, ServiceAccountAuthenticator, ServiceAccountKey};

use super::error::SheetsError;
use super::settings::GoogleSettings;

/// Read-only access to spreadsheets; sheetsync never writes to Google.
pub const SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets.readonly";

/// A loaded service account. `Debug` shows the account, never the key.
pub struct GoogleAuth {
    authenticator: Authenticator<<DefaultHyperClientBuilder as HyperClientBuilder>::Connector>,
    pub client_email: String,
    pub token_uri: String,
    pub key_file: PathBuf,
}

impl std::fmt::Debug for GoogleAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleAuth")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("key_file", &self.key_file)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// Only what is checked before yup-oauth2 sees the key.
#[derive(Deserialize)]
struct KeyShape {
    #[serde(rename = "type")]
    key_type: Option<String>,
}

/// How a failed token request should be treated.
pub enum TokenFailure {
    /// The network or the token endpoint hiccuped; worth another attempt.
    Transient(String),
    /// Google refused the key (deleted, disabled, wrong clock): retrying will not help.
    Refused(SheetsError),
}

impl GoogleAuth {
    /// Reads and checks the configured key, and prepares the token flow (no
    /// request is made yet).
    pub async fn load(settings: &GoogleSettings) -> Result<GoogleAuth, SheetsError> {
        let key_file = settings.key_file.clone().ok_or(SheetsError::NoKey)?;
        let origin = settings
            .key_file_origin
            .map_or("the configuration", |origin| origin.describe());
        let bytes = tokio::fs::read(&key_file).await.map_err(|error| SheetsError::KeyRead {
            path: key_file.display().to_string(),
            origin: origin.to_owned(),
            message: error.to_string(),
        })?;
        let key = parse_key(&bytes, &key_file)?;
        let client_email = key.client_email.clone();
        let token_uri = key.token_uri.clone();
        let authenticator = ServiceAccountAuthenticator::builder(key)
            .with_timeout(settings.request_timeout())
            .build()
            .await
            .map_err(|error| SheetsError::KeyInvalid {
                path: key_file.display().to_string(),
                // yup-oauth2's messages name the problem ("Error reading key
                // from PEM"), not the key's content.
                reason: error.to_string(),
            })?;
        Ok(GoogleAuth {
            authenticator,
            client_email,
            token_uri,
            key_file,
        })
    }

    /// A valid access token, from the cache while it has more than a minute left.
    pub async fn token(&self, force_refresh: bool) -> Result<String, TokenFailure> {
        let scopes = [SCOPE];
        let result = if force_refresh {
            self.authenticator.force_refreshed_token(&scopes).await
        } else {
            self.authenticator.token(&scopes).await
        };
        match result {
            Ok(token) => token.token().map(str::to_owned).ok_or_else(|| {
                TokenFailure::Refused(self.token_error("the token endpoint answered without an access token"))
            }),
            Err(
                error @ (yup_oauth2::Error::HttpError(_)
                | yup_oauth2::Error::HttpClientError(_)
                | yup_oauth2::Error::LowLevelError(_)),
            ) => Err(TokenFailure::Transient(error.to_string())),
            Err(error) => Err(TokenFailure::Refused(self.token_error(&error.to_string()))),
        }
    }

    pub fn token_error(&self, message: &str) -> SheetsError {
        SheetsError::Token {
            email: self.client_email.clone(),
            token_uri: self.token_uri.clone(),
            message: message.to_owned(),
        }
    }
}

/// Parses the key file, with messages that never quote its content (a serde
/// type error would otherwise print the offending value, which may be the
/// private key).
fn parse_key(bytes: &[u8], path: &Path) -> Result<ServiceAccountKey, SheetsError> {
    let invalid = |reason: String| SheetsError::KeyInvalid {
        path: path.display().to_string(),
        reason,
    };
    let describe = |error: serde_json::Error| {
        format!(
            "{:?} JSON error at line {} column {}",
            error.classify(),
            error.line(),
            error.column()
        )
    };
    let shape: KeyShape = serde_json::from_slice(bytes).map_err(|error| invalid(describe(error)))?;
    if let Some(kind) = shape.key_type.as_deref().filter(|kind| *kind != "service_account") {
        return Err(invalid(format!(
            "it is a {kind:?} credential, not a service-account key; create a key for a service account \
             (IAM & Admin > Service Accounts > Keys > Add key > JSON)"
        )));
    }
    let key: ServiceAccountKey = serde_json::from_slice(bytes).map_err(|error| {
        invalid(format!(
            "{}; a service-account key has client_email, private_key and token_uri",
            describe(error)
        ))
    })?;
    if !key.private_key.contains("PRIVATE KEY") {
        return Err(invalid("its private_key is not a PEM private key".to_owned()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_errors_never_quote_the_key() {
        let path = Path::new("/tmp/key.json");
        let secret = "-----BEGIN PRIVATE KEY-----SECRETSECRET";
        let wrong_type = format!(r#"{{"type": "service_account", "private_key": 12, "client_email": "{secret}"}}"#);
        let error = parse_key(wrong_type.as_bytes(), path).unwrap_err().to_string();
        assert!(!error.contains("SECRET"), "{error}");
        let user = br#"{"type": "authorized_user", "refresh_token": "SECRET"}"#;
        let error = parse_key(user, path).unwrap_err().to_string();
        assert!(
            error.contains("not a service-account key") && !error.contains("SECRET"),
            "{error}"
        );
        let error = parse_key(b"{not json SECRET", path).unwrap_err().to_string();
        assert!(!error.contains("SECRET"), "{error}");
    }
}

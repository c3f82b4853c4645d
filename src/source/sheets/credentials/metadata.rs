//! The metadata server of Google Cloud (Compute Engine, Cloud Run, GKE):
//! the attached service account's email and tokens, asked with the
//! `Metadata-Flavor: Google` header and believed only when the answer
//! carries it back (so that some other server at that address is never
//! taken for it).

use std::time::Duration;

use super::grant::{Answer, Grant, GrantError, read_oauth_answer, send};

/// Where Google's libraries find it; `GCE_METADATA_HOST` overrides.
pub const DEFAULT_METADATA_HOST: &str = "169.254.169.254";

/// How long the first question may take: elsewhere than on Google Cloud
/// nothing answers, and a sync without credentials must fail fast.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct MetadataServer {
    host: String,
    /// Its own client: the metadata server is this machine's, so no proxy
    /// from the environment may stand between (Google's clients skip them
    /// too), and nothing is followed elsewhere.
    http: reqwest::Client,
}

impl MetadataServer {
    pub fn new(host: &str) -> Result<MetadataServer, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sheetsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot make an HTTP client for the metadata server: {error}"))?;
        Ok(MetadataServer {
            host: host.to_owned(),
            http,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn url(&self, leaf: &str) -> String {
        format!(
            "http://{}/computeMetadata/v1/instance/service-accounts/default/{leaf}",
            self.host
        )
    }

    /// The attached service account's email; also the probe that tells
    /// whether this machine is on Google Cloud at all.
    pub async fn email(&self, timeout: Duration) -> Result<String, String> {
        let answer = self
            .ask(&self.url("email"), timeout)
            .await
            .map_err(|error| error.message)?;
        let email = String::from_utf8(answer.body).unwrap_or_default().trim().to_owned();
        if !answer.status.is_success() || email.is_empty() {
            return Err(format!(
                "it answered HTTP {} without a service account email (is a service account attached?)",
                answer.status.as_u16()
            ));
        }
        Ok(email)
    }

    /// A token for `scopes` (Cloud Run and GKE honour them; a VM's token has
    /// the instance's access scopes whatever is asked).
    pub async fn token(&self, scopes: &[&str], timeout: Duration) -> Result<Grant, GrantError> {
        let url = format!("{}?scopes={}", self.url("token"), scopes.join(","));
        let answer = self.ask(&url, timeout).await?;
        read_oauth_answer(answer.status, &answer.body)
    }

    async fn ask(&self, url: &str, timeout: Duration) -> Result<Answer, GrantError> {
        let answer = send(self.http.get(url).header("Metadata-Flavor", "Google"), timeout).await?;
        let flavoured = answer
            .headers
            .get("Metadata-Flavor")
            .is_some_and(|value| value.as_bytes() == b"Google");
        if !flavoured {
            return Err(GrantError::refused(format!(
                "{} answered without the Metadata-Flavor: Google header; it is not Google's metadata server",
                self.host
            )));
        }
        Ok(answer)
    }
}

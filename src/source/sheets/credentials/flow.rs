//! How each kind of credential turns into an access token, who it acts as,
//! and what to do when Google refuses it.

use std::time::Duration;

use super::file::{AuthorizedUser, CredentialFile, ExternalAccount, SubjectTokenSource, impersonated_email};
use super::grant::{self, Grant, GrantError};
use super::jwt::{self, SigningKey};
use super::metadata::MetadataServer;

/// What IAM Credentials needs of a token that impersonates.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// What a person runs to sign in with the scopes sheetsync needs (the
/// default login grants cloud-platform only, and Sheets refuses that).
/// `[google] office_files` needs `drive.readonly` too (README, "Office
/// files on Google Drive"); the missing-scope error names it.
pub const LOGIN_COMMAND: &str = "gcloud auth application-default login \
     --scopes=https://www.googleapis.com/auth/spreadsheets.readonly,\
     https://www.googleapis.com/auth/drive.metadata.readonly,https://www.googleapis.com/auth/cloud-platform";

/// Who Google sees calling: the one to share spreadsheets with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    ServiceAccount(String),
    /// A person's gcloud login, with the account when gcloud recorded it.
    User(Option<String>),
    /// A federated principal without impersonation: its pool's audience.
    Federated(String),
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::ServiceAccount(email) => write!(f, "the service account {email}"),
            Identity::User(Some(account)) => write!(f, "the Google account {account}"),
            Identity::User(None) => {
                f.write_str("the Google account signed in with `gcloud auth application-default login`")
            }
            Identity::Federated(audience) => write!(f, "the federated identity of {audience}"),
        }
    }
}

impl Identity {
    /// How to give this identity a spreadsheet.
    pub fn share_advice(&self) -> &'static str {
        match self {
            Identity::ServiceAccount(_) => "share it (Viewer) with that address",
            Identity::User(_) => "share it (Viewer) with that account, or sign in with one it is shared with",
            Identity::Federated(_) => {
                "spreadsheets are shared with email addresses, so a federated identity reads them through a service \
                 account: create the configuration with --service-account=ACCOUNT and share the spreadsheet (Viewer) \
                 with that account"
            }
        }
    }
}

/// One way of getting tokens, ready to use.
#[derive(Debug)]
pub enum Flow {
    ServiceAccount {
        email: String,
        key: SigningKey,
        token_uri: String,
    },
    AuthorizedUser(AuthorizedUser),
    External {
        account: ExternalAccount,
        source: SubjectTokenSource,
    },
    Impersonated {
        url: String,
        email: String,
        delegates: Vec<String>,
        source: Box<Flow>,
    },
    Metadata {
        server: MetadataServer,
        email: String,
    },
}

impl Flow {
    /// The flow of a parsed credential file; a key that cannot sign or an
    /// impersonation URL without an account is refused here, before any call.
    pub fn from_file(file: CredentialFile) -> Result<Flow, String> {
        Ok(match file {
            CredentialFile::ServiceAccount(key) => Flow::ServiceAccount {
                key: SigningKey::from_pem(&key.private_key)?,
                email: key.client_email,
                token_uri: key.token_uri,
            },
            CredentialFile::AuthorizedUser(user) => Flow::AuthorizedUser(user),
            CredentialFile::ExternalAccount(account) => Flow::External {
                source: account.subject_token_source()?,
                account,
            },
            CredentialFile::Impersonated(impersonated) => Flow::Impersonated {
                email: impersonated_email(&impersonated.service_account_impersonation_url)
                    .ok_or("its service_account_impersonation_url names no service account")?,
                url: impersonated.service_account_impersonation_url,
                delegates: impersonated.delegates,
                source: Box::new(Flow::from_file(*impersonated.source)?),
            },
        })
    }

    pub fn identity(&self) -> Identity {
        match self {
            Flow::ServiceAccount { email, .. } | Flow::Impersonated { email, .. } | Flow::Metadata { email, .. } => {
                Identity::ServiceAccount(email.clone())
            }
            Flow::AuthorizedUser(user) => Identity::User(user.account.clone().filter(|account| !account.is_empty())),
            Flow::External { account, .. } => match account
                .service_account_impersonation_url
                .as_deref()
                .and_then(impersonated_email)
            {
                Some(email) => Identity::ServiceAccount(email),
                None => Identity::Federated(account.audience.clone()),
            },
        }
    }

    /// Where tokens come from, for messages.
    pub fn endpoint(&self) -> String {
        match self {
            Flow::ServiceAccount { token_uri, .. } => token_uri.clone(),
            Flow::AuthorizedUser(user) => user.token_uri.clone(),
            Flow::External { account, .. } => account.token_url.clone(),
            Flow::Impersonated { url, .. } => url.clone(),
            Flow::Metadata { server, .. } => format!("the metadata server at {}", server.host()),
        }
    }

    /// What to do when the token endpoint refuses.
    pub fn token_advice(&self) -> String {
        match self {
            Flow::ServiceAccount { .. } => "check that the key still exists and is enabled in the Google Cloud \
                 console and that this machine's clock is right"
                .to_owned(),
            Flow::AuthorizedUser(_) => {
                format!("the login was revoked or has expired; sign in again with `{LOGIN_COMMAND}`")
            }
            Flow::External { .. } => "check the workload identity pool provider (audience, attribute conditions) \
                 and that the subject token is fresh; with impersonation, the federated principal needs \
                 roles/iam.workloadIdentityUser on the service account"
                .to_owned(),
            Flow::Impersonated { email, .. } => format!(
                "the signed-in account needs roles/iam.serviceAccountTokenCreator on {email}; if the login itself \
                 is refused, run `gcloud auth application-default login --impersonate-service-account={email}` again"
            ),
            Flow::Metadata { .. } => "check the service account attached to this Cloud Run service, GKE \
                 workload or VM, and that it is enabled"
                .to_owned(),
        }
    }

    /// What to do when Sheets says the token lacks its scope.
    pub fn scope_advice(&self) -> String {
        match self {
            Flow::AuthorizedUser(_) => format!(
                "a default `gcloud auth application-default login` grants cloud-platform only; sign in again with \
                 `{LOGIN_COMMAND}`"
            ),
            Flow::Metadata { email, .. } => format!(
                "on a Compute Engine VM the token has the instance's access scopes; stop the VM and run `gcloud \
                 compute instances set-service-account INSTANCE --service-account={email} \
                 --scopes=https://www.googleapis.com/auth/spreadsheets.readonly,cloud-platform`"
            ),
            _ => "sheetsync asks for the spreadsheets.readonly scope; check that the credential's configuration \
                 does not restrict it"
                .to_owned(),
        }
    }

    /// A fresh token for `scopes`. Every request is bounded by `timeout`.
    pub async fn fetch(&self, http: &reqwest::Client, scopes: &[&str], timeout: Duration) -> Result<Grant, GrantError> {
        match self {
            Flow::ServiceAccount { email, key, token_uri } => {
                let now = chrono::Utc::now().timestamp();
                let assertion = jwt::assertion(key, email, scopes, token_uri, now).map_err(GrantError::refused)?;
                let form = [
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.expose()),
                ];
                grant::oauth_form(http, token_uri, &form, timeout).await
            }
            // The login's scopes were fixed when the person signed in.
            Flow::AuthorizedUser(user) => {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("client_id", user.client_id.as_str()),
                    ("client_secret", user.client_secret.expose()),
                    ("refresh_token", user.refresh_token.expose()),
                ];
                grant::oauth_form(http, &user.token_uri, &form, timeout).await
            }
            Flow::External { account, source } => {
                let subject = grant::subject_token(http, source, timeout).await?;
                let impersonation = account.service_account_impersonation_url.as_deref();
                let exchange_scope = match impersonation {
                    Some(_) => CLOUD_PLATFORM_SCOPE.to_owned(),
                    None => scopes.join(" "),
                };
                let form = [
                    ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                    ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
                    ("audience", account.audience.as_str()),
                    ("subject_token_type", account.subject_token_type.as_str()),
                    ("subject_token", subject.expose()),
                    ("scope", exchange_scope.as_str()),
                ];
                let federated = grant::oauth_form(http, &account.token_url, &form, timeout).await?;
                match impersonation {
                    Some(url) => {
                        grant::generate_access_token(http, url, &federated.access_token, scopes, &[], timeout).await
                    }
                    None => Ok(federated),
                }
            }
            Flow::Impersonated {
                url, delegates, source, ..
            } => {
                let caller = Box::pin(source.fetch(http, &[CLOUD_PLATFORM_SCOPE], timeout)).await?;
                grant::generate_access_token(http, url, &caller.access_token, scopes, delegates, timeout).await
            }
            Flow::Metadata { server, .. } => server.token(scopes, timeout).await,
        }
    }
}

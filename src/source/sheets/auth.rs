//! Finding the credentials and keeping a token: the order in which
//! Application Default Credentials are looked for, and one token cache for
//! every sync of the process.
//!
//! First found wins: a credential file named by `GOOGLE_APPLICATION_CREDENTIALS`,
//! by `[google] key_file`, by the systemd credential, or gcloud's well-known
//! file (all resolved into `key_file` by the settings); then, on Google
//! Cloud, the metadata server. Nothing here ever formats a secret: they
//! are [`Secret`]s, whose `Debug` hides them.

use std::time::{Duration, Instant};

use super::credentials::file::{CredentialFile, MAX_CREDENTIAL_FILE_BYTES, Secret, read_at_most};
use super::credentials::flow::{Flow, Identity};
use super::credentials::metadata::{MetadataServer, PROBE_TIMEOUT};
use super::error::SheetsError;
use super::settings::GoogleSettings;

/// Read-only access to spreadsheets; sheetsync never writes to Google.
pub const SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets.readonly";
/// Drive files' metadata only (a spreadsheet's `modifiedTime`, to watch it),
/// asked for only when the daemon watches: it lets the token list the names
/// and dates of every file the identity can see, not read their content.
pub const DRIVE_METADATA_SCOPE: &str = "https://www.googleapis.com/auth/drive.metadata.readonly";
/// Reading Drive files' content, asked for only with `[google]
/// office_files`: the Sheets API cannot read an Office file uploaded to
/// Drive, only Drive can hand it over. Wider than the Sheets scope: it lets
/// the token read every file the identity can see, not only spreadsheets
/// (still never write), so it is opt-in.
pub const DRIVE_READONLY_SCOPE: &str = "https://www.googleapis.com/auth/drive.readonly";

/// A token is renewed this long before Google says it expires, so that a
/// long sync never sends one that dies on the way.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// The longest a token is kept, whatever its answer claims.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Loaded credentials and their token cache. `Debug` shows the kind, the
/// origin and the identity, never a secret.
#[derive(Debug)]
pub struct GoogleAuth {
    flow: Flow,
    /// What kind of credential this is, in words.
    pub kind: &'static str,
    /// Where it was found: the setting and the file, or the metadata server.
    pub origin: String,
    pub identity: Identity,
    /// Billed for the calls (`x-goog-user-project`), from the settings or the file.
    pub quota_project: Option<String>,
    http: reqwest::Client,
    timeout: Duration,
    /// [`SCOPE`], and [`DRIVE_METADATA_SCOPE`] when watching.
    scopes: Vec<&'static str>,
    /// Held while a token is fetched, so that concurrent calls wait for one
    /// request instead of each making their own.
    cache: tokio::sync::Mutex<Option<CachedToken>>,
}

#[derive(Debug)]
struct CachedToken {
    token: Secret,
    renew_at: Instant,
}

/// How a failed token request should be treated.
pub enum TokenFailure {
    /// The network or the token endpoint hiccuped; worth another attempt.
    Transient(String),
    /// Google refused the credentials: retrying will not help.
    Refused(SheetsError),
}

impl GoogleAuth {
    /// Finds the credentials and prepares their flow. A file is read and
    /// checked; without one, the metadata server is asked who this machine
    /// runs as (within [`PROBE_TIMEOUT`]). No token is requested yet.
    ///
    /// `http` is the credentials' own client: it follows no redirect.
    pub async fn load(settings: &GoogleSettings, http: &reqwest::Client) -> Result<GoogleAuth, SheetsError> {
        let (flow, kind, origin, file_quota_project) = match &settings.key_file {
            Some(path) => {
                let origin = settings
                    .key_file_origin
                    .map_or("the configuration", |origin| origin.describe());
                let where_from = format!("{origin} ({})", path.display());
                let bytes = read_bounded(path)
                    .await
                    .map_err(|message| SheetsError::CredentialRead {
                        path: path.display().to_string(),
                        origin: origin.to_owned(),
                        message,
                    })?;
                let invalid = |reason: String| SheetsError::CredentialInvalid {
                    path: path.display().to_string(),
                    reason,
                };
                let file = CredentialFile::parse(&bytes).map_err(invalid)?;
                let kind = file.kind();
                let quota_project = file.quota_project_id().map(str::to_owned);
                let flow = Flow::from_file(file).map_err(invalid)?;
                (flow, kind, where_from, quota_project)
            }
            None => {
                let no_credentials = |reason: String| SheetsError::NoCredentials {
                    metadata_host: settings.metadata_host.clone(),
                    reason,
                };
                let server = MetadataServer::new(&settings.metadata_host).map_err(no_credentials)?;
                let email = server.email(PROBE_TIMEOUT).await.map_err(no_credentials)?;
                let origin = format!("the metadata server at {}", settings.metadata_host);
                (
                    Flow::Metadata { server, email },
                    "the attached service account (metadata server)",
                    origin,
                    None,
                )
            }
        };
        Ok(GoogleAuth {
            identity: flow.identity(),
            quota_project: settings.quota_project.clone().or(file_quota_project),
            flow,
            kind,
            origin,
            http: http.clone(),
            timeout: settings.request_timeout(),
            scopes: scopes(settings),
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid access token: the cached one until shortly before it
    /// expires, else a fresh one.
    pub async fn token(&self, force_refresh: bool) -> Result<Secret, TokenFailure> {
        let mut cache = self.cache.lock().await;
        if !force_refresh && let Some(cached) = cache.as_ref().filter(|cached| Instant::now() < cached.renew_at) {
            return Ok(cached.token.clone());
        }
        match self.flow.fetch(&self.http, &self.scopes, self.timeout).await {
            Ok(grant) => {
                // Google's tokens live an hour; a larger claim is not believed.
                let lifetime = grant.lifetime.min(MAX_TOKEN_LIFETIME);
                let renew_in = lifetime.saturating_sub(RENEW_BEFORE_EXPIRY).max(lifetime / 2);
                let now = Instant::now();
                *cache = Some(CachedToken {
                    token: grant.access_token.clone(),
                    renew_at: now.checked_add(renew_in).unwrap_or(now),
                });
                Ok(grant.access_token)
            }
            Err(error) if error.transient => Err(TokenFailure::Transient(error.message)),
            Err(error) => Err(TokenFailure::Refused(self.token_error(&error.message))),
        }
    }

    pub fn token_error(&self, message: &str) -> SheetsError {
        SheetsError::Token {
            identity: self.identity.to_string(),
            endpoint: self.flow.endpoint(),
            message: message.to_owned(),
            advice: self.flow.token_advice(),
        }
    }

    /// Sheets answered that the token does not carry its scope.
    /// `api` refused the token for want of a scope: the Sheets scope, or
    /// for the Drive API the Drive scope the settings ask for.
    pub fn missing_scope(&self, api: &str) -> SheetsError {
        let scope = match (api.contains("Drive"), self.scopes.contains(&DRIVE_READONLY_SCOPE)) {
            (false, _) => "Google Sheets (spreadsheets.readonly)",
            (true, true) => "Drive (drive.readonly, which [google] office_files needs)",
            (true, false) => "Drive (drive.metadata.readonly, which watching needs)",
        };
        SheetsError::MissingScope {
            identity: self.identity.to_string(),
            scope: scope.to_owned(),
            advice: self.flow.scope_advice(),
        }
    }

    /// Google answered that `api` is not enabled for the calling project.
    pub fn api_disabled(&self, api: &str, message: String) -> SheetsError {
        let advice = match (&self.identity, &self.quota_project) {
            (Identity::User(_), None) => format!(
                "a gcloud login bills API calls to a quota project and this one has none: run `gcloud auth \
                 application-default set-quota-project PROJECT_ID` with a project where the {api} is enabled"
            ),
            (_, Some(project)) => format!(
                "enable the {api} in quota project {project} (APIs & Services > Library), or set another with \
                 [google] quota_project"
            ),
            (_, None) => {
                format!("enable the {api} in the credential's Google Cloud project (APIs & Services > Library)")
            }
        };
        SheetsError::ApiDisabled {
            api: api.to_owned(),
            identity: self.identity.to_string(),
            message,
            advice,
        }
    }

    pub fn not_shared(&self, spreadsheet_id: &str) -> SheetsError {
        SheetsError::NotShared {
            spreadsheet_id: spreadsheet_id.to_owned(),
            identity: self.identity.to_string(),
            advice: self.identity.share_advice().to_owned(),
        }
    }
}

/// The credential file, refused when larger than any credential file is.
async fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    read_at_most(path, MAX_CREDENTIAL_FILE_BYTES).await.map_err(|error| {
        if error.kind() == std::io::ErrorKind::FileTooLarge {
            format!("it is larger than {MAX_CREDENTIAL_FILE_BYTES} bytes, which no credential file is")
        } else {
            error.to_string()
        }
    })
}

/// The scopes a token asks for: the Sheets scope, and the Drive scopes
/// the settings call for.
fn scopes(settings: &GoogleSettings) -> Vec<&'static str> {
    let mut scopes = vec![SCOPE];
    if settings.watch_drive {
        scopes.push(DRIVE_METADATA_SCOPE);
    }
    if settings.office_files {
        scopes.push(DRIVE_READONLY_SCOPE);
    }
    scopes
}

//! Credential files, told apart by their `type` as Google's client libraries
//! do: a service-account key, a person's gcloud login, a workload identity
//! federation configuration, or an impersonation of a service account.
//!
//! Every secret is a [`Secret`], whose `Debug` never shows it, and parse
//! errors name a line and column, never the offending value (which may be
//! a private key or a refresh token).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Google's OAuth token endpoint, for files that do not name their own.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// A credential file is a few kilobytes; anything much larger is not one.
pub const MAX_CREDENTIAL_FILE_BYTES: u64 = 1 << 20;

/// A small file read whole, refused past `limit` bytes (as an error of kind
/// `FileTooLarge`) without reading more than one byte beyond it.
pub async fn read_at_most(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).await?;
    if bytes.len() as u64 > limit {
        return Err(std::io::ErrorKind::FileTooLarge.into());
    }
    Ok(bytes)
}

/// A secret string: a private key, a client secret, a refresh or access
/// token. Shown nowhere; [`Secret::expose`] is the one way to read it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One credential file's content, by kind.
#[derive(Debug, Clone)]
pub enum CredentialFile {
    ServiceAccount(ServiceAccountKey),
    AuthorizedUser(AuthorizedUser),
    ExternalAccount(ExternalAccount),
    Impersonated(Impersonated),
}

/// `"type": "service_account"`: a downloaded key.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: Secret,
    #[serde(default = "google_token_uri")]
    pub token_uri: String,
    #[serde(default)]
    pub quota_project_id: Option<String>,
}

/// `"type": "authorized_user"`: what `gcloud auth application-default login`
/// writes.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthorizedUser {
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Secret,
    #[serde(default = "google_token_uri")]
    pub token_uri: String,
    #[serde(default)]
    pub quota_project_id: Option<String>,
    /// The signed-in account, when gcloud recorded it.
    #[serde(default)]
    pub account: Option<String>,
}

/// `"type": "external_account"`: workload identity federation, as written
/// by `gcloud iam workload-identity-pools create-cred-config`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExternalAccount {
    pub audience: String,
    pub subject_token_type: String,
    #[serde(default = "google_sts_url")]
    pub token_url: String,
    #[serde(default)]
    pub service_account_impersonation_url: Option<String>,
    pub credential_source: RawCredentialSource,
    #[serde(default)]
    pub quota_project_id: Option<String>,
}

/// `credential_source` as written; [`ExternalAccount::subject_token_source`]
/// says which kind it is.
#[derive(Debug, Clone, Deserialize)]
pub struct RawCredentialSource {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, Secret>,
    #[serde(default)]
    format: Option<SubjectTokenFormat>,
    #[serde(default)]
    executable: Option<serde_json::Value>,
    #[serde(default)]
    environment_id: Option<String>,
}

/// How the subject token is written in its file or URL answer.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SubjectTokenFormat {
    Text,
    Json { subject_token_field_name: String },
}

/// Where an external account's subject token comes from.
#[derive(Debug, Clone)]
pub enum SubjectTokenSource {
    /// A file another process keeps fresh (a Kubernetes projected token, an
    /// OIDC token written by a CI runner).
    File { path: String, format: SubjectTokenFormat },
    /// A local endpoint (Azure's instance metadata, a token server).
    Url {
        url: String,
        headers: BTreeMap<String, Secret>,
        format: SubjectTokenFormat,
    },
}

impl ExternalAccount {
    /// The subject token's source; executable- and AWS-sourced
    /// configurations are refused with what to use instead.
    pub fn subject_token_source(&self) -> Result<SubjectTokenSource, String> {
        let source = &self.credential_source;
        let format = source.format.clone().unwrap_or(SubjectTokenFormat::Text);
        if source.executable.is_some() {
            return Err(
                "its credential_source runs an executable, which sheetsync does not do (it would run a \
                 program named in a file); write the subject token to a file instead and use a file-sourced \
                 configuration (create-cred-config --credential-source-file=...)"
                    .to_owned(),
            );
        }
        if let Some(environment) = &source.environment_id {
            return Err(format!(
                "its credential_source is environment {environment:?} (AWS), which sheetsync does not sign; use a \
                 file- or URL-sourced configuration"
            ));
        }
        match (&source.file, &source.url) {
            (Some(path), None) => Ok(SubjectTokenSource::File {
                path: path.clone(),
                format,
            }),
            (None, Some(url)) => Ok(SubjectTokenSource::Url {
                url: url.clone(),
                headers: source.headers.clone(),
                format,
            }),
            _ => Err("its credential_source must name exactly one of `file` and `url`".to_owned()),
        }
    }
}

/// `"type": "impersonated_service_account"`: what `gcloud auth
/// application-default login --impersonate-service-account=...` writes.
#[derive(Debug, Clone)]
pub struct Impersonated {
    pub service_account_impersonation_url: String,
    pub delegates: Vec<String>,
    /// A login or a key; its token is traded for the impersonated account's.
    pub source: Box<CredentialFile>,
    pub quota_project_id: Option<String>,
}

#[derive(Deserialize)]
struct ImpersonatedShape {
    service_account_impersonation_url: String,
    #[serde(default)]
    delegates: Vec<String>,
    source_credentials: serde_json::Value,
    #[serde(default)]
    quota_project_id: Option<String>,
}

#[derive(Deserialize)]
struct KindShape {
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn google_token_uri() -> String {
    GOOGLE_TOKEN_URI.to_owned()
}

fn google_sts_url() -> String {
    "https://sts.googleapis.com/v1/token".to_owned()
}

impl CredentialFile {
    /// What `check` and messages call this kind.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialFile::ServiceAccount(_) => "service-account key",
            CredentialFile::AuthorizedUser(_) => "gcloud user login (authorized_user)",
            CredentialFile::ExternalAccount(_) => "workload identity federation (external_account)",
            CredentialFile::Impersonated(_) => "service-account impersonation (impersonated_service_account)",
        }
    }

    /// The project billed for API calls made with a person's login.
    pub fn quota_project_id(&self) -> Option<&str> {
        match self {
            CredentialFile::ServiceAccount(key) => key.quota_project_id.as_deref(),
            CredentialFile::AuthorizedUser(user) => user.quota_project_id.as_deref(),
            CredentialFile::ExternalAccount(external) => external.quota_project_id.as_deref(),
            CredentialFile::Impersonated(impersonated) => impersonated
                .quota_project_id
                .as_deref()
                .or_else(|| impersonated.source.quota_project_id()),
        }
        .filter(|project| !project.trim().is_empty())
    }

    /// Parses a credential file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<CredentialFile, String> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(describe)?;
        Self::from_value(value)
    }

    fn from_value(value: serde_json::Value) -> Result<CredentialFile, String> {
        let shape: KindShape = serde_json::from_value(value.clone()).map_err(describe)?;
        match shape.kind.as_deref() {
            Some("service_account") => {
                let key: ServiceAccountKey = fields(
                    value,
                    "a service-account key has client_email, private_key and token_uri",
                )?;
                if !key.private_key.expose().contains("PRIVATE KEY") {
                    return Err("its private_key is not a PEM private key".to_owned());
                }
                Ok(CredentialFile::ServiceAccount(key))
            }
            Some("authorized_user") => Ok(CredentialFile::AuthorizedUser(fields(
                value,
                "a gcloud login has client_id, client_secret and refresh_token; run `gcloud auth \
                 application-default login` again",
            )?)),
            Some("external_account") => {
                let external: ExternalAccount = fields(
                    value,
                    "a workload identity federation file has audience, subject_token_type and credential_source",
                )?;
                external.subject_token_source()?;
                Ok(CredentialFile::ExternalAccount(external))
            }
            Some("impersonated_service_account") => {
                let shape: ImpersonatedShape = fields(
                    value,
                    "an impersonation file has service_account_impersonation_url and source_credentials",
                )?;
                let source = Self::from_value(shape.source_credentials)
                    .map_err(|reason| format!("its source_credentials: {reason}"))?;
                if !matches!(
                    source,
                    CredentialFile::AuthorizedUser(_) | CredentialFile::ServiceAccount(_)
                ) {
                    return Err("its source_credentials must be a gcloud login or a service-account key".to_owned());
                }
                Ok(CredentialFile::Impersonated(Impersonated {
                    service_account_impersonation_url: shape.service_account_impersonation_url,
                    delegates: shape.delegates,
                    source: Box::new(source),
                    quota_project_id: shape.quota_project_id,
                }))
            }
            Some(other) => Err(format!(
                "its type {other:?} is not one sheetsync knows (service_account, authorized_user, external_account, \
                 impersonated_service_account)"
            )),
            None => Err("it has no \"type\"; it is not a Google credential file".to_owned()),
        }
    }
}

/// The account an impersonation URL names
/// (`.../serviceAccounts/NAME@PROJECT.iam.gserviceaccount.com:generateAccessToken`).
pub fn impersonated_email(url: &str) -> Option<String> {
    let (_, tail) = url.rsplit_once("/serviceAccounts/")?;
    let email = tail.split(':').next()?;
    (!email.is_empty()).then(|| email.to_owned())
}

fn fields<T: DeserializeOwned>(value: serde_json::Value, expected: &str) -> Result<T, String> {
    serde_json::from_value(value).map_err(|error| format!("{}; {expected}", describe(error)))
}

/// A serde error without the value it tripped on.
fn describe(error: serde_json::Error) -> String {
    if error.line() == 0 {
        // From a `Value`: the message names the field, e.g. "missing field
        // `client_id`", or quotes a value after "invalid type"/"invalid value".
        let message = error.to_string();
        match message.split_once(": ") {
            Some(("invalid type", _)) => "a field has the wrong type".to_owned(),
            Some(("invalid value", _)) => "a field has an invalid value".to_owned(),
            _ if message.starts_with("missing field") => message,
            _ => "a field is not what it should be".to_owned(),
        }
    } else {
        format!(
            "{:?} JSON error at line {} column {}",
            error.classify(),
            error.line(),
            error.column()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CredentialFile, String> {
        CredentialFile::parse(text.as_bytes())
    }

    #[test]
    fn errors_never_quote_a_secret() {
        let cases = [
            r#"{"type": "service_account", "private_key": 12, "client_email": "SECRET"}"#,
            r#"{"type": "service_account", "private_key": "SECRET", "client_email": "x"}"#,
            r#"{"type": "authorized_user", "refresh_token": "SECRET", "client_id": 5, "client_secret": "SECRET"}"#,
            r#"{"type": "authorized_user", "refresh_token": ["SECRET"]}"#,
            r#"{"type": "weird", "refresh_token": "SECRET"}"#,
            "{not json SECRET",
        ];
        for case in cases {
            let error = parse(case).unwrap_err();
            assert!(!error.contains("SECRET"), "{case}: {error}");
        }
    }

    #[test]
    fn each_kind_is_told_apart_and_debug_hides_secrets() {
        let user = parse(
            r#"{"type": "authorized_user", "client_id": "id", "client_secret": "SECRET1",
                "refresh_token": "SECRET2", "quota_project_id": "billing-project"}"#,
        )
        .unwrap();
        assert_eq!(user.quota_project_id(), Some("billing-project"));
        assert!(matches!(&user, CredentialFile::AuthorizedUser(login) if login.token_uri == GOOGLE_TOKEN_URI));
        assert!(!format!("{user:?}").contains("SECRET"));

        let impersonated = parse(
            r#"{"type": "impersonated_service_account",
                "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/reader@p.iam.gserviceaccount.com:generateAccessToken",
                "source_credentials": {"type": "authorized_user", "client_id": "id", "client_secret": "SECRET1",
                    "refresh_token": "SECRET2", "quota_project_id": "q"}}"#,
        )
        .unwrap();
        assert_eq!(impersonated.quota_project_id(), Some("q"), "the source's quota project");
        let CredentialFile::Impersonated(inner) = &impersonated else {
            panic!("{impersonated:?}")
        };
        assert_eq!(
            impersonated_email(&inner.service_account_impersonation_url).as_deref(),
            Some("reader@p.iam.gserviceaccount.com")
        );

        let federated = parse(
            r#"{"type": "external_account", "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "credential_source": {"url": "http://127.0.0.1:1/token", "headers": {"Authorization": "SECRET"},
                    "format": {"type": "json", "subject_token_field_name": "value"}}}"#,
        )
        .unwrap();
        assert!(!format!("{federated:?}").contains("SECRET"));
        let CredentialFile::ExternalAccount(external) = &federated else {
            panic!("{federated:?}")
        };
        assert_eq!(external.token_url, "https://sts.googleapis.com/v1/token");
        assert!(matches!(
            external.subject_token_source().unwrap(),
            SubjectTokenSource::Url {
                format: SubjectTokenFormat::Json { .. },
                ..
            }
        ));
    }

    #[test]
    fn executable_and_aws_sources_are_refused_with_what_to_use() {
        let base = |source: &str| {
            format!(
                r#"{{"type": "external_account", "audience": "a", "subject_token_type": "t", "credential_source": {source}}}"#
            )
        };
        let executable = parse(&base(r#"{"executable": {"command": "/bin/token"}}"#)).unwrap_err();
        assert!(executable.contains("file-sourced"), "{executable}");
        let aws = parse(&base(r#"{"environment_id": "aws1", "region_url": "http://x"}"#)).unwrap_err();
        assert!(aws.contains("AWS"), "{aws}");
        let neither = parse(&base("{}")).unwrap_err();
        assert!(neither.contains("exactly one"), "{neither}");
    }
}

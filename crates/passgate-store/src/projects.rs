//! Projects, their settings and their API keys.

use std::future::Future;

use passgate_core::{ApiKeyId, ProjectId, Timestamp};

use crate::StoreResult;

/// Operator-controlled settings of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSettings {
    pub name: String,
    /// The name emails show; `None` means "use the project name".
    pub app_name: Option<String>,
    pub redirect_urls: Vec<String>,
    pub allowed_domains: Vec<String>,
    pub allowed_emails: Vec<String>,
    pub link_ttl_seconds: i64,
    pub emails_per_minute: i64,
    /// Link and invite emails per address per 15 minutes.
    pub emails_per_recipient: i64,
    /// Starts per end-user IP (network) per minute.
    pub starts_per_ip: i64,
    /// One-time code sends per address per 3 minutes.
    pub otp_sends_per_email: i64,
    /// How long the project's events are kept; 0 keeps them forever.
    pub event_retention_seconds: i64,
}

#[derive(Debug, Clone)]
pub struct NewProject {
    pub id: ProjectId,
    pub settings: ProjectSettings,
    pub is_dev: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub settings: ProjectSettings,
    pub is_dev: bool,
    pub created_at: Timestamp,
}

impl Project {
    pub fn app_name(&self) -> &str {
        self.settings.app_name.as_deref().unwrap_or(&self.settings.name)
    }
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub project_id: ProjectId,
    pub key_hash: [u8; 32],
    pub hint: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub id: ApiKeyId,
    pub project_id: ProjectId,
    pub hint: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub key_id: ApiKeyId,
    pub key_hash: [u8; 32],
    pub revoked_at: Option<Timestamp>,
    pub project: Project,
}

pub trait Projects: Clone + Send + Sync + 'static {
    /// Creates a project with its first API key. With `if_absent`, an existing
    /// project of that id is left as it is (dev mode re-runs this at start).
    fn create_project(
        &self,
        project: NewProject,
        first_key: NewApiKey,
        if_absent: bool,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Replaces a project's settings; `NotFound` if it does not exist.
    fn update_project(
        &self,
        id: &ProjectId,
        settings: ProjectSettings,
    ) -> impl Future<Output = StoreResult<Project>> + Send;

    fn get_project(&self, id: &ProjectId) -> impl Future<Output = StoreResult<Option<Project>>> + Send;

    /// Every project, oldest first.
    fn list_projects(&self) -> impl Future<Output = StoreResult<Vec<Project>>> + Send;

    /// Adds a key to a project; `NotFound` if the project does not exist.
    fn create_api_key(&self, key: NewApiKey) -> impl Future<Output = StoreResult<()>> + Send;

    fn list_api_keys(&self, project_id: &ProjectId) -> impl Future<Output = StoreResult<Vec<ApiKeyInfo>>> + Send;

    /// Revokes a key; `NotFound` if there is no such key. Revoking twice keeps
    /// the first revocation time.
    fn revoke_api_key(&self, key_id: &ApiKeyId, now: Timestamp) -> impl Future<Output = StoreResult<()>> + Send;

    /// Finds the key with this SHA-256 and its project.
    fn find_api_key(&self, key_hash: &[u8; 32]) -> impl Future<Output = StoreResult<Option<AuthenticatedKey>>> + Send;
}

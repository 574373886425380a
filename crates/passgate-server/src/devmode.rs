//! `passgate dev`: zero configuration. A secret generated once and kept in
//! `./.passgate/secret`, a dev project whose redirect URLs are localhost and
//! 127.0.0.1 on any port, and its key, derived from that secret so the same
//! key is printed at every start (it is still stored only as a hash).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use passgate_core::apikey::{ApiKey, KeyMode};
use passgate_core::limits::{EMAILS_PER_MINUTE_DEFAULT, LINK_TTL_DEFAULT_SECONDS};
use passgate_core::secret::{Purpose, ServerSecret};
use passgate_core::{ApiKeyId, ProjectId, Timestamp, random};
use passgate_store::{NewApiKey, NewProject, ProjectSettings, Store, StoreError};

pub const DEV_DIR: &str = ".passgate";
pub const DEV_PROJECT_ID: &str = "prj_dev";

/// Reads `./.passgate/secret`, creating it (mode 0600) on first use.
pub fn load_or_create_secret(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_string());
    }
    std::fs::create_dir_all(dir)?;
    let secret = STANDARD.encode(random::bytes::<32>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options.open(&path)?.write_all(secret.as_bytes())?;
    Ok(secret)
}

/// The dev project's key: 40 alphanumerics derived from the dev secret.
pub fn dev_api_key(secret: &ServerSecret) -> ApiKey {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&secret.derive(Purpose::DevApiKey, b"dev-key/0"));
    bytes.extend_from_slice(&secret.derive(Purpose::DevApiKey, b"dev-key/1"));
    // Rejection sampling over 64 derived bytes leaves ~62 usable: enough for 40.
    let body: String = bytes
        .iter()
        .filter(|&&b| (b as usize) < 248)
        .map(|&b| char::from(random::ALPHANUMERIC[b as usize % 62]))
        .take(40)
        .collect();
    ApiKey::from_body(KeyMode::Test, &format!("{body:0<40}"))
}

/// Creates the dev project and its key if they are not there yet.
pub async fn ensure_dev_project<S: Store>(store: &S, key: &ApiKey, now: Timestamp) -> Result<(), StoreError> {
    let project = NewProject {
        id: ProjectId::from_trusted(DEV_PROJECT_ID),
        settings: ProjectSettings {
            name: "Dev project".to_string(),
            app_name: None,
            redirect_urls: vec!["http://localhost:*".to_string(), "http://127.0.0.1:*".to_string()],
            allowed_domains: vec![],
            allowed_emails: vec![],
            link_ttl_seconds: LINK_TTL_DEFAULT_SECONDS,
            emails_per_minute: EMAILS_PER_MINUTE_DEFAULT,
        },
        is_dev: true,
        created_at: now,
    };
    let key = NewApiKey {
        id: ApiKeyId::from_trusted("key_dev"),
        project_id: ProjectId::from_trusted(DEV_PROJECT_ID),
        key_hash: key.hash(),
        hint: key.hint(),
        created_at: now,
    };
    store.create_project(project, key, true).await
}

//! `passgate dev`: zero configuration. A secret generated once and kept in
//! `.passgate/secret` (found in the current folder or the nearest parent
//! that has one, as git finds `.git`), a dev project whose redirect URLs are
//! localhost and 127.0.0.1 on any port, and its key, derived from that
//! secret so the same key is printed at every start (it is still stored only
//! as a hash).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use passgate_core::apikey::{ApiKey, KeyMode};
use passgate_core::limits::{
    EMAILS_PER_MINUTE_DEFAULT, EVENT_RETENTION_DEFAULT_SECONDS, LINK_TTL_DEFAULT_SECONDS, PER_IP_STARTS_PER_MINUTE,
    PER_RECIPIENT_EMAILS,
};
use passgate_core::otp::OTP_SENDS_PER_EMAIL;
use passgate_core::secret::{Purpose, ServerSecret};
use passgate_core::{ApiKeyId, ProjectId, Timestamp, random};
use passgate_store::{NewApiKey, NewProject, ProjectSettings, Store, StoreError};

pub const DEV_DIR: &str = ".passgate";
pub const DEV_PROJECT_ID: &str = "prj_dev";

/// The dev folder for a server started in `cwd`: the nearest `.passgate/`
/// holding a secret, in `cwd` or above it, so `passgate dev` run from a
/// subfolder of a project finds the project's; otherwise `cwd/.passgate`,
/// to be created.
pub fn locate_dev_dir(cwd: &Path) -> PathBuf {
    cwd.ancestors()
        .map(|dir| dir.join(DEV_DIR))
        .find(|candidate| candidate.join("secret").is_file())
        .unwrap_or_else(|| cwd.join(DEV_DIR))
}

/// Reads `<dev dir>/secret`, creating it (mode 0600) on first use.
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

/// Says which dev folder is in use, and whether it was just made.
pub fn describe_dev_dir(dir: &Path, existed: bool, cwd: Option<&Path>) -> String {
    let whence = match (existed, cwd.and_then(|cwd| dir.parent().map(|parent| parent == cwd))) {
        (false, _) => "created now",
        (true, Some(false)) => "found above the current folder",
        (true, _) => "kept from an earlier run",
    };
    format!("{} ({whence})", dir.display())
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
            emails_per_recipient: PER_RECIPIENT_EMAILS,
            starts_per_ip: PER_IP_STARTS_PER_MINUTE,
            otp_sends_per_email: OTP_SENDS_PER_EMAIL,
            event_retention_seconds: EVENT_RETENTION_DEFAULT_SECONDS,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_dev_folder_with_a_secret_is_found() {
        let root = std::env::temp_dir().join(format!("passgate-devdir-{}", uuid::Uuid::now_v7().simple()));
        let deep = root.join("app/src/components");
        std::fs::create_dir_all(&deep).unwrap_or_else(|e| panic!("{e}"));
        // Nothing yet: a folder to create where the server was started.
        assert_eq!(locate_dev_dir(&deep), deep.join(DEV_DIR));
        // A `.passgate` without a secret (say, made by hand) is not a dev folder.
        std::fs::create_dir_all(root.join("app/src/.passgate")).unwrap_or_else(|e| panic!("{e}"));
        load_or_create_secret(&root.join("app/.passgate")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(locate_dev_dir(&deep), root.join("app/.passgate"));
        // The nearest one wins.
        load_or_create_secret(&deep.join(DEV_DIR)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(locate_dev_dir(&deep), deep.join(DEV_DIR));
        std::fs::remove_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn the_dev_folder_is_described_by_where_it_came_from() {
        let cwd = Path::new("/work/app/src");
        assert_eq!(describe_dev_dir(&cwd.join(DEV_DIR), false, Some(cwd)), "/work/app/src/.passgate (created now)");
        let above = Path::new("/work/app/.passgate");
        assert_eq!(describe_dev_dir(above, true, Some(cwd)), "/work/app/.passgate (found above the current folder)");
        assert_eq!(
            describe_dev_dir(&cwd.join(DEV_DIR), true, Some(cwd)),
            "/work/app/src/.passgate (kept from an earlier run)"
        );
    }
}

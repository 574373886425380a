//! The command line: `serve`, `dev`, `migrate`, and the operator commands
//! (`project`, `key`, `signing-key`, `config`). Operator commands talk to the
//! same database as the server, so they can run beside it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use passgate_core::apikey::{ApiKey, KeyMode};
use passgate_core::email::EmailAddress;
use passgate_core::limits::{
    EMAILS_PER_MINUTE_DEFAULT, EMAILS_PER_MINUTE_MAX, EMAILS_PER_MINUTE_MIN, EVENT_RETENTION_MAX_SECONDS,
    EVENT_RETENTION_MIN_SECONDS, LINK_TTL_MAX_SECONDS, LINK_TTL_MIN_SECONDS, OTP_SENDS_PER_EMAIL_MAX,
    OTP_SENDS_PER_EMAIL_MIN, PER_IP_STARTS_MAX, PER_IP_STARTS_MIN, PER_IP_STARTS_PER_MINUTE, PER_RECIPIENT_EMAILS,
    PER_RECIPIENT_EMAILS_MAX, PER_RECIPIENT_EMAILS_MIN, event_retention_allowed,
};
use passgate_core::otp::OTP_SENDS_PER_EMAIL;
use passgate_core::policy::canonical_domain;
use passgate_core::redirect::AllowedRedirect;
use passgate_core::{ApiKeyId, Clock, OrganizationId, ProjectId, Timestamp, UserId, duration};
use passgate_store::{ApiKeyInfo, NewApiKey, NewProject, Project, ProjectSettings, Store, StoreError, User};
use serde_json::json;

use crate::config::{self, ConfigError, RawSettings, Settings};
use crate::server::{self, StartError};
use crate::{SystemClock, telemetry};

#[derive(Debug, Parser)]
#[command(name = "passgate", version, about = "Passwordless email login, verified server to server.")]
pub struct Cli {
    /// TOML configuration file (environment variables PASSGATE_* win over it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL (wins over PASSGATE_DATABASE_URL and the file).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// What `serve --help` and `dev --help` add: every setting and where it is
/// explained.
const SETTINGS_HELP: &str = "\
Settings (a TOML file given with --config, then PASSGATE_* environment variables, which win):
  PASSGATE_DATABASE_URL         sqlite://passgate.db (default) or postgres://user:pass@host/db
  PASSGATE_LISTEN               the public listener, IP:port (127.0.0.1:8080)
  PASSGATE_PUBLIC_URL           the server's own URL, the JWT issuer (http://<listen>)
  PASSGATE_SMTP_URL             smtp://, smtp://…?tls=required|opportunistic|none, smtps:// (required to serve)
  PASSGATE_SMTP_CA_FILE         extra CA certificates (PEM) trusted for the relay
  PASSGATE_EMAIL_FROM           the sender (passgate <no-reply@localhost>)
  PASSGATE_SECRET_KEY           32+ random bytes, base64 (required to serve; or PASSGATE_SECRET_KEY_FILE)
  PASSGATE_SECRET_KEY_PREVIOUS  the previous secret while rotating
  PASSGATE_METRICS_LISTEN       the metrics listener, IP:port or off (127.0.0.1:9090)
  PASSGATE_TEMPLATES_DIR        email template overrides
  PASSGATE_OUTBOX_LEASE         how long a worker holds a claimed email (60s)
  PASSGATE_DATABASE_MAX_CONNECTIONS, PASSGATE_DATABASE_ACQUIRE_TIMEOUT   PostgreSQL pool (10, 5s)
  PASSGATE_HTTP_HEADER_TIMEOUT, PASSGATE_HTTP_BODY_TIMEOUT, PASSGATE_HTTP_IDLE_TIMEOUT,
  PASSGATE_HTTP_MAX_CONNECTIONS   connection limits (10s, 10s, 75s, 4096)
  PASSGATE_LOG_FORMAT, PASSGATE_LOG   json or pretty; a tracing filter (info)
  PASSGATE_DEV                  1 for dev mode (as `passgate dev`)
Secrets, the SMTP URL and the database URL may come from files: PASSGATE_<NAME>_FILE.
Every setting, its default and its checks: docs/configuration.md.
`passgate config example` prints an annotated configuration file.";

#[derive(Debug, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once per run; boxing would only add noise to the matches")]
pub enum Command {
    /// Run migrations, then serve the API and send emails.
    #[command(after_help = SETTINGS_HELP)]
    Serve,
    /// Zero-configuration dev server: SQLite under .passgate/ (here or in the nearest parent folder that has one), a dev project, /_dev/mailbox.
    #[command(after_help = SETTINGS_HELP)]
    Dev {
        /// Before starting, forget the dev project's sign-in attempts so far:
        /// its send limits and wrong-code counts start from zero. Its key
        /// and users stay; links already sent stop working.
        #[arg(long)]
        reset_limits: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Create, change, list and show projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Create, list and revoke a project's secret keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage the JWT signing key.
    #[command(subcommand, name = "signing-key")]
    SigningKey(SigningKeyCommand),
    /// Find a project's users, and erase one.
    #[command(subcommand)]
    User(UserCommand),
    /// List and show a project's organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project and its first secret key (shown once).
    Create(ProjectCreate),
    /// Change a project's settings (repeatable options replace the list).
    Update(ProjectUpdate),
    /// Show a project's settings.
    Show {
        /// The project's id (`prj_…`).
        id: String,
        /// Print the settings as one JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
    /// List every project of the database (id, name, created), oldest first.
    List {
        /// Print a JSON array of the projects' settings on standard output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ProjectCreate {
    /// The project's name (1-128 characters), shown in `project list` and, unless --app-name says otherwise, in emails.
    #[arg(long)]
    pub name: String,
    /// Allowed redirect URL (repeatable); `http://localhost:*` admits any port.
    #[arg(long = "redirect-url", value_name = "URL", required = true)]
    pub redirect_urls: Vec<String>,
    /// Only addresses at this domain may sign in (repeatable).
    #[arg(long = "allowed-domain", value_name = "DOMAIN")]
    pub allowed_domains: Vec<String>,
    /// This address may sign in (repeatable; adds to allowed domains).
    #[arg(long = "allowed-email", value_name = "EMAIL")]
    pub allowed_emails: Vec<String>,
    /// How long a link lives: 1m to 60m (e.g. 90s, 15m, 1h).
    #[arg(long, default_value = "15m")]
    pub link_ttl: String,
    /// The name emails show (default: the project name).
    #[arg(long)]
    pub app_name: Option<String>,
    /// Emails this project may send per minute.
    #[arg(long, default_value_t = EMAILS_PER_MINUTE_DEFAULT)]
    pub emails_per_minute: i64,
    /// Link and invite emails per address per 15 minutes (1-1000).
    #[arg(long, value_name = "N", default_value_t = PER_RECIPIENT_EMAILS)]
    pub emails_per_recipient: i64,
    /// Logins started per end-user IP per minute, when the app passes ipAddress (1-100000).
    #[arg(long, value_name = "N", default_value_t = PER_IP_STARTS_PER_MINUTE)]
    pub starts_per_ip: i64,
    /// One-time codes sent per address per 3 minutes (1-100).
    #[arg(long, value_name = "N", default_value_t = OTP_SENDS_PER_EMAIL)]
    pub otp_sends_per_email: i64,
    /// How long the project's events are kept: 1m to 3650d (e.g. 90d, 12h), or 0 to keep them forever.
    #[arg(long, value_name = "DURATION", default_value = "90d")]
    pub event_retention: String,
    /// Print {"projectId", "secretKey"} as JSON on standard output, and nothing else there.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ProjectUpdate {
    /// The project's id (`prj_…`).
    pub id: String,
    /// A new name (1-128 characters).
    #[arg(long)]
    pub name: Option<String>,
    /// Allowed redirect URLs: the ones given replace the list (repeatable).
    #[arg(long = "redirect-url", value_name = "URL")]
    pub redirect_urls: Vec<String>,
    /// Allowed domains: the ones given replace the list (repeatable).
    #[arg(long = "allowed-domain", value_name = "DOMAIN")]
    pub allowed_domains: Vec<String>,
    /// Remove every allowed domain.
    #[arg(long, conflicts_with = "allowed_domains")]
    pub clear_allowed_domains: bool,
    /// Allowed addresses: the ones given replace the list (repeatable).
    #[arg(long = "allowed-email", value_name = "EMAIL")]
    pub allowed_emails: Vec<String>,
    /// Remove every allowed email.
    #[arg(long, conflicts_with = "allowed_emails")]
    pub clear_allowed_emails: bool,
    /// How long a link lives: 1m to 60m (e.g. 90s, 15m, 1h); applies to logins started afterwards.
    #[arg(long)]
    pub link_ttl: Option<String>,
    /// The name emails show; an empty string goes back to the project name.
    #[arg(long)]
    pub app_name: Option<String>,
    /// Emails this project may send per minute.
    #[arg(long)]
    pub emails_per_minute: Option<i64>,
    /// Link and invite emails per address per 15 minutes (1-1000).
    #[arg(long, value_name = "N")]
    pub emails_per_recipient: Option<i64>,
    /// Logins started per end-user IP per minute, when the app passes ipAddress (1-100000).
    #[arg(long, value_name = "N")]
    pub starts_per_ip: Option<i64>,
    /// One-time codes sent per address per 3 minutes (1-100).
    #[arg(long, value_name = "N")]
    pub otp_sends_per_email: Option<i64>,
    /// How long the project's events are kept: 1m to 3650d (e.g. 90d, 12h), or 0 to keep them forever.
    #[arg(long, value_name = "DURATION")]
    pub event_retention: Option<String>,
    /// Print the updated settings as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a new secret key for a project (shown once).
    Create {
        /// The project's id (`prj_…`).
        #[arg(long)]
        project: String,
        /// Print {"keyId", "secretKey"} as JSON on standard output, and nothing else there.
        #[arg(long)]
        json: bool,
    },
    /// List a project's keys (never the secret itself).
    List {
        /// The project's id (`prj_…`).
        #[arg(long)]
        project: String,
        /// Print a JSON array on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key; it stops working on the next request.
    Revoke {
        /// The key's id (`key_…`, from `key list`), not the secret key.
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Show a user and the organizations they belong to.
    Show {
        /// The project's id (`prj_…`).
        #[arg(long)]
        project: String,
        /// The user's id (`usr_…`) or address.
        user: String,
        /// Print the user as one JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Erase a user: the user, their memberships, every link, code and
    /// invite to their address; their events keep no email, IP address or
    /// user agent. It cannot be undone.
    Delete {
        /// The project's id (`prj_…`).
        #[arg(long)]
        project: String,
        /// The user's id (`usr_…`) or address.
        user: String,
        /// Confirm the erasure (required: it cannot be undone).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// List a project's organizations, newest first (id, members, name).
    List {
        /// The project's id (`prj_…`).
        #[arg(long)]
        project: String,
        /// Print a JSON array on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Show an organization and its members.
    Show {
        /// The project's id (`prj_…`).
        #[arg(long)]
        project: String,
        /// The organization's id (`org_…`).
        id: String,
        /// Print the organization as one JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Make a new JWT signing key current; the previous one stays published until its tokens expire.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print an annotated configuration file with the defaults.
    Example,
    /// Print the OpenAPI 3.1 document of the HTTP API (as served at /api/v2/openapi.json).
    Openapi,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("the OpenAPI document cannot be serialised")]
    Openapi,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("{0}")]
    Invalid(String),
    #[error("no project {0}")]
    NoProject(String),
    #[error("no key {0}")]
    NoKey(String),
    #[error("no user {0} in this project")]
    NoUser(String),
    #[error("no organization {0} in this project")]
    NoOrganization(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

fn load_settings(cli: &Cli, force_dev: bool, serving: bool) -> Result<Settings, ConfigError> {
    let base = match &cli.config {
        Some(path) => RawSettings::from_file(path)?,
        None => RawSettings::default(),
    };
    let mut raw = base.overlay_env(|name| std::env::var(name).ok())?;
    if let Some(url) = &cli.database_url {
        raw.database_url = Some(url.clone());
    }
    // Dev mode's folder, absolute so that what is printed can be found.
    if let Ok(cwd) = std::env::current_dir() {
        raw.dev_dir = Some(crate::devmode::locate_dev_dir(&cwd));
    }
    raw.check(force_dev, serving)
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Serve | Command::Dev { .. } => {
            let reset_limits = matches!(cli.command, Command::Dev { reset_limits: true });
            let settings = load_settings(&cli, matches!(cli.command, Command::Dev { .. }), true)?;
            telemetry::init(settings.log_format, &settings.log);
            server::serve_from_settings(settings, server::DevOptions { reset_limits }).await?;
            Ok(())
        }
        Command::Config(ConfigCommand::Example) => {
            print!("{}", config::EXAMPLE);
            Ok(())
        }
        Command::Config(ConfigCommand::Openapi) => {
            let document = crate::openapi::document_json().ok_or(CliError::Openapi)?;
            println!("{document}");
            Ok(())
        }
        _ => {
            let settings = load_settings(&cli, false, false)?;
            match server::Backend::of(&settings.database_url)? {
                server::Backend::Sqlite => {
                    let store = server::open_sqlite(&settings.database_url).await?;
                    admin_then_close(&cli.command, store, &settings).await
                }
                server::Backend::Postgres => {
                    let store = server::open_postgres(&settings.database_url, settings.pool).await?;
                    admin_then_close(&cli.command, store, &settings).await
                }
            }
        }
    }
}

async fn admin_then_close<S: Store>(command: &Command, store: S, settings: &Settings) -> Result<(), CliError> {
    // On standard error, so `--json` output stays clean: which database the
    // command reads and writes (the CLI and a server must share one).
    eprintln!("database: {}", server::shown_database(&settings.database_url));
    let result = admin(command, &store, settings).await;
    store.close().await;
    result
}

async fn admin<S: Store>(command: &Command, store: &S, settings: &Settings) -> Result<(), CliError> {
    let now = SystemClock.now();
    match command {
        Command::Migrate => {
            println!("migrations applied to {}", server::redacted_url(&settings.database_url));
        }
        Command::Project(ProjectCommand::Create(args)) => {
            let project_settings = checked_settings(ProjectSettings {
                name: args.name.clone(),
                app_name: args.app_name.clone(),
                redirect_urls: args.redirect_urls.clone(),
                allowed_domains: args.allowed_domains.clone(),
                allowed_emails: args.allowed_emails.clone(),
                link_ttl_seconds: ttl_seconds(&args.link_ttl)?,
                emails_per_minute: args.emails_per_minute,
                emails_per_recipient: args.emails_per_recipient,
                starts_per_ip: args.starts_per_ip,
                otp_sends_per_email: args.otp_sends_per_email,
                event_retention_seconds: retention_seconds(&args.event_retention)?,
            })?;
            let id = ProjectId::generate();
            let (key, record) = new_key(&id, KeyMode::Live, now);
            let project = NewProject { id: id.clone(), settings: project_settings, is_dev: false, created_at: now };
            store.create_project(project, record, false).await?;
            if args.json {
                println!("{}", json!({ "projectId": id, "secretKey": key.expose() }));
            } else {
                println!("Created project {id} ({}).", args.name);
                println!("Secret key (shown once; store it now): {}", key.expose());
            }
        }
        Command::Project(ProjectCommand::Update(args)) => {
            let id = project_id(&args.id)?;
            let current = store.get_project(&id).await?.ok_or_else(|| CliError::NoProject(args.id.clone()))?;
            let mut s = current.settings;
            if let Some(name) = &args.name {
                s.name = name.clone();
            }
            if let Some(app_name) = &args.app_name {
                s.app_name = Some(app_name.clone()).filter(|n| !n.is_empty());
            }
            if !args.redirect_urls.is_empty() {
                s.redirect_urls = args.redirect_urls.clone();
            }
            if !args.allowed_domains.is_empty() || args.clear_allowed_domains {
                s.allowed_domains = args.allowed_domains.clone();
            }
            if !args.allowed_emails.is_empty() || args.clear_allowed_emails {
                s.allowed_emails = args.allowed_emails.clone();
            }
            if let Some(ttl) = &args.link_ttl {
                s.link_ttl_seconds = ttl_seconds(ttl)?;
            }
            if let Some(n) = args.emails_per_minute {
                s.emails_per_minute = n;
            }
            if let Some(n) = args.emails_per_recipient {
                s.emails_per_recipient = n;
            }
            if let Some(n) = args.starts_per_ip {
                s.starts_per_ip = n;
            }
            if let Some(n) = args.otp_sends_per_email {
                s.otp_sends_per_email = n;
            }
            if let Some(retention) = &args.event_retention {
                s.event_retention_seconds = retention_seconds(retention)?;
            }
            let updated = store.update_project(&id, checked_settings(s)?).await.map_err(|e| match e {
                StoreError::NotFound => CliError::NoProject(args.id.clone()),
                other => other.into(),
            })?;
            print_project(&updated, args.json);
        }
        Command::Project(ProjectCommand::List { json }) => {
            let projects = store.list_projects().await?;
            if *json {
                println!("{}", serde_json::Value::Array(projects.iter().map(project_json).collect()));
            } else if projects.is_empty() {
                println!("No projects yet: create one with `passgate project create`.");
            } else {
                for p in &projects {
                    println!("{}  {}  created {}", p.id, p.settings.name, p.created_at.to_rfc3339());
                }
            }
        }
        Command::Project(ProjectCommand::Show { id, json }) => {
            let project = store.get_project(&project_id(id)?).await?.ok_or_else(|| CliError::NoProject(id.clone()))?;
            print_project(&project, *json);
        }
        Command::Key(KeyCommand::Create { project, json }) => {
            let p =
                store.get_project(&project_id(project)?).await?.ok_or_else(|| CliError::NoProject(project.clone()))?;
            let mode = if p.is_dev { KeyMode::Test } else { KeyMode::Live };
            let (key, record) = new_key(&p.id, mode, now);
            let key_id = record.id.clone();
            store.create_api_key(record).await?;
            if *json {
                println!("{}", json!({ "keyId": key_id, "secretKey": key.expose() }));
            } else {
                println!("Created key {key_id} for {project}.");
                println!("Secret key (shown once; store it now): {}", key.expose());
            }
        }
        Command::Key(KeyCommand::List { project, json }) => {
            let id = project_id(project)?;
            store.get_project(&id).await?.ok_or_else(|| CliError::NoProject(project.clone()))?;
            let keys = store.list_api_keys(&id).await?;
            print_keys(&keys, *json);
        }
        Command::Key(KeyCommand::Revoke { key_id }) => {
            let id = ApiKeyId::parse(key_id).ok_or_else(|| CliError::NoKey(key_id.clone()))?;
            store.revoke_api_key(&id, now).await.map_err(|e| match e {
                StoreError::NotFound => CliError::NoKey(key_id.clone()),
                other => other.into(),
            })?;
            println!("Revoked {key_id}; it is refused from the next request on.");
        }
        Command::SigningKey(SigningKeyCommand::Rotate) => {
            let secret = server::server_secret(settings)?;
            let record = crate::keys::new_record(&secret, now);
            let kid = record.kid.clone();
            store.rotate_signing_key(record, now).await?;
            println!(
                "Signing key {kid} is now current. Running servers switch within seconds; the previous key stays in the JWKS for {} minutes.",
                crate::keys::PUBLISH_RETIRED_FOR_SECONDS / 60
            );
        }
        Command::User(UserCommand::Show { project, user, json }) => {
            let project = existing_project(store, project).await?;
            let found = find_user(store, &project, user).await?;
            let organizations = store.organizations_of(&project, &found.id).await?;
            if *json {
                println!(
                    "{}",
                    json!({
                        "id": found.id,
                        "email": found.email,
                        "createdAt": found.created_at.to_rfc3339(),
                        "organizationIds": organizations,
                    })
                );
            } else {
                println!("{}  {}  created {}", found.id, found.email, found.created_at.to_rfc3339());
                for organization in organizations {
                    println!("  member of {organization}");
                }
            }
        }
        Command::User(UserCommand::Delete { project, user, yes }) => {
            let project = existing_project(store, project).await?;
            let found = find_user(store, &project, user).await?;
            if !*yes {
                return Err(CliError::Invalid(format!(
                    "erasing {} ({}) cannot be undone; run again with --yes",
                    found.id, found.email
                )));
            }
            let erased =
                store.erase_user(&project, &found.id, now).await?.ok_or_else(|| CliError::NoUser(user.clone()))?;
            println!(
                "Erased {}: {} logins and invites, {} one-time codes, {} session keys, {} memberships; {} events anonymised.",
                found.id,
                erased.logins,
                erased.one_time_codes,
                erased.sessions,
                erased.memberships,
                erased.events_anonymised
            );
        }
        Command::Org(OrgCommand::List { project, json }) => {
            let project = existing_project(store, project).await?;
            let organizations = store.list_organizations(&project).await?;
            if *json {
                let list: Vec<serde_json::Value> = organizations
                    .iter()
                    .map(|o| {
                        json!({ "id": o.id, "name": o.name, "createdAt": o.created_at.to_rfc3339(), "members": o.members })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if organizations.is_empty() {
                println!("No organizations in {project}.");
            } else {
                for o in &organizations {
                    println!("{}  {} members  {}", o.id, o.members, o.name);
                }
            }
        }
        Command::Org(OrgCommand::Show { project, id, json }) => {
            let project = existing_project(store, project).await?;
            let organization_id = OrganizationId::parse(id).ok_or_else(|| CliError::NoOrganization(id.clone()))?;
            let organization = store
                .get_organization(&project, &organization_id)
                .await?
                .ok_or_else(|| CliError::NoOrganization(id.clone()))?;
            if *json {
                let members: Vec<serde_json::Value> = organization
                    .members
                    .iter()
                    .map(|m| {
                        json!({ "userId": m.user_id, "email": m.email, "role": m.role, "joinedAt": m.joined_at.to_rfc3339() })
                    })
                    .collect();
                println!(
                    "{}",
                    json!({
                        "id": organization.id,
                        "name": organization.name,
                        "createdAt": organization.created_at.to_rfc3339(),
                        "members": members,
                    })
                );
            } else {
                println!(
                    "{}  {}  created {}",
                    organization.id,
                    organization.name,
                    organization.created_at.to_rfc3339()
                );
                for m in &organization.members {
                    println!("  {}  {}  {}  joined {}", m.user_id, m.email, m.role, m.joined_at.to_rfc3339());
                }
            }
        }
        Command::Serve | Command::Dev { .. } | Command::Config(_) => {}
    }
    Ok(())
}

/// A project given on the command line, which must exist.
async fn existing_project<S: Store>(store: &S, given: &str) -> Result<ProjectId, CliError> {
    let id = project_id(given)?;
    store.get_project(&id).await?.ok_or_else(|| CliError::NoProject(given.to_string()))?;
    Ok(id)
}

/// A user given on the command line by id (`usr_…`) or by address.
async fn find_user<S: Store>(store: &S, project: &ProjectId, given: &str) -> Result<User, CliError> {
    let found = match UserId::parse(given) {
        Some(id) => store.get_user(project, &id).await?,
        None => match EmailAddress::parse(given) {
            Ok(email) => store.find_user(project, email.as_str()).await?,
            Err(_) => None,
        },
    };
    found.ok_or_else(|| CliError::NoUser(given.to_string()))
}

/// A project id given on the command line; one that is not shaped like an
/// id names no project.
fn project_id(given: &str) -> Result<ProjectId, CliError> {
    ProjectId::parse(given).ok_or_else(|| CliError::NoProject(given.to_string()))
}

fn new_key(project_id: &ProjectId, mode: KeyMode, now: Timestamp) -> (ApiKey, NewApiKey) {
    let key = ApiKey::generate(mode);
    let record = NewApiKey {
        id: ApiKeyId::generate(),
        project_id: project_id.clone(),
        key_hash: key.hash(),
        hint: key.hint(),
        created_at: now,
    };
    (key, record)
}

fn ttl_seconds(text: &str) -> Result<i64, CliError> {
    let seconds = duration::parse_seconds(text).map_err(|e| CliError::Invalid(format!("--link-ttl: {e}")))?;
    if !(LINK_TTL_MIN_SECONDS..=LINK_TTL_MAX_SECONDS).contains(&seconds) {
        return Err(CliError::Invalid(format!("--link-ttl must be between 1m and 60m, not {text}")));
    }
    Ok(seconds)
}

/// `--event-retention`: a duration, or 0 for "forever" (bounds are checked
/// with the other settings).
fn retention_seconds(text: &str) -> Result<i64, CliError> {
    duration::parse_seconds(text).map_err(|e| CliError::Invalid(format!("--event-retention: {e}")))
}

fn plain_text(field: &str, value: &str) -> Result<(), CliError> {
    if value.trim().is_empty() || value.chars().count() > 128 || value.chars().any(char::is_control) {
        return Err(CliError::Invalid(format!("{field} must be 1-128 characters without control characters")));
    }
    Ok(())
}

/// Validates and canonicalises project settings given by an operator.
pub fn checked_settings(mut s: ProjectSettings) -> Result<ProjectSettings, CliError> {
    plain_text("--name", &s.name)?;
    if let Some(app_name) = &s.app_name {
        plain_text("--app-name", app_name)?;
    }
    if s.redirect_urls.is_empty() {
        return Err(CliError::Invalid("at least one --redirect-url is required".into()));
    }
    for url in &s.redirect_urls {
        AllowedRedirect::parse(url).map_err(|e| CliError::Invalid(format!("--redirect-url: {e}")))?;
    }
    s.allowed_domains = s
        .allowed_domains
        .iter()
        .map(|d| {
            canonical_domain(d).ok_or_else(|| CliError::Invalid(format!("--allowed-domain {d:?} is not a domain")))
        })
        .collect::<Result<_, _>>()?;
    s.allowed_emails = s
        .allowed_emails
        .iter()
        .map(|e| {
            EmailAddress::parse(e)
                .map(EmailAddress::into_string)
                .map_err(|err| CliError::Invalid(format!("--allowed-email {e:?}: {err}")))
        })
        .collect::<Result<_, _>>()?;
    if !(LINK_TTL_MIN_SECONDS..=LINK_TTL_MAX_SECONDS).contains(&s.link_ttl_seconds) {
        return Err(CliError::Invalid("--link-ttl must be between 1m and 60m".into()));
    }
    for (flag, value, min, max) in [
        ("--emails-per-minute", s.emails_per_minute, EMAILS_PER_MINUTE_MIN, EMAILS_PER_MINUTE_MAX),
        ("--emails-per-recipient", s.emails_per_recipient, PER_RECIPIENT_EMAILS_MIN, PER_RECIPIENT_EMAILS_MAX),
        ("--starts-per-ip", s.starts_per_ip, PER_IP_STARTS_MIN, PER_IP_STARTS_MAX),
        ("--otp-sends-per-email", s.otp_sends_per_email, OTP_SENDS_PER_EMAIL_MIN, OTP_SENDS_PER_EMAIL_MAX),
    ] {
        if !(min..=max).contains(&value) {
            return Err(CliError::Invalid(format!("{flag} must be between {min} and {max}, not {value}")));
        }
    }
    if !event_retention_allowed(s.event_retention_seconds) {
        return Err(CliError::Invalid(format!(
            "--event-retention must be 0 (keep events forever) or between {}m and {}d",
            EVENT_RETENTION_MIN_SECONDS / 60,
            EVENT_RETENTION_MAX_SECONDS / 86_400
        )));
    }
    Ok(s)
}

/// A project's settings as `project show --json` prints them.
fn project_json(p: &Project) -> serde_json::Value {
    let s = &p.settings;
    json!({
        "projectId": p.id,
        "name": s.name,
        "appName": p.app_name(),
        "redirectUrls": s.redirect_urls,
        "allowedDomains": s.allowed_domains,
        "allowedEmails": s.allowed_emails,
        "linkTtlSeconds": s.link_ttl_seconds,
        "emailsPerMinute": s.emails_per_minute,
        "emailsPerRecipient": s.emails_per_recipient,
        "startsPerIp": s.starts_per_ip,
        "otpSendsPerEmail": s.otp_sends_per_email,
        "eventRetentionSeconds": s.event_retention_seconds,
        "createdAt": p.created_at.to_rfc3339(),
    })
}

fn print_project(p: &Project, as_json: bool) {
    let s = &p.settings;
    if as_json {
        println!("{}", project_json(p));
    } else {
        println!("Project {} — {}", p.id, s.name);
        println!("  app name:             {}", p.app_name());
        println!("  redirect URLs:        {}", s.redirect_urls.join(", "));
        println!(
            "  allowed domains:      {}",
            if s.allowed_domains.is_empty() { "(any)".into() } else { s.allowed_domains.join(", ") }
        );
        println!(
            "  allowed emails:       {}",
            if s.allowed_emails.is_empty() { "(none)".into() } else { s.allowed_emails.join(", ") }
        );
        println!("  link TTL:             {} s", s.link_ttl_seconds);
        println!("  emails per minute:    {}", s.emails_per_minute);
        println!("  emails per recipient: {} per 15 minutes", s.emails_per_recipient);
        println!("  starts per IP:        {} per minute", s.starts_per_ip);
        println!("  OTP sends per email:  {} per 3 minutes", s.otp_sends_per_email);
        println!("  event retention:      {}", shown_retention(s.event_retention_seconds));
        println!("  created:              {}", p.created_at.to_rfc3339());
    }
}

/// An event retention as an operator would write it: `90d`, `12h`, or forever.
fn shown_retention(seconds: i64) -> String {
    match seconds {
        0 => "forever".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s => format!("{s}s"),
    }
}

fn print_keys(keys: &[ApiKeyInfo], as_json: bool) {
    if as_json {
        let list: Vec<_> = keys
            .iter()
            .map(|k| {
                json!({
                    "keyId": k.id,
                    "hint": k.hint,
                    "createdAt": k.created_at.to_rfc3339(),
                    "revokedAt": k.revoked_at.map(Timestamp::to_rfc3339),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        for k in keys {
            let state = k.revoked_at.map_or_else(|| "active".to_string(), |r| format!("revoked {}", r.to_rfc3339()));
            println!("{}  {}  created {}  {}", k.id, k.hint, k.created_at.to_rfc3339(), state);
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every option and argument of every command says what it is for.
    #[test]
    fn every_option_of_every_command_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "passgate", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:?}");
    }

    /// `serve --help` lists the settings and says where they are explained.
    #[test]
    fn serve_help_lists_the_settings() {
        let mut command = Cli::command();
        let serve = command.find_subcommand_mut("serve").unwrap_or_else(|| panic!("no serve"));
        let help = serve.render_long_help().to_string();
        for setting in [
            "PASSGATE_DATABASE_URL",
            "PASSGATE_SMTP_URL",
            "PASSGATE_SECRET_KEY",
            "PASSGATE_LISTEN",
            "docs/configuration.md",
        ] {
            assert!(help.contains(setting), "{setting} missing from serve --help");
        }
    }
}

//! Configuration: defaults, then a TOML file (`--config`), then `PASSGATE_*`
//! environment variables, the environment winning. Secrets may also come from
//! files (`PASSGATE_SECRET_KEY_FILE=/run/secrets/passgate`), which keeps them
//! out of the process environment and shell history.
//!
//! The raw layers are merged into [`RawSettings`] (everything optional), then
//! checked once into [`Settings`], so a bad value stops the process at start
//! with a message naming the setting, never halfway through a request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::http::serve::ConnectionLimits;
use serde::Deserialize;

/// What an operator can set. Names are the contract (see docs/configuration.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub smtp_url: Option<String>,
    pub email_from: Option<String>,
    pub secret_key: Option<String>,
    pub secret_key_previous: Option<String>,
    pub metrics_listen: Option<String>,
    pub dev: Option<bool>,
    /// Development only: webhooks may go to private addresses and plain http.
    pub webhook_allow_private: Option<bool>,
    pub templates_dir: Option<String>,
    pub smtp_ca_file: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub outbox_lease: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub database_max_connections: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub database_acquire_timeout: Option<String>,
    pub log_format: Option<String>,
    pub log: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub http_header_timeout: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub http_body_timeout: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub http_idle_timeout: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub http_max_connections: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub retain_logins: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub retain_emails: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub sweep_interval: Option<String>,
    /// Where dev mode keeps its secret and database: not a setting, but
    /// found by the CLI from the folder it runs in (`./.passgate` if unset).
    #[serde(skip)]
    pub dev_dir: Option<PathBuf>,
}

/// Accepts `10` as well as `"10"` in the TOML file (the environment only has
/// strings); a bare number of a duration setting means seconds.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(i64),
    }
    Ok(Option::<Either>::deserialize(d)?.map(|v| match v {
        Either::Text(t) => t,
        Either::Number(n) => n.to_string(),
    }))
}

/// The settings whose values may come from a file named by `<NAME>_FILE`.
const FILE_SETTINGS: [&str; 4] = ["SECRET_KEY", "SECRET_KEY_PREVIOUS", "SMTP_URL", "DATABASE_URL"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile { path: String, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    ParseFile { path: String, message: String },
    #[error("{name}: {message}")]
    Invalid { name: &'static str, message: String },
}

fn invalid(name: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { name, message: message.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Checked settings.
#[derive(Debug)]
pub struct Settings {
    pub database_url: String,
    pub listen: SocketAddr,
    pub public_url: String,
    pub smtp_url: Option<SecretString>,
    pub email_from: lettre::message::Mailbox,
    pub secret_key: Option<SecretString>,
    pub secret_key_previous: Option<SecretString>,
    /// `None` when set to `off`.
    pub metrics_listen: Option<SocketAddr>,
    pub dev: bool,
    /// `PASSGATE_WEBHOOK_ALLOW_PRIVATE` (on in dev mode unless set to 0):
    /// webhooks may go to private addresses and plain http.
    pub webhook_allow_private: bool,
    pub templates_dir: Option<PathBuf>,
    /// PEM of extra CA certificates trusted for the SMTP relay.
    pub smtp_ca_pem: Option<Vec<u8>>,
    pub outbox_lease: Duration,
    /// PostgreSQL pool sizing (SQLite uses one writer and four readers).
    pub pool: passgate_store_postgres::PoolSettings,
    pub log_format: LogFormat,
    pub log: String,
    /// Connection timeouts and cap of the public and metrics listeners.
    pub connections: ConnectionLimits,
    /// How long finished work is kept, and how often it is swept.
    pub retention: crate::sweeper::SweepConfig,
    /// Dev mode's folder: its secret, and its database unless one is set.
    pub dev_dir: PathBuf,
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(invalid(name, format!("{other:?} is not a boolean (use 1 or 0)"))),
    }
}

impl RawSettings {
    /// Reads the TOML file, if any.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::ReadFile { path: path.display().to_string(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::ParseFile { path: path.display().to_string(), message: e.message().to_string() })
    }

    /// Overlays `PASSGATE_*` variables from `env` (a lookup, so tests can
    /// pass their own), including the `_FILE` variants.
    pub fn overlay_env(mut self, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| env(&format!("PASSGATE_{name}"));
        for name in FILE_SETTINGS {
            if let Some(path) = var(&format!("{name}_FILE")) {
                let value = std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile { path, source })?;
                self.set(name, value.trim_end_matches(['\n', '\r']).to_string())?;
            }
        }
        for name in [
            "DATABASE_URL",
            "LISTEN",
            "PUBLIC_URL",
            "SMTP_URL",
            "EMAIL_FROM",
            "SECRET_KEY",
            "SECRET_KEY_PREVIOUS",
            "METRICS_LISTEN",
            "DEV",
            "WEBHOOK_ALLOW_PRIVATE",
            "TEMPLATES_DIR",
            "SMTP_CA_FILE",
            "OUTBOX_LEASE",
            "DATABASE_MAX_CONNECTIONS",
            "DATABASE_ACQUIRE_TIMEOUT",
            "LOG_FORMAT",
            "LOG",
            "HTTP_HEADER_TIMEOUT",
            "HTTP_BODY_TIMEOUT",
            "HTTP_IDLE_TIMEOUT",
            "HTTP_MAX_CONNECTIONS",
            "RETAIN_LOGINS",
            "RETAIN_EMAILS",
            "SWEEP_INTERVAL",
        ] {
            if let Some(value) = var(name) {
                self.set(name, value)?;
            }
        }
        Ok(self)
    }

    fn set(&mut self, name: &str, value: String) -> Result<(), ConfigError> {
        let slot = match name {
            "DATABASE_URL" => &mut self.database_url,
            "LISTEN" => &mut self.listen,
            "PUBLIC_URL" => &mut self.public_url,
            "SMTP_URL" => &mut self.smtp_url,
            "EMAIL_FROM" => &mut self.email_from,
            "SECRET_KEY" => &mut self.secret_key,
            "SECRET_KEY_PREVIOUS" => &mut self.secret_key_previous,
            "METRICS_LISTEN" => &mut self.metrics_listen,
            "TEMPLATES_DIR" => &mut self.templates_dir,
            "SMTP_CA_FILE" => &mut self.smtp_ca_file,
            "OUTBOX_LEASE" => &mut self.outbox_lease,
            "DATABASE_MAX_CONNECTIONS" => &mut self.database_max_connections,
            "DATABASE_ACQUIRE_TIMEOUT" => &mut self.database_acquire_timeout,
            "LOG_FORMAT" => &mut self.log_format,
            "LOG" => &mut self.log,
            "HTTP_HEADER_TIMEOUT" => &mut self.http_header_timeout,
            "HTTP_BODY_TIMEOUT" => &mut self.http_body_timeout,
            "HTTP_IDLE_TIMEOUT" => &mut self.http_idle_timeout,
            "HTTP_MAX_CONNECTIONS" => &mut self.http_max_connections,
            "RETAIN_LOGINS" => &mut self.retain_logins,
            "RETAIN_EMAILS" => &mut self.retain_emails,
            "SWEEP_INTERVAL" => &mut self.sweep_interval,
            "DEV" => {
                self.dev = Some(parse_bool("PASSGATE_DEV", &value)?);
                return Ok(());
            }
            "WEBHOOK_ALLOW_PRIVATE" => {
                self.webhook_allow_private = Some(parse_bool("PASSGATE_WEBHOOK_ALLOW_PRIVATE", &value)?);
                return Ok(());
            }
            _ => return Ok(()),
        };
        *slot = Some(value);
        Ok(())
    }

    /// Checks every value. `force_dev` is `passgate dev`; `serving` is false
    /// for the operator commands, which need neither SMTP nor (mostly) the secret.
    pub fn check(self, force_dev: bool, serving: bool) -> Result<Settings, ConfigError> {
        let dev = force_dev || self.dev.unwrap_or(false);
        let dev_dir = self.dev_dir.clone().unwrap_or_else(|| PathBuf::from(crate::devmode::DEV_DIR));
        let database_url = match self.database_url {
            Some(url) => url,
            None if dev => format!("sqlite://{}", dev_dir.join("passgate.db").display()),
            None => "sqlite://passgate.db".to_string(),
        };
        let listen_text = self.listen.unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| invalid("listen", format!("{listen_text:?} is not an address like 127.0.0.1:8080")))?;
        if dev && !listen.ip().is_loopback() {
            return Err(invalid("listen", format!("dev mode only listens on loopback, not {listen}")));
        }
        let public_url = match self.public_url {
            Some(u) => {
                let parsed = url::Url::parse(&u).map_err(|e| invalid("public_url", format!("{u:?}: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(invalid("public_url", "must be an http(s) URL"));
                }
                u.trim_end_matches('/').to_string()
            }
            // On every interface (a container, a VM), `http://0.0.0.0:8080`
            // would become the JWT issuer: an address nobody reaches.
            None if serving && listen.ip().is_unspecified() => {
                return Err(invalid(
                    "public_url",
                    format!(
                        "required when listen is {listen}: the default would name that address as the JWT issuer; set PASSGATE_PUBLIC_URL to the URL the apps reach"
                    ),
                ));
            }
            None => format!("http://{listen}"),
        };
        let smtp_url = match self.smtp_url.filter(|s| !s.is_empty()) {
            Some(s) => {
                let ok = ["smtp://", "smtps://"].iter().any(|p| s.starts_with(p)) && url::Url::parse(&s).is_ok();
                if !ok {
                    // Never echo the value: it may hold a password.
                    return Err(invalid("smtp_url", "must look like smtp://host:port or smtps://user:pass@host:465"));
                }
                Some(SecretString::from(s))
            }
            None if dev || !serving => None,
            None => {
                return Err(invalid(
                    "smtp_url",
                    "no SMTP relay configured: set PASSGATE_SMTP_URL (e.g. smtp://127.0.0.1:2525), or use `passgate dev`",
                ));
            }
        };
        let from_text = self.email_from.unwrap_or_else(|| "passgate <no-reply@localhost>".to_string());
        let email_from = from_text.parse().map_err(|_| {
            invalid("email_from", format!("{from_text:?} is not a mailbox like `App <no-reply@example.com>`"))
        })?;
        let secret_key = self.secret_key.filter(|s| !s.is_empty()).map(SecretString::from);
        if secret_key.is_none() && !dev && serving {
            return Err(invalid(
                "secret_key",
                "missing: set PASSGATE_SECRET_KEY (32+ random bytes, base64; e.g. `openssl rand -base64 32`)",
            ));
        }
        let secret_key_previous = self.secret_key_previous.filter(|s| !s.is_empty()).map(SecretString::from);
        for (name, value) in [("secret_key", &secret_key), ("secret_key_previous", &secret_key_previous)] {
            if let Some(v) = value {
                passgate_core::secret::ServerSecret::from_base64(v.expose_secret(), None)
                    .map_err(|e| invalid(name, e.to_string()))?;
            }
        }
        let metrics_text = self.metrics_listen.unwrap_or_else(|| "127.0.0.1:9090".to_string());
        let metrics_listen = match metrics_text.trim() {
            "off" => None,
            text => Some(text.parse().map_err(|_| {
                invalid("metrics_listen", format!("{metrics_text:?} is not an address (IP:port) or \"off\""))
            })?),
        };
        if let Some(addr) = metrics_listen.filter(|a: &SocketAddr| dev && !a.ip().is_loopback()) {
            return Err(invalid("metrics_listen", format!("dev mode only listens on loopback, not {addr}")));
        }
        let outbox_lease = match self.outbox_lease {
            Some(text) => {
                let secs = passgate_core::duration::parse_seconds(&text)
                    .map_err(|e| invalid("outbox_lease", e.to_string()))?;
                if !(1..=3600).contains(&secs) {
                    return Err(invalid("outbox_lease", "must be between 1s and 1h"));
                }
                Duration::from_secs(secs.unsigned_abs())
            }
            None => Duration::from_secs(60),
        };
        let max_connections = match self.database_max_connections {
            Some(text) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| invalid("database_max_connections", format!("{text:?}: a number from 1 to 1000")))?,
            None => 10,
        };
        let acquire_timeout = match self.database_acquire_timeout {
            Some(text) => {
                let secs = passgate_core::duration::parse_seconds(&text)
                    .map_err(|e| invalid("database_acquire_timeout", e.to_string()))?;
                if !(1..=300).contains(&secs) {
                    return Err(invalid("database_acquire_timeout", "must be between 1s and 5m"));
                }
                Duration::from_secs(secs.unsigned_abs())
            }
            None => Duration::from_secs(5),
        };
        let pool = passgate_store_postgres::PoolSettings { max_connections, acquire_timeout };
        let defaults = ConnectionLimits::default();
        let connections = ConnectionLimits {
            header_timeout: seconds_between(
                "http_header_timeout",
                self.http_header_timeout.as_deref(),
                defaults.header_timeout,
                1..=300,
            )?,
            body_timeout: seconds_between(
                "http_body_timeout",
                self.http_body_timeout.as_deref(),
                defaults.body_timeout,
                1..=300,
            )?,
            idle_timeout: seconds_between(
                "http_idle_timeout",
                self.http_idle_timeout.as_deref(),
                defaults.idle_timeout,
                1..=3600,
            )?,
            max_connections: match self.http_max_connections {
                Some(text) => {
                    text.trim().parse::<usize>().ok().filter(|n| (1..=1_000_000).contains(n)).ok_or_else(|| {
                        invalid("http_max_connections", format!("{text:?}: a number from 1 to 1000000"))
                    })?
                }
                None => defaults.max_connections,
            },
        };
        let log_format = match self.log_format.as_deref() {
            None if dev => LogFormat::Pretty,
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(invalid("log_format", format!("{other:?}: use json or pretty")));
            }
        };
        let retention_defaults = crate::sweeper::SweepConfig::default();
        const TEN_YEARS: i64 = 3650 * 24 * 3600;
        let retention = crate::sweeper::SweepConfig {
            retain_logins: seconds_between(
                "retain_logins",
                self.retain_logins.as_deref(),
                retention_defaults.retain_logins,
                60..=TEN_YEARS,
            )?,
            retain_emails: seconds_between(
                "retain_emails",
                self.retain_emails.as_deref(),
                retention_defaults.retain_emails,
                60..=TEN_YEARS,
            )?,
            interval: seconds_between(
                "sweep_interval",
                self.sweep_interval.as_deref(),
                retention_defaults.interval,
                1..=3600,
            )?,
            batch: retention_defaults.batch,
        };
        Ok(Settings {
            database_url,
            listen,
            public_url,
            smtp_url,
            email_from,
            secret_key,
            secret_key_previous,
            metrics_listen,
            dev,
            webhook_allow_private: self.webhook_allow_private.unwrap_or(dev),
            templates_dir: self.templates_dir.map(PathBuf::from),
            smtp_ca_pem: match self.smtp_ca_file {
                Some(path) => Some(std::fs::read(&path).map_err(|e| invalid("smtp_ca_file", format!("{path}: {e}")))?),
                None => None,
            },
            outbox_lease,
            pool,
            log_format,
            log: self.log.unwrap_or_else(|| "info".to_string()),
            connections,
            retention,
            dev_dir,
        })
    }
}

/// A duration setting in seconds (`90s`, `15m`, or a bare number), between
/// the bounds given; `default` when it is not set.
fn seconds_between(
    name: &'static str,
    text: Option<&str>,
    default: Duration,
    bounds: std::ops::RangeInclusive<i64>,
) -> Result<Duration, ConfigError> {
    let Some(text) = text else { return Ok(default) };
    let seconds = passgate_core::duration::parse_seconds(text).map_err(|e| invalid(name, e.to_string()))?;
    if !bounds.contains(&seconds) {
        return Err(invalid(name, format!("must be between {}s and {}s", bounds.start(), bounds.end())));
    }
    Ok(Duration::from_secs(seconds.unsigned_abs()))
}

/// Loads the layers from the real file system and environment.
pub fn load(config_file: Option<&Path>, force_dev: bool, serving: bool) -> Result<Settings, ConfigError> {
    let base = match config_file {
        Some(path) => RawSettings::from_file(path)?,
        None => RawSettings::default(),
    };
    base.overlay_env(|name| std::env::var(name).ok())?.check(force_dev, serving)
}

/// The annotated defaults, printed by `passgate config example`.
pub const EXAMPLE: &str = include_str!("../passgate.example.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SECRET: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_wins_over_the_file() {
        let file: RawSettings = toml::from_str(
            "listen = \"127.0.0.1:7000\"\nsmtp_url = \"smtp://127.0.0.1:25\"\nsecret_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = file
            .overlay_env(env(&[("PASSGATE_LISTEN", "127.0.0.1:7001")]))
            .and_then(|r| r.check(false, true))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.listen.port(), 7001);
        assert_eq!(s.public_url, "http://127.0.0.1:7001");
        assert_eq!(s.database_url, "sqlite://passgate.db");
    }

    /// Retention: the contract's names and defaults, durations with units,
    /// and bounds that refuse a horizon too short to mean anything.
    #[test]
    fn retention_settings_have_their_defaults_and_bounds() {
        let base = [("PASSGATE_SECRET_KEY", SECRET), ("PASSGATE_SMTP_URL", "smtp://127.0.0.1:2525")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            RawSettings::default().overlay_env(env(&pairs)).and_then(|r| r.check(false, true))
        };
        let defaults = with(&[]).unwrap_or_else(|e| panic!("{e}")).retention;
        assert_eq!(defaults.retain_logins, Duration::from_secs(7 * 86_400));
        assert_eq!(defaults.retain_emails, Duration::from_secs(7 * 86_400));
        assert_eq!(defaults.interval, Duration::from_secs(60));
        let set = with(&[
            ("PASSGATE_RETAIN_LOGINS", "2d"),
            ("PASSGATE_RETAIN_EMAILS", "12h"),
            ("PASSGATE_SWEEP_INTERVAL", "10s"),
        ])
        .unwrap_or_else(|e| panic!("{e}"))
        .retention;
        assert_eq!(set.retain_logins, Duration::from_secs(2 * 86_400));
        assert_eq!(set.retain_emails, Duration::from_secs(12 * 3600));
        assert_eq!(set.interval, Duration::from_secs(10));
        for (name, value, setting) in [
            ("PASSGATE_RETAIN_LOGINS", "10s", "retain_logins"),
            ("PASSGATE_RETAIN_EMAILS", "soon", "retain_emails"),
            ("PASSGATE_SWEEP_INTERVAL", "0s", "sweep_interval"),
            ("PASSGATE_SWEEP_INTERVAL", "2h", "sweep_interval"),
        ] {
            let err = with(&[(name, value)]);
            assert!(matches!(&err, Err(ConfigError::Invalid { name: n, .. }) if *n == setting), "{name}={value}");
        }
    }

    /// Webhooks to private addresses and plain http are for development:
    /// on in dev mode unless turned off, off otherwise unless turned on.
    #[test]
    fn private_webhook_addresses_are_allowed_only_when_developing() {
        let serving = [("PASSGATE_SECRET_KEY", SECRET), ("PASSGATE_SMTP_URL", "smtp://127.0.0.1:2525")];
        let settings = |pairs: &[(&str, &str)], dev: bool| {
            RawSettings::default()
                .overlay_env(env(pairs))
                .and_then(|r| r.check(dev, true))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(!settings(&serving, false).webhook_allow_private);
        assert!(settings(&[], true).webhook_allow_private, "passgate dev sets it");
        assert!(!settings(&[("PASSGATE_WEBHOOK_ALLOW_PRIVATE", "0")], true).webhook_allow_private);
        let mut opted_in = serving.to_vec();
        opted_in.push(("PASSGATE_WEBHOOK_ALLOW_PRIVATE", "1"));
        assert!(settings(&opted_in, false).webhook_allow_private);
        let mut wrong = serving.to_vec();
        wrong.push(("PASSGATE_WEBHOOK_ALLOW_PRIVATE", "maybe"));
        assert!(RawSettings::default().overlay_env(env(&wrong)).is_err());
    }

    #[test]
    fn every_interface_needs_a_public_url() {
        let base = [("PASSGATE_SECRET_KEY", SECRET), ("PASSGATE_SMTP_URL", "smtp://127.0.0.1:2525")];
        for any in ["0.0.0.0:8080", "[::]:8080"] {
            let mut pairs = base.to_vec();
            pairs.push(("PASSGATE_LISTEN", any));
            let err = RawSettings::default().overlay_env(env(&pairs)).and_then(|r| r.check(false, true));
            assert!(
                matches!(&err, Err(ConfigError::Invalid { name: "public_url", .. })),
                "{any}: {:?}",
                err.map(|s| s.public_url)
            );
            // The operator commands serve nothing: no issuer to get wrong.
            let admin = RawSettings::default().overlay_env(env(&pairs)).and_then(|r| r.check(false, false));
            assert!(admin.is_ok(), "{any}");
            pairs.push(("PASSGATE_PUBLIC_URL", "https://auth.example.com"));
            let set = RawSettings::default().overlay_env(env(&pairs)).and_then(|r| r.check(false, true));
            assert_eq!(set.map(|s| s.public_url).ok().as_deref(), Some("https://auth.example.com"));
        }
    }

    #[test]
    fn refuses_to_start_without_smtp_or_secret_outside_dev() {
        let err = RawSettings::default()
            .overlay_env(env(&[("PASSGATE_SECRET_KEY", SECRET)]))
            .and_then(|r| r.check(false, true));
        assert!(matches!(err, Err(ConfigError::Invalid { name: "smtp_url", .. })));
        let err = RawSettings::default()
            .overlay_env(env(&[("PASSGATE_SMTP_URL", "smtp://127.0.0.1:2525")]))
            .and_then(|r| r.check(false, true));
        assert!(matches!(err, Err(ConfigError::Invalid { name: "secret_key", .. })));
        let ok = RawSettings::default().check(true, true).unwrap_or_else(|e| panic!("{e}"));
        assert!(ok.dev && ok.smtp_url.is_none());
        assert_eq!(ok.database_url, "sqlite://.passgate/passgate.db");
    }

    #[test]
    fn secrets_can_come_from_files_and_are_redacted() {
        let dir = std::env::temp_dir().join(format!("passgate-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("secret");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap_or_else(|e| panic!("{e}"));
        let s = RawSettings::default()
            .overlay_env(env(&[
                ("PASSGATE_SECRET_KEY_FILE", path.to_str().unwrap_or_default()),
                ("PASSGATE_SMTP_URL", "smtps://user:hunter2@mail.example.com:465"),
            ]))
            .and_then(|r| r.check(false, true))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.secret_key.as_ref().map(|k| k.expose_secret().to_string()).as_deref(), Some(SECRET));
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2") && !debug.contains(SECRET), "{debug}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            ("PASSGATE_LISTEN", "nowhere", "listen"),
            ("PASSGATE_SMTP_URL", "mail.example.com", "smtp_url"),
            ("PASSGATE_SECRET_KEY", "c2hvcnQ=", "secret_key"),
            ("PASSGATE_DEV", "maybe", "PASSGATE_DEV"),
            ("PASSGATE_EMAIL_FROM", "not a mailbox", "email_from"),
            ("PASSGATE_OUTBOX_LEASE", "0s", "outbox_lease"),
            ("PASSGATE_DATABASE_MAX_CONNECTIONS", "0", "database_max_connections"),
            ("PASSGATE_DATABASE_ACQUIRE_TIMEOUT", "forever", "database_acquire_timeout"),
            ("PASSGATE_METRICS_LISTEN", "9090", "metrics_listen"),
        ];
        for (var, value, name) in cases {
            let base = [("PASSGATE_SMTP_URL", "smtp://127.0.0.1:2525"), ("PASSGATE_SECRET_KEY", SECRET), (var, value)];
            let err = RawSettings::default().overlay_env(env(&base)).and_then(|r| r.check(false, true));
            match err {
                Err(ConfigError::Invalid { name: got, .. }) => {
                    assert_eq!(got, name, "{var}={value}")
                }
                other => panic!("{var}={value}: expected an error naming {name}, got {other:?}"),
            }
        }
        let dev_public = RawSettings::default()
            .overlay_env(env(&[("PASSGATE_LISTEN", "0.0.0.0:8080")]))
            .and_then(|r| r.check(true, true));
        assert!(matches!(dev_public, Err(ConfigError::Invalid { name: "listen", .. })));
        let dev_public_metrics = RawSettings::default()
            .overlay_env(env(&[("PASSGATE_METRICS_LISTEN", "0.0.0.0:9090")]))
            .and_then(|r| r.check(true, true));
        assert!(matches!(dev_public_metrics, Err(ConfigError::Invalid { name: "metrics_listen", .. })));
    }

    #[test]
    fn the_metrics_listener_defaults_to_loopback_and_can_be_turned_off() {
        let default = RawSettings::default().check(true, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(default.metrics_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9090))));
        let off = RawSettings::default()
            .overlay_env(env(&[("PASSGATE_METRICS_LISTEN", "off")]))
            .and_then(|r| r.check(true, true))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(off.metrics_listen, None);
    }

    #[test]
    fn numbers_may_be_written_bare_in_the_file() {
        let raw: RawSettings = toml::from_str("database_max_connections = 25").unwrap_or_else(|e| panic!("{e}"));
        let s = raw.check(true, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.pool.max_connections, 25);
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        assert!(toml::from_str::<RawSettings>("listn = \"x\"").is_err());
    }

    #[test]
    fn the_example_file_parses() {
        let raw: RawSettings = toml::from_str(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
        assert!(raw.overlay_env(|_| None).is_ok());
        // Every setting, commented out, is in it: uncommented, it still parses.
        let uncommented: String = EXAMPLE
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let all: RawSettings = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}"));
        assert!(all.retain_logins.is_some() && all.sweep_interval.is_some() && all.webhook_allow_private.is_some());
    }
}

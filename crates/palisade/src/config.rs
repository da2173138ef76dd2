//! Configuration (PLT-3): defaults, then `palisade.toml`, then `PALISADE_*` environment
//! variables, then flags. Unknown keys are errors. Secrets print as `****`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use palisade_core::accounts::policy::AccountPolicy;
use palisade_core::limits::LimitsConfig;
use palisade_worker::mail::SmtpSecurity;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

fn mask<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_some("****"),
        None => s.serialize_none(),
    }
}

fn mask_all<S: Serializer>(value: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(value.iter().map(|_| "****"))
}

/// A database URL prints with its password masked.
fn mask_url<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        None => s.serialize_none(),
        Some(url) => match url::Url::parse(url.expose_secret()) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("****"));
                s.serialize_some(u.as_str())
            }
            Ok(u) => s.serialize_some(u.as_str()),
            Err(_) => s.serialize_some("****"),
        },
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Where the embedded SQLite database (and the development master key) live.
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// `postgres://…` to run on PostgreSQL; absent = SQLite in `data_dir`.
    #[serde(default, serialize_with = "mask_url")]
    pub database_url: Option<SecretString>,
    /// The active master key, base64 (32 bytes). Takes precedence over `master_key_file`.
    #[serde(default, serialize_with = "mask")]
    pub master_key: Option<SecretString>,
    /// A file holding the active master key (base64).
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    /// Older master keys, still used to unwrap data keys they wrapped.
    #[serde(default, serialize_with = "mask_all")]
    pub retired_master_keys: Vec<SecretString>,
    /// Public base URL; defaults to `http(s)://<listen>`.
    #[serde(default)]
    pub public_url: Option<url::Url>,
    /// PEM certificate chain and key: serve TLS 1.2+ (rustls).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Emails of instance administrators.
    #[serde(default)]
    pub admins: Vec<String>,
    /// `Contact:` for `/.well-known/security.txt` (mailto: or https: URI).
    #[serde(default)]
    pub security_contact: Option<String>,
    /// Largest accepted request body, in bytes.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// Access-token lifetime, seconds.
    #[serde(default = "defaults::access_token_ttl")]
    pub access_token_ttl_secs: u32,
    /// Session (refresh-token family) lifetime, seconds.
    #[serde(default = "defaults::refresh_token_ttl")]
    pub refresh_token_ttl_secs: u32,
    /// Shortest time between two `latest` checkpoints of one audit log (AUDIT-SPEC §4).
    #[serde(default = "defaults::checkpoint_interval")]
    pub audit_checkpoint_interval_secs: u32,
    /// How often API keys' `last_used_at` is written: at most once per interval per key.
    #[serde(default = "defaults::api_key_usage_flush")]
    pub api_key_usage_flush_secs: u32,
    /// Regions a workspace may live in: a list (`["eu", "us"]`, the first is the default), or
    /// a table with each region's own master keys (`[regions.us] master_key_file = …`; mark
    /// the default with `default = true` when there are several). A region without keys of
    /// its own uses the top-level ones.
    #[serde(default = "defaults::regions")]
    pub regions: Regions,
    /// Data-key rotation (KMS-3).
    #[serde(default)]
    pub keys: KeysConfig,
    /// Webhook delivery (WHK-4, WHK-5).
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Rate limits and quotas (RTL-2): `[rate_limits.auth]`, `[rate_limits.plans.<plan>]`,
    /// `[rate_limits.workspaces."<workspace id>"]`; rates are written `10/15m`.
    #[serde(default)]
    pub rate_limits: LimitsConfig,
    /// Sign-up mode, email verification, lockout and emailed-secret lifetimes (IDN-1 … IDN-4).
    #[serde(default)]
    pub accounts: AccountPolicy,
    /// Outgoing email (IDN-10): SMTP, or `.eml` files in `<data_dir>/outbox/` when no SMTP is
    /// configured.
    #[serde(default)]
    pub email: EmailConfig,
}

/// `regions`: names only, or names with their master keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Regions {
    Names(Vec<String>),
    Keyed(std::collections::BTreeMap<String, RegionConfig>),
}

/// One region's master keys (GDP-4, KMS-1): a workspace in the region has its data keys
/// wrapped by them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// The region new workspaces get (with several regions, exactly one says so).
    #[serde(default)]
    pub default: bool,
    /// The region's active master key, base64 (better from `PALISADE_MASTER_KEY_<REGION>`).
    #[serde(default, serialize_with = "mask")]
    pub master_key: Option<SecretString>,
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    #[serde(default, serialize_with = "mask_all")]
    pub retired_master_keys: Vec<SecretString>,
}

impl Regions {
    /// The names, the default first.
    pub fn names(&self) -> anyhow::Result<Vec<String>> {
        match self {
            Regions::Names(names) => Ok(names.clone()),
            Regions::Keyed(table) => {
                let defaults: Vec<&String> = table
                    .iter()
                    .filter(|(_, r)| r.default)
                    .map(|(n, _)| n)
                    .collect();
                let first = match (defaults.as_slice(), table.len()) {
                    ([one], _) => (*one).clone(),
                    ([], 1) => table.keys().next().cloned().unwrap_or_default(),
                    ([], _) => {
                        anyhow::bail!("regions: mark the default region with `default = true`")
                    }
                    _ => anyhow::bail!("regions: only one region may be the default"),
                };
                Ok(std::iter::once(first.clone())
                    .chain(table.keys().filter(|n| **n != first).cloned())
                    .collect())
            }
        }
    }

    /// The regions that have master keys of their own.
    pub fn keyed(&self) -> impl Iterator<Item = (&String, &RegionConfig)> {
        match self {
            Regions::Names(_) => None,
            Regions::Keyed(table) => Some(table.iter()),
        }
        .into_iter()
        .flatten()
    }
}

/// `[keys]`: data-key rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Rotate every data key older than this many days (the worker starts it); 0: never.
    pub rotation_days: u32,
    /// Seconds a new data-key version waits before sealing anything, so every node has
    /// loaded it first (nodes reload keys every 5 s).
    pub propagation_secs: u32,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            rotation_days: 90,
            propagation_secs: 30,
        }
    }
}

/// `[webhooks]`: delivery, retries and the SSRF allow-list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// CIDRs webhook targets may be in although they are private, loopback or link-local
    /// (e.g. `["10.20.0.0/16"]`); everything else non-public is refused. Also
    /// `PALISADE_WEBHOOK_ALLOW_CIDRS` (comma-separated).
    pub allow_cidrs: Vec<String>,
    /// Seconds one delivery attempt may take, connection included.
    pub timeout_secs: u32,
    /// Seconds to wait before the 2nd, 3rd, … attempt (each ±10 % jitter); after the last
    /// retry fails the delivery is `failed`.
    pub retry_schedule_secs: Vec<u64>,
    /// An endpoint failing without a success for this long is disabled (and its workspace's
    /// owners and admins emailed).
    pub disable_after_hours: u32,
    /// Hours the secret before a rotation keeps signing alongside the new one.
    pub secret_overlap_hours: u32,
    /// Days settled events and their delivery history are kept.
    pub retention_days: u32,
    /// Deliveries in flight at once on this node; 0: this node delivers nothing (an API-only
    /// node beside others that deliver).
    pub concurrency: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_cidrs: Vec::new(),
            timeout_secs: 15,
            retry_schedule_secs: vec![5, 300, 1_800, 7_200, 18_000, 36_000, 36_000],
            disable_after_hours: 120,
            secret_overlap_hours: 24,
            retention_days: 30,
            concurrency: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// The `From` of every message.
    pub from: String,
    /// The name messages are signed with.
    pub product_name: String,
    /// The base of emailed links (`<base>/auth/magic#token=…`): defaults to the public URL;
    /// point it at your application to serve those pages yourself.
    pub link_base_url: Option<url::Url>,
    /// Where the built-in magic-link page sends the browser after signing in, tokens in the
    /// fragment; none: the page says the user is signed in.
    pub after_sign_in_url: Option<url::Url>,
    pub smtp: Option<SmtpConfig>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            from: "Palisade <no-reply@localhost>".to_owned(),
            product_name: "Palisade".to_owned(),
            link_base_url: None,
            after_sign_in_url: None,
            smtp: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (required, no downgrade), `tls` (implicit TLS) or `none` (a local relay only).
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    /// Better from `PALISADE_SMTP_PASSWORD`.
    #[serde(default, serialize_with = "mask")]
    pub password: Option<SecretString>,
    #[serde(default = "defaults::smtp_timeout")]
    pub timeout_secs: u32,
}

mod defaults {
    use super::*;
    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn data_dir() -> PathBuf {
        PathBuf::from("./palisade-data")
    }
    pub fn max_body_bytes() -> usize {
        1024 * 1024
    }
    pub fn access_token_ttl() -> u32 {
        15 * 60
    }
    pub fn api_key_usage_flush() -> u32 {
        60
    }

    pub fn checkpoint_interval() -> u32 {
        60
    }
    pub fn refresh_token_ttl() -> u32 {
        30 * 24 * 3600
    }
    pub fn regions() -> Regions {
        Regions::Names(vec!["eu".to_owned()])
    }
    pub fn smtp_timeout() -> u32 {
        30
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            data_dir: defaults::data_dir(),
            database_url: None,
            master_key: None,
            master_key_file: None,
            retired_master_keys: Vec::new(),
            public_url: None,
            tls_cert: None,
            tls_key: None,
            admins: Vec::new(),
            security_contact: None,
            max_body_bytes: defaults::max_body_bytes(),
            access_token_ttl_secs: defaults::access_token_ttl(),
            refresh_token_ttl_secs: defaults::refresh_token_ttl(),
            audit_checkpoint_interval_secs: defaults::checkpoint_interval(),
            api_key_usage_flush_secs: defaults::api_key_usage_flush(),
            regions: defaults::regions(),
            keys: KeysConfig::default(),
            webhooks: WebhooksConfig::default(),
            log_format: LogFormat::Text,
            rate_limits: LimitsConfig::default(),
            accounts: AccountPolicy::default(),
            email: EmailConfig::default(),
        }
    }
}

/// Values from the environment or the command line; `Some` overrides the file.
#[derive(Debug, Default, clap::Args)]
pub struct Overrides {
    /// Configuration file [default: ./palisade.toml if it exists].
    #[arg(long, env = "PALISADE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[arg(long, env = "PALISADE_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "PALISADE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    #[arg(
        long,
        env = "PALISADE_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    #[arg(long, env = "PALISADE_MASTER_KEY_FILE", global = true)]
    pub master_key_file: Option<PathBuf>,
    #[arg(long, env = "PALISADE_PUBLIC_URL", global = true)]
    pub public_url: Option<url::Url>,
    #[arg(long, env = "PALISADE_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "PALISADE_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Comma-separated instance administrator emails.
    #[arg(long, env = "PALISADE_ADMINS", value_delimiter = ',', global = true)]
    pub admins: Option<Vec<String>>,
    #[arg(long, env = "PALISADE_SECURITY_CONTACT", global = true)]
    pub security_contact: Option<String>,
    /// Comma-separated CIDRs webhooks may reach although non-public (e.g. `127.0.0.1/32`).
    #[arg(
        long,
        env = "PALISADE_WEBHOOK_ALLOW_CIDRS",
        value_delimiter = ',',
        global = true
    )]
    pub webhook_allow_cidrs: Option<Vec<String>>,
    #[arg(long, env = "PALISADE_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
}

/// Secrets read only from the environment, never from a flag (a flag shows in `ps`).
#[derive(Debug, Default)]
pub struct SecretEnv {
    /// `PALISADE_MASTER_KEY`.
    pub master_key: Option<String>,
    /// `PALISADE_RETIRED_MASTER_KEYS`: comma-separated.
    pub retired_master_keys: Option<String>,
    /// `PALISADE_MASTER_KEY_<REGION>` (the region's name uppercased, `-` as `_`).
    pub region_master_keys: Vec<(String, String)>,
    /// `PALISADE_SMTP_PASSWORD`.
    pub smtp_password: Option<String>,
}

impl SecretEnv {
    pub fn from_process() -> Self {
        Self {
            master_key: std::env::var("PALISADE_MASTER_KEY").ok(),
            retired_master_keys: std::env::var("PALISADE_RETIRED_MASTER_KEYS").ok(),
            region_master_keys: std::env::vars()
                .filter_map(|(k, v)| {
                    k.strip_prefix("PALISADE_MASTER_KEY_")
                        .filter(|r| *r != "FILE")
                        .map(|r| (r.to_owned(), v))
                })
                .collect(),
            smtp_password: std::env::var("PALISADE_SMTP_PASSWORD").ok(),
        }
    }
}

/// `PALISADE_MASTER_KEY_<REGION>`'s suffix for a region name.
pub fn region_env_suffix(region: &str) -> String {
    region.to_uppercase().replace('-', "_")
}

impl Config {
    /// Defaults → file → environment → flags. The master key and the SMTP password are read
    /// only from the environment or the file, never from a flag (it would show in `ps`).
    pub fn load(overrides: Overrides, secrets: SecretEnv) -> anyhow::Result<Self> {
        let path = overrides
            .config
            .clone()
            .or_else(|| Some(PathBuf::from("palisade.toml")).filter(|p| p.exists()));
        let mut config = match &path {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        let o = overrides;
        if let Some(v) = o.listen {
            config.listen = v;
        }
        if let Some(v) = o.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = o.database_url {
            config.database_url = Some(SecretString::from(v));
        }
        if let Some(v) = o.master_key_file {
            config.master_key_file = Some(v);
        }
        if let Some(v) = o.public_url {
            config.public_url = Some(v);
        }
        if let Some(v) = o.tls_cert {
            config.tls_cert = Some(v);
        }
        if let Some(v) = o.tls_key {
            config.tls_key = Some(v);
        }
        if let Some(v) = o.admins {
            config.admins = v;
        }
        if let Some(v) = o.security_contact {
            config.security_contact = Some(v);
        }
        if let Some(v) = o.webhook_allow_cidrs {
            config.webhooks.allow_cidrs = v;
        }
        if let Some(v) = o.log_format {
            config.log_format = v;
        }
        if let Some(v) = secrets.master_key.filter(|v| !v.is_empty()) {
            config.master_key = Some(SecretString::from(v));
        }
        if let Some(v) = secrets.retired_master_keys.filter(|v| !v.trim().is_empty()) {
            config.retired_master_keys = v
                .split(',')
                .map(|k| SecretString::from(k.trim().to_owned()))
                .collect();
        }
        for (suffix, key) in secrets.region_master_keys {
            if key.is_empty() {
                continue;
            }
            let Regions::Keyed(table) = &mut config.regions else {
                anyhow::bail!(
                    "PALISADE_MASTER_KEY_{suffix} is set, but `regions` is a list: declare the region as a table ([regions.<name>])"
                );
            };
            let region = table
                .iter_mut()
                .find(|(name, _)| region_env_suffix(name) == suffix)
                .map(|(_, r)| r)
                .ok_or_else(|| {
                    anyhow::anyhow!("PALISADE_MASTER_KEY_{suffix} names no configured region")
                })?;
            region.master_key = Some(SecretString::from(key));
        }
        if let (Some(smtp), Some(v)) = (
            config.email.smtp.as_mut(),
            secrets.smtp_password.filter(|v| !v.is_empty()),
        ) {
            smtp.password = Some(SecretString::from(v));
        }
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("invalid configuration file {}", path.display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key must be given together");
        }
        if self.regions.names()?.is_empty() {
            anyhow::bail!("regions must name at least one region");
        }
        if self.keys.propagation_secs > 3600 {
            anyhow::bail!("keys.propagation_secs must be at most 3600");
        }
        if !(60..=86_400).contains(&self.access_token_ttl_secs) {
            anyhow::bail!("access_token_ttl_secs must be between 60 and 86400");
        }
        if self.api_key_usage_flush_secs == 0 {
            anyhow::bail!("api_key_usage_flush_secs must be at least 1");
        }
        if self.audit_checkpoint_interval_secs == 0 {
            anyhow::bail!("audit_checkpoint_interval_secs must be at least 1");
        }
        if self.refresh_token_ttl_secs < self.access_token_ttl_secs {
            anyhow::bail!("refresh_token_ttl_secs must not be shorter than access_token_ttl_secs");
        }
        self.rate_limits.validate().map_err(anyhow::Error::msg)?;
        self.accounts.validate().map_err(anyhow::Error::msg)?;
        if let Some(smtp) = &self.email.smtp {
            if smtp.host.trim().is_empty() {
                anyhow::bail!("email.smtp.host must not be empty");
            }
            if !(1..=600).contains(&smtp.timeout_secs) {
                anyhow::bail!("email.smtp.timeout_secs must be between 1 and 600");
            }
        }
        if let Some(c) = &self.security_contact
            && !(c.starts_with("mailto:") || c.starts_with("https://"))
        {
            anyhow::bail!("security_contact must be a mailto: or https: URI");
        }
        Ok(())
    }

    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// The configured public URL, or `http(s)://<listen>/`.
    pub fn effective_public_url(&self) -> anyhow::Result<url::Url> {
        if let Some(u) = &self.public_url {
            return Ok(u.clone());
        }
        let scheme = if self.tls() { "https" } else { "http" };
        url::Url::parse(&format!("{scheme}://{}/", self.listen))
            .context("deriving the public URL from listen")
    }

    /// `sqlite:<data_dir>/palisade.db` unless a database URL is configured.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!("sqlite:{}", self.data_dir.join("palisade.db").display()),
        }
    }

    /// The effective configuration as TOML, secrets masked (`palisade config check`).
    pub fn render_masked(&self) -> anyhow::Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<Config>("listen = \"127.0.0.1:9000\"\nlisten_port = 1\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn flags_override_the_file_and_secrets_are_masked() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("palisade.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\ndatabase_url = \"postgres://app:s3cret-pw@db.internal/palisade\"\nadmins = [\"ops@example.com\"]\n[email.smtp]\nhost = \"smtp.example.com\"\nusername = \"palisade\"\n",
        )?;
        let overrides = Overrides {
            config: Some(file),
            listen: Some("127.0.0.1:9100".parse()?),
            ..Overrides::default()
        };
        let config = Config::load(
            overrides,
            SecretEnv {
                master_key: Some("c2VjcmV0LW1hc3Rlci1rZXktYmFzZTY0LXZhbHVlISE=".into()),
                smtp_password: Some("smtp-pw-from-env".into()),
                ..SecretEnv::default()
            },
        )?;
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.admins, ["ops@example.com"]);
        let shown = config.render_masked()?;
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(
            shown.contains("postgres://app:****@db.internal/palisade"),
            "{shown}"
        );
        assert!(shown.contains("master_key = \"****\""), "{shown}");
        assert!(!shown.contains("smtp-pw-from-env"), "{shown}");
        assert_eq!(
            config
                .email
                .smtp
                .as_ref()
                .and_then(|s| s.password.as_ref())
                .map(|p| p.expose_secret().to_owned())
                .as_deref(),
            Some("smtp-pw-from-env")
        );
        Ok(())
    }

    #[test]
    fn regions_are_a_list_or_a_table_with_their_own_master_keys() -> anyhow::Result<()> {
        let list: Config = toml::from_str("regions = [\"eu\", \"us\"]\n")?;
        assert_eq!(list.regions.names()?, ["eu", "us"]);
        let table: Config = toml::from_str(
            "[regions.eu]\n[regions.us]\ndefault = true\nmaster_key = \"c2VjcmV0LW1hc3Rlci1rZXktYmFzZTY0LXZhbHVlISE=\"\n",
        )?;
        assert_eq!(table.regions.names()?, ["us", "eu"]);
        assert!(!table.render_masked()?.contains("c2VjcmV0"));
        let keyed: Vec<&String> = table.regions.keyed().map(|(n, _)| n).collect();
        assert_eq!(keyed, ["eu", "us"]);
        let ambiguous: Config = toml::from_str("[regions.eu]\n[regions.us]\n")?;
        assert!(
            ambiguous.regions.names().is_err(),
            "two regions, no default"
        );
        // A region's key from the environment, by its uppercased name.
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("palisade.toml");
        std::fs::write(&file, "[regions.eu]\n[regions.us-east]\ndefault = true\n")?;
        let config = Config::load(
            Overrides {
                config: Some(file.clone()),
                ..Overrides::default()
            },
            SecretEnv {
                region_master_keys: vec![("US_EAST".into(), "a2V5".into())],
                retired_master_keys: Some("b2xkMQ==, b2xkMg==".into()),
                ..SecretEnv::default()
            },
        )?;
        let us = config
            .regions
            .keyed()
            .find(|(n, _)| *n == "us-east")
            .map(|(_, r)| r);
        assert!(us.and_then(|r| r.master_key.as_ref()).is_some());
        assert_eq!(config.retired_master_keys.len(), 2);
        let unknown = Config::load(
            Overrides {
                config: Some(file),
                ..Overrides::default()
            },
            SecretEnv {
                region_master_keys: vec![("APAC".into(), "a2V5".into())],
                ..SecretEnv::default()
            },
        );
        assert!(
            unknown.is_err(),
            "a key for no configured region is refused"
        );
        Ok(())
    }

    #[test]
    fn defaults_are_zero_config() {
        let parsed: Config = toml::from_str("").expect("empty file");
        assert_eq!(
            parsed.render_masked().ok(),
            Config::default().render_masked().ok()
        );
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            c.effective_database_url(),
            "sqlite:./palisade-data/palisade.db"
        );
        assert_eq!(c.max_body_bytes, 1024 * 1024);
    }
}

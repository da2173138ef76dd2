//! The `palisade` binary's library half: configuration, key material, wiring, and
//! [`run`], which serves on a bound listener until `shutdown` resolves (tests use it directly).

pub mod backup;
pub mod config;
pub mod keys;
pub mod keys_cli;
pub mod verify;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use palisade_api::{ApiSettings, AppState};
use palisade_core::clock::Clock;
use palisade_core::crypto::password::Passwords;
use palisade_core::crypto::tokens::AccessTokens;
use palisade_core::keys::{Vault, load_access_token_key};
use palisade_core::mail::templates::Brand;
use palisade_core::mail::{Mailer, Outbox};
use palisade_core::webhooks::service::WebhookSettings;
use palisade_core::{Services, Settings};
use palisade_store::Migrations;
use palisade_worker::mail::{FileOutbox, SmtpMailer, SmtpSettings};
use palisade_worker::webhooks::client::{ClientConfig, TargetPolicy, WebhookClient};
use palisade_worker::webhooks::dispatch::{DispatchConfig, run_webhooks};

pub use config::Config;

/// The real clock. `core` never reads it itself; it is injected here.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

/// The audit-log origin prefix: the public URL without scheme or trailing slash
/// (`audit.example.com`, `127.0.0.1:8080`, `example.com/palisade`).
pub fn public_host(url: &url::Url) -> String {
    let mut host = url.host_str().unwrap_or("localhost").to_owned();
    if let Some(port) = url.port() {
        host.push_str(&format!(":{port}"));
    }
    host.push_str(url.path().trim_end_matches('/'));
    host
}

/// Logs to stderr, filtered by `PALISADE_LOG` or else `default_filter` (`serve`: `info,sqlx=warn`;
/// `backup`, which prints what it did: `warn`).
pub fn init_logging(format: config::LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}

/// Resolves on Ctrl-C or SIGTERM: how `serve` stops gracefully and `backup` cleans up.
pub async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}

/// Opens the database (applying migrations), loads keys and builds the services.
pub async fn build(config: &Config) -> anyhow::Result<AppState> {
    build_with_clock(config, Arc::new(SystemClock)).await
}

/// [`build`] with another clock (tests drive time through it).
pub async fn build_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    let store = palisade_store::open(&config.effective_database_url(), Migrations::Apply).await?;
    tracing::info!(backend = store.backend(), "database ready");
    let in_use: Vec<String> = palisade_core::keys::master_ids_in_use(&*store)
        .await?
        .into_iter()
        .collect();
    let masters = keys::master_keys(config, &in_use)?;
    let vault = Arc::new(Vault::load(&*store, masters, clock.now()).await?);
    let access_token = load_access_token_key(&*store, &vault, clock.now()).await?;
    let public_url = config.effective_public_url()?;
    let tokens = AccessTokens::new(
        &access_token,
        public_url.as_str().trim_end_matches('/').to_owned(),
        time::Duration::seconds(i64::from(config.access_token_ttl_secs)),
    )?;
    let outbox = Outbox::new(mailer(config)?);
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let passwords = Passwords::new(cores).await?;
    let settings = Settings {
        refresh_ttl: time::Duration::seconds(i64::from(config.refresh_token_ttl_secs)),
        admins: config
            .admins
            .iter()
            .map(|a| a.trim().to_lowercase())
            .collect(),
        regions: config.regions.names()?,
        public_host: public_host(&public_url),
        checkpoint_interval: time::Duration::seconds(i64::from(
            config.audit_checkpoint_interval_secs,
        )),
        limits: config.rate_limits.clone(),
        accounts: config.accounts.clone(),
        link_base: config
            .email
            .link_base_url
            .clone()
            .unwrap_or_else(|| public_url.clone()),
        brand: Brand::instance(&config.email.product_name),
        key_propagation: time::Duration::seconds(i64::from(config.keys.propagation_secs)),
        data_key_max_age: (config.keys.rotation_days > 0)
            .then(|| time::Duration::days(i64::from(config.keys.rotation_days))),
        webhooks: webhook_settings(config)?,
    };
    let services = Services::new(store, clock, passwords, tokens, vault, outbox, settings);
    services.ensure_instance_log().await?;
    let security_contact = config.security_contact.clone().unwrap_or_else(|| {
        format!(
            "mailto:security@{}",
            public_url.host_str().unwrap_or("localhost")
        )
    });
    let api = ApiSettings {
        hsts: config.tls() || public_url.scheme() == "https",
        public_url,
        security_contact,
        max_body_bytes: config.max_body_bytes,
        after_sign_in_url: config.email.after_sign_in_url.clone(),
    };
    Ok(AppState {
        services,
        settings: Arc::new(api),
    })
}

/// Which non-public targets webhooks may reach (`webhooks.allow_cidrs`).
pub fn webhook_policy(config: &Config) -> anyhow::Result<TargetPolicy> {
    let allow = config
        .webhooks
        .allow_cidrs
        .iter()
        .map(|text| {
            let text = text.trim();
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .with_context(|| format!("webhooks.allow_cidrs: {text:?} is not a CIDR"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(TargetPolicy { allow })
}

fn webhook_settings(config: &Config) -> anyhow::Result<WebhookSettings> {
    let w = &config.webhooks;
    anyhow::ensure!(
        (1..=300).contains(&w.timeout_secs),
        "webhooks.timeout_secs must be from 1 to 300"
    );
    anyhow::ensure!(
        w.retry_schedule_secs.len() <= 50 && w.retry_schedule_secs.iter().all(|&s| s <= 2_592_000),
        "webhooks.retry_schedule_secs: at most 50 waits, each at most 2592000 (30 days)"
    );
    let seconds = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
    Ok(WebhookSettings {
        retry_schedule: w.retry_schedule_secs.iter().copied().map(seconds).collect(),
        disable_after: time::Duration::hours(i64::from(w.disable_after_hours)),
        secret_overlap: time::Duration::hours(i64::from(w.secret_overlap_hours)),
        retention: time::Duration::days(i64::from(w.retention_days)),
        targets: Arc::new(webhook_policy(config)?),
    })
}

fn webhook_client(config: &Config) -> anyhow::Result<WebhookClient> {
    WebhookClient::new(ClientConfig {
        policy: webhook_policy(config)?,
        timeout: std::time::Duration::from_secs(u64::from(config.webhooks.timeout_secs)),
        user_agent: format!("Palisade-Webhooks/{}", env!("CARGO_PKG_VERSION")),
    })
    .context("building the webhook client")
}

/// SMTP when configured, else `.eml` files in `<data_dir>/outbox/`.
fn mailer(config: &Config) -> anyhow::Result<Arc<dyn Mailer>> {
    let from = &config.email.from;
    match &config.email.smtp {
        Some(smtp) => {
            let mailer = SmtpMailer::new(SmtpSettings {
                host: smtp.host.clone(),
                port: smtp.port,
                security: smtp.security,
                username: smtp.username.clone(),
                password: smtp.password.clone(),
                from: from.clone(),
                timeout: std::time::Duration::from_secs(u64::from(smtp.timeout_secs)),
            })
            .map_err(|e| anyhow::anyhow!("email.smtp: {e}"))?;
            tracing::info!(relay = %mailer.relay(), security = ?smtp.security, "email: SMTP");
            Ok(Arc::new(mailer))
        }
        None => {
            let dir = config.data_dir.join("outbox");
            let outbox =
                FileOutbox::new(&dir, from).map_err(|e| anyhow::anyhow!("email.from: {e}"))?;
            tracing::info!(dir = %dir.display(), "email: no SMTP configured; messages are written to the outbox");
            Ok(Arc::new(outbox))
        }
    }
}

/// Serves Palisade on `listener` until `shutdown` completes; TLS when the config has a
/// certificate. Everything the server needs is opened before the first request is accepted.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (ready, _) = tokio::sync::oneshot::channel();
    run_reporting(config, listener, shutdown, ready).await
}

/// [`run`], handing the built state to `ready` before serving (tests read counters from it).
pub async fn run_reporting(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: tokio::sync::oneshot::Sender<AppState>,
) -> anyhow::Result<()> {
    run_with_clock(config, listener, shutdown, ready, Arc::new(SystemClock)).await
}

/// [`run_reporting`] on another clock (tests move time through it).
pub async fn run_with_clock(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: tokio::sync::oneshot::Sender<AppState>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let state = build_with_clock(&config, clock).await?;
    let _ = ready.send(state.clone());
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(palisade_worker::run_checkpoints(
        state.services.clone(),
        std::time::Duration::from_secs(u64::from(config.audit_checkpoint_interval_secs)),
        async move {
            let _ = worker_stopped.await;
        },
    ));
    let (stop_limits, limits_stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = tokio::spawn(palisade_worker::run_limits(
        state.services.clone(),
        async move {
            let _ = limits_stopped.await;
        },
    ));
    let (stop_keys, keys_stopped) = tokio::sync::oneshot::channel::<()>();
    let api_keys = tokio::spawn(palisade_worker::run_api_keys(
        state.services.clone(),
        std::time::Duration::from_secs(u64::from(config.api_key_usage_flush_secs)),
        async move {
            let _ = keys_stopped.await;
        },
    ));
    let (stop_rotation, rotation_stopped) = tokio::sync::oneshot::channel::<()>();
    let rotation = tokio::spawn(palisade_worker::run_key_rotations(
        state.services.clone(),
        async move {
            let _ = rotation_stopped.await;
        },
    ));
    let (stop_webhooks, webhooks_stopped) = tokio::sync::oneshot::channel::<()>();
    let client = webhook_client(&config)?;
    let dispatch = DispatchConfig {
        concurrency: usize::try_from(config.webhooks.concurrency).unwrap_or(64),
        ..DispatchConfig::for_timeout(std::time::Duration::from_secs(u64::from(
            config.webhooks.timeout_secs,
        )))
    };
    // `webhooks.concurrency = 0`: this node serves the API only; others deliver.
    let webhooks = (dispatch.concurrency > 0).then(|| {
        tokio::spawn(run_webhooks(
            state.services.clone(),
            client,
            dispatch,
            async move {
                let _ = webhooks_stopped.await;
            },
        ))
    });
    let outbox = state.services.outbox().clone();
    let app = palisade_api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let addr = listener.local_addr()?;
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = keys::tls_config(cert, key)?;
            let handle = axum_server::Handle::<SocketAddr>::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            tracing::info!(%addr, "listening (TLS 1.2+)");
            axum_server::from_tcp_rustls(
                listener.into_std()?,
                axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
            )?
            .handle(handle)
            .serve(app)
            .await
            .context("serving TLS")?;
        }
        _ => {
            tracing::info!(%addr, "listening");
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .context("serving HTTP")?;
        }
    }
    let _ = stop_worker.send(());
    let _ = stop_limits.send(());
    let _ = stop_keys.send(());
    let _ = stop_rotation.send(());
    let _ = stop_webhooks.send(());
    let _ = worker.await;
    if let Some(webhooks) = webhooks {
        let _ = webhooks.await;
    }
    let _ = rotation.await;
    let _ = limits.await;
    let _ = api_keys.await;
    outbox.drain(std::time::Duration::from_secs(10)).await;
    Ok(())
}

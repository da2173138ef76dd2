//! Key material from outside the database: the master keys (environment, file, or a development
//! key file generated on first start) and the TLS certificate.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use std::collections::BTreeMap;

use palisade_core::crypto::envelope::{Keyring, SymmetricKey};
use palisade_core::keys::MasterKeys;
use rustls::crypto::aws_lc_rs;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};

use crate::Config;

/// The configured master keys: the top-level set, and each region's own. With none configured,
/// the development key file beside the database is used, created on first start — but only
/// while the database holds no data keys (`wrapping`: the master key ids that wrap the stored
/// ones), so a lost key is never silently replaced by a new one.
pub fn master_keys(config: &Config, wrapping: &[String]) -> anyhow::Result<MasterKeys> {
    let default = keyring(
        "",
        config.master_key.as_ref(),
        config.master_key_file.as_deref(),
        &config.retired_master_keys,
    )?;
    let default = match default {
        Some(ring) => ring,
        None => {
            let path = config.data_dir.join("master.key");
            if !path.exists() && !wrapping.is_empty() {
                anyhow::bail!(
                    "no master key is configured and {} does not exist, but the database's data keys are wrapped by master key {}: \
                     supply it as PALISADE_MASTER_KEY or master_key_file",
                    path.display(),
                    wrapping.join(", ")
                );
            }
            Keyring::new(
                development_key(&path)?,
                retired(&config.retired_master_keys, "")?,
            )
        }
    };
    let mut regions = BTreeMap::new();
    for (name, region) in config.regions.keyed() {
        let prefix = format!("regions.{name}.");
        if let Some(ring) = keyring(
            &prefix,
            region.master_key.as_ref(),
            region.master_key_file.as_deref(),
            &region.retired_master_keys,
        )? {
            regions.insert(name.clone(), ring);
        } else if !region.retired_master_keys.is_empty() {
            anyhow::bail!(
                "{prefix}retired_master_keys needs {prefix}master_key or master_key_file"
            );
        }
    }
    Ok(MasterKeys::new(default, regions))
}

/// One keyring from configuration; `None` if it names no active key.
fn keyring(
    prefix: &str,
    key: Option<&SecretString>,
    file: Option<&Path>,
    retired_keys: &[SecretString],
) -> anyhow::Result<Option<Keyring>> {
    let active = match (key, file) {
        (Some(key), _) => SymmetricKey::master_from_base64(key.expose_secret())
            .with_context(|| format!("{prefix}master_key (PALISADE_MASTER_KEY)"))?,
        (None, Some(path)) => read_key_file(path)?,
        (None, None) => return Ok(None),
    };
    Ok(Some(Keyring::new(active, retired(retired_keys, prefix)?)))
}

fn retired(keys: &[SecretString], prefix: &str) -> anyhow::Result<Vec<SymmetricKey>> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            SymmetricKey::master_from_base64(k.expose_secret())
                .with_context(|| format!("{prefix}retired_master_keys[{i}]"))
        })
        .collect()
}

fn read_key_file(path: &Path) -> anyhow::Result<SymmetricKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading master key file {}", path.display()))?;
    SymmetricKey::master_from_base64(&text)
        .with_context(|| format!("master key file {}", path.display()))
}

fn development_key(path: &Path) -> anyhow::Result<SymmetricKey> {
    if path.exists() {
        tracing::warn!(
            path = %path.display(),
            "using the development master key generated on first start; production must supply its own \
             (PALISADE_MASTER_KEY or master_key_file), stored away from the database and its backups"
        );
        return read_key_file(path);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let encoded = SymmetricKey::generate_master_base64()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating master key file {}", path.display()))?;
    file.write_all(encoded.as_bytes())?;
    file.sync_all()?;
    tracing::warn!(
        path = %path.display(),
        "\n\
         ************************************************************************\n\
         * GENERATED A DEVELOPMENT MASTER KEY. It encrypts every secret in the  *\n\
         * database. Anyone holding this file and the database reads them; lose *\n\
         * it and they are gone. For production, supply your own master key     *\n\
         * (PALISADE_MASTER_KEY or master_key_file) and keep it away from the   *\n\
         * database and its backups.                                            *\n\
         ************************************************************************"
    );
    SymmetricKey::master_from_base64(&encoded).context("generated master key")
}

/// A rustls server config from PEM files: TLS 1.3 and 1.2 only, aws-lc-rs, HTTP/2 and 1.1.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading private key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

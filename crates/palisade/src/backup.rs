//! `palisade backup`: encrypted snapshots of the database that carry no master key. `create`
//! writes an age-encrypted tar (a manifest and a consistent snapshot: SQLite's `VACUUM INTO`, or
//! `pg_dump`), `restore` puts it into an empty target, and `verify` restores it into a temporary
//! one, starts on it as `serve` would and verifies every audit log.
//!
//! Plaintext never lands outside a private (0700) temporary directory, removed however the
//! command ends; a temporary PostgreSQL database of `verify` is dropped however it ends.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use age::secrecy::ExposeSecret as _;
use anyhow::{Context as _, anyhow, bail};
use palisade_store::backup::{BackupError, MasterKeyIds, PgAdmin, PgSnapshot};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

use crate::config::{Config, Overrides, SecretEnv};

/// The manifest's `format`; another value is not a backup this version reads.
pub const FORMAT: &str = "palisade-backup/1";
const MANIFEST: &str = "manifest.json";
const SQLITE_ENTRY: &str = "database.sqlite";
const PG_ENTRY: &str = "database.pgdump";
const RLS_HELP: &str = "every tenant table has row-level security forced, so pg_dump must run as a role that \
     reads every row: a superuser, or a role with BYPASSRLS and SELECT on every table (e.g. a member of \
     pg_read_all_data). Set PALISADE_BACKUP_DATABASE_URL (or --backup-database-url) to such a role's URL \
     for this database";

/// `palisade backup …`. Exit codes: 0 done (for `verify`: every audit log verified), 1 an audit
/// log is tampered (`verify`), 2 an error or a refusal, 130 interrupted.
#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// Write a new age X25519 identity (mode 0600) and print its recipient (`age1…`).
    /// `age-keygen` makes the same kind of file.
    Keygen {
        /// Where to write the identity; an existing file is never overwritten.
        identity: PathBuf,
    },
    /// Write an encrypted snapshot of the database to PATH. It holds no master key: keep
    /// those separately.
    Create(CreateArgs),
    /// Restore a backup into the configured database, which must not exist yet (SQLite) or
    /// hold no tables (PostgreSQL).
    Restore(OpenArgs),
    /// Restore a backup into a temporary database, start on it with the configured master keys
    /// and verify every audit log. Exit 0 = verified, 1 = tampering found, 2 = error.
    Verify(OpenArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The backup file to write; an existing file is never overwritten.
    pub path: PathBuf,
    /// An age recipient (`age1…`) to encrypt the backup to. Repeatable.
    #[arg(long = "recipient", short = 'r')]
    pub recipients: Vec<String>,
    /// A file of age recipients, one per line (`#` starts a comment). Repeatable.
    #[arg(long = "recipients-file", short = 'R')]
    pub recipients_files: Vec<PathBuf>,
    /// PostgreSQL only: the URL of a role that reads every row, for `pg_dump` (a superuser,
    /// or BYPASSRLS with SELECT on every table, e.g. `pg_read_all_data`). Default: the
    /// configured database URL.
    #[arg(
        long = "backup-database-url",
        env = "PALISADE_BACKUP_DATABASE_URL",
        hide_env_values = true
    )]
    pub backup_database_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    /// The backup file.
    pub path: PathBuf,
    /// An age identity file (`AGE-SECRET-KEY-1…` lines) the backup is encrypted to.
    #[arg(long, short = 'i')]
    pub identity: PathBuf,
}

/// What a backup says about itself: its tar's first entry, `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub created_at: String,
    pub palisade_version: String,
    /// The master keys that wrap the snapshot's data keys: ids only, never key material.
    pub master_key_ids: Vec<String>,
}

/// How a command ended.
enum Outcome {
    Done,
    Tampered,
}

/// A signal stopped the command.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// What must be undone however a command ends, interrupted included: the temporary PostgreSQL
/// database of `verify`. (Temporary directories go when the command's future is dropped.)
#[derive(Debug, Default)]
struct Cleanup {
    /// The URL it was created through, and its name.
    temp_database: std::sync::Mutex<Option<(String, String)>>,
}

impl Cleanup {
    fn register(&self, url: &str, name: &str) {
        if let Ok(mut slot) = self.temp_database.lock() {
            *slot = Some((url.to_owned(), name.to_owned()));
        }
    }

    async fn run(&self) {
        let taken = self.temp_database.lock().ok().and_then(|mut s| s.take());
        let Some((url, name)) = taken else { return };
        let dropped = async {
            let mut admin = PgAdmin::connect(&url).await?;
            admin.drop_database(&name).await?;
            admin.close().await
        };
        if let Err(e) = dropped.await {
            let e = anyhow::Error::new(e);
            eprintln!(
                "palisade backup: could not drop the temporary database {name}: {e:#}; drop it by hand"
            );
        }
    }
}

/// Runs a `backup` command; the exit code says how it ended.
pub async fn main(overrides: Overrides, command: BackupCommand) -> ExitCode {
    let cleanup = Cleanup::default();
    let result = tokio::select! {
        r = run(overrides, command, &cleanup) => r,
        () = crate::interrupted() => Err(anyhow::Error::new(Interrupted)),
    };
    // The command's future is gone, and with it its temporary directories.
    cleanup.run().await;
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Tampered) => ExitCode::from(1),
        Err(e) if e.is::<Interrupted>() => {
            eprintln!("palisade backup: interrupted; temporary files removed");
            // Not waiting for a blocking copy still running: nothing it writes is kept.
            std::process::exit(130)
        }
        Err(e) => {
            eprintln!("palisade backup: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(
    overrides: Overrides,
    command: BackupCommand,
    cleanup: &Cleanup,
) -> anyhow::Result<Outcome> {
    let load = move || -> anyhow::Result<Config> {
        let config = Config::load(overrides, SecretEnv::from_process())?;
        crate::init_logging(config.log_format, "warn");
        Ok(config)
    };
    match command {
        // Keygen needs no configuration: it touches no database.
        BackupCommand::Keygen { identity } => keygen(&identity),
        BackupCommand::Create(args) => create(&args, &load()?).await,
        BackupCommand::Restore(args) => restore(&args, &load()?).await,
        BackupCommand::Verify(args) => verify(&args, &load()?, cleanup).await,
    }
}

// ---- keygen ----

#[allow(clippy::print_stdout)]
fn keygen(path: &Path) -> anyhow::Result<Outcome> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let created = time::OffsetDateTime::now_utc().format(&Rfc3339)?;
    let mut file = create_new(path, "the identity file")?;
    // Written piece by piece, so the secret is never copied into another buffer.
    let written = (|| -> std::io::Result<()> {
        write!(file, "# created: {created}\n# public key: {recipient}\n")?;
        file.write_all(identity.to_string().expose_secret().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    println!("{recipient}");
    Ok(Outcome::Done)
}

/// Creates `path` (mode 0600), refusing to replace anything already there.
fn create_new(path: &Path, what: &str) -> anyhow::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow!(
                "{} already exists; refusing to overwrite it",
                path.display()
            ),
            _ => anyhow::Error::new(e).context(format!("creating {what} {}", path.display())),
        })
}

// ---- create ----

/// The recipients of `--recipient` and `--recipients-file`; at least one.
fn recipients(args: &CreateArgs) -> anyhow::Result<Vec<age::x25519::Recipient>> {
    let mut texts: Vec<(String, String)> = args
        .recipients
        .iter()
        .map(|r| ("--recipient".to_owned(), r.trim().to_owned()))
        .collect();
    for file in &args.recipients_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading recipients file {}", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                texts.push((format!("{}:{}", file.display(), n + 1), line.to_owned()));
            }
        }
    }
    if texts.is_empty() {
        bail!(
            "no recipient: give --recipient age1… (repeatable) or --recipients-file FILE, the keys the \
             backup is encrypted to (make one with `palisade backup keygen <identity-file>` or age-keygen)"
        );
    }
    texts
        .iter()
        .map(|(from, text)| {
            text.parse::<age::x25519::Recipient>()
                .map_err(|_| anyhow!("{from}: {text:?} is not an age X25519 recipient (age1…)"))
        })
        .collect()
}

/// Where the configured database lives.
enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Target {
    /// Parsed as `palisade_store::open` does.
    fn of(config: &Config) -> anyhow::Result<Self> {
        let url = config.effective_database_url();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else {
            bail!("unsupported database URL (expected sqlite:… or postgres://…)")
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Where it is, as it may be printed.
    fn shown(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => masked(url),
        }
    }
}

/// A private (0700) directory for plaintext work files, removed when dropped.
fn work_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("palisade-backup-")
        .tempdir()
        .context("creating a private temporary directory")
}

#[allow(clippy::print_stdout)]
async fn create(args: &CreateArgs, config: &Config) -> anyhow::Result<Outcome> {
    let recipients = recipients(args)?;
    if args.path.symlink_metadata().is_ok() {
        bail!(
            "{} already exists; refusing to overwrite it",
            args.path.display()
        );
    }
    let target = Target::of(config)?;
    let work = work_dir()?;
    let (entry, snapshot, master_key_ids) = match &target {
        Target::Sqlite(db) => {
            let snapshot = work.path().join(SQLITE_ENTRY);
            let ids = sqlite_snapshot(db, &snapshot).await?;
            (SQLITE_ENTRY, snapshot, ids)
        }
        Target::Postgres(configured) => {
            let url = args.backup_database_url.as_deref().unwrap_or(configured);
            same_database(url, configured)?;
            let snapshot = work.path().join(PG_ENTRY);
            let ids = pg_snapshot(url, &snapshot).await?;
            (PG_ENTRY, snapshot, ids)
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        backend: target.backend().to_owned(),
        created_at: now.format(&Rfc3339)?,
        palisade_version: env!("CARGO_PKG_VERSION").to_owned(),
        master_key_ids: master_key_ids_of(master_key_ids),
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest)?;
    let mtime = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let count = recipients.len();
    let path = args.path.clone();
    let size = tokio::task::spawn_blocking(move || {
        write_encrypted(&path, &recipients, &manifest_json, entry, &snapshot, mtime)
    })
    .await
    .context("the backup writer stopped")??;
    drop(work);
    println!(
        "wrote {} ({size} bytes: a {} snapshot of {}, encrypted to {count} recipient(s))",
        args.path.display(),
        manifest.backend,
        target.shown(),
    );
    println!(
        "it holds no master key: restoring it needs master key(s) {}, kept separately",
        names(&manifest.master_key_ids)
    );
    Ok(Outcome::Done)
}

fn names(ids: &[String]) -> String {
    if ids.is_empty() {
        "(none: the database has no data key yet)".to_owned()
    } else {
        ids.join(", ")
    }
}

/// A consistent snapshot of a live SQLite database (WAL: writers go on meanwhile), as one
/// file; returns the master keys that wrap its data keys.
async fn sqlite_snapshot(db: &Path, to: &Path) -> anyhow::Result<MasterKeyIds> {
    if !db.exists() {
        bail!("no database at {}: nothing to back up", db.display());
    }
    Ok(palisade_store::backup::sqlite_snapshot(db, to).await?)
}

/// The manifest's master-key ids, in order.
fn master_key_ids_of(ids: MasterKeyIds) -> Vec<String> {
    for _ in 0..ids.malformed {
        tracing::warn!(
            "a data key's wrapped form is malformed; the manifest cannot name its master key"
        );
    }
    ids.ids.into_iter().collect()
}

/// `pg_dump --format=custom --no-owner` of the database at `url` into `to`, in an exported
/// snapshot that the master-key ids are read in too.
async fn pg_snapshot(url: &str, to: &Path) -> anyhow::Result<MasterKeyIds> {
    let pg_dump = pg_tool("pg_dump")?;
    let shown = masked(url);
    let snapshot = PgSnapshot::export(url).await.map_err(|e| match e {
        BackupError::Connect { source, .. } => {
            anyhow::Error::new(source).context(format!("connecting to {shown} for the backup"))
        }
        BackupError::RoleBoundByRls { .. } => {
            anyhow!("cannot back up as the role of {shown}: {RLS_HELP}")
        }
        BackupError::DataKeys(source) => anyhow::Error::new(source).context(format!(
            "reading the data keys as the role of {shown}: {RLS_HELP}"
        )),
        e => e.into(),
    })?;
    // The exporting transaction stays open until pg_dump has taken its snapshot.
    let mut cmd = pg_command(&pg_dump, url)?;
    cmd.arg("--format=custom")
        .arg("--no-owner")
        .arg(format!("--snapshot={}", snapshot.snapshot_id()))
        .arg("--file")
        .arg(to);
    let out = cmd.output().await.context("running pg_dump")?;
    let ids = snapshot.master_key_ids().clone();
    snapshot.release().await?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim();
        if stderr.contains("row-level security") || stderr.contains("permission denied") {
            bail!("pg_dump failed: {stderr}\n{RLS_HELP}");
        }
        bail!("pg_dump failed ({}): {stderr}", out.status);
    }
    Ok(ids)
}

/// The backup role's URL must name the configured database, or the backup would be of
/// another one.
fn same_database(backup: &str, configured: &str) -> anyhow::Result<()> {
    let name = |url: &str| -> anyhow::Result<(Option<String>, Option<u16>, String)> {
        let u = url::Url::parse(url).context("a PostgreSQL URL is not a URL")?;
        Ok((
            u.host_str().map(str::to_owned),
            u.port(),
            u.path().trim_start_matches('/').to_owned(),
        ))
    };
    let (b, c) = (name(backup)?, name(configured)?);
    if b != c {
        bail!(
            "PALISADE_BACKUP_DATABASE_URL names {}, but the configured database is {}: point it at the same host, port and database",
            masked(backup),
            masked(configured)
        );
    }
    Ok(())
}

/// A PostgreSQL client program: on PATH, else in `pg_config --bindir`.
fn pg_tool(name: &str) -> anyhow::Result<PathBuf> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt as _;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(path) = std::env::var_os("PATH")
        && let Some(found) = std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| executable(p))
    {
        return Ok(found);
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        && out.status.success()
    {
        let found = Path::new(String::from_utf8_lossy(&out.stdout).trim()).join(name);
        if executable(&found) {
            return Ok(found);
        }
    }
    bail!("{name} not found on PATH; install the PostgreSQL client")
}

/// A PostgreSQL tool connecting to `url`: the URL goes on its command line without the
/// password, which goes through its environment (`PGPASSWORD`; a command line is readable by
/// every local user). Killed if the command is dropped (interrupted).
fn pg_command(tool: &Path, url: &str) -> anyhow::Result<tokio::process::Command> {
    let mut parsed = url::Url::parse(url).context("the PostgreSQL URL is not a URL")?;
    let password = parsed.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    if password.is_some() {
        parsed
            .set_password(None)
            .map_err(|()| anyhow!("the PostgreSQL URL cannot lose its password"))?;
    }
    let mut cmd = tokio::process::Command::new(tool);
    cmd.kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .arg("--dbname")
        .arg(parsed.as_str());
    match password {
        Some(p) => cmd.env("PGPASSWORD", p),
        None => cmd.env_remove("PGPASSWORD"),
    };
    Ok(cmd)
}

/// A URL as it may be printed: its password masked.
fn masked(url: &str) -> String {
    palisade_store::backup::masked_url(url)
}

/// Streams the tar (manifest, then snapshot) through age into a temporary file beside `path`
/// (mode 0600) and moves it into place, never over an existing file. Returns its size.
fn write_encrypted(
    path: &Path,
    recipients: &[age::x25519::Recipient],
    manifest: &[u8],
    entry: &str,
    snapshot: &Path,
    mtime: u64,
) -> anyhow::Result<u64> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".palisade-backup-")
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| anyhow!("age: {e}"))?;
    let output = encryptor
        .wrap_output(BufWriter::new(tmp.as_file()))
        .context("writing the backup")?;
    let mut tar = tar::Builder::new(output);
    append(&mut tar, MANIFEST, manifest.len() as u64, manifest, mtime)?;
    let db = File::open(snapshot).context("opening the snapshot")?;
    let len = db.metadata()?.len();
    append(&mut tar, entry, len, db, mtime)?;
    let output = tar.into_inner().context("writing the backup")?;
    output
        .finish()
        .and_then(|w| w.into_inner().map_err(std::io::IntoInnerError::into_error))
        .context("writing the backup")?;
    tmp.as_file().sync_all().context("writing the backup")?;
    let size = tmp.as_file().metadata()?.len();
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!(
                "{} already exists; refusing to overwrite it",
                path.display()
            )
        } else {
            anyhow::Error::new(e.error).context(format!("moving the backup to {}", path.display()))
        }
    })?;
    sync_dir(dir);
    Ok(size)
}

/// Makes a rename durable; best effort.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    len: u64,
    data: impl Read,
    mtime: u64,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(len);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
        .with_context(|| format!("writing {name} into the backup"))
}

// ---- reading a backup ----

fn identities(file: &Path) -> anyhow::Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let name = file
        .to_str()
        .context("the identity file's path is not UTF-8")?
        .to_owned();
    let ids = age::IdentityFile::from_file(name)
        .with_context(|| format!("reading identity file {}", file.display()))?
        .into_identities()
        .map_err(|e| anyhow!("identity file {}: {e}", file.display()))?;
    if ids.is_empty() {
        bail!("no age identity (AGE-SECRET-KEY-1…) in {}", file.display());
    }
    Ok(ids)
}

/// Decrypts the backup at `path`, hands its manifest to `open`, which checks it and opens the
/// file the database snapshot goes to, and writes the snapshot there. The age stream is read to
/// its end, so a truncated or altered backup fails here.
fn read_backup(
    path: &Path,
    identity_file: &Path,
    open: impl FnOnce(&Manifest) -> anyhow::Result<File>,
) -> anyhow::Result<Manifest> {
    let identities = identities(identity_file)?;
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let decryptor = age::Decryptor::new_buffered(BufReader::new(file))
        .map_err(|e| anyhow!("{} is not an age-encrypted file: {e}", path.display()))?;
    let reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => anyhow!(
                "this backup is not encrypted to any identity in {}",
                identity_file.display()
            ),
            e => anyhow!("decrypting {}: {e}", path.display()),
        })?;
    let damaged = || format!("{} is damaged or not a Palisade backup", path.display());
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive.entries().with_context(damaged)?;
    let mut next = |expected: &str| -> anyhow::Result<tar::Entry<'_, _>> {
        let entry = entries
            .next()
            .with_context(|| format!("{}: no {expected}", damaged()))?
            .with_context(damaged)?;
        let name = entry.path().with_context(damaged)?.display().to_string();
        if name != expected {
            bail!("{}: found {name:?} where {expected} belongs", damaged());
        }
        Ok(entry)
    };

    let mut text = Vec::new();
    next(MANIFEST)?
        .take(1 << 20)
        .read_to_end(&mut text)
        .with_context(damaged)?;
    let manifest: Manifest =
        serde_json::from_slice(&text).with_context(|| format!("{}: {MANIFEST}", damaged()))?;
    if manifest.format != FORMAT {
        bail!(
            "{} has format {:?}; this version reads {FORMAT}",
            path.display(),
            manifest.format
        );
    }
    let entry = match manifest.backend.as_str() {
        "sqlite" => SQLITE_ENTRY,
        "postgres" => PG_ENTRY,
        other => bail!("{}: unknown backend {other:?}", damaged()),
    };
    let out = open(&manifest)?;
    let mut snapshot = next(entry)?;
    let mut writer = BufWriter::new(&out);
    std::io::copy(&mut snapshot, &mut writer).with_context(damaged)?;
    writer.flush()?;
    drop(writer);
    drop(snapshot);
    if let Some(extra) = entries.next() {
        let name = extra
            .ok()
            .and_then(|e| e.path().ok().map(|p| p.display().to_string()));
        bail!("{}: unexpected entry {name:?}", damaged());
    }
    // To the end: age authenticates the last chunk only there.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).with_context(damaged)?;
    out.sync_all()?;
    Ok(manifest)
}

fn check_backend(manifest: &Manifest, target: &Target) -> anyhow::Result<()> {
    if manifest.backend != target.backend() {
        bail!(
            "this backup is of a {} database, but the configuration uses {}; configure a {} database to restore it",
            manifest.backend,
            target.backend(),
            manifest.backend
        );
    }
    Ok(())
}

// ---- restore ----

#[allow(clippy::print_stdout)]
async fn restore(args: &OpenArgs, config: &Config) -> anyhow::Result<Outcome> {
    let target = Target::of(config)?;
    let manifest = match &target {
        Target::Sqlite(db) => restore_sqlite(args, db.clone()).await?,
        Target::Postgres(url) => {
            let mut admin = PgAdmin::connect(url).await?;
            refuse_non_empty(&mut admin, url).await?;
            let work = work_dir()?;
            let dump = work.path().join(PG_ENTRY);
            let manifest = decrypt_dump(args, dump.clone()).await?;
            admin.ensure_app_role().await?;
            admin.close().await?;
            pg_restore(&dump, url).await?;
            manifest
        }
    };
    println!(
        "restored the {} backup of {} into {}",
        manifest.backend,
        manifest.created_at,
        target.shown()
    );
    println!(
        "it needs master key(s) {}: configure them (PALISADE_MASTER_KEY, master_key_file or retired_master_keys) before `palisade serve`",
        names(&manifest.master_key_ids)
    );
    Ok(Outcome::Done)
}

/// Decrypts a PostgreSQL backup's dump into the new file `to` (in a private work directory),
/// off the runtime.
async fn decrypt_dump(args: &OpenArgs, to: PathBuf) -> anyhow::Result<Manifest> {
    let (path, identity) = (args.path.clone(), args.identity.clone());
    tokio::task::spawn_blocking(move || {
        read_backup(&path, &identity, |manifest| {
            check_backend(manifest, &Target::Postgres(String::new()))?;
            create_new(&to, "the dump file")
        })
    })
    .await
    .context("the restore stopped")?
}

/// Decrypts the snapshot into a temporary file beside `db` and moves it into place, never
/// over an existing database.
async fn restore_sqlite(args: &OpenArgs, db: PathBuf) -> anyhow::Result<Manifest> {
    let (path, identity) = (args.path.clone(), args.identity.clone());
    tokio::task::spawn_blocking(move || {
        let refuse = || {
            anyhow!(
                "{} already exists: a backup restores only into an empty data directory (move the old database away first)",
                db.display()
            )
        };
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        if db.symlink_metadata().is_ok() || wal.symlink_metadata().is_ok() {
            return Err(refuse());
        }
        let dir = match db.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        // Owner-only, as the store creates it: the database holds password hashes.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".palisade-restore-")
            .suffix(".partial")
            .tempfile_in(&dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let manifest = read_backup(&path, &identity, |manifest| {
            check_backend(manifest, &Target::Sqlite(db.clone()))?;
            Ok(tmp.as_file().try_clone()?)
        })?;
        tmp.persist_noclobber(&db).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                refuse()
            } else {
                anyhow::Error::new(e.error)
                    .context(format!("moving the database to {}", db.display()))
            }
        })?;
        sync_dir(&dir);
        Ok(manifest)
    })
    .await
    .context("the restore stopped")?
}

/// A restore never mixes into existing data.
async fn refuse_non_empty(admin: &mut PgAdmin, url: &str) -> anyhow::Result<()> {
    let tables = admin.public_table_count().await?;
    if tables > 0 {
        bail!(
            "the database at {} already has {tables} table(s) in schema public: a backup restores only \
             into an empty database (CREATE DATABASE a new one and point database_url at it)",
            masked(url)
        );
    }
    Ok(())
}

/// `pg_restore --no-owner --single-transaction` into the database at `url`: all or nothing.
async fn pg_restore(dump: &Path, url: &str) -> anyhow::Result<()> {
    let mut cmd = pg_command(&pg_tool("pg_restore")?, url)?;
    cmd.arg("--no-owner")
        .arg("--single-transaction")
        .arg("--exit-on-error")
        .arg(dump);
    let out = cmd.output().await.context("running pg_restore")?;
    if !out.status.success() {
        bail!(
            "pg_restore failed ({}); nothing was restored: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

// ---- verify ----

#[allow(clippy::print_stdout)]
async fn verify(args: &OpenArgs, config: &Config, cleanup: &Cleanup) -> anyhow::Result<Outcome> {
    let target = Target::of(config)?;
    let work = work_dir()?;
    let mut check_config = config.clone();
    check_config.data_dir = work.path().join("data");
    // Nothing is mailed from a verification.
    check_config.email.smtp = None;
    if config.master_key.is_none() && config.master_key_file.is_none() {
        // The development key file beside the configured database, which `serve` would use.
        let dev = config.data_dir.join("master.key");
        if dev.exists() {
            check_config.master_key_file = Some(dev);
        }
    }
    match &target {
        Target::Sqlite(_) => {
            let db = check_config.data_dir.join("palisade.db");
            let manifest = restore_sqlite(args, db.clone()).await?;
            check_config.database_url = Some(format!("sqlite:{}", db.display()).into());
            check_restored(&check_config, &manifest).await
        }
        Target::Postgres(url) => {
            let dump = work.path().join(PG_ENTRY);
            let manifest = decrypt_dump(args, dump.clone()).await?;
            let name = format!("palisade_verify_{}", random_hex()?);
            let mut temp_url = url::Url::parse(url).context("the database URL is not a URL")?;
            temp_url.set_path(&format!("/{name}"));
            let temp_url = temp_url.to_string();
            check_config.database_url = Some(temp_url.clone().into());
            let mut admin = PgAdmin::connect(url).await?;
            // Registered first: it is dropped however this ends.
            cleanup.register(url, &name);
            println!("restoring into temporary database {name}");
            admin
                .create_database(&name)
                .await
                .context("creating a temporary database for the verification")?;
            admin.ensure_app_role().await?;
            admin.close().await?;
            pg_restore(&dump, &temp_url).await?;
            check_restored(&check_config, &manifest).await
        }
    }
}

fn random_hex() -> anyhow::Result<String> {
    let bytes = palisade_core::crypto::random::bytes::<8>()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Starts on the restored database as `serve` would (migrations; every data key unwrapped with
/// the configured master keys), then verifies every audit log's export as
/// `palisade audit verify --export` does.
#[allow(clippy::print_stdout)]
async fn check_restored(config: &Config, manifest: &Manifest) -> anyhow::Result<Outcome> {
    let state = crate::build(config).await.with_context(|| {
        format!(
            "the restored database does not start with the configured master keys (this backup needs {})",
            names(&manifest.master_key_ids)
        )
    })?;
    let services = &state.services;
    let logs = services
        .audit_log_ids()
        .await
        .context("listing the audit logs")?;
    let (mut verified, mut tampered, mut unsigned, mut empty) = (0usize, 0usize, 0usize, 0usize);
    for log in &logs {
        let export = services
            .audit_export_log(log)
            .await
            .with_context(|| format!("reading audit log {log}"))?;
        if export.entries.is_empty() && export.checkpoint.is_none() {
            empty += 1;
            println!("{log}: empty");
            continue;
        }
        if export.checkpoint.is_none() {
            unsigned += 1;
            println!(
                "{log}: {} entries, no signed checkpoint yet (not verified)",
                export.entries.len()
            );
            continue;
        }
        let tar = palisade_api::routes::audit::export_tar(&export, services.now())
            .with_context(|| format!("exporting audit log {log}"))?;
        let report = crate::verify::verify_export(tar.as_slice())
            .with_context(|| format!("verifying audit log {log}"))?;
        if report.status == "verified" {
            verified += 1;
            println!(
                "{log}: {} entries, verified (checkpoint size {})",
                report.entries,
                report.tree_size.unwrap_or(0)
            );
        } else {
            tampered += 1;
            let reason = report
                .failure
                .as_ref()
                .map_or_else(String::new, ToString::to_string);
            println!("{log}: TAMPERED {reason}");
        }
    }
    drop(state);
    let total = logs.len();
    if tampered > 0 {
        println!("backup TAMPERED: {tampered} of {total} audit log(s) fail verification");
        return Ok(Outcome::Tampered);
    }
    let mut notes = Vec::new();
    if empty > 0 {
        notes.push(format!("{empty} empty"));
    }
    if unsigned > 0 {
        notes.push(format!("{unsigned} not checkpointed yet"));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    println!(
        "backup verified: the {} snapshot of {} restores, opens with master key(s) {}, and {verified} of {total} audit log(s) verify{notes}",
        manifest.backend,
        manifest.created_at,
        names(&manifest.master_key_ids),
    );
    Ok(Outcome::Done)
}

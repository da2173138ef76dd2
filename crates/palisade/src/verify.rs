//! `palisade audit verify` (AUDIT-SPEC §9): checks a log offline (files, or an export tar) or
//! online (URLs, with a bearer token). Exit 0 = verified, 1 = tampering found, 2 = usage or
//! I/O error.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use palisade_audit::verify::{Jwks, Report, SignedCheckpoint, Verifier, refused};

/// Where the log comes from.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The workspace JWKS (`…/audit/jwks.json`): a file or an http(s) URL.
    #[arg(long, required_unless_present = "export")]
    pub jwks: Option<String>,
    /// The checkpoint to verify against (`…/audit/checkpoint`): a file or URL.
    #[arg(long, required_unless_present = "export")]
    pub checkpoint: Option<String>,
    /// The entries NDJSON (`…/audit/entries`): a file or URL (paged automatically).
    #[arg(long, required_unless_present = "export")]
    pub entries: Option<String>,
    /// An export tar (`…/audit/export`) instead of the three inputs above.
    #[arg(long, conflicts_with_all = ["jwks", "checkpoint", "entries"])]
    pub export: Option<PathBuf>,
    /// An older checkpoint you archived; the log must still contain it. Repeatable.
    #[arg(long = "trusted-checkpoint")]
    pub trusted_checkpoint: Vec<String>,
    /// Bearer token for URLs (or PALISADE_TOKEN).
    #[arg(long, env = "PALISADE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

struct Fetcher {
    client: reqwest::Client,
    token: Option<String>,
}

impl Fetcher {
    async fn get(&self, url: &str) -> anyhow::Result<Vec<u8>> {
        let mut req = self.client.get(url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("fetching {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            bail!("{url} answered {status}");
        }
        Ok(resp.bytes().await?.to_vec())
    }

    async fn read(&self, source: &str) -> anyhow::Result<Vec<u8>> {
        if is_url(source) {
            self.get(source).await
        } else {
            std::fs::read(source).with_context(|| format!("reading {source}"))
        }
    }
}

/// Where the entries come from.
enum Entries {
    /// Already read (from an export).
    Bytes(Vec<u8>),
    File(String),
    /// The server's entries endpoint, paged.
    Url(String),
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes)
        .with_context(|| format!("{what} is not valid JSON of the expected shape"))
}

/// Feeds NDJSON from `reader` in large chunks, each verified across all cores; returns the
/// number of lines read.
fn feed_lines(verifier: &mut Verifier, mut reader: impl Read) -> anyhow::Result<u64> {
    const CHUNK: usize = 8 << 20;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 2);
    let mut count = 0;
    let mut eof = false;
    while !eof {
        let start = buf.len();
        buf.resize(start + CHUNK, 0);
        let mut filled = start;
        while filled < buf.len() {
            let n = reader.read(&mut buf[filled..]).context("reading entries")?;
            if n == 0 {
                eof = true;
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        let end = if eof {
            buf.len()
        } else {
            buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
        };
        let lines: Vec<&[u8]> = buf[..end]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        count += lines.len() as u64;
        if verifier.feed_batch(&lines).is_err() {
            return Ok(count);
        }
        buf.drain(..end);
    }
    Ok(count)
}

/// Reads the JWKS, checkpoint and entries of an export tar.
fn read_export(reader: impl Read) -> anyhow::Result<(Jwks, SignedCheckpoint, Vec<u8>)> {
    let mut archive = tar::Archive::new(reader);
    let (mut jwks, mut checkpoint, mut entries) = (None, None, None);
    for entry in archive.entries().context("reading the export tar")? {
        let mut entry = entry.context("reading the export tar")?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        match name.as_str() {
            "jwks.json" => jwks = Some(parse("jwks.json", &data)?),
            "checkpoint.json" => checkpoint = Some(parse("checkpoint.json", &data)?),
            "entries.ndjson" => entries = Some(data),
            _ => {}
        }
    }
    Ok((
        jwks.context("the export has no jwks.json")?,
        checkpoint.context("the export has no checkpoint.json (no checkpoint signed yet)")?,
        entries.context("the export has no entries.ndjson")?,
    ))
}

async fn verify(args: &VerifyArgs) -> anyhow::Result<Report> {
    let fetcher = Fetcher {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        token: args.token.clone(),
    };
    let mut trusted: Vec<SignedCheckpoint> = Vec::new();
    for t in &args.trusted_checkpoint {
        trusted.push(parse("trusted checkpoint", &fetcher.read(t).await?)?);
    }
    let (jwks, checkpoint, entries) =
        match (&args.export, &args.jwks, &args.checkpoint, &args.entries) {
            (Some(path), ..) => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let (jwks, checkpoint, entries) = read_export(file)?;
                (jwks, checkpoint, Entries::Bytes(entries))
            }
            (None, Some(jwks), Some(checkpoint), Some(entries)) => (
                parse("the JWKS", &fetcher.read(jwks).await?)?,
                parse("the checkpoint", &fetcher.read(checkpoint).await?)?,
                if is_url(entries) {
                    Entries::Url(entries.clone())
                } else {
                    Entries::File(entries.clone())
                },
            ),
            _ => bail!("give --jwks, --checkpoint and --entries, or --export"),
        };
    let mut verifier = match Verifier::new(&jwks, &checkpoint, &trusted) {
        Ok(v) => v,
        Err(f) => return Ok(refused(f)),
    };
    match entries {
        Entries::Bytes(data) => {
            feed_lines(&mut verifier, data.as_slice())?;
        }
        Entries::File(path) => {
            let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
            feed_lines(&mut verifier, file)?;
        }
        Entries::Url(url) => {
            // The server answers at most 10,000 entries a request: page until a short page.
            let mut url = url::Url::parse(&url)?;
            let paged = !url.query_pairs().any(|(k, _)| k == "start" || k == "end");
            let mut start = 0u64;
            loop {
                if paged {
                    url.query_pairs_mut()
                        .clear()
                        .append_pair("start", &start.to_string())
                        .append_pair("end", &(start + 10_000).to_string());
                }
                let body = fetcher.get(url.as_str()).await?;
                let n = feed_lines(&mut verifier, body.as_slice())?;
                if !paged || n < 10_000 {
                    break;
                }
                start += n;
            }
        }
    }
    Ok(verifier.finish())
}

/// Verifies an export tar (`…/audit/export`) read from `reader`, as `--export` does (no
/// trusted checkpoints). Tampering is a `tampered` report; an unreadable export is an error.
pub fn verify_export(reader: impl Read) -> anyhow::Result<Report> {
    let (jwks, checkpoint, entries) = read_export(reader)?;
    let mut verifier = match Verifier::new(&jwks, &checkpoint, &[]) {
        Ok(v) => v,
        Err(f) => return Ok(refused(f)),
    };
    feed_lines(&mut verifier, entries.as_slice())?;
    Ok(verifier.finish())
}

fn error_report(e: &anyhow::Error) -> Report {
    Report {
        status: "error",
        origin: None,
        tree_size: None,
        root: None,
        entries: 0,
        failure: Some(palisade_audit::verify::Failure {
            seq: None,
            reason: format!("{e:#}"),
        }),
        pii: Default::default(),
    }
}

/// Runs the verifier and prints the outcome; the exit code says it.
#[allow(clippy::print_stdout)]
pub async fn main(args: VerifyArgs) -> ExitCode {
    let report = match verify(&args).await {
        Ok(r) => r,
        Err(e) => error_report(&e),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        match (&report.status, &report.failure) {
            (&"verified", _) => println!(
                "verified: {}, {} entries, checkpoint size {}, root {}; personal values: {} verified, {} redacted",
                report.origin.as_deref().unwrap_or(""),
                report.entries,
                report.tree_size.unwrap_or(0),
                report.root.as_deref().unwrap_or(""),
                report.pii.verified,
                report.pii.redacted,
            ),
            (&"error", Some(f)) => eprintln!("palisade audit verify: error: {}", f.reason),
            (_, Some(f)) => match f.seq {
                Some(seq) => println!("TAMPERED at seq {seq}: {}", f.reason),
                None => println!("TAMPERED: {}", f.reason),
            },
            _ => {}
        }
    }
    match report.status {
        "verified" => ExitCode::SUCCESS,
        "tampered" => ExitCode::from(1),
        _ => ExitCode::from(2),
    }
}

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

/// The inputs once read: JWKS, checkpoint, trusted checkpoints.
struct Inputs {
    jwks: Jwks,
    checkpoint: SignedCheckpoint,
    trusted: Vec<SignedCheckpoint>,
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

async fn verify(args: &VerifyArgs) -> anyhow::Result<Report> {
    let fetcher = Fetcher {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        token: args.token.clone(),
    };
    let mut trusted = Vec::new();
    for t in &args.trusted_checkpoint {
        trusted.push(parse("trusted checkpoint", &fetcher.read(t).await?)?);
    }
    if let Some(path) = &args.export {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut archive = tar::Archive::new(file);
        let (mut jwks, mut checkpoint, mut entries) = (None, None, None);
        for entry in archive.entries().context("reading the export tar")? {
            let mut entry = entry.context("reading the export tar")?;
            let name = entry.path()?.to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            match name.as_str() {
                "jwks.json" => jwks = Some(parse::<Jwks>("jwks.json", &data)?),
                "checkpoint.json" => {
                    checkpoint = Some(parse::<SignedCheckpoint>("checkpoint.json", &data)?)
                }
                "entries.ndjson" => entries = Some(data),
                _ => {}
            }
        }
        let inputs = Inputs {
            jwks: jwks.context("the export has no jwks.json")?,
            checkpoint: checkpoint
                .context("the export has no checkpoint.json (no checkpoint signed yet)")?,
            trusted,
        };
        let entries = entries.context("the export has no entries.ndjson")?;
        return Ok(run(inputs, |v| feed_lines(v, entries.as_slice())).await);
    }
    let (Some(jwks), Some(checkpoint), Some(entries)) =
        (&args.jwks, &args.checkpoint, &args.entries)
    else {
        bail!("give --jwks, --checkpoint and --entries, or --export");
    };
    let inputs = Inputs {
        jwks: parse("the JWKS", &fetcher.read(jwks).await?)?,
        checkpoint: parse("the checkpoint", &fetcher.read(checkpoint).await?)?,
        trusted,
    };
    let mut verifier = match Verifier::new(&inputs.jwks, &inputs.checkpoint, &inputs.trusted) {
        Ok(v) => v,
        Err(f) => return Ok(refused(f)),
    };
    if is_url(entries) {
        // The server answers at most 10,000 entries a request: page until a short page.
        let mut url = url::Url::parse(entries)?;
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
    } else {
        let file = std::fs::File::open(entries).with_context(|| format!("opening {entries}"))?;
        feed_lines(&mut verifier, file)?;
    }
    Ok(verifier.finish())
}

async fn run(inputs: Inputs, feed: impl FnOnce(&mut Verifier) -> anyhow::Result<u64>) -> Report {
    let mut verifier = match Verifier::new(&inputs.jwks, &inputs.checkpoint, &inputs.trusted) {
        Ok(v) => v,
        Err(f) => return refused(f),
    };
    if let Err(e) = feed(&mut verifier) {
        return error_report(&e);
    }
    verifier.finish()
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

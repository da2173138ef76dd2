//! `palisade`: serve, migrate, print the OpenAPI document, check the configuration.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade::config::{Config, Overrides};

/// mimalloc: glibc's allocator contends on its arena locks under the server's many small JSON
/// allocations across threads (measured in `bench/README.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "palisade",
    version,
    about = "Self-hostable multi-tenant backend for B2B SaaS"
)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (SQLite in ./palisade-data by default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI 3.1 document.
    Openapi,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Encryption keys: status, master-key re-wrapping, data-key rotation (KMS-3).
    Keys {
        #[command(subcommand)]
        command: palisade::keys_cli::KeysCommand,
    },
    /// Audit-log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Encrypted database backups without keys: keygen, create, restore, verify.
    /// Exit 0 = done, 1 = a restored audit log is tampered (verify), 2 = error or refusal.
    Backup {
        #[command(subcommand)]
        command: palisade::backup::BackupCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify a workspace's log against its signed checkpoint and JWKS (AUDIT-SPEC §9).
    /// Exit 0 = verified, 1 = tampering found, 2 = usage or I/O error.
    Verify(palisade::verify::VerifyArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print it, secrets masked.
    Check,
}

async fn shutdown_signal() {
    palisade::interrupted().await;
    tracing::info!("shutting down");
}

async fn main_inner(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        let doc = palisade_api::openapi().to_pretty_json()?;
        #[allow(clippy::print_stdout)]
        {
            println!("{doc}");
        }
        return Ok(());
    }
    let config = Config::load(cli.overrides, palisade::config::SecretEnv::from_process())?;
    palisade::init_logging(config.log_format, "info,sqlx=warn");
    match cli.command {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
            palisade::run(config, listener, shutdown_signal()).await
        }
        Command::Migrate => {
            palisade_store::open(
                &config.effective_database_url(),
                palisade_store::Migrations::Apply,
            )
            .await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Keys { command } => palisade::keys_cli::main(command, &config).await,
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            config.effective_public_url()?;
            #[allow(clippy::print_stdout)]
            {
                print!("{}", config.render_masked()?);
            }
            Ok(())
        }
        Command::Openapi | Command::Audit { .. } | Command::Backup { .. } => Ok(()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The verifier needs no configuration, database or master key: it trusts none of them.
    if let Command::Audit {
        command: AuditCommand::Verify(args),
    } = cli.command
    {
        return palisade::verify::main(args).await;
    }
    // Backups load the configuration themselves (keygen needs none) and have their own exit
    // codes.
    if let Command::Backup { command } = cli.command {
        return palisade::backup::main(cli.overrides, command).await;
    }
    match main_inner(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

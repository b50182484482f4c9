//! The `sendmux` command: parses the command line and calls into the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use sendmux::app::{App, cancel_on_signal};
use sendmux::config::{LogFormat, Settings};

/// mimalloc rather than glibc's allocator: requests allocate on the runtime's workers
/// and are freed on the committer threads, and glibc's per-thread arenas made those
/// frees (with their consolidation passes) about a sixth of the accept path's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sendmux — a multi-tenant email API: scoped keys, signed webhooks, live mailbox streams.
///
/// Settings come from built-in defaults, then the TOML file given by --config or
/// SENDMUX_CONFIG, then SENDMUX_* environment variables. With nothing configured,
/// Sendmux keeps an SQLite database in ./data and listens on 127.0.0.1:8080.
#[derive(Parser)]
#[command(name = "sendmux", version, propagate_version = true)]
struct Cli {
    /// A TOML settings file (keys as the SENDMUX_* variables, lower case, without the prefix).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (and every other listener and worker) until SIGINT or SIGTERM.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Operator tasks, run directly against the store.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Subcommand)]
enum Admin {
    /// Create a team and its owner (a new user, or an existing one by email).
    CreateTeam {
        /// The team's name.
        #[arg(long)]
        name: String,
        /// The owner's email address.
        #[arg(long)]
        owner_email: String,
        /// The owner's password when the owner has no account yet
        /// (or set SENDMUX_OWNER_PASSWORD).
        #[arg(long, env = "SENDMUX_OWNER_PASSWORD", hide_env_values = true)]
        owner_password: Option<String>,
    },
    /// Approve a limit increase request; the team's limit becomes the requested value
    /// (or --limit).
    ApproveIncrease {
        /// The request id (req_…).
        id: String,
        /// Grant this limit instead of the requested one.
        #[arg(long)]
        limit: Option<i64>,
    },
    /// Deny a limit increase request.
    DenyIncrease {
        /// The request id (req_…).
        id: String,
    },
    /// List limit increase requests (pending ones unless --all).
    Increases {
        #[arg(long)]
        all: bool,
    },
    /// Print every team's usage line items and totals for a calendar month (UTC), to
    /// invoice from.
    Usage {
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SENDMUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sendmux: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(settings.log_format);
    match run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sendmux: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = App::build(settings).await?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            cancel_on_signal(shutdown.clone());
            app.run_until_stopped(shutdown).await
        }
        Command::Migrate => {
            let store = sendmux::store::Store::connect(&settings).await?;
            store.migrate().await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin(admin) => sendmux::admin::run(admin.into(), &settings).await,
    }
}

impl From<Admin> for sendmux::admin::Task {
    fn from(a: Admin) -> Self {
        use sendmux::admin::Task;
        match a {
            Admin::CreateTeam { name, owner_email, owner_password } => {
                Task::CreateTeam { name, owner_email, owner_password }
            }
            Admin::ApproveIncrease { id, limit } => Task::Decide { id, approve: true, limit },
            Admin::DenyIncrease { id } => Task::Decide { id, approve: false, limit: None },
            Admin::Increases { all } => Task::ListIncreases { all },
            Admin::Usage { month } => Task::Usage { month },
        }
    }
}

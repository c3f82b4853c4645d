//! The `sheetsync` command line: parsing, wiring and exit codes only.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sheetsync::config::Config;
use sheetsync::engine::{Engine, SyncOptions};
use sheetsync::mapping;
use sheetsync::mapping::conventions::ReadSettings;
use sheetsync::progress::Progress;
use sheetsync::schedule::Schedule;
use sheetsync::source::{GoogleCheck, SourceSpec, Sources};
use sheetsync::syncs::{self, Resolution, SyncTarget};

#[derive(Debug, Parser)]
#[command(
    name = "sheetsync",
    version,
    about = "Keeps MongoDB in step with the spreadsheets people edit"
)]
struct Cli {
    /// TOML configuration file (environment variables override it).
    #[arg(long, global = true, env = "SHEETSYNC_CONFIG")]
    config: Option<PathBuf>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SHEETSYNC_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sync every view (or the named ones) once, and report.
    Sync {
        /// A view to sync, by name; repeat for several. Default: all.
        #[arg(long = "view", value_name = "NAME")]
        views: Vec<String>,
        /// Read, map and compare, but write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply even if the new data is much smaller than the current data.
        #[arg(long)]
        force: bool,
        /// Print the report as JSON (and no progress line).
        #[arg(long)]
        json: bool,
        /// No progress line, even on a terminal.
        #[arg(long)]
        quiet: bool,
        /// When another process (a daemon, another sync) is syncing a view,
        /// wait up to this many seconds for it to finish instead of failing
        /// that view at once.
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        wait: u64,
    },
    /// Create every index the schema recommends (idempotent).
    EnsureIndexes,
    /// Validate the configuration, reach MongoDB and list the views.
    Check,
    /// Print the effective target profiles (built in, and `[[targets]]`),
    /// each as the TOML that declares it.
    Targets,
    /// Run as a service: scheduled syncs, signals, HTTP health/metrics/admin.
    Run,
    /// Print the schedule's next fire times (in its zone, then in UTC).
    NextRuns {
        /// How many fire times to print.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Start after this moment (RFC 3339) instead of now.
        #[arg(long, value_name = "RFC3339")]
        from: Option<String>,
    },
    /// Print a fresh admin token (256 random bits) and nothing else:
    /// `sheetsync token > /etc/sheetsync/admin-token`.
    Token,
    /// Exit 0 when a running daemon answers on /healthz (container checks).
    Health {
        /// The URL to probe; default: /healthz on the configured listen address.
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours_wanted());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Colours only where a person reads them: stderr is a terminal and
/// `NO_COLOR` (no-color.org) is not set. A log file, a pipe or journald
/// gets plain text.
fn colours_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Needs no configuration: it is how one is started.
    if let Command::Token = cli.command {
        return print_token();
    }
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Sync {
            views,
            dry_run,
            force,
            json,
            quiet,
            wait,
        } => {
            let engine = engine(config).await?;
            let options = SyncOptions {
                dry_run,
                force,
                ..SyncOptions::default()
            };
            let progress = options.progress.clone();
            let syncing = engine.sync_exclusive(&views, options, std::time::Duration::from_secs(wait));
            let show = !json && !quiet && std::io::stdout().is_terminal();
            let reports = with_progress_line(&progress, show, syncing).await?;
            if json {
                let all_ok = reports.iter().all(|report| report.succeeded());
                let body = serde_json::json!({ "ok": all_ok, "views": reports });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&body).context("encoding the report as JSON")?
                );
            } else {
                print!("{}", sheetsync::report::render_text(&reports));
            }
            Ok(exit_code(reports.iter().all(|report| report.succeeded())))
        }
        Command::EnsureIndexes => {
            let engine = engine(config).await?;
            let plans = syncs::load_plans(&engine.db, &engine.config.syncs_config()).await?;
            let (touched, conflicts) = engine.ensure_indexes(&plans).await?;
            println!("indexes in place on: {}", touched.join(", "));
            for conflict in &conflicts {
                println!("left as it is: {conflict}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Targets => {
            print!("{}", describe_targets(&config)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => check(config).await,
        Command::Run => {
            sheetsync::daemon::run(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::NextRuns { count, from } => next_runs(&config, count, from.as_deref()),
        Command::Health { url } => health(&config, url).await,
        Command::Token => print_token(),
    }
}

/// Runs `work`, showing `progress` as one line on the terminal (when
/// `show`), redrawn a few times a second and cleared before the report.
async fn with_progress_line<T>(progress: &Progress, show: bool, work: impl Future<Output = T>) -> T {
    if !show {
        return work.await;
    }
    let line = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout_with_hz(5));
    line.set_style(ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    tokio::pin!(work);
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                if let Some(now) = progress.snapshot() {
                    line.set_message(now.describe());
                }
            }
        }
    };
    line.finish_and_clear();
    result
}

/// `sheetsync token`: a fresh admin token on stdout, nothing else.
fn print_token() -> anyhow::Result<ExitCode> {
    println!("{}", sheetsync::config::new_admin_token().map_err(anyhow::Error::msg)?);
    Ok(ExitCode::SUCCESS)
}

fn next_runs(config: &Config, count: usize, from: Option<&str>) -> anyhow::Result<ExitCode> {
    let schedule = Schedule::parse(&config.daemon.schedule, &config.daemon.time_zone)?;
    let from = match from {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("--from {text:?} is not an RFC 3339 time like 2027-03-28T00:00:00+01:00"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    for time in schedule.upcoming(from, count) {
        println!(
            "{} {}",
            time.to_rfc3339(),
            time.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn health(config: &Config, url: Option<String>) -> anyhow::Result<ExitCode> {
    let url = url.unwrap_or_else(|| {
        let listen = config
            .daemon
            .listen
            .replace("0.0.0.0:", "127.0.0.1:")
            .replace("[::]:", "[::1]:");
        format!("http://{listen}/healthz")
    });
    sheetsync::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => {
            println!("{url}: {}", response.status());
            Ok(ExitCode::SUCCESS)
        }
        Ok(response) => {
            println!("{url}: {}", response.status());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            println!("{url}: {}", error.without_url());
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn engine(config: Config) -> anyhow::Result<Engine> {
    let db = config.connect().await?;
    let sources = config.sources()?;
    Ok(Engine::new(db, config, sources))
}

/// Every effective profile, as TOML, headed by where it comes from.
fn describe_targets(config: &Config) -> anyhow::Result<String> {
    let mut out = String::new();
    for declared in config.targets.iter() {
        let text = toml::to_string(&declared.declaration)
            .with_context(|| format!("printing target {:?}", declared.profile.name))?;
        out.push_str(&format!(
            "# target {:?}: {}\n{text}\n",
            declared.profile.name, declared.provenance
        ));
    }
    Ok(out)
}

/// Prints what sheetsync would do, and exits non-zero on any problem.
async fn check(config: Config) -> anyhow::Result<ExitCode> {
    println!("config: ok");
    let db = config.connect().await?;
    println!(
        "MongoDB: reachable at {} (database `{}`)",
        config.redacted_mongo_url(),
        config.db_name
    );
    let plans = syncs::load_plans(&db, &config.syncs_config()).await?;
    if plans.is_empty() {
        println!(
            "views: none in `{}`; nothing to sync",
            sheetsync::store::views::VIEWS_COLLECTION
        );
        return Ok(ExitCode::FAILURE);
    }
    let sources = config.sources()?;
    let mut problems = 0;
    for plan in &plans {
        let summary = plan.summary();
        let mut status = summary.status.clone();
        if let Resolution::Sync(target) = &plan.resolution {
            match source_problem(&sources, &target.source, &target.read_settings).await {
                Ok(Some(detail)) => status = format!("{status}; {detail}"),
                Ok(None) => {}
                Err(problem) => status = format!("error: {problem}"),
            }
        }
        if status.starts_with("error") {
            problems += 1;
        }
        println!(
            "view {:?} (id {}): {} <- {}: {status}",
            summary.name,
            summary.view_id,
            summary.collection.as_deref().unwrap_or("-"),
            summary.source.as_deref().unwrap_or("-"),
        );
        if let (Resolution::Sync(target), false) = (&plan.resolution, status.starts_with("error")) {
            match describe_columns(&sources, target).await {
                Ok(lines) => lines.iter().for_each(|line| println!("  {line}")),
                Err(problem) => {
                    problems += 1;
                    println!("  error: {problem}");
                }
            }
        }
    }
    println!("{} view(s), {problems} problem(s)", plans.len());
    Ok(exit_code(problems == 0))
}

/// Which column feeds which field, the unmapped labels, and the field each
/// one looks most like: read from the source's header.
async fn describe_columns(sources: &Sources, target: &SyncTarget) -> Result<Vec<String>, String> {
    let rows = sources.fetch(&target.source).await.map_err(|error| error.to_string())?;
    let profile = &target.profile;
    let (row, header) = mapping::header_of(profile, &rows).map_err(|error| error.to_string())?;
    let mapped: Vec<String> = header
        .iter()
        .filter_map(|column| Some(format!("{} -> {}", column.label, column.field.as_ref()?)))
        .collect();
    let unmapped: Vec<String> = header
        .iter()
        .filter(|column| column.field.is_none())
        .map(|column| match mapping::closest_field(profile, &column.label) {
            Some(field) => format!("{} (closest field: {field})", column.label),
            None => format!("{} (no close field)", column.label),
        })
        .collect();
    let mut lines = vec![format!("header (row {row}): {}", mapped.join(", "))];
    if !unmapped.is_empty() {
        lines.push(format!("unmapped: {}", unmapped.join(", ")));
    }
    Ok(lines)
}

/// What would stop a source from being read, where it can be told without
/// fetching its rows; on success, what was verified, if worth saying.
async fn source_problem(sources: &Sources, source: &SourceSpec, read: &ReadSettings) -> Result<Option<String>, String> {
    match source {
        SourceSpec::File { path, sheet_name } => sources
            .check_file(path, sheet_name.as_deref())
            .await
            .map(|workbook| workbook.map(|found| found.summary()))
            .map_err(|error| error.to_string()),
        SourceSpec::Download { .. } => Ok(None),
        SourceSpec::GoogleSheet(sheet) => sources
            .check_google(sheet)
            .await
            .map(|checked| Some(describe_google_check(&checked, read)))
            .map_err(|error| error.to_string()),
    }
}

/// What `check` says of a reachable Google link.
fn describe_google_check(checked: &GoogleCheck, read: &ReadSettings) -> String {
    let (found, reached) = match checked {
        GoogleCheck::Spreadsheet(found) => {
            let zone = found.time_zone.unwrap_or(read.time_zone);
            let zones = match (read.zone_is_the_syncs, zone == read.time_zone) {
                (_, true) => String::new(),
                (false, false) => format!(
                    " (its date-times are read in {zone}; text date-times, as in its CSV export, in {}, the \
                     configured time_zone)",
                    read.time_zone
                ),
                (true, false) => format!(" (this sync's time_zone {} is used instead)", read.time_zone),
            };
            let reached = format!(
                "spreadsheet reachable, tab {:?} found, time zone {zone}{zones}",
                found.tab
            );
            (found, reached)
        }
        GoogleCheck::OfficeFile { credentials, workbook } => {
            let reached = match workbook {
                Some(tabs) => format!("an Office file on Drive, downloaded: {}", tabs.summary()),
                None => "a CSV file on Drive, downloaded".to_owned(),
            };
            (credentials, reached)
        }
    };
    format!(
        "{} from {} acts as {}; {reached}",
        found.credential_kind, found.credential_origin, found.identity
    )
}

fn exit_code(success: bool) -> ExitCode {
    if success { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

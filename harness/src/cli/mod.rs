//! The `authlab` command line.

#[macro_use]
mod output;
pub mod diagnose;
pub mod lab;

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::{
    case::load,
    case::matrix::ClusterKind,
    cleanup,
    lab::{Lab, LabOptions, Runtime},
    report::{self, summary::Style},
    runner, select,
    server::binary::BinaryCache,
    settings,
    trial::Verdict,
};

fn env_help() -> String {
    let mut s = String::from("Environment variables:\n");
    for (k, v) in settings::ENV_VARS {
        s.push_str(&format!("  {k:<24} {v}\n"));
    }
    s
}

/// authlab: reproduce and test Vault/OpenBao Kubernetes and JWT auth setups.
#[derive(Parser, Debug)]
#[command(name = "authlab", version, about, after_help = env_help())]
pub struct Cli {
    /// Print less: only trials that did not pass, and no "still running" lines.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more: debug lines of what authlab does (-vv: trace). AUTHLAB_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// What `--format` prints on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
enum Format {
    /// Text for people.
    #[default]
    Human,
    /// JSON for scripts.
    Json,
}

/// Exit codes of `authlab run` (and of the other commands where they apply).
const EXIT_HELP: &str = "Exit codes: 0 every trial that ran passed; 1 a trial failed or errored, or a required \
requirement was missing (CI=true, AUTHLAB_REQUIRE); 2 bad input (flags, case files, servers); \
4 no trial ran (none matched, or every one was ignored) unless --allow-empty; 130/143 interrupted \
by SIGINT/SIGTERM.";

#[derive(Subcommand, Debug)]
enum Command {
    /// List the cases (a table; --names prints one case name per line).
    List {
        /// Case directory.
        #[arg(long, env = "AUTHLAB_CASES")]
        cases: Option<PathBuf>,
        /// One case name per line, nothing else.
        #[arg(long)]
        names: bool,
        /// Only cases whose login is expected to pass or to fail.
        #[arg(long, value_parser = ["pass", "fail"])]
        expected: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Validate case files without running them.
    Check {
        /// Case directory.
        #[arg(long, env = "AUTHLAB_CASES")]
        cases: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Run the matrix, or the trials whose name contains one of FILTERS.
    #[command(after_help = EXIT_HELP)]
    Run(RunArgs),
    /// Download (or verify) server binaries into the cache.
    Provision {
        /// Servers, e.g. openbao:2.7.2 (default: the selected servers).
        #[arg(long)]
        servers: Option<String>,
    },
    /// A long-lived lab (servers that test runs attach to).
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// The sim cluster on its own.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Decode a JWT (argument or `-` for standard input) and show its claims and times.
    Explain {
        /// The token, or `-` to read it from standard input.
        token: String,
    },
    /// Name the likely cause of a failed login from an audit entry, the server log, the JWT
    /// and/or the mount's config and role, with the fix.
    Diagnose(diagnose::DiagnoseArgs),
    /// Remove every process, container, network, Kind cluster and scratch directory authlab
    /// created, including leftovers of crashed runs.
    Clean {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Also remove the server images authlab built (a cache; rebuilt when needed).
        #[arg(long)]
        images: bool,
        /// Also remove what live runs and labs own (they are left alone otherwise).
        #[arg(long)]
        force: bool,
    },
    /// Merge the reports of several runs (the folders `run --report` wrote, or their
    /// matrix.json files) into one matrix report.
    Report {
        /// Report folders or matrix.json files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where to write the merged report.
        #[arg(long, short, default_value = "authlab-report")]
        out: PathBuf,
    },
    /// Print a shell completion script (e.g. `authlab completions bash > ~/.local/share/bash-completion/completions/authlab`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of case files.
    Schema,
    /// The watchdog a run starts for itself (removes what the run leaves if it is killed).
    #[command(name = "__watch", hide = true)]
    Watch,
    /// Export a case's server-side configuration.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Start the servers and serve until Ctrl-C or `authlab lab down`.
    Up {
        /// Servers, e.g. openbao:2.7.2 (default: the selected servers).
        #[arg(long)]
        servers: Option<String>,
        /// Print each server's start-up time (spawn → ready).
        #[arg(long)]
        timings: bool,
        /// Where the servers run (default: AUTHLAB_RUNTIME, else process).
        #[arg(long, value_enum)]
        runtime: Option<Runtime>,
    },
    /// Start each server once, print its start-up time, stop it.
    Timings {
        /// Servers (default: the selected servers).
        #[arg(long)]
        servers: Option<String>,
        /// Where the servers run (default: AUTHLAB_RUNTIME, else process).
        #[arg(long, value_enum)]
        runtime: Option<Runtime>,
    },
    /// Stop the running lab.
    Down,
    /// Show the running lab's servers and their health.
    Status,
}

#[derive(Subcommand, Debug)]
enum ExportCommand {
    /// Terraform (Vault provider resources) for the case's auth mount, config, role and policy.
    Terraform {
        /// Case name (as `authlab list` shows it).
        case: String,
        /// Case directory.
        #[arg(long, env = "AUTHLAB_CASES")]
        cases: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum SimCommand {
    /// Run the sim cluster in the foreground and write an admin kubeconfig.
    Serve {
        /// Where to write the kubeconfig.
        #[arg(long)]
        kubeconfig_out: Option<PathBuf>,
        /// Port (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

/// Parses the command line and runs the command; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::progress::init(match cli.verbose {
        0 if cli.quiet => Some("warn"),
        0 => None,
        1 => Some("debug"),
        _ => Some("trace"),
    });
    let style = output::style(cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authlab: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli.command, style)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authlab: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cmd: Command, style: Style) -> Result<ExitCode> {
    match cmd {
        Command::List {
            cases,
            names,
            expected,
            format,
        } => list(cases, names, expected.as_deref(), format),
        Command::Check { cases, format } => check(cases, format),
        Command::Run(a) => run(a, style).await,
        Command::Report { inputs, out } => merge_reports(&inputs, &out),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "authlab", &mut buf);
            out!("{}", String::from_utf8_lossy(&buf));
            Ok(ExitCode::SUCCESS)
        }
        Command::Lab { command } => match command {
            LabCommand::Up {
                servers,
                timings,
                runtime,
            } => lab::up(servers.as_deref(), timings, runtime).await,
            LabCommand::Down => lab::down().await,
            LabCommand::Timings { servers, runtime } => {
                lab::timings(servers.as_deref(), runtime).await
            }
            LabCommand::Status => lab::status().await,
        },
        Command::Provision { servers } => provision(servers.as_deref()).await,
        Command::Sim {
            command:
                SimCommand::Serve {
                    kubeconfig_out,
                    port,
                },
        } => {
            let cfg = crate::sim::SimConfig {
                port,
                ..Default::default()
            };
            crate::sim::serve_foreground(cfg, kubeconfig_out.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { token } => explain(&token),
        Command::Diagnose(a) => diagnose::run(a).await,
        Command::Clean {
            dry_run,
            images,
            force,
        } => clean(dry_run, images, force).await,
        Command::Export {
            command: ExportCommand::Terraform { case, cases },
        } => {
            let dir = cases_dir(cases);
            let file = load::file_for_name(&dir, &case).with_context(|| {
                format!(
                    "no case named {case} under {} (see `authlab list --names`)",
                    dir.display()
                )
            })?;
            let lc = load::load_file(&dir, &file).map_err(|e| anyhow::anyhow!("{e}"))?;
            out!("{}", crate::export::terraform(&lc.name, &lc.case)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch => {
            crate::watchdog::serve().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            out!("{}", crate::case::schema::case_schema_json());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cases_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(select::default_cases_dir)
}

fn load_all(dir: &std::path::Path) -> Result<Vec<load::LoadedCase>> {
    load::load_dir(dir).map_err(|errs| {
        anyhow::anyhow!(
            "{} case file(s) are invalid:\n{}",
            errs.len(),
            errs.iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// A case's value as the word case files use (`client-token`, `outside`).
fn word<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "-".into())
}

fn list(
    cases: Option<PathBuf>,
    names: bool,
    expected: Option<&str>,
    format: Format,
) -> Result<ExitCode> {
    let dir = cases_dir(cases);
    let all = load_all(&dir)?;
    let selected: Vec<_> = all
        .iter()
        .filter(|c| match expected {
            Some("fail") => c.case.expects_failure(),
            Some("pass") => !c.case.expects_failure(),
            _ => true,
        })
        .collect();
    if format == Format::Json {
        let rows: Vec<serde_json::Value> = selected
            .iter()
            .map(|c| {
                let k = &c.case;
                serde_json::json!({
                    "name": c.name,
                    "file": c.path.display().to_string(),
                    "auth": word(k.auth),
                    "mode": k.mode.map(word),
                    "topology": word(k.topology),
                    "expect": if k.expects_failure() { "fail" } else { "pass" },
                    "observed_on": k.observed_on,
                    "about": k.about.split_whitespace().collect::<Vec<_>>().join(" "),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if names {
        for c in &selected {
            outln!("{}", c.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let width = selected.iter().map(|c| c.name.len()).max().unwrap_or(4);
    outln!(
        "{:<width$}  {:<10} {:<13} {:<8} {:<6} about",
        "case",
        "auth",
        "mode",
        "topology",
        "expect"
    );
    for c in &selected {
        let k = &c.case;
        let mode = k
            .mode
            .and_then(|m| serde_json::to_value(m).ok())
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "-".into());
        let about: String = k.about.split_whitespace().collect::<Vec<_>>().join(" ");
        let about: String = about.chars().take(70).collect();
        outln!(
            "{:<width$}  {:<10} {:<13} {:<8} {:<6} {}",
            c.name,
            format!("{:?}", k.auth).to_lowercase(),
            mode,
            format!("{:?}", k.topology).to_lowercase(),
            if k.expects_failure() { "fail" } else { "pass" },
            about
        );
    }
    let failing = selected.iter().filter(|c| c.case.expects_failure()).count();
    outln!(
        "\n{} cases ({} expected to fail, {} to pass) in {}",
        selected.len(),
        failing,
        selected.len() - failing,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn check(cases: Option<PathBuf>, format: Format) -> Result<ExitCode> {
    let dir = cases_dir(cases);
    let result = load::load_dir(&dir);
    if format == Format::Json {
        let (valid, errors) = match &result {
            Ok(all) => (all.len(), Vec::new()),
            Err(errs) => (0, errs.iter().map(|e| e.to_string()).collect()),
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "directory": dir.display().to_string(),
                "valid": errors.is_empty(),
                "cases": valid,
                "errors": errors,
            }))?
        );
        return Ok(ExitCode::from(if errors.is_empty() { 0 } else { 1 }));
    }
    match result {
        Ok(all) => {
            for c in &all {
                for (key, gaps) in c.case.override_gaps() {
                    eprintln!(
                        "{}: warning: flavours.\"{key}\" replaces `expect` as a whole and has no {}: {} not checked on the servers it matches (repeat {} in it to check {})",
                        c.path.display(),
                        gaps.join(", "),
                        if gaps.len() == 1 { "it is" } else { "they are" },
                        if gaps.len() == 1 { "it" } else { "them" },
                        if gaps.len() == 1 { "it" } else { "them" },
                    );
                }
            }
            eprintln!("{} case files are valid ({})", all.len(), dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            for e in &errs {
                eprintln!("{e}");
            }
            eprintln!("{} invalid case file(s)", errs.len());
            Ok(ExitCode::from(1))
        }
    }
}

/// The flags of `authlab run`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Substrings of trial names to run (any of them; all trials when none).
    filters: Vec<String>,
    /// Filters are whole trial names.
    #[arg(long)]
    exact: bool,
    /// Leave out trials whose name contains this (repeatable).
    #[arg(long, value_name = "FILTER")]
    skip: Vec<String>,
    /// Only cases of this auth method.
    #[arg(long, value_parser = ["kubernetes", "jwt"])]
    auth: Option<String>,
    /// Only cases of this Kubernetes auth mode.
    #[arg(long, value_parser = ["local-token", "client-token", "reviewer-jwt"])]
    mode: Option<String>,
    /// Only cases of this topology.
    #[arg(long, value_parser = ["outside", "inside"])]
    topology: Option<String>,
    /// Succeed when no trial ran (none matched, or all were ignored), as nextest's
    /// `--no-tests=pass`.
    #[arg(long)]
    allow_empty: bool,
    /// Write what the servers answered into each selected case file (expect, flavours per
    /// server where they differ, observed_on), as snapshot tests record snapshots; the rest of
    /// the file is kept.
    #[arg(long)]
    bless: bool,
    /// Also show what passing trials observed.
    #[arg(long)]
    show_observed: bool,
    /// Write the matrix report (matrix.json, matrix.md, index.html) into this directory.
    #[arg(long, env = "AUTHLAB_REPORT", value_name = "DIR")]
    report: Option<PathBuf>,
    /// Output format of the summary on standard output (json: the matrix.json document).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Case directory.
    #[arg(long, env = "AUTHLAB_CASES")]
    cases: Option<PathBuf>,
    /// Servers, e.g. openbao:2.7.2,openbao:2.6.1,vault:1.21.1.
    #[arg(long)]
    servers: Option<String>,
    /// Cluster (default: AUTHLAB_CLUSTER, else sim).
    #[arg(long, value_enum)]
    cluster: Option<ClusterKind>,
    /// Where shared servers run (default: AUTHLAB_RUNTIME, else process).
    #[arg(long, value_enum)]
    runtime: Option<Runtime>,
    /// Write JUnit XML here.
    #[arg(long, env = "AUTHLAB_JUNIT")]
    junit: Option<PathBuf>,
    /// Write artifacts of failed trials under this directory (default: ./authlab-artifacts).
    #[arg(long, env = "AUTHLAB_ARTIFACTS")]
    artifacts: Option<PathBuf>,
    /// Keep scratch files (server data and logs).
    #[arg(long)]
    keep: bool,
    /// Trials at once.
    #[arg(long, default_value_t = 8)]
    jobs: usize,
}

/// Exit code of a run in which no trial ran.
const NO_TRIAL_RAN: u8 = 4;

async fn run(a: RunArgs, style: Style) -> Result<ExitCode> {
    let filter = runner::Filter {
        patterns: a.filters,
        exact: a.exact,
        skip: a.skip,
        auth: a.auth,
        mode: a.mode,
        topology: a.topology,
    };
    // First: a signal from here on takes the ordered way out (and exits 130/143).
    cleanup::install_signal_handler(&tokio::runtime::Handle::current());
    let dir = cases_dir(a.cases);
    let servers = select::servers(a.servers.as_deref())?;
    let cluster = select::cluster(a.cluster)?;
    let trials = filter.apply(runner::load_trials(&dir, &servers, cluster)?);
    if trials.is_empty() {
        eprintln!(
            "authlab: no trial matches {} (see `authlab list` for case names; trial names are <case>::<flavour>-<version>)",
            if filter.patterns.is_empty() {
                "the selection".to_string()
            } else {
                format!("{:?}", filter.patterns)
            }
        );
        return Ok(if a.allow_empty {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(NO_TRIAL_RAN)
        });
    }
    let mut opts = LabOptions::new(cluster);
    opts.runtime = select::runtime(a.runtime)?;
    opts.keep = a.keep || settings::keep();
    opts.artifacts_dir = Some(a.artifacts.unwrap_or_else(select::artifacts_dir));
    let run_id = opts.run_id.clone();
    eprintln!(
        "authlab: run {} — {} trials, servers {}, cluster {}",
        opts.run_id,
        trials.len(),
        servers
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(","),
        cluster.as_str()
    );
    let lab = Arc::new(Lab::new(opts)?);
    let started_at = std::time::SystemTime::now();
    let started = Instant::now();
    let mut outcomes = runner::run_all(lab.clone(), trials, a.jobs, style).await;
    let wall = started.elapsed();
    lab.shutdown().await;
    cleanup::cleanup_now();
    // A requirement CI=true or AUTHLAB_REQUIRE asks for fails the trial that lacked it.
    for o in &mut outcomes {
        if let (Verdict::Ignored(r), Some(what)) = (&o.verdict, o.requirement)
            && settings::required(what)
        {
            o.verdict = Verdict::Failed(vec![format!(
                "required but not available ({what}; CI=true or AUTHLAB_REQUIRE): {r}"
            )]);
        }
    }
    let matrix = report::matrix::Matrix::of_run(
        report::matrix::RunInfo {
            run_id,
            started: humantime::format_rfc3339_seconds(started_at).to_string(),
            wall_ms: wall.as_millis() as u64,
            servers: servers.iter().map(|s| s.to_string()).collect(),
            cluster: cluster.as_str().to_string(),
        },
        &outcomes,
    );
    match a.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&matrix)?),
        Format::Human => {
            out!("{}", report::summary::render(&outcomes, wall, style));
            if a.show_observed {
                for o in &outcomes {
                    if let Some(sig) = &o.observed {
                        outln!("{} observed:", o.name);
                        for (k, v) in sig.fields() {
                            outln!("    {k}: {v}");
                        }
                    }
                }
            }
        }
    }
    if a.bless {
        return bless(&outcomes);
    }
    if a.format == Format::Human {
        let mut shown = Vec::new();
        for t in &matrix.trials {
            if let Some(d) = &t.difference
                && !shown.contains(&(&t.case, &d.key))
            {
                shown.push((&t.case, &d.key));
                outln!(
                    "\n{} on {} differs: {}. What {} answered, as a block for the case file:\n{}",
                    t.case,
                    d.servers.join(", "),
                    d.because,
                    if d.servers.len() == 1 { "it" } else { "they" },
                    d.block
                );
            }
        }
    }
    let differences = matrix.counts().differences;
    if differences > 0 {
        eprintln!(
            "authlab: {differences} failed trial(s) only answer differently from the server their expectations were written for{}",
            if a.report.is_some() {
                "; the report holds a flavours block for each"
            } else {
                "; the blocks above hold what they answered"
            }
        );
    }
    if let Some(path) = a.junit {
        report::junit::write(&path, "authlab", &outcomes, None)?;
        eprintln!("authlab: JUnit written to {}", path.display());
    }
    if let Some(dir) = &a.report {
        matrix.write(dir)?;
        eprintln!(
            "authlab: report written to {} (matrix.json, matrix.md, index.html)",
            dir.display()
        );
    }
    let bad = outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::Failed(_) | Verdict::Error(_)));
    let ran = outcomes
        .iter()
        .any(|o| !matches!(o.verdict, Verdict::Ignored(_)));
    Ok(if bad {
        ExitCode::from(1)
    } else if !ran && !a.allow_empty {
        let mut reasons: Vec<&str> = outcomes
            .iter()
            .filter_map(|o| match &o.verdict {
                Verdict::Ignored(r) => Some(r.as_str()),
                _ => None,
            })
            .collect();
        reasons.sort();
        reasons.dedup();
        eprintln!(
            "authlab: no trial ran: every selected trial was ignored ({}); --allow-empty accepts that",
            reasons.into_iter().take(3).collect::<Vec<_>>().join("; ")
        );
        ExitCode::from(NO_TRIAL_RAN)
    } else {
        ExitCode::SUCCESS
    })
}

/// A case and what each server observed of it.
type Observations = (
    Arc<load::LoadedCase>,
    Vec<(String, report::signature::Signature)>,
);

/// Blesses every case the run observed; exit 0 when each was written or already held.
fn bless(outcomes: &[crate::trial::TrialOutcome]) -> Result<ExitCode> {
    let mut by_case: std::collections::BTreeMap<std::path::PathBuf, Observations> =
        std::collections::BTreeMap::new();
    let mut failed = false;
    for o in outcomes {
        let entry = by_case
            .entry(o.trial.case.path.clone())
            .or_insert_with(|| (o.trial.case.clone(), Vec::new()));
        match (&o.verdict, &o.observed) {
            (Verdict::Passed | Verdict::Failed(_), Some(sig)) => {
                entry.1.push((o.trial.server.to_string(), sig.clone()))
            }
            (Verdict::Ignored(_), _) => {}
            (other, _) => {
                failed = true;
                eprintln!(
                    "authlab: {}: not blessed on {}: the trial did not get as far as observing ({})",
                    o.trial.case.path.display(),
                    o.trial.server,
                    crate::report::summary::word(other)
                );
            }
        }
    }
    for (path, (case, observed)) in &by_case {
        if observed.is_empty() {
            continue;
        }
        let servers: Vec<&str> = observed.iter().map(|(s, _)| s.as_str()).collect();
        match crate::bless::bless(case, observed) {
            Ok(crate::bless::Outcome::Written) => eprintln!(
                "authlab: blessed {} with what {} answered",
                path.display(),
                servers.join(", ")
            ),
            Ok(crate::bless::Outcome::Unchanged) => eprintln!(
                "authlab: {} already holds what {} answered",
                path.display(),
                servers.join(", ")
            ),
            Err(e) => {
                failed = true;
                eprintln!("authlab: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn merge_reports(inputs: &[PathBuf], out: &std::path::Path) -> Result<ExitCode> {
    let parts = inputs
        .iter()
        .map(|p| report::matrix::Matrix::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = report::matrix::Matrix::merge(parts);
    let files = merged.write(out)?;
    eprintln!(
        "authlab: {} runs, {}",
        merged.runs.len(),
        merged.counts().sentence()
    );
    for f in files {
        outln!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn provision(servers: Option<&str>) -> Result<ExitCode> {
    let servers = select::servers(servers)?;
    let cache = BinaryCache::from_env()?;
    for spec in &servers {
        let progress = |line: &str| eprintln!("authlab: {spec}: {line}");
        let bin = cache.ensure(spec, &progress).await?;
        outln!("{spec}\t{}", bin.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(token: &str) -> Result<ExitCode> {
    let token = if token == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading the token from standard input")?;
        s
    } else {
        token.to_string()
    };
    let d = crate::jwt::decode_unverified(&token)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    out!("{}", d.render(now));
    if let Some((ns, name)) = d.service_account() {
        outln!("service account: {ns}/{name}");
    }
    outln!("audiences: {:?}", d.audiences());
    Ok(ExitCode::SUCCESS)
}

async fn clean(dry_run: bool, images: bool, force: bool) -> Result<ExitCode> {
    let found = cleanup::Leftovers::find(images, force).await?;
    for line in found.describe() {
        outln!("{line}");
    }
    if !dry_run {
        found.remove().await;
        // What the locks of killed runs proved orphaned is gone now.
        crate::runlock::remove_stale();
    }
    Ok(ExitCode::SUCCESS)
}

//! The `authlab` command line.

pub mod diagnose;
pub mod lab;

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::{
    case::load,
    case::matrix::ClusterKind,
    cleanup,
    lab::{Lab, LabOptions, Runtime},
    report, runner, select,
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
    #[command(subcommand)]
    command: Command,
}

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
    },
    /// Validate case files without running them.
    Check {
        /// Case directory.
        #[arg(long, env = "AUTHLAB_CASES")]
        cases: Option<PathBuf>,
    },
    /// Run the matrix (or the trials whose name contains FILTER).
    Run {
        /// Substring of trial names to run.
        filter: Option<String>,
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
        /// Write artifacts of failed trials under this directory.
        #[arg(long, env = "AUTHLAB_ARTIFACTS")]
        artifacts: Option<PathBuf>,
        /// Keep scratch files (server data and logs).
        #[arg(long)]
        keep: bool,
        /// Trials at once.
        #[arg(long, default_value_t = 8)]
        jobs: usize,
    },
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
    crate::progress::init();
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
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authlab: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List {
            cases,
            names,
            expected,
        } => list(cases, names, expected.as_deref()),
        Command::Check { cases } => check(cases),
        Command::Run {
            filter,
            cases,
            servers,
            cluster,
            runtime,
            junit,
            artifacts,
            keep,
            jobs,
        } => {
            run(RunArgs {
                filter,
                cases,
                servers,
                cluster,
                runtime,
                junit,
                artifacts,
                keep,
                jobs,
            })
            .await
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
            print!("{}", crate::export::terraform(&lc.name, &lc.case)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch => {
            crate::watchdog::serve().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            print!("{}", crate::case::schema::case_schema_json());
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

fn list(cases: Option<PathBuf>, names: bool, expected: Option<&str>) -> Result<ExitCode> {
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
    if names {
        for c in &selected {
            println!("{}", c.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let width = selected.iter().map(|c| c.name.len()).max().unwrap_or(4);
    println!(
        "{:<width$}  {:<10} {:<13} {:<8} {:<6} about",
        "case", "auth", "mode", "topology", "expect"
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
        println!(
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
    println!(
        "\n{} cases ({} expected to fail, {} to pass) in {}",
        selected.len(),
        failing,
        selected.len() - failing,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn check(cases: Option<PathBuf>) -> Result<ExitCode> {
    let dir = cases_dir(cases);
    match load::load_dir(&dir) {
        Ok(all) => {
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

struct RunArgs {
    filter: Option<String>,
    cases: Option<PathBuf>,
    servers: Option<String>,
    cluster: Option<ClusterKind>,
    runtime: Option<Runtime>,
    junit: Option<PathBuf>,
    artifacts: Option<PathBuf>,
    keep: bool,
    jobs: usize,
}

async fn run(a: RunArgs) -> Result<ExitCode> {
    // First: a signal from here on takes the ordered way out (and exits 130/143).
    cleanup::install_signal_handler(&tokio::runtime::Handle::current());
    let dir = cases_dir(a.cases);
    let servers = select::servers(a.servers.as_deref())?;
    let cluster = select::cluster(a.cluster)?;
    let trials = runner::filter(
        runner::load_trials(&dir, &servers, cluster)?,
        a.filter.as_deref(),
    );
    if trials.is_empty() {
        bail!(
            "no trial matches {:?} (see `authlab list` for case names)",
            a.filter.unwrap_or_default()
        );
    }
    let mut opts = LabOptions::new(cluster);
    opts.runtime = select::runtime(a.runtime)?;
    opts.keep = a.keep || settings::keep();
    opts.artifacts_dir = Some(a.artifacts.unwrap_or_else(select::artifacts_dir));
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
    let started = Instant::now();
    let outcomes = runner::run_all(lab.clone(), trials, a.jobs).await;
    let wall = started.elapsed();
    lab.shutdown().await;
    cleanup::cleanup_now();
    println!("{}", report::summary::render(&outcomes, wall));
    if let Some(path) = a.junit {
        report::junit::write(&path, "authlab", &outcomes)?;
        eprintln!("authlab: JUnit written to {}", path.display());
    }
    let bad = outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::Failed(_) | Verdict::Error(_)));
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn provision(servers: Option<&str>) -> Result<ExitCode> {
    let servers = select::servers(servers)?;
    let cache = BinaryCache::from_env()?;
    for spec in &servers {
        let progress = |line: &str| eprintln!("authlab: {spec}: {line}");
        let bin = cache.ensure(spec, &progress).await?;
        println!("{spec}\t{}", bin.display());
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
    print!("{}", d.render(now));
    if let Some((ns, name)) = d.service_account() {
        println!("service account: {ns}/{name}");
    }
    println!("audiences: {:?}", d.audiences());
    Ok(ExitCode::SUCCESS)
}

async fn clean(dry_run: bool, images: bool, force: bool) -> Result<ExitCode> {
    let found = cleanup::Leftovers::find(images, force).await?;
    for line in found.describe() {
        println!("{line}");
    }
    if !dry_run {
        found.remove().await;
        // What the locks of killed runs proved orphaned is gone now.
        crate::runlock::remove_stale();
    }
    Ok(ExitCode::SUCCESS)
}

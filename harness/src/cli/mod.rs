//! The `authlab` command line.

#[macro_use]
mod output;
pub mod diagnose;
pub mod lab;
mod merge;
mod pending;
mod run;
mod watch;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::{
    case::load, cleanup, lab::Runtime, report::summary::Style, select, server::binary::BinaryCache,
    settings,
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
#[command(name = "authlab", version = crate::VERSION, about, after_help = env_help())]
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
    Run(run::RunArgs),
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
        /// The token, `-` to read it from standard input, or `@FILE` (a `Bearer ` prefix is
        /// dropped), as `diagnose --jwt` takes it.
        token: String,
        /// Output format (json: header, claims, service account, audiences and times).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
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
        /// Also remove what live runs and labs own, what runs whose lock is not visible here
        /// left, and `authlab-*` Kind clusters (all left alone otherwise).
        #[arg(long)]
        force: bool,
        /// Only what run ID left (its id, as `authlab: run <ID>` printed it).
        #[arg(long, value_name = "ID")]
        run: Option<String>,
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
        /// Merge runs of different case files or authlab builds too (refused otherwise: their
        /// trials do not compare); the report says how they differ.
        #[arg(long)]
        mixed: bool,
    },
    /// Print a shell completion script, which completes subcommands, flags and case names by
    /// asking authlab (e.g. `authlab completions bash > ~/.local/share/bash-completion/completions/authlab`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Review, accept or reject what `run --bless` recorded (`<file>.new` beside each case).
    Bless {
        #[command(subcommand)]
        command: pending::BlessCommand,
    },
    /// Print the JSON Schema of case files.
    Schema,
    /// The watchdog a run starts for itself (removes what the run leaves if it is killed).
    #[command(name = crate::scope::WATCHDOG, hide = true)]
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
    /// Print `export VAULT_ADDR=… VAULT_TOKEN=…` (and the BAO_ forms) for a server of the
    /// running lab, for `eval "$(authlab lab env)"`: the root token is printed only here.
    Env {
        /// The server (default: the lab's first).
        server: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ExportCommand {
    /// Terraform (Vault provider resources) for the case's auth mount, config, role and policy.
    Terraform {
        /// Case name (as `authlab list` shows it).
        #[arg(add = clap_complete::ArgValueCompleter::new(case_names))]
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

/// The variable under which the shell asks authlab for completions.
const COMPLETE_VAR: &str = "AUTHLAB_COMPLETE";

/// Case names under the selected case directory that start with `current`, for the shell.
fn case_names(current: &std::ffi::OsStr) -> Vec<clap_complete::CompletionCandidate> {
    // A completion request ends the process before `main` reads the settings.
    let Ok(dir) = cases_dir(&crate::settings::Settings::from_env(), None) else {
        return Vec::new();
    };
    let prefix = current.to_string_lossy();
    let mut names: Vec<String> = crate::case::load::find_case_files(&dir)
        .unwrap_or_default()
        .iter()
        .map(|f| crate::case::load::case_name(&dir, f))
        .filter(|n| n.starts_with(prefix.as_ref()))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(clap_complete::CompletionCandidate::new)
        .collect()
}

/// The shell's registration script: completions of subcommands, flags and case names,
/// answered by `authlab` itself at each Tab.
fn completion_script(shell: clap_complete::Shell) -> Result<String> {
    use clap_complete::env::EnvCompleter;
    use clap_complete::{Shell, env};
    let completer: &dyn EnvCompleter = match shell {
        Shell::Bash => &env::Bash,
        Shell::Zsh => &env::Zsh,
        Shell::Fish => &env::Fish,
        Shell::Elvish => &env::Elvish,
        Shell::PowerShell => &env::Powershell,
        other => anyhow::bail!("no completions for {other}"),
    };
    let mut buf = Vec::new();
    let name = "authlab";
    completer.write_registration(COMPLETE_VAR, name, name, name, &mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Parses the command line and runs the command; returns the process exit code.
pub fn main() -> ExitCode {
    // A shell asking for completions (see `authlab completions`) is answered and nothing else.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command)
        .var(COMPLETE_VAR)
        .complete();
    let cli = Cli::parse();
    // Read once, here: every command is handed these.
    let settings = crate::settings::Settings::from_env();
    crate::progress::init(
        settings.log.as_deref(),
        crate::progress::verbosity(cli.verbose, cli.quiet).as_deref(),
    );
    let style = output::style(cli.quiet, settings.no_color);
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
    match runtime.block_on(dispatch(cli.command, style, &settings)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authlab: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cmd: Command, style: Style, s: &crate::settings::Settings) -> Result<ExitCode> {
    match cmd {
        Command::List {
            cases,
            names,
            expected,
            format,
        } => list(s, cases, names, expected.as_deref(), format),
        Command::Check { cases, format } => check(s, cases, format),
        Command::Run(a) => run::run(a, style, s).await,
        Command::Report { inputs, out, mixed } => merge::merge_reports(&inputs, &out, mixed),
        Command::Bless { command } => pending::run(command, s),
        Command::Completions { shell } => {
            out!("{}", completion_script(shell)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Lab { command } => match command {
            LabCommand::Up {
                servers,
                timings,
                runtime,
            } => lab::up(s, servers.as_deref(), timings, runtime).await,
            LabCommand::Down => lab::down(s).await,
            LabCommand::Timings { servers, runtime } => {
                lab::timings(s, servers.as_deref(), runtime).await
            }
            LabCommand::Status => lab::status(s).await,
            LabCommand::Env { server } => lab::env(s, server.as_deref()),
        },
        Command::Provision { servers } => provision(s, servers.as_deref()).await,
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
        Command::Explain { token, format } => explain(&token, format),
        Command::Diagnose(a) => diagnose::run(a, s).await,
        Command::Clean {
            dry_run,
            images,
            force,
            run,
        } => clean(s, dry_run, images, force, run.as_deref()).await,
        Command::Export {
            command: ExportCommand::Terraform { case, cases },
        } => {
            let dir = cases_dir(s, cases)?;
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
            watch::serve(s).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            out!("{}", crate::case::schema::case_schema_json());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cases_dir(s: &crate::settings::Settings, flag: Option<PathBuf>) -> Result<PathBuf> {
    match flag {
        Some(d) => {
            // Found also for a directory of the user's: their cases may name shipped manifests.
            if let Err(e) = crate::shipped::locate(s) {
                tracing::debug!("the shipped catalog: {e:#}");
            }
            Ok(d)
        }
        None => select::default_cases_dir(s).context("finding the shipped catalog"),
    }
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
    s: &crate::settings::Settings,
    cases: Option<PathBuf>,
    names: bool,
    expected: Option<&str>,
    format: Format,
) -> Result<ExitCode> {
    let dir = cases_dir(s, cases)?;
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

fn check(
    s: &crate::settings::Settings,
    cases: Option<PathBuf>,
    format: Format,
) -> Result<ExitCode> {
    let dir = cases_dir(s, cases)?;
    let result = load::load_dir(&dir);
    if s.github_actions
        && format == Format::Human
        && let Err(errs) = &result
    {
        for e in errs {
            outln!("{}", e.github_annotation());
        }
    }
    if format == Format::Json {
        let (valid, errors) = match &result {
            Ok(all) => (all.len(), Vec::new()),
            Err(errs) => (0, errs.iter().map(|e| e.to_json()).collect()),
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
        return Ok(ExitCode::from(if errors.is_empty() { 0 } else { 2 }));
    }
    match result {
        Ok(all) => {
            for c in &all {
                for (key, gaps) in c.case.override_gaps() {
                    eprintln!(
                        "{}: warning: {key} replaces `expect` as a whole and has no {}: {} not checked on the servers it matches (repeat {} in it to check {})",
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
            let files: std::collections::BTreeSet<_> = errs.iter().map(|e| &e.file).collect();
            eprintln!(
                "{} problem(s) in {} invalid case file(s)",
                errs.len(),
                files.len()
            );
            Ok(ExitCode::from(2))
        }
    }
}

async fn provision(s: &crate::settings::Settings, servers: Option<&str>) -> Result<ExitCode> {
    let servers = select::servers(s, servers)?;
    let cache = BinaryCache::new(s)?;
    for spec in &servers {
        let progress = |line: &str| eprintln!("authlab: {spec}: {line}");
        let bin = cache.ensure(spec, &progress).await?;
        outln!("{spec}\t{}", bin.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(token: &str, format: Format) -> Result<ExitCode> {
    let text = diagnose::read_text("the token", token)?;
    let d = crate::jwt::decode_unverified(&crate::diagnose::inputs::jwt_text(&text))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if format == Format::Json {
        let times: serde_json::Map<String, serde_json::Value> = ["iat", "nbf", "exp"]
            .into_iter()
            .filter_map(|k| {
                let t = d.claims[k].as_u64()?;
                Some((
                    k.to_string(),
                    serde_json::json!({
                        "at": humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)
                        ).to_string(),
                        "seconds_from_now": t as i64 - now as i64,
                    }),
                ))
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "header": d.header,
                "claims": d.claims,
                "service_account": d.service_account().map(|(namespace, name)| serde_json::json!({"namespace": namespace, "name": name})),
                "audiences": d.audiences(),
                "times": times,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    out!("{}", d.render(now));
    if let Some((ns, name)) = d.service_account() {
        outln!("service account: {ns}/{name}");
    }
    outln!("audiences: {:?}", d.audiences());
    Ok(ExitCode::SUCCESS)
}

async fn clean(
    s: &crate::settings::Settings,
    dry_run: bool,
    images: bool,
    force: bool,
    run: Option<&str>,
) -> Result<ExitCode> {
    let found = cleanup::Leftovers::find(s, images, force, run).await?;
    for line in found.describe() {
        outln!("{line}");
    }
    if !dry_run {
        found.remove().await;
        // What the locks of killed runs proved orphaned is gone now.
        crate::scope::remove_stale();
    }
    Ok(ExitCode::SUCCESS)
}

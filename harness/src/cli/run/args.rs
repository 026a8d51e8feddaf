//! The flags of `authlab run`, and what they make: the filter, the schedule, the lab's
//! options and the outputs written at the end.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::{
    case::matrix::ClusterKind,
    cli::Format,
    lab::{LabOptions, Runtime},
    runner::{Filter, Schedule},
    select,
    session::{Junit, Output, Report},
    settings::Settings,
};

/// Exit code of a run in which no trial ran.
pub(super) const NO_TRIAL_RAN: u8 = 4;

/// The flags of `authlab run`.
#[derive(clap::Args, Debug)]
pub(in crate::cli) struct RunArgs {
    /// Substrings of trial names to run (any of them; all trials when none).
    #[arg(add = clap_complete::ArgValueCompleter::new(crate::cli::case_names))]
    pub(super) filters: Vec<String>,
    /// Filters are whole trial names.
    #[arg(long)]
    pub(super) exact: bool,
    /// List the trials the selection holds, one name a line (`--format json`: objects with
    /// name, case, server and cluster), and run none (as `cargo test -- --list`).
    #[arg(long)]
    pub(super) list: bool,
    /// Leave out trials whose name contains this (repeatable).
    #[arg(long, value_name = "FILTER")]
    pub(super) skip: Vec<String>,
    /// Only cases of this auth method.
    #[arg(long, value_parser = ["kubernetes", "jwt"])]
    pub(super) auth: Option<String>,
    /// Only cases of this Kubernetes auth mode.
    #[arg(long, value_parser = ["local-token", "client-token", "reviewer-jwt"])]
    pub(super) mode: Option<String>,
    /// Only cases of this topology.
    #[arg(long, value_parser = ["outside", "inside"])]
    pub(super) topology: Option<String>,
    /// Succeed when no trial ran (none matched, or all were ignored), as nextest's
    /// `--no-tests=pass`.
    #[arg(long)]
    pub(super) allow_empty: bool,
    /// Record what the servers answered (expect, flavours per server where they differ,
    /// observed_on; the rest of the file kept) as snapshot tests record snapshots: into
    /// `<file>.new` beside each case file, to review with `authlab bless review` and take with
    /// `authlab bless accept` (as insta's pending snapshots). Refused under CI=true.
    #[arg(long)]
    pub(super) bless: bool,
    /// With --bless: write into the case files themselves, with no pending file to review.
    #[arg(long, requires = "bless")]
    pub(super) in_place: bool,
    /// Also show what passing trials observed.
    #[arg(long)]
    pub(super) show_observed: bool,
    /// Write the matrix report (matrix.json, matrix.md, index.html) into this directory.
    #[arg(long, env = "AUTHLAB_REPORT", value_name = "DIR")]
    pub(super) report: Option<PathBuf>,
    /// Output format of the summary on standard output (json: the matrix.json document).
    #[arg(long, value_enum, default_value_t)]
    pub(super) format: Format,
    /// Case directory.
    #[arg(long, env = "AUTHLAB_CASES")]
    pub(super) cases: Option<PathBuf>,
    /// Servers, e.g. openbao:2.7.2,openbao:2.6.1,vault:1.21.1.
    #[arg(long)]
    pub(super) servers: Option<String>,
    /// Cluster (default: AUTHLAB_CLUSTER, else sim).
    #[arg(long, value_enum)]
    pub(super) cluster: Option<ClusterKind>,
    /// Where shared servers run (default: AUTHLAB_RUNTIME, else process).
    #[arg(long, value_enum)]
    pub(super) runtime: Option<Runtime>,
    /// Write JUnit XML here.
    #[arg(long, env = "AUTHLAB_JUNIT")]
    pub(super) junit: Option<PathBuf>,
    /// Write artifacts of failed trials under this directory (default: ./authlab-artifacts).
    #[arg(long, env = "AUTHLAB_ARTIFACTS")]
    pub(super) artifacts: Option<PathBuf>,
    /// Keep scratch files (server data and logs).
    #[arg(long)]
    pub(super) keep: bool,
    /// Trials at once. Not the number of cores: a trial mostly waits on its server and
    /// cluster (on 2 cores the sim matrix takes 29.2 s with 8, 34.9 s with 2).
    #[arg(long, short = 'j', default_value_t = 8)]
    pub(super) jobs: usize,
    /// Run a trial that failed up to N more times. One that then passes is reported as
    /// FLAKY (in the summary, the report and JUnit's `flakyFailure`), never as a plain pass.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "bless")]
    pub(super) retries: u32,
    /// Start no trial after the first failure; those left are reported as not run.
    #[arg(long, overrides_with = "no_fail_fast")]
    pub(super) fail_fast: bool,
    /// Run every trial whatever fails (the default; as cargo's and nextest's flag).
    #[arg(long, overrides_with = "fail_fast")]
    pub(super) no_fail_fast: bool,
    /// With a real cluster (--cluster apiserver, kind, kubeconfig): also run each trial on the
    /// sim, and print per case where the sim and the real cluster disagreed.
    #[arg(long)]
    pub(super) compare_sim: bool,
}

impl RunArgs {
    /// Which trials the run takes.
    pub(super) fn filter(&self) -> Filter {
        Filter {
            patterns: self.filters.clone(),
            exact: self.exact,
            skip: self.skip.clone(),
            auth: self.auth.clone(),
            mode: self.mode.clone(),
            topology: self.topology.clone(),
        }
    }

    /// How the trials are run.
    pub(super) fn schedule(&self) -> Schedule {
        Schedule {
            concurrency: self.jobs,
            fail_fast: self.fail_fast && !self.no_fail_fast,
            retries: self.retries,
        }
    }

    /// `--bless` where it cannot record: under CI, and on a real cluster.
    pub(super) fn refuse_bless(&self, settings: &Settings, cluster: ClusterKind) -> Result<()> {
        if self.bless && settings.ci {
            bail!(
                "--bless writes case files, and under CI=true nobody reviews them: bless where you can look at the result (unset CI), and commit what `authlab bless accept` takes"
            );
        }
        if self.bless && !cluster.is_sim() {
            bail!(
                "--bless records into `expect` and `flavours`, which are judged on the sim (Kubernetes {}); on --cluster {} a case's version-specific answers go into a `kubernetes:` entry written by hand from `--show-observed` (see cases/README.md)",
                crate::sim::KUBERNETES_VERSION,
                cluster.as_str()
            );
        }
        Ok(())
    }

    /// The lab's options for a run on `cluster`.
    pub(super) fn lab_options(
        &self,
        settings: &Settings,
        cluster: ClusterKind,
    ) -> Result<LabOptions> {
        let mut opts = LabOptions::new(cluster, settings);
        opts.runtime = select::runtime(settings, self.runtime)?;
        opts.keep = self.keep || settings.keep;
        opts.recording = self.bless;
        opts.artifacts_dir = Some(
            self.artifacts
                .clone()
                .unwrap_or_else(|| select::artifacts_dir(settings)),
        );
        Ok(opts)
    }

    /// What is written once the run has finished.
    pub(super) fn outputs(&self) -> Vec<Box<dyn Output>> {
        let mut out: Vec<Box<dyn Output>> = Vec::new();
        if let Some(path) = &self.junit {
            out.push(Box::new(Junit {
                path: path.clone(),
                suite: "authlab".into(),
                shared_run: None,
            }));
        }
        if let Some(dir) = &self.report {
            out.push(Box::new(Report(dir.clone())));
        }
        out
    }
}

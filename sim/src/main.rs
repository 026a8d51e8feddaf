//! `authlab-sim`: the sim cluster on its own (the same as `authlab sim serve`).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// The sim cluster: a stand-in for the Kubernetes API server's authentication surface.
#[derive(Parser, Debug)]
#[command(name = "authlab-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a sim cluster in the foreground and write an admin kubeconfig.
    Serve {
        /// Where to write the kubeconfig.
        #[arg(long)]
        kubeconfig_out: Option<PathBuf>,
        /// Port (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let Command::Serve {
        kubeconfig_out,
        port,
    } = Cli::parse().command;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authlab-sim: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = authlab_sim::SimConfig {
        port,
        ..Default::default()
    };
    match runtime.block_on(authlab_sim::serve_foreground(
        cfg,
        kubeconfig_out.as_deref(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authlab-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

//! Test targets whose tests need something a machine may lack (Docker) run under libtest-mimic,
//! so that each checks for it when it runs: without it the test is reported as ignored with the
//! reason, never as passed; where the run requires it (`AUTHLAB_REQUIRE`, or `CI=true`; see
//! `authlab --help`) its absence fails the test instead.

#![allow(dead_code)]

use std::{process::ExitCode, sync::OnceLock};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// The settings of this test process, read from the environment once.
pub fn settings() -> &'static authlab::settings::Settings {
    static S: OnceLock<authlab::settings::Settings> = OnceLock::new();
    S.get_or_init(authlab::settings::Settings::from_env)
}

/// What a test needs besides a Rust toolchain and the OpenBao binaries (which tests fetch
/// themselves, failing when they cannot).
#[derive(Debug, Clone, Copy)]
pub enum Needs {
    /// Nothing else.
    Nothing,
    /// A reachable Docker Engine.
    Docker,
}

impl Needs {
    /// Why it is missing here, if it is.
    fn missing(self) -> Option<&'static str> {
        match self {
            Needs::Nothing => None,
            Needs::Docker => docker_missing(),
        }
    }

    /// Its name in `AUTHLAB_REQUIRE`.
    fn requirement(self) -> &'static str {
        match self {
            Needs::Nothing => "",
            Needs::Docker => "docker",
        }
    }
}

/// Why Docker cannot be used here (asked once per process, as the harness asks: its client
/// connects and pings the engine), or None.
fn docker_missing() -> Option<&'static str> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(authlab::container::Engine::connect(settings()))
            .err()
            .map(|e| {
                // The harness's message, without the fix it goes on to suggest.
                let e = format!("{e:#}");
                format!("Docker: {}", e.split("; ").next().unwrap_or(&e))
            })
    })
    .as_deref()
}

/// A test named `name` that needs `needs` and is `body`: ignored with the reason when that is
/// missing (failed when the run requires it), else run; a panic in `body` fails it.
pub fn test(name: &str, needs: Needs, body: fn()) -> Trial {
    Trial::ignorable_test(name, move || {
        if let Some(why) = needs.missing() {
            if settings().required(needs.requirement()) {
                return Err(Failed::from(format!(
                    "needs {why}; this run requires it (AUTHLAB_REQUIRE or CI=true)"
                )));
            }
            return Ok(Completion::ignored_with(format!("needs {why}")));
        }
        body();
        Ok(Completion::Completed)
    })
}

/// Runs `tests` as libtest would, with the command line's filters and flags.
pub fn run(tests: Vec<Trial>) -> ExitCode {
    libtest_mimic::run(&Arguments::from_args(), tests).exit_code()
}

//! Which trials the test target lists: the selection the settings make, with `--exact NAME`
//! parsing only the one case file NAME points at, and in a run on the sim the trials that can
//! also run on Kind or a real API server listed again, as opt-in (`--ignored`) trials.

use std::sync::Arc;

use authlab::{
    case::{LoadedCase, load, matrix},
    select,
    session::Selection,
    settings::Settings,
};
use libtest_mimic::Arguments;

/// The selection and its trials.
pub fn trials(s: &Settings, args: &Arguments) -> anyhow::Result<(Selection, Vec<matrix::Trial>)> {
    let selection = Selection {
        cases_dir: select::default_cases_dir(s)?,
        servers: select::servers(s, None)?,
        cluster: select::cluster(s, None)?,
    };
    let cases = match exact_file(&selection, args) {
        Some(file) => {
            let case =
                load::load_file(&selection.cases_dir, &file).map_err(|e| anyhow::anyhow!("{e}"))?;
            vec![Arc::new(case)]
        }
        None => authlab::runner::load_cases(&selection.cases_dir)?,
    };
    let trials = with_opt_in(&selection, &cases);
    Ok((selection, trials))
}

/// The one case file `--exact NAME` points at.
fn exact_file(selection: &Selection, args: &Arguments) -> Option<std::path::PathBuf> {
    let name = args.filter.as_ref().filter(|_| args.exact)?;
    let (case_name, _server) = name
        .trim_end_matches("::kind")
        .trim_end_matches("::kubeconfig")
        .trim_end_matches("::apiserver")
        .rsplit_once("::")?;
    load::file_for_name(&selection.cases_dir, case_name)
}

/// The trials of `cases`; on the sim, those for Kind and `apiserver` too.
fn with_opt_in(selection: &Selection, cases: &[Arc<LoadedCase>]) -> Vec<matrix::Trial> {
    let expand = |cluster| matrix::expand(cases, &selection.servers, cluster);
    let mut trials = expand(selection.cluster);
    if selection.cluster == matrix::ClusterKind::Sim {
        for other in [matrix::ClusterKind::Kind, matrix::ClusterKind::Apiserver] {
            trials.extend(
                expand(other)
                    .into_iter()
                    .filter(|t| t.not_applicable.is_none()),
            );
        }
        trials.sort_by(|a, b| a.name.cmp(&b.name));
    }
    trials
}

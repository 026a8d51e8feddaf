//! Where servers differ: the cases whose observed signatures are not the same on every server,
//! the fields that differ, the servers grouped by what they said, and the versions at which it
//! changed.

use super::matrix::{Matrix, Row};

/// One case whose servers did not all say the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Case name.
    pub case: String,
    /// Cluster kind.
    pub cluster: String,
    /// The fields that differ, in display order.
    pub fields: Vec<String>,
    /// Servers that said the same, with their values of `fields` (None: not observed).
    pub groups: Vec<(Vec<String>, Vec<Option<String>>)>,
    /// Where it changed between neighbouring versions of a flavour (`openbao:2.7.0` after
    /// `openbao:2.6.2`), and between flavours.
    pub changed: Vec<String>,
}

/// Every case whose observed signatures differ between servers.
pub fn changes(m: &Matrix) -> Vec<Change> {
    let mut out = Vec::new();
    for (case, rows) in m.by_case() {
        let mut clusters: Vec<&str> = rows.iter().map(|r| r.cluster.as_str()).collect();
        clusters.dedup();
        for cluster in clusters {
            let seen: Vec<&Row> = rows
                .iter()
                .copied()
                .filter(|r| r.cluster == cluster && r.observed.is_some())
                .collect();
            if let Some(c) = change(case, cluster, &seen) {
                out.push(c);
            }
        }
    }
    out
}

fn change(case: &str, cluster: &str, rows: &[&Row]) -> Option<Change> {
    if rows.len() < 2 {
        return None;
    }
    let get = |r: &Row, f: &str| {
        r.observed
            .as_ref()
            .and_then(|s| s.get(f))
            .map(str::to_string)
    };
    let mut fields = super::signature::all_fields(rows.iter().filter_map(|r| r.observed.as_ref()));
    fields.retain(|f| rows.iter().any(|r| get(r, f) != get(rows[0], f)));
    if fields.is_empty() {
        return None;
    }
    let values = |r: &Row| -> Vec<Option<String>> { fields.iter().map(|f| get(r, f)).collect() };
    let mut groups: Vec<(Vec<String>, Vec<Option<String>>)> = Vec::new();
    for r in rows {
        let v = values(r);
        match groups.iter_mut().find(|(_, gv)| *gv == v) {
            Some((servers, _)) => servers.push(r.server.clone()),
            None => groups.push((vec![r.server.clone()], v)),
        }
    }
    let mut changed = Vec::new();
    for pair in rows.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if values(a) == values(b) {
            continue;
        }
        let flavour = |r: &Row| r.server.split(':').next().unwrap_or("").to_string();
        if flavour(a) == flavour(b) {
            changed.push(format!("{} (after {})", b.server, a.server));
        } else {
            changed.push(format!("{} differs from {}", b.server, a.server));
        }
    }
    Some(Change {
        case: case.to_string(),
        cluster: cluster.to_string(),
        fields,
        groups,
        changed,
    })
}

/// One case and server whose trial on the sim and on a real cluster did not observe the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterChange {
    /// Case name.
    pub case: String,
    /// Server.
    pub server: String,
    /// The real cluster (`apiserver`, `kind`, `kubeconfig`) and its Kubernetes version.
    pub cluster: String,
    /// Its Kubernetes version, when known.
    pub kubernetes: Option<String>,
    /// The fields that differ, with the sim's value and the real cluster's (None: not
    /// observed there).
    pub fields: Vec<(String, Option<String>, Option<String>)>,
}

/// Every case and server whose signature on the sim differs from the one on a real cluster of
/// the same report. The request log's fields are compared where both sides recorded one.
pub fn between_clusters(m: &Matrix) -> Vec<ClusterChange> {
    let mut out = Vec::new();
    for (case, rows) in m.by_case() {
        for sim in rows.iter().filter(|r| r.cluster == "sim") {
            let Some(sim_sig) = &sim.observed else {
                continue;
            };
            for real in rows
                .iter()
                .filter(|r| r.cluster != "sim" && r.server == sim.server)
            {
                let Some(real_sig) = &real.observed else {
                    continue;
                };
                let mut fields = super::signature::all_fields([sim_sig, real_sig]);
                // The request log where only one side records one (Kind, kubeconfig).
                fields.retain(|f| {
                    !f.starts_with("cluster.")
                        || (sim_sig.get(f).is_some() && real_sig.get(f).is_some())
                });
                let fields: Vec<_> = fields
                    .into_iter()
                    .filter(|f| sim_sig.get(f) != real_sig.get(f))
                    .map(|f| {
                        let (a, b) = (
                            sim_sig.get(&f).map(str::to_string),
                            real_sig.get(&f).map(str::to_string),
                        );
                        (f, a, b)
                    })
                    .collect();
                if !fields.is_empty() {
                    out.push(ClusterChange {
                        case: case.to_string(),
                        server: sim.server.clone(),
                        cluster: real.cluster.clone(),
                        kubernetes: real.kubernetes.clone(),
                        fields,
                    });
                }
            }
        }
    }
    out
}

/// [`between_clusters`] as lines for a terminal: per case and server, each differing field
/// with the sim's value and the real cluster's.
pub fn cluster_lines(changes: &[ClusterChange]) -> String {
    let mut out = String::new();
    let shown = |v: &Option<String>| v.as_deref().map_or("—".to_string(), |s| format!("{s:?}"));
    for c in changes {
        let version = c
            .kubernetes
            .as_deref()
            .map(|v| format!(" ({v})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} on {}: the sim and {}{version} disagree\n",
            c.case, c.server, c.cluster
        ));
        for (f, sim, real) in &c.fields {
            out.push_str(&format!(
                "    {f}: sim {} | {} {}\n",
                shown(sim),
                c.cluster,
                shown(real)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::signature::Signature;

    fn row(cluster: &str, err: Option<&str>) -> Row {
        Row {
            name: format!("c::openbao-2.7.2::{cluster}"),
            case: "c".into(),
            auth: "kubernetes".into(),
            mode: None,
            topology: "outside".into(),
            server: "openbao:2.7.2".into(),
            cluster: cluster.into(),
            kubernetes: Some("v1.24.0".into()),
            verdict: "passed".into(),
            messages: Vec::new(),
            not_checked: Vec::new(),
            observed: err.map(|e| {
                Signature(
                    [
                        ("login.status", "403"),
                        ("server_log.err", e),
                        ("cluster.requests", "POST /apis/..."),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                )
            }),
            expect_key: None,
            expect: None,
            observed_on: Vec::new(),
            total_ms: 1,
            phases: Default::default(),
            artifacts: None,
            run_id: "r".into(),
            difference: None,
            earlier: Vec::new(),
        }
    }

    fn matrix(trials: Vec<Row>) -> Matrix {
        Matrix {
            trials,
            ..Matrix::of_run(
                super::super::matrix::RunInfo {
                    run_id: "r".into(),
                    started: String::new(),
                    wall_ms: 0,
                    servers: Vec::new(),
                    cluster: "sim".into(),
                    ..Default::default()
                },
                &[],
            )
        }
    }

    #[test]
    fn the_sim_and_a_real_cluster_are_compared_field_by_field_without_the_request_log() {
        let m = matrix(vec![
            row("sim", Some("no keys found")),
            row("apiserver", None),
        ]);
        assert!(
            between_clusters(&m).is_empty(),
            "nothing observed on one side"
        );
        let m = matrix(vec![
            row("sim", Some("no keys found")),
            row("apiserver", Some("square/go-jose")),
        ]);
        let c = between_clusters(&m);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].fields,
            vec![(
                "server_log.err".to_string(),
                Some("no keys found".to_string()),
                Some("square/go-jose".to_string())
            )]
        );
        let text = cluster_lines(&c);
        assert!(
            text.contains("c on openbao:2.7.2: the sim and apiserver (v1.24.0) disagree"),
            "{text}"
        );
        assert!(
            text.contains("server_log.err: sim \"no keys found\" | apiserver \"square/go-jose\""),
            "{text}"
        );
    }
}

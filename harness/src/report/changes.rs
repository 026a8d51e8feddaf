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

//! What External Secrets Operator reported of one ExternalSecret.

/// The `Ready` condition of an ExternalSecret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EsoCondition {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

/// Everything observed of one ExternalSecret.
#[derive(Debug, Clone, Default)]
pub struct EsoObserved {
    /// Its `Ready` condition, once it has one.
    pub ready: Option<EsoCondition>,
    /// The synced value (the target Secret's key), when the Secret exists.
    pub value: Option<String>,
    /// `error` fields of the controller's reconcile errors for it, oldest first.
    pub controller_errors: Vec<String>,
}

impl std::fmt::Display for EsoObserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ready {
            Some(c) => write!(
                f,
                "Ready={} reason={} message={:?}",
                c.status, c.reason, c.message
            )?,
            None => f.write_str("no Ready condition yet")?,
        }
        match &self.value {
            Some(_) => f.write_str("; target Secret synced")?,
            None => f.write_str("; no target Secret")?,
        }
        match self.controller_errors.last() {
            Some(e) => write!(f, "; last controller error: {e:?}"),
            None => f.write_str("; no controller error logged"),
        }
    }
}

/// ESO's part of a trial's evidence.
#[derive(Debug, Clone, Default)]
pub enum EsoEvidence {
    /// The case has no `eso` client.
    #[default]
    NoClient,
    /// ESO was not run here (why).
    NotRun(String),
    /// What ESO reported, after how many seconds, about which ExternalSecret.
    Seen {
        /// `namespace/name` of the ExternalSecret.
        external_secret: String,
        /// Seconds from applying it to the last observation.
        after_secs: u64,
        /// How long ESO was given to settle.
        settle_secs: u64,
        /// The last observation.
        observed: EsoObserved,
    },
}

impl EsoEvidence {
    /// The text kept in the artifacts (`eso.txt`), when ESO was part of the trial.
    pub fn report(&self) -> Option<String> {
        match self {
            EsoEvidence::NoClient => None,
            EsoEvidence::NotRun(why) => Some(format!("not run: {why}\n")),
            EsoEvidence::Seen {
                external_secret,
                after_secs,
                observed,
                ..
            } => Some(format!(
                "ExternalSecret {external_secret} after {after_secs} s: {observed}\n\ncontroller errors:\n{}\n",
                observed.controller_errors.join("\n---\n")
            )),
        }
    }
}

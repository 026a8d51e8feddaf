//! Progress and diagnostics: `tracing` events, printed to standard error as `authlab: <line>`
//! (the level shown only below INFO's), filtered by `AUTHLAB_LOG` (default `info`).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// One line per event: `authlab: ` and the message with its fields.
struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        w.write_str("authlab: ")?;
        let level = *event.metadata().level();
        if level > Level::INFO {
            write!(w, "{} ", level.as_str().to_lowercase())?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// The filter `-v`/`-vv`/`-q` ask for: authlab's own events at debug or trace; other crates'
/// (HTTP, TLS, Docker clients) stay at warnings, since their trace lines carry request bodies:
/// a container upload holding a service-account token, a login's JWT.
pub fn verbosity(verbose: u8, quiet: bool) -> Option<String> {
    let ours = |level: &str| format!("warn,authlab={level},authlab_sim={level}");
    match verbose {
        0 if quiet => Some("warn".into()),
        0 => None,
        1 => Some(ours("debug")),
        _ => Some(ours("trace")),
    }
}

/// Installs the subscriber once per process (later calls do nothing). `log` (`AUTHLAB_LOG`)
/// wins over `level` (what `-v` asks for), which wins over `info`.
pub fn init(log: Option<&str>, level: Option<&str>) {
    let filter = log
        .or(level)
        .map(str::to_string)
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Line)
        .try_init();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The lines a subscriber with `filter` prints for events of the given targets and levels.
    fn printed(filter: &str) -> String {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::try_new(filter).unwrap())
            .with_writer(move || Sink(sink.clone()))
            .event_format(Line)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "authlab::container::docker", "own trace");
            tracing::debug!(target: "authlab_sim::authn", "sim debug");
            tracing::trace!(target: "hyper::proto::h1::io", "body: token eyJ");
            tracing::debug!(target: "bollard::docker", "upload body");
            tracing::trace!(target: "rustls::client::hs", "handshake");
            tracing::warn!(target: "hyper::client", "client warning");
        });
        String::from_utf8(out.lock().unwrap().clone()).unwrap()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// `-vv` shows authlab's trace events and nothing below warnings from the HTTP, TLS and
    /// Docker clients, whose trace lines print request bodies (a token upload among them).
    #[test]
    fn verbose_is_about_authlab_only() {
        let vv = printed(&verbosity(2, false).unwrap());
        assert!(vv.contains("own trace") && vv.contains("sim debug"), "{vv}");
        assert!(vv.contains("client warning"), "{vv}");
        for hidden in ["token eyJ", "upload body", "handshake"] {
            assert!(!vv.contains(hidden), "{hidden} printed under -vv:\n{vv}");
        }
        let v = printed(&verbosity(1, false).unwrap());
        assert!(v.contains("sim debug") && !v.contains("own trace"), "{v}");
        assert_eq!(verbosity(0, true).as_deref(), Some("warn"));
        assert_eq!(verbosity(0, false), None);
    }
}

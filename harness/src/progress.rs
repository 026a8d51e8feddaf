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

/// Installs the subscriber once per process (later calls do nothing). `AUTHLAB_LOG` wins over
/// `level` (what `-v` asks for), which wins over `info`.
pub fn init(level: Option<&str>) {
    let filter = crate::settings::current()
        .log
        .clone()
        .or(level.map(str::to_string))
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Line)
        .try_init();
}

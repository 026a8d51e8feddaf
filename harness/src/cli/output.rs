//! Where the command line writes. Standard output stops quietly when its reader goes away
//! (`authlab list | head -1` exits 0); colour only when standard error is a terminal and
//! `NO_COLOR` is not set.

use std::{
    io::{IsTerminal, Write},
    sync::atomic::{AtomicBool, Ordering},
};

use crate::report::summary::Style;

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a newline to standard output; once the reader has gone, writes nothing.
pub fn line(text: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let res = writeln!(out, "{text}").and_then(|_| out.flush());
    if let Err(e) = res {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("authlab: writing to standard output: {e}");
        }
    }
}

/// Writes `text` as it is (no newline added).
pub fn text(text: &str) {
    line(text.strip_suffix('\n').unwrap_or(text));
}

/// The style of progress lines (standard error): quiet from `-q`, colour as described above.
pub fn style(quiet: bool, no_color: bool) -> Style {
    Style {
        quiet,
        color: std::io::stderr().is_terminal() && !no_color,
    }
}

/// `style` for what goes to standard output (the summary): coloured only when standard
/// output itself is a terminal (`authlab run > out.txt` writes no escape codes).
pub fn stdout_style(style: Style, no_color: bool) -> Style {
    Style {
        color: std::io::stdout().is_terminal() && !no_color,
        ..style
    }
}

/// `println!` through [`line`].
macro_rules! outln {
    () => {
        $crate::cli::output::line("")
    };
    ($($t:tt)*) => {
        $crate::cli::output::line(&format!($($t)*))
    };
}

/// `print!` through [`text`].
macro_rules! out {
    ($($t:tt)*) => {
        $crate::cli::output::text(&format!($($t)*))
    };
}

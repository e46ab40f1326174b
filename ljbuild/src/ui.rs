//! Progress output: on a terminal, one highlighted line per step with its timing; otherwise plain
//! `ljbuild: STEP: ...` lines (CI logs). Everything goes to stderr; the build script's own
//! output goes to stdout.

use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Where progress goes.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    tty: bool,
    quiet: bool,
}

impl Ui {
    /// Progress on stderr; `quiet` keeps only warnings.
    pub fn new(quiet: bool) -> Ui {
        Ui { tty: std::io::stderr().is_terminal(), quiet }
    }

    /// One step done (or starting, without `took`).
    pub fn step(&self, step: &str, msg: &str, took: Option<Duration>) {
        if self.quiet {
            return;
        }
        let took = took.map(|d| format!(" ({})", fmt_duration(d))).unwrap_or_default();
        let line = if self.tty {
            format!("\x1b[1;34m==>\x1b[0m \x1b[1m{step}\x1b[0m {msg}\x1b[2m{took}\x1b[0m\n")
        } else {
            format!("ljbuild: {step}: {msg}{took}\n")
        };
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    /// A warning (always shown).
    pub fn warn(&self, msg: &str) {
        let line = if self.tty {
            format!("\x1b[1;33mljbuild: warning:\x1b[0m {msg}\n")
        } else {
            format!("ljbuild: warning: {msg}\n")
        };
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// `850 us`, `12 ms`, `1.24 s`, `2 min 5 s`.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1000 {
        format!("{us} us")
    } else if us < 1_000_000 {
        format!("{} ms", us / 1000)
    } else if us < 60_000_000 {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_micros(850)), "850 us");
        assert_eq!(fmt_duration(Duration::from_millis(12)), "12 ms");
        assert_eq!(fmt_duration(Duration::from_millis(1240)), "1.24 s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2 min 5 s");
    }
}

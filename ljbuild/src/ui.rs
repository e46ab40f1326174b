//! Progress output. Everything goes to stderr; the build script's own output goes to stdout.
//!
//! * On a terminal: one styled line per step with its timing, and while the script runs a
//!   status line rewritten in place with the elapsed time and the script's latest output line
//!   (the full output is in the build log; the last lines are printed if the build fails).
//! * Otherwise (pipes, files, `CI` set): plain `ljbuild: STEP: ...` lines, and the script's
//!   output streamed as it comes.
//!
//! Styles go through `anstream`, which drops them when `NO_COLOR` is set (or `CLICOLOR=0`) or
//! stderr is not a terminal.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};

const ARROW: Style = Style::new().bold().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Blue)));
const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const WARN: Style = Style::new().bold().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));

/// True when `CI` says we run in a CI system (set, non-empty, not `false` or `0`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Where progress goes.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    tty: bool,
    live: bool,
    quiet: bool,
    /// The program named at the start of plain lines (`ljbuild`, `ljail`).
    prog: &'static str,
}

impl Ui {
    /// Progress on stderr; `quiet` keeps only warnings.
    pub fn new(quiet: bool) -> Ui {
        Ui::named("ljbuild", quiet)
    }

    /// Progress of the program `prog` (ljail shares this UI).
    pub fn named(prog: &'static str, quiet: bool) -> Ui {
        let tty = std::io::stderr().is_terminal() && !in_ci();
        Ui { tty, live: tty && std::io::stdout().is_terminal(), quiet, prog }
    }

    /// A plain-lines UI (as in CI).
    pub fn plain(quiet: bool) -> Ui {
        Ui { tty: false, live: false, quiet, prog: "ljbuild" }
    }

    /// Whether a running script is shown as a live status line (stdout and stderr are a
    /// terminal, not CI, not quiet) instead of its streamed output.
    pub fn live(&self) -> bool {
        self.live && !self.quiet
    }

    /// One step done (or starting, without `took`).
    pub fn step(&self, step: &str, msg: &str, took: Option<Duration>) {
        if self.quiet {
            return;
        }
        let took = took.map(|d| format!(" ({})", fmt_duration(d))).unwrap_or_default();
        let line = if self.tty {
            format!("{ARROW}==>{ARROW:#} {BOLD}{step}{BOLD:#} {msg}{DIM}{took}{DIM:#}\n")
        } else {
            format!("{}: {step}: {msg}{took}\n", self.prog)
        };
        let _ = anstream::stderr().write_all(line.as_bytes());
    }

    /// A warning (always shown).
    pub fn warn(&self, msg: &str) {
        let _ = writeln!(anstream::stderr(), "{WARN}{}: warning:{WARN:#} {msg}", self.prog);
    }

    /// Starts the live status line of a running step (see [`Ui::live`]); `None` otherwise.
    pub fn status_line(&self, step: &str) -> Option<StatusLine> {
        if !self.live() {
            return None;
        }
        let state = Arc::new(Mutex::new(StatusState { last: String::new(), done: false }));
        let (st, name, started) = (state.clone(), step.to_string(), Instant::now());
        let ticker = std::thread::spawn(move || loop {
            {
                let s = st.lock().unwrap_or_else(|e| e.into_inner());
                if s.done {
                    return;
                }
                let text = render_status(&name, started.elapsed(), &s.last, terminal_width());
                let _ = anstream::stderr().write_all(format!("\r{text}").as_bytes());
            }
            std::thread::sleep(Duration::from_millis(250));
        });
        Some(StatusLine { state, ticker: Some(ticker) })
    }
}

#[derive(Debug)]
struct StatusState {
    last: String,
    done: bool,
}

/// A status line rewritten in place while a step runs; cleared when dropped.
#[derive(Debug)]
pub struct StatusLine {
    state: Arc<Mutex<StatusState>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl StatusLine {
    /// The step's latest output line (control characters dropped).
    pub fn line(&self, line: &[u8]) {
        let text: String = String::from_utf8_lossy(line).chars().filter(|c| !c.is_control()).collect();
        if !text.trim().is_empty() {
            self.state.lock().unwrap_or_else(|e| e.into_inner()).last = text;
        }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).done = true;
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        let blank = " ".repeat(terminal_width());
        let _ = anstream::stderr().write_all(format!("\r{blank}\r").as_bytes());
    }
}

/// The terminal's width (stderr's), else `COLUMNS`, else 80.
fn terminal_width() -> usize {
    if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stderr()) {
        if ws.ws_col > 0 {
            return ws.ws_col as usize;
        }
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(80)
}

/// `  script 12 s  LAST LINE`, cut or padded with spaces to exactly `width - 1` columns (so the
/// line never wraps and a shorter one overwrites a longer one).
pub fn render_status(step: &str, elapsed: Duration, last: &str, width: usize) -> String {
    let head = format!("  {step} {}  ", fmt_elapsed(elapsed));
    let mut s: String = head.chars().chain(last.trim_end().chars()).take(width.saturating_sub(1)).collect();
    let n = s.chars().count();
    s.extend(std::iter::repeat_n(' ', width.saturating_sub(1) - n));
    s
}

/// `12 s`, `2:05` for a running step.
fn fmt_elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s} s")
    } else {
        format!("{}:{:02}", s / 60, s % 60)
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

    #[test]
    fn status_lines() {
        assert_eq!(render_status("script", Duration::from_secs(3), "hello", 20), "  script 3 s  hello");
        assert_eq!(render_status("s", Duration::from_secs(3), "x", 12), "  s 3 s  x ");
        assert_eq!(
            render_status("script", Duration::from_secs(125), "a long line of output", 20),
            "  script 2:05  a lo"
        );
        assert_eq!(render_status("script", Duration::from_secs(1), "", 4), "  s");
    }
}

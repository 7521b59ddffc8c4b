//! Output rendering shared by every command: text or JSON, quiet mode, the error chain, logging.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use realms_sys::event::{Event, Report};
use serde::Serialize;

/// Writes to stdout. A reader that went away (`realms ... | head`) ends the program quietly with
/// status 0, as ripgrep does; `println!` would panic.
pub fn write_stdout(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(args).and_then(|()| out.flush()) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {err}");
        std::process::exit(1);
    }
}

/// `print!` that ends quietly on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!($($arg)*)) };
}

/// `println!` that ends quietly on a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};

/// What every command gets: where the tool operates and how it should talk.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Every path is relative to this directory (`--root`, `REALMS_ROOT`).
    pub root: PathBuf,
    pub json: bool,
    pub quiet: bool,
    /// The transfer under way and how it was last shown.
    transfer: Arc<Mutex<Transfer>>,
}

/// The transfer under way: its progress bar on a terminal, the last quarter said elsewhere.
#[derive(Debug, Default)]
struct Transfer {
    what: String,
    bar: Option<indicatif::ProgressBar>,
    quarter: Option<u64>,
}

/// Which quarter of a transfer `done` of `total` bytes is in (4 when complete).
fn quarter(done: u64, total: u64) -> u64 {
    if total == 0 || done >= total {
        return 4;
    }
    u64::try_from(u128::from(done) * 4 / u128::from(total)).unwrap_or(4)
}

impl Ctx {
    /// The context of the global options `--root`, `--json` and `-q`.
    pub fn new(root: PathBuf, json: bool, quiet: bool) -> Self {
        Ctx {
            root,
            json,
            quiet,
            transfer: Arc::default(),
        }
    }

    /// Shows how far a transfer is: a progress bar on a terminal, else a line when it starts,
    /// at each quarter and when it is complete; nothing with `--json` or `-q`.
    fn transfer(&self, event: &Event) {
        let Event::Transfer { what, done, total } = event else {
            return;
        };
        if self.json || self.quiet {
            return;
        }
        let mut t = self.transfer.lock().unwrap_or_else(|e| e.into_inner());
        if t.what != *what {
            if let Some(bar) = t.bar.take() {
                bar.finish_and_clear();
            }
            *t = Transfer {
                what: what.clone(),
                ..Transfer::default()
            };
            if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new(*total);
                let style = indicatif::ProgressStyle::with_template(
                    "[+] {msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_message(what.clone());
                t.bar = Some(bar);
            }
        }
        let q = quarter(*done, *total);
        if let Some(bar) = &t.bar {
            bar.set_position(*done);
            if q == 4 {
                bar.finish_and_clear();
                t.bar = None;
                eprintln!("{}", render(event));
            }
        } else if t.quarter != Some(q) {
            t.quarter = Some(q);
            eprintln!("{}", render(event));
        }
    }

    /// Prints a command's result: JSON with `--json`, its text form otherwise (nothing with `-q`).
    pub fn emit<T: Serialize + Display>(&self, value: &T) -> anyhow::Result<()> {
        if self.json {
            outln!("{}", serde_json::to_string_pretty(value)?);
        } else if !self.quiet {
            let text = value.to_string();
            if !text.is_empty() {
                outln!("{}", text.trim_end_matches('\n'));
            }
        }
        Ok(())
    }

    /// Renders one event of a library operation on stderr (stdout holds only results): a
    /// progress step or a note as `[+] ...`, a warning as `[!] ...`. `-q` silences every
    /// event, `--json` progress steps only.
    pub fn say(&self, event: Event) {
        let shown = match event {
            Event::Progress(_) => !self.json,
            Event::Note(_) | Event::Warning(_) => true,
            Event::Transfer { .. } => return self.transfer(&event),
        };
        if shown && !self.quiet {
            eprintln!("{}", render(&event));
        }
    }

    /// Says a line that already carries its kind as a prefix (`[+] ...` or `[!] ...`), as the
    /// provisioning library's callbacks give them.
    pub fn say_line(&self, line: impl Display) {
        let line = line.to_string();
        let event = match (line.strip_prefix("[!] "), line.strip_prefix("[+] ")) {
            (Some(text), _) => Event::warning(text),
            (_, Some(text)) => Event::progress(text),
            _ => Event::progress(line),
        };
        self.say(event)
    }

    /// The result of a command that changes something: with `--json`, one object on stdout,
    /// `{"action": ACTION, KIND: NAME, ...more}` (docs/json.md); its text form is the `[+]`
    /// lines said on stderr while it ran.
    pub fn done(&self, action: &str, kind: &str, name: &str, more: serde_json::Value) {
        if !self.json {
            return;
        }
        let mut object = match more {
            serde_json::Value::Object(extra) => extra,
            _ => serde_json::Map::new(),
        };
        object.insert("action".into(), action.into());
        object.insert(kind.into(), name.into());
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(object))
                .expect("a JSON value serialises")
        );
    }
}

/// A value shown only with `--json` (its text form is said line by line instead).
#[derive(Serialize)]
#[serde(transparent)]
pub struct Json<T: Serialize>(pub T);

impl<T: Serialize> Display for Json<T> {
    fn fmt(&self, _: &mut std::fmt::Formatter) -> std::fmt::Result {
        Ok(())
    }
}

/// An event as a line in the seed's style: `[!] ` before a warning, `[+] ` before the rest.
pub fn render(event: &Event) -> String {
    match event {
        Event::Progress(text) | Event::Note(text) => format!("[+] {text}"),
        Event::Warning(text) => format!("[!] {text}"),
        Event::Transfer { what, done, total } => format!(
            "[+] {what}: {}% ({} of {})",
            u128::from(*done) * 100 / u128::from((*total).max(1)),
            indicatif::HumanBytes(*done),
            indicatif::HumanBytes(*total)
        ),
    }
}

impl Report for Ctx {
    fn report(&self, event: Event) {
        self.say(event)
    }
}

/// Prints the error chain once: `error: outer: inner: ...`.
pub fn print_error(err: &anyhow::Error) {
    eprintln!("error: {err:#}");
}

/// Logs go to stderr: warnings by default, `-v` info, `-vv` debug; `RUST_LOG` overrides it.
/// (The plain level filter avoids compiling filter directives on every run: start-up time
/// counts for `realms run`.)
pub fn init_logging(verbose: u8) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time();
    match std::env::var("RUST_LOG") {
        Ok(directives) => builder
            .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
            .init(),
        Err(_) => {
            let level = match verbose {
                0 => tracing::Level::WARN,
                1 => tracing::Level::INFO,
                _ => tracing::Level::DEBUG,
            };
            builder.with_max_level(level).init()
        }
    }
}

#[cfg(test)]
mod transfer_tests {
    use super::*;

    #[test]
    fn a_transfer_is_said_at_its_start_each_quarter_and_its_end() {
        let said: Vec<u64> = (0..=100u64)
            .map(|done| quarter(done * 10, 1000))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(said, [0, 1, 2, 3, 4]);
        assert_eq!(quarter(0, 0), 4);
        assert_eq!(quarter(u64::MAX - 1, u64::MAX), 3);
        assert_eq!(
            render(&Event::transfer("foo_1.tar.zst", 512 << 10, 2 << 20)),
            "[+] foo_1.tar.zst: 25% (512.00 KiB of 2.00 MiB)"
        );
    }
}

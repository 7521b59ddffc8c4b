//! Output rendering shared by every command: text or JSON, quiet mode, the error chain, logging.

use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;

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
}

impl Ctx {
    /// The context of the global options `--root`, `--json` and `-q`.
    pub fn new(root: PathBuf, json: bool, quiet: bool) -> Self {
        Ctx { root, json, quiet }
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

//! A fast path for the command desktop entries and scripts run most: `realms [--root DIR]
//! [--json] [-q] [-v] run NAME [-u USER] [-e KEY=VALUE] [-w DIR] [-t|-T] -- CMD...`.
//!
//! Building clap's whole command tree costs about 0.5 ms and 160 page faults per process, a
//! third of what `realms run` adds to the command it runs. These plain forms are parsed here to
//! the same [`Cli`] clap would give (a unit test holds the two to each other); anything else
//! (help, a flag this does not know, combined short flags, a missing value, `REALMS_ROOT` in the
//! environment) returns `None` and goes through clap, which also gives every error message.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::args::{Cli, Command, Global};
use crate::realm::RealmCmd;

/// The [`Cli`] of a plain `run` command line (`argv` without the program name), or `None`.
pub fn parse_run(argv: &[OsString]) -> Option<Cli> {
    if std::env::var_os("REALMS_ROOT").is_some() {
        return None;
    }
    let (before, command) = split_at_dashes(argv)?;
    if command.is_empty() {
        return None;
    }
    let mut words = before.iter().map(|a| a.to_str());
    let mut global = Global {
        root: PathBuf::from("/"),
        json: false,
        quiet: false,
        verbose: 0,
    };
    // clap refuses a flag given twice (but counts -v): so does this, by leaving it to clap.
    let mut root = None;
    loop {
        match words.next()?? {
            "run" => break,
            "--root" if root.is_none() => root = Some(value(words.next()?)?),
            "--json" if !global.json => global.json = true,
            "-q" | "--quiet" if !global.quiet => global.quiet = true,
            "-v" | "--verbose" => global.verbose = global.verbose.checked_add(1)?,
            w => match w.strip_prefix("--root=") {
                Some(dir) if !dir.is_empty() && root.is_none() => root = Some(dir),
                _ => return None,
            },
        }
    }
    if let Some(dir) = root {
        global.root = PathBuf::from(dir);
    }
    let (mut name, mut user, mut env, mut cwd) = (None, None, Vec::new(), None);
    let (mut tty, mut no_tty) = (false, false);
    while let Some(word) = words.next() {
        let word = word?;
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (word, None),
        };
        let mut take = || match inline {
            Some(v) if !v.is_empty() => Some(v),
            Some(_) => None,
            None => value(words.next()?),
        };
        match flag {
            "-u" | "--user" if user.is_none() => user = Some(take()?.to_string()),
            "-e" | "--env" => env.push(realms_realm::exec::parse_env(take()?).ok()?),
            "-w" | "--cwd" if cwd.is_none() => cwd = Some(PathBuf::from(take()?)),
            "-t" | "--tty" if inline.is_none() && !tty => tty = true,
            "-T" | "--no-tty" if inline.is_none() && !no_tty => no_tty = true,
            _ if name.is_none() && inline.is_none() && !word.starts_with('-') => {
                name = Some(word.to_string())
            }
            _ => return None,
        }
    }
    if tty && no_tty {
        return None;
    }
    Some(Cli {
        global,
        command: Command::Realm(RealmCmd::Run {
            name: name?,
            user,
            env,
            cwd,
            tty,
            no_tty,
            command: command.to_vec(),
        }),
    })
}

/// The words before the first `--` and those after it.
fn split_at_dashes(argv: &[OsString]) -> Option<(&[OsString], &[OsString])> {
    let at = argv.iter().position(|a| a == "--")?;
    Some((&argv[..at], &argv[at + 1..]))
}

/// A flag's value as clap takes it: present, UTF-8, not empty, not looking like a flag.
fn value(word: Option<&str>) -> Option<&str> {
    word.filter(|v| !v.is_empty() && !v.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    fn clap(words: &[&str]) -> Option<Cli> {
        let argv = std::iter::once("realms").chain(words.iter().copied());
        let matches = crate::args::command().try_get_matches_from(argv).ok()?;
        Cli::from_arg_matches(&matches).ok()
    }

    fn fast(words: &[&str]) -> Option<Cli> {
        let argv: Vec<OsString> = words.iter().map(OsString::from).collect();
        parse_run(&argv)
    }

    #[test]
    fn the_fast_path_gives_what_clap_gives_or_leaves_it_to_clap() {
        // The test process has no REALMS_ROOT (the fast path leaves that case to clap).
        assert!(std::env::var_os("REALMS_ROOT").is_none());
        let taken: &[&[&str]] = &[
            &["run", "r1", "--", "/bin/true"],
            &["--root", "/tmp/x", "run", "r1", "--", "ls", "-l", "--", "x"],
            &[
                "--root=/tmp/x",
                "--json",
                "-q",
                "-v",
                "-v",
                "run",
                "r1",
                "--",
                "id",
            ],
            &["run", "-t", "r1", "--", "/bin/sh", "-c", "exit 3"],
            &["run", "r1", "-T", "--", "true"],
            &["run", "--tty", "r1", "--", "true"],
            &["run", "r1", "--no-tty", "--", "true"],
            &["run", "-u", "user", "r1", "--", "id"],
            &["run", "--user=user", "-w", "/srv", "r1", "--", "pwd"],
            &[
                "run",
                "--cwd=/srv",
                "r1",
                "-e",
                "A=1",
                "--env",
                "B=2",
                "--",
                "env",
            ],
            &["run", "r1", "--env=C=x=y", "--", "env"],
        ];
        for words in taken {
            let ours = fast(words).unwrap_or_else(|| panic!("not taken: {words:?}"));
            let theirs = clap(words).unwrap_or_else(|| panic!("clap refused: {words:?}"));
            assert_eq!(format!("{ours:?}"), format!("{theirs:?}"), "{words:?}");
        }
        // Left to clap: help, unknown or combined flags, missing values and names, globals after
        // the subcommand, a second name, conflicting flags, no command.
        let left: &[&[&str]] = &[
            &["run", "--help", "r1", "--", "x"],
            &["-h", "run", "r1", "--", "x"],
            &["run", "-tu", "user", "r1", "--", "x"],
            &["run", "r1", "--json", "--", "x"],
            &["run", "-u", "--", "x"],
            &["run", "-u", "-t", "r1", "--", "x"],
            &["run", "--", "x"],
            &["run", "r1", "r2", "--", "x"],
            &["run", "-t", "-T", "r1", "--", "x"],
            &["run", "r1", "--"],
            &["run", "r1", "x"],
            &["run", "r1", "-e", "1A=x", "--", "x"],
            &["run", "r1", "--user=", "--", "x"],
            &["shell", "r1", "--", "x"],
            &["--root", "run", "r1", "--", "x"],
            &["run", "r1", "--tty=yes", "--", "x"],
            &["--json", "--json", "run", "r1", "--", "x"],
            &["--root", "/a", "--root=/b", "run", "r1", "--", "x"],
            &["run", "-t", "-t", "r1", "--", "x"],
            &["run", "-u", "a", "--user", "b", "r1", "--", "x"],
        ];
        for words in left {
            assert!(fast(words).is_none(), "taken: {words:?}");
        }
    }
}

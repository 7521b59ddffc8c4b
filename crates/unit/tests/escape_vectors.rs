//! Reproduces every row of the recorded `systemd-escape` 252 vectors (JSON and TSV).

use std::path::PathBuf;

use realms_unit::escape;
use realms_unit::{UnitName, UnitType};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Row {
    args: Vec<String>,
    input: String,
    stdout: Option<String>,
    #[serde(default)]
    stdout_hex: Option<String>,
    exit_code: i32,
    stderr: String,
}

fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/vectors");
    assert!(
        dir.is_dir(),
        "test vectors missing: {} does not exist (the repository's parent directory must hold shared/)",
        dir.display()
    );
    dir
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Escape,
    Unescape,
    Mangle,
}

#[derive(Debug, Default)]
struct Opts {
    action: Option<Action>,
    path: bool,
    instance: bool,
    suffix: Option<String>,
    template: Option<String>,
}

/// Parse the tool's options, with its conflict rules.
fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    for a in args {
        match a.as_str() {
            "--path" | "-p" => o.path = true,
            "--unescape" | "-u" => o.action = Some(Action::Unescape),
            "--mangle" | "-m" => o.action = Some(Action::Mangle),
            "--instance" => o.instance = true,
            s if s.starts_with("--suffix=") => o.suffix = Some(s["--suffix=".len()..].to_owned()),
            s if s.starts_with("--template=") => {
                o.template = Some(s["--template=".len()..].to_owned())
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let action = o.action.unwrap_or(Action::Escape);
    if o.suffix.is_some() && o.template.is_some() {
        return Err("--suffix= and --template= may not be combined".into());
    }
    if action == Action::Mangle && (o.suffix.is_some() || o.template.is_some()) {
        return Err("--suffix= and --template= are not compatible with --mangle".into());
    }
    if action == Action::Mangle && o.path {
        return Err("--path may not be combined with --mangle".into());
    }
    if action == Action::Unescape && o.suffix.is_some() {
        return Err("--suffix is not compatible with --unescape".into());
    }
    if o.instance && action != Action::Unescape {
        return Err("--instance must be used in conjunction with --unescape".into());
    }
    if o.instance && o.template.is_some() {
        return Err("--instance may not be combined with --template".into());
    }
    Ok(o)
}

/// A test-only stand-in for `systemd-escape ARGS -- INPUT`: stdout bytes, or the error.
fn run(args: &[String], input: &[u8]) -> Result<Vec<u8>, String> {
    let o = parse_opts(args)?;
    let suffix = match &o.suffix {
        Some(s) => Some(s.parse::<UnitType>().map_err(|e| e.to_string())?),
        None => None,
    };
    if let Some(t) = &o.template {
        realms_unit::name::parse_template(t).map_err(|e| e.to_string())?;
    }
    let err = |e: realms_unit::Error| e.to_string();
    match o.action.unwrap_or(Action::Escape) {
        Action::Mangle => escape::mangle(input).map(String::into_bytes).map_err(err),
        Action::Escape => {
            let e = if o.path {
                escape::escape_path(input).map_err(err)?
            } else {
                escape::escape(input)
            };
            Ok(match (&o.template, suffix) {
                (Some(t), _) => escape::with_template(t, &e).map_err(err)?,
                (None, Some(s)) => escape::with_suffix(&e, s),
                (None, None) => e,
            }
            .into_bytes())
        }
        Action::Unescape => {
            let mut text = input;
            if o.instance || o.template.is_some() {
                let s = std::str::from_utf8(input).map_err(|e| e.to_string())?;
                let name = UnitName::parse(s).map_err(err)?;
                if let Some(t) = &o.template
                    && name.template().as_deref() != Some(t.as_str())
                {
                    return Err(format!("unit {s} does not match template {t}"));
                }
                text = escape::instance_of(s).map_err(err)?.as_bytes();
            }
            let mut out = if o.path {
                escape::unescape_path(text).map_err(err)?
            } else {
                escape::unescape(text).map_err(err)?
            };
            // The tool prints a C string: output ends at a NUL.
            if let Some(nul) = out.iter().position(|&c| c == 0) {
                out.truncate(nul);
            }
            Ok(out)
        }
    }
}

fn check(args: &[String], input: &str, want: &[u8], exit_code: i32, what: &str) {
    let got = run(args, input.as_bytes());
    match (&got, exit_code) {
        (Ok(out), 0) => assert_eq!(
            out,
            want,
            "{what}: args {args:?} input {input:?}: got {:?}, want {:?}",
            String::from_utf8_lossy(out),
            String::from_utf8_lossy(want)
        ),
        (Err(_), 1) => {}
        _ => panic!(
            "{what}: args {args:?} input {input:?}: got {got:?}, want exit {exit_code} with {want:?}"
        ),
    }
}

fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex in vectors"))
        .collect()
}

#[test]
fn every_json_vector() {
    let text = std::fs::read_to_string(vectors_dir().join("escape-vectors.json"))
        .expect("read json vectors");
    let rows: Vec<Row> = serde_json::from_str(&text).expect("parse json vectors");
    assert_eq!(rows.len(), 114, "the vector file changed size");
    for row in &rows {
        let want = match (&row.stdout_hex, &row.stdout) {
            (Some(hex), _) => decode_hex(hex),
            (None, Some(s)) => s.as_bytes().to_vec(),
            (None, None) => panic!("row without stdout: {row:?}"),
        };
        assert!(row.exit_code == 0 || !row.stderr.is_empty(), "{row:?}");
        check(&row.args, &row.input, &want, row.exit_code, "json");
    }
}

#[test]
fn every_tsv_vector() {
    let text = std::fs::read_to_string(vectors_dir().join("escape-vectors.tsv"))
        .expect("read tsv vectors");
    let mut count = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "bad tsv row {line:?}");
        let args: Vec<String> = cols[0].split_whitespace().map(str::to_owned).collect();
        let exit: i32 = cols[3].parse().expect("exit code");
        check(&args, cols[1], cols[2].as_bytes(), exit, "tsv");
        count += 1;
    }
    assert_eq!(count, 107, "the tsv vector file changed size");
}

/// Extra rows checked by hand against systemd-escape 252 on this machine.
#[test]
fn regression_rows_from_systemd_252() {
    let long_x = "x".repeat(300);
    let rows: &[(&str, &str, &str, i32)] = &[
        ("--mangle", "foo*", "foo\\x2a.service", 0),
        ("--mangle", "/sys/foo", "sys-foo.device", 0),
        ("--mangle", "/dev", "dev.mount", 0),
        ("--mangle", "/dev/.", "dev.mount", 0),
        ("--mangle", "//dev/sda", "dev-sda.device", 0),
        ("--mangle", "/../dev", "-..-dev.service", 0),
        ("--mangle", "/dev/..", "-dev-...service", 0),
        ("--mangle", "/.././dev/..", "-..-.-dev-...service", 0),
        (
            "--mangle",
            "xxx@@@@/////\\\\\\\\\\yyy.service",
            "xxx@@@@-----\\\\\\\\\\yyy.service",
            0,
        ),
        ("--mangle", ".foo", ".foo.service", 0),
        ("--mangle", ".service", ".service.service", 0),
        ("--mangle", "foo.waldo", "foo.waldo.service", 0),
        ("--mangle", "foo@.service", "foo@.service", 0),
        ("--mangle", "@foo", "", 1),
        ("--mangle", "", "", 1),
        ("--mangle", "/-", "\\x2d.mount", 0),
        ("--mangle", "foo\\", "foo\\.service", 0),
        ("--mangle", "foo%i", "foo\\x25i.service", 0),
        (
            "--mangle",
            "_____##@;;;,,,##----.....service",
            "_____\\x23\\x23@\\x3b\\x3b\\x3b\\x2c\\x2c\\x2c\\x23\\x23----.....service",
            0,
        ),
        ("--path", ".", "", 1),
        ("--path", "..", "", 1),
        ("--path", "a/..", "", 1),
        ("--path", "./a", "a", 0),
        ("--path", "", "-", 0),
        ("--path", "/./", "-", 0),
        ("--suffix=service", "", ".service", 0),
        ("--suffix=Service", "x", "", 1),
        ("--suffix=.service", "x", "", 1),
        ("--template=foo.service", "a", "", 1),
        ("--template=foo@bar.service", "a", "", 1),
        ("--template=foo@.service", "", "", 1),
        ("--template=foo@.service", "a@b", "foo@a\\x40b.service", 0),
        ("--unescape --instance", "foo.service", "", 1),
        ("--unescape --instance", "foo@.service", "", 1),
        ("--unescape --instance", "foo@a b.service", "", 1),
        ("--unescape --instance", "foo@bar@.service", "bar@", 0),
        ("--unescape --instance --path", "foo@-.service", "/", 0),
        ("--unescape --instance --path", "foo@a-.service", "", 1),
        (
            "--unescape --template=foo@.service",
            "foo@a-b.service",
            "a/b",
            0,
        ),
        (
            "--unescape --template=bar@.service",
            "foo@a-b.service",
            "",
            1,
        ),
        (
            "--unescape --template=foo@.socket",
            "foo@a-b.service",
            "",
            1,
        ),
        ("--unescape", "", "", 0),
        ("--unescape", "a\\x41\\x42", "aAB", 0),
        ("--unescape", "a\\x4G", "", 1),
        ("--unescape --path", "", "", 1),
        ("--unescape --path", "a\\x00-", "/a", 0),
        ("--unescape --path", "\\x00", "/", 0),
        ("--unescape --path", "a\\x2f\\x2fb", "", 1),
        ("--unescape --path", "a-\\x2e-b", "", 1),
        ("--mangle --unescape", "foo", "foo", 0),
        ("--unescape --mangle", "foo", "foo.service", 0),
        ("--path --suffix=service", "/a", "a.service", 0),
        ("--path --template=a@.service", "", "a@-.service", 0),
        ("", &long_x, &long_x, 0),
    ];
    for (args, input, want, exit) in rows {
        let args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
        check(&args, input, want.as_bytes(), *exit, "regression");
    }
}

#[test]
fn option_conflicts_are_refused() {
    for args in [
        "--mangle --suffix=mount",
        "--mangle --template=foo@.service",
        "--mangle --path",
        "--template=foo@.service --suffix=service",
        "--unescape --suffix=service",
        "--instance",
        "--unescape --instance --template=foo@.service",
    ] {
        let args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
        assert!(run(&args, b"foo@a.service").is_err(), "{args:?}");
    }
}

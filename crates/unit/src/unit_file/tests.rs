//! Table-driven tests of the unit-file model: round trips, lookups, edits, errors, drop-ins.

use super::*;
use crate::error::Problem;

fn parse(text: &str) -> UnitFile {
    UnitFile::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

const TRICKY: &[&str] = &[
    "",
    "\n",
    "[Unit]",
    "[Unit]\nDescription=x",
    "[Unit]\r\nDescription=x\r\n",
    "[Unit]\rDescription=x\r",
    "\u{feff}[Unit]\nA=1\n",
    "# leading comment\n; another\n\n[Unit]\nA=1\n",
    "[Unit]\nA=one \\\n  two\n",
    "[Unit]\nA=one\\\n# skipped\n; skipped\n two\n",
    "[Unit]\nA=one \\\n",
    "[Unit]\nA=one \\",
    "[Unit]\nA=one \\\n\nB=2\n",
    "[Unit]\nA=ends with escaped backslash \\\\\nB=2\n",
    "  [Unit]  \n\tA = spaced value \t\n",
    "[Unit]\nA=\nA=\n\n\n[Unit]\nA=2\n",
    "[Service]\nExecStart=/bin/echo \"a b\" 'c'\n   \n# trailing comment",
    "[X-Custom]\nKey With Space=v\n[Install]\nWantedBy=multi-user.target\n",
    "[Unit]\n   \\\n\nA=1\n",
    "# only comments\n# and no sections\n",
    "[Unit]\nA=ünïcödé ✓\n",
    "[Unit]\nA=x\r\nB=y\nC=z\r",
];

#[test]
fn tricky_inputs_round_trip_byte_identical() {
    for text in TRICKY {
        assert_eq!(parse(text).to_text(), *text, "{text:?}");
    }
}

#[test]
fn lookups_follow_systemd() {
    let f = parse(
        "[Unit]\nA=1\nA=2\nB=one \\\n  two\nC=x\\\n# comment\n y\n[Service]\nA=s\n[Unit]\nA=3\nD=\n",
    );
    assert_eq!(
        f.get("Unit", "A"),
        Some("3"),
        "the last value wins across repeated sections"
    );
    assert_eq!(
        f.get("Unit", "B"),
        Some("one    two"),
        "continuations are joined raw"
    );
    assert_eq!(
        f.get("Unit", "C"),
        Some("x  y"),
        "comments inside continuations are skipped"
    );
    assert_eq!(f.get("Unit", "D"), Some(""));
    assert_eq!(f.get("Service", "A"), Some("s"));
    assert_eq!(f.get("Unit", "Nope"), None);
    assert_eq!(f.get("Nope", "A"), None);
    assert_eq!(f.section_names(), ["Unit", "Service"]);
    assert_eq!(f.sections().len(), 3);
    let lines: Vec<usize> = f.entries("Unit").map(Entry::line).collect();
    assert_eq!(lines, [2, 3, 4, 6, 12, 13]);
    assert!(f.has_section("Service") && !f.has_section("Install"));
}

#[test]
fn list_values_reset_on_empty_assignment() {
    let f = parse(
        "[Service]\nExecStartPre=a\nExecStartPre=b\nExecStartPre=\nExecStartPre=c\n[Service]\nExecStartPre=d\n",
    );
    assert_eq!(f.get_all("Service", "ExecStartPre"), ["c", "d"]);
    let g = parse("[Service]\nExecStartPre=a\nExecStartPre=\n");
    assert!(g.get_all("Service", "ExecStartPre").is_empty());
}

#[test]
fn errors_carry_line_numbers() {
    let rows: &[(&str, usize, Problem)] = &[
        (
            "[Unit\nA=1\n",
            1,
            Problem::UnterminatedSection("[Unit".into()),
        ),
        (
            "[Unit]\nA=1\n[Service] # c\n",
            3,
            Problem::UnterminatedSection("[Service] # c".into()),
        ),
        (
            "# c\nA=1\n[Unit]\n",
            2,
            Problem::OutsideSection("A=1".into()),
        ),
        ("[Unit]\n\njunk\n", 3, Problem::MissingEquals("junk".into())),
        ("[Unit]\n=value\n", 2, Problem::MissingKey("=value".into())),
        ("[]\n", 1, Problem::BadSectionName("[]".into())),
        ("[A\"b]\n", 1, Problem::BadSectionName("[A\"b]".into())),
        (
            "[Unit]\nA=1 \\\n  more\njunk\n",
            4,
            Problem::MissingEquals("junk".into()),
        ),
        (
            "[Unit]\nno \\\n equals\n",
            2,
            Problem::MissingEquals("no   equals".into()),
        ),
    ];
    for (text, line, problem) in rows {
        match UnitFile::parse(text) {
            Err(Error::Syntax {
                line: l,
                problem: p,
                path: None,
            }) => {
                assert_eq!((l, &p), (*line, problem), "{text:?}")
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let e = UnitFile::parse("[Foo")
        .unwrap_err()
        .in_file("/etc/systemd/system/x.service");
    assert_eq!(
        e.to_string(),
        "/etc/systemd/system/x.service: line 1: section header '[Foo' does not end with ']'"
    );
}

#[test]
fn set_changes_last_and_drops_earlier() {
    let mut f = parse("# head\n[Unit]\nA=1 # c\nB=x\nA=2 \\\n  cont\n\n[Unit]\nA=3\n");
    f.set("Unit", "A", "new").unwrap();
    assert_eq!(f.to_text(), "# head\n[Unit]\nB=x\n\n[Unit]\nA=new\n");
    assert_eq!(f.get_all("Unit", "A"), ["new"]);
}

#[test]
fn append_goes_before_trailing_blank_lines() {
    let mut f = parse("[Unit]\nA=1\n\n[Service]\nExecStart=/bin/true\n");
    f.append("Unit", "Wants", "b.service").unwrap();
    f.append("Service", "ExecStart", "").unwrap();
    f.append("Install", "WantedBy", "multi-user.target")
        .unwrap();
    assert_eq!(
        f.to_text(),
        "[Unit]\nA=1\nWants=b.service\n\n[Service]\nExecStart=/bin/true\nExecStart=\n\n[Install]\nWantedBy=multi-user.target\n"
    );
}

#[test]
fn edits_keep_crlf_and_add_missing_newline() {
    let mut f = parse("[Unit]\r\nA=1");
    f.append("Unit", "B", "2").unwrap();
    assert_eq!(f.to_text(), "[Unit]\r\nA=1\r\nB=2\r\n");
    let mut g = parse("[Unit]\nA=1");
    g.add_section("Service").unwrap();
    g.append("Service", "Type", "oneshot").unwrap();
    assert_eq!(g.to_text(), "[Unit]\nA=1\n\n[Service]\nType=oneshot\n");
}

#[test]
fn new_drop_in_from_scratch() {
    let mut f = UnitFile::new();
    f.set("Service", "Environment", "A=1").unwrap();
    f.append("Service", "Environment", "B=2").unwrap();
    f.set("Unit", "Description", "portable drop-in").unwrap();
    let text = f.to_text();
    assert_eq!(
        text,
        "[Service]\nEnvironment=A=1\nEnvironment=B=2\n\n[Unit]\nDescription=portable drop-in\n"
    );
    let back = parse(&text);
    assert_eq!(back.get_all("Service", "Environment"), ["A=1", "B=2"]);
    assert_eq!(back.to_text(), text);
}

#[test]
fn remove_entries_and_sections() {
    let mut f = parse("[Unit]\nA=1\nB=2\nA=3\n[Install]\nWantedBy=x\n[Unit]\nA=4\n");
    assert_eq!(f.remove("Unit", "A"), 3);
    assert_eq!(f.remove("Unit", "A"), 0);
    assert_eq!(f.to_text(), "[Unit]\nB=2\n[Install]\nWantedBy=x\n[Unit]\n");
    assert_eq!(f.remove_section("Unit"), 2);
    assert_eq!(f.to_text(), "[Install]\nWantedBy=x\n");
}

#[test]
fn unwritable_values_are_refused() {
    let mut f = UnitFile::new();
    for (key, value) in [
        ("A", "line\nbreak"),
        ("A", " padded"),
        ("A", "trailing\\"),
        ("", "x"),
        ("A=B", "x"),
        ("#A", "x"),
        (" A", "x"),
    ] {
        let e = f.set("Unit", key, value).unwrap_err();
        assert!(
            matches!(e, Error::Unwritable { .. }),
            "{key:?}={value:?}: {e:?}"
        );
    }
    assert!(f.set("Unit", "A", "even\\\\").is_ok());
    for bad in ["", "A]", "[A", "A\nB", " A"] {
        assert!(f.add_section(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn unit_name_helpers_are_reexported() {
    let n = UnitName::parse("foo@bar.service").unwrap();
    assert_eq!(
        (n.prefix(), n.instance(), n.unit_type()),
        ("foo", Some("bar"), UnitType::Service)
    );
    assert!(is_valid_unit_name("a.mount") && !is_valid_unit_name("a.waldo"));
}

#[test]
fn dropin_dirs_table() {
    let rows: &[(&str, &[&str])] = &[
        ("foo.service", &["foo.service.d", "service.d"]),
        (
            "foo-bar-baz.service",
            &[
                "foo-bar-baz.service.d",
                "foo-bar-.service.d",
                "foo-.service.d",
                "service.d",
            ],
        ),
        (
            "foo-bar@x.service",
            &[
                "foo-bar@x.service.d",
                "foo-bar@.service.d",
                "foo-.service.d",
                "service.d",
            ],
        ),
        ("foo@.socket", &["foo@.socket.d", "socket.d"]),
        ("-.mount", &["-.mount.d", "mount.d"]),
        (
            "a--b.slice",
            &["a--b.slice.d", "a--.slice.d", "a-.slice.d", "slice.d"],
        ),
        ("foo-.service", &["foo-.service.d", "service.d"]),
        (
            "-foo-bar.mount",
            &["-foo-bar.mount.d", "-foo-.mount.d", "mount.d"],
        ),
    ];
    for (unit, want) in rows {
        assert_eq!(dropin_dirs(unit).unwrap(), *want, "{unit}");
    }
    assert!(dropin_dirs("not a unit").is_err());
}

fn cand(search_path: usize, dir: &str, file: &str, masked: bool) -> DropinCandidate {
    DropinCandidate {
        search_path,
        dir: dir.to_owned(),
        file: file.to_owned(),
        masked,
    }
}

#[test]
fn order_dropins_table() {
    let got = order_dropins(
        "foo-bar.service",
        [
            cand(2, "foo-bar.service.d", "20-b.conf", false),
            cand(0, "foo-bar.service.d", "20-b.conf", false),
            cand(1, "foo-.service.d", "10-a.conf", false),
            cand(1, "foo-bar.service.d", "10-a.conf", false),
            cand(0, "service.d", "30-c.conf", false),
            cand(0, "service.d", "10-a.conf", false),
            cand(0, "other.service.d", "05-x.conf", false),
            cand(0, "foo-bar.service.d", "README", false),
            cand(0, "foo-bar.service.d", "40-masked.conf", true),
            cand(2, "foo-bar.service.d", "40-masked.conf", false),
        ],
    )
    .unwrap();
    let want = [
        cand(1, "foo-bar.service.d", "10-a.conf", false),
        cand(0, "foo-bar.service.d", "20-b.conf", false),
        cand(0, "service.d", "30-c.conf", false),
    ];
    assert_eq!(got, want);
}

#[test]
fn layered_lookups() {
    let main = parse("[Service]\nExecStart=/bin/a\nEnvironment=A=1\nType=simple\n");
    let d1 = parse("[Service]\nEnvironment=B=2\n");
    let d2 = parse("[Service]\nExecStart=\nExecStart=/bin/b\nType=notify\n");
    let l = Layered::new(&main, [&d1, &d2]);
    assert_eq!(l.get("Service", "Type"), Some("notify"));
    assert_eq!(l.get_all("Service", "ExecStart"), ["/bin/b"]);
    assert_eq!(l.get_all("Service", "Environment"), ["A=1", "B=2"]);
    assert_eq!(l.get("Unit", "Description"), None);
}

#[test]
fn write_top_to_bottom() {
    let mut f = UnitFile::new();
    f.add_comment("Drop-in created for image '/x.raw', do not edit.")
        .unwrap();
    f.add_blank_line();
    f.push("Service", "RootImage", "/x.raw").unwrap();
    f.push("Service", "Environment", "PORTABLE=x.raw").unwrap();
    f.add_blank_line();
    f.push("Service", "ExtensionImages", "/e.raw").unwrap();
    f.push("Unit", "Description", "d").unwrap();
    f.add_comment("").unwrap();
    assert_eq!(
        f.to_text(),
        "# Drop-in created for image '/x.raw', do not edit.\n\n[Service]\nRootImage=/x.raw\n\
         Environment=PORTABLE=x.raw\n\nExtensionImages=/e.raw\n\n[Unit]\nDescription=d\n#\n"
    );
    assert!(f.add_comment("two\nlines").is_err());
    let back = parse(&f.to_text());
    assert_eq!(back.preamble().len(), 2);
    assert_eq!(back.get("Service", "ExtensionImages"), Some("/e.raw"));
}

/// Fuzz crash d7e2d304: a file that ends inside a continuation (`[%U]\` CR TAB `\` CR) was
/// written back with the next section glued onto that continuation, so the text `to_text`
/// produced after an edit did not parse.
#[test]
fn crash_d7e2d304_continuation_at_end_of_file() {
    let text = "[%U]\\\r\t\\\r";
    let mut unit = UnitFile::parse(text).unwrap();
    assert_eq!(
        unit.to_text(),
        text,
        "an unedited file is written back unchanged"
    );
    unit.set("Service", "Type", "oneshot").unwrap();
    let again = UnitFile::parse(&unit.to_text()).unwrap();
    assert_eq!(again.section_names(), ["%U", "Service"]);
    assert_eq!(again.get("Service", "Type"), Some("oneshot"));
    // The same for an assignment continued up to the end of the file.
    let mut unit = UnitFile::parse("[Service]\nExecStart=/bin/a \\\n  b \\").unwrap();
    unit.set("Install", "WantedBy", "multi-user.target")
        .unwrap();
    let again = UnitFile::parse(&unit.to_text()).unwrap();
    assert_eq!(again.get("Service", "ExecStart"), Some("/bin/a    b"));
    assert_eq!(again.get("Install", "WantedBy"), Some("multi-user.target"));
}

/// Regression (fuzz artifact crash-6c0aac03, found by the CI fuzz step): a section header
/// continued by a comment line up to the end of the file was written back with the next entry
/// glued onto that continuation ("[Service]  Type=oneshot").
#[test]
fn crash_6c0aac03_continuation_then_comment_at_end_of_file() {
    let text = "# The hec\n[Service]\nExeon=#The hec\n[Service] \\\n#";
    let mut unit = UnitFile::parse(text).unwrap();
    assert_eq!(
        unit.to_text(),
        text,
        "an unedited file is written back unchanged"
    );
    unit.set("Service", "Type", "oneshot").unwrap();
    let again = UnitFile::parse(&unit.to_text()).unwrap();
    assert_eq!(again.get("Service", "Type"), Some("oneshot"));
    assert_eq!(again.get("Service", "Exeon"), Some("#The hec"));
    // An assignment continued over comment lines to the end of the file, the same.
    let mut unit = UnitFile::parse("[Service]\nExecStart=/bin/a \\\n# c\n; d").unwrap();
    unit.set("Install", "WantedBy", "multi-user.target")
        .unwrap();
    let again = UnitFile::parse(&unit.to_text()).unwrap();
    assert_eq!(again.get("Service", "ExecStart"), Some("/bin/a"));
    assert_eq!(again.get("Install", "WantedBy"), Some("multi-user.target"));
}

/// Regression (fuzz artifact crash-f629c821, found by the CI fuzz step): a continuation open at
/// the end of a file whose last line ends in a lone `\r` was "closed" with a `\n` that only made
/// that ending `\r\n`, so the next entry was glued onto the section header.
#[test]
fn crash_f629c821_continuation_ending_in_a_lone_cr() {
    let text = "# T\r\r\r[Service] \\\n\\\r";
    let mut unit = UnitFile::parse(text).unwrap();
    assert_eq!(
        unit.to_text(),
        text,
        "an unedited file is written back unchanged"
    );
    unit.set("Service", "Type", "oneshot").unwrap();
    let again = UnitFile::parse(&unit.to_text()).unwrap();
    assert_eq!(again.get("Service", "Type"), Some("oneshot"));
}

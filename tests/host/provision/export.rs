//! Native-looking commands: a package's `export:` names become /usr/local/bin commands in a
//! booted container; one runs the binary inside the package's image under its profile (its
//! /etc/os-release is the image's, `strict`'s NoNewPrivileges and private network hold, it runs as
//! a dynamic user)
//! with arguments, stdin, stdout, stderr and the exit status passed through; an upgrade replaces
//! it, a file realms did not write is refused by path, and a prune removes the commands.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use realms_tests::container::Container;
use realms_tests::fixtures::write_portable_tree;
use realms_tests::http::HttpServer;
use realms_tests::scratch::unique;

use super::{Booted, Publisher, free_port, provision_root, realms};

/// The image's command: its os-release, its arguments one a line, a line of stdin, a line on
/// stderr, and the exit status `--exit=N` asks for.
const GOSS: &str = r#"#!/usr/bin/sh
. /etc/os-release
if [ "$1" = --version ]; then echo "goss version $VERSION_ID"; exit 0; fi
code=0
case "$1" in --exit=*) code=${1#--exit=}; shift;; esac
echo "os=$ID $VERSION_ID"
echo "uid=$(/usr/bin/busybox id -u)"
/usr/bin/busybox grep NoNewPrivs /proc/self/status
echo "net=$(/usr/bin/busybox awk -F: 'NR > 2 { gsub(/ /, "", $1); printf "%s ", $1 }' /proc/net/dev)"
for a in "$@"; do echo "arg=[$a]"; done
read -r line
echo "stdin=[$line]"
echo "to stderr" >&2
exit "$code"
"#;

/// `work/packages/goss_VERSION.tar.zst`: the busybox image with /usr/bin/goss (and goss-cli, a
/// link to it) and an /etc/os-release of its own.
fn goss_package(work: &Path, version: &str) -> PathBuf {
    let src = work.join(format!("src-goss-{version}"));
    let busybox = fs::read("/bin/busybox").unwrap();
    write_portable_tree(&src, &busybox, "goss");
    fs::write(
        src.join("etc/os-release"),
        format!("ID=gossimage\nVERSION_ID={version}\n"),
    )
    .unwrap();
    let bin = src.join("usr/bin/goss");
    fs::write(&bin, GOSS).unwrap();
    fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("goss", src.join("usr/bin/goss-cli")).unwrap();
    let out = work.join("packages");
    fs::create_dir_all(&out).unwrap();
    let (s, o) = (src.to_str().unwrap(), out.to_str().unwrap());
    realms(
        work,
        &[
            "provision",
            "pack",
            s,
            "--name",
            "goss",
            "--pkg-version",
            version,
            "-o",
            o,
        ],
    );
    out.join(format!("goss_{version}.tar.zst"))
}

fn manifest(b: &Booted, server: &str, version: &str, profile: &str, export: &str) {
    fs::write(
        b.c.root().join("etc/realms/provision.yaml"),
        format!(
            "composable:\n  default_repository: {server}/main\n  packages:\n\
             \x20   - name: goss\n      version: '{version}'\n      profile: {profile}\n      export: {export}\n"
        ),
    )
    .unwrap();
}

#[test]
fn an_exported_command_runs_in_the_package_image_with_its_stdio_and_status() {
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let p = Publisher::new(work);
    let v1 = goss_package(work, "1.2");
    let v2 = goss_package(work, "2.0");
    p.publish("main", &[&v1, &v2], &[]);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let _server = HttpServer::serve(&p.serve, addr);
    let server = format!("http://{addr}");

    let tree = provision_root("provision-export");
    let root = tree.path().to_path_buf();
    p.trust_in(&root);
    let b = Booted {
        c: Container::boot(&root, &unique("provision-export"), &[]),
        _tree: tree,
    };
    assert!(b.ok(". /etc/os-release; echo $ID").contains("debian"));

    // A file realms did not write is in the way: refused by path, nothing attached.
    b.ok("printf '#!/bin/sh\\necho mine\\n' > /usr/local/bin/goss-cli; chmod 755 /usr/local/bin/goss-cli");
    manifest(&b, &server, "1.2", "strict", "[goss, goss-cli]");
    let (ok, out) = b.sh("realms provision apply");
    assert!(
        !ok && out.contains("/usr/local/bin/goss-cli") && out.contains("not written by realms"),
        "{out}"
    );
    assert!(
        !b.ok("portablectl list --no-legend || true")
            .contains("goss")
    );
    assert_eq!(b.ok("/usr/local/bin/goss-cli").trim(), "mine");
    assert!(!b.c.root().join("usr/local/bin/goss").exists());
    b.ok("rm /usr/local/bin/goss-cli");

    let out = b.ok("realms provision apply");
    assert!(out.contains("installed goss 1.2"), "{out}");
    let status = b.ok("cat /var/lib/realms/provision/state.json");
    assert!(status.contains("\"goss-cli\""), "{status}");

    // The command, as a user would run it from the host's PATH.
    let (ok, out) = b.sh(
        "cd /tmp && printf 'hello from stdin\\n' | goss --exit=7 'a b' \"it's\" '' 2>/tmp/err; echo \"status=$?\"; echo \"err=$(cat /tmp/err)\"",
    );
    assert!(ok, "{out}");
    let want = [
        "os=gossimage 1.2",
        "NoNewPrivs:\t1",
        // strict: PrivateNetwork=yes.
        "net=lo ",
        "arg=[a b]",
        "arg=[it's]",
        "arg=[]",
        "stdin=[hello from stdin]",
        "status=7",
        "err=to stderr",
    ];
    for w in want {
        assert!(out.lines().any(|l| l == w), "no line {w:?} in:\n{out}");
    }
    let uid = out
        .lines()
        .find_map(|l| l.strip_prefix("uid="))
        .unwrap_or_default();
    assert!(uid != "0" && !uid.is_empty(), "runs as root: {out}");
    assert_eq!(b.ok("goss --version").trim(), "goss version 1.2");
    assert_eq!(b.ok("goss-cli --version").trim(), "goss version 1.2");
    assert_eq!(
        b.ok("echo | goss 2>/dev/null; echo $?").lines().last(),
        Some("0")
    );

    // An upgrade (to the default profile) replaces the commands, a name dropped from export
    // goes.
    manifest(&b, &server, "2.0", "default", "[goss]");
    let out = b.ok("realms provision apply");
    assert!(out.contains("upgraded goss 2.0"), "{out}");
    assert_eq!(b.ok("goss --version").trim(), "goss version 2.0");
    let out = b.ok("echo x | goss 2>/dev/null");
    // default: the host's network (more than a loopback device).
    let net = out
        .lines()
        .find_map(|l| l.strip_prefix("net="))
        .unwrap_or("");
    assert!(
        out.contains("os=gossimage 2.0") && net.split_whitespace().count() > 1,
        "{out}"
    );
    assert!(!b.c.root().join("usr/local/bin/goss-cli").exists());
    assert!(b.ok("realms provision apply").contains("nothing changed"));

    // A prune removes the package and its command.
    fs::write(
        b.c.root().join("root/empty.yaml"),
        format!("composable:\n  default_repository: {server}/main\n  packages: []\n"),
    )
    .unwrap();
    b.ok("realms provision apply --prune /root/empty.yaml");
    assert!(!b.c.root().join("usr/local/bin/goss").exists());
    assert!(
        !b.ok("portablectl list --no-legend || true")
            .contains("goss")
    );
    b.c.stop();
}

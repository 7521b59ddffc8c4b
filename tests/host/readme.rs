//! The README's "Using it" block, run as written (each line through bash, `realms` being this
//! build with `--root` of a fresh store). Only the outbound part is pointed at this machine: the
//! realm's apt sources name a local nginx serving a repository made on the spot.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use realms_tests::aptrepo;
use realms_tests::http::HttpServer;
use realms_tests::realms::TestRoot;
use realms_tests::scratch::Scratch;

/// The lines of the first ```sh block after "## Using it", comments removed.
fn using_it_lines() -> Vec<String> {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("read README.md");
    let section = readme
        .split_once("## Using it")
        .expect("README.md has a '## Using it' section")
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("'Using it' starts with a ```sh block")
        .0;
    block
        .lines()
        .map(|l| {
            l.split_once("  #")
                .map_or(l, |(cmd, _)| cmd)
                .trim()
                .to_string()
        })
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn bash(t: &TestRoot, cwd: &Path, line: &str) -> String {
    let script = format!(
        "set -eo pipefail\nrealms() {{ '{}' --root '{}' \"$@\"; }}\n{line}\n",
        realms_tests::realms_bin().display(),
        t.path().display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "README line `{line}` failed ({}):\n{text}",
        out.status
    );
    text
}

/// Before the first line that installs with apt: the realm's zone gets a local repository on
/// its bridge address, and the realm's apt sources point there.
fn point_apt_at_a_local_repository(t: &TestRoot, line: &str, repo: &Path) -> Option<HttpServer> {
    let realm = line
        .split_whitespace()
        .skip_while(|w| *w != "run")
        .nth(1)
        .expect("the apt line runs `realms run REALM -- ...`");
    t.ok(&["start", realm]);
    let config: serde_json::Value =
        serde_json::from_str(&t.ok(&["--json", "config", realm, "network-zone"])).unwrap();
    let zone = config["network-zone"].as_str().unwrap().to_string();
    let zone: serde_json::Value = serde_json::from_str(&t.ok(&["--json", "zone", &zone])).unwrap();
    let subnet = zone
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|z| z["subnet"].as_str())
        .expect("the zone has a subnet");
    let net: Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
    let gateway = Ipv4Addr::from(u32::from(net) + 1);
    aptrepo::add_package(repo, "vim");
    let server = HttpServer::serve(repo, SocketAddr::from((gateway, 8081)));
    t.ok(&[
        "run",
        realm,
        "--",
        "sh",
        "-c",
        &format!(
            "rm -f /etc/apt/sources.list.d/*; echo 'deb [trusted=yes] http://{}/ ./' > /etc/apt/sources.list",
            server.addr
        ),
    ]);
    Some(server)
}

#[test]
fn the_readme_using_it_block_runs_as_written() {
    let t = TestRoot::empty();
    let work = Scratch::empty("readme");
    let repo = work.path().join("repo");
    fs::create_dir_all(&repo).unwrap();
    let lines = using_it_lines();
    assert!(lines.len() > 5, "{lines:?}");
    let mut server = None;
    for line in &lines {
        if server.is_none() && line.contains("apt-get") {
            server = point_apt_at_a_local_repository(&t, line, &repo);
        }
        bash(&t, work.path(), line);
        if line.contains("apt-get install -y vim") {
            let realm = line.split_whitespace().nth(2).unwrap();
            assert_eq!(
                t.ok(&["run", realm, "--", "vim"]).trim(),
                "vim from the local test repository"
            );
        }
    }
    assert!(server.is_some(), "the block installs nothing with apt");
}

//! A download cut half-way by the server (nginx, slowed down with `limit_rate`, killed in the
//! middle of the transfer) fails saying the next try resumes, installs nothing, and the next
//! apply asks only for the rest with a Range request (nginx logs a 206 of the missing bytes)
//! and installs the package.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use realms_tests::fixtures::write_portable_tree;
use realms_tests::http::HttpServer;

use super::{Publisher, free_port, realms};

/// The size of the cache's `.part` file of the package, if any.
pub(super) fn part_len(root: &Path) -> u64 {
    fs::read_dir(root.join("var/cache/realms/provision"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// `cut_1.tar`: 4 MiB that do not compress, in an uncompressed package (a download that
/// can be cut mid-way), built from `work/SRC_DIR` into `work/OUT_DIR`.
pub(super) fn cut_package(work: &Path, src_dir: &str, out_dir: &str) -> PathBuf {
    let src = work.join(src_dir);
    write_portable_tree(&src, &fs::read("/bin/busybox").unwrap(), "cut");
    let noise: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(src.join("usr/bin/data"), noise).unwrap();
    let out = work.join(out_dir);
    fs::create_dir_all(&out).unwrap();
    let (s, o) = (src.display().to_string(), out.display().to_string());
    realms(
        work,
        &[
            "provision",
            "pack",
            &s,
            "--name",
            "cut",
            "--pkg-version",
            "1",
            "--format",
            "tar",
            "-o",
            &o,
        ],
    );
    out.join("cut_1.tar")
}

#[test]
fn a_download_cut_by_the_server_resumes_with_range_on_the_next_apply() {
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let p = Publisher::new(work);
    let serve = p.serve.clone();
    let pkg = cut_package(work, "src", "out");
    let size = fs::metadata(&pkg).unwrap().len();
    p.publish("main", &[&pkg], &[]);

    let root = work.join("root");
    p.trust_in(&root);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    fs::write(
        root.join("etc/realms/provision.yaml"),
        format!(
            "composable:\n  default_repository: http://{addr}/main\n  packages:\n    - name: cut\n"
        ),
    )
    .unwrap();

    // 1 MiB/s: the transfer takes about 4 s; the server goes away after the first MiB.
    let slow = HttpServer::serve_with(&serve, addr, "limit_rate 1m;");
    let apply = Command::new(realms_tests::realms_bin())
        .arg("--root")
        .arg(&root)
        .args(["provision", "apply"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while part_len(&root) < 1 << 20 {
        assert!(Instant::now() < deadline, "the download never got 1 MiB in");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(slow);
    let out = apply.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("the next try resumes"),
        "a cut download: {err}"
    );
    let have = part_len(&root);
    assert!(
        have >= 1 << 20 && have < size,
        "{have} of {size} bytes kept"
    );
    let installed: Vec<_> = fs::read_dir(root.join("var/lib/portables"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        installed.is_empty(),
        "installed from a cut download: {installed:?}"
    );

    // The server is back: the next apply fetches only what is missing.
    let log = work.join("access.log");
    let _server = HttpServer::serve_with(
        &serve,
        addr,
        &format!("access_log {} combined;", log.display()),
    );
    realms(&root, &["provision", "apply"]);
    assert!(root.join("var/lib/portables/cut_1").is_dir());
    let log = fs::read_to_string(&log).unwrap();
    let get = log
        .lines()
        .find(|l| l.contains("/cut_1.tar "))
        .unwrap_or_else(|| panic!("no GET of the package: {log}"));
    let fields: Vec<&str> = get.split('"').nth(2).unwrap().split_whitespace().collect();
    assert_eq!(fields[0], "206", "not a range answer: {get}");
    let sent: u64 = fields[1].parse().unwrap();
    assert_eq!(sent, size - have, "{get}: resumed at {have} of {size}");
}

//! The HTTP transport against a tiny server on 127.0.0.1 in this process: a 503 is retried,
//! and a download cut half-way resumes with a Range request on the next apply.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::apply::{Action, Options, apply};
use crate::fetch::Fetcher;
use crate::index;
use crate::manifest::{self, Stream};
use crate::publish::{Publish, pack, publish};

/// Serves `dir`; the first GET of each package file is cut after half its bytes, the first
/// request of all gets a 503. Returns the address and the log of request lines and ranges.
fn serve(dir: PathBuf) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        let mut cut: Vec<String> = Vec::new();
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            let path = first.split(' ').nth(1).unwrap_or("/").to_string();
            seen.lock()
                .unwrap()
                .push(format!("{path} {}", range.unwrap_or(0)));
            if n == 0 {
                let _ = stream.write_all(
                    b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let Ok(bytes) = fs::read(dir.join(path.trim_start_matches('/'))) else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let from = range.unwrap_or(0);
            let head = match range {
                Some(r) => format!(
                    "HTTP/1.1 206 Partial\r\nContent-Range: bytes {r}-{}/{}\r\n",
                    bytes.len() - 1,
                    bytes.len()
                ),
                None => "HTTP/1.1 200 OK\r\n".to_string(),
            };
            let body = &bytes[from..];
            let _ = stream.write_all(
                format!(
                    "{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            if path.ends_with(".tar.gz") && !cut.contains(&path) {
                cut.push(path);
                let _ = stream.write_all(&body[..body.len() / 2]);
                let _ = stream.flush();
                continue; // dropped: the transfer stops half-way
            }
            let _ = stream.write_all(body);
        }
    });
    (format!("http://{addr}"), log)
}

#[test]
fn a_503_is_retried_and_a_cut_download_resumes_with_range() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let repo = dir.path().join("repo");
    fs::create_dir_all(&root).unwrap();
    let (private, _) = realms_image::keys::generate(&root, "repo").unwrap();
    let key = realms_image::keys::load_private(&private).unwrap();
    let src = dir.path().join("src");
    crate::tests::portable_tree(&src, "foo", "1");
    // Some incompressible bytes, so the package is large enough to cut.
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(src.join("usr/bin/data"), noise).unwrap();
    let file = pack(&src, "foo", "1", crate::index::Ext::TarGz, dir.path()).unwrap();
    let size = fs::metadata(&file).unwrap().len() as usize;
    publish(
        &Publish {
            repo: repo.to_str().unwrap(),
            arch: index::host_arch(),
            stream: Stream::Stable,
            valid_for: 3600,
            serial: None,
        },
        &[file],
        &key,
    )
    .unwrap();
    let (url, log) = serve(repo);
    let m = dir.path().join("m.yaml");
    fs::write(
        &m,
        format!("composable:\n  packages:\n    - name: foo\n      repository: {url}\n"),
    )
    .unwrap();
    let manifest = manifest::load(&root, Some(&m)).unwrap();
    let fetcher = Fetcher::new(3, Duration::from_millis(10));
    let e = apply(&root, &manifest, &fetcher, &Options::default(), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("resumes"), "{e}");
    assert!(
        fs::read_dir(root.join(crate::install::PORTABLES))
            .unwrap()
            .next()
            .is_none(),
        "nothing installed from a cut download"
    );
    let steps = apply(&root, &manifest, &fetcher, &Options::default(), &mut |_| {}).unwrap();
    assert_eq!(steps[0].action, Action::Install);
    let log = log.lock().unwrap().clone();
    let arch = index::host_arch();
    let gets: Vec<&String> = log.iter().filter(|l| l.contains("foo_1.tar.gz")).collect();
    assert_eq!(gets.len(), 2, "{log:?}");
    assert_eq!(*gets[0], format!("/{arch}/foo_1.tar.gz 0"));
    let resumed_at: usize = gets[1].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        resumed_at > 0 && resumed_at <= size / 2,
        "resumed at {resumed_at} of {size}: {log:?}"
    );
    assert_eq!(log[0], log[1], "the 503 was retried: {log:?}");
}

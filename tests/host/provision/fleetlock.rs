//! A fleet lock with one slot: two booted containers (two machines with their own machine ids)
//! updating at once take turns. The lock server is a minimal FleetLock server started by the
//! test (`POST /v1/pre-reboot` takes the one slot, `POST /v1/steady-state` gives it back, as
//! Zincati's protocol and airlock have them); its log shows the turns.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use realms_tests::http::HttpServer;

use super::update::{boot_provisioned, upd_package};
use super::{Publisher, free_port, wait_for};

/// Serves the FleetLock protocol with one slot on 127.0.0.1; returns its url and its log
/// (`pre-reboot ID granted|denied`, `steady-state ID`).
fn fleet_lock_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        let mut holder: Option<String> = None;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let (mut length, mut protocol) = (0usize, false);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                protocol |= lower.starts_with("fleet-lock-protocol: true");
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = json["client_params"]["id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let path = first.split(' ').nth(1).unwrap_or("");
            let (status, line) = match (path, protocol) {
                (_, false) => (
                    "400 Bad Request",
                    format!("{path} without the protocol header"),
                ),
                ("/v1/pre-reboot", _) if holder.is_none() || holder.as_deref() == Some(&id) => {
                    holder = Some(id.clone());
                    ("200 OK", format!("pre-reboot {id} granted"))
                }
                ("/v1/pre-reboot", _) => ("409 Conflict", format!("pre-reboot {id} denied")),
                ("/v1/steady-state", _) => {
                    if holder.as_deref() == Some(&id) {
                        holder = None;
                    }
                    ("200 OK", format!("steady-state {id}"))
                }
                _ => ("404 Not Found", format!("{path} unknown")),
            };
            seen.lock().unwrap().push(line);
            let reply = if status.starts_with("409") {
                r#"{"kind":"failed_lock","value":"semaphore currently held"}"#
            } else {
                "{}"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (url, log)
}

#[test]
fn two_machines_take_turns_with_a_one_slot_fleet_lock() {
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let p = Publisher::new(work);
    p.publish("main", &[&upd_package(work, "1", None)], &[]);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let _server = HttpServer::serve(&p.serve, addr);
    let (lock_url, log) = fleet_lock_server();
    let manifest = format!(
        "composable:\n  default_repository: http://{addr}/main\n  updates:\n    strategy: fleet_lock\n\
         \x20   fleet_lock: {{base_url: '{lock_url}', group: web}}\n  packages:\n\
         \x20   - name: upd\n      start: [upd.service]\n      health: {{settle: 3s}}\n"
    );
    let a = boot_provisioned(&p, &manifest, "fleet-a");
    let b = boot_provisioned(&p, &manifest, "fleet-b");
    let id = |m: &super::Booted| m.ok("cat /etc/machine-id").trim().to_string();
    let (ida, idb) = (id(&a), id(&b));
    assert_ne!(ida, idb, "the two machines share a machine id");
    for m in [&a, &b] {
        m.ok("realms provision apply");
    }
    p.publish("main", &[&upd_package(work, "2", None)], &[]);

    // A starts and takes the slot; B, updating meanwhile, finds it taken and waits.
    a.ok("systemctl start --no-block realms-provision-update.service");
    let granted = format!("pre-reboot {ida} granted");
    for _ in 0..200 {
        if log.lock().unwrap().contains(&granted) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = b.ok("realms provision update");
    assert!(out.contains("waiting") && out.contains("is taken"), "{out}");
    assert_eq!(b.upd_running_version(), "1");
    wait_for(
        &a,
        "systemctl show -p ActiveState --value realms-provision-update.service | grep -qx inactive",
    );
    assert_eq!(a.upd_running_version(), "2");
    // A gave the slot back: B's next run takes it.
    let journal = b.run_update_unit();
    assert!(journal.contains("updated upd 1 -> 2"), "{journal}");
    assert_eq!(b.upd_running_version(), "2");
    let turns = log.lock().unwrap().clone();
    assert_eq!(
        turns,
        [
            format!("pre-reboot {ida} granted"),
            format!("pre-reboot {idb} denied"),
            format!("steady-state {ida}"),
            format!("pre-reboot {idb} granted"),
            format!("steady-state {idb}"),
        ],
        "the lock server's log"
    );
    eprintln!("fleet lock server log:\n{}", turns.join("\n"));
    a.c.stop();
    b.c.stop();
}

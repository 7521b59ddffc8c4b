//! The fleet-wide update lock of `updates: {strategy: fleet_lock}`: at most K machines of a
//! group update at once. Over `http(s)://` it is the FleetLock protocol Zincati speaks (`POST
//! BASE/v1/pre-reboot` takes a slot, `POST BASE/v1/steady-state` gives it back, both with
//! `{"client_params": {"id": ..., "group": ...}}` and the header `fleet-lock-protocol: true`);
//! over `file://` the slots are files `BASE/GROUP/slot-N` holding the machine id, created
//! exclusively (a shared directory, e.g. the repository's file system).

use realms_sys::IoContext;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::fetch::Fetcher;
use crate::window::FleetLock;
use crate::{Error, Result};

/// This machine's id in the lock: its `/etc/machine-id` (under the root).
pub fn machine_id(root: &Path) -> String {
    fs::read_to_string(root.join("etc/machine-id"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-machine".into())
}

/// A slot held; given back on drop (best effort: a slot not given back is taken again by the
/// same machine next time, the server or directory keeps it otherwise).
#[derive(Debug)]
pub struct Held {
    how: How,
    id: String,
}

#[derive(Debug)]
enum How {
    File(PathBuf),
    Http {
        fetcher: Fetcher,
        base: String,
        group: String,
    },
}

fn body(id: &str, group: &str) -> String {
    serde_json::json!({ "client_params": { "id": id, "group": group } }).to_string()
}

/// Takes a slot of `lock` for machine `id`; `Ok(None)` when every slot is taken (the reason is
/// logged).
pub fn acquire(lock: &FleetLock, id: &str, fetcher: &Fetcher) -> Result<Option<Held>> {
    if let Some(dir) = lock.base_url.strip_prefix("file://") {
        return acquire_file(&Path::new(dir).join(&lock.group), lock.slots, id);
    }
    let base = lock.base_url.trim_end_matches('/').to_string();
    let url = format!("{base}/v1/pre-reboot");
    let (status, text) = fetcher.post_json(
        &url,
        &[("fleet-lock-protocol", "true")],
        &body(id, &lock.group),
    )?;
    if status == 200 {
        tracing::info!("fleet lock {url}: slot taken for {id}");
        return Ok(Some(Held {
            how: How::Http {
                fetcher: fetcher.clone(),
                base,
                group: lock.group.clone(),
            },
            id: id.to_string(),
        }));
    }
    tracing::info!("fleet lock {url}: no slot ({status}: {})", text.trim());
    Ok(None)
}

fn acquire_file(dir: &Path, slots: u32, id: &str) -> Result<Option<Held>> {
    fs::create_dir_all(dir).ctx("creating", dir)?;
    // A slot this machine holds already (a run killed before it gave it back) is its own.
    for n in 0..slots {
        let slot = dir.join(format!("slot-{n}"));
        if fs::read_to_string(&slot).is_ok_and(|t| t.trim() == id) {
            return Ok(Some(Held {
                how: How::File(slot),
                id: id.to_string(),
            }));
        }
    }
    for n in 0..slots {
        let slot = dir.join(format!("slot-{n}"));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&slot)
        {
            Ok(mut f) => {
                f.write_all(format!("{id}\n").as_bytes())
                    .and_then(|()| f.sync_all())
                    .ctx("writing", &slot)?;
                return Ok(Some(Held {
                    how: How::File(slot),
                    id: id.to_string(),
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("creating", &slot, e)),
        }
    }
    tracing::info!("fleet lock {}: all {slots} slot(s) taken", dir.display());
    Ok(None)
}

impl Drop for Held {
    fn drop(&mut self) {
        match &self.how {
            How::File(slot) => {
                if fs::read_to_string(slot).is_ok_and(|t| t.trim() == self.id)
                    && let Err(e) = fs::remove_file(slot)
                {
                    tracing::warn!("fleet lock {}: giving the slot back: {e}", slot.display());
                }
            }
            How::Http {
                fetcher,
                base,
                group,
            } => {
                let url = format!("{base}/v1/steady-state");
                match fetcher.post_json(
                    &url,
                    &[("fleet-lock-protocol", "true")],
                    &body(&self.id, group),
                ) {
                    Ok((200, _)) => tracing::info!("fleet lock {url}: slot given back"),
                    Ok((status, text)) => {
                        tracing::warn!("fleet lock {url}: {status}: {}", text.trim())
                    }
                    Err(e) => tracing::warn!("fleet lock: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(dir: &Path, slots: u32) -> FleetLock {
        FleetLock {
            base_url: format!("file://{}", dir.display()),
            group: "web".into(),
            slots,
        }
    }

    #[test]
    fn file_slots_are_taken_in_turn_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fetcher::default();
        let a = acquire(&lock(dir.path(), 1), "a", &f).unwrap().unwrap();
        assert!(acquire(&lock(dir.path(), 1), "b", &f).unwrap().is_none());
        // a's own slot is a's again (a killed run).
        let again = acquire(&lock(dir.path(), 1), "a", &f).unwrap();
        assert!(again.is_some());
        std::mem::forget(again);
        drop(a);
        assert!(!dir.path().join("web/slot-0").exists());
        let b = acquire(&lock(dir.path(), 2), "b", &f).unwrap().unwrap();
        let c = acquire(&lock(dir.path(), 2), "c", &f).unwrap().unwrap();
        assert!(acquire(&lock(dir.path(), 2), "d", &f).unwrap().is_none());
        drop((b, c));
        assert!(acquire(&lock(dir.path(), 2), "d", &f).unwrap().is_some());
    }
}

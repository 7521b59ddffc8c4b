//! The encrypted image: `/state/encrypted.img`, a sparse NOCOW file holding LUKS2 (random volume
//! key, made by cryptsetup) with btrfs inside, enrolled with systemd-cryptenroll so that
//! `systemd-cryptsetup` unlocks it at boot with `tpm2-device=auto`, plus a recovery key shown
//! once. Needs device-mapper (the guest tier); LUKS header work alone runs anywhere.
//!
//! Secrets: the temporary key that creates the volume lives in a 0600 file in a 0700 directory
//! on /run (tmpfs), is wiped from the LUKS header once the other keys are enrolled, and is
//! overwritten and removed; the recovery key is only returned to the caller, never logged, and
//! never put into an error.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use realms_sys::cmd::Cmd;
use realms_sys::event::{Event, Report};
use realms_sys::mount::{self, MountFlags};

use crate::entries::{self, ENCRYPTED, IMAGE};
use crate::error::{Error, Result};
use crate::generator::DM_NAME;
use realms_sys::IoContext;

/// How the image is enrolled.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// The TPM2 device (`auto`: /dev/tpmrm0); `None`: no TPM2 enrollment.
    pub tpm2_device: Option<String>,
    /// The PCRs the TPM2 policy binds to (`7`, `7+11`, ...).
    pub tpm2_pcrs: String,
    /// A file (`-`: standard input) holding a passphrase to enroll as well.
    pub passphrase_file: Option<PathBuf>,
}

impl Default for EnrollOptions {
    /// TPM2 through `/dev/tpmrm0` if there is one, bound to PCR 7 (Secure Boot state).
    fn default() -> Self {
        EnrollOptions {
            tpm2_device: Some("auto".into()),
            tpm2_pcrs: "7".into(),
            passphrase_file: None,
        }
    }
}

/// What creating the image gave.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Created {
    /// The image.
    pub image: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Whether a TPM2 key slot was enrolled.
    pub tpm2: bool,
    /// The recovery key (systemd-cryptenroll's format), to show once.
    pub recovery_key: String,
}

/// A private directory on /run holding one key file; overwritten and removed on drop.
struct KeyFile {
    dir: PathBuf,
    file: PathBuf,
}

impl KeyFile {
    fn new(bytes: &[u8]) -> Result<KeyFile> {
        let dir = crate::scratch::tempdir_in_run("key")?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .ctx("protecting", &dir)?;
        let file = dir.join("key");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .ctx("creating", &file)?;
        f.write_all(bytes).ctx("writing", &file)?;
        Ok(KeyFile { dir, file })
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        if let Ok(len) = std::fs::metadata(&self.file).map(|m| m.len()) {
            let _ = std::fs::write(&self.file, vec![0u8; len as usize]);
        }
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Whether the kernel really has device-mapper: its misc device is registered (a
/// `/dev/mapper/control` node alone proves nothing, anyone can mknod one).
pub fn dm_usable() -> bool {
    let registered = || Path::new("/sys/class/misc/device-mapper").exists();
    if !registered() && realms_sys::dm::available() {
        // A static node of a module not loaded yet (kmod's devname alias): load it.
        let _ = Cmd::new("modprobe").arg("dm_mod").run();
    }
    registered() && realms_sys::dm::available()
}

fn require_dm() -> Result<()> {
    if dm_usable() {
        Ok(())
    } else {
        Err(Error::Unsupported {
            what: "device-mapper (/dev/mapper/control)",
            hint: "the encrypted image needs dm-crypt; run this on the target machine (or in the guest tier)",
        })
    }
}

/// Whether a TPM2 resource manager device is present.
fn tpm2_present() -> bool {
    Path::new("/dev/tpmrm0").exists()
}

/// Creates `state/encrypted.img` of `size` bytes (sparse), formats and enrolls it, makes btrfs
/// inside with the default encrypted entries, and leaves it closed.
pub fn create(
    state: &Path,
    size: u64,
    opts: &EnrollOptions,
    report: &dyn Report,
) -> Result<Created> {
    require_dm()?;
    let image = state.join(IMAGE);
    if image.exists() {
        return Err(Error::ImageExists { image });
    }
    // Read first: a bad passphrase file must fail before anything is made.
    let passphrase = match &opts.passphrase_file {
        Some(f) => Some(KeyFile::new(&read_key(f)?)?),
        None => None,
    };
    let staging = state.join(".encrypted.img.new");
    let _ = std::fs::remove_file(&staging);
    std::fs::File::create(&staging).ctx("creating", &staging)?;
    // NOCOW before any data: the image is rewritten in place all the time.
    Cmd::new("chattr").arg("+C").arg(&staging).run()?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&staging)
        .and_then(|f| f.set_len(size))
        .ctx("sizing", &staging)?;
    let key = KeyFile::new(&realms_sys::random::bytes::<64>()?)?;
    // The temporary key is wiped at the end, so the cheapest KDF is fine for it.
    Cmd::new("cryptsetup")
        .args(["luksFormat", "--type", "luks2", "--batch-mode"])
        .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
        .arg("--key-file")
        .arg(&key.file)
        .arg(&staging)
        .run()?;
    report.report(Event::progress(format!(
        "formatted the encrypted image (LUKS2, {} MiB, sparse)",
        size >> 20
    )));
    // A name of this command's own: the machine's own state may be open as DM_NAME, and a
    // mapping a killed setup left is recognized by its dead PID (`close_stale_setups`).
    let name = format!("{SETUP_DM_PREFIX}{}", std::process::id());
    open_with_key(&staging, &key.file, &name)?;
    let made = make_fs(state, &name);
    let closed = close(&name);
    made?;
    closed?;
    let recovery_key = enroll_recovery(&staging, &key.file)?;
    if let Some(p) = &passphrase {
        add_passphrase(&staging, &key.file, &p.file)?;
        report.report(Event::progress("enrolled the passphrase"));
    }
    let tpm2 = match &opts.tpm2_device {
        Some(dev) if dev != "auto" || tpm2_present() => {
            enroll_tpm2(&staging, &key.file, dev, &opts.tpm2_pcrs)?;
            report.report(Event::progress(format!(
                "enrolled the TPM2 (PCRs {})",
                opts.tpm2_pcrs
            )));
            true
        }
        Some(_) => {
            report.report(Event::warning(
                "no TPM2 (/dev/tpmrm0): only the recovery key unlocks the image",
            ));
            false
        }
        None => false,
    };
    // Wipe the temporary key's slot (0); the recovery key and the TPM2 remain.
    Cmd::new("systemd-cryptenroll")
        .arg(format!("--unlock-key-file={}", key.file.display()))
        .arg("--wipe-slot=0")
        .arg(&staging)
        .run()?;
    drop(key);
    realms_sys::atomic::rename(&staging, &image)?;
    realms_sys::atomic::fsync_dir(state)?;
    Ok(Created {
        image,
        size,
        tpm2,
        recovery_key,
    })
}

/// Opens with a key file. The volume key goes into the dm-crypt table, not the kernel keyring:
/// a LUKS2 volume whose key is in the keyring can only be resized with a key again, and after a
/// key-file unlock there is none (no TPM2 token to use), so `realms state resize` would fail.
fn open_with_key(image: &Path, key: &Path, name: &str) -> Result<()> {
    Cmd::new("cryptsetup")
        .args([
            "open",
            "--type",
            "luks2",
            "--allow-discards",
            "--persistent",
            "--disable-keyring",
        ])
        .arg("--key-file")
        .arg(key)
        .arg(image)
        .arg(name)
        .run()?;
    Ok(())
}

fn close(name: &str) -> Result<()> {
    Cmd::new("cryptsetup").args(["close", name]).run()?;
    Ok(())
}

/// The prefix of the mapping `setup` opens its new image under, followed by its PID.
pub const SETUP_DM_PREFIX: &str = "realms-setup-";

/// The PID in the name of a mapping `setup` opened, if `name` is one.
fn setup_pid(name: &str) -> Option<u32> {
    name.strip_prefix(SETUP_DM_PREFIX)?.parse().ok()
}

/// Closes the mappings that killed `setup` commands left open (their PID is gone): each holds
/// the image it was making, and through it the disk `setup` would refuse as in use.
pub fn close_stale_setups() {
    let Ok(items) = std::fs::read_dir("/dev/mapper") else {
        return;
    };
    for item in items.flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        match setup_pid(&name) {
            Some(pid) if !realms_sys::proc::pid_alive(pid) => {
                if let Err(e) = close(&name) {
                    tracing::warn!("closing {name}, left by a killed setup: {e}");
                }
            }
            _ => {}
        }
    }
}

/// btrfs inside, with the default encrypted entries.
fn make_fs(state: &Path, name: &str) -> Result<()> {
    let dev = format!("/dev/mapper/{name}");
    Cmd::new("mkfs.btrfs")
        .args(["-q", "-f", "-L", "state-encrypted", &dev])
        .run()?;
    let mnt = crate::scratch::tempdir_in_run("mkfs")?;
    let guard = mount::mount_fs(&dev, &mnt, "btrfs", MountFlags::empty(), "discard=async")?;
    let made = entries::DEFAULT_ENCRYPTED
        .iter()
        .try_for_each(|n| entries::create(&mnt, n));
    let unmounted = guard.unmount();
    let _ = std::fs::remove_dir(&mnt);
    made?;
    unmounted?;
    let names: Vec<String> = entries::DEFAULT_ENCRYPTED
        .iter()
        .map(|s| s.to_string())
        .collect();
    entries::write_list(state, &names)
}

/// `systemd-cryptenroll --recovery-key`; the key is read from its stdout and nowhere else.
fn enroll_recovery(image: &Path, key: &Path) -> Result<String> {
    let out = Command::new("systemd-cryptenroll")
        .arg(format!("--unlock-key-file={}", key.display()))
        .arg("--recovery-key")
        .arg(image)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ctx("running systemd-cryptenroll --recovery-key for", image)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = text
        .split_whitespace()
        .find(|w| is_recovery_key(w))
        .map(String::from);
    match (out.status.success(), found) {
        (true, Some(k)) => Ok(k),
        // Never include stdout here: it may hold the key.
        _ => Err(Error::Enroll {
            image: image.to_path_buf(),
            status: out.status,
        }),
    }
}

/// systemd's recovery key: 8 groups of 8 modhex characters joined by `-`.
pub fn is_recovery_key(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 8
        && groups
            .iter()
            .all(|g| g.len() == 8 && g.bytes().all(|c| b"cbdefghijklnrtuv".contains(&c)))
}

fn enroll_tpm2(image: &Path, key: &Path, device: &str, pcrs: &str) -> Result<()> {
    Cmd::new("systemd-cryptenroll")
        .arg(format!("--unlock-key-file={}", key.display()))
        .arg(format!("--tpm2-device={device}"))
        .arg(format!("--tpm2-pcrs={pcrs}"))
        .arg(image)
        .run()?;
    Ok(())
}

/// What `enroll` adds (replacing the old one of the same kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enroll {
    /// A TPM2 key slot bound to these PCRs, through this device.
    Tpm2 {
        /// The device (`auto`).
        device: String,
        /// The PCRs (`7`).
        pcrs: String,
    },
    /// A new recovery key (returned, to show once).
    RecoveryKey,
    /// A passphrase read from this file (`-`: standard input), replacing the passphrases
    /// enrolled before (key slots no token points at).
    Passphrase(PathBuf),
}

/// Adds or replaces the TPM2 slot or the recovery key of `state/encrypted.img`, unlocking with
/// the key (recovery key or passphrase) in `key_file`. Returns a new recovery key if one was
/// made. Header-only: works without device-mapper.
pub fn enroll(state: &Path, what: &Enroll, key_file: &Path) -> Result<Option<String>> {
    let image = state.join(IMAGE);
    let key = KeyFile::new(&read_key(key_file)?)?;
    match what {
        Enroll::Tpm2 { device, pcrs } => {
            // systemd-cryptenroll wipes after enrolling, so a failure keeps the old slot.
            Cmd::new("systemd-cryptenroll")
                .arg(format!("--unlock-key-file={}", key.file.display()))
                .arg(format!("--tpm2-device={device}"))
                .arg(format!("--tpm2-pcrs={pcrs}"))
                .arg("--wipe-slot=tpm2")
                .arg(&image)
                .run()?;
            Ok(None)
        }
        Enroll::RecoveryKey => {
            let new = enroll_recovery(&image, &key.file)?;
            // Remove the older recovery slots: the one just made is the highest-numbered.
            let slots = recovery_slots(&image)?;
            let old: Vec<String> = slots
                .iter()
                .take(slots.len().saturating_sub(1))
                .map(|s| s.to_string())
                .collect();
            if !old.is_empty() {
                let keep = KeyFile::new(new.as_bytes())?;
                Cmd::new("systemd-cryptenroll")
                    .arg(format!("--unlock-key-file={}", keep.file.display()))
                    .arg(format!("--wipe-slot={}", old.join(",")))
                    .arg(&image)
                    .run()?;
            }
            Ok(Some(new))
        }
        Enroll::Passphrase(file) => {
            let new = KeyFile::new(&read_key(file)?)?;
            let old = passphrase_slots(&image)?;
            add_passphrase(&image, &key.file, &new.file)?;
            // The new slot is the one passphrase slot that was not there before.
            if !old.is_empty() {
                let old: Vec<String> = old.iter().map(|s| s.to_string()).collect();
                Cmd::new("systemd-cryptenroll")
                    .arg(format!("--unlock-key-file={}", new.file.display()))
                    .arg(format!("--wipe-slot={}", old.join(",")))
                    .arg(&image)
                    .run()?;
            }
            Ok(None)
        }
    }
}

/// A key (recovery key or passphrase) from a file, or from standard input for `-`, without
/// its trailing newline: what a person types at the boot prompt.
pub fn read_key(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b)
            .ctx("reading the key from", path)?;
        b
    } else {
        std::fs::read(path).ctx("reading", path)?
    };
    for end in [b'\n', b'\r'] {
        if bytes.last() == Some(&end) {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(Error::EmptyKey {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// Adds a passphrase key slot (cryptsetup's default PBKDF, argon2id, as for a typed passphrase).
fn add_passphrase(image: &Path, key: &Path, passphrase: &Path) -> Result<()> {
    Cmd::new("cryptsetup")
        .args(["luksAddKey", "--batch-mode", "--key-file"])
        .arg(key)
        .arg(image)
        .arg(passphrase)
        .run()?;
    Ok(())
}

/// The key slots no token points at: passphrases (the TPM2 and recovery slots have tokens).
fn passphrase_slots(image: &Path) -> Result<Vec<u32>> {
    Ok(untokened_slots(&luks_json(image)?))
}

fn token_slots(token: &serde_json::Value) -> impl Iterator<Item = u32> + '_ {
    token["keyslots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().and_then(|s| s.parse().ok()))
}

fn untokened_slots(dump: &serde_json::Value) -> Vec<u32> {
    let tokens = || {
        dump["tokens"]
            .as_object()
            .into_iter()
            .flat_map(|t| t.values())
    };
    let mut slots: Vec<u32> = dump["keyslots"]
        .as_object()
        .into_iter()
        .flat_map(|k| k.keys())
        .filter_map(|k| k.parse().ok())
        .filter(|k| !tokens().any(|t| token_slots(t).any(|s| s == *k)))
        .collect();
    slots.sort_unstable();
    slots
}

/// A way into the encrypted image, as its LUKS2 header lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Key {
    /// A TPM2 key slot, sealed to these PCRs.
    Tpm2 {
        /// The PCR indexes.
        pcrs: Vec<u32>,
    },
    /// The recovery key.
    RecoveryKey,
    /// A passphrase (a key slot no token points at).
    Passphrase,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Tpm2 { pcrs } => {
                let pcrs: Vec<String> = pcrs.iter().map(|p| p.to_string()).collect();
                write!(f, "TPM2 (PCRs {})", pcrs.join("+"))
            }
            Key::RecoveryKey => f.write_str("recovery key"),
            Key::Passphrase => f.write_str("passphrase"),
        }
    }
}

/// The keys enrolled in `state/encrypted.img` (header only: no device-mapper needed); none
/// when the image is not LUKS (a test image with a plain file system).
pub fn keys(state: &Path) -> Result<Vec<Key>> {
    let image = state.join(IMAGE);
    if Cmd::new("cryptsetup")
        .arg("isLuks")
        .arg(&image)
        .run()
        .is_err()
    {
        return Ok(Vec::new());
    }
    Ok(keys_of(&luks_json(&image)?))
}

fn keys_of(dump: &serde_json::Value) -> Vec<Key> {
    let mut keys: Vec<Key> = dump["tokens"]
        .as_object()
        .into_iter()
        .flat_map(|t| t.values())
        .filter_map(|t| match t["type"].as_str() {
            Some("systemd-tpm2") => Some(Key::Tpm2 {
                pcrs: t["tpm2-pcrs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_u64().and_then(|p| u32::try_from(p).ok()))
                    .collect(),
            }),
            Some("systemd-recovery") => Some(Key::RecoveryKey),
            _ => None,
        })
        .collect();
    keys.extend(untokened_slots(dump).iter().map(|_| Key::Passphrase));
    keys
}

fn luks_json(image: &Path) -> Result<serde_json::Value> {
    Ok(Cmd::new("cryptsetup")
        .args(["luksDump", "--dump-json-metadata"])
        .arg(image)
        .json()?)
}

/// The key slots that systemd-recovery tokens point at, ascending.
fn recovery_slots(image: &Path) -> Result<Vec<u32>> {
    let dump = luks_json(image)?;
    let mut slots: Vec<u32> = dump["tokens"]
        .as_object()
        .into_iter()
        .flat_map(|t| t.values())
        .filter(|t| t["type"] == "systemd-recovery")
        .flat_map(token_slots)
        .collect();
    slots.sort_unstable();
    Ok(slots)
}

/// How `unlock` got in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unlocked {
    /// Through the TPM2 token.
    Tpm2,
    /// With the recovery key (or a passphrase) from a file.
    KeyFile,
    /// It was already open.
    AlreadyOpen,
}

/// Unlocks `state/encrypted.img` and mounts it at `state/encrypted`: through the TPM2 token
/// (systemd-cryptsetup, as at boot), or with `key_file` (the recovery key) when given.
pub fn unlock(state: &Path, key_file: Option<&Path>, report: &dyn Report) -> Result<Unlocked> {
    require_dm()?;
    let image = state.join(IMAGE);
    let dev = PathBuf::from(format!("/dev/mapper/{DM_NAME}"));
    let how = if dev.exists() {
        Unlocked::AlreadyOpen
    } else if let Some(k) = key_file {
        let key = KeyFile::new(&read_key(k)?)?;
        open_with_key(&image, &key.file, DM_NAME)?;
        Unlocked::KeyFile
    } else {
        Cmd::new("/usr/lib/systemd/systemd-cryptsetup")
            .args(["attach", DM_NAME])
            .arg(&image)
            .args(["none", "tpm2-device=auto,discard,headless=true"])
            .run()?;
        Unlocked::Tpm2
    };
    let mnt = state.join(ENCRYPTED);
    std::fs::create_dir_all(&mnt).ctx("creating", &mnt)?;
    if !realms_sys::mount::is_mountpoint(&mnt)? {
        mount::mount_fs(&dev, &mnt, "btrfs", MountFlags::empty(), "discard=async")?.leak();
    }
    direct_io(state, report);
    // The generator cannot look inside the image: keep its list in step with what is there.
    entries::refresh_list(state)?;
    report.report(Event::progress(format!(
        "unlocked {} and mounted it at {}",
        image.display(),
        mnt.display()
    )));
    Ok(how)
}

/// Switches the loop device under the image to direct I/O (cryptsetup and systemd-cryptsetup
/// attach it buffered): the image's blocks are then not cached twice, once encrypted under the
/// partition's file system and once in the clear under the image's. A failure (a file system
/// without O_DIRECT) is a warning: the image works either way. Returns the devices switched.
pub fn direct_io(state: &Path, report: &dyn Report) -> Vec<PathBuf> {
    let image = state.join(IMAGE);
    let devices = realms_sys::loopdev::find_by_backing_file(&image).unwrap_or_default();
    devices
        .into_iter()
        .filter(
            |dev| match realms_sys::loopdev::set_direct_io_of(dev, true) {
                Ok(()) => true,
                Err(e) => {
                    report.report(Event::warning(format!(
                        "{} stays on buffered I/O: {e}",
                        dev.display()
                    )));
                    false
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only `realms-setup-PID` is a mapping of setup's: never the machine's own
    /// `state-encrypted`, nor another tool's name that starts alike.
    #[test]
    fn only_setups_own_mappings_are_taken_for_stale() {
        assert_eq!(setup_pid("realms-setup-4242"), Some(4242));
        assert_eq!(setup_pid(DM_NAME), None);
        assert_eq!(setup_pid("realms-setup-"), None);
        assert_eq!(setup_pid("realms-setup-12x"), None);
        assert_eq!(setup_pid("xrealms-setup-12"), None);
    }

    #[test]
    fn keys_are_read_from_the_header_tokens_and_the_slots_without_one() {
        let dump = serde_json::json!({
            "keyslots": { "0": {}, "1": {}, "2": {} },
            "tokens": {
                "0": { "type": "systemd-recovery", "keyslots": ["0"] },
                "1": { "type": "systemd-tpm2", "keyslots": ["1"], "tpm2-pcrs": [7, 11] },
            },
        });
        assert_eq!(
            keys_of(&dump),
            [
                Key::RecoveryKey,
                Key::Tpm2 { pcrs: vec![7, 11] },
                Key::Passphrase
            ]
        );
        assert_eq!(untokened_slots(&dump), [2]);
        assert_eq!(
            Key::Tpm2 { pcrs: vec![7, 11] }.to_string(),
            "TPM2 (PCRs 7+11)"
        );
    }

    #[test]
    fn recovery_keys_are_recognised_by_shape() {
        assert!(is_recovery_key(
            "cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv"
        ));
        assert!(!is_recovery_key("cbdefghi-jklnrtuv"));
        assert!(!is_recovery_key(
            "abdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv"
        ));
    }
}

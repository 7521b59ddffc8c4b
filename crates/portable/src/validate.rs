//! `validate`: the seven requirements of a portable image (systemd's PORTABLE_SERVICES.md), each
//! checked on its own with a reason — image type, unit files, os-release, resolv.conf and
//! machine-id, mount points, the dynamic loader of `ExecStart=` binaries, and the architecture.

use std::fmt;
use std::path::Path;

use realms_sys::root::RootDir;
use realms_unit::UnitFile;
use serde::Serialize;

use crate::error::Result;
use crate::extract::{Opened, extract};
use crate::image::Image;
use crate::layout::Host;

/// One requirement and whether the image meets it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is required.
    pub requirement: &'static str,
    /// Whether the image meets it.
    pub passed: bool,
    /// What was found (or what is missing).
    pub reason: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { "PASS" } else { "FAIL" };
        write!(f, "[{mark}] {}: {}", self.requirement, self.reason)
    }
}

fn check(requirement: &'static str, result: std::result::Result<String, String>) -> Check {
    let (passed, reason) = match result {
        Ok(r) => (true, r),
        Err(r) => (false, r),
    };
    Check {
        requirement,
        passed,
        reason,
    }
}

/// What the ELF header of a binary says: its machine, and its interpreter if dynamic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    /// `e_machine`: the architecture.
    pub machine: u16,
    /// The `PT_INTERP` path of a dynamically linked binary.
    pub interpreter: Option<String>,
}

/// Parses a 64- or 32-bit little-endian ELF header and its `PT_INTERP` (pure).
pub fn parse_elf(bytes: &[u8]) -> Option<Elf> {
    if bytes.get(..4)? != b"\x7fELF" || bytes.get(5)? != &1 {
        return None;
    }
    let is64 = bytes[4] == 2;
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(bytes.get(o..o + 8)?.try_into().ok()?));
    let machine = u16_at(18)?;
    let (phoff, phentsize, phnum) = if is64 {
        (
            u64_at(32)? as usize,
            u16_at(54)? as usize,
            u16_at(56)? as usize,
        )
    } else {
        (
            u32_at(28)? as usize,
            u16_at(42)? as usize,
            u16_at(44)? as usize,
        )
    };
    let mut interpreter = None;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph)? != 3 {
            continue;
        }
        let (off, size) = if is64 {
            (u64_at(ph + 8)? as usize, u64_at(ph + 32)? as usize)
        } else {
            (u32_at(ph + 4)? as usize, u32_at(ph + 16)? as usize)
        };
        let raw = bytes.get(off..off + size)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        interpreter = Some(String::from_utf8_lossy(&raw[..end]).into_owned());
    }
    Some(Elf {
        machine,
        interpreter,
    })
}

/// The ELF machine number of this build's architecture.
fn host_machine() -> u16 {
    match std::env::consts::ARCH {
        "x86_64" => 62,
        "aarch64" => 183,
        "x86" => 3,
        "arm" => 40,
        "riscv64" => 243,
        "powerpc64" => 21,
        "s390x" => 22,
        _ => 0,
    }
}

/// The binaries of every `ExecStart=` of the units (prefixes like `-` and `@` removed).
fn exec_binaries(units: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, contents) in units {
        let Ok(unit) = UnitFile::parse(&String::from_utf8_lossy(contents)) else {
            continue;
        };
        for value in unit.get_all("Service", "ExecStart") {
            let cmd = value.trim_start_matches(['-', '@', ':', '+', '!', '|']);
            if let Some(bin) = cmd.split_whitespace().next() {
                out.push((name.clone(), bin.to_owned()));
            }
        }
    }
    out
}

fn check_binaries(root: &RootDir, units: &[(String, Vec<u8>)]) -> (Check, Check) {
    let mut bins = exec_binaries(units);
    bins.sort_by(|a, b| a.1.cmp(&b.1));
    bins.dedup_by(|a, b| a.1 == b.1);
    let mut loader = Ok(String::new());
    let mut arch = Ok(String::new());
    let mut notes_l = Vec::new();
    let mut notes_a = Vec::new();
    for (unit, bin) in &bins {
        // The ELF header, program headers and interpreter path sit at the start of the file.
        let Ok(Some(bytes)) = crate::extract::read_image_head(root, Path::new(bin), 1 << 20) else {
            loader = Err(format!(
                "{unit}: ExecStart binary {bin} is missing from the image"
            ));
            continue;
        };
        let Some(elf) = parse_elf(&bytes) else {
            notes_l.push(format!("{bin} is not an ELF binary (script?)"));
            continue;
        };
        if elf.machine != host_machine() {
            arch = Err(format!(
                "{bin} is for ELF machine {}, the host is {}",
                elf.machine,
                host_machine()
            ));
        } else {
            notes_a.push(format!("{bin} matches the host"));
        }
        match &elf.interpreter {
            None => notes_l.push(format!("{bin} is statically linked")),
            Some(interp) if root.exists(interp).unwrap_or(false) => {
                notes_l.push(format!("{bin} uses {interp}, present"))
            }
            Some(interp) => {
                loader = Err(format!(
                    "{bin} needs the dynamic loader {interp}, which does not resolve in the image (missing loader or /lib symlink)"
                ))
            }
        }
    }
    if bins.is_empty() {
        loader = Err("no ExecStart= binary found in the matching units".to_owned());
        arch = Err("no ExecStart= binary to check".to_owned());
    }
    let loader = loader.map(|_| notes_l.join("; "));
    let arch = arch.map(|_| notes_a.join("; "));
    (check("dynamic loader", loader), check("architecture", arch))
}

/// Checks image `image` (name or path) with units selected by `matches`; one line each.
pub fn validate(host: &Host, image: &str, matches: &[String]) -> Result<Vec<Check>> {
    let img = Image::find(host, image)?;
    let mut checks = vec![check("image type", Ok(img.kind.as_str().to_owned()))];
    let opened = match Opened::open(host, &img) {
        Ok(o) => o,
        Err(e) => {
            checks[0] = check("image type", Err(e.summary()));
            return Ok(checks);
        }
    };
    let root = opened.root();
    let meta = extract(host, &img, matches, false, false);
    let units: Vec<(String, Vec<u8>)> = match &meta {
        Ok(m) => m
            .units
            .values()
            .map(|u| (u.name.clone(), u.contents.clone()))
            .collect(),
        Err(_) => Vec::new(),
    };
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    checks.push(check(
        "unit files",
        if names.is_empty() {
            Err(format!(
                "no unit file matches prefix '{}' (.service, .socket, .target, .timer, .path)",
                matches.join("', '")
            ))
        } else {
            Ok(names.join(", "))
        },
    ));
    checks.push(check(
        "os-release",
        match &meta {
            Ok(m) if m.release.id().is_some_and(|i| !i.is_empty()) => Ok(format!(
                "{} (ID={})",
                m.release_path,
                m.release.id().unwrap_or("")
            )),
            Ok(m) => Err(format!("{} has no ID=", m.release_path)),
            Err(e) => Err(e.summary()),
        },
    ));
    let missing: Vec<&str> = ["/etc/resolv.conf", "/etc/machine-id"]
        .into_iter()
        .filter(|p| {
            root.symlink_metadata(p)
                .ok()
                .flatten()
                .is_none_or(|m| m.is_dir())
        })
        .collect();
    checks.push(check(
        "resolv.conf and machine-id",
        if missing.is_empty() {
            Ok("/etc/resolv.conf and /etc/machine-id exist (bind-mount targets)".to_owned())
        } else {
            Err(format!(
                "missing: {} (create them, empty is fine)",
                missing.join(", ")
            ))
        },
    ));
    let dirs = ["/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp"];
    let missing: Vec<&str> = dirs
        .into_iter()
        .filter(|d| {
            !root
                .metadata(Path::new(d))
                .ok()
                .flatten()
                .is_some_and(|m| m.is_dir())
        })
        .collect();
    checks.push(check(
        "mount points",
        if missing.is_empty() {
            Ok(dirs.join(" "))
        } else {
            Err(format!("missing directories: {}", missing.join(" ")))
        },
    ));
    let (loader, arch) = check_binaries(root, &units);
    checks.push(loader);
    checks.push(arch);
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_test_binary() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let elf = parse_elf(&exe).unwrap();
        assert_eq!(elf.machine, host_machine());
        assert!(elf.interpreter.is_some_and(|i| i.contains("ld")));
        assert_eq!(parse_elf(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn finds_exec_start_binaries() {
        let units = vec![(
            "a.service".to_owned(),
            b"[Service]\nExecStart=-/usr/bin/busybox sh -c 'x'\n".to_vec(),
        )];
        assert_eq!(
            exec_binaries(&units),
            vec![("a.service".to_owned(), "/usr/bin/busybox".to_owned())]
        );
    }
}

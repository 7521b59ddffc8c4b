//! GUID partition tables: read one, find free space, add a partition, write both copies back.
//!
//! Pure reading and writing through a `File`: works the same on a disk image and on a block
//! device. Anything unexpected (bad checksums, overlapping entries, entries outside the usable
//! area, a damaged backup) is refused with the reason rather than "repaired".

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, GptProblem, Result};
use crate::guid::Guid;
use realms_sys::IoContext;

/// New partitions start on a 1 MiB boundary, as fdisk, sgdisk and systemd-repart place them.
pub const ALIGN: u64 = 1 << 20;
/// Partition sizes are a multiple of this (systemd-repart's grain).
pub const GRAIN: u64 = 4096;
const HEADER_SIZE: usize = 92;
const NAME_UNITS: usize = 36;

/// One used entry of the partition table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Partition {
    /// 1-based partition number (the entry's index + 1).
    pub number: u32,
    /// The partition type.
    pub type_guid: Guid,
    /// The partition's own UUID.
    pub uuid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// The label.
    pub label: String,
    /// The attribute flags.
    pub attributes: u64,
}

/// A partition to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartition {
    /// The partition type.
    pub type_guid: Guid,
    /// The partition's own UUID.
    pub uuid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// The label (at most 36 UTF-16 units).
    pub label: String,
}

/// A partition table as read from a disk.
#[derive(Debug, Clone)]
pub struct Gpt {
    path: PathBuf,
    /// The logical sector size (512 or 4096).
    pub sector: u64,
    /// The disk's size in sectors.
    pub disk_sectors: u64,
    header: Vec<u8>,
    entries: Vec<u8>,
    entry_size: usize,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// CRC-32 (IEEE, reflected), as GPT uses for its header and entry array.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

fn read_at(file: &File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)
        .ctx("reading the partition table of", path)?;
    Ok(buf)
}

impl Gpt {
    /// Reads and checks the partition table of `file` (`size` bytes long, named `path`).
    pub fn read(file: &File, path: &Path, size: u64) -> Result<Gpt> {
        let bad = |problem: GptProblem| Error::BadGpt {
            disk: path.to_path_buf(),
            problem,
        };
        if size < 8192 {
            return Err(bad(GptProblem::TooSmall));
        }
        let head = read_at(file, path, 0, 8192)?;
        let sector = [512u64, 4096]
            .into_iter()
            .find(|&s| &head[s as usize..s as usize + 8] == b"EFI PART")
            .ok_or_else(|| bad(GptProblem::NoGpt))?;
        let disk_sectors = size / sector;
        let header = head[sector as usize..sector as usize + HEADER_SIZE].to_vec();
        check_header(&header, 1).map_err(bad)?;
        let (entries_lba, count, entry_size) = (
            le64(&header, 72),
            le32(&header, 80) as usize,
            le32(&header, 84) as usize,
        );
        let len = count * entry_size;
        let entries_off = entries_lba
            .checked_mul(sector)
            .filter(|o| o.checked_add(len as u64).is_some_and(|end| end <= size))
            .ok_or_else(|| bad(GptProblem::EntriesOutsideDisk))?;
        let entries = read_at(file, path, entries_off, len)?;
        if crc32(&entries) != le32(&header, 88) {
            return Err(bad(GptProblem::EntriesChecksum));
        }
        let gpt = Gpt {
            path: path.to_path_buf(),
            sector,
            disk_sectors,
            header,
            entries,
            entry_size,
        };
        gpt.check_backup(file).map_err(bad)?;
        gpt.check_layout().map_err(bad)?;
        Ok(gpt)
    }

    fn check_backup(&self, file: &File) -> std::result::Result<(), GptProblem> {
        let alt = le64(&self.header, 32);
        if alt >= self.disk_sectors {
            return Err(GptProblem::BackupBeyondEnd);
        }
        let raw = read_at(file, &self.path, alt * self.sector, HEADER_SIZE)
            .map_err(|_| GptProblem::BackupUnreadable)?;
        check_header(&raw, alt).map_err(|_| GptProblem::BackupDamaged)?;
        if raw[56..72] != self.header[56..72] {
            return Err(GptProblem::BackupMismatch);
        }
        if le32(&raw, 88) != le32(&self.header, 88) && !self.setup_interrupted(file, &raw) {
            return Err(GptProblem::BackupMismatch);
        }
        Ok(())
    }

    /// Whether the backup table (header `backup`) is this table plus one state partition: a
    /// `realms state setup` killed after it wrote the backup and before the primary (which
    /// every reader, the kernel first, still uses). Such a table is read as the primary says;
    /// the next write puts both copies back in step.
    fn setup_interrupted(&self, file: &File, backup: &[u8]) -> bool {
        let lba = le64(backup, 72);
        let Some(offset) = lba.checked_mul(self.sector) else {
            return false;
        };
        let same_shape = le32(backup, 80) == le32(&self.header, 80)
            && le32(backup, 84) == le32(&self.header, 84);
        let Ok(entries) = read_at(file, &self.path, offset, self.entries.len()) else {
            return false;
        };
        if !same_shape || crc32(&entries) != le32(backup, 88) {
            return false;
        }
        let mut added = entries
            .chunks(self.entry_size)
            .zip(self.entries.chunks(self.entry_size))
            .filter(|(theirs, ours)| theirs != ours);
        match (added.next(), added.next()) {
            (Some((theirs, ours)), None) => {
                ours.iter().all(|&b| b == 0)
                    && Guid::from_gpt_bytes(&theirs[0..16]) == crate::STATE_PARTITION_TYPE
            }
            _ => false,
        }
    }

    fn check_layout(&self) -> std::result::Result<(), GptProblem> {
        let (first, last) = (self.first_usable(), self.last_usable());
        let entries_end =
            le64(&self.header, 72) + (self.entries.len() as u64).div_ceil(self.sector);
        let backup_entries = (self.disk_sectors - 1)
            .saturating_sub((self.entries.len() as u64).div_ceil(self.sector));
        if first < entries_end || last < first || last >= backup_entries {
            return Err(GptProblem::UsableOverlapsTable);
        }
        let mut parts = self.partitions();
        parts.sort_by_key(|p| p.first_lba);
        for p in &parts {
            if p.last_lba < p.first_lba || p.first_lba < first || p.last_lba > last {
                return Err(GptProblem::PartitionOutsideUsable);
            }
        }
        if parts.windows(2).any(|w| w[1].first_lba <= w[0].last_lba) {
            return Err(GptProblem::PartitionsOverlap);
        }
        Ok(())
    }

    /// The first sector partitions may use.
    pub fn first_usable(&self) -> u64 {
        le64(&self.header, 40)
    }

    /// The last sector partitions may use once the table is written (the backup table moves to
    /// the end of a disk that has grown, as systemd-repart does).
    pub fn last_usable(&self) -> u64 {
        let stored = le64(&self.header, 48);
        let alt = le64(&self.header, 32);
        let end = self.disk_sectors - 1;
        if alt < end {
            // Same distance below the (new) backup header as before.
            stored + (end - alt)
        } else {
            stored
        }
    }

    /// The disk GUID.
    pub fn disk_guid(&self) -> Guid {
        Guid::from_gpt_bytes(&self.header[56..72])
    }

    fn entry(&self, index: usize) -> &[u8] {
        &self.entries[index * self.entry_size..(index + 1) * self.entry_size]
    }

    /// The used entries.
    pub fn partitions(&self) -> Vec<Partition> {
        (0..self.entries.len() / self.entry_size)
            .filter_map(|i| {
                let e = self.entry(i);
                let type_guid = Guid::from_gpt_bytes(&e[0..16]);
                (type_guid != Guid::NIL).then(|| Partition {
                    number: i as u32 + 1,
                    type_guid,
                    uuid: Guid::from_gpt_bytes(&e[16..32]),
                    first_lba: le64(e, 32),
                    last_lba: le64(e, 40),
                    label: decode_label(&e[56..56 + 2 * NAME_UNITS]),
                    attributes: le64(e, 48),
                })
            })
            .collect()
    }

    /// The free areas, aligned: `(first, last)` sectors (inclusive), each start on [`ALIGN`]
    /// and each length a multiple of [`GRAIN`].
    pub fn free_areas(&self) -> Vec<(u64, u64)> {
        let mut parts = self.partitions();
        parts.sort_by_key(|p| p.first_lba);
        let mut areas = Vec::new();
        let mut cursor = self.first_usable();
        let ends = parts
            .iter()
            .map(|p| (p.first_lba, p.last_lba + 1))
            .chain([(self.last_usable() + 1, self.last_usable() + 1)]);
        for (start, next) in ends {
            if let Some(area) = self.aligned(cursor, start) {
                areas.push(area);
            }
            cursor = cursor.max(next);
        }
        areas
    }

    /// `[from, to)` aligned inward, if anything is left.
    fn aligned(&self, from: u64, to: u64) -> Option<(u64, u64)> {
        let align = ALIGN / self.sector;
        let grain = (GRAIN / self.sector).max(1);
        let first = from.div_ceil(align) * align;
        let len = to.checked_sub(first)? / grain * grain;
        (len > 0).then(|| (first, first + len - 1))
    }

    /// The number the next added partition gets (the first unused entry).
    pub fn next_number(&self) -> Option<u32> {
        (0..self.entries.len() / self.entry_size)
            .find(|&i| self.entry(i)[..16].iter().all(|&b| b == 0))
            .map(|i| i as u32 + 1)
    }

    /// Adds `part` in the first unused entry; returns its number. The caller picked the
    /// sectors from [`Gpt::free_areas`].
    pub fn add(&mut self, part: &NewPartition) -> Result<u32> {
        let number = self.next_number().ok_or_else(|| Error::BadGpt {
            disk: self.path.clone(),
            problem: GptProblem::Full,
        })?;
        let inside = self
            .free_areas()
            .iter()
            .any(|&(a, b)| a <= part.first_lba && part.last_lba <= b);
        if !inside || part.last_lba < part.first_lba {
            return Err(Error::NotFree {
                disk: self.path.clone(),
                first_lba: part.first_lba,
                last_lba: part.last_lba,
            });
        }
        let at = (number as usize - 1) * self.entry_size;
        let e = &mut self.entries[at..at + self.entry_size];
        e.fill(0);
        e[0..16].copy_from_slice(&part.type_guid.to_gpt_bytes());
        e[16..32].copy_from_slice(&part.uuid.to_gpt_bytes());
        e[32..40].copy_from_slice(&part.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&part.last_lba.to_le_bytes());
        for (i, unit) in part.label.encode_utf16().take(NAME_UNITS).enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
        Ok(number)
    }

    /// Writes the backup table (at the end of the disk) and then the primary one, and syncs.
    pub fn write(&self, file: &File) -> Result<()> {
        let end = self.disk_sectors - 1;
        let entry_sectors = (self.entries.len() as u64).div_ceil(self.sector);
        let backup_entries = end - entry_sectors;
        let entries_crc = crc32(&self.entries);
        let mut primary = self.header.clone();
        primary[32..40].copy_from_slice(&end.to_le_bytes());
        primary[48..56].copy_from_slice(&self.last_usable().to_le_bytes());
        primary[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let mut backup = primary.clone();
        backup[24..32].copy_from_slice(&end.to_le_bytes());
        backup[32..40].copy_from_slice(&1u64.to_le_bytes());
        backup[72..80].copy_from_slice(&backup_entries.to_le_bytes());
        seal(&mut primary);
        seal(&mut backup);
        let write = |bytes: &[u8], lba: u64| {
            file.write_all_at(bytes, lba * self.sector)
                .ctx("writing the partition table of", &self.path)
        };
        // The backup first: killed before the primary is written, every reader still uses the
        // old primary, and `read` knows the backup for what it is.
        write(&self.entries, backup_entries)?;
        write(&backup, end)?;
        file.sync_data()
            .ctx("writing the partition table of", &self.path)?;
        realms_sys::failpoint::hit("state-gpt-backup-written");
        write(&self.entries, le64(&self.header, 72))?;
        write(&primary, 1)?;
        file.sync_all()
            .ctx("writing the partition table of", &self.path)?;
        Ok(())
    }
}

/// Sets a header's checksum.
fn seal(header: &mut [u8]) {
    header[16..20].fill(0);
    let crc = crc32(header);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
}

fn check_header(raw: &[u8], my_lba: u64) -> std::result::Result<(), GptProblem> {
    if raw.len() < HEADER_SIZE || &raw[..8] != b"EFI PART" {
        return Err(GptProblem::NoSignature);
    }
    if le32(raw, 12) as usize != HEADER_SIZE {
        return Err(GptProblem::HeaderSize);
    }
    let mut copy = raw[..HEADER_SIZE].to_vec();
    let stored = le32(&copy, 16);
    copy[16..20].fill(0);
    if crc32(&copy) != stored {
        return Err(GptProblem::HeaderChecksum);
    }
    if le64(raw, 24) != my_lba {
        return Err(GptProblem::HeaderMisplaced);
    }
    let (count, size) = (le32(raw, 80), le32(raw, 84));
    if !(128..=4096).contains(&size) || size % 8 != 0 || count == 0 || count > 4096 {
        return Err(GptProblem::EntryGeometry);
    }
    Ok(())
}

fn decode_label(raw: &[u8]) -> String {
    let units: Vec<u16> = raw
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blank GPT as sfdisk writes one: 128 entries at LBA 2, usable 34..end-34.
    fn blank(sectors: u64) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let file = f.as_file();
        file.set_len(sectors * 512).unwrap();
        let entries = vec![0u8; 128 * 128];
        let mut h = vec![0u8; HEADER_SIZE];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[32..40].copy_from_slice(&(sectors - 1).to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(sectors - 34).to_le_bytes());
        h[56..72].copy_from_slice(&[7; 16]);
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        let gpt = Gpt {
            path: f.path().into(),
            sector: 512,
            disk_sectors: sectors,
            header: h,
            entries,
            entry_size: 128,
        };
        gpt.write(file).unwrap();
        f
    }

    fn read(f: &tempfile::NamedTempFile) -> Result<Gpt> {
        let len = f.as_file().metadata().unwrap().len();
        Gpt::read(f.as_file(), f.path(), len)
    }

    #[test]
    fn a_blank_table_has_one_aligned_free_area() {
        let f = blank(65536);
        let gpt = read(&f).unwrap();
        assert!(gpt.partitions().is_empty());
        // Usable 34..=65502; the area starts at 1 MiB and is a whole number of 4 KiB.
        assert_eq!(gpt.free_areas(), vec![(2048, 65495)]);
    }

    #[test]
    fn an_added_partition_reads_back() {
        let f = blank(65536);
        let mut gpt = read(&f).unwrap();
        let (first, last) = gpt.free_areas()[0];
        let part = NewPartition {
            type_guid: crate::STATE_PARTITION_TYPE,
            uuid: Guid::parse("01234567-89ab-4def-8123-456789abcdef").unwrap(),
            first_lba: first,
            last_lba: last,
            label: "state".into(),
        };
        assert_eq!(gpt.add(&part).unwrap(), 1);
        gpt.write(f.as_file()).unwrap();
        let back = read(&f).unwrap().partitions();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].type_guid, part.type_guid);
        assert_eq!(back[0].uuid, part.uuid);
        assert_eq!((back[0].first_lba, back[0].last_lba), (first, last));
        assert_eq!(back[0].label, "state");
        assert!(read(&f).unwrap().free_areas().is_empty());
    }

    /// Regression (issue 10): `realms state setup` killed between the backup table and the
    /// primary left a disk the next setup refused ("backup does not match"). A backup that is
    /// the primary plus one state partition reads as the primary; any other difference is
    /// still refused.
    #[test]
    fn regression_a_backup_ahead_by_one_state_partition_reads_as_the_primary() {
        let f = blank(65536);
        let old = read(&f).unwrap();
        let write_backup_only = |gpt: &Gpt| {
            let copy = tempfile::NamedTempFile::new().unwrap();
            copy.as_file().set_len(65536 * 512).unwrap();
            gpt.write(copy.as_file()).unwrap();
            let tail = (65536 - 33) * 512;
            let mut bytes = vec![0u8; 33 * 512];
            copy.as_file().read_exact_at(&mut bytes, tail).unwrap();
            f.as_file().write_all_at(&bytes, tail).unwrap();
        };
        let (first, last) = old.free_areas()[0];
        let mut with_state = read(&f).unwrap();
        with_state
            .add(&NewPartition {
                type_guid: crate::STATE_PARTITION_TYPE,
                uuid: Guid::NIL,
                first_lba: first,
                last_lba: last,
                label: "state".into(),
            })
            .unwrap();
        write_backup_only(&with_state);
        let now = read(&f).unwrap();
        assert!(now.partitions().is_empty());
        now.write(f.as_file()).unwrap();
        assert!(read(&f).unwrap().partitions().is_empty());

        let mut other = read(&f).unwrap();
        other
            .add(&NewPartition {
                type_guid: Guid::parse("0fc63daf-8483-4772-8e79-3d69d8477de4").unwrap(),
                uuid: Guid::NIL,
                first_lba: first,
                last_lba: last,
                label: "linux".into(),
            })
            .unwrap();
        write_backup_only(&other);
        let err = read(&f).unwrap_err().to_string();
        assert!(err.contains("backup"), "{err}");
    }

    #[test]
    fn a_grown_disk_moves_the_backup_table_to_the_end() {
        let f = blank(65536);
        f.as_file().set_len(2 * 65536 * 512).unwrap();
        let gpt = read(&f).unwrap();
        assert_eq!(gpt.last_usable(), 2 * 65536 - 34);
        gpt.write(f.as_file()).unwrap();
        let again = read(&f).unwrap();
        assert_eq!(again.last_usable(), 2 * 65536 - 34);
    }

    #[test]
    fn a_damaged_entry_array_is_refused_with_the_reason() {
        let f = blank(65536);
        f.as_file().write_all_at(&[1], 1024 + 5).unwrap();
        let err = read(&f).unwrap_err().to_string();
        assert!(err.contains("checksum does not match"), "{err}");
    }

    #[test]
    fn a_disk_without_gpt_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(1 << 20).unwrap();
        let err = read(&f).unwrap_err().to_string();
        assert!(err.contains("has no GPT"), "{err}");
    }

    #[test]
    fn a_partition_outside_free_space_is_refused() {
        let f = blank(65536);
        let mut gpt = read(&f).unwrap();
        let part = NewPartition {
            type_guid: crate::STATE_PARTITION_TYPE,
            uuid: Guid::NIL,
            first_lba: 10,
            last_lba: 5000,
            label: "state".into(),
        };
        assert!(matches!(gpt.add(&part), Err(Error::NotFree { .. })));
    }
}

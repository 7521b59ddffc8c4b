//! GUID partition tables, read in pure Rust, and the Discoverable Partitions types a portable
//! image uses (root, root-verity, root-verity-sig of the host architecture).

use std::fmt;

/// A partition type or partition UUID as GPT stores it (mixed-endian), printed the usual way.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` into GPT's on-disk byte order.
    pub const fn parse(s: &str) -> Guid {
        let b = s.as_bytes();
        let mut hex = [0u8; 16];
        let (mut i, mut n) = (0, 0);
        while i < b.len() {
            if b[i] != b'-' {
                let hi = nibble(b[i]);
                let lo = nibble(b[i + 1]);
                hex[n] = hi << 4 | lo;
                n += 1;
                i += 1;
            }
            i += 1;
        }
        assert!(n == 16, "a GUID has 16 bytes");
        Guid([
            hex[3], hex[2], hex[1], hex[0], hex[5], hex[4], hex[7], hex[6], hex[8], hex[9],
            hex[10], hex[11], hex[12], hex[13], hex[14], hex[15],
        ])
    }
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit"),
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02x}"))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Discoverable Partitions type UUIDs of the root partition and its verity partitions.
#[derive(Debug, Clone, Copy)]
pub struct RootTypes {
    /// The root partition.
    pub root: Guid,
    /// The root partition's verity hash partition.
    pub verity: Guid,
    /// The partition with the signature of the root hash.
    pub verity_sig: Guid,
}

/// The root partition types for the architecture this was built for.
pub fn host_root_types() -> Option<RootTypes> {
    match std::env::consts::ARCH {
        "x86_64" => Some(RootTypes {
            root: Guid::parse("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
            verity: Guid::parse("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"),
            verity_sig: Guid::parse("41092b05-9fc8-4523-994f-2def0408b176"),
        }),
        "aarch64" => Some(RootTypes {
            root: Guid::parse("b921b045-1df0-41c3-af44-4c6f280d3fae"),
            verity: Guid::parse("df3300ce-d69f-4c92-978c-9bfb0f38d820"),
            verity_sig: Guid::parse("6db69de6-29f4-4758-a7a5-962190f00ce3"),
        }),
        _ => None,
    }
}

/// The generic Linux data partition type (a single-partition image).
pub const LINUX_DATA: Guid = Guid::parse("0fc63daf-8483-4772-8e79-3d69d8477de4");

/// One used partition-table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based partition number.
    pub number: u32,
    /// The partition type.
    pub type_guid: Guid,
    /// The partition's own UUID.
    pub uuid: Guid,
    /// Byte offset and size in the image.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// The partition label.
    pub label: String,
    /// The attribute flags (bit 60: read-only, ...).
    pub attributes: u64,
}

/// Why a GPT could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    /// The header at LBA 1 is missing, has a bad checksum or impossible geometry.
    #[error("the GPT header is damaged: {0}")]
    Header(&'static str),
    /// The partition entry array is truncated, has a bad checksum or an impossible entry.
    #[error("the GPT partition entries are damaged: {0}")]
    Entries(&'static str),
}

/// The largest partition entry this reader accepts (the spec says 128 × 2^n; 4096 is one sector).
const MAX_ENTRY_SIZE: u32 = 4096;

/// What the header says about the partition entry array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The LBA where the entry array starts.
    pub entries_lba: u64,
    /// The number of entries.
    pub count: u32,
    /// The size of one entry in bytes.
    pub entry_size: u32,
    /// The CRC-32 of the whole entry array.
    pub entries_crc: u32,
}

impl Header {
    /// The byte offset and length of the entry array for `sector`-byte sectors; an error when
    /// the LBA times the sector size does not fit in 64 bits.
    pub fn entries_range(&self, sector: u64) -> Result<(u64, usize), GptError> {
        let offset = self
            .entries_lba
            .checked_mul(sector)
            .ok_or(GptError::Header(
                "the partition entries lie beyond 2^64 bytes",
            ))?;
        // count <= 4096 and entry_size <= 4096 (checked by parse_header), so this fits.
        let len = self.count as usize * self.entry_size as usize;
        Ok((offset, len))
    }
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

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Where the GPT header sits: the sector size (512 or 4096) whose LBA 1 says `EFI PART`.
pub fn sector_size(image_head: &[u8]) -> Option<u64> {
    [512u64, 4096]
        .into_iter()
        .find(|&s| image_head.get(s as usize..s as usize + 8) == Some(b"EFI PART".as_slice()))
}

/// The header fields needed to read the entries.
pub fn parse_header(sector: &[u8]) -> Result<Header, GptError> {
    if sector.len() < 92 || &sector[..8] != b"EFI PART" {
        return Err(GptError::Header("no 'EFI PART' signature"));
    }
    let size = le32(sector, 12) as usize;
    if !(92..=sector.len()).contains(&size) {
        return Err(GptError::Header("bad header size"));
    }
    let mut hdr = sector[..size].to_vec();
    let stored = le32(&hdr, 16);
    hdr[16..20].fill(0);
    if crc32(&hdr) != stored {
        return Err(GptError::Header("header checksum mismatch"));
    }
    let (count, entry_size) = (le32(sector, 80), le32(sector, 84));
    if !(128..=MAX_ENTRY_SIZE).contains(&entry_size) || entry_size % 8 != 0 || count > 4096 {
        return Err(GptError::Header("bad partition entry geometry"));
    }
    Ok(Header {
        entries_lba: le64(sector, 72),
        count,
        entry_size,
        entries_crc: le32(sector, 88),
    })
}

/// The used entries of a partition entry array (`count` entries of `entry_size` bytes).
pub fn parse_entries(
    array: &[u8],
    count: u32,
    entry_size: u32,
    crc: u32,
    sector: u64,
) -> Result<Vec<Partition>, GptError> {
    let len = count as usize * entry_size as usize;
    let array = array
        .get(..len)
        .ok_or(GptError::Entries("array truncated"))?;
    if crc32(array) != crc {
        return Err(GptError::Entries("entry array checksum mismatch"));
    }
    let mut out = Vec::new();
    for (i, e) in array.chunks(entry_size as usize).enumerate() {
        let type_guid = Guid(e[..16].try_into().expect("16 bytes"));
        if type_guid.0 == [0; 16] {
            continue;
        }
        let (first, last) = (le64(e, 32), le64(e, 40));
        if last < first {
            return Err(GptError::Entries("a partition ends before it starts"));
        }
        let too_far = GptError::Entries("a partition lies beyond 2^64 bytes");
        let offset = first.checked_mul(sector).ok_or(too_far.clone())?;
        let size = (last - first)
            .checked_add(1)
            .and_then(|blocks| blocks.checked_mul(sector))
            .ok_or(too_far.clone())?;
        offset.checked_add(size).ok_or(too_far)?;
        let label: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        out.push(Partition {
            number: i as u32 + 1,
            type_guid,
            uuid: Guid(e[16..32].try_into().expect("16 bytes")),
            offset,
            size,
            label: String::from_utf16_lossy(&label),
            attributes: le64(e, 48),
        });
    }
    Ok(out)
}

/// The partitions of a whole disk image held in memory (for tests and fuzzing; the `raw` module
/// reads the same structures from a file): `None` when the image has no GPT.
pub fn read_image(image: &[u8]) -> Result<Option<(u64, Vec<Partition>)>, GptError> {
    let Some(sector) = sector_size(image) else {
        return Ok(None);
    };
    let at = sector as usize;
    let header = parse_header(&image[at..image.len().min(2 * at)])?;
    let (offset, len) = header.entries_range(sector)?;
    let array = usize::try_from(offset)
        .ok()
        .and_then(|start| image.get(start..start.checked_add(len)?))
        .ok_or(GptError::Entries("array truncated"))?;
    let parts = parse_entries(
        array,
        header.count,
        header.entry_size,
        header.entries_crc,
        sector,
    )?;
    Ok(Some((sector, parts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_round_trip() {
        let s = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
        let g = Guid::parse(s);
        assert_eq!(g.0[..4], [0xe3, 0xbc, 0x68, 0x4f]);
        assert_eq!(g.to_string(), s);
    }

    #[test]
    fn crc_of_check_string() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    /// Builds a one-partition GPT in memory (512-byte sectors) and reads it back.
    #[test]
    fn reads_a_table_it_built() {
        let root = host_root_types().map_or(LINUX_DATA, |t| t.root);
        let mut entries = vec![0u8; 128 * 128];
        entries[..16].copy_from_slice(&root.0);
        entries[16..32].copy_from_slice(&[7; 16]);
        entries[32..40].copy_from_slice(&2048u64.to_le_bytes());
        entries[40..48].copy_from_slice(&4095u64.to_le_bytes());
        for (i, c) in "root-x86-64".encode_utf16().enumerate() {
            entries[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
        let mut hdr = vec![0u8; 512];
        hdr[..8].copy_from_slice(b"EFI PART");
        hdr[12..16].copy_from_slice(&92u32.to_le_bytes());
        hdr[72..80].copy_from_slice(&2u64.to_le_bytes());
        hdr[80..84].copy_from_slice(&128u32.to_le_bytes());
        hdr[84..88].copy_from_slice(&128u32.to_le_bytes());
        hdr[88..92].copy_from_slice(&crc32(&entries).to_le_bytes());
        let crc = crc32(&hdr[..92]);
        hdr[16..20].copy_from_slice(&crc.to_le_bytes());
        let mut image = vec![0u8; 512];
        image.extend_from_slice(&hdr);
        assert_eq!(sector_size(&image), Some(512));
        let h = parse_header(&image[512..1024]).unwrap();
        let (count, size, ecrc) = (h.count, h.entry_size, h.entries_crc);
        let parts = parse_entries(&entries, count, size, ecrc, 512).unwrap();
        assert_eq!(h.entries_lba, 2);
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].offset, parts[0].size), (2048 * 512, 2048 * 512));
        assert_eq!(parts[0].label, "root-x86-64");
        entries[100] ^= 1;
        assert!(parse_entries(&entries, count, size, ecrc, 512).is_err());
        image[512 + 40] ^= 1;
        assert!(parse_header(&image[512..1024]).is_err());
    }

    /// Untrusted LBAs times the sector size used to overflow (a panic in debug builds, a wrapped
    /// offset in release builds); now they are an error.
    #[test]
    fn lba_overflow_is_an_error() {
        let mut entries = vec![0u8; 128];
        entries[..16].copy_from_slice(&LINUX_DATA.0);
        entries[32..40].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
        entries[40..48].copy_from_slice(&(u64::MAX / 4 + 8).to_le_bytes());
        let crc = crc32(&entries);
        assert_eq!(
            parse_entries(&entries, 1, 128, crc, 512),
            Err(GptError::Entries("a partition lies beyond 2^64 bytes"))
        );
        entries[32..40].copy_from_slice(&0u64.to_le_bytes());
        entries[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32(&entries);
        assert!(parse_entries(&entries, 1, 128, crc, 512).is_err());
        let header = Header {
            entries_lba: u64::MAX / 2,
            count: 1,
            entry_size: 128,
            entries_crc: 0,
        };
        assert!(header.entries_range(4096).is_err());
        assert_eq!(read_image(&[0; 1024]), Ok(None));
    }
}

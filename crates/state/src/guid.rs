//! UUIDs: the state partition's type, GPT's mixed-endian byte order, and partition UUIDs derived
//! from the machine id the way systemd-repart derives them.

use std::fmt;

use sha2::{Digest, Sha256};

/// A UUID in its textual byte order (`00112233-4455-...` is bytes `00 11 22 33 44 55 ...`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

/// The GPT partition type of the Realms state partition, "Realms state".
///
/// A random v4 UUID generated once (2026-11-26) for this purpose. It never changes: disks in the
/// field carry it. It is not a Discoverable Partitions type, so systemd-gpt-auto-generator leaves
/// the partition alone and `realms-state-generator` is the only one that mounts it.
pub const STATE_PARTITION_TYPE: Guid = match Guid::parse("1481cc84-d6c7-48f0-a9b0-63ac992b8897") {
    Some(g) => g,
    None => panic!("the state partition type is a valid UUID"),
};

/// The human name of [`STATE_PARTITION_TYPE`].
pub const STATE_PARTITION_TYPE_NAME: &str = "Realms state";

impl Guid {
    /// The all-zero UUID (an unused GPT entry has this type).
    pub const NIL: Guid = Guid([0; 16]);

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case); `None` if it is not that.
    pub const fn parse(s: &str) -> Option<Guid> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        let (mut i, mut n) = (0, 0);
        while i < 36 {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                if b[i] != b'-' {
                    return None;
                }
                i += 1;
                continue;
            }
            let (Some(hi), Some(lo)) = (nibble(b[i]), nibble(b[i + 1])) else {
                return None;
            };
            out[n] = (hi << 4) | lo;
            n += 1;
            i += 2;
        }
        Some(Guid(out))
    }

    /// Parses 32 hex digits without dashes (`/etc/machine-id`).
    pub fn parse_hex32(s: &str) -> Option<Guid> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in b.chunks(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Guid(out))
    }

    /// The 16 bytes as a GPT entry stores them (the first three fields little-endian).
    pub fn to_gpt_bytes(self) -> [u8; 16] {
        let b = self.0;
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }

    /// The UUID stored as `bytes` in a GPT entry.
    pub fn from_gpt_bytes(bytes: &[u8]) -> Guid {
        let b: [u8; 16] = bytes[..16].try_into().expect("16 bytes");
        // The swap is its own inverse.
        Guid(Guid(b).to_gpt_bytes())
    }

    /// `bytes` made a v4 (random) UUID: version nibble 4, RFC 4122 variant.
    pub fn v4_from(mut bytes: [u8; 16]) -> Guid {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid(bytes)
    }

    /// A fresh random v4 UUID.
    pub fn random() -> realms_sys::Result<Guid> {
        Ok(Guid::v4_from(realms_sys::random::bytes::<16>()?))
    }

    /// `systemd-id128 --app-specific=APP MACHINE`: the first 16 bytes of
    /// HMAC-SHA256(key = machine id, message = app id), made v4. systemd-repart names a new
    /// partition this way, with the partition type as the app id.
    pub fn app_specific(machine_id: Guid, app: Guid) -> Guid {
        let mac = hmac_sha256(&machine_id.0, &app.0);
        Guid::v4_from(mac[..16].try_into().expect("16 bytes"))
    }
}

const fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// HMAC-SHA256 (RFC 2104) with a key shorter than the block.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    k[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.into()
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let s = "1481cc84-d6c7-48f0-a9b0-63ac992b8897";
        assert_eq!(Guid::parse(s).unwrap().to_string(), s);
        assert_eq!(STATE_PARTITION_TYPE.to_string(), s);
        assert!(Guid::parse("1481cc84d6c748f0a9b063ac992b8897").is_none());
        assert!(Guid::parse("1481cc84-d6c7-48f0-a9b0-63ac992b889g").is_none());
    }

    #[test]
    fn the_state_type_is_a_v4_uuid_and_no_dps_type() {
        let b = STATE_PARTITION_TYPE.0;
        assert_eq!(b[6] >> 4, 4);
        assert_eq!(b[8] >> 6, 0b10);
    }

    #[test]
    fn gpt_byte_order_swaps_the_first_three_fields() {
        let g = Guid::parse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").unwrap();
        let on_disk = g.to_gpt_bytes();
        assert_eq!(
            &on_disk[..8],
            &[0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11]
        );
        assert_eq!(Guid::from_gpt_bytes(&on_disk), g);
    }

    /// The partition UUID is what `systemd-id128 --app-specific=TYPE MACHINE-ID` prints, the
    /// rule systemd-repart uses (the reference checks the same against systemd 252).
    #[test]
    fn app_specific_ids_match_systemd_id128() {
        let id = std::fs::read_to_string("/etc/machine-id").expect("this machine's id");
        let machine = Guid::parse_hex32(id.trim()).unwrap();
        let out = std::process::Command::new("systemd-id128")
            .args([
                "machine-id",
                "--app-specific=1481cc84d6c748f0a9b063ac992b8897",
            ])
            .output()
            .expect("systemd-id128 (package systemd) is needed for this test");
        let text = String::from_utf8(out.stdout).unwrap();
        let theirs = Guid::parse_hex32(text.trim()).expect("a 32-hex id");
        assert_eq!(Guid::app_specific(machine, STATE_PARTITION_TYPE), theirs);
    }

    /// HMAC-SHA256 test case 2 of RFC 4231 (a key shorter than the block).
    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

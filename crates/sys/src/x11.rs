//! A tiny X11 client over the display's Unix socket, enough to revoke an authorization the
//! SECURITY extension generated (`xauth generate`): connection setup with the host's
//! MIT-MAGIC-COOKIE-1, QueryExtension "SECURITY", SecurityRevokeAuthorization, and a
//! GetInputFocus round trip that tells whether the revocation was refused. Requests are written
//! little-endian (byte-order byte `l`), as the X11 protocol lets a client choose.
//! Also reads and writes `.Xauthority` files.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The authorization protocol of the cookies realms use.
pub const MIT_MAGIC_COOKIE: &[u8] = b"MIT-MAGIC-COOKIE-1";

/// X11 core opcode of QueryExtension.
const QUERY_EXTENSION: u8 = 98;
/// X11 core opcode of GetInputFocus (a request with a reply: a round trip).
const GET_INPUT_FOCUS: u8 = 43;
/// The SECURITY extension's minor opcode of RevokeAuthorization.
const SECURITY_REVOKE_AUTHORIZATION: u8 = 2;
/// How long one read or write on the X socket may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What can go wrong talking to an X server; each names the display.
#[derive(Debug, thiserror::Error)]
pub enum X11Error {
    /// The display's socket could not be reached.
    #[error("connecting to the X server :{display} at {}", socket.display())]
    Connect {
        /// The display number.
        display: u32,
        /// The socket.
        socket: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading from or writing to the connection failed.
    #[error("talking to the X server :{display}")]
    Io {
        /// The display number.
        display: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server refused the connection (a bad or missing cookie).
    #[error("the X server :{display} refused the connection: {reason}")]
    Refused {
        /// The display number.
        display: u32,
        /// The server's reason.
        reason: String,
    },
    /// The server does not have an extension.
    #[error("the X server :{display} has no {extension} extension")]
    NoExtension {
        /// The display number.
        display: u32,
        /// The extension's name.
        extension: String,
    },
    /// The server answered a request with an X error.
    #[error("the X server :{display} refused {request} (X error {code})")]
    Request {
        /// The display number.
        display: u32,
        /// The request, with its argument.
        request: String,
        /// The X error code.
        code: u8,
    },
    /// The server sent something this client does not understand.
    #[error("the X server :{display} sent {what}")]
    Protocol {
        /// The display number.
        display: u32,
        /// What was unexpected.
        what: String,
    },
}

/// One `.Xauthority` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEntry {
    /// The address family (256 local, 65535 wildcard).
    pub family: u16,
    /// The host name (local) or address.
    pub address: Vec<u8>,
    /// The display number as text.
    pub number: Vec<u8>,
    /// `MIT-MAGIC-COOKIE-1`.
    pub name: Vec<u8>,
    /// The cookie.
    pub data: Vec<u8>,
}

/// Parses an `.Xauthority` file.
pub fn parse_auth(bytes: &[u8]) -> Option<Vec<AuthEntry>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let take_u16 = |r: &mut &[u8]| -> Option<u16> {
        let (head, tail) = r.split_first_chunk::<2>()?;
        *r = tail;
        Some(u16::from_be_bytes(*head))
    };
    let take_field = |r: &mut &[u8]| -> Option<Vec<u8>> {
        let len = usize::from(take_u16(r)?);
        if r.len() < len {
            return None;
        }
        let (field, tail) = r.split_at(len);
        *r = tail;
        Some(field.to_vec())
    };
    while !rest.is_empty() {
        out.push(AuthEntry {
            family: take_u16(&mut rest)?,
            address: take_field(&mut rest)?,
            number: take_field(&mut rest)?,
            name: take_field(&mut rest)?,
            data: take_field(&mut rest)?,
        });
    }
    Some(out)
}

/// Writes `.Xauthority` entries.
pub fn write_auth(entries: &[AuthEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend(e.family.to_be_bytes());
        for field in [&e.address, &e.number, &e.name, &e.data] {
            let len = u16::try_from(field.len()).unwrap_or(u16::MAX);
            out.extend(len.to_be_bytes());
            out.extend(&field[..usize::from(len)]);
        }
    }
    out
}

/// The MIT-MAGIC-COOKIE-1 entry of `entries` for local display `display` on host `hostname`,
/// matched as Xlib does: a local entry for this host or a wildcard one (then any entry of
/// the display, as the last resort).
pub fn cookie_for<'a>(
    entries: &'a [AuthEntry],
    display: u32,
    hostname: &[u8],
) -> Option<&'a AuthEntry> {
    let number = display.to_string().into_bytes();
    let ours: Vec<&AuthEntry> = entries
        .iter()
        .filter(|e| e.name == MIT_MAGIC_COOKIE && e.number == number)
        .collect();
    ours.iter()
        .find(|e| (e.family == 256 && e.address == hostname) || e.family == 0xffff)
        .or_else(|| ours.first())
        .copied()
}

/// Bytes of padding after `n` bytes up to a multiple of four.
fn pad(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// The connection setup request: byte order `l`, protocol 11.0, the authorization protocol's
/// name and data, each padded to four bytes.
pub fn setup_request(auth_name: &[u8], auth_data: &[u8]) -> Vec<u8> {
    let mut out = vec![b'l', 0];
    out.extend(11u16.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend(u16::try_from(auth_name.len()).unwrap_or(0).to_le_bytes());
    out.extend(u16::try_from(auth_data.len()).unwrap_or(0).to_le_bytes());
    out.extend([0, 0]);
    for field in [auth_name, auth_data] {
        if u16::try_from(field.len()).is_ok() {
            out.extend(field);
            out.extend(std::iter::repeat_n(0, pad(field.len())));
        }
    }
    out
}

/// QueryExtension: opcode 98, length in four-byte units, the name's length, the padded name.
pub fn query_extension_request(name: &[u8]) -> Vec<u8> {
    let len = name.len().min(usize::from(u16::MAX) - 8);
    let units = 2 + (len + pad(len)) / 4;
    let mut out = vec![QUERY_EXTENSION, 0];
    out.extend(u16::try_from(units).unwrap_or(u16::MAX).to_le_bytes());
    out.extend(u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes());
    out.extend([0, 0]);
    out.extend(&name[..len]);
    out.extend(std::iter::repeat_n(0, pad(len)));
    out
}

/// SecurityRevokeAuthorization: the extension's major opcode, minor opcode 2, length 2, the
/// authorization id.
pub fn revoke_authorization_request(major: u8, id: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[0] = major;
    out[1] = SECURITY_REVOKE_AUTHORIZATION;
    out[2..4].copy_from_slice(&2u16.to_le_bytes());
    out[4..8].copy_from_slice(&id.to_le_bytes());
    out
}

/// GetInputFocus: opcode 43, length 1.
pub fn get_input_focus_request() -> [u8; 4] {
    [GET_INPUT_FOCUS, 0, 1, 0]
}

/// An extension as QueryExtension reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension {
    /// Its major opcode.
    pub major: u8,
    /// Its first error code.
    pub first_error: u8,
}

/// What the server sent for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// A reply: its 32-byte header and the rest.
    Reply(Vec<u8>),
    /// An X error with its code.
    Error(u8),
}

/// A connection to a local X server.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    display: u32,
    /// The sequence number of the last request sent.
    sequence: u16,
}

impl Connection {
    /// Connects to local display `display` with `auth` (an MIT-MAGIC-COOKIE-1 entry), or
    /// without authorization.
    pub fn connect(display: u32, auth: Option<&AuthEntry>) -> Result<Connection, X11Error> {
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{display}"));
        let stream = UnixStream::connect(&socket).map_err(|source| X11Error::Connect {
            display,
            socket: socket.clone(),
            source,
        })?;
        let io = |source| X11Error::Io { display, source };
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        let mut conn = Connection {
            stream,
            display,
            sequence: 0,
        };
        let request = match auth {
            Some(a) => setup_request(&a.name, &a.data),
            None => setup_request(b"", b""),
        };
        conn.send(&request)?;
        let mut head = [0u8; 8];
        conn.read(&mut head)?;
        let extra = usize::from(u16::from_le_bytes([head[6], head[7]])) * 4;
        let mut rest = vec![0u8; extra];
        conn.read(&mut rest)?;
        match head[0] {
            1 => Ok(conn),
            0 => {
                let n = usize::from(head[1]).min(rest.len());
                Err(X11Error::Refused {
                    display,
                    reason: String::from_utf8_lossy(&rest[..n]).trim_end().to_string(),
                })
            }
            2 => Err(X11Error::Refused {
                display,
                reason: String::from_utf8_lossy(&rest)
                    .trim_end_matches(['\0', '\n', ' '])
                    .to_string(),
            }),
            other => Err(X11Error::Protocol {
                display,
                what: format!("connection setup status {other}"),
            }),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), X11Error> {
        let display = self.display;
        self.stream
            .write_all(bytes)
            .map_err(|source| X11Error::Io { display, source })
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), X11Error> {
        let display = self.display;
        self.stream
            .read_exact(buf)
            .map_err(|source| X11Error::Io { display, source })
    }

    /// Sends one request; returns its sequence number.
    fn request(&mut self, bytes: &[u8]) -> Result<u16, X11Error> {
        self.send(bytes)?;
        self.sequence = self.sequence.wrapping_add(1);
        Ok(self.sequence)
    }

    /// Reads until the reply to or an error of request `sequence` (events are skipped). An
    /// error of an earlier request is returned as that request's.
    fn answer(&mut self, sequence: u16) -> Result<(u16, Answer), X11Error> {
        loop {
            let mut head = [0u8; 32];
            self.read(&mut head)?;
            let seq = u16::from_le_bytes([head[2], head[3]]);
            match head[0] {
                0 => return Ok((seq, Answer::Error(head[1]))),
                1 => {
                    let units = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
                    let extra = usize::try_from(units)
                        .ok()
                        .and_then(|u| u.checked_mul(4))
                        .filter(|n| *n <= 1 << 20)
                        .ok_or_else(|| X11Error::Protocol {
                            display: self.display,
                            what: format!("a reply of {units} extra units"),
                        })?;
                    let mut reply = head.to_vec();
                    reply.resize(32 + extra, 0);
                    self.read(&mut reply[32..])?;
                    if seq == sequence {
                        return Ok((seq, Answer::Reply(reply)));
                    }
                }
                // An event: not asked for, skipped.
                _ => {}
            }
        }
    }

    /// QueryExtension: the extension's opcode and first error, `None` when the server has none.
    pub fn query_extension(&mut self, name: &str) -> Result<Option<Extension>, X11Error> {
        let seq = self.request(&query_extension_request(name.as_bytes()))?;
        match self.answer(seq)? {
            (_, Answer::Reply(r)) => Ok((r[8] != 0).then_some(Extension {
                major: r[9],
                first_error: r[11],
            })),
            (_, Answer::Error(code)) => Err(X11Error::Request {
                display: self.display,
                request: format!("QueryExtension {name}"),
                code,
            }),
        }
    }

    /// SecurityRevokeAuthorization `id`: clients using it are disconnected and it is refused
    /// from then on. RevokeAuthorization has no reply; a GetInputFocus round trip after it
    /// brings its error, if any, first.
    pub fn revoke_authorization(&mut self, id: u32) -> Result<(), X11Error> {
        let security = self
            .query_extension("SECURITY")?
            .ok_or_else(|| X11Error::NoExtension {
                display: self.display,
                extension: "SECURITY".into(),
            })?;
        let revoke = self.request(&revoke_authorization_request(security.major, id))?;
        let sync = self.request(&get_input_focus_request())?;
        match self.answer(sync)? {
            (_, Answer::Reply(_)) => Ok(()),
            (seq, Answer::Error(code)) => Err(X11Error::Request {
                display: self.display,
                request: if seq == revoke {
                    format!("SecurityRevokeAuthorization {id}")
                } else {
                    "GetInputFocus".into()
                },
                code,
            }),
        }
    }
}

/// Revokes authorization `id` on local display `display`, connecting with the display's
/// cookie from `xauthority` (without one when the file has none).
pub fn revoke(display: u32, xauthority: Option<&Path>, id: u32) -> Result<(), X11Error> {
    let entries = xauthority
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| parse_auth(&b))
        .unwrap_or_default();
    let hostname = std::fs::read("/proc/sys/kernel/hostname").unwrap_or_default();
    let hostname = hostname.trim_ascii_end();
    let auth = cookie_for(&entries, display, hostname);
    Connection::connect(display, auth)?.revoke_authorization(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_files_round_trip_and_truncated_ones_are_refused() {
        let e = AuthEntry {
            family: 0xffff,
            address: Vec::new(),
            number: b"87".to_vec(),
            name: MIT_MAGIC_COOKIE.to_vec(),
            data: vec![7; 16],
        };
        let bytes = write_auth(&[e.clone(), e.clone()]);
        assert_eq!(parse_auth(&bytes), Some(vec![e.clone(), e]));
        assert_eq!(parse_auth(&bytes[..bytes.len() - 1]), None);
        assert_eq!(parse_auth(b""), Some(vec![]));
    }

    /// X11 protocol, "Connection Setup": 1 byte order, 1 unused, CARD16 major, CARD16 minor,
    /// CARD16 n, CARD16 d, 2 unused, STRING8 name, pad(n), STRING8 data, pad(d).
    #[test]
    fn setup_request_follows_the_spec_layout() {
        let req = setup_request(MIT_MAGIC_COOKIE, &[0xaa; 16]);
        assert_eq!(&req[..12], &[b'l', 0, 11, 0, 0, 0, 18, 0, 16, 0, 0, 0]);
        assert_eq!(&req[12..30], MIT_MAGIC_COOKIE);
        assert_eq!(&req[30..32], &[0, 0], "the name is padded to 20");
        assert_eq!(&req[32..], &[0xaa; 16]);
        assert_eq!(
            setup_request(b"", b""),
            vec![b'l', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    /// X11 protocol, QueryExtension: 1 opcode 98, 1 unused, CARD16 length 2+(n+p)/4,
    /// CARD16 n, 2 unused, STRING8 name, pad(n).
    #[test]
    fn query_extension_request_follows_the_spec_layout() {
        let req = query_extension_request(b"SECURITY");
        assert_eq!(
            req,
            [&[98, 0, 4, 0, 8, 0, 0, 0][..], b"SECURITY"].concat(),
            "8 bytes of name need no padding"
        );
        let req = query_extension_request(b"XKEYBOARD");
        assert_eq!(&req[..8], &[98, 0, 5, 0, 9, 0, 0, 0]);
        assert_eq!(&req[8..17], b"XKEYBOARD");
        assert_eq!(&req[17..], &[0, 0, 0]);
        assert_eq!(req.len() % 4, 0);
    }

    /// Security extension spec, SecurityRevokeAuthorization: 1 CARD8 major opcode, 1 minor
    /// opcode 2, CARD16 length 2, CARD32 authorization-id (libXext's
    /// xSecurityRevokeAuthorizationReq, 8 bytes).
    #[test]
    fn revoke_authorization_request_follows_the_spec_layout() {
        assert_eq!(
            revoke_authorization_request(137, 0x0102_0304),
            [137, 2, 2, 0, 4, 3, 2, 1]
        );
        assert_eq!(get_input_focus_request(), [43, 0, 1, 0]);
    }

    #[test]
    fn the_cookie_of_this_host_and_display_is_chosen() {
        let entry = |family, address: &[u8], number: &[u8], data: u8| AuthEntry {
            family,
            address: address.to_vec(),
            number: number.to_vec(),
            name: MIT_MAGIC_COOKIE.to_vec(),
            data: vec![data; 16],
        };
        let entries = vec![
            entry(256, b"other", b"5", 1),
            entry(256, b"here", b"4", 2),
            entry(256, b"here", b"5", 3),
        ];
        assert_eq!(cookie_for(&entries, 5, b"here").unwrap().data[0], 3);
        assert_eq!(cookie_for(&entries, 4, b"elsewhere").unwrap().data[0], 2);
        assert!(cookie_for(&entries, 6, b"here").is_none());
        let wild = vec![entry(256, b"other", b"5", 1), entry(0xffff, b"", b"5", 9)];
        assert_eq!(cookie_for(&wild, 5, b"here").unwrap().data[0], 9);
    }
}

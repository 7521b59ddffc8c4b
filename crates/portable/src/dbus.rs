//! A minimal D-Bus client for talking to PID 1 on the system bus (or its private socket):
//! EXTERNAL authentication, method calls with simple argument types, replies and signals parsed
//! into values. It saves a process per systemd call (the daemon reload, unit states, jobs).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A D-Bus value (the types systemd's manager API uses).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `y`
    Byte(u8),
    /// `b`
    Bool(bool),
    /// `u`, and `n`/`q` widened
    U32(u32),
    /// `i`
    I32(i32),
    /// `t`, and `d` as its bits
    U64(u64),
    /// `x`
    I64(i64),
    /// `s`, `o` and `g`
    Str(String),
    /// `a...`: the elements
    Array(Vec<Value>),
    /// `(...)` and `{...}`: the fields
    Struct(Vec<Value>),
}

impl Value {
    /// The text of a string, object path or signature.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of an array or the fields of a struct (empty for other values).
    pub fn items(&self) -> &[Value] {
        match self {
            Value::Array(v) | Value::Struct(v) => v,
            _ => &[],
        }
    }
}

/// A message received: a method return, an error, or a signal.
#[derive(Debug, Clone)]
pub struct Message {
    /// The message type: 2 method return, 3 error, 4 signal (1, a call, only in tests).
    pub kind: u8,
    /// The serial of the call this replies to.
    pub reply_serial: Option<u32>,
    /// The error name of an error reply.
    pub error: Option<String>,
    /// The member (method or signal name).
    pub member: Option<String>,
    /// The body, decoded by its signature.
    pub body: Vec<Value>,
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
/// The message type of a signal.
pub const SIGNAL: u8 = 4;

fn pad(buf: &mut Vec<u8>, align: usize) {
    while !buf.len().is_multiple_of(align) {
        buf.push(0);
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    pad(buf, 4);
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

/// Appends `value` of signature `sig` (one complete type) to `buf`.
fn put(buf: &mut Vec<u8>, sig: &[u8], value: &Value) -> Option<()> {
    match (sig.first()?, value) {
        (b'y', Value::Byte(b)) => buf.push(*b),
        (b'b', Value::Bool(b)) => {
            pad(buf, 4);
            buf.extend_from_slice(&u32::from(*b).to_le_bytes());
        }
        (b'u', Value::U32(v)) => {
            pad(buf, 4);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        (b't', Value::U64(v)) => {
            pad(buf, 8);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        (b's' | b'o', Value::Str(s)) => put_str(buf, s),
        (b'g', Value::Str(s)) => {
            buf.push(s.len() as u8);
            buf.extend_from_slice(s.as_bytes());
            buf.push(0);
        }
        (b'a', Value::Array(items)) => {
            pad(buf, 4);
            let at = buf.len();
            buf.extend_from_slice(&[0; 4]);
            let elem = &sig[1..];
            pad(buf, align_of(elem[0]));
            let start = buf.len();
            for item in items {
                put(buf, elem, item)?;
            }
            let len = (buf.len() - start) as u32;
            buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
        _ => return None,
    }
    Some(())
}

fn align_of(code: u8) -> usize {
    match code {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b't' | b'x' | b'd' | b'(' | b'{' => 8,
        _ => 4,
    }
}

/// The length of the first complete type in `sig` (`None` if it is incomplete, or an empty
/// struct, which D-Bus does not allow).
fn type_len(sig: &[u8]) -> Option<usize> {
    match sig.first()? {
        b'a' => Some(1 + type_len(&sig[1..])?),
        open @ (b'(' | b'{') => {
            let close = if *open == b'(' { b')' } else { b'}' };
            if sig.get(1) == Some(&close) {
                return None;
            }
            let mut i = 1;
            while *sig.get(i)? != close {
                i += type_len(&sig[i..])?;
            }
            Some(i + 1)
        }
        _ => Some(1),
    }
}

/// How deeply containers (arrays, structs, variants) may nest: the D-Bus limit is 64 for arrays
/// and structs each; one bound for all keeps the recursion of [`Reader::value`] short.
const MAX_DEPTH: usize = 64;

/// Reads values from a message buffer (offsets count from the message start, for alignment).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// How many containers the value being read is inside.
    depth: usize,
}

impl Reader<'_> {
    fn align(&mut self, a: usize) {
        self.pos = self.pos.div_ceil(a) * a;
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        self.align(4);
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn string(&mut self, len: usize) -> Option<String> {
        let s = String::from_utf8_lossy(self.take(len)?).into_owned();
        self.take(1)?;
        Some(s)
    }

    fn value(&mut self, sig: &[u8]) -> Option<Value> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let value = self.value_at_depth(sig);
        self.depth -= 1;
        value
    }

    fn value_at_depth(&mut self, sig: &[u8]) -> Option<Value> {
        Some(match sig.first()? {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => Value::Bool(self.u32()? != 0),
            b'n' | b'q' => {
                self.align(2);
                let v = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
                Value::U32(u32::from(v))
            }
            b'u' => Value::U32(self.u32()?),
            b'i' => Value::I32(self.u32()? as i32),
            b't' | b'x' | b'd' => {
                self.align(8);
                let v = u64::from_le_bytes(self.take(8)?.try_into().ok()?);
                if sig[0] == b'x' {
                    Value::I64(v as i64)
                } else {
                    Value::U64(v)
                }
            }
            b's' | b'o' => {
                let len = self.u32()? as usize;
                Value::Str(self.string(len)?)
            }
            b'g' => {
                let len = usize::from(self.take(1)?[0]);
                Value::Str(self.string(len)?)
            }
            b'v' => {
                let len = usize::from(self.take(1)?[0]);
                let inner = self.string(len)?;
                self.value(inner.as_bytes())?
            }
            b'a' => {
                let len = self.u32()? as usize;
                let elem = &sig[1..type_len(sig)?];
                self.align(align_of(elem[0]));
                let end = self.pos.checked_add(len)?;
                if end > self.buf.len() {
                    return None;
                }
                let mut items = Vec::new();
                while self.pos < end {
                    let before = self.pos;
                    items.push(self.value(elem)?);
                    // Every element takes at least one byte, or the array would never end.
                    if self.pos == before {
                        return None;
                    }
                }
                Value::Array(items)
            }
            b'(' | b'{' => {
                self.align(8);
                let inner = &sig[1..type_len(sig)? - 1];
                let mut fields = Vec::new();
                let mut i = 0;
                while i < inner.len() {
                    let l = type_len(&inner[i..])?;
                    fields.push(self.value(&inner[i..i + l])?);
                    i += l;
                }
                Value::Struct(fields)
            }
            _ => return None,
        })
    }

    fn values(&mut self, sig: &[u8]) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < sig.len() {
            let l = type_len(&sig[i..])?;
            out.push(self.value(&sig[i..i + l])?);
            i += l;
        }
        Some(out)
    }
}

/// Encodes a method call (pure; for tests and [`Conn::call`]).
pub fn encode_call(
    serial: u32,
    dest: &str,
    path: &str,
    interface: &str,
    member: &str,
    sig: &str,
    args: &[Value],
) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut i = 0;
    for arg in args {
        let l = type_len(&sig.as_bytes()[i..])?;
        put(&mut body, &sig.as_bytes()[i..i + l], arg)?;
        i += l;
    }
    let mut fields: Vec<(u8, &str, &str)> = vec![
        (1, "o", path),
        (2, "s", interface),
        (3, "s", member),
        (6, "s", dest),
    ];
    if !sig.is_empty() {
        fields.push((8, "g", sig));
    }
    let mut msg = vec![b'l', METHOD_CALL, 0, 1];
    msg.extend_from_slice(&(body.len() as u32).to_le_bytes());
    msg.extend_from_slice(&serial.to_le_bytes());
    let at = msg.len();
    msg.extend_from_slice(&[0; 4]);
    for (code, ty, value) in fields {
        pad(&mut msg, 8);
        msg.push(code);
        msg.extend_from_slice(&[1, ty.as_bytes()[0], 0]);
        put(&mut msg, ty.as_bytes(), &Value::Str(value.to_owned()))?;
    }
    let len = (msg.len() - at - 4) as u32;
    msg[at..at + 4].copy_from_slice(&len.to_le_bytes());
    pad(&mut msg, 8);
    msg.extend_from_slice(&body);
    Some(msg)
}

/// Decodes one whole message (pure).
pub fn decode(msg: &[u8]) -> Option<Message> {
    if msg.first()? != &b'l' {
        return None;
    }
    let mut r = Reader {
        buf: msg,
        pos: 12,
        depth: 0,
    };
    let fields = r.value(b"a(yv)")?;
    r.align(8);
    let mut out = Message {
        kind: msg[1],
        reply_serial: None,
        error: None,
        member: None,
        body: Vec::new(),
    };
    let mut sig = String::new();
    for f in fields.items() {
        match (f.items().first(), f.items().get(1)) {
            (Some(Value::Byte(3)), Some(Value::Str(s))) => out.member = Some(s.clone()),
            (Some(Value::Byte(4)), Some(Value::Str(s))) => out.error = Some(s.clone()),
            (Some(Value::Byte(5)), Some(Value::U32(n))) => out.reply_serial = Some(*n),
            (Some(Value::Byte(8)), Some(Value::Str(s))) => sig = s.clone(),
            _ => {}
        }
    }
    out.body = r.values(sig.as_bytes())?;
    Some(out)
}

/// A connection to PID 1's private socket.
#[derive(Debug)]
pub struct Conn {
    reader: BufReader<UnixStream>,
    serial: u32,
    /// Signals that arrived while waiting for a reply.
    pub pending: Vec<Message>,
    dest: &'static str,
    bus: bool,
    subscribed: bool,
}

impl Conn {
    /// Connects and authenticates (as the current user) to `socket`.
    pub fn connect(socket: &Path, bus: bool) -> std::io::Result<Conn> {
        let mut stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(900)))?;
        let uid = rustix::process::geteuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        stream.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if !line.starts_with("OK ") {
            return Err(std::io::Error::other(format!(
                "D-Bus authentication refused: {line}"
            )));
        }
        reader.get_mut().write_all(b"BEGIN\r\n")?;
        let mut conn = Conn {
            reader,
            serial: 0,
            pending: Vec::new(),
            dest: "org.freedesktop.systemd1",
            bus: false,
            subscribed: false,
        };
        if bus {
            // A message bus wants Hello first.
            conn.bus = true;
            conn.dest = "org.freedesktop.DBus";
            conn.call(
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
                "",
                &[],
            )?;
            conn.dest = "org.freedesktop.systemd1";
        }
        Ok(conn)
    }

    /// Asks for PID 1's job signals (once): a match rule on a message bus, then `Subscribe()`.
    pub fn subscribe(&mut self) -> std::io::Result<()> {
        if self.subscribed {
            return Ok(());
        }
        if self.bus {
            let rule = "type='signal',sender='org.freedesktop.systemd1',interface='org.freedesktop.systemd1.Manager',member='JobRemoved'";
            self.dest = "org.freedesktop.DBus";
            let added = self.call(
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "AddMatch",
                "s",
                &[Value::Str(rule.to_owned())],
            );
            self.dest = "org.freedesktop.systemd1";
            added?;
        }
        let manager = "org.freedesktop.systemd1.Manager";
        self.call("/org/freedesktop/systemd1", manager, "Subscribe", "", &[])?;
        self.subscribed = true;
        Ok(())
    }

    /// Reads the next message.
    pub fn read(&mut self) -> std::io::Result<Message> {
        let mut head = [0u8; 16];
        self.reader.read_exact(&mut head)?;
        let body_len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        let fields_len = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes")) as usize;
        let total = (16 + fields_len).div_ceil(8) * 8 + body_len;
        let mut msg = head.to_vec();
        msg.resize(total, 0);
        self.reader.read_exact(&mut msg[16..])?;
        decode(&msg).ok_or_else(|| std::io::Error::other("malformed D-Bus message"))
    }

    /// Calls `interface.member` on `path` and returns the reply body; an error reply is an
    /// error carrying its name and message.
    pub fn call(
        &mut self,
        path: &str,
        interface: &str,
        member: &str,
        sig: &str,
        args: &[Value],
    ) -> std::io::Result<Vec<Value>> {
        self.serial += 1;
        let serial = self.serial;
        tracing::debug!(member, path, serial, "D-Bus call");
        let msg = encode_call(serial, self.dest, path, interface, member, sig, args)
            .ok_or_else(|| std::io::Error::other("arguments do not match their signature"))?;
        self.reader.get_mut().write_all(&msg)?;
        loop {
            let m = self.read()?;
            tracing::debug!(kind = m.kind, reply = ?m.reply_serial, member = ?m.member, "D-Bus message");
            if m.kind == SIGNAL {
                self.pending.push(m);
                continue;
            }
            if m.reply_serial != Some(serial) {
                continue;
            }
            return match m.kind {
                METHOD_RETURN => Ok(m.body),
                ERROR => Err(std::io::Error::other(
                    m.body
                        .first()
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map_or_else(|| m.error.unwrap_or_default(), str::to_owned),
                )),
                _ => Err(std::io::Error::other("unexpected D-Bus message")),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_round_trip_through_the_decoder() {
        let args = [
            Value::Array(vec![Value::Str("foo.service".into())]),
            Value::U64(5),
        ];
        let msg = encode_call(
            7,
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "EnableUnitFilesWithFlags",
            "ast",
            &args,
        )
        .unwrap();
        assert_eq!(&msg[..4], &[b'l', 1, 0, 1]);
        let m = decode(&msg).unwrap();
        assert_eq!(m.kind, METHOD_CALL);
        assert_eq!(m.member.as_deref(), Some("EnableUnitFilesWithFlags"));
        assert_eq!(m.body, args.to_vec());
    }

    #[test]
    fn structs_and_variants_decode() {
        let mut body = Vec::new();
        put(&mut body, b"b", &Value::Bool(true)).unwrap();
        // a(sss) with one element, written by hand through `put` of its strings.
        pad(&mut body, 4);
        let at = body.len();
        body.extend_from_slice(&[0; 4]);
        pad(&mut body, 8);
        let start = body.len();
        for s in ["symlink", "/a", "/b"] {
            put_str(&mut body, s);
        }
        let len = (body.len() - start) as u32;
        body[at..at + 4].copy_from_slice(&len.to_le_bytes());
        let mut r = Reader {
            buf: &body,
            pos: 0,
            depth: 0,
        };
        let v = r.values(b"ba(sss)").unwrap();
        assert_eq!(v[0], Value::Bool(true));
        assert_eq!(v[1].items()[0].items()[2].as_str(), Some("/b"));
        assert_eq!(type_len(b"a{sv}u"), Some(5));
    }

    /// Fuzz crash oom-a8209ea6: an array of empty dicts (`a{}`) in a variant took no bytes per
    /// element, so the decoder looped, allocating, until it ran out of memory.
    #[test]
    fn oom_a8209ea6_array_of_empty_structs() {
        let msg = include_bytes!("fuzz-regressions/dbus-oom-a8209ea6.bin");
        assert!(decode(msg).is_none());
        assert_eq!(type_len(b"a{}"), None);
        assert_eq!(type_len(b"()"), None);
    }

    /// Variants inside variants nest without limit in the wire format; the decoder stops at
    /// [`MAX_DEPTH`] instead of recursing until the stack overflows.
    #[test]
    fn deeply_nested_variants_are_refused() {
        let mut body = Vec::new();
        for _ in 0..100_000 {
            body.extend_from_slice(&[1, b'v', 0]);
        }
        let mut r = Reader {
            buf: &body,
            pos: 0,
            depth: 0,
        };
        assert_eq!(r.value(b"v"), None);
    }
}

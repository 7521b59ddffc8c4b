//! Port forwards of a realm (`port-forward = ["tcp:8080:80"]`): nspawn's `--port` syntax,
//! `[PROTO:]HOSTPORT[:REALMPORT]`, with `tcp` and the host port as the defaults.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::value::ForwardProblem;

/// The transport of a port forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One forward: connections to `host_port` on any of the host's addresses (127.0.0.1
/// included) reach `realm_port` of the realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PortForward {
    /// The protocol.
    pub proto: Proto,
    /// The port on the host.
    pub host_port: u16,
    /// The port in the realm.
    pub realm_port: u16,
}

fn port(s: &str) -> Result<u16, ForwardProblem> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 && !s.starts_with('+') => Ok(p),
        _ => Err(ForwardProblem::NotAPort(s.to_string())),
    }
}

impl FromStr for PortForward {
    type Err = ForwardProblem;

    fn from_str(spec: &str) -> Result<PortForward, ForwardProblem> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (proto, ports) = match parts.first().copied() {
            Some("tcp") => (Proto::Tcp, &parts[1..]),
            Some("udp") => (Proto::Udp, &parts[1..]),
            _ => (Proto::Tcp, &parts[..]),
        };
        let (host_port, realm_port) = match ports {
            [h] => (port(h)?, port(h)?),
            [h, r] => (port(h)?, port(r)?),
            _ => return Err(ForwardProblem::Syntax(spec.to_string())),
        };
        Ok(PortForward {
            proto,
            host_port,
            realm_port,
        })
    }
}

impl fmt::Display for PortForward {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.proto.as_str(),
            self.host_port,
            self.realm_port
        )
    }
}

/// Parses a list of forwards; two forwards of one host port are an error naming both.
pub fn parse_list<'a>(
    specs: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<PortForward>, (String, ForwardProblem)> {
    let mut out: Vec<PortForward> = Vec::new();
    for spec in specs {
        let f: PortForward = spec.parse().map_err(|e| (spec.to_string(), e))?;
        if let Some(other) = out
            .iter()
            .find(|o| o.proto == f.proto && o.host_port == f.host_port)
        {
            return Err((
                spec.to_string(),
                ForwardProblem::Taken {
                    proto: f.proto.as_str(),
                    port: f.host_port,
                    other: other.to_string(),
                },
            ));
        }
        out.push(f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf(proto: Proto, host_port: u16, realm_port: u16) -> PortForward {
        PortForward {
            proto,
            host_port,
            realm_port,
        }
    }

    #[test]
    fn nspawn_port_syntax_parses() {
        assert_eq!("tcp:8080:80".parse(), Ok(pf(Proto::Tcp, 8080, 80)));
        assert_eq!("udp:53".parse(), Ok(pf(Proto::Udp, 53, 53)));
        assert_eq!("8080:80".parse(), Ok(pf(Proto::Tcp, 8080, 80)));
        assert_eq!("443".parse(), Ok(pf(Proto::Tcp, 443, 443)));
        assert_eq!(pf(Proto::Udp, 5353, 53).to_string(), "udp:5353:53");
    }

    #[test]
    fn bad_forwards_say_what_is_wrong() {
        for bad in [
            "",
            "tcp",
            "tcp:",
            "sctp:80",
            "tcp:0:80",
            "tcp:65536",
            "tcp:80:80:80",
            "x:y",
            "+80",
            "tcp:-1",
            " 80",
        ] {
            let err = bad.parse::<PortForward>().unwrap_err().to_string();
            assert!(err.contains("HOSTPORT"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_host_port_is_forwarded_once() {
        let err = parse_list(["tcp:8080:80", "udp:8080:80", "8080:81"]).unwrap_err();
        assert_eq!(err.0, "8080:81");
        assert!(err.1.to_string().contains("tcp:8080:80"), "{}", err.1);
        assert_eq!(parse_list(["tcp:1:2", "udp:1:2"]).unwrap().len(), 2);
    }
}

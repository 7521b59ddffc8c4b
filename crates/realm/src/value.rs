//! What is wrong with a config value: the one vocabulary of realm config files, `realms config`
//! and `realms zone` (each error names the key and the value; this says why it is refused).
//! Nothing here touches the disk.

use crate::names::BadSubnet;

/// The port forward syntax, shown with every refused forward.
pub const FORWARD_SYNTAX: &str =
    "use [tcp:|udp:]HOSTPORT[:REALMPORT] with ports 1-65535, as in \"tcp:8080:80\"";

/// Why a value is refused for its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    /// A boolean key given something else.
    #[error("true or false")]
    NotBool,
    /// A zone's `nat` given something else.
    #[error("true or false (on, off)")]
    NotOnOff,
    /// A zone name that breaks the zone name rule.
    #[error("{0}")]
    ZoneName(realms_image::ZoneNameProblem),
    /// An image name that breaks the name rule.
    #[error("{0}")]
    ImageName(&'static str),
    /// A label that is empty, too long or has control characters.
    #[error("1 to 40 characters, no control characters or surrounding spaces")]
    Label,
    /// A colour not written `#rrggbb`.
    #[error("a colour as \"#rrggbb\" (hexadecimal)")]
    Color,
    /// A bind mount that cannot be used.
    #[error("{0}")]
    Bind(BindProblem),
    /// A port forward that cannot be used.
    #[error("{0}")]
    Forward(ForwardProblem),
    /// A subnet not of the form `A.B.C.0/24`.
    #[error("{0}")]
    Subnet(BadSubnet),
    /// A list value that starts with `[` but is not TOML; `message` is the TOML parser's own text.
    #[error("not a TOML list: {message}")]
    NotTomlList {
        /// The parser's message.
        message: String,
    },
    /// A TOML value that is not a list.
    #[error("a TOML list of strings, like [\"a\", \"b\"]")]
    NotAList,
    /// A list entry that is not a string.
    #[error("{entry} is not a string; quote each entry")]
    NotAString {
        /// The entry as TOML.
        entry: String,
    },
    /// `--add`/`--remove` on a key that is not a list.
    #[error(
        "--add and --remove apply to list options only; set this one with `realms config NAME KEY VALUE`"
    )]
    NotAListKey,
    /// `--add` of an entry the list has.
    #[error("it is in the list already")]
    Listed,
    /// `--remove` of an entry the list lacks.
    #[error("it is not in the list")]
    NotListed,
}

/// Why a bind mount (`HOST[:REALM]`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindProblem {
    /// A side is not an absolute path.
    #[error("'{0}' is not an absolute path; use \"/host/path[:/path/in/realm]\"")]
    NotAbsolute(String),
    /// A side has `..` or one of nspawn's separators.
    #[error("'{0}' may not contain '..', ',', ':' or a newline")]
    BadCharacter(String),
}

/// Why a port forward (`[PROTO:]HOSTPORT[:REALMPORT]`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardProblem {
    /// A port that is not 1-65535.
    #[error("'{0}' is not a port; {FORWARD_SYNTAX}")]
    NotAPort(String),
    /// The entry does not have the forward's shape.
    #[error("'{0}' is not a port forward; {FORWARD_SYNTAX}")]
    Syntax(String),
    /// The host port is forwarded by an earlier entry of the same list.
    #[error("host port {proto} {port} is already forwarded by '{other}'")]
    Taken {
        /// `tcp` or `udp`.
        proto: &'static str,
        /// The host port.
        port: u16,
        /// The earlier entry.
        other: String,
    },
}

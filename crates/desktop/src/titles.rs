//! `realms desktop titles`: windows of a realm carry its label in their title, `Editor
//! (work)`, on an X11 display (XWayland included). Run in the user's session (shipped as an
//! XDG autostart entry). Which realm a window belongs to is the X server's own answer: the
//! X-Resource extension gives the PID of the client that made it (the server reads it from
//! the socket, so a realm cannot claim another's), and that process' PID namespace is its
//! realm's. The title follows the client: whenever it sets a new one, the label goes back on.
//! Native Wayland windows are out of reach: their titles belong to the client and the
//! compositor, with no protocol for a third party.

use std::collections::HashMap;

use realms_realm::{RealmStore, runtime};
use realms_sys::event::{Event, Report};
use x11rb::connection::Connection;
use x11rb::protocol::Event as XEvent;
use x11rb::protocol::res::{ClientIdMask, ClientIdSpec, ConnectionExt as _};
use x11rb::protocol::xproto::{
    AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, EventMask, PropMode, Window,
};
use x11rb::rust_connection::RustConnection;

use crate::identity::Identity;
use crate::{Error, Result};

/// A title with the realm's label after it, once: `None` when it already ends with it.
pub fn labelled(title: &str, label: &str) -> Option<String> {
    let suffix = format!(" ({label})");
    (!title.ends_with(&suffix)).then(|| format!("{title}{suffix}"))
}

/// Text of a `STRING` property (ISO 8859-1) and back; `None` when the label does not fit it.
fn latin1_decode(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn latin1_encode(text: &str) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

struct Atoms {
    net_wm_name: u32,
    utf8_string: u32,
}

/// The windows being followed: window → label.
struct Titles<'a> {
    conn: RustConnection,
    atoms: Atoms,
    store: &'a RealmStore,
    windows: HashMap<Window, String>,
}

impl Titles<'_> {
    /// The realm of the client that made `window`, if it is a realm's.
    fn realm_of(&self, window: Window) -> Option<String> {
        let spec = ClientIdSpec {
            client: window,
            mask: ClientIdMask::LOCAL_CLIENT_PID,
        };
        let reply = self.conn.res_query_client_ids(&[spec]).ok()?.reply().ok()?;
        let pid = reply
            .ids
            .iter()
            .find(|id| u32::from(id.spec.mask) & u32::from(ClientIdMask::LOCAL_CLIENT_PID) != 0)
            .and_then(|id| id.value.first().copied())?;
        let ns = realms_sys::proc::pid_namespace(pid)?;
        runtime::pid_namespaces(self.store)
            .into_iter()
            .find(|(inode, _)| *inode == ns)
            .map(|(_, name)| name)
    }

    /// Starts following `window` if a realm's client made it.
    fn consider(&mut self, window: Window) {
        if self.windows.contains_key(&window) {
            return;
        }
        let Some(realm) = self.realm_of(window) else {
            return;
        };
        let events = ChangeWindowAttributesAux::new()
            .event_mask(EventMask::PROPERTY_CHANGE | EventMask::STRUCTURE_NOTIFY);
        let selected = self
            .conn
            .change_window_attributes(window, &events)
            .ok()
            .and_then(|c| c.check().ok());
        if selected.is_none() {
            return; // gone already
        }
        let label = Identity::of(self.store, &realm).label;
        self.windows.insert(window, label);
        self.retitle(window);
    }

    /// Puts the label after the window's titles (`_NET_WM_NAME` and `WM_NAME`) where missing.
    fn retitle(&self, window: Window) {
        let Some(label) = self.windows.get(&window) else {
            return;
        };
        // Read and write with the server grabbed: a title the client sets in between is not
        // overwritten with the old one (its request waits, then is labelled in turn).
        let _ = self.conn.grab_server();
        self.label_properties(window, label);
        let _ = self.conn.ungrab_server();
        let _ = self.conn.flush();
    }

    fn label_properties(&self, window: Window, label: &str) {
        for property in [self.atoms.net_wm_name, u32::from(AtomEnum::WM_NAME)] {
            let Some(reply) = self
                .conn
                .get_property(false, window, property, AtomEnum::ANY, 0, 16384)
                .ok()
                .and_then(|c| c.reply().ok())
            else {
                return; // gone
            };
            let value = if reply.type_ == self.atoms.utf8_string {
                String::from_utf8(reply.value)
                    .ok()
                    .and_then(|t| labelled(&t, label).map(|new| (reply.type_, new.into_bytes())))
            } else if reply.type_ == u32::from(AtomEnum::STRING) {
                labelled(&latin1_decode(&reply.value), label)
                    .and_then(|new| latin1_encode(&new))
                    .map(|bytes| (reply.type_, bytes))
            } else {
                None // unset, or an encoding (COMPOUND_TEXT) left as the client wrote it
            };
            if let Some((kind, bytes)) = value {
                let _ = self.conn.change_property(
                    PropMode::REPLACE,
                    window,
                    property,
                    kind,
                    8,
                    u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                    &bytes,
                );
            }
        }
    }

    /// The windows there already: top-level ones and their children (a window manager's frames
    /// hold the clients' windows).
    fn scan(&mut self, root: Window) {
        let children = |w: Window| {
            self.conn
                .query_tree(w)
                .ok()
                .and_then(|c| c.reply().ok())
                .map(|r| r.children)
                .unwrap_or_default()
        };
        let top = children(root);
        let mut all = top.clone();
        for w in top {
            all.extend(children(w));
        }
        for w in all {
            self.consider(w);
        }
    }

    fn handle(&mut self, event: XEvent) {
        match event {
            XEvent::CreateNotify(e) => self.consider(e.window),
            XEvent::MapNotify(e) => self.consider(e.window),
            XEvent::PropertyNotify(e)
                if e.atom == self.atoms.net_wm_name || e.atom == u32::from(AtomEnum::WM_NAME) =>
            {
                self.retitle(e.window)
            }
            XEvent::DestroyNotify(e) => {
                self.windows.remove(&e.window);
            }
            _ => {}
        }
    }
}

/// Follows the windows of display `display` (`None`: `DISPLAY`) until its server goes away.
pub fn titles(store: &RealmStore, display: Option<&str>, say: &dyn Report) -> Result<()> {
    let shown = display.map_or_else(
        || std::env::var("DISPLAY").unwrap_or_default(),
        str::to_string,
    );
    let x_error = |reason: String| Error::X11Display {
        display: shown.clone(),
        reason,
    };
    if shown.is_empty() {
        return Err(x_error(
            "no display: DISPLAY is not set; run it in the desktop session or give --display"
                .into(),
        ));
    }
    let (conn, screen) = x11rb::connect(display).map_err(|e| x_error(e.to_string()))?;
    let root = conn.setup().roots[screen].root;
    let version = conn
        .res_query_version(1, 2)
        .map_err(|e| x_error(e.to_string()))?
        .reply()
        .map_err(|_| {
            x_error(
                "the server has no X-Resource extension, which tells the process behind a window"
                    .into(),
            )
        })?;
    if (version.server_major, version.server_minor) < (1, 2) {
        return Err(x_error(format!(
            "its X-Resource extension is version {}.{}; 1.2 tells the process behind a window",
            version.server_major, version.server_minor
        )));
    }
    let atom = |name: &[u8]| -> Result<u32> {
        Ok(conn
            .intern_atom(false, name)
            .map_err(|e| x_error(e.to_string()))?
            .reply()
            .map_err(|e| x_error(e.to_string()))?
            .atom)
    };
    let atoms = Atoms {
        net_wm_name: atom(b"_NET_WM_NAME")?,
        utf8_string: atom(b"UTF8_STRING")?,
    };
    conn.change_window_attributes(
        root,
        &ChangeWindowAttributesAux::new().event_mask(EventMask::SUBSTRUCTURE_NOTIFY),
    )
    .map_err(|e| x_error(e.to_string()))?
    .check()
    .map_err(|e| x_error(e.to_string()))?;
    let mut titles = Titles {
        conn,
        atoms,
        store,
        windows: HashMap::new(),
    };
    titles.scan(root);
    say.report(Event::note(format!(
        "following the titles of realms' windows on {shown}"
    )));
    loop {
        let event = titles
            .conn
            .wait_for_event()
            .map_err(|e| x_error(e.to_string()))?;
        titles.handle(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_goes_on_once() {
        assert_eq!(labelled("Editor", "work").as_deref(), Some("Editor (work)"));
        assert_eq!(labelled("Editor (work)", "work"), None);
        assert_eq!(
            labelled("Editor (home)", "work").as_deref(),
            Some("Editor (home) (work)")
        );
    }

    #[test]
    fn latin1_titles_keep_their_encoding() {
        assert_eq!(latin1_decode(b"Caf\xe9"), "Café");
        assert_eq!(latin1_encode("Café (Büro)").unwrap(), b"Caf\xe9 (B\xfcro)");
        assert_eq!(latin1_encode("Café (仕事)"), None);
    }
}

//! A realm's identity on the desktop: its label and colour (config keys `label` and `color`,
//! with defaults derived from the name).

use realms_realm::RealmStore;
use serde::Serialize;

/// How a realm shows on the desktop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Shown after the names of its apps: `Firefox (work)`.
    pub label: String,
    /// `#rrggbb`.
    pub color: String,
}

impl Identity {
    /// The identity of realm `name` (its defaults when its config cannot be read).
    pub fn of(store: &RealmStore, name: &str) -> Identity {
        let config = store.config(name).unwrap_or_default();
        Identity {
            label: config.label_or(name).to_string(),
            color: config.color_or(name),
        }
    }
}

//! A realm's identity on the desktop: its label and colour (config keys `label` and `color`,
//! with defaults derived from the name).

use realms_realm::{RealmStore, runtime};
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
    /// The identity of realm `name`: from its config, else (for the desktop's user, who may
    /// not read the store) the label recorded while it runs, else its defaults.
    pub fn of(store: &RealmStore, name: &str) -> Identity {
        match store.config(name) {
            Ok(config) => Identity {
                label: config.label_or(name).to_string(),
                color: config.color_or(name),
            },
            Err(_) => Identity {
                label: runtime::recorded_label(store, name).unwrap_or_else(|| name.to_string()),
                color: realms_realm::config::default_color(name),
            },
        }
    }
}

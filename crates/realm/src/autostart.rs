//! Realms started at boot: the default realm and every realm with `autostart = true`
//! (`realms autostart NAME on`). `realms start --autostart` (run by realms-default.service)
//! starts them all.

use serde::Serialize;

use crate::store::RealmStore;
use crate::{Result, launch, lifecycle};
use realms_sys::event::{Event, Report};

/// `realms autostart NAME on|off`.
pub fn set(store: &RealmStore, name: &str, on: bool) -> Result<()> {
    lifecycle::config_set(store, name, "autostart", if on { "true" } else { "false" })
}

/// The realms started at boot: the default realm first, then the others with autostart, by
/// name. A realm whose config cannot be read is left out (and said on the log).
pub fn boot_realms(store: &RealmStore) -> Result<Vec<String>> {
    let mut out: Vec<String> = store.default_realm().into_iter().collect();
    for name in store.names()? {
        match store.config(&name) {
            Ok(c) if c.autostart() && !out.contains(&name) => out.push(name),
            Ok(_) => {}
            Err(e) => tracing::warn!("realm '{name}' is not started at boot: {e}"),
        }
    }
    Ok(out)
}

/// What happened to one realm at boot.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Started {
    /// The realm.
    pub realm: String,
    /// True when it started (or ran already).
    pub started: bool,
    /// Why it did not.
    pub error: Option<String>,
}

/// `realms start --autostart`: starts every boot realm; one failing does not stop the others.
pub fn start_all(store: &RealmStore, say: &dyn Report) -> Result<Vec<Started>> {
    let mut out = Vec::new();
    for realm in boot_realms(store)? {
        let result = launch::start(store, &realm, say);
        if let Err(e) = &result {
            say.report(Event::warning(format!(
                "Realm '{realm}' did not start: {e}"
            )));
        }
        out.push(Started {
            started: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
            realm,
        });
    }
    Ok(out)
}

//! The `org.realms.Manager1` interface: each method calls one library operation.

use std::ffi::OsString;

use realms_realm::{RealmStore, launch, lifecycle, select};
use realms_sys::event::Silent;
use zbus::interface;
use zbus::message::Header;

/// The API's errors: the text is what the CLI prints for the same failure.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.realms.Manager1.Error")]
pub enum BusError {
    /// A zbus error.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The operation failed.
    Failed(String),
    /// The caller may not change realms.
    AccessDenied(String),
}

/// The error chain as the CLI prints it (`outer: inner: ...`).
fn failed(err: &dyn std::error::Error) -> BusError {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    BusError::Failed(text)
}

/// The object behind `/org/realms/Manager1`.
#[derive(Debug)]
pub struct Manager {
    store: RealmStore,
    admin_group: Option<String>,
}

impl Manager {
    /// The API over `store`; `admin_group` may change realms besides root.
    pub fn new(store: RealmStore, admin_group: Option<String>) -> Manager {
        Manager { store, admin_group }
    }

    async fn check(
        &self,
        header: &Header<'_>,
        conn: &zbus::Connection,
        method: &str,
    ) -> Result<(), BusError> {
        let sender = header
            .sender()
            .ok_or_else(|| BusError::AccessDenied(format!("{method}: the caller is unknown")))?;
        let dbus = zbus::fdo::DBusProxy::new(conn).await?;
        let uid = dbus
            .get_connection_unix_user(sender.clone().into())
            .await
            .map_err(|e| {
                BusError::AccessDenied(format!("{method}: the caller's user is unknown: {e}"))
            })?;
        if crate::access::may_change(uid, self.admin_group.as_deref()) {
            return Ok(());
        }
        Err(BusError::AccessDenied(format!(
            "{method} changes realms: only root{} may call it, not uid {uid}",
            self.admin_group
                .as_deref()
                .map(|g| format!(" and members of group '{g}'"))
                .unwrap_or_default()
        )))
    }
}

#[interface(name = "org.realms.Manager1")]
impl Manager {
    /// Every realm: (name, running, current, default, image, zone, colour, label).
    #[allow(clippy::type_complexity)]
    fn list(
        &self,
    ) -> Result<Vec<(String, bool, bool, bool, String, String, String, String)>, BusError> {
        let rows = select::list(&self.store).map_err(|e| failed(&e))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let id = realms_desktop::identity::Identity::of(&self.store, &r.name);
                (
                    r.name,
                    r.running,
                    r.current,
                    r.default,
                    r.appimg,
                    r.zone.unwrap_or_default(),
                    id.color,
                    id.label,
                )
            })
            .collect())
    }

    /// A realm's options, each as (key, value as TOML).
    fn get_config(&self, name: String) -> Result<Vec<(String, String)>, BusError> {
        lifecycle::config_get(&self.store, &name, None).map_err(|e| failed(&e))
    }

    /// Starts a realm.
    async fn start(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> Result<(), BusError> {
        self.check(&header, conn, "Start").await?;
        launch::start(&self.store, &name, &Silent).map_err(|e| failed(&e))
    }

    /// Stops a realm.
    async fn stop(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> Result<(), BusError> {
        self.check(&header, conn, "Stop").await?;
        launch::stop(&self.store, &name, &Silent).map_err(|e| failed(&e))
    }

    /// Makes a realm current (starting it).
    async fn set_current(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> Result<(), BusError> {
        self.check(&header, conn, "SetCurrent").await?;
        select::set_current(&self.store, &name, &Silent).map_err(|e| failed(&e))
    }

    /// Makes a realm the default.
    async fn set_default(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> Result<(), BusError> {
        self.check(&header, conn, "SetDefault").await?;
        select::set_default(&self.store, &name, &Silent).map_err(|e| failed(&e))
    }

    /// Sets one option of a realm (the value as `realms config NAME KEY VALUE` takes it).
    async fn set_config(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        key: String,
        value: String,
    ) -> Result<(), BusError> {
        self.check(&header, conn, "SetConfig").await?;
        lifecycle::config_set(&self.store, &name, &key, &value).map_err(|e| failed(&e))
    }

    /// Runs a command in a realm as its user (`realms launch NAME -- ARGV`), detached; returns
    /// the launcher's pid.
    async fn launch(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        argv: Vec<String>,
    ) -> Result<u32, BusError> {
        self.check(&header, conn, "Launch").await?;
        self.store.check_exists(&name).map_err(|e| failed(&e))?;
        if argv.is_empty() {
            return Err(BusError::Failed("Launch: no command given".into()));
        }
        let exe = std::env::current_exe().map_err(|e| failed(&e))?;
        let argv: Vec<OsString> = argv.into_iter().map(OsString::from).collect();
        let child = std::process::Command::new(exe)
            .arg("--root")
            .arg(self.store.root())
            .arg("launch")
            .arg(&name)
            .arg("--")
            .args(&argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| failed(&e))?;
        let pid = child.id();
        // Reaped in the background; its output goes to the realm's apps log.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Ok(pid)
    }

    /// A realm started.
    #[zbus(signal)]
    pub async fn realm_started(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        name: &str,
    ) -> zbus::Result<()>;
    /// A realm stopped.
    #[zbus(signal)]
    pub async fn realm_stopped(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        name: &str,
    ) -> zbus::Result<()>;
    /// A realm was created.
    #[zbus(signal)]
    pub async fn realm_new(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        name: &str,
    ) -> zbus::Result<()>;
    /// A realm was removed.
    #[zbus(signal)]
    pub async fn realm_removed(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        name: &str,
    ) -> zbus::Result<()>;
    /// The current realm changed (empty: none).
    #[zbus(signal)]
    pub async fn current_changed(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        name: &str,
    ) -> zbus::Result<()>;
}

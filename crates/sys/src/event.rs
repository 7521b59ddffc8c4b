//! What library operations report while they run, shared by every crate: a [`Event`] of one
//! of three kinds, handed to a [`Report`]. Presentation (prefixes, streams, `--json` and `-q`)
//! belongs to the caller; libraries never print.

use crate::lock::LockEvent;

/// One thing an operation says while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step of the operation the user asked for (`Started realm 'work'`).
    Progress(String),
    /// A side effect the user did not ask for, or a wait (the store being created, a lock
    /// held by another process).
    Note(String),
    /// Something the user should know that does not stop the operation.
    Warning(String),
    /// How far a transfer (a download) is: `done` of `total` bytes of `what`. A terminal
    /// shows it as a progress bar; elsewhere (the journal) it is a line every quarter.
    Transfer {
        /// What is transferred (a file name).
        what: String,
        /// The bytes done.
        done: u64,
        /// The bytes in all.
        total: u64,
    },
}

impl Event {
    /// A step of the operation.
    pub fn progress(text: impl Into<String>) -> Event {
        Event::Progress(text.into())
    }

    /// A side effect or a wait.
    pub fn note(text: impl Into<String>) -> Event {
        Event::Note(text.into())
    }

    /// A warning.
    pub fn warning(text: impl Into<String>) -> Event {
        Event::Warning(text.into())
    }

    /// How far a transfer is.
    pub fn transfer(what: impl Into<String>, done: u64, total: u64) -> Event {
        Event::Transfer {
            what: what.into(),
            done,
            total,
        }
    }

    /// The text, without any kind.
    pub fn text(&self) -> &str {
        match self {
            Event::Progress(t) | Event::Note(t) | Event::Warning(t) => t,
            Event::Transfer { what, .. } => what,
        }
    }
}

impl From<LockEvent<'_>> for Event {
    /// A wait for a lock is a note.
    fn from(event: LockEvent<'_>) -> Event {
        Event::Note(event.to_string())
    }
}

/// Where events go.
pub trait Report {
    /// Hears one event.
    fn report(&self, event: Event);
}

impl<F: Fn(Event) + ?Sized> Report for F {
    fn report(&self, event: Event) {
        self(event)
    }
}

/// A reporter that drops every event (for callers that want none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Report for Silent {
    fn report(&self, _: Event) {}
}

/// A reporter that keeps every event, for tests and callers that render afterwards.
#[derive(Debug, Default)]
pub struct Recorder(std::sync::Mutex<Vec<Event>>);

impl Recorder {
    /// The events heard so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Report for Recorder {
    fn report(&self, event: Event) {
        if let Ok(mut events) = self.0.lock() {
            events.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_lock_wait_is_a_note_naming_the_lock() {
        let path = Path::new("/realms/.lock");
        let event = Event::from(LockEvent::Waiting {
            path,
            holder: Some(7),
        });
        assert_eq!(
            event,
            Event::note("waiting for lock on /realms/.lock held by PID 7")
        );
    }

    #[test]
    fn closures_and_recorders_hear_events() {
        let recorder = Recorder::default();
        let report: &dyn Report = &recorder;
        report.report(Event::progress("a"));
        report.report(Event::warning("b"));
        assert_eq!(
            recorder.events(),
            [Event::progress("a"), Event::warning("b")]
        );
        let seen = std::cell::RefCell::new(Vec::new());
        let closure = |e: Event| seen.borrow_mut().push(e.text().to_string());
        closure.report(Event::note("c"));
        assert_eq!(seen.into_inner(), ["c"]);
    }
}

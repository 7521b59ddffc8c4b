//! Update strategies, as Zincati names them: `immediate` (the default: every update run
//! updates) or `periodic` (only inside maintenance windows: days of the week, a start time and a
//! length, in UTC). A window may cross midnight.
//!
//! ```yaml
//! composable:
//!   updates:
//!     strategy: periodic
//!     windows:
//!       - {days: [Sat, Sun], start_time: "22:30", length_minutes: 60}
//! ```

use serde::{Deserialize, Serialize};

/// When updates may happen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Updates {
    /// `immediate` or `periodic`.
    #[serde(default)]
    pub strategy: Strategy,
    /// The maintenance windows of `periodic`.
    #[serde(default)]
    pub windows: Vec<Window>,
    /// The fleet-wide lock of `fleet_lock`.
    #[serde(default)]
    pub fleet_lock: Option<FleetLock>,
}

/// A fleet-wide lock: at most K machines update at once. `base_url` is a FleetLock server
/// (`http(s)://`, the protocol Zincati speaks) or a directory (`file://`) holding the lock files
/// of `slots` slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetLock {
    /// The FleetLock server or the lock directory.
    pub base_url: String,
    /// The group of machines sharing the slots.
    #[serde(default = "default_group")]
    pub group: String,
    /// How many machines of the group may update at once (`file://` only: a FleetLock server
    /// has its own setting).
    #[serde(default = "one")]
    pub slots: u32,
}

fn default_group() -> String {
    "default".into()
}

fn one() -> u32 {
    1
}

/// The update strategies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Every update run updates.
    #[default]
    Immediate,
    /// Only inside the maintenance windows.
    Periodic,
    /// Whenever a slot of the fleet lock is free.
    #[serde(rename = "fleet_lock")]
    FleetLock,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Day {
    const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];

    /// The weekday of `day` days since 1970-01-01 (a Thursday).
    pub fn of(day: i64) -> Day {
        Day::ALL[(day + 3).rem_euclid(7) as usize]
    }
}

/// One maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The days it starts on.
    pub days: Vec<Day>,
    /// When it starts, `HH:MM` in UTC.
    pub start_time: String,
    /// How long it lasts, in minutes (at most a day).
    pub length_minutes: u32,
}

/// What is wrong with an update window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowProblem {
    /// A start time that is not HH:MM.
    #[error("start_time '{0}' is not HH:MM (UTC, 00:00 to 23:59)")]
    StartTime(String),
    /// A length out of range.
    #[error("length_minutes {0} is not between 1 and 1440")]
    Length(u32),
    /// No days.
    #[error("days is empty: list some of Mon, Tue, Wed, Thu, Fri, Sat, Sun")]
    NoDays,
}

impl Window {
    /// Its start as minutes after midnight, when `start_time` is a valid `HH:MM`.
    pub fn start_minute(&self) -> Option<i64> {
        let (h, m) = self.start_time.split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        ((0..24).contains(&h) && (0..60).contains(&m) && m.to_string().len() <= 2)
            .then_some(h * 60 + m)
    }

    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<WindowProblem> {
        if self.start_minute().is_none() {
            return Some(WindowProblem::StartTime(self.start_time.clone()));
        }
        if self.length_minutes == 0 || self.length_minutes > 1440 {
            return Some(WindowProblem::Length(self.length_minutes));
        }
        if self.days.is_empty() {
            return Some(WindowProblem::NoDays);
        }
        None
    }

    /// Its occurrence starting on `day` (days since the epoch), as seconds `[start, end)`.
    fn on(&self, day: i64) -> Option<(i64, i64)> {
        let start = day * 86_400 + self.start_minute()? * 60;
        self.days
            .contains(&Day::of(day))
            .then_some((start, start + i64::from(self.length_minutes) * 60))
    }
}

impl Updates {
    /// Whether an update may run at `now` (seconds since the epoch).
    pub fn allows(&self, now: u64) -> bool {
        if self.strategy != Strategy::Periodic {
            return true;
        }
        let now = now as i64;
        let today = now.div_euclid(86_400);
        // A window that started yesterday may still be open (it crosses midnight).
        self.windows.iter().any(|w| {
            [today - 1, today]
                .iter()
                .filter_map(|d| w.on(*d))
                .any(|(s, e)| s <= now && now < e)
        })
    }

    /// When the next window opens after `now` (seconds since the epoch), if there is one.
    pub fn next_opening(&self, now: u64) -> Option<u64> {
        let now = now as i64;
        let today = now.div_euclid(86_400);
        self.windows
            .iter()
            .flat_map(|w| (0..=7).filter_map(move |d| w.on(today + d)))
            .map(|(s, _)| s)
            .filter(|s| *s > now)
            .min()
            .and_then(|s| u64::try_from(s).ok())
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn utc(secs: u64) -> String {
    let (year, month, day) = realms_sys::civil::civil_date((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(days: &[Day], start: &str, len: u32) -> Window {
        Window {
            days: days.to_vec(),
            start_time: start.into(),
            length_minutes: len,
        }
    }

    /// 2026-11-28 (a Saturday) at `hh:mm` UTC.
    fn sat(hh: u64, mm: u64) -> u64 {
        1_795_824_000 + hh * 3600 + mm * 60
    }

    #[test]
    fn weekdays_are_counted_from_a_thursday() {
        assert_eq!(Day::of(0), Day::Thu);
        assert_eq!(Day::of(1_795_824_000 / 86_400), Day::Sat);
        assert_eq!(Day::of(-1), Day::Wed);
    }

    #[test]
    fn periodic_updates_only_inside_a_window_also_across_midnight() {
        let u = Updates {
            strategy: Strategy::Periodic,
            windows: vec![w(&[Day::Sat], "23:30", 60)],
            fleet_lock: None,
        };
        assert!(!u.allows(sat(23, 29)));
        assert!(u.allows(sat(23, 30)));
        // Sunday 00:29 is still Saturday's window; 00:30 is not.
        assert!(u.allows(sat(24, 29)));
        assert!(!u.allows(sat(24, 30)));
        assert_eq!(u.next_opening(sat(12, 0)), Some(sat(23, 30)));
        assert_eq!(u.next_opening(sat(23, 45)), Some(sat(23, 30) + 7 * 86_400));
        let immediate = Updates::default();
        assert!(immediate.allows(sat(3, 0)));
        let never = Updates {
            strategy: Strategy::Periodic,
            windows: Vec::new(),
            fleet_lock: None,
        };
        assert!(!never.allows(sat(3, 0)) && never.next_opening(sat(3, 0)).is_none());
    }

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(utc(sat(22, 30)), "2026-11-28 22:30 UTC");
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        assert!(
            w(&[Day::Mon], "24:00", 10)
                .problem()
                .unwrap()
                .to_string()
                .contains("HH:MM")
        );
        assert!(w(&[Day::Mon], "3:7x", 10).problem().is_some());
        assert!(
            w(&[Day::Mon], "03:00", 0)
                .problem()
                .unwrap()
                .to_string()
                .contains("1440")
        );
        assert!(
            w(&[], "03:00", 10)
                .problem()
                .unwrap()
                .to_string()
                .contains("days")
        );
        assert_eq!(w(&[Day::Mon], "03:07", 10).problem(), None);
    }
}

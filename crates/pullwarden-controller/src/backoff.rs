//! Per-object backoff against another writer that keeps undoing a change:
//! an object pullwarden wrote that needs the same kind of change again soon
//! after is written again only after a delay that doubles each time (from
//! 2 s to 5 min). An object that stays converged for the window starts over.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pullwarden_core::plan::{Change, ObjectKind};

/// The first delay, doubled per repeat.
const FIRST: Duration = Duration::from_secs(2);
/// The longest delay.
pub const CAP: Duration = Duration::from_secs(300);
/// A write older than this no longer counts as a repeat.
const WINDOW: Duration = Duration::from_secs(600);

type Key = (String, ObjectKind, String);

fn key(change: &Change) -> Key {
    (change.namespace.clone(), change.kind, change.name.clone())
}

struct Entry {
    written: Instant,
    /// Writes in a row, each needed again within the window.
    repeats: u32,
    /// The current wait was reported (once per wait).
    reported: bool,
}

#[derive(Default)]
pub struct Backoff {
    entries: BTreeMap<Key, Entry>,
}

/// What [`Backoff::split`] decided for one change.
pub enum Decision {
    Write,
    /// Held back until then (the delay it waits); `first` the first time
    /// this wait is met (report it then only).
    Wait {
        until: Instant,
        delay: Duration,
        first: bool,
    },
}

impl Backoff {
    fn delay(repeats: u32) -> Duration {
        FIRST
            .checked_mul(2u32.saturating_pow(repeats.min(16)))
            .unwrap_or(CAP)
            .min(CAP)
    }

    /// Whether a change to this object may be written now.
    pub fn decide(&mut self, change: &Change, now: Instant) -> Decision {
        match self.entries.get_mut(&key(change)) {
            Some(e) if now.duration_since(e.written) < WINDOW => {
                let delay = Self::delay(e.repeats);
                let until = e.written + delay;
                if now < until {
                    let first = !std::mem::replace(&mut e.reported, true);
                    Decision::Wait {
                        until,
                        delay,
                        first,
                    }
                } else {
                    Decision::Write
                }
            }
            _ => Decision::Write,
        }
    }

    /// A change to this object was written at `now`; returns true when it
    /// was a repeat (another writer undid the previous one).
    pub fn written(&mut self, change: &Change, now: Instant) -> bool {
        let k = key(change);
        match self.entries.get_mut(&k) {
            Some(e) if now.duration_since(e.written) < WINDOW => {
                e.repeats = e.repeats.saturating_add(1);
                e.written = now;
                e.reported = false;
                true
            }
            _ => {
                self.entries.insert(
                    k,
                    Entry {
                        written: now,
                        repeats: 0,
                        reported: false,
                    },
                );
                false
            }
        }
    }

    /// Forgets objects written longer than the window ago.
    pub fn expire(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| now.duration_since(e.written) < WINDOW);
    }

    /// Everything starts over (a new workspace).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pullwarden_core::plan::{Action, Detail};

    fn change() -> Change {
        Change {
            namespace: "team-a".into(),
            kind: ObjectKind::ServiceAccount,
            name: "default".into(),
            action: Action::Link,
            source: None,
            assumed: None,
            detail: Detail::ServiceAccount,
        }
    }

    #[test]
    fn repeats_wait_longer_each_time_up_to_the_cap() {
        let mut b = Backoff::default();
        let c = change();
        let t0 = Instant::now();
        assert!(matches!(b.decide(&c, t0), Decision::Write));
        assert!(!b.written(&c, t0));
        // Undone at once: wait 2 s after the write.
        match b.decide(&c, t0 + Duration::from_millis(100)) {
            Decision::Wait {
                until,
                delay,
                first,
            } => {
                assert_eq!(delay, Duration::from_secs(2));
                assert_eq!(until, t0 + Duration::from_secs(2));
                assert!(first);
            }
            Decision::Write => panic!("no backoff"),
        }
        // The same wait again: not reported twice.
        assert!(matches!(
            b.decide(&c, t0 + Duration::from_millis(200)),
            Decision::Wait { first: false, .. }
        ));
        let t1 = t0 + Duration::from_secs(2);
        assert!(matches!(b.decide(&c, t1), Decision::Write));
        assert!(b.written(&c, t1));
        match b.decide(&c, t1 + Duration::from_secs(3)) {
            Decision::Wait { delay, first, .. } => {
                assert_eq!(delay, Duration::from_secs(4));
                assert!(first);
            }
            Decision::Write => panic!("no backoff"),
        }
        assert_eq!(Backoff::delay(20), CAP);
        assert_eq!(Backoff::delay(7), Duration::from_secs(256));
        assert_eq!(Backoff::delay(8), CAP);
    }
}

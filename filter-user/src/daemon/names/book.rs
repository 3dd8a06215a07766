//! What each name resolved to, and when: the record the enforcement and the provenance
//! are built from. Pure bookkeeping: the answers come from `resolver`, the clock from
//! the caller, so every timer is testable without a network.
//!
//! An address a name returns is *current*. One it stops returning stays *in grace* for
//! `grace` (clients cache answers), then is released. A failed resolution changes no
//! address (fail closed): it is recorded, and the name is tried again after `min_ttl`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::orders::DomainName;

/// Most addresses of one family kept for one name; an answer with more keeps those
/// already known first, then the lowest, and reports the rest as dropped.
pub const MAX_ADDRESSES_PER_FAMILY: usize = 64;

/// The timers, as `run` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    pub grace: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            grace: Duration::from_secs(3600),
        }
    }
}

/// One address of a name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// The TTL of the answer that last returned it, as the server gave it.
    pub ttl: u32,
    /// When an answer first left it out: it is in grace until this plus the grace period.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub missing_since: Option<OffsetDateTime>,
}

/// A resolution that did not give addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last: OffsetDateTime,
    pub error: String,
    /// Failed attempts in a row.
    pub count: u64,
}

/// Everything known about one name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameState {
    pub addresses: BTreeMap<IpAddr, Seen>,
    /// The last resolution that gave addresses, and its TTL (min over the answer).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    pub ttl: Option<u32>,
    #[serde(with = "time::serde::rfc3339")]
    pub next_at: OffsetDateTime,
    pub failure: Option<Failure>,
    /// Addresses the last answer held beyond [`MAX_ADDRESSES_PER_FAMILY`].
    #[serde(default)]
    pub dropped: usize,
    /// Successful resolutions and failures since the daemon started (not persisted).
    #[serde(skip)]
    pub resolutions: u64,
    #[serde(skip)]
    pub failures: u64,
}

impl NameState {
    fn new(now: OffsetDateTime) -> Self {
        Self {
            addresses: BTreeMap::new(),
            resolved_at: None,
            ttl: None,
            next_at: now,
            failure: None,
            dropped: 0,
            resolutions: 0,
            failures: 0,
        }
    }

    /// Every address enforced for the name: current and in grace.
    pub fn enforced(&self) -> impl Iterator<Item = &IpAddr> {
        self.addresses.keys()
    }

    /// When the grace of `seen` ends, if it is in grace.
    pub fn grace_ends(seen: &Seen, timers: &Timers) -> Option<OffsetDateTime> {
        seen.missing_since.map(|t| t + timers.grace)
    }
}

/// What one resolution of a name returned: each family's addresses, or why not.
#[derive(Clone, Debug)]
pub struct Answer {
    pub v4: Result<Vec<IpAddr>, String>,
    pub v6: Result<Vec<IpAddr>, String>,
    /// The smallest TTL in the answers (seconds).
    pub ttl: Option<u32>,
}

/// What an answer changed in one name's addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameChange {
    pub added: Vec<IpAddr>,
    /// Left out by the answer: now in grace.
    pub missing: Vec<IpAddr>,
    /// Returned again while in grace.
    pub back: Vec<IpAddr>,
    /// Grace over: no longer enforced.
    pub released: Vec<IpAddr>,
}

impl NameChange {
    /// Whether the set of enforced addresses changed.
    pub fn changes_enforcement(&self) -> bool {
        !self.added.is_empty() || !self.released.is_empty()
    }
}

/// Every name of the list in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    pub names: BTreeMap<DomainName, NameState>,
}

impl Book {
    /// Keeps exactly `names`: new ones are due now, ones no order names any more go.
    /// Returns whether anything changed.
    pub fn follow(&mut self, names: &BTreeSet<DomainName>, now: OffsetDateTime) -> bool {
        let before = self.names.len();
        self.names.retain(|n, _| names.contains(n));
        let mut changed = self.names.len() != before;
        for n in names {
            if !self.names.contains_key(n) {
                self.names.insert(n.clone(), NameState::new(now));
                changed = true;
            }
        }
        changed
    }

    /// The names due for resolution at `now`.
    pub fn due(&self, now: OffsetDateTime) -> Vec<DomainName> {
        self.names
            .iter()
            .filter(|(_, s)| s.next_at <= now)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The next moment something is due: a resolution, or the end of a grace.
    pub fn next_event(&self, timers: &Timers) -> Option<OffsetDateTime> {
        self.names
            .values()
            .flat_map(|s| {
                std::iter::once(s.next_at).chain(
                    s.addresses
                        .values()
                        .filter_map(|seen| NameState::grace_ends(seen, timers)),
                )
            })
            .min()
    }

    /// Records an answer for `name` at `now`.
    pub fn record(
        &mut self,
        name: &DomainName,
        answer: Answer,
        now: OffsetDateTime,
        timers: &Timers,
    ) -> NameChange {
        let Some(state) = self.names.get_mut(name) else {
            return NameChange::default();
        };
        let mut change = NameChange::default();
        let errors: Vec<&String> = [&answer.v4, &answer.v6]
            .into_iter()
            .filter_map(|r| r.as_ref().err())
            .collect();
        let empty =
            matches!((&answer.v4, &answer.v6), (Ok(a), Ok(b)) if a.is_empty() && b.is_empty());
        if errors.len() == 2 || empty {
            // Nothing to go by: every address stays as it is (fail closed).
            let error = if empty {
                "the name has no A or AAAA records (NODATA)".to_string()
            } else if errors[0] == errors[1] {
                errors[0].clone()
            } else {
                format!("A: {}; AAAA: {}", errors[0], errors[1])
            };
            fail(state, error, now, timers);
            return change;
        }
        let ttl = answer.ttl.unwrap_or(0);
        let mut dropped = 0;
        for (result, v4) in [(&answer.v4, true), (&answer.v6, false)] {
            // A family that failed keeps its addresses; the other is taken as answered.
            let Ok(addrs) = result else { continue };
            let known: BTreeSet<IpAddr> = state
                .addresses
                .keys()
                .filter(|a| a.is_ipv4() == v4)
                .copied()
                .collect();
            let mut returned: Vec<IpAddr> = addrs
                .iter()
                .filter(|a| a.is_ipv4() == v4)
                .copied()
                .collect();
            returned.sort_unstable();
            returned.dedup();
            if returned.len() > MAX_ADDRESSES_PER_FAMILY {
                // Known ones first, so that a rotating answer does not churn.
                returned.sort_by_key(|a| (!known.contains(a), *a));
                dropped += returned.len() - MAX_ADDRESSES_PER_FAMILY;
                returned.truncate(MAX_ADDRESSES_PER_FAMILY);
            }
            let returned: BTreeSet<IpAddr> = returned.into_iter().collect();
            for addr in &returned {
                match state.addresses.get_mut(addr) {
                    Some(seen) => {
                        seen.last_seen = now;
                        seen.ttl = ttl;
                        if seen.missing_since.take().is_some() {
                            change.back.push(*addr);
                        }
                    }
                    None => {
                        state.addresses.insert(
                            *addr,
                            Seen {
                                first_seen: now,
                                last_seen: now,
                                ttl,
                                missing_since: None,
                            },
                        );
                        change.added.push(*addr);
                    }
                }
            }
            for addr in known.difference(&returned) {
                let seen = state.addresses.get_mut(addr).expect("known");
                if seen.missing_since.is_none() {
                    seen.missing_since = Some(now);
                    change.missing.push(*addr);
                }
            }
        }
        state.dropped = dropped;
        state.resolutions += 1;
        state.resolved_at = Some(now);
        state.ttl = Some(ttl);
        if errors.is_empty() {
            state.failure = None;
            let secs = Duration::from_secs(u64::from(ttl)).clamp(timers.min_ttl, timers.max_ttl);
            state.next_at = now + secs;
        } else {
            fail(state, errors[0].clone(), now, timers);
        }
        change.released = release(state, now, timers);
        change
    }

    /// Releases every address whose grace is over at `now`; returns them by name.
    pub fn expire(
        &mut self,
        now: OffsetDateTime,
        timers: &Timers,
    ) -> Vec<(DomainName, Vec<IpAddr>)> {
        self.names
            .iter_mut()
            .filter_map(|(n, s)| {
                let gone = release(s, now, timers);
                (!gone.is_empty()).then(|| (n.clone(), gone))
            })
            .collect()
    }
}

fn fail(state: &mut NameState, error: String, now: OffsetDateTime, timers: &Timers) {
    state.failures += 1;
    state.next_at = now + timers.min_ttl;
    match &mut state.failure {
        Some(f) => {
            f.last = now;
            f.count += 1;
            f.error = error;
        }
        None => {
            state.failure = Some(Failure {
                since: now,
                last: now,
                error,
                count: 1,
            })
        }
    }
}

fn release(state: &mut NameState, now: OffsetDateTime, timers: &Timers) -> Vec<IpAddr> {
    let gone: Vec<IpAddr> = state
        .addresses
        .iter()
        .filter(|(_, seen)| NameState::grace_ends(seen, timers).is_some_and(|end| end <= now))
        .map(|(a, _)| *a)
        .collect();
    for a in &gone {
        state.addresses.remove(a);
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ok(v4: &[&str], v6: &[&str], ttl: u32) -> Answer {
        Answer {
            v4: Ok(v4.iter().map(|a| ip(a)).collect()),
            v6: Ok(v6.iter().map(|a| ip(a)).collect()),
            ttl: Some(ttl),
        }
    }

    fn timers() -> Timers {
        Timers {
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            grace: Duration::from_secs(600),
        }
    }

    fn book(name: &DomainName, now: OffsetDateTime) -> Book {
        let mut b = Book::default();
        b.follow(&[name.clone()].into(), now);
        b
    }

    #[test]
    fn ttl_is_clamped_and_new_addresses_are_added_at_once() {
        let n: DomainName = "allofmp3.example".parse().unwrap();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut b = book(&n, t0);
        assert_eq!(b.due(t0), vec![n.clone()]);
        let c = b.record(
            &n,
            ok(&["198.51.100.10"], &["2001:db8::1"], 5),
            t0,
            &timers(),
        );
        assert_eq!(c.added, vec![ip("198.51.100.10"), ip("2001:db8::1")]);
        // TTL 5 s is raised to the minimum, 60 s.
        assert_eq!(b.names[&n].next_at, t0 + Duration::from_secs(60));
        assert!(b.due(t0 + Duration::from_secs(59)).is_empty());
        let t1 = t0 + Duration::from_secs(60);
        b.record(&n, ok(&["198.51.100.10"], &[], 86_400), t1, &timers());
        // A day's TTL is cut to the maximum, an hour.
        assert_eq!(b.names[&n].next_at, t1 + Duration::from_secs(3600));
    }

    #[test]
    fn a_missing_address_stays_in_grace_then_is_released() {
        let n: DomainName = "allofmp3.example".parse().unwrap();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut b = book(&n, t0);
        b.record(&n, ok(&["198.51.100.10"], &[], 60), t0, &timers());
        let t1 = t0 + Duration::from_secs(60);
        let c = b.record(&n, ok(&["198.51.100.20"], &[], 60), t1, &timers());
        assert_eq!(c.added, vec![ip("198.51.100.20")]);
        assert_eq!(c.missing, vec![ip("198.51.100.10")]);
        assert!(c.released.is_empty());
        assert_eq!(
            b.names[&n].addresses.len(),
            2,
            "the old address is in grace"
        );
        assert_eq!(b.next_event(&timers()), Some(t1 + Duration::from_secs(60)));
        // Back while in grace: current again, nothing released.
        let t2 = t1 + Duration::from_secs(60);
        let c = b.record(
            &n,
            ok(&["198.51.100.10", "198.51.100.20"], &[], 60),
            t2,
            &timers(),
        );
        assert_eq!(c.back, vec![ip("198.51.100.10")]);
        let t3 = t2 + Duration::from_secs(60);
        b.record(&n, ok(&["198.51.100.20"], &[], 60), t3, &timers());
        assert!(b
            .expire(t3 + Duration::from_secs(599), &timers())
            .is_empty());
        let gone = b.expire(t3 + Duration::from_secs(600), &timers());
        assert_eq!(gone, vec![(n.clone(), vec![ip("198.51.100.10")])]);
        assert_eq!(
            b.names[&n].addresses.keys().copied().collect::<Vec<_>>(),
            vec![ip("198.51.100.20")]
        );
    }

    #[test]
    fn failures_keep_every_address() {
        let n: DomainName = "allofmp3.example".parse().unwrap();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut b = book(&n, t0);
        b.record(
            &n,
            ok(&["198.51.100.10"], &["2001:db8::1"], 60),
            t0,
            &timers(),
        );
        for (i, answer) in [
            Answer {
                v4: Err("timed out".into()),
                v6: Err("timed out".into()),
                ttl: None,
            },
            Answer {
                v4: Err("NXDOMAIN".into()),
                v6: Err("NXDOMAIN".into()),
                ttl: None,
            },
            ok(&[], &[], 60),
        ]
        .into_iter()
        .enumerate()
        {
            let t = t0 + Duration::from_secs(3600 * (i as u64 + 1));
            let c = b.record(&n, answer, t, &timers());
            assert_eq!(c, NameChange::default(), "attempt {i}");
            assert_eq!(b.names[&n].addresses.len(), 2, "attempt {i}");
            assert!(b.names[&n]
                .addresses
                .values()
                .all(|s| s.missing_since.is_none()));
            assert_eq!(b.names[&n].failure.as_ref().unwrap().count, i as u64 + 1);
            assert_eq!(
                b.names[&n].next_at,
                t + Duration::from_secs(60),
                "retried after min_ttl"
            );
        }
        assert!(b
            .expire(t0 + Duration::from_secs(86_400), &timers())
            .is_empty());
        // One family failing keeps that family's addresses and takes the other's answer.
        let t = t0 + Duration::from_secs(5 * 3600);
        let c = b.record(
            &n,
            Answer {
                v4: Ok(vec![ip("198.51.100.20")]),
                v6: Err("SERVFAIL".into()),
                ttl: Some(60),
            },
            t,
            &timers(),
        );
        assert_eq!(c.added, vec![ip("198.51.100.20")]);
        assert_eq!(c.missing, vec![ip("198.51.100.10")]);
        assert!(b.names[&n].addresses.contains_key(&ip("2001:db8::1")));
        assert!(b.names[&n].failure.is_some());
    }

    #[test]
    fn a_huge_answer_is_bounded_and_keeps_known_addresses() {
        let n: DomainName = "many.example".parse().unwrap();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut b = book(&n, t0);
        let all: Vec<String> = (0..300u32)
            .map(|i| std::net::Ipv4Addr::from(0xc633_6400 + i).to_string())
            .collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        b.record(&n, ok(&refs[200..], &[], 60), t0, &timers());
        assert_eq!(b.names[&n].addresses.len(), 64);
        let c = b.record(
            &n,
            ok(&refs, &[], 60),
            t0 + Duration::from_secs(60),
            &timers(),
        );
        assert!(c.added.is_empty(), "the 64 known stay, no churn");
        assert_eq!(b.names[&n].dropped, 236);
    }

    #[test]
    fn names_follow_the_list_and_the_book_round_trips() {
        let a: DomainName = "a.example".parse().unwrap();
        let z: DomainName = "z.example".parse().unwrap();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut b = book(&a, t0);
        b.record(&a, ok(&["198.51.100.10"], &[], 60), t0, &timers());
        assert!(b.follow(&[a.clone(), z.clone()].into(), t0));
        assert!(!b.follow(&[a.clone(), z.clone()].into(), t0));
        let text = serde_json::to_string(&b).unwrap();
        let back: Book = serde_json::from_str(&text).unwrap();
        assert_eq!(back.names[&a].addresses, b.names[&a].addresses);
        assert!(b.follow(&[z.clone()].into(), t0));
        assert_eq!(b.names.keys().collect::<Vec<_>>(), vec![&z]);
    }
}

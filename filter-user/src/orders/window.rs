//! When an order is in force. `valid_from` and `expires` are dates (the order is
//! enforced from the start of `valid_from` to the end of `expires`, UTC) or, for orders
//! that take effect at a set time, RFC 3339 timestamps (from and until that instant).

use std::fmt;

use serde::Serialize;
use time::{format_description::well_known::Rfc3339, Date, Month, OffsetDateTime, Time};

/// A date or an exact moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instant {
    Day(Date),
    Moment(OffsetDateTime),
}

/// Where an order stands at a given moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderState {
    /// `valid_from` is still ahead.
    Pending,
    Active,
    /// `expires` has passed.
    Expired,
}

impl OrderState {
    pub const ALL: [OrderState; 3] = [OrderState::Active, OrderState::Pending, OrderState::Expired];

    pub const fn name(self) -> &'static str {
        match self {
            OrderState::Pending => "pending",
            OrderState::Active => "active",
            OrderState::Expired => "expired",
        }
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `YYYY-MM-DD` strictly (four-digit year, two-digit month and day).
pub fn parse_date(text: &str) -> Result<Date, String> {
    let b = text.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return Err("not a date in the form YYYY-MM-DD".into());
    }
    let num = |r: std::ops::Range<usize>| text[r].parse::<u16>().expect("digits checked above");
    let month = Month::try_from(num(5..7) as u8).map_err(|_| "month out of range".to_string())?;
    Date::from_calendar_date(i32::from(num(0..4)), month, num(8..10) as u8)
        .map_err(|_| "no such day in that month".to_string())
}

impl Instant {
    /// A date (`2027-10-25`) or an RFC 3339 timestamp (`2027-10-25T12:00:00Z`).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() == 10 {
            return parse_date(text).map(Instant::Day);
        }
        OffsetDateTime::parse(text, &Rfc3339)
            .map(Instant::Moment)
            .map_err(|_| {
                "not a date (YYYY-MM-DD) or an RFC 3339 timestamp (YYYY-MM-DDTHH:MM:SSZ)".into()
            })
    }

    /// The first moment covered when used as `valid_from`.
    pub fn start(&self) -> OffsetDateTime {
        match self {
            Instant::Day(d) => d.with_time(Time::MIDNIGHT).assume_utc(),
            Instant::Moment(m) => *m,
        }
    }

    /// The first moment *not* covered when used as `expires`.
    pub fn end(&self) -> OffsetDateTime {
        match self {
            Instant::Day(d) => d.with_time(Time::MIDNIGHT).assume_utc() + time::Duration::DAY,
            Instant::Moment(m) => *m,
        }
    }
}

pub fn state(
    valid_from: Option<&Instant>,
    expires: Option<&Instant>,
    now: OffsetDateTime,
) -> OrderState {
    if valid_from.is_some_and(|v| now < v.start()) {
        OrderState::Pending
    } else if expires.is_some_and(|e| now >= e.end()) {
        OrderState::Expired
    } else {
        OrderState::Active
    }
}

/// The next moment after `now` at which any order changes state.
pub fn next_change(list: &super::OrderList, now: OffsetDateTime) -> Option<OffsetDateTime> {
    list.orders
        .iter()
        .flat_map(|o| {
            let start = o.valid_from.as_ref().map(|v| v.value.start());
            let end = o.expires.as_ref().map(|e| e.value.end());
            [start, end]
        })
        .flatten()
        .filter(|t| *t > now)
        .min()
}

/// An RFC 3339 rendering for logs and JSON output.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn dates_cover_whole_utc_days() {
        let from = Instant::parse("2026-11-28").unwrap();
        let until = Instant::parse("2026-11-30").unwrap();
        let at = |t| state(Some(&from), Some(&until), t);
        assert_eq!(at(datetime!(2026-11-27 23:59:59 UTC)), OrderState::Pending);
        assert_eq!(at(datetime!(2026-11-28 00:00:00 UTC)), OrderState::Active);
        assert_eq!(at(datetime!(2026-11-30 23:59:59 UTC)), OrderState::Active);
        assert_eq!(at(datetime!(2026-12-01 00:00:00 UTC)), OrderState::Expired);
        // Another time zone's evening is already the next UTC day.
        assert_eq!(
            at(datetime!(2026-11-30 23:30:00 -01:00)),
            OrderState::Expired
        );
    }

    #[test]
    fn timestamps_are_exact() {
        let until = Instant::parse("2026-11-28T12:00:00Z").unwrap();
        assert_eq!(
            state(None, Some(&until), datetime!(2026-11-28 11:59:59 UTC)),
            OrderState::Active
        );
        assert_eq!(
            state(None, Some(&until), datetime!(2026-11-28 12:00:00 UTC)),
            OrderState::Expired
        );
    }

    #[test]
    fn strict_date_syntax() {
        for bad in [
            "2026-1-28",
            "26-11-28",
            "2026/11/28",
            "2026-13-01",
            "2026-02-30",
            "2026-11-28 ",
            "+2026-11-2",
        ] {
            assert!(Instant::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_date("2024-02-29").is_ok());
        assert!(parse_date("2025-02-29").is_err());
    }
}

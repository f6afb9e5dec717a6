//! Local visit times -> instants with the offset of the visit's time zone.
//!
//! The vendor sends wall-clock times (`"2020-03-17 13:56:49"`) plus an IANA
//! zone name. jiff resolves them against its bundled tz database, so results
//! do not depend on the host's `/usr/share/zoneinfo` (containers often have
//! none). Gaps and folds resolve like Temporal's `compatible`
//! disambiguation: in a gap the later offset, in a fold the earlier one.

use jiff::{Timestamp, civil, tz::TimeZone};

/// A visit time as wall clock and, when the zone is known, as an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitTime {
    /// Wall-clock time in the visit's zone.
    pub local: civil::DateTime,
    /// The instant, when the zone is known.
    pub instant: Option<Timestamp>,
    /// RFC 3339 with the zone's offset at that instant.
    pub rfc3339: Option<String>,
}

/// Looks a zone up in the bundled tz database.
pub fn zone(name: &str) -> Option<TimeZone> {
    TimeZone::get(name.trim()).ok()
}

/// Reads a visit time. Wall-clock strings are placed in `tz`; strings that
/// already carry an offset are taken as instants and shown in `tz`.
///
/// # Errors
/// A message naming the expected format when the string is not a date-time.
pub fn visit_time(raw: &str, tz: Option<&TimeZone>) -> Result<VisitTime, String> {
    let raw = raw.trim();
    if let Ok(instant) = raw.parse::<Timestamp>() {
        let tz = tz.cloned().unwrap_or(TimeZone::UTC);
        let zoned = instant.to_zoned_datetime(tz);
        return Ok(VisitTime {
            local: zoned.datetime(),
            instant: Some(instant),
            rfc3339: Some(format_with_offset(&zoned)),
        });
    }
    let local: civil::DateTime = raw
        .parse()
        .map_err(|_| format!("expected \"YYYY-MM-DD HH:MM:SS\", got {raw:?}"))?;
    let Some(tz) = tz else {
        return Ok(VisitTime {
            local,
            instant: None,
            rfc3339: None,
        });
    };
    let zoned = tz
        .to_ambiguous_zoned_datetime(local)
        .compatible()
        .map_err(|e| format!("cannot place {raw:?} in the time zone: {e}"))?;
    Ok(VisitTime {
        local,
        instant: Some(zoned.timestamp()),
        rfc3339: Some(format_with_offset(&zoned)),
    })
}

fn format_with_offset(zoned: &jiff::ZonedDateTime) -> String {
    zoned
        .timestamp()
        .display_with_offset(zoned.offset())
        .to_string()
}

/// Formats a wall-clock time as `YYYY-MM-DDTHH:MM:SS[.fff]`.
pub fn format_local(dt: civil::DateTime) -> String {
    dt.to_string()
}

/// Seconds from `start` to `end`: between instants when both are known,
/// otherwise between the wall-clock times.
pub fn duration_seconds(start: &VisitTime, end: &VisitTime) -> i64 {
    match (start.instant, end.instant) {
        (Some(a), Some(b)) => b.as_second() - a.as_second(),
        _ => {
            let utc = |dt: civil::DateTime| {
                dt.to_zoned_datetime(TimeZone::UTC)
                    .map(|z| z.timestamp().as_second())
                    .unwrap_or_default()
            };
            utc(end.local) - utc(start.local)
        }
    }
}

/// A checklist date as `YYYY-MM-DD`, from `YYYY-MM-DD` (optionally followed
/// by a time), `YYYY/MM/DD` or the day-first `DD/MM/YYYY` used in Mexico.
pub fn checklist_date(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let head = raw.split([' ', 'T']).next().unwrap_or(raw);
    let parts: Vec<&str> = head.split(['-', '/']).collect();
    let [a, b, c] = parts.as_slice() else {
        return None;
    };
    let num = |s: &str| s.parse::<i16>().ok();
    let (year, month, day) = if a.len() == 4 {
        (num(a)?, num(b)?, num(c)?)
    } else if c.len() == 4 {
        (num(c)?, num(b)?, num(a)?)
    } else {
        return None;
    };
    let date = civil::Date::new(year, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()?;
    Some(date.to_string())
}

/// A checklist time as `HH:MM:SS`, from `H:MM`, `HH:MM:SS` (fractions
/// dropped) or a 12-hour clock with `AM`/`PM`.
pub fn checklist_time(raw: &str) -> Option<String> {
    let lower = raw.trim().to_ascii_lowercase();
    let (clock, meridiem) = if let Some(c) = lower.strip_suffix("am") {
        (c.trim_end().trim_end_matches('.'), Some(false))
    } else if let Some(c) = lower.strip_suffix("pm") {
        (c.trim_end().trim_end_matches('.'), Some(true))
    } else {
        (lower.as_str(), None)
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let (h, m, s) = match parts.as_slice() {
        [h, m] => (*h, *m, "0"),
        [h, m, s] => (*h, *m, s.split('.').next().unwrap_or(s)),
        _ => return None,
    };
    let two_digits =
        |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !(two_digits(h) && m.len() == 2 && two_digits(m) && two_digits(s)) {
        return None;
    }
    let (mut hour, minute, second): (u8, u8, u8) =
        (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    if let Some(pm) = meridiem {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
    }
    (hour < 24 && minute < 60 && second < 60).then(|| format!("{hour:02}:{minute:02}:{second:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str, zone_name: &str) -> String {
        let tz = zone(zone_name).expect("zone in bundled tzdb");
        visit_time(raw, Some(&tz)).unwrap().rfc3339.unwrap()
    }

    #[test]
    fn los_angeles_uses_daylight_time_in_summer_and_standard_time_in_winter() {
        assert_eq!(
            at("2020-03-17 13:56:49", "America/Los_Angeles"),
            "2020-03-17T13:56:49-07:00"
        );
        assert_eq!(
            at("2020-01-17 13:56:49", "America/Los_Angeles"),
            "2020-01-17T13:56:49-08:00"
        );
        assert_eq!(
            at("2020-07-04 08:00:00", "America/Los_Angeles"),
            "2020-07-04T08:00:00-07:00"
        );
    }

    #[test]
    fn mexico_city_dropped_daylight_time_in_2022() {
        // Summer 2021 still observed DST (-05:00); summer 2023 no longer does.
        assert_eq!(
            at("2021-07-01 12:00:00", "America/Mexico_City"),
            "2021-07-01T12:00:00-05:00"
        );
        assert_eq!(
            at("2023-07-01 12:00:00", "America/Mexico_City"),
            "2023-07-01T12:00:00-06:00"
        );
        assert_eq!(
            at("2021-12-01 12:00:00", "America/Mexico_City"),
            "2021-12-01T12:00:00-06:00"
        );
    }

    #[test]
    fn gaps_resolve_to_the_later_offset_and_folds_to_the_earlier() {
        // 02:30 does not exist on 2020-03-08 in Los Angeles: compatible moves forward.
        assert_eq!(
            at("2020-03-08 02:30:00", "America/Los_Angeles"),
            "2020-03-08T03:30:00-07:00"
        );
        // 01:30 happens twice on 2020-11-01: compatible takes the first (PDT).
        assert_eq!(
            at("2020-11-01 01:30:00", "America/Los_Angeles"),
            "2020-11-01T01:30:00-07:00"
        );
    }

    #[test]
    fn times_with_an_offset_are_shown_in_the_visit_zone() {
        assert_eq!(
            at("2020-03-17T20:56:49Z", "America/Los_Angeles"),
            "2020-03-17T13:56:49-07:00"
        );
    }

    #[test]
    fn unknown_zone_keeps_local_time_only() {
        assert!(zone("Mars/Olympus_Mons").is_none());
        let t = visit_time("2020-03-17 13:56:49", None).unwrap();
        assert_eq!(format_local(t.local), "2020-03-17T13:56:49");
        assert!(t.rfc3339.is_none());
    }

    #[test]
    fn durations_use_instants_across_a_dst_change() {
        let tz = zone("America/Los_Angeles").unwrap();
        let a = visit_time("2020-03-08 01:30:00", Some(&tz)).unwrap();
        let b = visit_time("2020-03-08 03:30:00", Some(&tz)).unwrap();
        assert_eq!(duration_seconds(&a, &b), 3600);
        let a = visit_time("2020-03-08 01:30:00", None).unwrap();
        let b = visit_time("2020-03-08 03:30:00", None).unwrap();
        assert_eq!(duration_seconds(&a, &b), 7200);
    }

    #[test]
    fn checklist_dates_and_times_are_normalized() {
        assert_eq!(checklist_date("2020-03-17").as_deref(), Some("2020-03-17"));
        assert_eq!(
            checklist_date("2020-03-17 10:00:00").as_deref(),
            Some("2020-03-17")
        );
        assert_eq!(checklist_date("17/03/2020").as_deref(), Some("2020-03-17"));
        assert_eq!(checklist_date("2020/3/7").as_deref(), Some("2020-03-07"));
        assert_eq!(checklist_date("2020-02-30"), None);
        assert_eq!(checklist_date("tomorrow"), None);
        assert_eq!(checklist_time("9:05").as_deref(), Some("09:05:00"));
        assert_eq!(checklist_time("13:56:49").as_deref(), Some("13:56:49"));
        assert_eq!(checklist_time("13:56:49.123").as_deref(), Some("13:56:49"));
        assert_eq!(checklist_time("1:30 PM").as_deref(), Some("13:30:00"));
        assert_eq!(checklist_time("12:10am").as_deref(), Some("00:10:00"));
        assert_eq!(checklist_time("25:00"), None);
        assert_eq!(checklist_time("noon"), None);
    }
}

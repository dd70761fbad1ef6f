//! The two date forms IP2 uses, written out with integer calendar arithmetic (no date crate):
//! the `X-Date` form of the ApiAuth scheme (`Thursday, 18 June 2015 07:30:19 GMT`, .NET
//! `dddd, dd MMMM yyyy HH:mm:ss` in UTC) and ISO-8601 UTC (`2015-06-18T07:30:19Z`), which the
//! gateway assumes for the transaction list's `ealierdate`/`laterdate` and `CreatedOn` (the
//! spec only says "string").

const WEEKDAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month 1-12, day 1-31) to days since 1970-01-01 (`days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Splits unix seconds into calendar parts.
fn parts(unix_secs: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, secs / 3_600, secs % 3_600 / 60, secs % 60, days)
}

/// The ApiAuth date: `Thursday, 18 June 2015 07:30:19 GMT`.
pub fn api_auth_date(unix_secs: i64) -> String {
    let (y, m, d, hh, mm, ss, days) = parts(unix_secs);
    let weekday = WEEKDAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[m as usize - 1];
    format!("{weekday}, {d:02} {month} {y:04} {hh:02}:{mm:02}:{ss:02} GMT")
}

/// Parses an ApiAuth date back to unix seconds (the simulator checks clock skew with it).
pub fn parse_api_auth_date(text: &str) -> Option<i64> {
    let rest = text.strip_suffix(" GMT")?;
    let (weekday, rest) = rest.split_once(", ")?;
    let mut fields = rest.split(' ');
    let day: u32 = fields.next()?.parse().ok()?;
    let month_name = fields.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year: i64 = fields.next()?.parse().ok()?;
    let secs = parse_hms(fields.next()?)?;
    if fields.next().is_some() || !(1..=31).contains(&day) {
        return None;
    }
    let unix = days_from_civil(year, month, day) * 86_400 + secs;
    // The weekday must be the date's own (the form is compared whole).
    (!weekday.is_empty() && api_auth_date(unix) == text).then_some(unix)
}

fn parse_hms(text: &str) -> Option<i64> {
    let mut it = text.split(':');
    let h: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let s: i64 = it.next()?.parse().ok()?;
    (it.next().is_none() && (0..24).contains(&h) && (0..60).contains(&m) && (0..60).contains(&s))
        .then_some(h * 3_600 + m * 60 + s)
}

/// ISO-8601 UTC with seconds: `2015-06-18T07:30:19Z`.
pub fn iso(unix_ms: i64) -> String {
    let (y, m, d, hh, mm, ss, _) = parts(unix_ms.div_euclid(1_000));
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Parses `YYYY-MM-DDTHH:MM:SS` with optional fraction and optional `Z` (IP2 is assumed to
/// answer in UTC) to unix milliseconds.
pub fn parse_iso(text: &str) -> Option<i64> {
    let text = text.trim().trim_end_matches('Z');
    let (date, time) = text.split_once('T')?;
    let mut it = date.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (hms, fraction) = match time.split_once('.') {
        Some((hms, f)) => (hms, f),
        None => (time, ""),
    };
    let millis = if fraction.is_empty() {
        0
    } else if fraction.bytes().all(|b| b.is_ascii_digit()) {
        format!("{fraction:0<3}")[..3].parse::<i64>().ok()?
    } else {
        return None;
    };
    let secs = parse_hms(hms)?;
    Some((days_from_civil(y, m, d) * 86_400 + secs) * 1_000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_auth_date_matches_the_documented_example() {
        // The security page's example: Thursday, 18 June 2015 07:30:19 GMT
        // (`date -u -d @1434612619 '+%A, %d %B %Y %H:%M:%S GMT'`).
        assert_eq!(
            api_auth_date(1_434_612_619),
            "Thursday, 18 June 2015 07:30:19 GMT"
        );
        assert_eq!(api_auth_date(0), "Thursday, 01 January 1970 00:00:00 GMT");
        assert_eq!(
            api_auth_date(1_709_164_800),
            "Thursday, 29 February 2024 00:00:00 GMT"
        );
        assert_eq!(
            parse_api_auth_date("Thursday, 18 June 2015 07:30:19 GMT"),
            Some(1_434_612_619)
        );
        assert_eq!(
            parse_api_auth_date("Friday, 18 June 2015 07:30:19 GMT"),
            None
        );
        assert_eq!(parse_api_auth_date("1434612619"), None);
    }

    #[test]
    fn iso_dates_round_trip() {
        assert_eq!(iso(1_434_612_619_000), "2015-06-18T07:30:19Z");
        assert_eq!(parse_iso("2015-06-18T07:30:19Z"), Some(1_434_612_619_000));
        assert_eq!(parse_iso("2015-06-18T07:30:19.25"), Some(1_434_612_619_250));
        assert_eq!(parse_iso("2015-06-18"), None);
        assert_eq!(parse_iso("2015-13-18T07:30:19Z"), None);
    }
}

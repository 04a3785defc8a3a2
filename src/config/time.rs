//! Durations, points in time and cron expressions: how pcsync reads "when".
//!
//! There is one duration grammar, used by configuration keys and command-line arguments alike
//! (`timeout = "10s"`, `probe --timeout 2s`, `audit list --since 7d`), and one reading of RFC
//! 3339 times, which says which part of a wrong time is wrong (`month 13 is out of range`) rather
//! than what chrono's parser tripped on. Cron expressions are read exactly as the scheduler reads
//! them, and one that can never fire (`0 0 0 31 2 *`) is refused with the reason.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

pub(crate) use crate::schedule::DEFAULT_CRON;

/// What a time argument may look like, shown with every error about one.
const TIME_FORMS: &str =
    "use RFC 3339 (2026-11-24T08:00:00Z, 2026-11-24T09:00:00+01:00) or an age (30m, 2h, 7d)";

/// pcsync's one duration grammar, for configuration keys and command-line arguments alike: a
/// whole number and a unit, `ms`, `s`, `m`, `h`, `d` or `w` (`500ms`, `10s`, `7d`); a bare
/// number is seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (expected e.g. 500ms, 10s, 5m, 1h)"))?;
    let seconds = |factor: u64| Duration::from_secs(n.saturating_mul(factor));
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(seconds(1)),
        "m" => Ok(seconds(60)),
        "h" => Ok(seconds(3600)),
        "d" => Ok(seconds(86_400)),
        "w" => Ok(seconds(7 * 86_400)),
        u => Err(format!(
            "{text:?}: unknown unit {u:?} (expected ms, s, m, h, d or w)"
        )),
    }
}

/// [`parse_duration`], refused outside `range`.
pub(crate) fn parse_duration_within(
    text: &str,
    range: std::ops::RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if !range.contains(&d) {
        return Err(format!(
            "{text:?} is out of range ({:?}..={:?})",
            range.start(),
            range.end()
        ));
    }
    Ok(d)
}

/// A point in time given on the command line (`--since`, `--until`): RFC 3339
/// (`2026-11-24T08:00:00Z`, `…+01:00`) or an age before `now` in the duration grammar (`30m`,
/// `2h`, `7d`). A bare number is refused: `2026` is more likely a year than 2026 seconds.
pub(crate) fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    if looks_like_a_date(t) {
        return Err(format!("{text:?}: {}; {TIME_FORMS}", why_not_rfc3339(t)));
    }
    if !t.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("{text:?} is not a time; {TIME_FORMS}"));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?}: a bare number is neither a date nor an age (an age needs a unit: 30m, 2h, 7d); {TIME_FORMS}"
        ));
    }
    let age = parse_duration(t).map_err(|e| format!("{e}; {TIME_FORMS}"))?;
    let too_large = || format!("{text:?} is too large");
    let age = chrono::Duration::from_std(age).map_err(|_| too_large())?;
    now.checked_sub_signed(age).ok_or_else(too_large)
}

/// An RFC 3339 time in the configuration (`not_before`).
pub(super) fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "{text:?} is not an RFC 3339 time (e.g. 2026-12-05T22:00:00Z): {}",
                why_not_rfc3339(text.trim())
            )
        })
}

/// `YYYY-`: what starts every RFC 3339 time, and no age.
fn looks_like_a_date(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// Why `t`, which chrono refused, is not an RFC 3339 time, naming the part at fault.
fn why_not_rfc3339(t: &str) -> String {
    match rfc3339_fault(t) {
        Ok(()) => "not an RFC 3339 time".to_string(),
        Err(fault) => fault,
    }
}

/// Walks `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` and fails at the first part out of place.
fn rfc3339_fault(t: &str) -> Result<(), String> {
    let at = Positions(t);
    let year = at.number(0, 4, "a four-digit year")?;
    at.separator(4, b"-", "`-` after the year")?;
    let month = at.number(5, 2, "a two-digit month")?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is out of range (1 to 12)"));
    }
    at.separator(7, b"-", "`-` after the month")?;
    let day = at.number(8, 2, "a two-digit day")?;
    let last = days_in_month(year as i32, month);
    if !(1..=last).contains(&day) {
        return Err(format!(
            "day {day} is out of range for {} {year} (1 to {last})",
            month_name(month)
        ));
    }
    if t.len() == 10 {
        return Err(format!("no time of day (e.g. {}T00:00:00Z)", &t[..10]));
    }
    at.separator(10, b"Tt ", "`T` between the date and the time")?;
    for (from, what, max) in [(11, "hour", 23), (14, "minute", 59), (17, "second", 60)] {
        let value = at.number(from, 2, &format!("a two-digit {what}"))?;
        if value > max {
            return Err(format!("{what} {value} is out of range (0 to {max})"));
        }
        if from < 17 {
            at.separator(from + 2, b":", &format!("`:` after the {what}"))?;
        }
    }
    // Everything before byte 19 is ASCII by now, so slicing there is safe.
    zone_fault(&t[19..])
}

/// `[.fraction](Z|±HH:MM)`, what follows the seconds.
fn zone_fault(rest: &str) -> Result<(), String> {
    let zone = match rest.strip_prefix('.') {
        Some(fraction) => fraction.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    if zone.is_empty() {
        return Err("no time zone (add Z for UTC, or an offset such as +01:00)".to_string());
    }
    let offset = Positions(zone.get(1..).unwrap_or_default());
    let valid_offset = zone.starts_with(['+', '-'])
        && offset.0.len() == 5
        && offset.number(0, 2, "").is_ok_and(|h| h <= 23)
        && offset.separator(2, b":", "").is_ok()
        && offset.number(3, 2, "").is_ok_and(|m| m <= 59);
    if zone.eq_ignore_ascii_case("z") || valid_offset {
        Ok(())
    } else {
        Err(format!(
            "time zone {zone:?} is not Z or an offset such as +01:00"
        ))
    }
}

/// Fixed positions in a time being diagnosed; each check names what it expected and where.
struct Positions<'a>(&'a str);

impl Positions<'_> {
    /// The `len` digits at `from`.
    fn number(&self, from: usize, len: usize, what: &str) -> Result<u32, String> {
        self.0
            .get(from..from + len)
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("expected {what} at position {}", from + 1))
    }

    /// One of `allowed` at `at`.
    fn separator(&self, at: usize, allowed: &[u8], what: &str) -> Result<(), String> {
        match self.0.as_bytes().get(at) {
            Some(b) if allowed.contains(b) => Ok(()),
            _ => Err(format!("expected {what} at position {}", at + 1)),
        }
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .and_then(|d| d.pred_opt())
        .map_or(31, |d| d.day())
}

fn month_name(month: u32) -> &'static str {
    u8::try_from(month)
        .ok()
        .and_then(|m| chrono::Month::try_from(m).ok())
        .map_or("?", |m| m.name())
}

/// Cron expressions exactly as the scheduler reads them: seconds first, an optional year,
/// and a day of month and a day of week that must both match when both are given.
fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
}

/// Checks a cron expression the way the scheduler will read it: 6 fields (seconds first) or 7
/// (with a year), in UTC, and able to fire at all.
pub(crate) fn validate_cron(text: &str) -> Result<(), String> {
    let cron = parse_cron(text)?;
    match never_fires(text, &cron) {
        Some(reason) => Err(format!("{text:?} never fires: {reason}")),
        None => Ok(()),
    }
}

/// The scheduler's own reading ([`crate::schedule::Cron::parse`]) decides what is valid and
/// says why not; the croner expression is then read again for the questions only this module
/// asks (can it fire at all, the next few times).
fn parse_cron(text: &str) -> Result<Cron, String> {
    crate::schedule::Cron::parse(text)?;
    cron_parser()
        .parse(text)
        .map_err(|e| format!("{text:?} is not a valid cron expression: {e}"))
}

/// Why `cron` can never fire, or `None` when it fires at some time. The usual mistake, a day
/// the months never have, is recognised from the fields; anything else is left to the
/// scheduler's own search (which gives up at the year 5000). Whether a 7-field expression's
/// years are already past depends on today: `check` shows that, with the next fire times.
fn never_fires(text: &str, cron: &Cron) -> Option<String> {
    if let Some(reason) = days_the_months_lack(text) {
        return Some(reason);
    }
    cron.find_next_occurrence(&DateTime::UNIX_EPOCH, true)
        .is_err()
        .then(|| "no date from 1970 on matches all of its fields".to_string())
}

/// `day 31 never occurs in February`: when no day of month the expression names exists in any
/// month it names.
fn days_the_months_lack(text: &str) -> Option<String> {
    let mut fields: Vec<&str> = text.split_whitespace().collect();
    // `L` (the last day) and `W` (the nearest weekday) depend on the month: not this mistake.
    if fields.get(3)?.contains(['L', 'l', 'W', 'w']) {
        return None;
    }
    // The day-of-week field set to `*`, so croner's day match is the day-of-month field alone.
    *fields.get_mut(5)? = "*";
    let pattern = cron_parser().parse(&fields.join(" ")).ok()?.pattern;
    // January has every day of month; 2028 is a leap year, so February has its 29th.
    let days: Vec<u32> = (1..=31)
        .filter(|d| matches!(pattern.day_match(2028, 1, *d), Ok(true)))
        .collect();
    let months: Vec<u32> = (1..=12)
        .filter(|m| matches!(pattern.month_match(*m), Ok(true)))
        .collect();
    let first = *days.first()?;
    if months.is_empty() || months.iter().any(|m| first <= days_in_month(2028, *m)) {
        return None;
    }
    let day_list: Vec<String> = days.iter().map(ToString::to_string).collect();
    let month_list: Vec<String> = months.iter().map(|m| month_name(*m).to_string()).collect();
    let (noun, verb) = if days.len() == 1 {
        ("day", "occurs")
    } else {
        ("days", "occur")
    };
    Some(format!(
        "{noun} {} never {verb} in {}",
        join(&day_list, "and"),
        join(&month_list, "or")
    ))
}

/// `a`, `a and b`, `a, b and c`.
fn join(items: &[String], last: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., tail] => format!("{} {last} {tail}", init.join(", ")),
    }
}

/// The next `n` times the (valid) cron expression `cron` fires after `now`, or why it never
/// will.
pub(crate) fn next_fire_times(
    cron: &str,
    now: DateTime<Utc>,
    n: usize,
) -> Result<Vec<DateTime<Utc>>, String> {
    let parsed = parse_cron(cron)?;
    let next: Vec<DateTime<Utc>> = parsed.iter_after(now).take(n).collect();
    if next.is_empty() {
        return Err(format!(
            "{cron:?} never fires after {}",
            now.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    Ok(next)
}

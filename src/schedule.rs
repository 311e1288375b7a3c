//! Scheduled capacity (pure: no AWS types, no clock, no I/O).
//!
//! - EventBridge **cron** expressions: parsing, validation with a fix for each problem, and the
//!   next fire times in an IANA time zone ([`Cron`], [`parse_cron`], [`parse_timezone`]).
//! - A policy's `schedules` validated ([`validate`]).
//! - The EventBridge Scheduler schedules kanaria keeps in step with the policies: their
//!   deterministic names ([`scheduler_name`]), the input the scale function receives
//!   ([`ScaleAction`]), what differs between a wanted and an existing schedule
//!   ([`differences`]) and the changes that bring them in step ([`plan`]).
//!
//! ## EventBridge cron
//!
//! Six fields, `minutes hours day-of-month month day-of-week year`, written bare or as
//! `cron(...)`. Exactly one of day-of-month and day-of-week is `?`. Values, `*`, lists (`,`),
//! ranges (`-`) and steps (`/`, not in day-of-week); names `JAN`-`DEC` and `SUN`-`SAT`
//! (day-of-week `1` is Sunday); day-of-month `L` (last day), `LW` (last weekday), `15W` (the
//! weekday nearest the 15th, within the month); day-of-week `L` (Saturday, the last day of the
//! week), `6L` (the last Friday of the month), `6#3` (the third Friday). `rate(...)` and
//! `at(...)` are refused: a capacity schedule happens at a wall-clock time in its time zone.
//!
//! ## Daylight saving time (as EventBridge Scheduler documents it)
//!
//! A local time that does not exist (the hour skipped when clocks spring forward) does not fire
//! that day. A local time that happens twice (clocks fall back) fires once, at its first
//! occurrence. So `30 2 * * ? *` in `America/New_York` skips 8 March 2026, and `30 1 * * ? *`
//! fires at 01:30 EDT on 1 November 2026, not again at 01:30 EST.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::{Policy, Problem, Schedule, ServiceRef};

/// The last year EventBridge cron knows.
pub const MAX_YEAR: i32 = 2199;
const MIN_YEAR: i32 = 1970;

/// Every problem of the schedules, each with its field path and a fix.
pub fn validate(schedules: &[Schedule]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (i, s) in schedules.iter().enumerate() {
        let path = format!("schedules[{i}]");
        let mut bad = |field: &str, message: String, fix: &str| {
            problems.push(Problem { path: format!("{path}.{field}"), message, fix: fix.to_string() })
        };
        if s.name.is_empty() || s.name.len() > 40 || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bad("name", format!("{:?} is not a schedule name", s.name), "use 1-40 letters, digits, `-` or `_`, e.g. `weekday-peak`");
        } else if !names.insert(s.name.clone()) {
            bad("name", format!("{:?} is used twice", s.name), "give every schedule its own name");
        }
        let zone = match parse_timezone(&s.timezone) {
            Ok(tz) => Some(tz),
            Err(e) => {
                bad("timezone", e.message, &e.fix);
                None
            }
        };
        match parse_cron(&s.cron) {
            Err(e) => bad("cron", e.message, &e.fix),
            Ok(cron) => {
                // A pattern that names no real day (30 February, say), or only a local time that
                // never exists, would be accepted by Scheduler and silently never run.
                let epoch = DateTime::<Utc>::from_timestamp(0, 0).expect("the epoch is a time");
                if cron.next_after(zone.unwrap_or(Tz::UTC), epoch).is_none() {
                    bad(
                        "cron",
                        format!("{:?} never fires{}", s.cron, zone.map(|z| format!(" in {z}")).unwrap_or_default()),
                        "check the day-of-month, month and year fields (and local times skipped by daylight saving time)",
                    );
                }
            }
        }
        if let (Some(min), Some(max)) = (s.min_capacity, s.max_capacity) {
            if min > max {
                bad("minCapacity", format!("{min} is above maxCapacity {max}"), "make minCapacity at most maxCapacity");
            }
        }
        if let Some(desired) = s.desired_count {
            if s.min_capacity.is_some_and(|min| desired < min) || s.max_capacity.is_some_and(|max| desired > max) {
                bad(
                    "desiredCount",
                    format!(
                        "{desired} is outside minCapacity..maxCapacity ({}..{})",
                        s.min_capacity.map(|v| v.to_string()).unwrap_or_else(|| "0".into()),
                        s.max_capacity.map(|v| v.to_string()).unwrap_or_else(|| "∞".into())
                    ),
                    "give a desiredCount between minCapacity and maxCapacity, or leave it out",
                );
            }
        }
        if s.min_capacity.is_none() && s.max_capacity.is_none() && s.desired_count.is_none() {
            bad("minCapacity", "the schedule changes nothing".into(), "give minCapacity/maxCapacity (scalable target) or desiredCount");
        }
    }
    problems
}

/// A problem with a cron expression or a time zone, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpressionError {
    pub message: String,
    pub fix: String,
}

impl ExpressionError {
    fn new(message: impl Into<String>, fix: impl Into<String>) -> Self {
        ExpressionError { message: message.into(), fix: fix.into() }
    }
}

impl fmt::Display for ExpressionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (fix: {})", self.message, self.fix)
    }
}

/// An IANA time zone name, exactly as the tz database spells it (`Asia/Tokyo`).
pub fn parse_timezone(name: &str) -> Result<Tz, ExpressionError> {
    if let Ok(tz) = Tz::from_str(name) {
        return Ok(tz);
    }
    let trimmed = name.trim();
    if let Some(tz) = chrono_tz::TZ_VARIANTS.iter().find(|tz| tz.name().eq_ignore_ascii_case(trimmed)) {
        return Err(ExpressionError::new(
            format!("{name:?} is not spelled as in the IANA time zone database"),
            format!("write `{}`", tz.name()),
        ));
    }
    Err(ExpressionError::new(
        format!("{name:?} is not an IANA time zone"),
        "use a tz database name, e.g. `Asia/Tokyo`, `America/New_York`, `Europe/London` or `UTC`",
    ))
}

/// A set of small integers (at most 256 values, stored from the field's minimum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Set([u64; 4]);

impl Set {
    fn insert(&mut self, i: u32) {
        self.0[(i / 64) as usize] |= 1 << (i % 64);
    }
    fn contains(&self, i: u32) -> bool {
        i < 256 && self.0[(i / 64) as usize] & (1 << (i % 64)) != 0
    }
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    values: &'static str,
}

const MINUTES: Field = Field { name: "minutes", min: 0, max: 59, names: &[], values: "0-59" };
const HOURS: Field = Field { name: "hours", min: 0, max: 23, names: &[], values: "0-23" };
const DAY_OF_MONTH: Field = Field { name: "day-of-month", min: 1, max: 31, names: &[], values: "1-31" };
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    values: "1-12 or JAN-DEC",
};
const DAY_OF_WEEK: Field =
    Field { name: "day-of-week", min: 1, max: 7, names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], values: "1-7 or SUN-SAT" };
const YEAR: Field = Field { name: "year", min: MIN_YEAR as u32, max: MAX_YEAR as u32, names: &[], values: "1970-2199" };

impl Field {
    fn value(&self, token: &str) -> Result<u32, String> {
        let v = if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            token.parse::<u32>().map_err(|_| format!("{token:?} is not a {} value ({})", self.name, self.values))?
        } else if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(token)) {
            self.min + i as u32
        } else {
            return Err(format!("{token:?} is not a {} value ({})", self.name, self.values));
        };
        if v < self.min || v > self.max {
            return Err(format!("{v} is outside the {} range {}", self.name, self.values));
        }
        Ok(v)
    }

    /// `*`, values, ranges, steps and lists of them.
    fn list(&self, text: &str, steps: bool) -> Result<Set, String> {
        let mut set = Set::default();
        for item in text.split(',') {
            if item.is_empty() {
                return Err(format!("{text:?} has an empty list item"));
            }
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    if !steps {
                        return Err(format!("`/` is not allowed in the {} field", self.name));
                    }
                    let n: u32 = step.parse().map_err(|_| format!("step {step:?} in {item:?} is not a number"))?;
                    if n == 0 || n > self.max - self.min + 1 {
                        return Err(format!("step {n} in {item:?} is outside 1-{}", self.max - self.min + 1));
                    }
                    (range, Some(n))
                }
                None => (item, None),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(format!("range {range:?} runs backwards"));
                }
                (a, b)
            } else {
                let v = self.value(range)?;
                // `5/15` is `5-max/15`.
                (v, if step.is_some() { self.max } else { v })
            };
            for v in (lo..=hi).step_by(step.unwrap_or(1) as usize) {
                set.insert(v - self.min);
            }
        }
        Ok(set)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayOfMonth {
    /// `?`
    Any,
    Days(Set),
    /// `L`
    Last,
    /// `LW`
    LastWeekday,
    /// `15W`
    NearestWeekday(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayOfWeek {
    /// `?`
    Any,
    /// 1 = Sunday … 7 = Saturday, stored from 1.
    Days(Set),
    /// `6L`: the last such weekday of the month.
    Last(u32),
    /// `6#3`: the third such weekday of the month.
    Nth(u32, u32),
}

/// A parsed, valid EventBridge cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    fields: Vec<String>,
    minutes: Set,
    hours: Set,
    day_of_month: DayOfMonth,
    months: Set,
    day_of_week: DayOfWeek,
    years: Set,
}

const SHAPE: &str = "minutes hours day-of-month month day-of-week year";

/// Parse `cron(m h dom mon dow y)` or its six bare fields.
pub fn parse_cron(text: &str) -> Result<Cron, ExpressionError> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("rate(") || lower.starts_with("at(") {
        return Err(ExpressionError::new(
            format!("{t:?} is not a cron expression: rate(...) and at(...) schedules are not supported for capacity changes"),
            "write when it happens in the schedule's time zone as cron, e.g. `0 8 ? * MON-FRI *` (08:00 on weekdays)",
        ));
    }
    let inner = match lower.strip_prefix("cron(") {
        Some(_) => t[5..].strip_suffix(')').ok_or_else(|| {
            ExpressionError::new(format!("{t:?} has no closing parenthesis"), "write it as `cron(0 8 ? * MON-FRI *)` or as the six fields")
        })?,
        None => t,
    };
    let fields: Vec<&str> = inner.split_whitespace().collect();
    if fields.len() != 6 {
        let fix = if fields.len() == 5 {
            "EventBridge cron has a year field and `?` in day-of-month or day-of-week: `0 8 * * 1-5` is `0 8 ? * MON-FRI *`".to_string()
        } else {
            format!("give six fields, {SHAPE}, e.g. `0 8 ? * MON-FRI *`")
        };
        return Err(ExpressionError::new(format!("{t:?} has {} fields, not 6 ({SHAPE})", fields.len()), fix));
    }
    let field_error = |field: &Field, message: String| {
        ExpressionError::new(
            format!("{t:?}: {} field: {message}", field.name),
            format!(
                "use {} with `,` `-` `*`{} in the {} field",
                field.values,
                if field.name == "day-of-week" { "" } else { " `/`" },
                field.name
            ),
        )
    };
    for (field, text) in [(&MINUTES, fields[0]), (&HOURS, fields[1]), (&MONTH, fields[3]), (&YEAR, fields[5])] {
        // Month names contain letters (JUL), so `L` and `W` are special only in numeric fields.
        let specials = if field.names.is_empty() { "?#LWlw" } else { "?#" };
        if let Some(special) = text.chars().find(|c| specials.contains(*c)) {
            return Err(ExpressionError::new(
                format!("{t:?}: {} field: `{special}` is only allowed in day-of-month or day-of-week", field.name),
                format!("use {} with `,` `-` `*` `/` in the {} field", field.values, field.name),
            ));
        }
    }
    let minutes = MINUTES.list(fields[0], true).map_err(|m| field_error(&MINUTES, m))?;
    let hours = HOURS.list(fields[1], true).map_err(|m| field_error(&HOURS, m))?;
    let months = MONTH.list(fields[3], true).map_err(|m| field_error(&MONTH, m))?;
    let years = YEAR.list(fields[5], true).map_err(|m| field_error(&YEAR, m))?;
    let day_of_month = parse_day_of_month(fields[2]).map_err(|m| {
        ExpressionError::new(
            format!("{t:?}: day-of-month field: {m}"),
            "use 1-31 with `,` `-` `*` `/`, or `?`, `L`, `LW` or e.g. `15W` alone in the day-of-month field",
        )
    })?;
    let day_of_week = parse_day_of_week(fields[4]).map_err(|m| {
        ExpressionError::new(
            format!("{t:?}: day-of-week field: {m}"),
            "use 1-7 or SUN-SAT with `,` `-` `*`, or `?`, `L`, e.g. `6L` or `6#3` alone in the day-of-week field",
        )
    })?;
    match (day_of_month, day_of_week) {
        (DayOfMonth::Any, DayOfWeek::Any) => {
            return Err(ExpressionError::new(
                format!("{t:?}: day-of-month and day-of-week are both `?`"),
                "`?` goes in exactly one of them: `*` in the other for every day, e.g. `0 8 * * ? *`",
            ))
        }
        (DayOfMonth::Any, _) | (_, DayOfWeek::Any) => {}
        _ => {
            return Err(ExpressionError::new(
                format!("{t:?}: day-of-month ({}) and day-of-week ({}) are both given", fields[2], fields[4]),
                "put `?` in the one you do not use: `0 8 ? * MON-FRI *` (weekdays) or `0 8 1 * ? *` (the 1st)",
            ))
        }
    }
    Ok(Cron { fields: fields.iter().map(|f| f.to_string()).collect(), minutes, hours, day_of_month, months, day_of_week, years })
}

fn parse_day_of_month(text: &str) -> Result<DayOfMonth, String> {
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "?" => return Ok(DayOfMonth::Any),
        "L" => return Ok(DayOfMonth::Last),
        "LW" => return Ok(DayOfMonth::LastWeekday),
        _ => {}
    }
    if let Some(day) = upper.strip_suffix('W') {
        if !day.contains(['L', ',', '-', '/', '*']) {
            return DAY_OF_MONTH.value(day).map(DayOfMonth::NearestWeekday);
        }
    }
    if upper.contains('?') || upper.contains('L') || upper.contains('W') {
        return Err(format!("{text:?}: `?`, `L` and `W` stand alone (`?`, `L`, `LW`, `15W`), not in lists or ranges"));
    }
    if upper.contains('#') {
        return Err("`#` belongs in the day-of-week field".into());
    }
    DAY_OF_MONTH.list(text, true).map(DayOfMonth::Days)
}

fn parse_day_of_week(text: &str) -> Result<DayOfWeek, String> {
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "?" => return Ok(DayOfWeek::Any),
        // `L` alone is the last day of the week: Saturday.
        "L" => return Ok(DayOfWeek::Days(DAY_OF_WEEK.list("7", false)?)),
        _ => {}
    }
    if let Some((day, nth)) = upper.split_once('#') {
        if day.contains(',') || nth.contains(',') {
            return Err(format!("{text:?}: an expression with `#` cannot be in a list"));
        }
        let day = DAY_OF_WEEK.value(day)?;
        let n: u32 = nth.parse().map_err(|_| format!("{nth:?} in {text:?} is not a week of the month (1-5)"))?;
        if !(1..=5).contains(&n) {
            return Err(format!("{n} in {text:?} is not a week of the month (1-5)"));
        }
        return Ok(DayOfWeek::Nth(day, n));
    }
    if let Some(day) = upper.strip_suffix('L') {
        if !day.is_empty() && !day.contains([',', '-', '/', '*', '?', 'L']) {
            return DAY_OF_WEEK.value(day).map(DayOfWeek::Last);
        }
    }
    if upper.contains('?') || upper.contains('L') {
        return Err(format!("{text:?}: `?` and `L` stand alone (`?`, `L`, `6L`), not in lists or ranges"));
    }
    DAY_OF_WEEK.list(text, false).map(DayOfWeek::Days)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    NaiveDate::from_ymd_opt(y, m, 1).and_then(|d| d.pred_opt()).map(|d| d.day()).unwrap_or(28)
}

fn is_weekday(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

impl Cron {
    /// The expression as Scheduler is given it: `cron(m h dom mon dow y)`.
    pub fn expression(&self) -> String {
        format!("cron({})", self.fields.join(" "))
    }

    /// The six fields, space-separated.
    pub fn fields(&self) -> String {
        self.fields.join(" ")
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let (year, month, day) = (date.year(), date.month(), date.day());
        let last = days_in_month(year, month);
        let dom = match self.day_of_month {
            DayOfMonth::Any => true,
            DayOfMonth::Days(set) => set.contains(day - 1),
            DayOfMonth::Last => day == last,
            DayOfMonth::LastWeekday => {
                let mut d = NaiveDate::from_ymd_opt(year, month, last).expect("a day of the month");
                while !is_weekday(d) {
                    d = d.pred_opt().expect("a day before");
                }
                d.day() == day
            }
            DayOfMonth::NearestWeekday(n) => {
                // Within the month: the 1st on a Saturday moves to Monday the 3rd, the last day on
                // a Sunday to Friday; a day the month does not have never fires.
                if n > last {
                    false
                } else {
                    let target = NaiveDate::from_ymd_opt(year, month, n).expect("a day of the month");
                    let nearest = match target.weekday() {
                        Weekday::Sat if n == 1 => n + 2,
                        Weekday::Sat => n - 1,
                        Weekday::Sun if n == last => n - 2,
                        Weekday::Sun => n + 1,
                        _ => n,
                    };
                    nearest == day
                }
            }
        };
        let weekday = date.weekday().num_days_from_sunday() + 1;
        let dow = match self.day_of_week {
            DayOfWeek::Any => true,
            DayOfWeek::Days(set) => set.contains(weekday - 1),
            DayOfWeek::Last(w) => weekday == w && day + 7 > last,
            DayOfWeek::Nth(w, n) => weekday == w && (day - 1) / 7 + 1 == n,
        };
        dom && dow
    }

    /// The first time strictly after `after` that this expression fires in `tz`, or None when
    /// it never fires again (up to the year 2199).
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        // One local day back: a time zone that falls back across midnight repeats local dates.
        let start = after.with_timezone(&tz).date_naive().pred_opt()?;
        let first_year = start.year().max(MIN_YEAR);
        for year in first_year..=MAX_YEAR {
            if !self.years.contains((year - MIN_YEAR) as u32) {
                continue;
            }
            for month in 1..=12u32 {
                if !self.months.contains(month - 1) || (year, month) < (start.year(), start.month()) {
                    continue;
                }
                for day in 1..=days_in_month(year, month) {
                    let date = NaiveDate::from_ymd_opt(year, month, day).expect("a day of the month");
                    if date < start || !self.day_matches(date) {
                        continue;
                    }
                    for hour in (0..24).filter(|h| self.hours.contains(*h)) {
                        for minute in (0..60).filter(|m| self.minutes.contains(*m)) {
                            let local = date.and_hms_opt(hour, minute, 0).expect("a time of day");
                            let at = match tz.from_local_datetime(&local) {
                                // Skipped by a spring-forward change: no run that day.
                                LocalResult::None => continue,
                                LocalResult::Single(at) => at,
                                // Repeated by a fall-back change: one run, at the first occurrence.
                                LocalResult::Ambiguous(first, _) => first,
                            };
                            if at.with_timezone(&Utc) > after {
                                return Some(at);
                            }
                        }
                    }
                }
            }
        }
        None
    }

    /// The next `count` fire times after `after`, in `tz`.
    pub fn next_times(&self, tz: Tz, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Tz>> {
        let mut times = Vec::with_capacity(count);
        let mut cursor = after;
        while times.len() < count {
            match self.next_after(tz, cursor) {
                Some(at) => {
                    cursor = at.with_timezone(&Utc);
                    times.push(at);
                }
                None => break,
            }
        }
        times
    }
}

impl Set {
    #[cfg(test)]
    fn values(&self, min: u32) -> Vec<u32> {
        (0..256).filter(|i| self.contains(*i)).map(|i| i + min).collect()
    }
}

/// What the scheduled-scale function does when a schedule fires: the Scheduler schedule's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleAction {
    /// `CLUSTER/SERVICE`
    pub service: String,
    /// The policy's schedule name.
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_capacity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_capacity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<u32>,
}

impl ScaleAction {
    pub fn for_schedule(service: &ServiceRef, s: &Schedule) -> Self {
        ScaleAction {
            service: service.key(),
            schedule: s.name.clone(),
            min_capacity: s.min_capacity,
            max_capacity: s.max_capacity,
            desired_count: s.desired_count,
        }
    }

    /// The service, when `service` is `CLUSTER/SERVICE`.
    pub fn service_ref(&self) -> Option<ServiceRef> {
        match self.service.split('/').collect::<Vec<_>>().as_slice() {
            [cluster, name] if !cluster.is_empty() && !name.is_empty() => {
                Some(ServiceRef { cluster: cluster.to_string(), name: name.to_string() })
            }
            _ => None,
        }
    }

    /// What is wrong with the action (empty when it can be applied).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.service_ref().is_none() {
            problems.push(format!("service {:?} is not CLUSTER/SERVICE", self.service));
        }
        if self.schedule.is_empty() {
            problems.push("the schedule name is empty".into());
        }
        if let (Some(min), Some(max)) = (self.min_capacity, self.max_capacity) {
            if min > max {
                problems.push(format!("minCapacity {min} is above maxCapacity {max}"));
            }
        }
        if self.min_capacity.is_none() && self.max_capacity.is_none() && self.desired_count.is_none() {
            problems.push("it changes nothing (no minCapacity, maxCapacity or desiredCount)".into());
        }
        problems
    }

    /// The JSON Scheduler passes to the function.
    pub fn to_input(&self) -> String {
        serde_json::to_string(self).expect("a scale action serialises")
    }
}

/// Every Scheduler schedule kanaria owns is named with this prefix (and lives in kanaria's group).
pub const NAME_PREFIX: &str = "kanaria.";
/// Scheduler's limit on schedule names.
pub const MAX_NAME_LEN: usize = 64;

/// The Scheduler schedule of a policy schedule: `kanaria.CLUSTER.SERVICE.NAME`. `.` never occurs
/// in ECS cluster or service names nor in schedule names, so the name decodes back
/// ([`decode_name`]) and two services never share one. Longer than 64 characters, it becomes the
/// first 38 characters, `..` and 16 hex digits of a SHA-256 of the full name (and no longer
/// decodes; the schedule's input names the service).
pub fn scheduler_name(service: &ServiceRef, schedule: &str) -> String {
    let full = format!("{NAME_PREFIX}{}.{}.{schedule}", service.cluster, service.name);
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    if full.len() <= MAX_NAME_LEN && full.chars().all(allowed) {
        return full;
    }
    let hash: String = Sha256::digest(full.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    let keep: String = full.chars().map(|c| if allowed(c) { c } else { '-' }).take(MAX_NAME_LEN - 2 - hash.len()).collect();
    format!("{keep}..{hash}")
}

/// `(cluster, service, schedule)` of a name made by [`scheduler_name`] (not of a hashed one).
pub fn decode_name(name: &str) -> Option<(String, String, String)> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let parts: Vec<&str> = rest.split('.').collect();
    let ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    match parts.as_slice() {
        [cluster, service, schedule] if ok(cluster) && ok(service) && ok(schedule) => {
            Some((cluster.to_string(), service.to_string(), schedule.to_string()))
        }
        _ => None,
    }
}

/// Scheduler's retry policy for kanaria's schedules: a scaling action that cannot be delivered
/// is retried twice, for at most 15 minutes, then goes to the dead-letter queue.
pub const RETRY_ATTEMPTS: u32 = 2;
pub const MAX_EVENT_AGE_SECONDS: u32 = 900;

/// Where Scheduler sends a firing schedule: the scale function, invoked with the execution
/// role, failed deliveries to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerTarget {
    pub function_arn: String,
    pub role_arn: String,
    pub dead_letter_arn: String,
}

/// A Scheduler schedule as a policy wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSchedule {
    pub name: String,
    pub service: String,
    pub schedule: String,
    /// `cron(...)`
    pub expression: String,
    pub timezone: String,
    pub action: ScaleAction,
    pub description: String,
}

/// The Scheduler schedules a (valid) policy wants.
pub fn desired(policy: &Policy) -> Vec<DesiredSchedule> {
    policy
        .schedules
        .iter()
        .map(|s| DesiredSchedule {
            name: scheduler_name(&policy.service, &s.name),
            service: policy.service.key(),
            schedule: s.name.clone(),
            expression: parse_cron(&s.cron).map(|c| c.expression()).unwrap_or_else(|_| s.cron.trim().to_string()),
            timezone: s.timezone.clone(),
            action: ScaleAction::for_schedule(&policy.service, s),
            description: format!("kanaria: scheduled capacity of {} (policy schedule {})", policy.service, s.name),
        })
        .collect()
}

/// A Scheduler schedule as it is (what GetSchedule returns).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedSchedule {
    pub name: String,
    pub expression: String,
    pub timezone: Option<String>,
    pub state: String,
    pub flexible_window_off: bool,
    pub target_arn: String,
    pub role_arn: String,
    pub input: Option<String>,
    pub dead_letter_arn: Option<String>,
    /// (maximum retry attempts, maximum event age in seconds)
    pub retry: Option<(u32, u32)>,
    pub description: Option<String>,
}

impl ObservedSchedule {
    /// The `CLUSTER/SERVICE` the schedule scales: from its name, else from its input.
    pub fn service(&self) -> Option<String> {
        if let Some((cluster, service, _)) = decode_name(&self.name) {
            return Some(format!("{cluster}/{service}"));
        }
        self.action().map(|a| a.service)
    }

    pub fn action(&self) -> Option<ScaleAction> {
        self.input.as_deref().and_then(|i| serde_json::from_str(i).ok())
    }
}

/// What differs between the wanted and the existing schedule (empty: in step). The target,
/// role, dead-letter queue and retry policy are compared only when `target` is given.
pub fn differences(desired: &DesiredSchedule, observed: &ObservedSchedule, target: Option<&SchedulerTarget>) -> Vec<&'static str> {
    let mut diff = Vec::new();
    if observed.expression != desired.expression {
        diff.push("expression");
    }
    if observed.timezone.as_deref().unwrap_or("UTC") != desired.timezone {
        diff.push("timezone");
    }
    let input: Option<serde_json::Value> = observed.input.as_deref().and_then(|i| serde_json::from_str(i).ok());
    if input != Some(serde_json::to_value(&desired.action).expect("a scale action serialises")) {
        diff.push("input");
    }
    if !observed.flexible_window_off {
        diff.push("flexibleTimeWindow");
    }
    if observed.state != "ENABLED" {
        diff.push("state");
    }
    if observed.description.as_deref() != Some(desired.description.as_str()) {
        diff.push("description");
    }
    if let Some(t) = target {
        if observed.target_arn != t.function_arn {
            diff.push("target");
        }
        if observed.role_arn != t.role_arn {
            diff.push("role");
        }
        if observed.dead_letter_arn.as_deref() != Some(t.dead_letter_arn.as_str()) {
            diff.push("deadLetterQueue");
        }
        if observed.retry != Some((RETRY_ATTEMPTS, MAX_EVENT_AGE_SECONDS)) {
            diff.push("retryPolicy");
        }
    }
    diff
}

/// One step towards the wanted schedules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create(DesiredSchedule),
    Update {
        desired: DesiredSchedule,
        differences: Vec<&'static str>,
    },
    Unchanged(String),
    /// An owned schedule no policy wants any more.
    Delete(String),
}

/// The changes that make `observed` (kanaria's schedules in scope) what `desired` wants, in
/// name order. Schedules outside the scope are not in `observed` and never touched.
pub fn plan(desired: &[DesiredSchedule], observed: &[ObservedSchedule], target: &SchedulerTarget) -> Vec<Change> {
    let observed: BTreeMap<&str, &ObservedSchedule> = observed.iter().map(|o| (o.name.as_str(), o)).collect();
    let wanted: BTreeMap<&str, &DesiredSchedule> = desired.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut changes = Vec::new();
    for (name, d) in &wanted {
        match observed.get(name) {
            None => changes.push(Change::Create((*d).clone())),
            Some(o) => {
                let differences = differences(d, o, Some(target));
                if differences.is_empty() {
                    changes.push(Change::Unchanged(name.to_string()));
                } else {
                    changes.push(Change::Update { desired: (*d).clone(), differences });
                }
            }
        }
    }
    for name in observed.keys().filter(|n| !wanted.contains_key(*n)) {
        changes.push(Change::Delete(name.to_string()));
    }
    changes
}

#[cfg(test)]
mod tests;

use super::*;
use chrono::{NaiveDateTime, SecondsFormat};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
}

fn tz(name: &str) -> Tz {
    parse_timezone(name).unwrap()
}

/// The next `n` fire times as RFC 3339 with the zone's offset, e.g. `2026-03-09T02:30:00-04:00`.
fn next(cron: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
    parse_cron(cron)
        .unwrap_or_else(|e| panic!("{cron}: {e}"))
        .next_times(tz(zone), utc(after), n)
        .iter()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false))
        .collect()
}

fn schedule(name: &str, cron: &str, timezone: &str) -> Schedule {
    Schedule {
        name: name.into(),
        cron: cron.into(),
        timezone: timezone.into(),
        min_capacity: Some(2),
        max_capacity: Some(10),
        desired_count: None,
    }
}

/// (path, message, fix) of the problems of one schedule.
fn problems_of(s: Schedule) -> Vec<(String, String, String)> {
    validate(&[s]).into_iter().map(|p| (p.path, p.message, p.fix)).collect()
}

/// The one problem of a schedule with this cron; asserts it is at `schedules[0].cron`.
fn cron_problem(cron: &str) -> (String, String) {
    let problems = problems_of(schedule("s", cron, "UTC"));
    assert_eq!(problems.len(), 1, "{cron}: {problems:?}");
    let (path, message, fix) = problems.into_iter().next().unwrap();
    assert_eq!(path, "schedules[0].cron", "{cron}");
    assert!(!fix.is_empty(), "{cron}");
    (message, fix)
}

// ---- parsing and the expression Scheduler is given ----

#[test]
fn accepts_cron_and_bare_fields_and_normalises_whitespace() {
    for text in ["cron(0 8 ? * MON-FRI *)", "0 8 ? * MON-FRI *", "  cron(0  8 ?\t* MON-FRI   *) ", "CRON(0 8 ? * MON-FRI *)"] {
        let c = parse_cron(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(c.expression(), "cron(0 8 ? * MON-FRI *)", "{text}");
        assert_eq!(c.fields(), "0 8 ? * MON-FRI *");
    }
}

#[test]
fn fields_expand_values_ranges_steps_lists_and_names() {
    let c = parse_cron("1/10 0-6/2,23 1,15 JAN-MAR,dec ? 2026-2030/2").unwrap();
    assert_eq!(c.minutes.values(0), vec![1, 11, 21, 31, 41, 51]);
    assert_eq!(c.hours.values(0), vec![0, 2, 4, 6, 23]);
    assert_eq!(c.day_of_month, DayOfMonth::Days(DAY_OF_MONTH.list("1,15", true).unwrap()));
    assert_eq!(c.months.values(1), vec![1, 2, 3, 12]);
    assert_eq!(c.years.values(1970), vec![2026, 2028, 2030]);
    let c = parse_cron("*/15 * ? * SUN,2-3,fri *").unwrap();
    assert_eq!(c.minutes.values(0), vec![0, 15, 30, 45]);
    assert_eq!(c.day_of_week, DayOfWeek::Days(DAY_OF_WEEK.list("1,2,3,6", false).unwrap()));
}

// ---- next fire times ----

#[test]
fn weekday_mornings_in_tokyo() {
    // Friday 20 November 2026, 09:00 in Tokyo: the next three weekday 08:00s are Mon, Tue, Wed.
    assert_eq!(
        next("cron(0 8 ? * MON-FRI *)", "Asia/Tokyo", "2026-11-20T00:00:00Z", 3),
        vec!["2026-11-23T08:00:00+09:00", "2026-11-24T08:00:00+09:00", "2026-11-25T08:00:00+09:00"]
    );
    // Exactly at a fire time: the next one is strictly after it.
    assert_eq!(next("0 8 ? * MON-FRI *", "Asia/Tokyo", "2026-11-22T23:00:00Z", 1), vec!["2026-11-24T08:00:00+09:00"]);
}

#[test]
fn new_york_spring_forward_skips_the_missing_local_time() {
    // 8 March 2026: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist that day.
    assert_eq!(
        next("30 2 * * ? *", "America/New_York", "2026-03-07T00:00:00Z", 3),
        vec!["2026-03-07T02:30:00-05:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]
    );
    // Times either side of the gap keep their wall-clock time; the UTC instant moves an hour.
    assert_eq!(
        next("0 8 ? * MON-FRI *", "America/New_York", "2026-03-05T00:00:00Z", 3),
        vec!["2026-03-05T08:00:00-05:00", "2026-03-06T08:00:00-05:00", "2026-03-09T08:00:00-04:00"]
    );
    let c = parse_cron("0 8 ? * MON-FRI *").unwrap();
    let utc_times: Vec<String> = c
        .next_times(tz("America/New_York"), utc("2026-03-06T00:00:00Z"), 2)
        .iter()
        .map(|t| t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Secs, true))
        .collect();
    assert_eq!(utc_times, vec!["2026-03-06T13:00:00Z", "2026-03-09T12:00:00Z"]);
    // Hourly: 01:00 EST, then 03:00 EDT one real hour later (there is no 02:00).
    assert_eq!(
        next("0 * * * ? *", "America/New_York", "2026-03-08T05:30:00Z", 3),
        vec!["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"]
    );
}

#[test]
fn new_york_fall_back_fires_a_repeated_local_time_once() {
    // 1 November 2026: 02:00 EDT falls back to 01:00 EST, so 01:30 happens twice; it fires at
    // the first (EDT), not again an hour later.
    assert_eq!(
        next("30 1 * * ? *", "America/New_York", "2026-10-31T12:00:00Z", 3),
        vec!["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00"]
    );
    // Hourly: 00:00 and 01:00 EDT, then 02:00 EST (01:00 EST is not a second run).
    assert_eq!(
        next("0 * * * ? *", "America/New_York", "2026-11-01T03:30:00Z", 4),
        vec!["2026-11-01T00:00:00-04:00", "2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"]
    );
    // Asked from inside the repeated hour (01:15 EST, after the EDT runs): the next run is 02:00 EST.
    assert_eq!(
        next("*/30 1-2 * * ? *", "America/New_York", "2026-11-01T06:15:00Z", 2),
        vec!["2026-11-01T02:00:00-05:00", "2026-11-01T02:30:00-05:00"]
    );
}

#[test]
fn london_spring_forward_and_fall_back() {
    // 29 March 2026: 01:00 GMT → 02:00 BST; 25 October 2026: 02:00 BST → 01:00 GMT.
    assert_eq!(
        next("30 1 * * ? *", "Europe/London", "2026-03-28T12:00:00Z", 2),
        vec!["2026-03-30T01:30:00+01:00", "2026-03-31T01:30:00+01:00"]
    );
    assert_eq!(
        next("30 1 * * ? *", "Europe/London", "2026-10-24T12:00:00Z", 2),
        vec!["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"]
    );
}

#[test]
fn last_weekday_nearest_and_nth_days() {
    // L: the last day of each month.
    assert_eq!(
        next("0 0 L * ? *", "UTC", "2026-01-15T00:00:00Z", 3),
        vec!["2026-01-31T00:00:00+00:00", "2026-02-28T00:00:00+00:00", "2026-03-31T00:00:00+00:00"]
    );
    // LW: the last weekday (31 May 2026 is a Sunday → Friday 29th).
    assert_eq!(next("0 0 LW 5 ? 2026", "UTC", "2026-01-01T00:00:00Z", 1), vec!["2026-05-29T00:00:00+00:00"]);
    // 1W: 1 August 2026 is a Saturday → Monday the 3rd (never back into July).
    assert_eq!(next("0 0 1W 8 ? 2026", "UTC", "2026-01-01T00:00:00Z", 1), vec!["2026-08-03T00:00:00+00:00"]);
    // 31W: 31 May 2026 is a Sunday → Friday the 29th; months without a 31st never fire.
    assert_eq!(next("0 0 31W * ? 2026", "UTC", "2026-04-01T00:00:00Z", 2), vec!["2026-05-29T00:00:00+00:00", "2026-07-31T00:00:00+00:00"]);
    // 15W on a weekday is the 15th itself (15 January 2026 is a Thursday).
    assert_eq!(next("0 0 15W 1 ? 2026", "UTC", "2025-12-01T00:00:00Z", 1), vec!["2026-01-15T00:00:00+00:00"]);
    // 6L: the last Friday; 6#3: the third Friday; L in day-of-week: Saturday.
    assert_eq!(next("0 18 ? 1 6L 2026", "UTC", "2026-01-01T00:00:00Z", 1), vec!["2026-01-30T18:00:00+00:00"]);
    assert_eq!(next("0 18 ? 1 FRIL 2026", "UTC", "2026-01-01T00:00:00Z", 1), vec!["2026-01-30T18:00:00+00:00"]);
    assert_eq!(next("0 9 ? 11 6#3 2026", "UTC", "2026-01-01T00:00:00Z", 1), vec!["2026-11-20T09:00:00+00:00"]);
    assert_eq!(next("0 9 ? * L *", "UTC", "2026-11-20T00:00:00Z", 2), vec!["2026-11-21T09:00:00+00:00", "2026-11-28T09:00:00+00:00"]);
}

#[test]
fn years_end_the_schedule() {
    assert_eq!(next("0 0 1 1 ? 2027", "UTC", "2026-06-01T00:00:00Z", 3), vec!["2027-01-01T00:00:00+00:00"]);
    assert!(next("0 0 1 1 ? 2025", "UTC", "2026-06-01T00:00:00Z", 3).is_empty());
    // Leap days: only leap years.
    assert_eq!(next("0 0 29 2 ? *", "UTC", "2026-06-01T00:00:00Z", 2), vec!["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]);
}

#[test]
fn next_time_is_never_before_its_start_even_across_a_midnight_fall_back() {
    // America/Havana falls back from 01:00 CDT to 00:00 CST (1 November 2026): local dates repeat.
    let c = parse_cron("*/20 * * * ? *").unwrap();
    let mut at = utc("2026-11-01T03:50:00Z");
    let mut seen: Vec<NaiveDateTime> = Vec::new();
    for _ in 0..12 {
        let n = c.next_after(tz("America/Havana"), at).unwrap();
        assert!(n.with_timezone(&Utc) > at);
        assert!(!seen.contains(&n.naive_local()), "a local time fired twice: {n}");
        seen.push(n.naive_local());
        at = n.with_timezone(&Utc);
    }
}

// ---- validation: every problem, with its path and a fix ----

#[test]
fn a_good_schedule_has_no_problems() {
    assert_eq!(problems_of(schedule("weekday-peak", "cron(0 8 ? * MON-FRI *)", "Asia/Tokyo")), vec![]);
    assert_eq!(problems_of(schedule("nightly", "0 20 * * ? *", "America/New_York")), vec![]);
}

#[test]
fn rate_and_at_expressions_are_refused() {
    for e in ["rate(1 hour)", "rate(5 minutes)", "at(2026-12-01T08:00:00)"] {
        let (message, fix) = cron_problem(e);
        assert!(message.contains("not supported"), "{message}");
        assert!(fix.contains("0 8 ? * MON-FRI *"), "{fix}");
    }
}

#[test]
fn field_count_and_parentheses() {
    let (message, fix) = cron_problem("0 8 * * 1-5");
    assert!(message.contains("has 5 fields, not 6"), "{message}");
    assert!(fix.contains("`0 8 ? * MON-FRI *`"), "{fix}");
    let (message, _) = cron_problem("0 0 8 ? * MON-FRI *");
    assert!(message.contains("has 7 fields"), "{message}");
    let (message, _) = cron_problem("cron(0 8 ? * MON-FRI *");
    assert!(message.contains("closing parenthesis"), "{message}");
    let (message, _) = cron_problem("");
    assert!(message.contains("has 0 fields"), "{message}");
}

#[test]
fn question_mark_in_exactly_one_day_field() {
    let (message, fix) = cron_problem("0 8 ? * ? *");
    assert!(message.contains("both `?`"), "{message}");
    assert!(fix.contains("exactly one"), "{fix}");
    for e in ["0 8 * * MON-FRI *", "0 8 * * * *", "0 8 1 * 2 *"] {
        let (message, fix) = cron_problem(e);
        assert!(message.contains("are both given"), "{e}: {message}");
        assert!(fix.contains("put `?` in the one you do not use"), "{fix}");
    }
    let (message, _) = cron_problem("? 8 * * ? *");
    assert!(message.contains("minutes field: `?` is only allowed in day-of-month or day-of-week"), "{message}");
    let (message, _) = cron_problem("0 8 1,? * ? *");
    assert!(message.contains("day-of-month field"), "{message}");
}

#[test]
fn values_out_of_range_and_unknown_names() {
    for (e, field, says) in [
        ("60 8 * * ? *", "minutes", "60 is outside the minutes range 0-59"),
        ("0 24 * * ? *", "hours", "24 is outside the hours range 0-23"),
        ("0 8 0 * ? *", "day-of-month", "0 is outside the day-of-month range 1-31"),
        ("0 8 32 * ? *", "day-of-month", "32 is outside"),
        ("0 8 * 13 ? *", "month", "13 is outside the month range 1-12 or JAN-DEC"),
        ("0 8 * FOO ? *", "month", "\"FOO\" is not a month value"),
        ("0 8 ? * 8 *", "day-of-week", "8 is outside the day-of-week range 1-7 or SUN-SAT"),
        ("0 8 ? * MONDAY *", "day-of-week", "\"MONDAY\" is not a day-of-week value"),
        ("0 8 ? * 0 *", "day-of-week", "0 is outside"),
        ("0 8 * * ? 1969", "year", "1969 is outside the year range 1970-2199"),
        ("0 8 * * ? 2200", "year", "2200 is outside"),
        ("x 8 * * ? *", "minutes", "\"x\" is not a minutes value"),
    ] {
        let (message, fix) = cron_problem(e);
        assert!(message.contains(&format!("{field} field")), "{e}: {message}");
        assert!(message.contains(says), "{e}: {message}");
        assert!(fix.contains(field), "{e}: {fix}");
    }
}

#[test]
fn ranges_steps_and_lists() {
    for (e, says) in [
        ("0 17-9 * * ? *", "range \"17-9\" runs backwards"),
        ("0 8 ? * FRI-MON *", "range \"FRI-MON\" runs backwards"),
        ("*/0 8 * * ? *", "step 0"),
        ("*/61 8 * * ? *", "step 61"),
        ("*/x 8 * * ? *", "step \"x\" in \"*/x\" is not a number"),
        ("0 8 ? * MON/2 *", "`/` is not allowed in the day-of-week field"),
        ("0 8,,9 * * ? *", "has an empty list item"),
    ] {
        let (message, _) = cron_problem(e);
        assert!(message.contains(says), "{e}: {message}");
    }
}

#[test]
fn l_w_and_hash_where_they_belong() {
    for (e, says) in [
        ("0 L * * ? *", "hours field: `L` is only allowed"),
        ("0 8 * W ? *", "month field"),
        ("0 8 * * ? #", "year field: `#`"),
        ("0 8 1,L * ? *", "stand alone"),
        ("0 8 L-2 * ? *", "stand alone"),
        ("0 8 1-5W * ? *", "stand alone"),
        ("0 8 3#1 * ? *", "`#` belongs in the day-of-week field"),
        ("0 8 ? * 2#1,6#3 *", "cannot be in a list"),
        ("0 8 ? * 2#6 *", "not a week of the month (1-5)"),
        ("0 8 ? * 2#x *", "not a week of the month"),
        ("0 8 ? * 1,L *", "stand alone"),
        ("0 8 40W * ? *", "40 is outside"),
    ] {
        let (message, _) = cron_problem(e);
        assert!(message.contains(says), "{e}: {message}");
    }
}

#[test]
fn an_expression_that_never_fires_is_a_problem() {
    let (message, fix) = cron_problem("0 0 30 2 ? *");
    assert!(message.contains("never fires"), "{message}");
    assert!(fix.contains("day-of-month"), "{fix}");
    // Only at a local time that daylight saving skips (02:30 on 8 March 2026 in New York).
    let problems = problems_of(schedule("s", "30 2 8 3 ? 2026", "America/New_York"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "schedules[0].cron");
    assert!(problems[0].1.contains("never fires in America/New_York"), "{problems:?}");
    assert!(problems_of(schedule("s", "30 2 8 3 ? 2026", "Europe/Berlin")).is_empty());
}

#[test]
fn time_zones_are_iana_names() {
    for zone in ["Asia/Tokyo", "America/New_York", "Europe/London", "UTC", "Australia/Lord_Howe"] {
        assert!(parse_timezone(zone).is_ok(), "{zone}");
    }
    let problems = problems_of(schedule("s", "0 8 ? * MON-FRI *", "Mars/Olympus_Mons"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "schedules[0].timezone");
    assert!(problems[0].1.contains("is not an IANA time zone"), "{problems:?}");
    assert!(problems[0].2.contains("Asia/Tokyo"), "{problems:?}");
    let problems = problems_of(schedule("s", "0 8 ? * MON-FRI *", "asia/tokyo"));
    assert_eq!(problems[0].0, "schedules[0].timezone");
    assert!(problems[0].1.contains("not spelled as in the IANA time zone database"), "{problems:?}");
    assert_eq!(problems[0].2, "write `Asia/Tokyo`");
    let problems = problems_of(schedule("s", "0 8 ? * MON-FRI *", ""));
    assert_eq!(problems[0].0, "schedules[0].timezone");
}

#[test]
fn capacities_names_and_uniqueness() {
    let mut s = schedule("s", "0 8 ? * MON-FRI *", "UTC");
    s.min_capacity = Some(5);
    s.max_capacity = Some(2);
    let p = problems_of(s);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].0.as_str(), p[0].1.as_str()), ("schedules[0].minCapacity", "5 is above maxCapacity 2"));
    assert_eq!(p[0].2, "make minCapacity at most maxCapacity");

    let mut s = schedule("s", "0 8 ? * MON-FRI *", "UTC");
    s.desired_count = Some(12);
    let p = problems_of(s);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].0.as_str(), p[0].1.as_str()), ("schedules[0].desiredCount", "12 is outside minCapacity..maxCapacity (2..10)"));

    let mut s = schedule("s", "0 8 ? * MON-FRI *", "UTC");
    (s.min_capacity, s.max_capacity, s.desired_count) = (None, None, None);
    let p = problems_of(s);
    assert_eq!((p[0].0.as_str(), p[0].1.as_str()), ("schedules[0].minCapacity", "the schedule changes nothing"));

    let mut s = schedule("s", "0 8 ? * MON-FRI *", "UTC");
    (s.min_capacity, s.max_capacity, s.desired_count) = (None, None, Some(3));
    assert!(problems_of(s).is_empty());

    let long = "x".repeat(41);
    for bad in ["", "has space", "dots.not.allowed", long.as_str()] {
        let p = problems_of(schedule(bad, "0 8 ? * MON-FRI *", "UTC"));
        assert_eq!(p.len(), 1, "{bad:?}: {p:?}");
        assert_eq!(p[0].0, "schedules[0].name");
    }
    let twice = validate(&[schedule("peak", "0 8 ? * MON-FRI *", "UTC"), schedule("peak", "0 20 ? * MON-FRI *", "UTC")]);
    assert_eq!(twice.len(), 1);
    assert_eq!((twice[0].path.as_str(), twice[0].message.as_str()), ("schedules[1].name", "\"peak\" is used twice"));
}

#[test]
fn every_problem_of_a_schedule_is_reported_at_once() {
    let s = Schedule {
        name: "bad name".into(),
        cron: "0 8 * * MON-FRI *".into(),
        timezone: "Nowhere/City".into(),
        min_capacity: Some(3),
        max_capacity: Some(1),
        desired_count: None,
    };
    let paths: Vec<String> = problems_of(s).into_iter().map(|p| p.0).collect();
    assert_eq!(paths, vec!["schedules[0].name", "schedules[0].timezone", "schedules[0].cron", "schedules[0].minCapacity"]);
}

// ---- Scheduler schedules: names, input, differences, plan ----

fn service(cluster: &str, name: &str) -> ServiceRef {
    ServiceRef { cluster: cluster.into(), name: name.into() }
}

#[test]
fn names_are_deterministic_decodable_and_never_shared() {
    let name = scheduler_name(&service("prod", "web"), "weekday-peak");
    assert_eq!(name, "kanaria.prod.web.weekday-peak");
    assert_eq!(decode_name(&name), Some(("prod".into(), "web".into(), "weekday-peak".into())));
    // Hyphens in names cannot make two services share a schedule name.
    assert_ne!(scheduler_name(&service("a", "b-c"), "x"), scheduler_name(&service("a-b", "c"), "x"));
    assert_eq!(decode_name("kanaria.a-b.c.x"), Some(("a-b".into(), "c".into(), "x".into())));
    // Too long: truncated with a hash, still unique, at most 64 characters, never decoded.
    let long = service(&"c".repeat(60), "web");
    let a = scheduler_name(&long, "peak");
    let b = scheduler_name(&long, "night");
    assert!(a.len() <= MAX_NAME_LEN && b.len() <= MAX_NAME_LEN, "{a} {b}");
    assert!(a.starts_with(NAME_PREFIX));
    assert_ne!(a, b);
    assert_eq!(a, scheduler_name(&long, "peak"));
    assert_eq!(decode_name(&a), None);
    for other in ["team-nightly", "kanaria-prod-web-peak", "kanaria.prod.web", "kanaria.prod.web.peak.extra", "kanaria..web.x"] {
        assert_eq!(decode_name(other), None, "{other}");
    }
}

fn target() -> SchedulerTarget {
    SchedulerTarget {
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:scale".into(),
        role_arn: "arn:aws:iam::123456789012:role/kanaria-scheduler".into(),
        dead_letter_arn: "arn:aws:sqs:us-east-1:123456789012:kanaria-scheduler-dlq".into(),
    }
}

const POLICY: &str = r#"
service: { cluster: prod, name: web }
container: app
trigger: { repository: team/web, tags: ["v*"] }
traffic:
  listenerArn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2
  targetGroups:
    - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067
    - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2453ed029918f21f
strategy:
  canary:
    steps:
      - { weight: 10, bake: 5m }
"#;

fn policy_with(schedules: &str) -> Policy {
    crate::policy::parse("test", &format!("{POLICY}schedules:\n{schedules}")).unwrap()
}

fn observed_from(d: &DesiredSchedule, t: &SchedulerTarget) -> ObservedSchedule {
    ObservedSchedule {
        name: d.name.clone(),
        expression: d.expression.clone(),
        timezone: Some(d.timezone.clone()),
        state: "ENABLED".into(),
        flexible_window_off: true,
        target_arn: t.function_arn.clone(),
        role_arn: t.role_arn.clone(),
        input: Some(d.action.to_input()),
        dead_letter_arn: Some(t.dead_letter_arn.clone()),
        retry: Some((RETRY_ATTEMPTS, MAX_EVENT_AGE_SECONDS)),
        description: Some(d.description.clone()),
    }
}

#[test]
fn a_policy_wants_one_schedule_per_entry_with_its_action_as_input() {
    let p = policy_with(
        "  - { name: weekday-peak, cron: \"0 8 ? * MON-FRI *\", timezone: Asia/Tokyo, minCapacity: 4, maxCapacity: 10 }\n  - { name: night, cron: \"cron(0 20 * * ? *)\", timezone: Asia/Tokyo, desiredCount: 1 }\n",
    );
    let d = desired(&p);
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].name, "kanaria.prod.web.weekday-peak");
    assert_eq!(d[0].expression, "cron(0 8 ? * MON-FRI *)");
    assert_eq!(d[0].timezone, "Asia/Tokyo");
    let input: serde_json::Value = serde_json::from_str(&d[0].action.to_input()).unwrap();
    assert_eq!(input, serde_json::json!({"service": "prod/web", "schedule": "weekday-peak", "minCapacity": 4, "maxCapacity": 10}));
    let input: serde_json::Value = serde_json::from_str(&d[1].action.to_input()).unwrap();
    assert_eq!(input, serde_json::json!({"service": "prod/web", "schedule": "night", "desiredCount": 1}));
    assert_eq!(d[1].expression, "cron(0 20 * * ? *)");
}

#[test]
fn differences_name_each_field_out_of_step() {
    let p = policy_with("  - { name: peak, cron: \"0 8 ? * MON-FRI *\", timezone: Asia/Tokyo, minCapacity: 4, maxCapacity: 10 }\n");
    let d = &desired(&p)[0];
    let t = target();
    let same = observed_from(d, &t);
    assert!(differences(d, &same, Some(&t)).is_empty());
    let mut o = same.clone();
    o.expression = "cron(0 9 ? * MON-FRI *)".into();
    o.timezone = None;
    o.input = Some(r#"{"service":"prod/web","schedule":"peak","minCapacity":4,"maxCapacity":12}"#.into());
    o.flexible_window_off = false;
    o.state = "DISABLED".into();
    o.description = None;
    o.target_arn = "arn:aws:lambda:us-east-1:123456789012:function:other".into();
    o.role_arn = "arn:aws:iam::123456789012:role/other".into();
    o.dead_letter_arn = None;
    o.retry = Some((185, 86400));
    assert_eq!(
        differences(d, &o, Some(&t)),
        vec![
            "expression",
            "timezone",
            "input",
            "flexibleTimeWindow",
            "state",
            "description",
            "target",
            "role",
            "deadLetterQueue",
            "retryPolicy"
        ]
    );
    // Without the target settings, only what the policy decides is compared.
    assert_eq!(differences(d, &o, None), vec!["expression", "timezone", "input", "flexibleTimeWindow", "state", "description"]);
    // The same input JSON written differently is in step.
    let mut o = same.clone();
    o.input = Some(r#"{ "maxCapacity": 10, "minCapacity": 4, "schedule": "peak", "service": "prod/web" }"#.into());
    assert!(differences(d, &o, Some(&t)).is_empty());
}

#[test]
fn plan_creates_updates_keeps_and_deletes() {
    let t = target();
    let before = desired(&policy_with(
        "  - { name: a, cron: \"0 8 ? * MON-FRI *\", timezone: Asia/Tokyo, minCapacity: 4, maxCapacity: 10 }\n  - { name: b, cron: \"0 20 ? * MON-FRI *\", timezone: Asia/Tokyo, minCapacity: 1, maxCapacity: 4 }\n  - { name: c, cron: \"0 6 ? * SAT *\", timezone: UTC, desiredCount: 2 }\n",
    ));
    let observed: Vec<ObservedSchedule> = before.iter().map(|d| observed_from(d, &t)).collect();
    // Nothing changed: nothing to do (idempotent).
    assert!(plan(&before, &observed, &t).iter().all(|c| matches!(c, Change::Unchanged(_))));
    // a changes, b is removed, d is new.
    let after = desired(&policy_with(
        "  - { name: a, cron: \"0 7 ? * MON-FRI *\", timezone: Asia/Tokyo, minCapacity: 4, maxCapacity: 12 }\n  - { name: c, cron: \"0 6 ? * SAT *\", timezone: UTC, desiredCount: 2 }\n  - { name: d, cron: \"0 6 ? * SUN *\", timezone: UTC, desiredCount: 1 }\n",
    ));
    let changes = plan(&after, &observed, &t);
    let summary: Vec<String> = changes
        .iter()
        .map(|c| match c {
            Change::Create(d) => format!("create {}", d.name),
            Change::Update { desired, differences } => format!("update {} {differences:?}", desired.name),
            Change::Unchanged(n) => format!("keep {n}"),
            Change::Delete(n) => format!("delete {n}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            "update kanaria.prod.web.a [\"expression\", \"input\"]",
            "keep kanaria.prod.web.c",
            "create kanaria.prod.web.d",
            "delete kanaria.prod.web.b"
        ]
    );
}

#[test]
fn scale_actions_round_trip_and_report_their_problems() {
    let a = ScaleAction {
        service: "prod/web".into(),
        schedule: "peak".into(),
        min_capacity: Some(2),
        max_capacity: Some(8),
        desired_count: None,
    };
    assert_eq!(serde_json::from_str::<ScaleAction>(&a.to_input()).unwrap(), a);
    assert!(a.problems().is_empty());
    assert_eq!(a.service_ref(), Some(service("prod", "web")));
    let bad = ScaleAction { service: "web".into(), min_capacity: Some(9), ..a.clone() };
    assert_eq!(bad.problems(), vec!["service \"web\" is not CLUSTER/SERVICE", "minCapacity 9 is above maxCapacity 8"]);
    let nothing = ScaleAction { min_capacity: None, max_capacity: None, ..a.clone() };
    assert_eq!(nothing.problems(), vec!["it changes nothing (no minCapacity, maxCapacity or desiredCount)"]);
    assert!(serde_json::from_str::<ScaleAction>(r#"{"service":"a/b","schedule":"x","minCapacity":1,"extra":1}"#).is_err());
    let o =
        ObservedSchedule { name: scheduler_name(&service(&"c".repeat(60), "web"), "x"), input: Some(a.to_input()), ..Default::default() };
    assert_eq!(o.service().as_deref(), Some("prod/web"), "a hashed name's service comes from its input");
}

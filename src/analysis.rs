//! Canary analysis: is the new target group worse than the stable one? Pure judgement over the
//! ALB's metrics for the step's window (the adapter fetches them from CloudWatch).

use serde::{Deserialize, Serialize};

use crate::policy::Analysis;

/// One target group's ALB metrics over the step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupMetrics {
    /// `RequestCount` (Sum).
    pub requests: f64,
    /// `HTTPCode_Target_5XX_Count` (Sum).
    pub errors_5xx: f64,
    /// `TargetResponseTime` p99, in milliseconds.
    pub p99_ms: Option<f64>,
}

impl TargetGroupMetrics {
    pub fn error_rate(&self) -> f64 {
        if self.requests > 0.0 {
            self.errors_5xx / self.requests
        } else {
            0.0
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "result", content = "reason")]
pub enum Judgement {
    Pass(String),
    Fail(String),
    Inconclusive(String),
}

fn pct(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

/// The window of the stable target group's metrics to compare the new one's step window
/// `[started, now)` with: the same window while the stable group still gets traffic; at a 100%
/// step, when it gets none (every request goes to the new group, so its figures would always be
/// "too little traffic"), an equally long window right before the step began, when it served.
pub fn baseline_window(weight: u32, started: u64, now: u64) -> (u64, u64) {
    if weight >= 100 {
        (started.saturating_sub(now.saturating_sub(started)), started)
    } else {
        (started, now)
    }
}

/// Judge the new target group against the stable one.
pub fn judge(policy: &Analysis, green: &TargetGroupMetrics, stable: &TargetGroupMetrics) -> Judgement {
    let min = policy.min_requests as f64;
    if green.requests < min || stable.requests < min {
        return Judgement::Inconclusive(format!(
            "too little traffic to compare: {} requests on the new target group, {} on the stable one (minRequests {})",
            green.requests, stable.requests, policy.min_requests
        ));
    }
    let allowed_rate = (stable.error_rate() * policy.error_rate_ratio).max(policy.error_rate_floor_percent / 100.0);
    if green.error_rate() > allowed_rate {
        return Judgement::Fail(format!(
            "5xx rate {} on the new target group ({} of {} requests) is above the allowed {} (stable {} × {}, floor {}%)",
            pct(green.error_rate()),
            green.errors_5xx,
            green.requests,
            pct(allowed_rate),
            pct(stable.error_rate()),
            policy.error_rate_ratio,
            policy.error_rate_floor_percent
        ));
    }
    let mut summary = format!("5xx rate {} vs stable {}", pct(green.error_rate()), pct(stable.error_rate()));
    if let Some(ratio) = policy.latency_p99_ratio {
        match (green.p99_ms, stable.p99_ms) {
            (Some(g), Some(s)) => {
                let allowed = (s * ratio).max(policy.latency_p99_floor_ms);
                if g > allowed {
                    return Judgement::Fail(format!(
                        "p99 response time {g:.0} ms on the new target group is above the allowed {allowed:.0} ms (stable {s:.0} ms × {ratio}, floor {} ms)",
                        policy.latency_p99_floor_ms
                    ));
                }
                summary.push_str(&format!(", p99 {g:.0} ms vs {s:.0} ms"));
            }
            _ => return Judgement::Inconclusive("no TargetResponseTime p99 for one of the target groups".into()),
        }
    }
    Judgement::Pass(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_a_100_percent_step_the_baseline_is_the_window_before_it() {
        assert_eq!(baseline_window(50, 1000, 1300), (1000, 1300), "both groups serve: the same window");
        assert_eq!(baseline_window(100, 1000, 1300), (700, 1000), "the stable group served before the step");
    }

    fn policy() -> Analysis {
        serde_json::from_value(serde_json::json!({"latencyP99Ratio": 1.5})).unwrap()
    }

    fn m(requests: f64, errors: f64, p99: f64) -> TargetGroupMetrics {
        TargetGroupMetrics { requests, errors_5xx: errors, p99_ms: Some(p99) }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = policy();
        assert_eq!((p.min_requests, p.error_rate_ratio, p.error_rate_floor_percent, p.latency_p99_floor_ms), (100, 2.0, 0.5, 100.0));
    }

    #[test]
    fn green_within_twice_the_stable_rate_or_the_floor_passes() {
        // stable 1% → up to 2% allowed.
        assert!(matches!(judge(&policy(), &m(1000.0, 19.0, 80.0), &m(1000.0, 10.0, 80.0)), Judgement::Pass(_)));
        // stable 0% → the 0.5% floor applies.
        assert!(matches!(judge(&policy(), &m(1000.0, 5.0, 80.0), &m(1000.0, 0.0, 80.0)), Judgement::Pass(_)));
    }

    #[test]
    fn green_5xx_above_the_allowance_fails_with_the_numbers() {
        let j = judge(&policy(), &m(1000.0, 21.0, 80.0), &m(1000.0, 10.0, 80.0));
        let Judgement::Fail(reason) = j else { panic!("{j:?}") };
        assert!(reason.contains("2.10%") && reason.contains("2.00%"), "{reason}");
        assert!(matches!(judge(&policy(), &m(1000.0, 6.0, 80.0), &m(1000.0, 0.0, 80.0)), Judgement::Fail(_)));
    }

    #[test]
    fn slow_green_fails_and_latency_below_the_floor_passes() {
        assert!(matches!(judge(&policy(), &m(1000.0, 0.0, 400.0), &m(1000.0, 0.0, 200.0)), Judgement::Fail(_)));
        assert!(matches!(judge(&policy(), &m(1000.0, 0.0, 90.0), &m(1000.0, 0.0, 20.0)), Judgement::Pass(_)));
    }

    #[test]
    fn too_little_traffic_is_inconclusive() {
        assert!(matches!(judge(&policy(), &m(99.0, 50.0, 80.0), &m(1000.0, 0.0, 80.0)), Judgement::Inconclusive(_)));
        assert!(matches!(judge(&policy(), &m(1000.0, 0.0, 80.0), &m(10.0, 0.0, 80.0)), Judgement::Inconclusive(_)));
    }

    #[test]
    fn too_little_traffic_names_both_counts_and_the_minimum() {
        assert_eq!(
            judge(&policy(), &m(99.0, 50.0, 80.0), &m(1000.0, 0.0, 80.0)),
            Judgement::Inconclusive(
                "too little traffic to compare: 99 requests on the new target group, 1000 on the stable one (minRequests 100)".into()
            )
        );
    }

    #[test]
    fn missing_p99_is_inconclusive_when_latency_is_judged() {
        let no_p99 = TargetGroupMetrics { requests: 1000.0, errors_5xx: 0.0, p99_ms: None };
        let expected = Judgement::Inconclusive("no TargetResponseTime p99 for one of the target groups".into());
        assert_eq!(judge(&policy(), &no_p99, &m(1000.0, 0.0, 80.0)), expected);
        assert_eq!(judge(&policy(), &m(1000.0, 0.0, 80.0), &no_p99), expected);
        assert_eq!(judge(&policy(), &no_p99, &no_p99), expected);
        // A 5xx failure is judged before latency: missing p99 does not hide it.
        let failing = TargetGroupMetrics { errors_5xx: 50.0, ..no_p99 };
        assert!(matches!(judge(&policy(), &failing, &no_p99), Judgement::Fail(_)));
    }

    #[test]
    fn missing_p99_does_not_matter_when_latency_is_not_judged() {
        let no_latency: Analysis = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(no_latency.latency_p99_ratio, None);
        let no_p99 = TargetGroupMetrics { requests: 1000.0, errors_5xx: 1.0, p99_ms: None };
        assert_eq!(
            judge(&no_latency, &no_p99, &TargetGroupMetrics { errors_5xx: 0.0, ..no_p99 }),
            Judgement::Pass("5xx rate 0.10% vs stable 0.00%".into())
        );
    }

    #[test]
    fn pass_summary_gives_rates_and_rounded_p99s() {
        assert_eq!(
            judge(&policy(), &m(1000.0, 1.0, 90.4), &m(2000.0, 3.0, 79.6)),
            Judgement::Pass("5xx rate 0.10% vs stable 0.15%, p99 90 ms vs 80 ms".into())
        );
    }

    #[test]
    fn latency_allowance_is_stable_times_ratio_above_the_floor() {
        // stable 200 ms × 1.5 = 300 ms allowed: 300 passes, 301 fails with the numbers.
        assert!(matches!(judge(&policy(), &m(1000.0, 0.0, 300.0), &m(1000.0, 0.0, 200.0)), Judgement::Pass(_)));
        assert_eq!(
            judge(&policy(), &m(1000.0, 0.0, 301.0), &m(1000.0, 0.0, 200.0)),
            Judgement::Fail(
                "p99 response time 301 ms on the new target group is above the allowed 300 ms (stable 200 ms × 1.5, floor 100 ms)".into()
            )
        );
    }
}

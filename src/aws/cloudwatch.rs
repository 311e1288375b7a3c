//! CloudWatch adapter: alarm states, and the ALB metrics canary analysis compares.

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StateValue};
use aws_sdk_cloudwatch::Client;

use super::AwsError;
use crate::analysis::TargetGroupMetrics;

/// Of the named alarms, those in ALARM now.
pub async fn alarms_in_alarm(cw: &Client, names: &[String]) -> Result<Vec<String>, AwsError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut firing = Vec::new();
    // DescribeAlarms takes at most 100 names.
    for chunk in names.chunks(100) {
        let out = cw
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::new("CloudWatch", "DescribeAlarms", chunk.join(","), e))?;
        for alarm in out.metric_alarms() {
            if alarm.state_value() == Some(&StateValue::Alarm) {
                firing.push(alarm.alarm_name().unwrap_or_default().to_string());
            }
        }
        for alarm in out.composite_alarms() {
            if alarm.state_value() == Some(&StateValue::Alarm) {
                firing.push(alarm.alarm_name().unwrap_or_default().to_string());
            }
        }
    }
    Ok(firing)
}

/// The `LoadBalancer` dimension (`app/NAME/ID`) from a listener or listener-rule ARN.
pub fn load_balancer_dimension(listener_or_rule_arn: &str) -> Option<String> {
    let (_, rest) = listener_or_rule_arn.split_once(":listener/").or_else(|| listener_or_rule_arn.split_once(":listener-rule/"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    (parts.len() >= 3).then(|| format!("{}/{}/{}", parts[0], parts[1], parts[2]))
}

/// The `TargetGroup` dimension (`targetgroup/NAME/ID`) from a target group ARN.
pub fn target_group_dimension(target_group_arn: &str) -> Option<String> {
    target_group_arn.split_once(":targetgroup/").map(|(_, rest)| format!("targetgroup/{rest}"))
}

/// One target group's request count, 5xx count and (when asked) p99 response time over
/// `[start, end)` (Unix seconds).
pub async fn target_group_metrics(
    cw: &Client,
    load_balancer: &str,
    target_group: &str,
    start: u64,
    end: u64,
    with_latency: bool,
) -> Result<TargetGroupMetrics, AwsError> {
    // One datapoint for the whole window: a period of whole minutes covering it.
    let period = (end.saturating_sub(start)).div_ceil(60).max(1) * 60;
    let query = |id: &str, metric: &str, stat: &str| {
        let metric = Metric::builder()
            .namespace("AWS/ApplicationELB")
            .metric_name(metric)
            .dimensions(Dimension::builder().name("LoadBalancer").value(load_balancer).build())
            .dimensions(Dimension::builder().name("TargetGroup").value(target_group).build())
            .build();
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(MetricStat::builder().metric(metric).period(period as i32).stat(stat).build())
            .return_data(true)
            .build()
    };
    let mut req = cw
        .get_metric_data()
        .start_time(DateTime::from_secs(start as i64))
        .end_time(DateTime::from_secs((start + period) as i64))
        .metric_data_queries(query("requests", "RequestCount", "Sum"))
        .metric_data_queries(query("errors", "HTTPCode_Target_5XX_Count", "Sum"));
    if with_latency {
        req = req.metric_data_queries(query("p99", "TargetResponseTime", "p99"));
    }
    let out = req.send().await.map_err(|e| AwsError::new("CloudWatch", "GetMetricData", target_group, e))?;
    let mut metrics = TargetGroupMetrics::default();
    for result in out.metric_data_results() {
        let values = result.values();
        match result.id() {
            Some("requests") => metrics.requests = values.iter().sum(),
            Some("errors") => metrics.errors_5xx = values.iter().sum(),
            // TargetResponseTime is in seconds.
            Some("p99") => metrics.p99_ms = values.iter().cloned().reduce(f64::max).map(|s| s * 1000.0),
            _ => {}
        }
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_come_from_arns() {
        assert_eq!(
            load_balancer_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2"
            )
            .as_deref(),
            Some("app/prod/50dc6c495c0c9188")
        );
        assert_eq!(
            load_balancer_dimension("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee").as_deref(),
            Some("app/prod/50dc6c495c0c9188")
        );
        assert_eq!(
            target_group_dimension("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067").as_deref(),
            Some("targetgroup/web-blue/73e2d6bc24d8a067")
        );
    }
}

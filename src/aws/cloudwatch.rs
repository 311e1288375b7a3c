//! CloudWatch adapter: alarm states, and the ALB metrics canary analysis compares.

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{AlarmType, Dimension, Metric, MetricDataQuery, MetricStat, StateValue};
use aws_sdk_cloudwatch::Client;

use super::AwsError;
use crate::analysis::TargetGroupMetrics;

/// One alarm as CloudWatch returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmState {
    pub name: String,
    pub composite: bool,
    /// OK, ALARM or INSUFFICIENT_DATA.
    pub state: String,
}

impl AlarmState {
    pub fn in_alarm(&self) -> bool {
        self.state == StateValue::Alarm.as_str()
    }
}

/// The named alarms CloudWatch knows, metric and composite, with their states. A name CloudWatch
/// does not know is simply absent from the answer (DescribeAlarms returns no error for it).
///
/// DescribeAlarms returns composite alarms only when `AlarmTypes` asks for them (without it,
/// only metric alarms, "even if composite alarms exist in the account"), and only to callers
/// allowed `cloudwatch:DescribeAlarms` on `"*"` (DescribeAlarms API reference): a policy may name
/// either kind, so both are asked for, and kanaria's role allows the action on `"*"`.
pub async fn describe_alarms(cw: &Client, names: &[String]) -> Result<Vec<AlarmState>, AwsError> {
    let mut found = Vec::new();
    // DescribeAlarms takes at most 100 names, and answers in pages.
    for chunk in names.chunks(100) {
        let mut pages = cw
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .alarm_types(AlarmType::CompositeAlarm)
            .alarm_types(AlarmType::MetricAlarm)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::new("CloudWatch", "DescribeAlarms", chunk.join(","), e))?;
            for alarm in page.metric_alarms() {
                found.push(AlarmState {
                    name: alarm.alarm_name().unwrap_or_default().to_string(),
                    composite: false,
                    state: alarm.state_value().map(|s| s.as_str().to_string()).unwrap_or_default(),
                });
            }
            for alarm in page.composite_alarms() {
                found.push(AlarmState {
                    name: alarm.alarm_name().unwrap_or_default().to_string(),
                    composite: true,
                    state: alarm.state_value().map(|s| s.as_str().to_string()).unwrap_or_default(),
                });
            }
        }
    }
    Ok(found)
}

/// Of the named alarms, those in ALARM now (metric or composite).
pub async fn alarms_in_alarm(cw: &Client, names: &[String]) -> Result<Vec<String>, AwsError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let found = describe_alarms(cw, names).await?;
    let missing: Vec<&String> = names.iter().filter(|n| !found.iter().any(|a| &a.name == *n)).collect();
    if !missing.is_empty() {
        // A name CloudWatch does not know can never fire; `kanaria verify` reports it as a failure.
        tracing::warn!(?missing, "the policy names alarms CloudWatch does not know; they cannot roll a rollout back");
    }
    Ok(found.into_iter().filter(AlarmState::in_alarm).map(|a| a.name).collect())
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
    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
    use aws_sdk_cloudwatch::types::{CompositeAlarm, MetricAlarm};
    use aws_smithy_mocks::{mock, MockResponseInterceptor, Rule, RuleMode};

    /// A CloudWatch client whose requests the rules answer (no network); a request no rule
    /// matches fails.
    fn mocked(rules: &[&Rule]) -> Client {
        let interceptor = rules.iter().fold(MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny), |i, r| i.with_rule(r));
        let config = aws_sdk_cloudwatch::Config::builder()
            .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"))
            .retry_config(aws_sdk_cloudwatch::config::retry::RetryConfig::disabled())
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .build();
        Client::from_conf(config)
    }

    /// CloudWatch as AWS answers DescribeAlarms, with a metric alarm web-5xx (OK) and a composite
    /// alarm web-health (ALARM): composite alarms only to a request whose AlarmTypes lists
    /// CompositeAlarm, metric alarms only when AlarmTypes is absent or lists MetricAlarm.
    fn cloudwatch_with_both_kinds() -> Rule {
        mock!(Client::describe_alarms).then_compute_output(|request| {
            let types = request.alarm_types();
            let metric = types.is_empty() || types.contains(&AlarmType::MetricAlarm);
            let composite = types.contains(&AlarmType::CompositeAlarm);
            let named = |name: &str| request.alarm_names().iter().any(|n| n == name);
            let mut out = DescribeAlarmsOutput::builder();
            if metric && named("web-5xx") {
                out = out.metric_alarms(MetricAlarm::builder().alarm_name("web-5xx").state_value(StateValue::Ok).build());
            }
            if composite && named("web-health") {
                out = out.composite_alarms(CompositeAlarm::builder().alarm_name("web-health").state_value(StateValue::Alarm).build());
            }
            out.build()
        })
    }

    #[tokio::test]
    async fn composite_alarms_are_asked_for_and_seen_in_alarm() {
        let rule = cloudwatch_with_both_kinds();
        let cw = mocked(&[&rule]);
        let names = vec!["web-5xx".to_string(), "web-health".to_string(), "web-latncy".to_string()];
        assert_eq!(alarms_in_alarm(&cw, &names).await.unwrap(), vec!["web-health".to_string()]);
        let found = describe_alarms(&cw, &names).await.unwrap();
        assert_eq!(
            found,
            vec![
                AlarmState { name: "web-5xx".into(), composite: false, state: "OK".into() },
                AlarmState { name: "web-health".into(), composite: true, state: "ALARM".into() },
            ]
        );
        assert_eq!(alarms_in_alarm(&cw, &[]).await.unwrap(), Vec::<String>::new(), "no names, no call");
    }

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

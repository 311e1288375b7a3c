//! ALB adapter: read and set the weights of the forward action on the production listener or
//! listener rule. Only the forward action is replaced; other actions (authentication, for
//! instance) are kept as they are, and so are the stickiness settings — except that a change
//! that puts a target group at weight 0 turns target-group stickiness off in the same call
//! ([`set_weights`]).

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupStickinessConfig, TargetGroupTuple, TargetHealthStateEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;

use tracing::warn;

use super::AwsError;
use crate::policy::TrafficRoute;

async fn actions_of(elb: &Client, route: &TrafficRoute) -> Result<Vec<Action>, AwsError> {
    match route {
        TrafficRoute::Listener(arn) => {
            let out = elb
                .describe_listeners()
                .listener_arns(arn)
                .send()
                .await
                .map_err(|e| AwsError::new("ELBv2", "DescribeListeners", arn, e))?;
            Ok(out.listeners().first().map(|l| l.default_actions().to_vec()).unwrap_or_default())
        }
        TrafficRoute::Rule(arn) => {
            let out = elb.describe_rules().rule_arns(arn).send().await.map_err(|e| AwsError::new("ELBv2", "DescribeRules", arn, e))?;
            Ok(out.rules().first().map(|r| r.actions().to_vec()).unwrap_or_default())
        }
    }
}

fn route_arn(route: &TrafficRoute) -> &str {
    match route {
        TrafficRoute::Listener(a) | TrafficRoute::Rule(a) => a,
    }
}

/// Weight per target group of the forward action (a plain forward to one target group is
/// that group at 100).
pub async fn read_weights(elb: &Client, route: &TrafficRoute) -> Result<Vec<(String, u32)>, AwsError> {
    let actions = actions_of(elb, route).await?;
    let forward = actions.iter().find(|a| a.r#type() == Some(&ActionTypeEnum::Forward)).ok_or_else(|| AwsError {
        service: "ELBv2",
        operation: "DescribeListeners",
        resource: route_arn(route).into(),
        message: "has no forward action; point the policy at the listener or rule that forwards to the service".into(),
        transient: false,
    })?;
    Ok(weights_of(forward))
}

/// ALB weights are relative (0–999); kanaria speaks in percent of traffic.
fn weights_of(forward: &Action) -> Vec<(String, u32)> {
    let raw: Vec<(String, u32)> = match forward.forward_config().map(|c| c.target_groups()).filter(|g| !g.is_empty()) {
        Some(groups) => groups
            .iter()
            // A target group listed without a weight has weight 1 (so a lone one gets everything).
            .filter_map(|g| g.target_group_arn().map(|a| (a.to_string(), g.weight().unwrap_or(1).max(0) as u32)))
            .collect(),
        None => forward.target_group_arn().map(|a| vec![(a.to_string(), 1)]).unwrap_or_default(),
    };
    let total: u32 = raw.iter().map(|(_, w)| w).sum();
    raw.into_iter().map(|(tg, w)| (tg, if total == 0 { 0 } else { ((w as f64) * 100.0 / total as f64).round() as u32 })).collect()
}

/// How many of `ips` are `healthy` targets of the target group. A target that is `initial`,
/// `unhealthy` or `draining` gets no requests from the ALB (ELB docs, "Health checks for your
/// target groups").
pub async fn healthy_targets(elb: &Client, target_group: &str, ips: &[String]) -> Result<u32, AwsError> {
    if ips.is_empty() {
        return Ok(0);
    }
    let out = elb
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(|e| AwsError::new("ELBv2", "DescribeTargetHealth", target_group, e))?;
    let healthy = out
        .target_health_descriptions()
        .iter()
        .filter(|d| d.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy))
        .filter_map(|d| d.target().and_then(|t| t.id()))
        .filter(|id| ips.iter().any(|ip| ip == id))
        .count();
    Ok(healthy as u32)
}

/// Whether the forward action has target-group stickiness on (ALB: a client's stickiness
/// cookie sends it back to the same target group, whatever the weights, for the duration).
pub fn stickiness_seconds(forward: &Action) -> Option<i32> {
    let config = forward.forward_config()?.target_group_stickiness_config()?;
    (config.enabled() == Some(true)).then(|| config.duration_seconds().unwrap_or(0))
}

/// The stickiness setting to write with `weights`: as it is, unless stickiness is on and a
/// target group goes to (or stays at) weight 0 — a rollback, a promotion, the blue/green test
/// route. Stickiness beats weights (ELB docs, "Target group stickiness"), so clients stuck to
/// that group would keep reaching it until their cookie expires (up to 7 days), and get 503s once
/// its task set is scaled down or deleted. Turning it off in the same ModifyListener/ModifyRule
/// moves them with the weights at once. It stays off afterwards (`kanaria verify` warns while it
/// is on).
fn stickiness_with(current: Option<&TargetGroupStickinessConfig>, weights: &[(String, u32)]) -> Option<TargetGroupStickinessConfig> {
    let on = current.is_some_and(|c| c.enabled() == Some(true));
    if on && weights.iter().any(|(_, w)| *w == 0) {
        return Some(TargetGroupStickinessConfig::builder().enabled(false).build());
    }
    current.cloned()
}

/// Set the forward action's weights; every other action and setting stays, except stickiness
/// when a target group goes to 0 ([`stickiness_with`]). The weights read back ([`read_weights`])
/// are the ones set: the target groups stay in the action.
pub async fn set_weights(elb: &Client, route: &TrafficRoute, weights: &[(String, u32)]) -> Result<(), AwsError> {
    let actions = actions_of(elb, route).await?;
    let tuples: Vec<TargetGroupTuple> =
        weights.iter().map(|(tg, w)| TargetGroupTuple::builder().target_group_arn(tg).weight(*w as i32).build()).collect();
    let mut replaced = false;
    let new_actions: Vec<Action> = actions
        .into_iter()
        .map(|a| {
            if a.r#type() == Some(&ActionTypeEnum::Forward) && !replaced {
                replaced = true;
                let stickiness = stickiness_with(a.forward_config().and_then(|c| c.target_group_stickiness_config()), weights);
                if stickiness.as_ref().and_then(|c| c.enabled()) == Some(false) && stickiness_seconds(&a).is_some() {
                    warn!(
                        route = route_arn(route),
                        "target-group stickiness turned off with this weight change: clients stuck to a target group at weight 0 would keep reaching it"
                    );
                }
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .set_order(a.order())
                    .forward_config(
                        ForwardActionConfig::builder()
                            .set_target_groups(Some(tuples.clone()))
                            .set_target_group_stickiness_config(stickiness)
                            .build(),
                    )
                    .build()
            } else {
                a
            }
        })
        .collect();
    if !replaced {
        return Err(AwsError {
            service: "ELBv2",
            operation: "ModifyListener",
            resource: route_arn(route).into(),
            message: "has no forward action to weight".into(),
            transient: false,
        });
    }
    match route {
        TrafficRoute::Listener(arn) => {
            elb.modify_listener()
                .listener_arn(arn)
                .set_default_actions(Some(new_actions))
                .send()
                .await
                .map_err(|e| AwsError::new("ELBv2", "ModifyListener", arn, e))?;
        }
        TrafficRoute::Rule(arn) => {
            elb.modify_rule()
                .rule_arn(arn)
                .set_actions(Some(new_actions))
                .send()
                .await
                .map_err(|e| AwsError::new("ELBv2", "ModifyRule", arn, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_elasticloadbalancingv2::operation::describe_listeners::DescribeListenersOutput;
    use aws_sdk_elasticloadbalancingv2::operation::modify_listener::ModifyListenerOutput;
    use aws_sdk_elasticloadbalancingv2::types::{Listener, TargetGroupStickinessConfig};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn forward(weights: &[(&str, i32)]) -> Action {
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .set_target_groups(Some(
                        weights.iter().map(|(tg, w)| TargetGroupTuple::builder().target_group_arn(*tg).weight(*w).build()).collect(),
                    ))
                    .target_group_stickiness_config(TargetGroupStickinessConfig::builder().enabled(true).duration_seconds(60).build())
                    .build(),
            )
            .build()
    }

    #[test]
    fn weights_of_plain_and_weighted_forward() {
        let plain = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn("tg-a").build();
        assert_eq!(weights_of(&plain), vec![("tg-a".to_string(), 100)]);
        assert_eq!(weights_of(&forward(&[("tg-a", 90), ("tg-b", 10)])), vec![("tg-a".into(), 90), ("tg-b".into(), 10)]);
        assert_eq!(weights_of(&forward(&[("tg-a", 1), ("tg-b", 0)])), vec![("tg-a".into(), 100), ("tg-b".into(), 0)]);
        assert_eq!(weights_of(&forward(&[("tg-a", 999), ("tg-b", 999)])), vec![("tg-a".into(), 50), ("tg-b".into(), 50)]);
    }

    #[test]
    fn stickiness_goes_off_only_when_a_target_group_goes_to_zero() {
        let on = TargetGroupStickinessConfig::builder().enabled(true).duration_seconds(3600).build();
        let off = TargetGroupStickinessConfig::builder().enabled(false).build();
        let w = |a: u32, b: u32| vec![("tg-a".to_string(), a), ("tg-b".to_string(), b)];
        // A canary step: sticky clients stay where they are (what stickiness is for).
        assert_eq!(stickiness_with(Some(&on), &w(90, 10)), Some(on.clone()));
        // A rollback, a promotion: off in the same call.
        assert_eq!(stickiness_with(Some(&on), &w(100, 0)), Some(off.clone()));
        assert_eq!(stickiness_with(Some(&on), &w(0, 100)), Some(off.clone()));
        // Off or absent: left as it is.
        assert_eq!(stickiness_with(Some(&off), &w(100, 0)), Some(off));
        assert_eq!(stickiness_with(None, &w(100, 0)), None);
    }

    #[tokio::test]
    async fn set_weights_turns_stickiness_off_when_a_group_goes_to_zero() {
        let describe = mock!(Client::describe_listeners).then_output(|| {
            DescribeListenersOutput::builder()
                .listeners(Listener::builder().default_actions(forward(&[("tg-a", 90), ("tg-b", 10)])).build())
                .build()
        });
        let modify = mock!(Client::modify_listener)
            .match_requests(|req| {
                let actions = req.default_actions();
                actions.len() == 1
                    && weights_of(&actions[0]) == vec![("tg-a".to_string(), 100), ("tg-b".to_string(), 0)]
                    && stickiness_seconds(&actions[0]).is_none()
                    && actions[0].forward_config().and_then(|c| c.target_group_stickiness_config()).and_then(|s| s.enabled()) == Some(false)
            })
            .then_output(|| ModifyListenerOutput::builder().build());
        let client = mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, [&describe, &modify]);
        set_weights(&client, &TrafficRoute::Listener("arn:l".into()), &[("tg-a".into(), 100), ("tg-b".into(), 0)]).await.unwrap();
        assert_eq!(modify.num_calls(), 1, "the rollback's ModifyListener did not turn stickiness off with the weights");
    }

    #[tokio::test]
    async fn set_weights_keeps_stickiness_and_other_actions() {
        let auth = Action::builder().r#type(ActionTypeEnum::AuthenticateOidc).order(1).build();
        let describe = mock!(Client::describe_listeners).then_output(move || {
            DescribeListenersOutput::builder()
                .listeners(
                    Listener::builder().default_actions(auth.clone()).default_actions(forward(&[("tg-a", 100), ("tg-b", 0)])).build(),
                )
                .build()
        });
        let modify = mock!(Client::modify_listener)
            .match_requests(|req| {
                let actions = req.default_actions();
                actions.len() == 2
                    && actions[0].r#type() == Some(&ActionTypeEnum::AuthenticateOidc)
                    && weights_of(&actions[1]) == vec![("tg-a".to_string(), 75), ("tg-b".to_string(), 25)]
                    && actions[1].forward_config().and_then(|c| c.target_group_stickiness_config()).and_then(|s| s.enabled()) == Some(true)
            })
            .then_output(|| ModifyListenerOutput::builder().build());
        let client = mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, [&describe, &modify]);
        set_weights(&client, &TrafficRoute::Listener("arn:l".into()), &[("tg-a".into(), 75), ("tg-b".into(), 25)]).await.unwrap();
        assert_eq!(modify.num_calls(), 1, "the request did not keep the other actions and stickiness");
    }
}

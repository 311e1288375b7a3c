//! Scheduled capacity against emulated AWS (moto): `kanaria policy apply` and Parameter Store
//! change events keep kanaria's EventBridge Scheduler schedules in step with a policy's
//! `schedules` (and leave every other schedule alone); the scale function, invoked with a
//! schedule's own input (moto never fires schedules), changes the scalable target's bounds or
//! the desired count, even during a canary, whose traffic it never touches.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode, Target};
use common::{kanaria, start, Env};
use kanaria::aws::scheduler::SchedulerSettings;
use kanaria::handlers::policy_sync::{self, PolicyState};
use kanaria::handlers::{Function, HandlerError};
use kanaria_local::fixture::{self, SampleOptions};
use serde_json::{json, Value};

const TWO_SCHEDULES: &str = "schedules:
  - { name: weekday-peak, cron: \"0 8 ? * MON-FRI *\", timezone: Asia/Tokyo, minCapacity: 4, maxCapacity: 10 }
  - { name: night, cron: \"cron(0 22 * * ? *)\", timezone: America/New_York, desiredCount: 3 }
";

fn settings(env: &Env) -> SchedulerSettings {
    env.local.ctx().settings.scheduler.clone()
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// `kanaria policy apply` of the sample policy plus `schedules_yaml`, with the Scheduler options.
/// What `kanaria policy apply` reported, against what it should have done. It syncs the
/// schedules itself, and so does policy-sync on the parameter's change event, which SSM emits as
/// the CLI stores the policy (as on AWS): a change policy-sync made first is reported by the CLI
/// as in step (or, for a deleted schedule, not at all). Each expected change must be reported as
/// made or as done already, and nothing else may be reported; the tests then read the schedules
/// back to see that the changes were made.
fn assert_applied(lines: &[String], expected: &[&str]) {
    for e in expected {
        let (verb, rest) = e.split_once(' ').unwrap();
        let name = rest.trim_start_matches("step ").split(' ').next().unwrap();
        let in_step = format!("in step {name}");
        let reported = match verb {
            "in" => lines.iter().any(|l| l == e),
            "created" | "updated" => lines.iter().any(|l| l == e || *l == in_step),
            "deleted" => lines.iter().any(|l| l == e) || !lines.iter().any(|l| l.contains(name)),
            other => panic!("unknown verb {other}"),
        };
        assert!(reported, "{e:?} is not in {lines:?}");
    }
    let names: Vec<&str> =
        expected.iter().map(|e| e.split_once(' ').unwrap().1.trim_start_matches("step ").split(' ').next().unwrap()).collect();
    assert!(lines.iter().all(|l| names.iter().any(|n| l.contains(n))), "{lines:?} reports more than {expected:?}");
}

async fn apply(env: &Env, schedules_yaml: &str) -> Vec<String> {
    let dir =
        std::env::temp_dir().join(format!("kanaria-schedules-{}-{}", std::process::id(), fixture::new_digest("dir").get(7..19).unwrap()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("web.yaml");
    std::fs::write(&file, format!("{}{schedules_yaml}", env.sample.policy_yaml)).unwrap();
    let s = settings(env);
    let endpoint = env.local.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || {
        kanaria(
            &endpoint,
            &[
                "policy",
                "apply",
                file.to_str().unwrap(),
                "--schedule-group",
                &s.group,
                "--scale-function-arn",
                s.function_arn.as_deref().unwrap(),
                "--scheduler-role-arn",
                s.role_arn.as_deref().unwrap(),
                "--scheduler-dlq-arn",
                s.dead_letter_arn.as_deref().unwrap(),
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout).lines().filter_map(|l| l.strip_prefix("schedule ")).map(str::to_string).collect()
}

/// Every schedule name in a group.
async fn names_in(env: &Env, group: &str) -> BTreeSet<String> {
    let out = env.local.ctx().clients.scheduler.list_schedules().group_name(group).send().await.unwrap();
    out.schedules().iter().filter_map(|s| s.name().map(str::to_string)).collect()
}

async fn get(env: &Env, group: &str, name: &str) -> aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput {
    env.local.ctx().clients.scheduler.get_schedule().group_name(group).name(name).send().await.unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

/// What Scheduler would do when the schedule fires: invoke its target with its input.
async fn fire(env: &Env, name: &str) -> Result<Value, HandlerError> {
    let s = get(env, &settings(env).group, name).await;
    let target = s.target().unwrap();
    let function = match env.local.shared.function_for(target.arn()) {
        Some(kanaria_local::Target::Kanaria(f)) => f,
        _ => panic!("{name} targets {}, not a kanaria function", target.arn()),
    };
    assert_eq!(function, Function::ScheduledScale);
    let input: Value = serde_json::from_str(target.input().unwrap()).unwrap();
    env.local.shared.invoke(function, input).await
}

async fn create_foreign(env: &Env, group: Option<&str>, name: &str) {
    env.local
        .ctx()
        .clients
        .scheduler
        .create_schedule()
        .set_group_name(group.map(str::to_string))
        .name(name)
        .schedule_expression("cron(0 3 * * ? *)")
        .flexible_time_window(FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().unwrap())
        .target(
            Target::builder()
                .arn("arn:aws:lambda:us-east-1:123456789012:function:team-report")
                .role_arn("arn:aws:iam::123456789012:role/team")
                .input("{}")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

fn modified(s: &aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput) -> f64 {
    s.last_modification_date().unwrap().as_secs_f64()
}

async fn notice_subjects(env: &Env) -> Vec<String> {
    env.local.notices().await.unwrap().into_iter().map(|(subject, _)| subject).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_apply_creates_updates_and_deletes_only_kanarias_schedules() {
    let env = start(SampleOptions::default()).await;
    let group = settings(&env).group;
    // Not kanaria's: another name in kanaria's group, kanaria's name in another group, and
    // another service's schedule (outside the scope of applying demo/web).
    create_foreign(&env, Some(&group), "team-nightly-report").await;
    create_foreign(&env, None, "kanaria.demo.web.weekday-peak").await;
    create_foreign(&env, Some(&group), "kanaria.demo.api.peak").await;
    let foreign_before = get(&env, &group, "team-nightly-report").await;

    // Two schedules: two Scheduler schedules with the right expression, time zone and input.
    let lines = apply(&env, TWO_SCHEDULES).await;
    assert_applied(&lines, &["created kanaria/kanaria.demo.web.night", "created kanaria/kanaria.demo.web.weekday-peak"]);
    assert_eq!(
        names_in(&env, &group).await,
        BTreeSet::from(
            ["kanaria.demo.api.peak", "kanaria.demo.web.night", "kanaria.demo.web.weekday-peak", "team-nightly-report"].map(String::from)
        )
    );
    let s = settings(&env);
    let peak = get(&env, &group, "kanaria.demo.web.weekday-peak").await;
    assert_eq!(peak.schedule_expression(), Some("cron(0 8 ? * MON-FRI *)"));
    assert_eq!(peak.schedule_expression_timezone(), Some("Asia/Tokyo"));
    assert_eq!(peak.flexible_time_window().unwrap().mode(), &FlexibleTimeWindowMode::Off);
    assert_eq!(peak.state().unwrap().as_str(), "ENABLED");
    let target = peak.target().unwrap();
    assert_eq!(Some(target.arn()), s.function_arn.as_deref());
    assert_eq!(Some(target.role_arn()), s.role_arn.as_deref());
    assert_eq!(target.dead_letter_config().and_then(|d| d.arn()), s.dead_letter_arn.as_deref());
    let retry = target.retry_policy().unwrap();
    assert_eq!((retry.maximum_retry_attempts(), retry.maximum_event_age_in_seconds()), (Some(2), Some(900)));
    let input: Value = serde_json::from_str(target.input().unwrap()).unwrap();
    assert_eq!(input, json!({"service": "demo/web", "schedule": "weekday-peak", "minCapacity": 4, "maxCapacity": 10}));
    let night = get(&env, &group, "kanaria.demo.web.night").await;
    assert_eq!(night.schedule_expression(), Some("cron(0 22 * * ? *)"));
    assert_eq!(night.schedule_expression_timezone(), Some("America/New_York"));
    let input: Value = serde_json::from_str(night.target().unwrap().input().unwrap()).unwrap();
    assert_eq!(input, json!({"service": "demo/web", "schedule": "night", "desiredCount": 3}));

    // Applying the same policy again changes nothing.
    let lines = apply(&env, TWO_SCHEDULES).await;
    assert_eq!(lines, vec!["in step kanaria/kanaria.demo.web.night", "in step kanaria/kanaria.demo.web.weekday-peak"]);
    assert_eq!(modified(&get(&env, &group, "kanaria.demo.web.weekday-peak").await), modified(&peak));

    // Changing one updates it and only it.
    let changed = TWO_SCHEDULES.replace("\"0 8 ? * MON-FRI *\"", "\"30 7 ? * MON-FRI *\"").replace("maxCapacity: 10", "maxCapacity: 12");
    let lines = apply(&env, &changed).await;
    assert_applied(
        &lines,
        &["updated kanaria/kanaria.demo.web.weekday-peak (expression, input)", "in step kanaria/kanaria.demo.web.night"],
    );
    let peak = get(&env, &group, "kanaria.demo.web.weekday-peak").await;
    assert_eq!(peak.schedule_expression(), Some("cron(30 7 ? * MON-FRI *)"));
    let input: Value = serde_json::from_str(peak.target().unwrap().input().unwrap()).unwrap();
    assert_eq!(input["maxCapacity"], 12);
    assert_eq!(modified(&get(&env, &group, "kanaria.demo.web.night").await), modified(&night), "the unchanged schedule is not rewritten");

    // Removing one deletes it; what kanaria does not own (or is outside the scope) survives.
    let one = changed.lines().filter(|l| !l.contains("name: night")).map(|l| format!("{l}\n")).collect::<String>();
    let lines = apply(&env, &one).await;
    assert_applied(&lines, &["deleted kanaria/kanaria.demo.web.night", "in step kanaria/kanaria.demo.web.weekday-peak"]);
    assert_eq!(
        names_in(&env, &group).await,
        BTreeSet::from(["kanaria.demo.api.peak", "kanaria.demo.web.weekday-peak", "team-nightly-report"].map(String::from))
    );
    assert_eq!(names_in(&env, "default").await, BTreeSet::from(["kanaria.demo.web.weekday-peak".to_string()]));
    assert_eq!(modified(&get(&env, &group, "team-nightly-report").await), modified(&foreign_before));

    // `kanaria schedules` lists it with its next three times in Tokyo, in step with the policy.
    let endpoint = env.local.endpoint.clone();
    let args: Vec<String> = ["schedules", "demo/web", "--output", "json", "--scale-function-arn", s.function_arn.as_deref().unwrap()]
        .into_iter()
        .map(String::from)
        .chain([
            "--scheduler-role-arn".into(),
            s.role_arn.clone().unwrap(),
            "--scheduler-dlq-arn".into(),
            s.dead_letter_arn.clone().unwrap(),
        ])
        .collect();
    let out = tokio::task::spawn_blocking(move || kanaria(&endpoint, &args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let peak = &listed["schedules"][0];
    assert_eq!(peak["name"], "weekday-peak");
    assert_eq!(peak["scheduler"]["state"], "inStep", "{listed}");
    let next: Vec<&str> = peak["next"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(next.len(), 3);
    assert!(next.iter().all(|t| t.ends_with("T07:30:00+09:00")), "{next:?}");
    assert_eq!(listed["notInPolicy"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parameter_store_change_events_sync_the_schedules() {
    let env = start(SampleOptions::default()).await;
    let ctx = env.local.ctx();
    let group = settings(&env).group;
    let parameter = kanaria::aws::policies::parameter_name(&ctx.settings.policy_prefix, &env.sample.policy);
    let both = BTreeSet::from(["kanaria.demo.web.night", "kanaria.demo.web.weekday-peak"].map(String::from));
    let policy_sync_reports = || -> Vec<Value> { env.results_of(Function::PolicySync).into_iter().filter_map(Result::ok).collect() };

    // A policy with schedules stored by hand: SSM's change event takes it to policy-sync, which
    // creates its schedules.
    let policy = kanaria::policy::parse("web", &format!("{}{TWO_SCHEDULES}", env.sample.policy_yaml)).unwrap();
    kanaria::aws::policies::put(&ctx.clients.ssm, &ctx.settings.policy_prefix, &policy).await.unwrap();
    env.eventually("the change event created the schedules", Duration::from_secs(30), async || {
        (names_in(&env, &group).await == both).then_some(())
    })
    .await;
    assert!(
        policy_sync_reports().iter().any(|r| r["parameter"] == parameter.as_str() && r["report"]["created"] == json!(both)),
        "{:?}",
        policy_sync_reports()
    );

    // Edited by hand into an invalid policy: the schedules stay as they are, and a notice says why.
    env.local.notices().await.unwrap();
    ctx.clients
        .ssm
        .put_parameter()
        .name(&parameter)
        .value(format!("{}{}", env.sample.policy_yaml, TWO_SCHEDULES.replace("Asia/Tokyo", "Asia/Tokio")))
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let mut notices = Vec::new();
    env.eventually("the invalid policy's notice", Duration::from_secs(30), async || {
        notices.extend(env.local.notices().await.unwrap());
        notices
            .iter()
            .any(|(s, b)| s == "kanaria: policy of demo/web is invalid; its schedules are unchanged" && b.contains("schedules[0].timezone"))
            .then_some(())
    })
    .await;
    assert!(policy_sync_reports().iter().any(|r| r["report"]["kept"] == json!(both) && r["report"]["deleted"] == json!([])));
    assert_eq!(names_in(&env, &group).await, both);

    // The policy deleted: its schedules go.
    ctx.clients.ssm.delete_parameter().name(&parameter).send().await.unwrap();
    env.eventually("the deletion's event deleted the schedules", Duration::from_secs(30), async || {
        names_in(&env, &group).await.is_empty().then_some(())
    })
    .await;
    assert!(policy_sync_reports().iter().any(|r| r["operation"] == "Delete" && r["report"]["deleted"] == json!(both)));

    // Another parameter's change is not a policy's.
    let other = json!({"source": "aws.ssm", "detail-type": "Parameter Store Change", "detail": {"name": "/kanaria/policies/x", "operation": "Update"}});
    let out = env.local.shared.invoke(Function::PolicySync, other).await.unwrap();
    assert!(out["ignored"].as_str().unwrap().contains("not a policy parameter"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fired_schedule_sets_the_scalable_targets_bounds() {
    let env = start(SampleOptions::default()).await;
    let ctx = env.local.ctx();
    let aas = &ctx.clients.autoscaling;
    let describe = move || async move {
        let out =
            aas.describe_scalable_targets().service_namespace(ServiceNamespace::Ecs).resource_ids("service/demo/web").send().await.unwrap();
        let t = &out.scalable_targets()[0];
        (t.min_capacity(), t.max_capacity())
    };
    aas.register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id("service/demo/web")
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .min_capacity(1)
        .max_capacity(2)
        .send()
        .await
        .unwrap();
    let policy = kanaria::policy::parse("web", &format!("{}{TWO_SCHEDULES}", env.sample.policy_yaml)).unwrap();
    policy_sync::sync_service(ctx, "demo/web", PolicyState::Valid(&policy)).await.unwrap();
    env.local.notices().await.unwrap();

    let out = fire(&env, "kanaria.demo.web.weekday-peak").await.expect("the scale function succeeded");
    assert_eq!(out["applied"], "scalableTarget", "{out}");
    assert_eq!(describe().await, (4, 10), "read back from Application Auto Scaling");
    assert_eq!(out["before"], json!({"min": 1, "max": 2}));
    assert_eq!(out["after"], json!({"min": 4, "max": 10}));
    let notices = env.local.notices().await.unwrap();
    assert_eq!(
        notices,
        vec![(
            "kanaria: demo/web scaled by schedule weekday-peak".to_string(),
            "demo/web: schedule weekday-peak set the scalable target to min 4, max 10 (was min 1, max 2)".to_string()
        )]
    );
    let runs = kanaria::aws::scale_log::recent(&ctx.clients.dynamodb, &ctx.settings.table, "demo/web", 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].schedule.as_str(), runs[0].outcome.as_str()), ("weekday-peak", "APPLIED"));

    // Fired again (a redelivery, say): nothing to change, and the notice says so.
    let again = fire(&env, "kanaria.demo.web.weekday-peak").await.expect("the scale function succeeded");
    assert_eq!(again["summary"], "demo/web: schedule weekday-peak found the scalable target at min 4, max 10 already");
    assert_eq!(describe().await, (4, 10));

    // A schedule with only desiredCount would be undone by the target's scaling policies: refused.
    let err = fire(&env, "kanaria.demo.web.night").await.unwrap_err();
    assert_eq!(err.error_type, "Kanaria.ScheduledScaleFailed");
    assert!(err.message.contains("give the schedule minCapacity/maxCapacity"), "{err}");
    assert_eq!(describe().await, (4, 10), "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fired_schedule_sets_the_desired_count_without_a_scalable_target() {
    let env = start(SampleOptions::default()).await;
    let ctx = env.local.ctx();
    let policy = kanaria::policy::parse("web", &format!("{}{TWO_SCHEDULES}", env.sample.policy_yaml)).unwrap();
    policy_sync::sync_service(ctx, "demo/web", PolicyState::Valid(&policy)).await.unwrap();
    let service = env.sample.policy.service.clone();
    let desired = move || {
        let service = service.clone();
        async move { kanaria::aws::scaling::capacity(&ctx.clients.ecs, &service).await.unwrap().desired }
    };
    assert_eq!(desired().await, 2);

    let out = fire(&env, "kanaria.demo.web.night").await.expect("the scale function succeeded");
    assert_eq!(out["applied"], "desiredCount", "{out}");
    assert_eq!(desired().await, 3, "read back from ECS");
    assert_eq!(out["before"], json!({"desiredCount": 2}));

    // min/max without a scalable target: a clear error and a notice, nothing changed.
    env.local.notices().await.unwrap();
    let err = fire(&env, "kanaria.demo.web.weekday-peak").await.unwrap_err();
    assert_eq!(err.error_type, "Kanaria.ScheduledScaleFailed");
    assert!(err.message.contains("has no Application Auto Scaling scalable target"), "{err}");
    assert!(err.message.contains("fix: register a scalable target for the service, or give the schedule desiredCount"), "{err}");
    assert_eq!(desired().await, 3);
    assert_eq!(notice_subjects(&env).await, vec!["kanaria: scheduled scaling of demo/web failed (weekday-peak)"]);
    let runs = kanaria::aws::scale_log::recent(&ctx.clients.dynamodb, &ctx.settings.table, "demo/web", 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(), vec!["FAILED", "APPLIED"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_schedules_fail_once_with_a_notice() {
    let env = start(SampleOptions::default()).await;
    // A service that does not exist.
    let err = env
        .local
        .shared
        .invoke(Function::ScheduledScale, json!({"service": "demo/gone", "schedule": "peak", "desiredCount": 2}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "Kanaria.ScheduledScaleFailed");
    assert!(err.message.contains("does not exist"), "{err}");
    assert!(err.message.contains("check the policy's service.cluster and service.name"), "{err}");
    // Not a scaling action at all.
    let err = env.local.shared.invoke(Function::ScheduledScale, json!({"service": "demo/web", "nonsense": true})).await.unwrap_err();
    assert_eq!(err.error_type, "Kanaria.InvalidInput");
    let err = env
        .local
        .shared
        .invoke(Function::ScheduledScale, json!({"service": "demo/web", "schedule": "x", "minCapacity": 5, "maxCapacity": 1}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "Kanaria.InvalidInput");
    assert!(err.message.contains("minCapacity 5 is above maxCapacity 1"), "{err}");
    // One notice per failure, and each invocation ran once.
    let mut subjects = notice_subjects(&env).await;
    subjects.sort();
    assert_eq!(
        subjects,
        vec![
            "kanaria: scheduled scaling of demo/gone failed (peak)",
            "kanaria: scheduled scaling of demo/web failed ((unknown schedule))",
            "kanaria: scheduled scaling of demo/web failed (x)"
        ]
    );
    assert_eq!(env.results_of(Function::ScheduledScale).len(), 3);
    assert_eq!(kanaria::aws::scaling::capacity(&env.local.ctx().clients.ecs, &env.sample.policy.service).await.unwrap().desired, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_during_an_in_flight_canary_leaves_its_weights_alone() {
    let env = start(SampleOptions { steps: vec![(10, 600), (50, 600)], ..SampleOptions::default() }).await;
    let ctx = env.local.ctx();
    let policy = kanaria::policy::parse("web", &format!("{}{TWO_SCHEDULES}", env.sample.policy_yaml)).unwrap();
    policy_sync::sync_service(ctx, "demo/web", PolicyState::Valid(&policy)).await.unwrap();

    env.push("v2", &fixture::new_digest("scheduled")).await;
    let execution = env.started_execution().await;
    env.wait_action("shift", 1).await;
    let weights = env.weights().await;
    assert_eq!(Env::weight_of(&weights, &env.sample.target_groups[1]), 10, "{weights:?}");
    let sets_before: Vec<(String, f64)> = env.task_sets().await.into_iter().map(|t| (t.id, t.scale_percent)).collect();
    assert_eq!(sets_before.len(), 2, "{sets_before:?}");

    let out = fire(&env, "kanaria.demo.web.night").await.expect("the scale function succeeded during the canary");
    assert_eq!(out["rolloutInFlight"], true, "{out}");
    assert_eq!(out["after"], json!({"desiredCount": 3}));
    assert!(out["summary"].as_str().unwrap().contains("traffic weights unchanged"), "{out}");

    // Traffic, task sets and the rollout are as they were.
    assert_eq!(env.weights().await, weights, "listener weights untouched");
    let sets_after: Vec<(String, f64)> = env.task_sets().await.into_iter().map(|t| (t.id, t.scale_percent)).collect();
    assert_eq!(sets_after, sets_before, "task sets and their scale percentages untouched");
    let lock = env.store().lock("demo/web").await.unwrap().expect("the rollout is still in flight");
    assert_eq!(lock.status, kanaria::aws::store::IN_FLIGHT);
    let status = env.executions().await.into_iter().find(|(arn, _)| *arn == execution).map(|(_, s)| s);
    assert_eq!(status.as_deref(), Some("RUNNING"));

    // Each task set follows the new desired count by its percentage (ECS's part, played here by
    // the simulator), and the weights still have not moved.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut settled = true;
        for (id, percent) in &sets_after {
            let want = (3.0 * percent / 100.0).ceil() as u32;
            let running = kanaria::aws::ecs::running_tasks_of(&ctx.clients.ecs, "demo", id).await.unwrap();
            settled &= running == want;
        }
        if settled {
            break;
        }
        assert!(Instant::now() < deadline, "task sets did not follow the desired count of 3");
        // Re-reads ECS (the condition) until the simulator has caught up.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(env.weights().await, weights);
    assert_eq!(env.shifted_weights(), vec![10], "no further shift happened");
}

#[test]
fn the_template_lets_scheduler_invoke_only_the_scale_function_and_never_retries_it_blindly() {
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(include_str!("../template.yaml")).unwrap();
    let resources = &template["Resources"];
    let getatt = |v: &serde_yaml_ng::Value| match v {
        serde_yaml_ng::Value::Tagged(t) if t.tag == "GetAtt" => t.value.as_str().unwrap().to_string(),
        other => panic!("not a !GetAtt: {other:?}"),
    };
    let role = &resources["SchedulerRole"]["Properties"];
    assert_eq!(role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"], "scheduler.amazonaws.com");
    let statements = role["Policies"][0]["PolicyDocument"]["Statement"].as_sequence().unwrap();
    let invoke = statements.iter().find(|s| s["Action"] == "lambda:InvokeFunction").unwrap();
    assert_eq!(getatt(&invoke["Resource"]), "ScheduledScaleFunction.Arn");
    let scale = &resources["ScheduledScaleFunction"];
    assert_eq!(scale["Metadata"]["BuildProperties"]["Binary"], Function::ScheduledScale.crate_name());
    let config = &scale["Properties"]["EventInvokeConfig"];
    assert_eq!(config["MaximumRetryAttempts"].as_u64(), Some(0));
    assert_eq!(getatt(&config["DestinationConfig"]["OnFailure"]["Destination"]), "SchedulerDeadLetterQueue.Arn");
    let sync = &resources["PolicySyncFunction"];
    assert_eq!(sync["Metadata"]["BuildProperties"]["Binary"], Function::PolicySync.crate_name());
    let vars = &sync["Properties"]["Environment"]["Variables"];
    assert_eq!(getatt(&vars["KANARIA_SCALE_FUNCTION_ARN"]), "ScheduledScaleFunction.Arn");
    assert_eq!(getatt(&vars["KANARIA_SCHEDULER_ROLE_ARN"]), "SchedulerRole.Arn");
    assert_eq!(getatt(&vars["KANARIA_SCHEDULER_DLQ_ARN"]), "SchedulerDeadLetterQueue.Arn");
    assert_eq!(template["Parameters"]["ScheduleGroupName"]["Default"], kanaria::aws::scheduler::DEFAULT_GROUP);
}

#[test]
fn policy_validate_reports_each_schedule_problem_with_its_path_and_fix() {
    let dir = std::env::temp_dir().join(format!("kanaria-validate-schedules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/example.yaml")).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        format!(
            "{example}schedules:\n  - {{ name: peak, cron: \"0 8 * * MON-FRI *\", timezone: Asia/Tokio, minCapacity: 9, maxCapacity: 3 }}\n  - {{ name: peak, cron: \"0 25 * * ? *\", timezone: UTC, desiredCount: 1 }}\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kanaria"))
        .args(["policy", "validate", "--offline", file.to_str().unwrap(), "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems: Vec<(&str, &str)> =
        report[0]["problems"].as_array().unwrap().iter().map(|p| (p["path"].as_str().unwrap(), p["message"].as_str().unwrap())).collect();
    let paths: Vec<&str> = problems.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        paths,
        vec!["schedules[0].timezone", "schedules[0].cron", "schedules[0].minCapacity", "schedules[1].name", "schedules[1].cron"]
    );
    assert!(problems[1].1.contains("day-of-month (*) and day-of-week (MON-FRI) are both given"), "{problems:?}");
    assert!(problems[4].1.contains("25 is outside the hours range 0-23"), "{problems:?}");
    assert!(report[0]["problems"].as_array().unwrap().iter().all(|p| !p["fix"].as_str().unwrap().is_empty()));
}

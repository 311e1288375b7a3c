//! Unit tests of the pure rollout decisions: every action, every transition, and whole rollouts
//! driven through `decide` against a tiny in-memory world that applies each `Command` the way
//! ECS, the ALB and kanaria's lock would.

use super::*;
use crate::events::{FailureKind, TaskFailure};
use crate::policy::{self, Policy};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const TG_A: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067";
const TG_B: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2453ed029918f21f";
/// A real-looking target group that the policy does not name.
const TG_FOREIGN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-legacy/0f3c8e1a9b7d6c54";

// Rollout ids as on-image-push makes them (16 hex digits): every task set kanaria creates
// carries one as its externalId.
const ROLLOUT_ID: &str = "9f2c4e1a7b3d5e60";
const OTHER_ROLLOUT_ID: &str = "0aa1bb2cc3dd4ee5";
/// The id of a rollout before this one (its task sets are kanaria's).
const EARLIER_ROLLOUT_ID: &str = "e0e1e2e3e4e5e6e7";
/// The externalId with which the team handed its first task set over to kanaria.
const HANDED_OVER: &str = "kanaria-initial";
const STABLE_TD: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:41";
const NEW_TD: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:42";
const DIGEST: &str = "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270";
const NOW: u64 = 1_700_000_000;

/// Steps 10% (bake 1m), 50% (bake 2m), 100% (bake 3m); stabilization 5m; drain 45s.
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
      - { weight: 10, bake: 1m }
      - { weight: 50, bake: 2m }
      - { weight: 100, bake: 3m }
stabilizationTimeout: 5m
drain: 45s
"#;

fn test_policy() -> Policy {
    policy::parse("rollout-tests", POLICY).expect("the test policy is valid")
}

fn image_uri() -> String {
    format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web@{DIGEST}")
}

fn task_set_arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:task-set/prod/web/{id}")
}

/// [`super::decide`] with what the adapters would read of target health where a test does not
/// say: a task set's running tasks are healthy targets when ECS reports it STEADY_STATE.
fn decide(action: Action, rollout: &Rollout, obs: &Observation, now: u64) -> Result<Decision, Halt> {
    let mut obs = obs.clone();
    for set in obs.task_sets.clone() {
        if !obs.target_health.iter().any(|(id, _)| *id == set.id) {
            let running = obs.green_running(&set);
            let healthy = if set.stability == Some(Stability::SteadyState) { running } else { 0 };
            obs.target_health.push((set.id.clone(), TargetHealth { running_tasks: running, healthy }));
        }
    }
    super::decide(action, rollout, &obs, now)
}

const STABLE_ID: &str = "ecs-svc/1111111111111111111";
const GREEN_ID: &str = "ecs-svc/2222222222222222222";
const LEFTOVER_ID: &str = "ecs-svc/3333333333333333333";

fn view(id: &str, status: &str, tg: Option<&str>, td: &str, external_id: Option<&str>) -> TaskSetView {
    TaskSetView {
        id: id.to_string(),
        arn: task_set_arn(id),
        external_id: external_id.map(str::to_string),
        status: status.to_string(),
        target_group_arn: tg.map(str::to_string),
        task_definition_arn: td.to_string(),
        scale_percent: 100.0,
        computed_desired_count: Some(4),
        running_count: Some(4),
        pending_count: Some(0),
        stability: Some(Stability::SteadyState),
    }
}

/// The primary task set on TG_A, all 4 tasks running; the team handed it over to kanaria.
fn stable_view() -> TaskSetView {
    view(STABLE_ID, "PRIMARY", Some(TG_A), STABLE_TD, Some(HANDED_OVER))
}

/// This rollout's task set on TG_B, all 4 tasks running.
fn green_view() -> TaskSetView {
    view(GREEN_ID, "ACTIVE", Some(TG_B), NEW_TD, Some(ROLLOUT_ID))
}

fn stable_ref() -> TaskSetRef {
    TaskSetRef { id: STABLE_ID.into(), arn: task_set_arn(STABLE_ID), target_group_arn: TG_A.into() }
}

fn green_ref_() -> TaskSetRef {
    TaskSetRef { id: GREEN_ID.into(), arn: task_set_arn(GREEN_ID), target_group_arn: TG_B.into() }
}

fn weights(a: u32, b: u32) -> Vec<(String, u32)> {
    vec![(TG_A.to_string(), a), (TG_B.to_string(), b)]
}

/// A rollout as on-image-push starts it: nothing known about task sets yet.
fn new_rollout() -> Rollout {
    let image = Image { repository: "team/web".into(), tag: Some("v1.4.0".into()), digest: DIGEST.into(), uri: image_uri() };
    Rollout::new(ROLLOUT_ID.into(), test_policy(), image)
}

/// A rollout whose green task set exists (created a minute ago) and is ready.
fn canary_rollout() -> Rollout {
    Rollout {
        task_definition_arn: Some(NEW_TD.into()),
        stable: Some(stable_ref()),
        green: Some(green_ref_()),
        green_created_at: Some(NOW - 60),
        ..new_rollout()
    }
}

/// The service before a rollout: one primary task set on TG_A taking all traffic; our lock.
fn fresh_obs() -> Observation {
    Observation {
        desired_count: 4,
        task_sets: vec![stable_view()],
        weights: weights(100, 0),
        revision_with_image: None,
        green_running: 0,
        failures: vec![],
        lock_holder: Some(ROLLOUT_ID.into()),
        ..Observation::default()
    }
}

/// The service mid-canary: stable and green, `green_weight` percent on green; our lock.
fn canary_obs(green_weight: u32) -> Observation {
    Observation { task_sets: vec![stable_view(), green_view()], weights: weights(100 - green_weight, green_weight), ..fresh_obs() }
}

fn failure(task: &str, code: i64) -> TaskFailure {
    TaskFailure {
        task_arn: format!("arn:aws:ecs:us-east-1:123456789012:task/prod/{task}"),
        kind: FailureKind::ContainerExited,
        stopped_reason: "Essential container in task exited".into(),
        exit_codes: vec![("app".into(), code)],
        version: 3,
    }
}

fn ok(action: Action, rollout: &Rollout, obs: &Observation, now: u64) -> Decision {
    decide(action, rollout, obs, now).unwrap_or_else(|halt| panic!("{action:?} halted: {halt}"))
}

fn halt(action: Action, rollout: &Rollout, obs: &Observation) -> Halt {
    match decide(action, rollout, obs, NOW) {
        Err(h) => h,
        Ok(d) => panic!("{action:?} should have halted, decided {d:?}"),
    }
}

fn not_ready(h: Halt) -> String {
    match h {
        Halt::NotReady(m) => m,
        other => panic!("expected NotReady, got {other:?}"),
    }
}

fn superseded(h: Halt) -> String {
    match h {
        Halt::Superseded(m) => m,
        other => panic!("expected Superseded, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// CreateGreen
// ---------------------------------------------------------------------------------------------

#[test]
fn create_green_without_primary_task_set_is_not_ready() {
    let mut obs = fresh_obs();
    obs.task_sets[0].status = "ACTIVE".into();
    let msg = not_ready(halt(Action::CreateGreen, &new_rollout(), &obs));
    assert!(msg.contains("prod/web has no primary task set"), "{msg}");
    assert!(msg.contains("EXTERNAL"), "{msg}");

    let empty = Observation { task_sets: vec![], ..fresh_obs() };
    assert!(matches!(halt(Action::CreateGreen, &new_rollout(), &empty), Halt::NotReady(_)));
}

#[test]
fn create_green_primary_without_target_group_is_not_ready() {
    let mut obs = fresh_obs();
    obs.task_sets[0].target_group_arn = None;
    let msg = not_ready(halt(Action::CreateGreen, &new_rollout(), &obs));
    assert!(msg.contains(STABLE_ID) && msg.contains("no load balancer target group"), "{msg}");
}

#[test]
fn create_green_primary_target_group_not_in_policy_is_not_ready() {
    let mut obs = fresh_obs();
    obs.task_sets[0].target_group_arn = Some(TG_FOREIGN.into());
    obs.weights = vec![(TG_FOREIGN.into(), 100)];
    let msg = not_ready(halt(Action::CreateGreen, &new_rollout(), &obs));
    assert!(msg.contains(TG_FOREIGN), "{msg}");
    assert!(msg.contains("traffic.targetGroups"), "{msg}");
}

#[test]
fn create_green_without_the_lock_is_superseded() {
    let mut obs = fresh_obs();
    obs.lock_holder = Some(OTHER_ROLLOUT_ID.into());
    let h = halt(Action::CreateGreen, &new_rollout(), &obs);
    assert_eq!(h.error_type(), "Kanaria.Superseded");
    let msg = superseded(h);
    assert!(msg.contains(ROLLOUT_ID) && msg.contains(OTHER_ROLLOUT_ID) && msg.contains("prod/web"), "{msg}");

    // The lock check comes before anything else: even a broken service reports Superseded.
    obs.task_sets.clear();
    obs.lock_holder = None;
    let msg = superseded(halt(Action::CreateGreen, &new_rollout(), &obs));
    assert!(msg.contains("held by nobody"), "{msg}");
}

#[test]
fn create_green_registers_the_revision_first() {
    let d = ok(Action::CreateGreen, &new_rollout(), &fresh_obs(), NOW);
    assert_eq!(
        d.commands,
        vec![Command::RegisterTaskDefinition { based_on: STABLE_TD.into(), container: "app".into(), image: image_uri() }]
    );
    // The stable task set is the primary; nothing is created yet, so no verdict.
    assert_eq!(d.rollout.stable, Some(stable_ref()));
    assert_eq!(d.rollout.green, None);
    assert_eq!(d.rollout.verdict, None);
}

#[test]
fn create_green_creates_the_task_set_on_the_other_target_group() {
    let obs = Observation { revision_with_image: Some(NEW_TD.into()), ..fresh_obs() };
    let d = ok(Action::CreateGreen, &new_rollout(), &obs, NOW);
    assert_eq!(
        d.commands,
        vec![Command::CreateTaskSet { task_definition_arn: NEW_TD.into(), target_group_arn: TG_B.into(), external_id: ROLLOUT_ID.into() }]
    );
    assert_eq!(d.rollout.verdict, None);
    assert_eq!(d.rollout.green, None, "green is recorded only once it is read back");
}

#[test]
fn create_green_alternates_target_groups() {
    // After an earlier rollout the primary lives on the policy's second target group: the new
    // task set goes to the first.
    let obs = Observation {
        task_sets: vec![view(STABLE_ID, "PRIMARY", Some(TG_B), STABLE_TD, Some(EARLIER_ROLLOUT_ID))],
        weights: weights(0, 100),
        revision_with_image: Some(NEW_TD.into()),
        ..fresh_obs()
    };
    let d = ok(Action::CreateGreen, &new_rollout(), &obs, NOW);
    assert_eq!(
        d.commands,
        vec![Command::CreateTaskSet { task_definition_arn: NEW_TD.into(), target_group_arn: TG_A.into(), external_id: ROLLOUT_ID.into() }]
    );
    assert_eq!(d.rollout.stable.as_ref().map(|s| s.target_group_arn.as_str()), Some(TG_B));
}

#[test]
fn create_green_retry_finds_the_task_set_it_created() {
    let mut obs = canary_obs(0);
    obs.task_sets[1].running_count = Some(0);
    let d = ok(Action::CreateGreen, &new_rollout(), &obs, NOW);
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert_eq!(d.rollout.green, Some(green_ref_()));
    assert_eq!(d.rollout.stable, Some(stable_ref()));
    assert_eq!(d.rollout.task_definition_arn.as_deref(), Some(NEW_TD));
    assert_eq!(d.rollout.green_created_at, Some(NOW));
    assert_eq!(d.rollout.checks, 0);
    assert_eq!(d.rollout.wait_seconds, readiness_poll_seconds(0));
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));

    // A retry keeps the original creation time (the stabilization timeout runs from it).
    let again = ok(Action::CreateGreen, &d.rollout, &obs, NOW + 30);
    assert!(again.commands.is_empty());
    assert_eq!(again.rollout.green_created_at, Some(NOW));
}

#[test]
fn create_green_retry_is_done_even_when_traffic_has_moved() {
    // The listener no longer sends 100% to stable, but that is our own task set getting it.
    let d = ok(Action::CreateGreen, &new_rollout(), &canary_obs(10), NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
}

#[test]
fn create_green_ignores_a_draining_task_set_of_its_own() {
    let mut obs = canary_obs(0);
    obs.task_sets[1].status = "DRAINING".into();
    obs.revision_with_image = Some(NEW_TD.into());
    let d = ok(Action::CreateGreen, &new_rollout(), &obs, NOW);
    assert_eq!(
        d.commands,
        vec![Command::CreateTaskSet { task_definition_arn: NEW_TD.into(), target_group_arn: TG_B.into(), external_id: ROLLOUT_ID.into() }]
    );
    assert_eq!(d.rollout.verdict, None);
}

#[test]
fn create_green_deletes_idle_leftovers_before_anything_else() {
    let obs = Observation {
        task_sets: vec![
            stable_view(),
            view(LEFTOVER_ID, "ACTIVE", Some(TG_B), STABLE_TD, Some(EARLIER_ROLLOUT_ID)),
            view("ecs-svc/4444444444444444444", "ACTIVE", None, STABLE_TD, Some("kanaria-old")),
        ],
        revision_with_image: Some(NEW_TD.into()),
        ..fresh_obs()
    };
    let d = ok(Action::CreateGreen, &new_rollout(), &obs, NOW);
    assert_eq!(
        d.commands,
        vec![
            Command::DeleteTaskSet { task_set_id: LEFTOVER_ID.into() },
            Command::DeleteTaskSet { task_set_id: "ecs-svc/4444444444444444444".into() },
        ],
        "leftovers go first, alone in their round"
    );
    assert_eq!(d.rollout.verdict, None);
}

#[test]
fn create_green_never_deletes_a_task_set_kanaria_did_not_create() {
    // Another tool's idle set, one without an externalId, and the team's first set scaled to 0
    // by the promotion that replaced it (on the target group the new set now goes to): left alone.
    let mut replaced = view("ecs-svc/5555555555555555555", "ACTIVE", Some(TG_B), STABLE_TD, Some("initial"));
    replaced.scale_percent = 0.0;
    let obs = Observation {
        task_sets: vec![
            stable_view(),
            view(LEFTOVER_ID, "ACTIVE", None, STABLE_TD, Some("ecs-deploy-tool")),
            view("ecs-svc/4444444444444444444", "ACTIVE", Some(TG_FOREIGN), STABLE_TD, None),
            replaced,
        ],
        revision_with_image: Some(NEW_TD.into()),
        ..fresh_obs()
    };
    let d = ok(Action::CreateGreen, &new_rollout(), &obs, NOW);
    assert_eq!(
        d.commands,
        vec![Command::CreateTaskSet { task_definition_arn: NEW_TD.into(), target_group_arn: TG_B.into(), external_id: ROLLOUT_ID.into() }]
    );

    // One that runs tasks on the new set's target group would serve its canary traffic: halt,
    // saying how to remove it, rather than delete it.
    let mut obs = obs;
    obs.task_sets[3].scale_percent = 100.0;
    let msg = not_ready(halt(Action::CreateGreen, &new_rollout(), &obs));
    assert!(msg.contains("ecs-svc/5555555555555555555") && msg.contains("externalId initial"), "{msg}");
    assert!(msg.contains("aws ecs delete-task-set --cluster prod --service web --task-set ecs-svc/5555555555555555555"), "{msg}");
}

#[test]
fn kanarias_external_ids_are_rollout_ids_and_handed_over_ones() {
    assert!(is_kanarias(Some(ROLLOUT_ID)) && is_kanarias(Some("kanaria-initial")));
    for theirs in [None, Some(""), Some("initial"), Some("ecs-svc/1"), Some("9F2C4E1A7B3D5E60"), Some("9f2c4e1a7b3d5e6"), Some("kanaria")] {
        assert!(!is_kanarias(theirs), "{theirs:?}");
    }
}

#[test]
fn create_green_ignores_draining_leftovers() {
    let obs = Observation {
        task_sets: vec![stable_view(), view(LEFTOVER_ID, "DRAINING", Some(TG_B), STABLE_TD, Some(EARLIER_ROLLOUT_ID))],
        ..fresh_obs()
    };
    let d = ok(Action::CreateGreen, &new_rollout(), &obs, NOW);
    assert!(matches!(d.commands.as_slice(), [Command::RegisterTaskDefinition { .. }]), "{:?}", d.commands);
}

#[test]
fn create_green_refuses_a_leftover_that_gets_traffic() {
    // A second task set behind the stable target group shares its 100%.
    let obs = Observation {
        task_sets: vec![stable_view(), view(LEFTOVER_ID, "ACTIVE", Some(TG_A), STABLE_TD, Some(EARLIER_ROLLOUT_ID))],
        revision_with_image: Some(NEW_TD.into()),
        ..fresh_obs()
    };
    let msg = not_ready(halt(Action::CreateGreen, &new_rollout(), &obs));
    assert!(msg.contains(LEFTOVER_ID) && msg.contains("still receives traffic"), "{msg}");
}

#[test]
fn create_green_needs_all_traffic_on_stable() {
    let obs = Observation {
        task_sets: vec![stable_view(), view(LEFTOVER_ID, "ACTIVE", Some(TG_B), STABLE_TD, Some(EARLIER_ROLLOUT_ID))],
        weights: weights(90, 10),
        revision_with_image: Some(NEW_TD.into()),
        ..fresh_obs()
    };
    let h = halt(Action::CreateGreen, &new_rollout(), &obs);
    assert_eq!(h.error_type(), "Kanaria.ServiceNotReady");
    let msg = not_ready(h);
    assert!(msg.contains("does not send 100%") && msg.contains(TG_A), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// CheckGreen
// ---------------------------------------------------------------------------------------------

#[test]
fn check_green_waits_with_backing_off_polls_while_tasks_start() {
    let mut obs = canary_obs(0);
    obs.task_sets[1].running_count = Some(1);
    for (checks, wait) in [(0, 2), (1, 5), (2, 10), (3, 15), (9, 15)] {
        let r = Rollout { checks, ..canary_rollout() };
        let d = ok(Action::CheckGreen, &r, &obs, NOW);
        assert!(d.commands.is_empty());
        assert_eq!(d.rollout.verdict, Some(Verdict::Wait), "checks={checks}");
        assert_eq!(d.rollout.wait_seconds, wait, "checks={checks}");
        assert_eq!(d.rollout.checks, checks + 1);
        assert_eq!(d.rollout.cause, None);
    }
}

#[test]
fn check_green_is_ready_once_all_tasks_run() {
    let d = ok(Action::CheckGreen, &canary_rollout(), &canary_obs(0), NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Ready));
    assert_eq!(d.rollout.checks, 1);

    // More running than expected (a replacement started before the old one stopped) is ready too.
    let mut obs = canary_obs(0);
    obs.task_sets[1].running_count = Some(5);
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Ready));
}

#[test]
fn check_green_counts_tasks_itself_when_ecs_reports_no_running_count() {
    let mut obs = canary_obs(0);
    obs.task_sets[1].running_count = None;
    obs.green_running = 3;
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Wait));
    obs.green_running = 4;
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Ready));
}

#[test]
fn check_green_expects_ecs_computed_desired_count_when_reported() {
    // The service wants 10, but ECS computed 2 for the task set: 2 running is ready.
    let mut obs = canary_obs(0);
    obs.desired_count = 10;
    obs.task_sets[1].computed_desired_count = Some(2);
    obs.task_sets[1].running_count = Some(2);
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Ready));
    obs.task_sets[1].running_count = Some(1);
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Wait));
}

#[test]
fn check_green_expects_scaled_desired_count_rounded_up_otherwise() {
    // 5 tasks at 50% is 2.5: ECS runs 3.
    let mut obs = canary_obs(0);
    obs.desired_count = 5;
    obs.task_sets[1].scale_percent = 50.0;
    obs.task_sets[1].computed_desired_count = None;
    obs.task_sets[1].running_count = None;
    obs.green_running = 2;
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Wait));
    // The timeout message names the expected figure.
    let late = Rollout { green_created_at: Some(NOW - 300), ..canary_rollout() };
    let cause = ok(Action::CheckGreen, &late, &obs, NOW).rollout.cause.unwrap();
    assert!(cause.contains("2 of 3 tasks of task set"), "{cause}");
    obs.green_running = 3;
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Ready));
}

#[test]
fn a_scale_out_during_the_bake_is_not_a_failure_of_the_release() {
    // Target tracking raised the desired count from 4 to 6 during the bake: 2 new tasks are
    // starting when Verify runs. No task failed: the step passes.
    let mut obs = canary_obs(10);
    obs.desired_count = 6;
    obs.task_sets[1].computed_desired_count = Some(6);
    obs.task_sets[1].pending_count = Some(2);
    let r = Rollout { weight: 10, step: 0, ..canary_rollout() };
    assert_eq!(ok(Action::Verify, &r, &obs, NOW).rollout.verdict, Some(Verdict::NextStep));
    // Tasks neither running nor starting are missing.
    obs.task_sets[1].pending_count = Some(0);
    let d = ok(Action::Verify, &r, &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert!(d.rollout.cause.as_deref().is_some_and(|c| c.contains("4 of 6 tasks") && c.contains("0 starting")), "{:?}", d.rollout.cause);
    // And a set that runs nothing cannot serve.
    obs.task_sets[1].running_count = Some(0);
    obs.task_sets[1].pending_count = Some(6);
    assert_eq!(ok(Action::Verify, &r, &obs, NOW).rollout.verdict, Some(Verdict::Rollback));
}

#[test]
fn check_green_waits_until_every_new_task_is_a_healthy_target() {
    // All 4 tasks RUNNING, but ECS still reports STABILIZING: the ALB would answer 503 for
    // requests sent to targets that are still `initial`.
    let mut obs = canary_obs(0);
    obs.task_sets[1].stability = Some(Stability::Stabilizing);
    let d = ok(Action::CheckGreen, &canary_rollout(), &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Wait));
    // STEADY_STATE, but target health read back says 3 of 4 healthy.
    let mut obs = canary_obs(0);
    obs.target_health = vec![(GREEN_ID.into(), TargetHealth { running_tasks: 4, healthy: 3 })];
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Wait));
    let late = Rollout { green_created_at: Some(NOW - 300), ..canary_rollout() };
    let cause = ok(Action::CheckGreen, &late, &obs, NOW).rollout.cause.unwrap();
    assert!(cause.contains("3 of 4 targets of task set ecs-svc/2222222222222222222 are healthy"), "{cause}");
    obs.target_health = vec![(GREEN_ID.into(), TargetHealth { running_tasks: 4, healthy: 4 })];
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Ready));
}

#[test]
fn a_rollback_moves_traffic_only_to_a_stable_task_set_that_serves() {
    // The stable task set was scaled to 0 (a promote that broke off after scaling it down).
    let mut obs = canary_obs(100);
    obs.task_sets[0].scale_percent = 0.0;
    obs.task_sets[0].computed_desired_count = Some(0);
    obs.task_sets[0].running_count = Some(0);
    obs.task_sets[0].stability = Some(Stability::SteadyState);
    let r = Rollout { weight: 100, cause: Some("alarm".into()), ..canary_rollout() };
    // First the stable task set is scaled up; nothing else moves.
    let d = ok(Action::Rollback, &r, &obs, NOW);
    assert_eq!(d.commands, vec![Command::ScaleTaskSet { task_set_id: STABLE_ID.into(), percent: 100.0 }]);
    // Its tasks are starting: traffic stays on the new task set, the rollout waits.
    obs.task_sets[0].scale_percent = 100.0;
    obs.task_sets[0].computed_desired_count = Some(4);
    obs.task_sets[0].running_count = Some(2);
    obs.task_sets[0].stability = Some(Stability::Stabilizing);
    let d = ok(Action::Rollback, &r, &obs, NOW);
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert_eq!(d.rollout.verdict, Some(Verdict::Wait));
    assert!(d.rollout.waiting_for.as_deref().is_some_and(|w| w.contains("2 of 4 tasks")), "{:?}", d.rollout.waiting_for);
    // Running, but not yet healthy in the target group: still waiting.
    obs.task_sets[0].running_count = Some(4);
    obs.task_sets[0].stability = Some(Stability::SteadyState);
    obs.target_health = vec![(STABLE_ID.into(), TargetHealth { running_tasks: 4, healthy: 1 })];
    let waiting = ok(Action::Rollback, &d.rollout, &obs, NOW + 10).rollout;
    assert_eq!(waiting.verdict, Some(Verdict::Wait));
    // Serving: all traffic back, read back, and only then the new task set goes.
    obs.target_health = vec![(STABLE_ID.into(), TargetHealth { running_tasks: 4, healthy: 4 })];
    let d = ok(Action::Rollback, &waiting, &obs, NOW + 20);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(100, 0) }]);
    obs.weights = weights(100, 0);
    let d = ok(Action::Rollback, &waiting, &obs, NOW + 20);
    assert_eq!(d.commands, vec![Command::DeleteTaskSet { task_set_id: GREEN_ID.into() }]);
    // A stable task set that never serves again ends the wait at the stabilization timeout,
    // leaving traffic where it is.
    obs.weights = weights(0, 100);
    obs.task_sets[0].stability = Some(Stability::Stabilizing);
    let halt = super::decide(Action::Rollback, &waiting, &obs, waiting.rollback_started_at.unwrap() + 300).unwrap_err();
    assert!(halt.to_string().contains("did not become ready within 5m") && halt.to_string().contains("100% on the new task set"), "{halt}");
}

#[test]
fn check_green_never_calls_zero_expected_tasks_ready() {
    let mut obs = canary_obs(0);
    obs.desired_count = 0;
    obs.task_sets[1].computed_desired_count = None;
    obs.task_sets[1].running_count = None;
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Wait));
}

#[test]
fn check_green_rolls_back_on_failed_tasks_naming_task_and_exit_code() {
    let mut obs = canary_obs(0);
    obs.failures = vec![failure("0123abcd", 137), failure("4567ef01", 1)];
    // Failures win over "all running".
    let d = ok(Action::CheckGreen, &canary_rollout(), &obs, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    let cause = d.rollout.cause.unwrap();
    assert!(cause.starts_with("2 task(s) of the new task set failed at 0% traffic"), "{cause}");
    assert!(cause.contains("task 0123abcd: Essential container in task exited (app exit 137)"), "{cause}");
    assert!(cause.contains("task 4567ef01") && cause.contains("app exit 1)"), "{cause}");
}

#[test]
fn check_green_rolls_back_at_the_stabilization_timeout() {
    let mut obs = canary_obs(0);
    obs.task_sets[1].running_count = Some(1);
    // stabilizationTimeout is 5m: one second before it, still waiting.
    let r = Rollout { green_created_at: Some(NOW - 299), checks: 12, ..canary_rollout() };
    assert_eq!(ok(Action::CheckGreen, &r, &obs, NOW).rollout.verdict, Some(Verdict::Wait));
    let r = Rollout { green_created_at: Some(NOW - 300), ..r };
    let d = ok(Action::CheckGreen, &r, &obs, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    let cause = d.rollout.cause.unwrap();
    assert!(cause.contains("stabilizationTimeout"), "{cause}");
    assert!(cause.contains("not ready after 5m") && cause.contains("1 of 4 tasks of task set"), "{cause}");

    // Ready just at the timeout is still ready.
    let d = ok(Action::CheckGreen, &r, &canary_obs(0), NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Ready));
}

#[test]
fn check_green_needs_the_green_task_set() {
    let msg = not_ready(halt(Action::CheckGreen, &canary_rollout(), &fresh_obs()));
    assert!(msg.contains(GREEN_ID) && msg.contains("gone"), "{msg}");
    let mut draining = canary_obs(0);
    draining.task_sets[1].status = "DRAINING".into();
    assert!(matches!(halt(Action::CheckGreen, &canary_rollout(), &draining), Halt::NotReady(_)));
    let msg = not_ready(halt(Action::CheckGreen, &new_rollout(), &canary_obs(0)));
    assert!(msg.contains("no new task set"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// Shift
// ---------------------------------------------------------------------------------------------

#[test]
fn shift_sets_the_step_weight_on_the_green_target_group() {
    let r = Rollout { verdict: Some(Verdict::Ready), ..canary_rollout() };
    let d = ok(Action::Shift, &r, &canary_obs(0), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(90, 10) }]);
    // Nothing is recorded until the weights read back; the previous verdict is cleared.
    assert_eq!(d.rollout.verdict, None);
    assert_eq!(d.rollout.weight, 0);
    assert_eq!(d.rollout.step_started_at, None);

    let r = Rollout { step: 1, weight: 10, ..canary_rollout() };
    let d = ok(Action::Shift, &r, &canary_obs(10), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(50, 50) }]);
}

#[test]
fn shift_is_done_once_weights_read_back() {
    let r = Rollout { step: 1, weight: 10, ..canary_rollout() };
    let d = ok(Action::Shift, &r, &canary_obs(50), NOW + 7);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.weight, 50);
    assert_eq!(d.rollout.step_started_at, Some(NOW + 7));
    assert_eq!(d.rollout.wait_seconds, 120, "the 50% step bakes 2m");
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
}

#[test]
fn shift_weights_a_listener_that_forwards_only_to_stable() {
    // A plain forward lists only the stable target group: the green one counts as 0%.
    let mut obs = canary_obs(0);
    obs.weights = vec![(TG_A.into(), 100)];
    let d = ok(Action::Shift, &canary_rollout(), &obs, NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(90, 10) }]);
}

#[test]
fn shift_with_stable_on_the_second_target_group() {
    let r = Rollout {
        stable: Some(TaskSetRef { target_group_arn: TG_B.into(), ..stable_ref() }),
        green: Some(TaskSetRef { target_group_arn: TG_A.into(), ..green_ref_() }),
        ..canary_rollout()
    };
    let d = ok(Action::Shift, &r, &canary_obs(100), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: vec![(TG_B.into(), 90), (TG_A.into(), 10)] }]);
}

#[test]
fn shift_never_moves_traffic_onto_failing_tasks() {
    let mut obs = canary_obs(10);
    obs.failures = vec![failure("0123abcd", 2)];
    let r = Rollout { step: 1, weight: 10, ..canary_rollout() };
    let d = ok(Action::Shift, &r, &obs, NOW);
    assert!(d.commands.is_empty(), "no SetWeights: {:?}", d.commands);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    let cause = d.rollout.cause.unwrap();
    assert!(cause.contains("at 10% traffic") && cause.contains("task 0123abcd") && cause.contains("app exit 2"), "{cause}");
    assert_eq!(d.rollout.weight, 10, "the weight is what the ALB still sends");
}

#[test]
fn shift_without_the_lock_is_superseded() {
    let mut obs = canary_obs(0);
    obs.lock_holder = Some(OTHER_ROLLOUT_ID.into());
    let msg = superseded(halt(Action::Shift, &canary_rollout(), &obs));
    assert!(msg.contains(OTHER_ROLLOUT_ID) && msg.contains("must not move traffic"), "{msg}");
    obs.lock_holder = None;
    assert!(matches!(halt(Action::Shift, &canary_rollout(), &obs), Halt::Superseded(_)));
}

#[test]
fn shift_needs_green_and_stable() {
    assert!(not_ready(halt(Action::Shift, &canary_rollout(), &fresh_obs())).contains("gone"));
    let no_stable = Rollout { stable: None, ..canary_rollout() };
    assert!(not_ready(halt(Action::Shift, &no_stable, &canary_obs(0))).contains("no stable task set"));
}

// ---------------------------------------------------------------------------------------------
// Verify
// ---------------------------------------------------------------------------------------------

#[test]
fn verify_moves_to_the_next_step() {
    let r = Rollout { step: 0, weight: 10, verdict: Some(Verdict::Done), ..canary_rollout() };
    let d = ok(Action::Verify, &r, &canary_obs(10), NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::NextStep));
    assert_eq!(d.rollout.step, 1);
    let d = ok(Action::Verify, &d.rollout, &canary_obs(50), NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::NextStep));
    assert_eq!(d.rollout.step, 2);
}

#[test]
fn verify_after_the_last_step_promotes() {
    let r = Rollout { step: 2, weight: 100, ..canary_rollout() };
    let d = ok(Action::Verify, &r, &canary_obs(100), NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Promote));
    assert_eq!(d.rollout.step, 2);
}

#[test]
fn verify_rolls_back_on_failed_tasks() {
    let mut obs = canary_obs(50);
    obs.failures = vec![failure("89abcdef", 139)];
    let r = Rollout { step: 1, weight: 50, ..canary_rollout() };
    let d = ok(Action::Verify, &r, &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert_eq!(d.rollout.step, 1);
    let cause = d.rollout.cause.unwrap();
    assert!(cause.contains("1 task(s)") && cause.contains("at 50% traffic") && cause.contains("app exit 139"), "{cause}");
}

#[test]
fn verify_rolls_back_when_tasks_are_missing() {
    let mut obs = canary_obs(50);
    obs.task_sets[1].running_count = Some(3);
    let r = Rollout { step: 2, weight: 50, ..canary_rollout() };
    let d = ok(Action::Verify, &r, &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback), "not Promote");
    let cause = d.rollout.cause.unwrap();
    assert!(cause.contains("only 3 of 4 tasks") && cause.contains("after the 50% step"), "{cause}");
}

#[test]
fn verify_needs_the_green_task_set() {
    assert!(matches!(halt(Action::Verify, &canary_rollout(), &fresh_obs()), Halt::NotReady(_)));
}

// ---------------------------------------------------------------------------------------------
// Promote
// ---------------------------------------------------------------------------------------------

#[test]
fn promote_moves_all_traffic_first() {
    let r = Rollout { step: 2, weight: 50, ..canary_rollout() };
    let d = ok(Action::Promote, &r, &canary_obs(50), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(0, 100) }]);
    assert_eq!(d.rollout.verdict, None);
}

#[test]
fn promote_then_makes_green_primary() {
    let d = ok(Action::Promote, &canary_rollout(), &canary_obs(100), NOW);
    assert_eq!(d.commands, vec![Command::MakePrimary { task_set_arn: task_set_arn(GREEN_ID) }]);
}

#[test]
fn promote_then_scales_the_old_task_set_to_zero() {
    let mut obs = canary_obs(100);
    obs.task_sets[0].status = "ACTIVE".into();
    obs.task_sets[1].status = "PRIMARY".into();
    let d = ok(Action::Promote, &canary_rollout(), &obs, NOW);
    assert_eq!(d.commands, vec![Command::ScaleTaskSet { task_set_id: STABLE_ID.into(), percent: 0.0 }]);
}

#[test]
fn promote_ends_the_rollout_by_releasing_the_service_then_waits_for_the_drain() {
    let mut obs = canary_obs(100);
    obs.task_sets[0].status = "ACTIVE".into();
    obs.task_sets[0].scale_percent = 0.0;
    obs.task_sets[1].status = "PRIMARY".into();
    let r = Rollout { weight: 50, wait_seconds: 180, ..canary_rollout() };
    // Promoted: the rollout is done, the lock goes (events stop treating the new primary as a
    // canary; a newer push starts a rollout of its own).
    let d = ok(Action::Promote, &r, &obs, NOW);
    assert_eq!(d.commands, vec![Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() }]);
    obs.lock_holder = None;
    let d = ok(Action::Promote, &r, &obs, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
    assert_eq!(d.rollout.weight, 100);
    assert_eq!(d.rollout.wait_seconds, 45, "drain: 45s");

    // An old task set that is already gone needs no scaling either.
    obs.task_sets.remove(0);
    assert_eq!(ok(Action::Promote, &r, &obs, NOW).rollout.verdict, Some(Verdict::Done));

    // A retry after a newer rollout took the service finds this promotion complete: done,
    // nothing touched. Had it not completed, it would not be this rollout's to finish.
    obs.lock_holder = Some(OTHER_ROLLOUT_ID.into());
    obs.weights = weights(10, 90);
    let d = ok(Action::Promote, &r, &obs, NOW);
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
    let halted = decide(Action::Promote, &r, &canary_obs(50).with_lock(OTHER_ROLLOUT_ID), NOW);
    assert!(matches!(halted, Err(Halt::Superseded(_))), "{halted:?}");
}

#[test]
fn promote_needs_green_and_stable() {
    assert!(not_ready(halt(Action::Promote, &new_rollout(), &canary_obs(50))).contains("no new task set"));
    let no_stable = Rollout { stable: None, ..canary_rollout() };
    assert!(not_ready(halt(Action::Promote, &no_stable, &canary_obs(50))).contains("no stable task set"));
}

#[test]
fn promote_refuses_to_send_all_traffic_to_a_missing_green_task_set() {
    // The green task set was deleted between Verify and Promote; stable still serves 50%.
    let obs = Observation { task_sets: vec![stable_view()], weights: weights(50, 50), ..fresh_obs() };
    let r = Rollout { step: 2, weight: 50, ..canary_rollout() };
    let result = decide(Action::Promote, &r, &obs, NOW);
    assert!(matches!(result, Err(Halt::NotReady(_))), "expected NotReady (the new task set is gone), got {result:?}");
}

// ---------------------------------------------------------------------------------------------
// Finish
// ---------------------------------------------------------------------------------------------

fn promoted_obs() -> Observation {
    let mut obs = canary_obs(100);
    obs.task_sets[0].status = "ACTIVE".into();
    obs.task_sets[0].scale_percent = 0.0;
    obs.task_sets[1].status = "PRIMARY".into();
    obs
}

#[test]
fn finish_deletes_only_the_task_set_this_rollout_replaced_and_never_touches_the_lock() {
    let r = Rollout { weight: 100, ..canary_rollout() };
    let mut obs = promoted_obs();
    obs.lock_holder = None;
    obs.task_sets.push(view(LEFTOVER_ID, "ACTIVE", None, STABLE_TD, None));
    let d = ok(Action::Finish, &r, &obs, NOW);
    assert_eq!(d.commands, vec![Command::DeleteTaskSet { task_set_id: STABLE_ID.into() }], "the leftover is the next rollout's to remove");
    assert_eq!(d.rollout.verdict, None);

    obs.task_sets.retain(|t| t.id != STABLE_ID);
    let d = ok(Action::Finish, &r, &obs, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
    // A newer rollout holds the service by now: still nothing of ours to release.
    obs.lock_holder = Some(OTHER_ROLLOUT_ID.into());
    assert_eq!(ok(Action::Finish, &r, &obs, NOW).rollout.verdict, Some(Verdict::Done));
}

#[test]
fn finish_never_deletes_a_replaced_task_set_kanaria_did_not_create() {
    let r = Rollout { weight: 100, ..canary_rollout() };
    for theirs in [None, Some("initial")] {
        let mut obs = promoted_obs();
        obs.lock_holder = None;
        obs.task_sets[0].external_id = theirs.map(str::to_string);
        let d = ok(Action::Finish, &r, &obs, NOW);
        assert!(d.commands.is_empty(), "{theirs:?}: {:?}", d.commands);
        assert_eq!(d.rollout.verdict, Some(Verdict::Done));
        assert_eq!(kept_after_finish(&r, &obs).map(|t| t.id.as_str()), Some(STABLE_ID));
    }
    // kanaria's own is deleted, and nothing is reported kept.
    let obs = Observation { lock_holder: None, ..promoted_obs() };
    assert_eq!(kept_after_finish(&r, &obs), None);
}

#[test]
fn rollbacks_delete_only_task_sets_with_this_rollouts_external_id() {
    // A rollout input naming someone else's task set as its green one (a set without kanaria's
    // externalId): the rollback moves traffic back, never deletes that set.
    let mut obs = canary_obs(0);
    obs.task_sets[1].external_id = Some("ecs-deploy-tool".into());
    let r = Rollout { step: 1, weight: 10, ..canary_rollout() };
    let d = ok(Action::Rollback, &r, &obs, NOW);
    assert!(!d.commands.iter().any(|c| matches!(c, Command::DeleteTaskSet { .. })), "{:?}", d.commands);
    // Superseded (another rollout holds the lock): the same.
    obs.lock_holder = Some(OTHER_ROLLOUT_ID.into());
    assert!(ok(Action::Rollback, &r, &obs, NOW).commands.is_empty());
    // Before the stable task set was known: the same.
    let early = Rollout { stable: None, ..r };
    obs.lock_holder = Some(ROLLOUT_ID.into());
    assert!(!ok(Action::Rollback, &early, &obs, NOW).commands.iter().any(|c| matches!(c, Command::DeleteTaskSet { .. })));
}

#[test]
fn finish_keeps_the_old_task_set_while_it_gets_traffic() {
    // A newer rollout's canary already sends traffic to the old set's target group.
    let r = Rollout { weight: 100, ..canary_rollout() };
    let mut obs = promoted_obs();
    obs.weights = weights(10, 90);
    let d = ok(Action::Finish, &r, &obs, NOW);
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
}

#[test]
fn finish_ignores_draining_task_sets() {
    let mut obs = promoted_obs();
    obs.task_sets[0].status = "DRAINING".into();
    let d = ok(Action::Finish, &canary_rollout(), &obs, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
}

#[test]
fn finish_never_deletes_a_primary_task_set() {
    // Someone made the old task set primary again by hand: it is not kanaria's to delete.
    let mut obs = promoted_obs();
    obs.task_sets[0].status = "PRIMARY".into();
    obs.task_sets[1].status = "ACTIVE".into();
    obs.weights = weights(0, 100);
    let d = ok(Action::Finish, &canary_rollout(), &obs, NOW);
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert!(not_ready(halt(Action::Finish, &new_rollout(), &promoted_obs())).contains("no stable task set"));
}

// ---------------------------------------------------------------------------------------------
// Rollback
// ---------------------------------------------------------------------------------------------

fn lambda_error(error: &str, message: &str) -> StateError {
    StateError { error: error.into(), cause: serde_json::json!({ "errorType": error, "errorMessage": message, "trace": [] }).to_string() }
}

#[test]
fn rollback_after_scale_down_restores_the_stable_task_set_first() {
    // Promote got as far as scaling the old task set to 0.
    let d = ok(Action::Rollback, &canary_rollout(), &promoted_obs(), NOW);
    assert_eq!(
        d.commands,
        vec![
            Command::ScaleTaskSet { task_set_id: STABLE_ID.into(), percent: 100.0 },
            Command::MakePrimary { task_set_arn: task_set_arn(STABLE_ID) },
        ],
        "no traffic moves before the stable task set is scaled up and primary"
    );
    assert_eq!(d.rollout.verdict, None);
}

#[test]
fn rollback_makes_stable_primary_again_without_scaling_when_not_needed() {
    let mut obs = promoted_obs();
    obs.task_sets[0].scale_percent = 100.0;
    let d = ok(Action::Rollback, &canary_rollout(), &obs, NOW);
    assert_eq!(d.commands, vec![Command::MakePrimary { task_set_arn: task_set_arn(STABLE_ID) }]);
}

#[test]
fn rollback_moves_all_traffic_back_to_stable() {
    let d = ok(Action::Rollback, &canary_rollout(), &canary_obs(50), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(100, 0) }], "and the green task set is kept for now");
}

#[test]
fn rollback_deletes_the_green_task_set_only_once_weights_read_back() {
    let d = ok(Action::Rollback, &canary_rollout(), &canary_obs(0), NOW);
    assert_eq!(d.commands, vec![Command::DeleteTaskSet { task_set_id: GREEN_ID.into() }]);
    assert_eq!(d.rollout.verdict, None);
}

#[test]
fn rollback_deletes_our_task_sets_but_not_others() {
    // A rollout that never recorded its green (it failed in CreateGreen's handler loop) still
    // owns the task set tagged with its id; an unrelated task set is left alone.
    let r = Rollout { green: None, ..canary_rollout() };
    let mut obs = canary_obs(0);
    obs.task_sets.push(view(LEFTOVER_ID, "ACTIVE", None, STABLE_TD, Some(OTHER_ROLLOUT_ID)));
    obs.task_sets.push(view("ecs-svc/5555555555555555555", "DRAINING", Some(TG_B), NEW_TD, Some(ROLLOUT_ID)));
    let d = ok(Action::Rollback, &r, &obs, NOW);
    assert_eq!(d.commands, vec![Command::DeleteTaskSet { task_set_id: GREEN_ID.into() }]);
}

#[test]
fn rollback_releases_the_lock_then_is_done() {
    let r = Rollout { weight: 50, ..canary_rollout() };
    let d = ok(Action::Rollback, &r, &fresh_obs(), NOW);
    assert_eq!(d.commands, vec![Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() }]);
    assert_eq!(d.rollout.verdict, None);

    let released = Observation { lock_holder: None, ..fresh_obs() };
    let d = ok(Action::Rollback, &r, &released, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
    assert_eq!(d.rollout.weight, 0);
}

#[test]
fn rollback_leaves_a_lock_held_by_another_rollout() {
    let obs = Observation { lock_holder: Some(OTHER_ROLLOUT_ID.into()), ..fresh_obs() };
    let d = ok(Action::Rollback, &canary_rollout(), &obs, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
}

#[test]
fn rollback_without_a_known_stable_only_releases_the_lock() {
    // CreateGreen failed before it knew anything: whatever the service looks like, no task set
    // or weight is touched.
    let r = Rollout { error: Some(lambda_error("Kanaria.Superseded", "held by someone else")), ..new_rollout() };
    let d = ok(Action::Rollback, &r, &canary_obs(50), NOW);
    assert_eq!(d.commands, vec![Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() }]);
    let d = ok(Action::Rollback, &r, &Observation { lock_holder: None, ..canary_obs(50) }, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
    assert_eq!(d.rollout.cause.as_deref(), Some("Kanaria.Superseded: held by someone else"));
}

#[test]
fn rollback_cause_comes_from_the_caught_lambda_error() {
    let r = Rollout {
        error: Some(lambda_error("Kanaria.ServiceNotReady", "the new task set ecs-svc/2222 is gone from prod/web; someone deleted it")),
        ..canary_rollout()
    };
    // The cause is set on every decision, including the first (with commands).
    let d = ok(Action::Rollback, &r, &canary_obs(50), NOW);
    assert!(!d.commands.is_empty());
    assert_eq!(
        d.rollout.cause.as_deref(),
        Some("Kanaria.ServiceNotReady: the new task set ecs-svc/2222 is gone from prod/web; someone deleted it")
    );
}

#[test]
fn rollback_keeps_the_cause_a_verdict_gave() {
    let r = Rollout { cause: Some("1 task(s) of the new task set failed".into()), ..canary_rollout() };
    let d = ok(Action::Rollback, &r, &canary_obs(10), NOW);
    assert_eq!(d.rollout.cause.as_deref(), Some("1 task(s) of the new task set failed"));
    let d = ok(Action::Rollback, &canary_rollout(), &canary_obs(10), NOW);
    assert_eq!(d.rollout.cause.as_deref(), Some("rolled back"));
}

#[test]
fn rollback_never_removes_the_last_serving_task_set() {
    // The stable task set has disappeared (deleted by hand); green is PRIMARY with all traffic.
    let obs = Observation {
        task_sets: vec![view(GREEN_ID, "PRIMARY", Some(TG_B), NEW_TD, Some(ROLLOUT_ID))],
        weights: weights(0, 100),
        ..fresh_obs()
    };
    let r = canary_rollout();
    let mut world = World::new(obs);
    let result = (0..MAX_ROUNDS).try_for_each(|_| {
        let d = decide(Action::Rollback, &r, &world.obs, NOW)?;
        d.commands.iter().for_each(|c| world.apply_unchecked(c));
        Ok::<_, Halt>(())
    });
    let _ = result; // Halting is an acceptable answer; what must not happen is below.
    assert!(world.obs.task_sets.iter().any(|t| t.id == GREEN_ID), "the only serving task set was deleted: {:?}", world.obs);
    assert_eq!(world.obs.weight_of(TG_B), 100, "traffic moved to a target group with no task set: {:?}", world.obs.weights);
}

// ---------------------------------------------------------------------------------------------
// cause_from_error, Halt, polling
// ---------------------------------------------------------------------------------------------

#[test]
fn cause_from_error_reads_lambda_causes() {
    assert_eq!(cause_from_error(None), "rolled back");
    assert_eq!(
        cause_from_error(Some(&lambda_error("Kanaria.NotConverged", "Shift for prod/web did not read back as done after 6 rounds"))),
        "Kanaria.NotConverged: Shift for prod/web did not read back as done after 6 rounds"
    );
    // Step Functions' own timeout.
    assert_eq!(
        cause_from_error(Some(&StateError { error: "States.Timeout".into(), cause: "Task timed out after 900.00 seconds".into() })),
        "a step timed out: Task timed out after 900.00 seconds"
    );
    assert_eq!(
        cause_from_error(Some(&lambda_error("States.Timeout", "the function ran out of time"))),
        "a step timed out: the function ran out of time"
    );
    // A plain-text cause is used as is; an empty one names the error.
    assert_eq!(
        cause_from_error(Some(&StateError { error: "Lambda.ServiceException".into(), cause: "Rate exceeded".into() })),
        "Lambda.ServiceException: Rate exceeded"
    );
    assert_eq!(cause_from_error(Some(&StateError { error: "States.TaskFailed".into(), cause: String::new() })), "States.TaskFailed failed");
    // JSON without an errorMessage falls back to the whole cause.
    let odd = StateError { error: "Custom".into(), cause: r#"{"errorType":"Custom"}"#.into() };
    assert_eq!(cause_from_error(Some(&odd)), r#"Custom: {"errorType":"Custom"}"#);
}

#[test]
fn halts_have_state_machine_error_types() {
    let h = Halt::NotReady("the rollout has no stable task set".into());
    assert_eq!(h.error_type(), "Kanaria.ServiceNotReady");
    assert_eq!(h.to_string(), "the rollout has no stable task set");
    assert_eq!(Halt::Superseded("x".into()).error_type(), "Kanaria.Superseded");
}

#[test]
fn readiness_polls_back_off_to_fifteen_seconds() {
    let waits: Vec<u64> = (0..6).map(readiness_poll_seconds).collect();
    assert_eq!(waits, vec![2, 5, 10, 15, 15, 15]);
    assert_eq!(readiness_poll_seconds(u32::MAX), 15);
}

// ---------------------------------------------------------------------------------------------
// Contract with the state machine (statemachines/rollout.asl.json)
// ---------------------------------------------------------------------------------------------

#[test]
fn action_and_verdict_names_match_the_state_machine() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/statemachines/rollout.asl.json");
    let asl: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).expect("state machine definition")).unwrap();
    let mut actions = Vec::new();
    let mut verdicts = Vec::new();
    for (name, state) in asl["States"].as_object().unwrap() {
        // Reconciles pass `action`; callback states (bake, gates, approval) pass it inside
        // `Payload`. Every one must be something the rollout-step function accepts.
        let action = state["Parameters"]["action"].as_str().or(state["Parameters"]["Payload"]["action"].as_str());
        if let Some(action) = action {
            let parsed: crate::handlers::rollout_step::StepAction =
                serde_json::from_value(action.into()).unwrap_or_else(|e| panic!("state {name}: action {action:?}: {e}"));
            if let crate::handlers::rollout_step::StepAction::Reconcile(parsed) = parsed {
                actions.push(parsed);
            }
        }
        let mut choices: Vec<&serde_json::Value> = state["Choices"].as_array().into_iter().flatten().collect();
        while let Some(choice) = choices.pop() {
            choices.extend(choice["And"].as_array().into_iter().flatten());
            if choice["Variable"] == "$.verdict" {
                let v = choice["StringEquals"].as_str().unwrap();
                verdicts.push(serde_json::from_value::<Verdict>(v.into()).unwrap_or_else(|e| panic!("state {name}: verdict {v:?}: {e}")));
            }
        }
    }
    for a in [
        Action::CreateGreen,
        Action::CheckGreen,
        Action::TestTraffic,
        Action::Validate,
        Action::Shift,
        Action::Verify,
        Action::Promote,
        Action::Finish,
        Action::Rollback,
    ] {
        assert!(actions.contains(&a), "no state calls {a:?}");
    }
    for v in [Verdict::Ready, Verdict::Rollback, Verdict::NextStep, Verdict::Promote, Verdict::Hold] {
        assert!(verdicts.contains(&v), "no choice on {v:?}");
    }
    assert_eq!(serde_json::to_value(Action::CreateGreen).unwrap(), "createGreen");
    assert_eq!(serde_json::to_value(Verdict::NextStep).unwrap(), "nextStep");
}

#[test]
fn rollout_json_uses_the_state_machine_field_names() {
    let r =
        Rollout { step: 1, weight: 10, step_started_at: Some(NOW), wait_seconds: 120, verdict: Some(Verdict::Done), ..canary_rollout() };
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["waitSeconds"], 120);
    assert_eq!(json["verdict"], "done");
    assert_eq!(json["greenCreatedAt"], NOW - 60);
    assert_eq!(json["green"]["targetGroupArn"], TG_B);
    assert!(json.get("cause").is_none() && json.get("error").is_none());
    let back: Rollout = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, r);

    // What a Catch adds ($.error with Error/Cause) and a failed RollBack adds ($.rollbackError).
    let mut caught = json;
    caught["error"] =
        serde_json::json!({ "Error": "Kanaria.Superseded", "Cause": "{\"errorType\":\"Kanaria.Superseded\",\"errorMessage\":\"held\"}" });
    caught["rollbackError"] = serde_json::json!({ "Error": "x", "Cause": "y" });
    let back: Rollout = serde_json::from_value(caught).unwrap();
    assert_eq!(back.error.as_ref().map(|e| e.error.as_str()), Some("Kanaria.Superseded"));
    assert_eq!(cause_from_error(back.error.as_ref()), "Kanaria.Superseded: held");
}

// ---------------------------------------------------------------------------------------------
// A tiny world: whole rollouts through decide()
// ---------------------------------------------------------------------------------------------

/// ECS, the ALB and the lock, in memory. Commands apply instantly (tasks of a scaled task set run
/// at once); safety invariants are checked after every command.
struct World {
    obs: Observation,
    next_task_set: u32,
    /// Every command issued, with the action that issued it.
    log: Vec<(Action, Command)>,
}

impl World {
    fn new(obs: Observation) -> Self {
        World { obs, next_task_set: 7, log: Vec::new() }
    }

    fn apply_unchecked(&mut self, command: &Command) {
        let obs = &mut self.obs;
        match command {
            Command::RegisterTaskDefinition { based_on, .. } => {
                let (family, revision) = based_on.rsplit_once(':').expect("family:revision");
                obs.revision_with_image = Some(format!("{family}:{}", revision.parse::<u32>().unwrap() + 1));
            }
            Command::CreateTaskSet { task_definition_arn, target_group_arn, external_id } => {
                let id = format!("ecs-svc/{:019}", self.next_task_set);
                self.next_task_set += 1;
                obs.task_sets.push(TaskSetView {
                    arn: task_set_arn(&id),
                    id,
                    external_id: Some(external_id.clone()),
                    status: "ACTIVE".into(),
                    target_group_arn: Some(target_group_arn.clone()),
                    task_definition_arn: task_definition_arn.clone(),
                    scale_percent: 100.0,
                    computed_desired_count: Some(obs.desired_count),
                    running_count: Some(0),
                    pending_count: Some(0),
                    stability: Some(Stability::Stabilizing),
                });
            }
            Command::SetWeights { weights } => obs.weights = weights.clone(),
            Command::SetTestWeights { weights } => obs.test_weights = weights.clone(),
            Command::MakePrimary { task_set_arn } => {
                assert!(obs.task_sets.iter().any(|t| &t.arn == task_set_arn), "MakePrimary of unknown {task_set_arn}");
                for t in &mut obs.task_sets {
                    if &t.arn == task_set_arn {
                        t.status = "PRIMARY".into();
                    } else if t.status == "PRIMARY" {
                        t.status = "ACTIVE".into();
                    }
                }
            }
            Command::ScaleTaskSet { task_set_id, percent } => {
                let desired = obs.desired_count;
                let t = obs.task_sets.iter_mut().find(|t| &t.id == task_set_id).expect("ScaleTaskSet of unknown task set");
                t.scale_percent = *percent;
                let count = ((desired as f64) * percent / 100.0).ceil() as u32;
                t.computed_desired_count = Some(count);
                if count <= t.running_count.unwrap_or(0) {
                    t.running_count = Some(count);
                    t.stability = Some(Stability::SteadyState);
                } else {
                    // As in ECS: the new tasks take a while to start and turn healthy.
                    t.stability = Some(Stability::Stabilizing);
                }
            }
            Command::DeleteTaskSet { task_set_id } => obs.task_sets.retain(|t| &t.id != task_set_id),
            Command::ReleaseLock { rollout_id } => {
                if obs.lock_holder.as_deref() == Some(rollout_id.as_str()) {
                    obs.lock_holder = None;
                }
            }
        }
    }

    fn apply(&mut self, action: Action, command: &Command) {
        // What ECS, the ALB and the lock would refuse, or what would hurt production.
        match command {
            Command::DeleteTaskSet { task_set_id } => {
                let t = self.obs.task_sets.iter().find(|t| &t.id == task_set_id).expect("DeleteTaskSet of unknown task set");
                assert_ne!(t.status, "PRIMARY", "{action:?} deleted the primary task set");
                if let Some(tg) = &t.target_group_arn {
                    assert_eq!(self.obs.weight_of(tg), 0, "{action:?} deleted {task_set_id} while {tg} gets traffic");
                }
            }
            Command::ReleaseLock { rollout_id } => {
                assert_eq!(self.obs.lock_holder.as_deref(), Some(rollout_id.as_str()), "{action:?} released a lock it does not hold")
            }
            _ => {}
        }
        self.apply_unchecked(command);
        self.log.push((action, command.clone()));
        self.check_invariants(action);
    }

    fn check_invariants(&self, action: Action) {
        let obs = &self.obs;
        let primaries = obs.task_sets.iter().filter(|t| t.status == "PRIMARY").count();
        assert_eq!(primaries, 1, "{action:?}: exactly one primary task set: {:?}", obs.task_sets);
        assert_eq!(obs.weights.iter().map(|(_, w)| w).sum::<u32>(), 100, "{action:?}: weights {:?}", obs.weights);
        for (tg, w) in &obs.weights {
            if *w > 0 {
                assert!(
                    obs.task_sets.iter().any(|t| t.target_group_arn.as_deref() == Some(tg.as_str()) && t.scale_percent > 0.0),
                    "{action:?}: {w}% of traffic goes to {tg}, which no running task set serves: {:?}",
                    obs.task_sets
                );
            }
        }
    }

    /// Run one action the way the handler does: decide, act, observe again until nothing is left
    /// to change. Returns the final rollout and the number of decisions taken.
    fn run(&mut self, action: Action, rollout: &Rollout, now: u64) -> (Rollout, usize) {
        let mut current = rollout.clone();
        for round in 1..=MAX_ROUNDS {
            let d = ok(action, &current, &self.obs, now);
            if d.commands.is_empty() {
                return (d.rollout, round);
            }
            for c in &d.commands {
                self.apply(action, c);
            }
            current = d.rollout;
        }
        panic!("{action:?} did not converge in {MAX_ROUNDS} rounds: {:?}", self.obs);
    }

    /// Run an action, then check that a retried call (Step Functions sends the same input
    /// again; or a duplicate invoke with the output) finds nothing to do and decides the same.
    fn run_and_retry(&mut self, action: Action, rollout: &Rollout, now: u64) -> Rollout {
        let (done, _) = self.run(action, rollout, now);
        let retried = ok(action, rollout, &self.obs, now);
        assert!(retried.commands.is_empty(), "{action:?} retried with its input issued {:?}", retried.commands);
        assert_eq!(retried.rollout.verdict, done.verdict, "{action:?} retried with its input decided differently");
        let repeated = ok(action, &done, &self.obs, now);
        assert!(repeated.commands.is_empty(), "{action:?} repeated with its output issued {:?}", repeated.commands);
        done
    }

    fn commands_of(&self, action: Action) -> Vec<Command> {
        self.log.iter().filter(|(a, _)| *a == action).map(|(_, c)| c.clone()).collect()
    }

    fn start_green_tasks(&mut self, green_id: &str) {
        self.start_tasks(green_id);
    }

    /// The task set's tasks run and are healthy targets.
    fn start_tasks(&mut self, id: &str) {
        let t = self.obs.task_sets.iter_mut().find(|t| t.id == id).unwrap();
        t.running_count = t.computed_desired_count;
        t.stability = Some(Stability::SteadyState);
    }
}

/// CreateGreen → CheckGreen (until ready) → Shift/Verify per step. Returns the rollout after the
/// last Verify (verdict Promote) or after the Verify that decided to roll back.
fn drive_canary(world: &mut World, rollout: Rollout, fail_at_weight: Option<u32>) -> Rollout {
    let mut now = NOW;
    let mut r = world.run_and_retry(Action::CreateGreen, &rollout, now);
    assert_eq!(r.verdict, Some(Verdict::Done));
    let green_id = r.green.as_ref().expect("green recorded").id.clone();

    now += r.wait_seconds;
    r = world.run_and_retry(Action::CheckGreen, &r, now);
    assert_eq!(r.verdict, Some(Verdict::Wait), "no task runs yet");
    world.start_green_tasks(&green_id);
    now += r.wait_seconds;
    r = world.run_and_retry(Action::CheckGreen, &r, now);
    assert_eq!(r.verdict, Some(Verdict::Ready));

    loop {
        r = world.run_and_retry(Action::Shift, &r, now);
        assert_eq!(r.verdict, Some(Verdict::Done));
        assert_eq!(world.obs.weight_of(&r.green.as_ref().unwrap().target_group_arn), r.weight);
        assert_eq!(r.step_started_at, Some(now));
        if fail_at_weight == Some(r.weight) {
            world.obs.failures.push(failure("deadbeef", 1));
        }
        now += r.wait_seconds;
        r = world.run_and_retry(Action::Verify, &r, now);
        match r.verdict {
            Some(Verdict::NextStep) => continue,
            Some(Verdict::Promote) | Some(Verdict::Rollback) => return r,
            other => panic!("Verify decided {other:?}"),
        }
    }
}

#[test]
fn a_whole_canary_converges_and_every_retry_is_a_no_op() {
    let mut world = World::new(fresh_obs());
    let r = drive_canary(&mut world, new_rollout(), None);
    assert_eq!(r.verdict, Some(Verdict::Promote));
    assert_eq!((r.step, r.weight), (2, 100));

    let r = world.run_and_retry(Action::Promote, &r, NOW + 1000);
    assert_eq!(r.verdict, Some(Verdict::Done));
    assert_eq!(r.wait_seconds, 45);
    let r = world.run_and_retry(Action::Finish, &r, NOW + 1045);
    assert_eq!(r.verdict, Some(Verdict::Done));

    let green = r.green.clone().unwrap();
    assert_eq!(green.target_group_arn, TG_B);
    assert_eq!(r.task_definition_arn.as_deref(), Some(NEW_TD));
    // The final world: all traffic on green, green primary and alone, lock released.
    assert_eq!(world.obs.weight_of(TG_B), 100);
    assert_eq!(world.obs.weight_of(TG_A), 0);
    assert_eq!(world.obs.task_sets.len(), 1, "{:?}", world.obs.task_sets);
    let only = &world.obs.task_sets[0];
    assert_eq!((only.id.as_str(), only.status.as_str()), (green.id.as_str(), "PRIMARY"));
    assert_eq!(only.task_definition_arn, NEW_TD);
    assert_eq!(only.external_id.as_deref(), Some(ROLLOUT_ID));
    assert_eq!(world.obs.lock_holder, None);

    // Exactly these commands, in this order, each once.
    let log: Vec<Command> = world.log.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        log,
        vec![
            Command::RegisterTaskDefinition { based_on: STABLE_TD.into(), container: "app".into(), image: image_uri() },
            Command::CreateTaskSet { task_definition_arn: NEW_TD.into(), target_group_arn: TG_B.into(), external_id: ROLLOUT_ID.into() },
            Command::SetWeights { weights: weights(90, 10) },
            Command::SetWeights { weights: weights(50, 50) },
            Command::SetWeights { weights: weights(0, 100) },
            Command::MakePrimary { task_set_arn: green.arn.clone() },
            Command::ScaleTaskSet { task_set_id: STABLE_ID.into(), percent: 0.0 },
            Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() },
            Command::DeleteTaskSet { task_set_id: STABLE_ID.into() },
        ]
    );
    assert_eq!(
        world.commands_of(Action::Promote),
        vec![
            Command::MakePrimary { task_set_arn: green.arn.clone() },
            Command::ScaleTaskSet { task_set_id: STABLE_ID.into(), percent: 0.0 },
            Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() },
        ]
    );

    // A late call of any forward action on the converged world changes nothing: it either
    // finds its goal read back or halts (the lock is released). Rollback is not reachable
    // after Finish (its Catch goes to CleanupFailed), see the ignored test above.
    for action in [Action::CreateGreen, Action::CheckGreen, Action::Shift, Action::Verify, Action::Promote, Action::Finish] {
        match decide(action, &r, &world.obs, NOW + 2000) {
            Ok(d) => assert!(d.commands.is_empty(), "{action:?} on the converged world issued {:?}", d.commands),
            Err(h) => assert!(matches!(h, Halt::Superseded(_)), "{action:?}: {h:?}"),
        }
    }
    assert_eq!(ok(Action::Finish, &r, &world.obs, NOW + 2000).rollout.verdict, Some(Verdict::Done));
    assert_eq!(ok(Action::Promote, &r, &world.obs, NOW + 2000).rollout.verdict, Some(Verdict::Done));
}

#[test]
fn consecutive_rollouts_alternate_target_groups() {
    let mut world = World::new(fresh_obs());
    let r = drive_canary(&mut world, new_rollout(), None);
    let r = world.run_and_retry(Action::Promote, &r, NOW);
    world.run_and_retry(Action::Finish, &r, NOW);

    // The next push: another rollout id takes the lock; the new primary's target group is TG_B.
    world.obs.lock_holder = Some(OTHER_ROLLOUT_ID.into());
    world.obs.revision_with_image = None;
    world.log.clear();
    let second = Rollout {
        id: OTHER_ROLLOUT_ID.into(),
        image: Image { uri: image_uri().replace("sha256:5b", "sha256:6c"), ..new_rollout().image },
        ..new_rollout()
    };
    let r2 = drive_canary(&mut world, second, None);
    let r2 = world.run_and_retry(Action::Promote, &r2, NOW);
    world.run_and_retry(Action::Finish, &r2, NOW);

    assert_eq!(r2.stable.as_ref().unwrap().target_group_arn, TG_B);
    assert_eq!(r2.green.as_ref().unwrap().target_group_arn, TG_A);
    assert_eq!(world.obs.weight_of(TG_A), 100);
    assert_eq!(world.obs.task_sets.len(), 1);
    assert_eq!(world.obs.task_sets[0].external_id.as_deref(), Some(OTHER_ROLLOUT_ID));
    assert_eq!(world.obs.task_sets[0].task_definition_arn, "arn:aws:ecs:us-east-1:123456789012:task-definition/web:43");
    assert_eq!(world.obs.lock_holder, None);
    assert!(matches!(
        world.log.first(),
        Some((Action::CreateGreen, Command::RegisterTaskDefinition { based_on, .. })) if based_on == NEW_TD
    ));
}

#[test]
fn a_leftover_task_set_is_cleaned_up_before_the_new_one_is_created() {
    let mut obs = fresh_obs();
    obs.task_sets.push(view(LEFTOVER_ID, "ACTIVE", Some(TG_B), STABLE_TD, Some(EARLIER_ROLLOUT_ID)));
    let mut world = World::new(obs);
    let (r, rounds) = world.run(Action::CreateGreen, &new_rollout(), NOW);
    assert_eq!(r.verdict, Some(Verdict::Done));
    assert_eq!(rounds, 4, "delete, register, create, read back");
    assert!(rounds <= MAX_ROUNDS);
    let kinds: Vec<&str> = world
        .commands_of(Action::CreateGreen)
        .iter()
        .map(|c| match c {
            Command::DeleteTaskSet { .. } => "delete",
            Command::RegisterTaskDefinition { .. } => "register",
            Command::CreateTaskSet { .. } => "create",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["delete", "register", "create"]);
    assert!(world.obs.task_sets.iter().all(|t| t.id != LEFTOVER_ID));
    assert_eq!(world.obs.task_sets.len(), 2);
}

fn assert_rolled_back(world: &World, r: &Rollout) {
    assert_eq!(r.verdict, Some(Verdict::Done));
    assert_eq!(r.weight, 0);
    assert_eq!(world.obs.weights, weights(100, 0));
    assert_eq!(world.obs.task_sets.len(), 1, "green is gone: {:?}", world.obs.task_sets);
    let stable = &world.obs.task_sets[0];
    assert_eq!((stable.id.as_str(), stable.status.as_str()), (STABLE_ID, "PRIMARY"));
    assert_eq!(stable.scale_percent, 100.0);
    assert_eq!(stable.task_definition_arn, STABLE_TD);
    assert_eq!(world.obs.lock_holder, None);
}

#[test]
fn a_failing_canary_rolls_back_to_stable() {
    let mut world = World::new(fresh_obs());
    let r = drive_canary(&mut world, new_rollout(), Some(50));
    assert_eq!(r.verdict, Some(Verdict::Rollback));
    assert_eq!(r.weight, 50);
    let cause = r.cause.clone().unwrap();
    assert!(cause.contains("at 50% traffic") && cause.contains("task deadbeef"), "{cause}");
    let green_id = r.green.as_ref().unwrap().id.clone();

    world.log.clear();
    let (done, rounds) = world.run(Action::Rollback, &r, NOW + 500);
    assert_eq!(rounds, 4, "weights, delete, release, read back");
    assert_eq!(
        world.commands_of(Action::Rollback),
        vec![
            Command::SetWeights { weights: weights(100, 0) },
            Command::DeleteTaskSet { task_set_id: green_id },
            Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() },
        ]
    );
    assert_rolled_back(&world, &done);
    assert_eq!(done.cause.as_deref(), Some(cause.as_str()), "the verdict's cause is kept");

    // A retried Rollback (same input) on the restored world changes nothing.
    let again = ok(Action::Rollback, &r, &world.obs, NOW + 600);
    assert!(again.commands.is_empty());
    assert_eq!(again.rollout.verdict, Some(Verdict::Done));
}

#[test]
fn a_rollback_after_promote_scaled_the_old_task_set_down_moves_traffic_only_once_it_serves() {
    // Replaces a test that asserted an outage: the rollback scaled the old task set up and moved
    // all traffic to it in one go, before it had a healthy task, then deleted the set that served.
    let mut world = World::new(fresh_obs());
    let r = drive_canary(&mut world, new_rollout(), None);
    let green = r.green.clone().unwrap();
    // Promote moved all traffic, made green primary and scaled the old set to 0; the function
    // died before it released the service, and the Catch hands the error to RollBack.
    world.apply(Action::Promote, &Command::SetWeights { weights: weights(0, 100) });
    world.apply(Action::Promote, &Command::MakePrimary { task_set_arn: green.arn.clone() });
    world.apply(Action::Promote, &Command::ScaleTaskSet { task_set_id: STABLE_ID.into(), percent: 0.0 });
    let caught =
        Rollout { error: Some(lambda_error("Kanaria.NotConverged", "Promote for prod/web did not read back as done after 6 rounds")), ..r };
    world.log.clear();
    // The old set is scaled back up and made primary; no traffic moves while its tasks start.
    let (waiting, _) = world.run(Action::Rollback, &caught, NOW + 60);
    assert_eq!(waiting.verdict, Some(Verdict::Wait), "{waiting:?}");
    assert_eq!(
        world.commands_of(Action::Rollback),
        vec![
            Command::ScaleTaskSet { task_set_id: STABLE_ID.into(), percent: 100.0 },
            Command::MakePrimary { task_set_arn: task_set_arn(STABLE_ID) },
        ]
    );
    assert_eq!(world.obs.weights, weights(0, 100), "traffic stays on the set that serves");
    // Its tasks are healthy: now traffic moves back, and only then the new set goes.
    world.start_tasks(STABLE_ID);
    world.log.clear();
    let (done, _) = world.run(Action::Rollback, &waiting, NOW + 90);
    assert_eq!(
        world.commands_of(Action::Rollback),
        vec![
            Command::SetWeights { weights: weights(100, 0) },
            Command::DeleteTaskSet { task_set_id: green.id.clone() },
            Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() },
        ]
    );
    assert_rolled_back(&world, &done);
    assert_eq!(done.cause.as_deref(), Some("Kanaria.NotConverged: Promote for prod/web did not read back as done after 6 rounds"));
}

#[test]
fn rollback_reissues_weights_until_they_read_back_and_only_then_deletes_green() {
    // The ALB has not applied the first SetWeights yet when kanaria observes again.
    let r = Rollout { weight: 50, step: 1, ..canary_rollout() };
    let mut world = World::new(canary_obs(50));
    let first = ok(Action::Rollback, &r, &world.obs, NOW);
    assert_eq!(first.commands, vec![Command::SetWeights { weights: weights(100, 0) }]);
    // (dropped)
    let second = ok(Action::Rollback, &first.rollout, &world.obs, NOW);
    assert_eq!(second.commands, first.commands, "the same change again, nothing beyond it");
    world.apply(Action::Rollback, &second.commands[0]);
    let third = ok(Action::Rollback, &second.rollout, &world.obs, NOW);
    assert_eq!(third.commands, vec![Command::DeleteTaskSet { task_set_id: GREEN_ID.into() }]);
}

#[test]
fn a_superseded_shift_rolls_back_without_touching_the_other_rollouts_lock() {
    let mut world = World::new(fresh_obs());
    let mut r = world.run_and_retry(Action::CreateGreen, &new_rollout(), NOW);
    world.start_green_tasks(&r.green.as_ref().unwrap().id);
    r = world.run_and_retry(Action::CheckGreen, &r, NOW);
    // The lock was taken over (an operator cleared a "stale" lock and another push took it).
    world.obs.lock_holder = Some(OTHER_ROLLOUT_ID.into());
    let h = decide(Action::Shift, &r, &world.obs, NOW).unwrap_err();
    assert_eq!(h.error_type(), "Kanaria.Superseded");
    assert_eq!(world.obs.weights, weights(100, 0), "no traffic moved");
    let caught = Rollout { error: Some(lambda_error(h.error_type(), &h.to_string())), ..r };
    let (done, _) = world.run(Action::Rollback, &caught, NOW);
    assert_eq!(done.verdict, Some(Verdict::Done));
    assert_eq!(world.obs.lock_holder.as_deref(), Some(OTHER_ROLLOUT_ID), "the other rollout keeps its lock");
    assert!(done.cause.as_deref().unwrap().starts_with(&format!("Kanaria.Superseded: rollout {ROLLOUT_ID} no longer holds prod/web")));
    assert!(!world.log.iter().any(|(_, c)| matches!(c, Command::ReleaseLock { .. })));
}

#[test]
fn a_caught_error_without_a_cause_still_parses() {
    // Step Functions (and moto's SendTaskFailure) may record `"Cause": null`.
    let mut json = serde_json::to_value(canary_rollout()).unwrap();
    json["error"] = serde_json::json!({"Error": "Kanaria.RolledBack", "Cause": null});
    let r: Rollout = serde_json::from_value(json).unwrap();
    assert_eq!(r.error.unwrap().cause, "");
}

// ---------------------------------------------------------------------------------------------
// Policy variants: linear, blue/green, failure threshold, canary analysis
// ---------------------------------------------------------------------------------------------

/// The strategy block of [`POLICY`], replaced by the variants below.
const CANARY_STRATEGY: &str = "strategy:
  canary:
    steps:
      - { weight: 10, bake: 1m }
      - { weight: 50, bake: 2m }
      - { weight: 100, bake: 3m }
";
const TEST_LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/0a1b2c3d4e5f6a7b";
const HOOK_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:kanaria-hook-x";
const FENCE_CAUSE: &str = "a newer image (v1.5.0) was pushed to team/web; onNewerPush: supersede";

/// [`POLICY`] with another strategy block and extra top-level fields.
fn policy_with(strategy: &str, extra: &str) -> Policy {
    assert!(POLICY.contains(CANARY_STRATEGY), "the test policy's strategy block changed");
    let text = format!("{}{extra}", POLICY.replace(CANARY_STRATEGY, strategy));
    policy::parse("rollout-tests-variant", &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn linear_policy(step_percent: u32) -> Policy {
    policy_with(&format!("strategy:\n  linear: {{ stepPercent: {step_percent}, interval: 2m }}\n"), "")
}

/// Blue/green with the given `validation:` gate and `keepOldFor: 5m`.
fn blue_green_policy(validation: &str) -> Policy {
    policy_with(
        &format!("strategy:\n  blueGreen:\n    testListenerArn: {TEST_LISTENER}\n    validation: {validation}\n    keepOldFor: 5m\n"),
        "",
    )
}

/// The canary policy with an `analysis:` block whose `inconclusive` is `hold` or `rollback`.
fn analysis_policy(inconclusive: &str) -> Policy {
    policy_with(CANARY_STRATEGY, &format!("analysis: {{ minRequests: 50, inconclusive: {inconclusive} }}\n"))
}

fn bake_gate() -> Policy {
    blue_green_policy("{ bake: 30s }")
}

impl Observation {
    fn with_lock(mut self, holder: &str) -> Self {
        self.lock_holder = Some(holder.into());
        self
    }
}

fn fenced(obs: Observation) -> Observation {
    Observation { aborting: true, abort_cause: Some(FENCE_CAUSE.into()), ..obs }
}

fn steps_of(p: &Policy) -> Vec<(u32, u64)> {
    p.steps().iter().map(|s| (s.weight, s.bake.secs())).collect()
}

#[test]
fn linear_policy_steps_climb_by_step_percent_to_100() {
    assert_eq!(steps_of(&linear_policy(30)), vec![(30, 120), (60, 120), (90, 120), (100, 120)]);
    assert_eq!(steps_of(&linear_policy(25)), vec![(25, 120), (50, 120), (75, 120), (100, 120)], "no extra 100% step");
    assert_eq!(steps_of(&linear_policy(100)), vec![(100, 120)]);
    let sevens = steps_of(&linear_policy(7));
    assert_eq!(sevens.len(), 15);
    assert_eq!(sevens[13..], [(98, 120), (100, 120)]);
}

#[test]
fn blue_green_policy_is_one_cutover_baked_for_keep_old_for() {
    let p = bake_gate();
    assert_eq!(steps_of(&p), vec![(100, 300)]);
    assert_eq!(p.gate(), Some(Gate::Bake(30)));
    assert_eq!(blue_green_policy(&format!("{{ hook: {HOOK_ARN} }}")).gate(), Some(Gate::Hook(HOOK_ARN.into())));
    assert_eq!(
        blue_green_policy("{ approval: { timeout: 1h } }").gate(),
        Some(Gate::Approval(ApprovalGate {
            timeout: policy::HumanDuration(std::time::Duration::from_secs(3600)),
            on_timeout: OnTimeout::Rollback,
            forbid_self_approval: false,
        }))
    );
    assert_eq!(test_policy().gate(), None);
    assert_eq!(test_policy().failure_threshold, 1, "the documented default");
}

#[test]
fn linear_shift_uses_the_expanded_steps() {
    let r = Rollout { policy: linear_policy(30), step: 2, weight: 60, ..canary_rollout() };
    let d = ok(Action::Shift, &r, &canary_obs(60), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(10, 90) }]);
    let d = ok(Action::Shift, &r, &canary_obs(90), NOW);
    assert_eq!((d.rollout.weight, d.rollout.wait_seconds, d.rollout.verdict), (90, 120, Some(Verdict::Done)));
    // 90% is not the last step: Verify goes on to 100%.
    let d = ok(Action::Verify, &d.rollout, &canary_obs(90), NOW);
    assert_eq!((d.rollout.verdict, d.rollout.step), (Some(Verdict::NextStep), 3));
    let d = ok(Action::Verify, &Rollout { weight: 100, ..d.rollout }, &canary_obs(100), NOW);
    assert_eq!((d.rollout.verdict, d.rollout.step), (Some(Verdict::Promote), 3));
}

#[test]
fn blue_green_shift_cuts_over_at_once_and_bakes_keep_old_for() {
    let r = Rollout { policy: bake_gate(), ..canary_rollout() };
    let d = ok(Action::Shift, &r, &canary_obs(0), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(0, 100) }]);
    let d = ok(Action::Shift, &r, &canary_obs(100), NOW);
    assert!(d.commands.is_empty());
    assert_eq!((d.rollout.weight, d.rollout.wait_seconds, d.rollout.verdict), (100, 300, Some(Verdict::Done)));
    let d = ok(Action::Verify, &d.rollout, &canary_obs(100), NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Promote));
}

// ---------------------------------------------------------------------------------------------
// Fencing (Observation.aborting)
// ---------------------------------------------------------------------------------------------

/// Each forward action with an observation in which it would otherwise go on.
fn forward_cases() -> Vec<(Action, Rollout, Observation)> {
    let bg = Rollout { policy: bake_gate(), ..canary_rollout() };
    let verify_obs = Observation { analysis: Some(Judgement::Pass("fine".into())), promote_requested: true, ..canary_obs(50) };
    vec![
        (Action::CheckGreen, canary_rollout(), canary_obs(0)),
        (Action::TestTraffic, bg.clone(), canary_obs(0)),
        (Action::Validate, bg, canary_obs(0)),
        (Action::Shift, canary_rollout(), canary_obs(0)),
        (Action::Verify, Rollout { step: 1, weight: 50, ..canary_rollout() }, verify_obs),
        (Action::Promote, Rollout { step: 2, weight: 50, ..canary_rollout() }, canary_obs(50)),
    ]
}

#[test]
fn unfenced_forward_cases_would_go_on() {
    // The control for the fence tests below: without the fence each case moves forward.
    for (action, r, obs) in forward_cases() {
        let d = ok(action, &r, &obs, NOW);
        assert_ne!(d.rollout.verdict, Some(Verdict::Rollback), "{action:?}: {:?}", d.rollout.cause);
        assert!(d.commands.len() + d.rollout.verdict.iter().count() > 0, "{action:?} did nothing");
    }
}

#[test]
fn a_fenced_rollout_rolls_back_from_every_forward_action() {
    for (action, r, obs) in forward_cases() {
        let d = ok(action, &r, &fenced(obs.clone()), NOW);
        assert!(d.commands.is_empty(), "{action:?} under a fence issued {:?}", d.commands);
        assert_eq!(d.rollout.verdict, Some(Verdict::Rollback), "{action:?}");
        assert_eq!(d.rollout.cause.as_deref(), Some(FENCE_CAUSE), "{action:?}");

        // Fenced without a recorded cause.
        let d = ok(action, &r, &Observation { aborting: true, ..obs }, NOW);
        assert_eq!(d.rollout.verdict, Some(Verdict::Rollback), "{action:?}");
        assert_eq!(d.rollout.cause.as_deref(), Some("the rollout is being rolled back"), "{action:?}");
    }
}

#[test]
fn an_abort_cause_without_the_fence_does_not_stop_the_rollout() {
    let obs = Observation { abort_cause: Some(FENCE_CAUSE.into()), ..canary_obs(0) };
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Ready));
}

#[test]
fn the_fence_wins_over_failures_and_failures_over_alarms() {
    let r = Rollout { step: 1, weight: 50, ..canary_rollout() };
    let everything =
        Observation { failures: vec![failure("0123abcd", 1)], alarms_firing: vec!["web-5xx".into()], ..fenced(canary_obs(50)) };
    assert_eq!(ok(Action::Verify, &r, &everything, NOW).rollout.cause.as_deref(), Some(FENCE_CAUSE));
    let unfenced = Observation { aborting: false, abort_cause: None, ..everything.clone() };
    let cause = ok(Action::Verify, &r, &unfenced, NOW).rollout.cause.unwrap();
    assert!(cause.starts_with("1 task(s) of the new task set failed at 50% traffic"), "{cause}");
    let alarms_only = Observation { failures: vec![], ..unfenced };
    assert_eq!(ok(Action::Verify, &r, &alarms_only, NOW).rollout.cause.as_deref(), Some("alarm web-5xx is in ALARM at 50% traffic"));
}

#[test]
fn a_shift_that_raced_the_fence_puts_traffic_back_before_rolling_back() {
    // Step 1 (50%) was being shifted when the circuit breaker fenced the rollout: the ALB already
    // sends 50% to green.
    let r = Rollout { step: 1, weight: 10, ..canary_rollout() };
    let d = ok(Action::Shift, &r, &fenced(canary_obs(50)), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(100, 0) }]);
    assert_eq!(d.rollout.verdict, None, "no verdict until the weights read back");
    assert_eq!(d.rollout.cause, None);
    assert_eq!(d.rollout.weight, 10);

    // Not yet applied: the same command again.
    let again = ok(Action::Shift, &d.rollout, &fenced(canary_obs(50)), NOW);
    assert_eq!(again.commands, d.commands);

    // Read back: roll back.
    let d = ok(Action::Shift, &d.rollout, &fenced(canary_obs(0)), NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert_eq!(d.rollout.cause.as_deref(), Some(FENCE_CAUSE));

    // A listener that lists only the stable target group already sends green nothing.
    let stable_only = Observation { weights: vec![(TG_A.into(), 100)], ..fenced(canary_obs(0)) };
    let d = ok(Action::Shift, &r, &stable_only, NOW);
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
}

#[test]
fn only_the_fence_makes_shift_move_traffic_back() {
    // Failed tasks or alarms (no fence) at 50% leave traffic to the Rollback state.
    let r = Rollout { step: 2, weight: 50, ..canary_rollout() };
    for obs in [
        Observation { failures: vec![failure("0123abcd", 1)], ..canary_obs(50) },
        Observation { alarms_firing: vec!["web-5xx".into()], ..canary_obs(50) },
    ] {
        let d = ok(Action::Shift, &r, &obs, NOW);
        assert!(d.commands.is_empty(), "{:?}", d.commands);
        assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    }
}

#[test]
fn a_fenced_shift_converges_in_the_world_and_rollback_finishes_the_job() {
    let mut world = World::new(fenced(canary_obs(50)));
    let r = Rollout { step: 1, weight: 10, ..canary_rollout() };
    let (r, rounds) = world.run(Action::Shift, &r, NOW);
    assert_eq!(rounds, 2, "put back, read back");
    assert_eq!(world.commands_of(Action::Shift), vec![Command::SetWeights { weights: weights(100, 0) }]);
    assert_eq!(r.verdict, Some(Verdict::Rollback));
    assert_eq!(r.cause.as_deref(), Some(FENCE_CAUSE));

    let (done, _) = world.run(Action::Rollback, &r, NOW);
    assert_eq!(
        world.commands_of(Action::Rollback),
        vec![Command::DeleteTaskSet { task_set_id: GREEN_ID.into() }, Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() }]
    );
    assert_rolled_back(&world, &done);
    assert_eq!(done.cause.as_deref(), Some(FENCE_CAUSE));
}

#[test]
fn a_fence_stops_promote_only_before_traffic_has_moved() {
    let r = Rollout { step: 2, weight: 100, ..canary_rollout() };
    // Traffic not yet all on green: roll back instead of the first SetWeights.
    let d = ok(Action::Promote, &r, &fenced(canary_obs(50)), NOW);
    assert!(d.commands.is_empty());
    assert_eq!((d.rollout.verdict, d.rollout.cause.as_deref()), (Some(Verdict::Rollback), Some(FENCE_CAUSE)));

    // All traffic is on green already: promote goes on to the end.
    let d = ok(Action::Promote, &r, &fenced(canary_obs(100)), NOW);
    assert_eq!(d.commands, vec![Command::MakePrimary { task_set_arn: task_set_arn(GREEN_ID) }]);
    assert_eq!((d.rollout.verdict, d.rollout.cause), (None, None));
    let mut obs = fenced(canary_obs(100));
    obs.task_sets[0].status = "ACTIVE".into();
    obs.task_sets[1].status = "PRIMARY".into();
    let d = ok(Action::Promote, &r, &obs, NOW);
    assert_eq!(d.commands, vec![Command::ScaleTaskSet { task_set_id: STABLE_ID.into(), percent: 0.0 }]);
    obs.task_sets[0].scale_percent = 0.0;
    let d = ok(Action::Promote, &r, &obs, NOW);
    assert_eq!(d.commands, vec![Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() }]);
    obs.lock_holder = None;
    let d = ok(Action::Promote, &r, &obs, NOW);
    assert_eq!((d.rollout.verdict, d.rollout.wait_seconds, d.rollout.cause), (Some(Verdict::Done), 45, None));

    // Failed tasks are a stop cause too, with the same rule.
    let failing = Observation { failures: vec![failure("0123abcd", 1)], ..canary_obs(50) };
    assert_eq!(ok(Action::Promote, &r, &failing, NOW).rollout.verdict, Some(Verdict::Rollback));
    let failing = Observation { failures: vec![failure("0123abcd", 1)], ..canary_obs(100) };
    assert!(matches!(ok(Action::Promote, &r, &failing, NOW).commands.as_slice(), [Command::MakePrimary { .. }]));
}

// ---------------------------------------------------------------------------------------------
// failureThreshold and alarms
// ---------------------------------------------------------------------------------------------

#[test]
fn failures_below_the_threshold_do_not_roll_back() {
    let policy = policy_with(CANARY_STRATEGY, "failureThreshold: 3\n");
    assert_eq!(policy.failure_threshold, 3);
    let two = vec![failure("0123abcd", 1), failure("4567ef01", 137)];
    let r = Rollout { policy: policy.clone(), ..canary_rollout() };
    let obs = Observation { failures: two.clone(), ..canary_obs(0) };
    assert_eq!(ok(Action::CheckGreen, &r, &obs, NOW).rollout.verdict, Some(Verdict::Ready));
    assert_eq!(ok(Action::Shift, &r, &obs, NOW).commands, vec![Command::SetWeights { weights: weights(90, 10) }]);
    let at_10 = Rollout { weight: 10, ..r.clone() };
    let obs10 = Observation { failures: two.clone(), ..canary_obs(10) };
    assert_eq!(ok(Action::Verify, &at_10, &obs10, NOW).rollout.verdict, Some(Verdict::NextStep));
    // Rollback for another reason does not blame the tolerated failures.
    let d = ok(Action::Rollback, &r, &obs10, NOW);
    assert_eq!(d.rollout.cause.as_deref(), Some("rolled back"));
}

#[test]
fn failures_at_the_threshold_roll_back() {
    let r = Rollout { policy: policy_with(CANARY_STRATEGY, "failureThreshold: 3\n"), weight: 10, ..canary_rollout() };
    let three = vec![failure("0123abcd", 1), failure("4567ef01", 137), failure("89abcdef", 2)];
    let obs = Observation { failures: three, ..canary_obs(10) };
    for action in [Action::CheckGreen, Action::Verify, Action::Shift] {
        let d = ok(action, &r, &obs, NOW);
        assert_eq!(d.rollout.verdict, Some(Verdict::Rollback), "{action:?}");
        let cause = d.rollout.cause.unwrap();
        assert!(cause.starts_with("3 task(s) of the new task set failed at 10% traffic: task 0123abcd"), "{action:?}: {cause}");
        assert!(cause.contains("(app exit 137); task 89abcdef"), "{cause}");
    }
    assert!(ok(Action::Rollback, &r, &obs, NOW).rollout.cause.unwrap().starts_with("3 task(s)"));
}

#[test]
fn a_firing_alarm_rolls_back_naming_the_alarms_and_the_weight() {
    let alarms = vec!["web-5xx".to_string(), "web-p99".to_string()];
    let r = Rollout { step: 1, weight: 50, ..canary_rollout() };
    let d = ok(Action::Verify, &r, &Observation { alarms_firing: alarms.clone(), ..canary_obs(50) }, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert_eq!(d.rollout.cause.as_deref(), Some("alarm web-5xx, web-p99 is in ALARM at 50% traffic"));

    let d = ok(Action::CheckGreen, &canary_rollout(), &Observation { alarms_firing: alarms[..1].to_vec(), ..canary_obs(0) }, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert_eq!(d.rollout.cause.as_deref(), Some("alarm web-5xx is in ALARM at 0% traffic"));

    // Promote does not send all traffic to green while an alarm fires.
    let d = ok(Action::Promote, &r, &Observation { alarms_firing: alarms, ..canary_obs(50) }, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
}

// ---------------------------------------------------------------------------------------------
// Canary analysis in Verify
// ---------------------------------------------------------------------------------------------

fn analysed(judgement: Judgement, green_weight: u32) -> Observation {
    Observation { analysis: Some(judgement), ..canary_obs(green_weight) }
}

#[test]
fn failed_analysis_rolls_back_with_its_reason() {
    let r = Rollout { policy: analysis_policy("hold"), step: 1, weight: 50, ..canary_rollout() };
    let d = ok(Action::Verify, &r, &analysed(Judgement::Fail("5xx rate 3.00% on the new target group".into()), 50), NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert_eq!(d.rollout.cause.as_deref(), Some("canary analysis at 50%: 5xx rate 3.00% on the new target group"));
    assert_eq!(d.rollout.step, 1);
}

#[test]
fn inconclusive_analysis_holds_the_step_for_one_more_bake() {
    let r = Rollout { policy: analysis_policy("hold"), step: 1, weight: 50, wait_seconds: 7, ..canary_rollout() };
    let d = ok(Action::Verify, &r, &analysed(Judgement::Inconclusive("too little traffic".into()), 50), NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Hold));
    assert_eq!(d.rollout.holds, 1);
    assert_eq!(d.rollout.step, 1, "the step is unchanged");
    assert_eq!(d.rollout.weight, 50);
    assert_eq!(d.rollout.wait_seconds, 120, "the 50% step's bake (2m)");
    assert_eq!(d.rollout.cause, None);
    assert_eq!(d.rollout.analysis.as_deref(), Some("inconclusive, holding 50% for one more bake: too little traffic"));

    // Still inconclusive after the extra bake: roll back.
    let d = ok(Action::Verify, &d.rollout, &analysed(Judgement::Inconclusive("still too little traffic".into()), 50), NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert_eq!(d.rollout.cause.as_deref(), Some("canary analysis at 50% stayed inconclusive: still too little traffic"));
}

#[test]
fn inconclusive_analysis_rolls_back_at_once_when_the_policy_says_so() {
    let r = Rollout { policy: analysis_policy("rollback"), step: 0, weight: 10, ..canary_rollout() };
    let d = ok(Action::Verify, &r, &analysed(Judgement::Inconclusive("no data".into()), 10), NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert_eq!(d.rollout.holds, 0);
    assert_eq!(d.rollout.cause.as_deref(), Some("canary analysis at 10% stayed inconclusive: no data"));
}

#[test]
fn passing_analysis_records_its_summary_and_goes_on() {
    let r = Rollout { policy: analysis_policy("hold"), step: 0, weight: 10, holds: 1, ..canary_rollout() };
    let d = ok(Action::Verify, &r, &analysed(Judgement::Pass("5xx rate 0.10% vs stable 0.00%".into()), 10), NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::NextStep));
    assert_eq!(d.rollout.step, 1);
    assert_eq!(d.rollout.holds, 0, "each step gets its own hold");
    assert_eq!(d.rollout.analysis.as_deref(), Some("5xx rate 0.10% vs stable 0.00%"));
    assert_eq!(d.rollout.cause, None);

    // The next step may hold again.
    let next = Rollout { weight: 50, ..d.rollout };
    let d = ok(Action::Verify, &next, &analysed(Judgement::Inconclusive("quiet hour".into()), 50), NOW);
    assert_eq!((d.rollout.verdict, d.rollout.holds, d.rollout.step), (Some(Verdict::Hold), 1, 1));

    // The last step passes into Promote.
    let last = Rollout { step: 2, weight: 100, holds: 1, ..next };
    let d = ok(Action::Verify, &last, &analysed(Judgement::Pass("ok".into()), 100), NOW);
    assert_eq!((d.rollout.verdict, d.rollout.holds, d.rollout.analysis.as_deref()), (Some(Verdict::Promote), 0, Some("ok")));
}

#[test]
fn analysis_is_judged_only_after_tasks_and_alarms() {
    let r = Rollout { policy: analysis_policy("hold"), step: 1, weight: 50, ..canary_rollout() };
    let mut obs = Observation { alarms_firing: vec!["web-5xx".into()], ..analysed(Judgement::Inconclusive("quiet".into()), 50) };
    let d = ok(Action::Verify, &r, &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback), "an alarm is not held over");
    assert_eq!(d.rollout.cause.as_deref(), Some("alarm web-5xx is in ALARM at 50% traffic"));
    obs.alarms_firing.clear();
    obs.task_sets[1].running_count = Some(2);
    let d = ok(Action::Verify, &r, &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert!(d.rollout.cause.unwrap().contains("only 2 of 4 tasks"));
}

#[test]
fn inconclusive_analysis_without_an_analysis_policy_rolls_back() {
    // The policy has no `analysis:` block, so there is no hold to take.
    let r = Rollout { step: 1, weight: 50, ..canary_rollout() };
    let d = ok(Action::Verify, &r, &analysed(Judgement::Inconclusive("no data".into()), 50), NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert_eq!(d.rollout.holds, 0);
}

// ---------------------------------------------------------------------------------------------
// kanaria promote (Observation.promote_requested)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_promote_request_skips_the_remaining_steps() {
    let r = Rollout { step: 0, weight: 10, ..canary_rollout() };
    let obs = Observation { promote_requested: true, ..canary_obs(10) };
    let d = ok(Action::Verify, &r, &obs, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Promote));
    assert_eq!(d.rollout.step, 0, "the step is not advanced");
    // Promote then moves all traffic from 10% at once.
    assert_eq!(ok(Action::Promote, &d.rollout, &canary_obs(10), NOW).commands, vec![Command::SetWeights { weights: weights(0, 100) }]);
}

#[test]
fn a_promote_request_still_rolls_back_a_bad_release() {
    let r = Rollout { policy: analysis_policy("hold"), step: 0, weight: 10, ..canary_rollout() };
    let asked = Observation { promote_requested: true, ..canary_obs(10) };
    for (what, obs) in [
        ("failures", Observation { failures: vec![failure("0123abcd", 1)], ..asked.clone() }),
        ("alarm", Observation { alarms_firing: vec!["web-5xx".into()], ..asked.clone() }),
        ("analysis", Observation { analysis: Some(Judgement::Fail("slow".into())), ..asked.clone() }),
        ("missing tasks", {
            let mut o = asked.clone();
            o.task_sets[1].running_count = Some(1);
            o
        }),
    ] {
        assert_eq!(ok(Action::Verify, &r, &obs, NOW).rollout.verdict, Some(Verdict::Rollback), "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Blue/green: TestTraffic and Validate
// ---------------------------------------------------------------------------------------------

fn bg_rollout(policy: Policy) -> Rollout {
    Rollout { policy, ..canary_rollout() }
}

#[test]
fn test_traffic_routes_the_test_listener_to_green_until_read_back() {
    let r = bg_rollout(bake_gate());
    let d = ok(Action::TestTraffic, &r, &canary_obs(0), NOW);
    assert_eq!(d.commands, vec![Command::SetTestWeights { weights: weights(0, 100) }], "never the production weights");
    assert_eq!(d.rollout.verdict, None);

    // The test route still on stable: the same command.
    let obs = Observation { test_weights: weights(100, 0), ..canary_obs(0) };
    assert_eq!(ok(Action::TestTraffic, &r, &obs, NOW).commands, vec![Command::SetTestWeights { weights: weights(0, 100) }]);

    let obs = Observation { test_weights: weights(0, 100), ..canary_obs(0) };
    let d = ok(Action::TestTraffic, &r, &obs, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
    assert_eq!(d.rollout.wait_seconds, 30, "the validation bake");
    assert_eq!(d.rollout.weight, 0, "production traffic has not moved");
}

#[test]
fn test_traffic_waits_for_the_gate() {
    let obs = Observation { test_weights: weights(0, 100), ..canary_obs(0) };
    for (validation, wait) in
        [("{ bake: 30s }".to_string(), 30), ("{ approval: { timeout: 1h } }".to_string(), 3600), (format!("{{ hook: {HOOK_ARN} }}"), 0)]
    {
        let r = Rollout { wait_seconds: 99, ..bg_rollout(blue_green_policy(&validation)) };
        let d = ok(Action::TestTraffic, &r, &obs, NOW);
        assert_eq!((d.rollout.verdict, d.rollout.wait_seconds), (Some(Verdict::Done), wait), "{validation}");
    }
}

#[test]
fn test_traffic_needs_the_lock_and_a_healthy_green() {
    let r = bg_rollout(bake_gate());
    let mut obs = canary_obs(0);
    obs.lock_holder = Some(OTHER_ROLLOUT_ID.into());
    assert!(superseded(halt(Action::TestTraffic, &r, &obs)).contains(OTHER_ROLLOUT_ID));

    let obs = Observation { failures: vec![failure("0123abcd", 1)], ..canary_obs(0) };
    let d = ok(Action::TestTraffic, &r, &obs, NOW);
    assert!(d.commands.is_empty(), "no test traffic to failing tasks: {:?}", d.commands);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert!(d.rollout.cause.unwrap().starts_with("1 task(s) of the new task set failed at 0% traffic"));
}

#[test]
fn validate_is_ready_when_all_green_tasks_run() {
    let r = bg_rollout(bake_gate());
    let obs = Observation { test_weights: weights(0, 100), ..canary_obs(0) };
    let d = ok(Action::Validate, &r, &obs, NOW);
    assert!(d.commands.is_empty());
    assert_eq!(d.rollout.verdict, Some(Verdict::Ready));
    assert_eq!(d.rollout.cause, None);
}

#[test]
fn validate_rolls_back_on_missing_tasks_failures_or_alarms() {
    let r = bg_rollout(bake_gate());
    let mut obs = canary_obs(0);
    obs.task_sets[1].running_count = Some(3);
    let d = ok(Action::Validate, &r, &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert_eq!(
        d.rollout.cause.as_deref(),
        Some("only 3 of 4 tasks of the new task set are running (0 starting) after validation on the test route")
    );

    let d = ok(Action::Validate, &r, &Observation { failures: vec![failure("0123abcd", 1)], ..canary_obs(0) }, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    let d = ok(Action::Validate, &r, &Observation { alarms_firing: vec!["web-5xx".into()], ..canary_obs(0) }, NOW);
    assert_eq!(d.rollout.cause.as_deref(), Some("alarm web-5xx is in ALARM at 0% traffic"));

    assert!(not_ready(halt(Action::Validate, &r, &fresh_obs())).contains("gone"));
}

// ---------------------------------------------------------------------------------------------
// Restore (circuit breaker) and a superseded Rollback
// ---------------------------------------------------------------------------------------------

#[test]
fn restore_puts_the_service_back_but_keeps_the_lock() {
    let r = Rollout { step: 1, weight: 50, ..canary_rollout() };
    let d = ok(Action::Restore, &r, &fenced(canary_obs(50)), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(100, 0) }]);
    assert_eq!(d.rollout.cause.as_deref(), Some(FENCE_CAUSE));
    assert_eq!(d.rollout.verdict, None);

    let d = ok(Action::Restore, &r, &fenced(canary_obs(0)), NOW);
    assert_eq!(d.commands, vec![Command::DeleteTaskSet { task_set_id: GREEN_ID.into() }]);

    // Restored, lock still ours: Restore is done, where Rollback would release the lock.
    let d = ok(Action::Restore, &r, &fenced(fresh_obs()), NOW);
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert_eq!((d.rollout.verdict, d.rollout.weight), (Some(Verdict::Done), 0));
    assert_eq!(ok(Action::Rollback, &r, &fenced(fresh_obs()), NOW).commands, vec![Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() }]);

    // After a promote got as far as scaling down, it restores the stable task set first.
    assert_eq!(
        ok(Action::Restore, &r, &fenced(promoted_obs()), NOW).commands,
        vec![
            Command::ScaleTaskSet { task_set_id: STABLE_ID.into(), percent: 100.0 },
            Command::MakePrimary { task_set_arn: task_set_arn(STABLE_ID) },
        ]
    );
}

#[test]
fn restore_needs_the_lock() {
    let mut obs = fenced(canary_obs(50));
    obs.lock_holder = Some(OTHER_ROLLOUT_ID.into());
    let h = halt(Action::Restore, &canary_rollout(), &obs);
    assert_eq!(h.error_type(), "Kanaria.Superseded");
    assert!(superseded(h).contains(OTHER_ROLLOUT_ID));
    obs.lock_holder = None;
    assert!(superseded(halt(Action::Restore, &canary_rollout(), &obs)).contains("held by nobody"));
}

#[test]
fn restore_then_rollback_in_the_world() {
    let mut world = World::new(fenced(canary_obs(50)));
    let r = Rollout { step: 1, weight: 50, ..canary_rollout() };
    let restored = world.run_and_retry(Action::Restore, &r, NOW);
    assert_eq!(restored.verdict, Some(Verdict::Done));
    assert_eq!(
        world.commands_of(Action::Restore),
        vec![Command::SetWeights { weights: weights(100, 0) }, Command::DeleteTaskSet { task_set_id: GREEN_ID.into() }]
    );
    assert_eq!(world.obs.lock_holder.as_deref(), Some(ROLLOUT_ID), "Restore keeps the lock for the Rollback state");

    // The state machine's own Rollback state (with the rollout as it was) releases it.
    let done = world.run_and_retry(Action::Rollback, &r, NOW);
    assert_eq!(world.commands_of(Action::Rollback), vec![Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() }]);
    assert_rolled_back(&world, &done);
    assert_eq!(done.cause.as_deref(), Some(FENCE_CAUSE));
}

/// The service taken over by a newer rollout that holds the lock.
fn superseded_obs(green_weight: u32) -> Observation {
    Observation { lock_holder: Some(OTHER_ROLLOUT_ID.into()), ..canary_obs(green_weight) }
}

#[test]
fn a_superseded_rollback_only_deletes_its_own_idle_task_sets() {
    let mut obs = superseded_obs(0);
    // The newer rollout's task set (no traffic yet) and our stable one are not ours to delete.
    obs.task_sets.push(view(LEFTOVER_ID, "ACTIVE", Some(TG_B), NEW_TD, Some(OTHER_ROLLOUT_ID)));
    let r = Rollout { step: 1, weight: 50, ..canary_rollout() };
    let d = ok(Action::Rollback, &r, &obs, NOW);
    assert_eq!(d.commands, vec![Command::DeleteTaskSet { task_set_id: GREEN_ID.into() }]);
    assert_eq!(d.rollout.verdict, None);

    // Found by its tag alone when the rollout never recorded it.
    let untracked = Rollout { green: None, ..r.clone() };
    assert_eq!(ok(Action::Rollback, &untracked, &obs, NOW).commands, vec![Command::DeleteTaskSet { task_set_id: GREEN_ID.into() }]);

    obs.task_sets.retain(|t| t.id != GREEN_ID);
    let d = ok(Action::Rollback, &r, &obs, NOW);
    assert!(d.commands.is_empty(), "never the other rollout's lock: {:?}", d.commands);
    assert_eq!((d.rollout.verdict, d.rollout.weight), (Some(Verdict::Done), 0));
}

#[test]
fn a_superseded_rollback_never_moves_traffic_or_changes_the_primary() {
    let r = Rollout { step: 1, weight: 50, ..canary_rollout() };
    // Green takes 50%: not ours to move back, and it must not be deleted while it serves.
    let d = ok(Action::Rollback, &r, &superseded_obs(50), NOW);
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));

    // Promoted as far as scaling down: no scale, no primary change, green (primary) kept.
    let obs = Observation { lock_holder: Some(OTHER_ROLLOUT_ID.into()), ..promoted_obs() };
    let d = ok(Action::Rollback, &r, &obs, NOW);
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
}

#[test]
fn a_hook_answer_is_judged_leniently_and_without_a_reason_is_fine() {
    assert!(HookResult { answer: serde_json::json!({"pass": true}) }.passed(), "reason is optional");
    let no_reason = HookResult { answer: serde_json::json!({"pass": false}) };
    assert_eq!((no_reason.passed(), no_reason.reason()), (false, "it gave no reason".to_string()));
    for odd in [serde_json::json!({"pass": "yes"}), serde_json::json!("ok"), serde_json::Value::Null] {
        let h = HookResult { answer: odd };
        assert!(!h.passed(), "{h:?}");
        assert!(h.reason().contains("instead of"), "{}", h.reason());
    }
}

#[test]
fn rollback_cause_precedence() {
    let hook = HookResult::answered(false, "GET /healthz on the test route answered 503");
    let error = lambda_error("Kanaria.NotConverged", "Shift did not read back");
    let mut r = Rollout { cause: Some("the verdict's cause".into()), hook: Some(hook), error: Some(error), weight: 10, ..canary_rollout() };
    let mut obs = Observation { failures: vec![failure("0123abcd", 1)], ..fenced(canary_obs(10)) };
    let cause = |r: &Rollout, obs: &Observation| ok(Action::Rollback, r, obs, NOW).rollout.cause.unwrap();

    assert_eq!(cause(&r, &obs), "the verdict's cause");
    r.cause = None;
    assert_eq!(cause(&r, &obs), FENCE_CAUSE);
    assert_eq!(ok(Action::Restore, &r, &obs, NOW).rollout.cause.as_deref(), Some(FENCE_CAUSE), "Restore too");
    obs.abort_cause = None;
    assert_eq!(cause(&r, &obs), "the validation hook failed the release: GET /healthz on the test route answered 503");
    r.hook = Some(HookResult::answered(true, "smoke tests passed"));
    assert!(cause(&r, &obs).starts_with("1 task(s) of the new task set failed at 10% traffic: task 0123abcd"));
    obs.failures.clear();
    assert_eq!(cause(&r, &obs), "Kanaria.NotConverged: Shift did not read back");
    r.error = None;
    assert_eq!(cause(&r, &obs), "rolled back");
}

// ---------------------------------------------------------------------------------------------
// Whole blue/green and linear rollouts through the world
// ---------------------------------------------------------------------------------------------

/// CreateGreen → CheckGreen (until ready) → TestTraffic. Returns the rollout after TestTraffic.
fn drive_to_test_traffic(world: &mut World, rollout: Rollout) -> Rollout {
    let mut r = world.run_and_retry(Action::CreateGreen, &rollout, NOW);
    let green_id = r.green.as_ref().unwrap().id.clone();
    r = world.run_and_retry(Action::CheckGreen, &r, NOW);
    assert_eq!(r.verdict, Some(Verdict::Wait));
    world.start_green_tasks(&green_id);
    r = world.run_and_retry(Action::CheckGreen, &r, NOW + 2);
    assert_eq!(r.verdict, Some(Verdict::Ready));
    r = world.run_and_retry(Action::TestTraffic, &r, NOW + 2);
    assert_eq!(r.verdict, Some(Verdict::Done));
    assert_eq!(world.obs.test_weights, weights(0, 100));
    assert_eq!(world.obs.weights, weights(100, 0), "production traffic has not moved");
    r
}

#[test]
fn a_whole_blue_green_rollout_converges() {
    let mut world = World::new(fresh_obs());
    let r = drive_to_test_traffic(&mut world, Rollout { policy: bake_gate(), ..new_rollout() });
    assert_eq!(r.wait_seconds, 30);

    let r = world.run_and_retry(Action::Validate, &r, NOW + 32);
    assert_eq!(r.verdict, Some(Verdict::Ready));
    let r = world.run_and_retry(Action::Shift, &r, NOW + 32);
    assert_eq!((r.verdict, r.weight, r.step, r.wait_seconds), (Some(Verdict::Done), 100, 0, 300));
    let r = world.run_and_retry(Action::Verify, &r, NOW + 332);
    assert_eq!(r.verdict, Some(Verdict::Promote));
    let r = world.run_and_retry(Action::Promote, &r, NOW + 332);
    assert_eq!((r.verdict, r.wait_seconds), (Some(Verdict::Done), 45));
    let r = world.run_and_retry(Action::Finish, &r, NOW + 377);
    assert_eq!(r.verdict, Some(Verdict::Done));

    let green = r.green.clone().unwrap();
    assert_eq!(world.obs.weights, weights(0, 100));
    assert_eq!(world.obs.task_sets.len(), 1, "{:?}", world.obs.task_sets);
    let only = &world.obs.task_sets[0];
    assert_eq!((only.id.as_str(), only.status.as_str(), only.task_definition_arn.as_str()), (green.id.as_str(), "PRIMARY", NEW_TD));
    assert_eq!(world.obs.lock_holder, None);
    let log: Vec<Command> = world.log.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        log,
        vec![
            Command::RegisterTaskDefinition { based_on: STABLE_TD.into(), container: "app".into(), image: image_uri() },
            Command::CreateTaskSet { task_definition_arn: NEW_TD.into(), target_group_arn: TG_B.into(), external_id: ROLLOUT_ID.into() },
            Command::SetTestWeights { weights: weights(0, 100) },
            Command::SetWeights { weights: weights(0, 100) },
            Command::MakePrimary { task_set_arn: green.arn.clone() },
            Command::ScaleTaskSet { task_set_id: STABLE_ID.into(), percent: 0.0 },
            Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() },
            Command::DeleteTaskSet { task_set_id: STABLE_ID.into() },
        ]
    );
}

#[test]
fn a_blue_green_rollout_whose_hook_fails_rolls_back_without_moving_production_traffic() {
    let mut world = World::new(fresh_obs());
    let r = drive_to_test_traffic(&mut world, Rollout { policy: blue_green_policy(&format!("{{ hook: {HOOK_ARN} }}")), ..new_rollout() });
    assert_eq!(r.wait_seconds, 0);
    // RunValidationHook puts the Lambda's whole answer in $.hook; CheckValidation judges it.
    let answered = Rollout { hook: Some(HookResult::answered(false, "checkout smoke test failed")), ..r };
    let judged = world.run_and_retry(Action::Validate, &answered, NOW + 10);
    assert_eq!(judged.verdict, Some(Verdict::Rollback));
    world.log.clear();
    let done = world.run_and_retry(Action::Rollback, &judged, NOW + 10);
    assert_eq!(
        world.commands_of(Action::Rollback),
        vec![
            // The test listener back on the stable task set before the new one goes.
            Command::SetTestWeights { weights: weights(100, 0) },
            Command::DeleteTaskSet { task_set_id: answered.green.as_ref().unwrap().id.clone() },
            Command::ReleaseLock { rollout_id: ROLLOUT_ID.into() }
        ]
    );
    assert_rolled_back(&world, &done);
    assert_eq!(done.cause.as_deref(), Some("the validation hook failed the release: checkout smoke test failed"));
}

#[test]
fn a_whole_linear_rollout_converges() {
    let mut world = World::new(fresh_obs());
    let r = drive_canary(&mut world, Rollout { policy: linear_policy(30), ..new_rollout() }, None);
    assert_eq!((r.verdict, r.step, r.weight), (Some(Verdict::Promote), 3, 100));
    assert_eq!(
        world.commands_of(Action::Shift),
        vec![
            Command::SetWeights { weights: weights(70, 30) },
            Command::SetWeights { weights: weights(40, 60) },
            Command::SetWeights { weights: weights(10, 90) },
            Command::SetWeights { weights: weights(0, 100) },
        ]
    );
    let r = world.run_and_retry(Action::Promote, &r, NOW + 1000);
    world.run_and_retry(Action::Finish, &r, NOW + 1045);
    assert_eq!(world.obs.weights, weights(0, 100));
    assert_eq!(world.obs.task_sets.len(), 1);
    assert_eq!(world.obs.task_sets[0].status, "PRIMARY");
    assert_eq!(world.obs.task_sets[0].external_id.as_deref(), Some(ROLLOUT_ID));
    assert_eq!(world.obs.lock_holder, None);
}

#[test]
fn a_linear_rollout_with_failures_at_60_percent_rolls_back() {
    let mut world = World::new(fresh_obs());
    let r = drive_canary(&mut world, Rollout { policy: linear_policy(30), ..new_rollout() }, Some(60));
    assert_eq!((r.verdict, r.step, r.weight), (Some(Verdict::Rollback), 1, 60));
    let (done, _) = world.run(Action::Rollback, &r, NOW + 1000);
    assert_rolled_back(&world, &done);
    assert!(done.cause.unwrap().contains("at 60% traffic"));
}

#[test]
fn validate_and_verify_never_call_zero_expected_tasks_healthy() {
    // Someone scaled the new task set to 0% (ECS then computes 0 desired tasks) while it sat on
    // the test route: nothing serves on it, yet the cutover would send it 100%.
    let mut obs = canary_obs(0);
    obs.task_sets[1].scale_percent = 0.0;
    obs.task_sets[1].computed_desired_count = Some(0);
    obs.task_sets[1].running_count = Some(0);
    assert_eq!(ok(Action::CheckGreen, &canary_rollout(), &obs, NOW).rollout.verdict, Some(Verdict::Wait), "CheckGreen's rule");
    let d = ok(Action::Validate, &bg_rollout(bake_gate()), &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback), "Validate decided {:?}", d.rollout.verdict);

    let mut obs = canary_obs(50);
    obs.task_sets[1].scale_percent = 0.0;
    obs.task_sets[1].computed_desired_count = Some(0);
    obs.task_sets[1].running_count = Some(0);
    let d = ok(Action::Verify, &Rollout { step: 1, weight: 50, ..canary_rollout() }, &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback), "Verify decided {:?}", d.rollout.verdict);
}

// ---------------------------------------------------------------------------------------------
// Approval steps: a person's go-ahead after a verified step
// ---------------------------------------------------------------------------------------------

const APPROVAL_STRATEGY: &str = "strategy:
  canary:
    steps:
      - { weight: 10, bake: 1m }
      - approval: { timeout: 1h }
      - { weight: 50, bake: 2m }
      - approval: { timeout: 30m, onTimeout: promote }
";

fn approval_rollout(step: usize, weight: u32) -> Rollout {
    Rollout { policy: policy_with(APPROVAL_STRATEGY, ""), step, weight, ..canary_rollout() }
}

#[test]
fn an_approval_step_belongs_to_the_traffic_step_before_it() {
    let p = policy_with(APPROVAL_STRATEGY, "");
    let steps = p.steps();
    assert_eq!(steps.iter().map(|s| s.weight).collect::<Vec<_>>(), vec![10, 50]);
    assert_eq!(steps[0].approval.as_ref().map(|a| (a.timeout.secs(), a.on_timeout)), Some((3600, OnTimeout::Rollback)));
    assert_eq!(steps[1].approval.as_ref().map(|a| (a.timeout.secs(), a.on_timeout)), Some((1800, OnTimeout::Promote)));
}

#[test]
fn verify_of_a_step_with_an_approval_asks_for_one_before_the_next_step() {
    let d = ok(Action::Verify, &approval_rollout(0, 10), &canary_obs(10), NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::NextStep));
    assert_eq!(d.rollout.step, 1);
    assert_eq!(
        d.rollout.approval,
        Some(PendingApproval { timeout_seconds: 3600, on_timeout: OnTimeout::Rollback, weight: 10, forbid_self_approval: false })
    );
}

#[test]
fn forbid_self_approval_travels_with_the_pending_approval() {
    let strategy = APPROVAL_STRATEGY.replace("timeout: 1h", "timeout: 1h, forbidSelfApproval: true");
    assert_ne!(strategy, APPROVAL_STRATEGY);
    let rollout = Rollout { policy: policy_with(&strategy, ""), step: 0, weight: 10, ..canary_rollout() };
    let d = ok(Action::Verify, &rollout, &canary_obs(10), NOW);
    assert_eq!(d.rollout.approval.map(|a| a.forbid_self_approval), Some(true));
    // It reaches the state machine's input (and back) only when set.
    let pending = PendingApproval { timeout_seconds: 60, on_timeout: OnTimeout::Rollback, weight: 10, forbid_self_approval: false };
    assert!(!serde_json::to_string(&pending).unwrap().contains("forbid"));
}

#[test]
fn a_trailing_approval_gates_the_promotion() {
    let d = ok(Action::Verify, &approval_rollout(1, 50), &canary_obs(50), NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Promote));
    assert_eq!(
        d.rollout.approval,
        Some(PendingApproval { timeout_seconds: 1800, on_timeout: OnTimeout::Promote, weight: 50, forbid_self_approval: false })
    );
}

#[test]
fn a_failing_step_asks_for_no_approval_it_rolls_back() {
    let obs = Observation { failures: vec![failure("t1", 1)], ..canary_obs(10) };
    let d = ok(Action::Verify, &approval_rollout(0, 10), &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Rollback));
    assert_eq!(d.rollout.approval, None);
}

#[test]
fn kanaria_promote_counts_as_the_go_ahead() {
    let obs = Observation { promote_requested: true, ..canary_obs(10) };
    let d = ok(Action::Verify, &approval_rollout(0, 10), &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Promote));
    assert_eq!(d.rollout.approval, None);
}

#[test]
fn the_next_decision_clears_a_granted_approval() {
    let pending = PendingApproval { timeout_seconds: 3600, on_timeout: OnTimeout::Rollback, weight: 10, forbid_self_approval: false };
    let r = Rollout { approval: Some(pending), ..approval_rollout(1, 10) };
    let d = ok(Action::Shift, &r, &canary_obs(10), NOW);
    assert_eq!(d.rollout.approval, None);
}

#[test]
fn an_approval_timeout_rolls_back_with_a_cause_people_understand() {
    let pending = PendingApproval { timeout_seconds: 3600, on_timeout: OnTimeout::Rollback, weight: 10, forbid_self_approval: false };
    let error = StateError { error: "States.Timeout".into(), cause: String::new() };
    let r = Rollout { approval: Some(pending), error: Some(error), ..approval_rollout(1, 10) };
    let d = ok(Action::Rollback, &r, &canary_obs(10), NOW);
    assert_eq!(d.rollout.cause.as_deref(), Some("nobody approved within 1h at 10% traffic (the policy's approval rolls back on timeout)"));
}

#[test]
fn blue_green_approval_gate_asks_for_an_approval_on_the_test_route() {
    let r = Rollout { policy: blue_green_policy("{ approval: { timeout: 2h, onTimeout: promote } }"), ..canary_rollout() };
    let green = green_ref_().target_group_arn;
    let obs = Observation { test_weights: vec![(TG_A.into(), 0), (green, 100)], ..canary_obs(0) };
    let d = ok(Action::TestTraffic, &r, &obs, NOW);
    assert_eq!(d.rollout.verdict, Some(Verdict::Done));
    assert_eq!(
        d.rollout.approval,
        Some(PendingApproval { timeout_seconds: 7200, on_timeout: OnTimeout::Promote, weight: 0, forbid_self_approval: false })
    );
}

#[test]
fn create_green_remembers_the_stable_image_for_people() {
    let obs = Observation { stable_image: Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:v1.4.2".into()), ..fresh_obs() };
    let d = ok(Action::CreateGreen, &new_rollout(), &obs, NOW);
    assert_eq!(d.rollout.stable_image.as_deref(), Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:v1.4.2"));
}

#[test]
fn approval_step_policies_that_cannot_work_are_refused_with_a_fix() {
    let bad = |strategy: &str, extra: &str| -> Vec<String> {
        let text = format!("{}{extra}", POLICY.replace(CANARY_STRATEGY, strategy));
        match policy::parse("t", &text) {
            Ok(_) => vec![],
            Err(e) => e.problems().iter().map(|p| format!("{}: {}", p.path, p.message)).collect(),
        }
    };
    let first = bad("strategy:\n  canary:\n    steps:\n      - approval: { timeout: 1h }\n      - { weight: 10, bake: 1m }\n", "");
    assert_eq!(first, vec!["strategy.canary.steps[0]: comes before any traffic step"]);
    let twice = bad(
        "strategy:\n  canary:\n    steps:\n      - { weight: 10, bake: 1m }\n      - approval: { timeout: 1h }\n      - approval: { timeout: 1h }\n",
        "",
    );
    assert_eq!(twice, vec!["strategy.canary.steps[2]: follows another approval"]);
    let after_100 = bad("strategy:\n  canary:\n    steps:\n      - { weight: 100, bake: 1m }\n      - approval: { timeout: 1h }\n", "");
    assert_eq!(after_100, vec!["strategy.canary.steps[1]: follows the 100% step, so there is nothing left to approve"]);
    let both = bad("strategy:\n  canary:\n    steps:\n      - { weight: 10, bake: 1m, approval: { timeout: 1h } }\n", "");
    assert_eq!(both, vec!["strategy.canary.steps[0]: is both a traffic step and an approval"]);
    let long = bad("strategy:\n  canary:\n    steps:\n      - { weight: 10, bake: 1m }\n      - approval: { timeout: 8d }\n", "");
    assert_eq!(long, vec!["strategy.canary.steps[1].approval.timeout: 8days is outside 1s..7 days"]);
    let no_bake = bad("strategy:\n  canary:\n    steps:\n      - { weight: 10 }\n", "");
    assert_eq!(no_bake, vec!["strategy.canary.steps[0].bake: is missing"]);
    let slack = bad(CANARY_STRATEGY, "slack: { channel: '#deploys', approvers: [alice, U012AB3CD], approverGroups: ['@sre'] }\n");
    assert_eq!(
        slack,
        vec![
            "slack.channel: \"#deploys\" is not a Slack channel id",
            "slack.approvers[0]: \"alice\" is not a Slack user id",
            "slack.approverGroups[0]: \"@sre\" is not a Slack user group id"
        ]
    );
    assert!(bad(APPROVAL_STRATEGY, "slack: { channel: C0123ABCD, approvers: [U012AB3CD], approverGroups: [S0614TZR7] }\n").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Paced shift back (policy `shiftBack`): issue 15 #1
// ---------------------------------------------------------------------------------------------

fn paced_rollout(weight: u32) -> Rollout {
    let policy = policy_with(CANARY_STRATEGY, "shiftBack: { steps: [50, 20], interval: 30s }\n");
    Rollout { step: 2, weight, policy, ..canary_rollout() }
}

/// Fenced by a newer push or a person, who asked for the policy's pace.
fn fenced_paced(obs: Observation) -> Observation {
    Observation { abort_paced: true, ..fenced(obs) }
}

#[test]
fn a_paced_rollback_steps_down_holding_each_step_then_deletes_the_new_task_set() {
    let r = paced_rollout(100);
    // From 100% on the new task set: the first step below it at once.
    let d = ok(Action::Rollback, &r, &fenced_paced(canary_obs(100)), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(50, 50) }]);
    assert_eq!(d.rollout.shift_back_at, Some(NOW));

    // On the step: held for the interval, without running the stabilization timeout.
    let held = d.rollout.clone();
    let d = ok(Action::Rollback, &held, &fenced_paced(canary_obs(50)), NOW + 10);
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert_eq!(d.rollout.verdict, Some(Verdict::Wait));
    assert!(d.rollout.waiting_for.as_deref().unwrap().contains("50% on the new task set for 21s more"), "{:?}", d.rollout.waiting_for);
    assert_eq!(d.rollout.wait_seconds, ROLLBACK_POLL_SECONDS);
    assert_eq!(d.rollout.rollback_started_at, None, "a held step is not a stable task set failing to come up");
    let d = ok(Action::Rollback, &held, &fenced_paced(canary_obs(50)), NOW + 28);
    assert_eq!(d.rollout.wait_seconds, 3);
    assert!(ok(Action::Rollback, &held, &fenced_paced(canary_obs(50)), NOW + 30).commands.is_empty(), "held at least the interval");

    // Held long enough: the next step, then all the way back, then the new task set goes.
    let d = ok(Action::Rollback, &held, &fenced_paced(canary_obs(50)), NOW + 31);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(80, 20) }]);
    let at_20 = Rollout { shift_back_at: Some(NOW + 31), ..held.clone() };
    assert!(ok(Action::Rollback, &at_20, &fenced_paced(canary_obs(20)), NOW + 61).commands.is_empty());
    assert_eq!(
        ok(Action::Rollback, &at_20, &fenced_paced(canary_obs(20)), NOW + 62).commands,
        vec![Command::SetWeights { weights: weights(100, 0) }]
    );
    assert_eq!(
        ok(Action::Rollback, &at_20, &fenced_paced(canary_obs(0)), NOW + 62).commands,
        vec![Command::DeleteTaskSet { task_set_id: GREEN_ID.into() }]
    );
}

#[test]
fn a_paced_rollback_skips_steps_at_or_above_the_new_task_sets_weight() {
    // At 30%: 50 is skipped, 20 is the first step.
    let d = ok(Action::Rollback, &paced_rollout(30), &fenced_paced(canary_obs(30)), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(80, 20) }]);
    // At 10%: no step below, all the way back.
    let d = ok(Action::Rollback, &paced_rollout(10), &fenced_paced(canary_obs(10)), NOW);
    assert_eq!(d.commands, vec![Command::SetWeights { weights: weights(100, 0) }]);
    // A step reached by the circuit breaker's own restore is held from the first look.
    let d = ok(Action::Rollback, &paced_rollout(50), &fenced_paced(canary_obs(50)), NOW);
    assert!(d.commands.is_empty(), "{:?}", d.commands);
    assert_eq!((d.rollout.verdict, d.rollout.shift_back_at), (Some(Verdict::Wait), Some(NOW)));
}

#[test]
fn a_failure_signal_moves_all_traffic_back_at_once_even_when_the_policy_paces() {
    let r = paced_rollout(100);
    let all_back = vec![Command::SetWeights { weights: weights(100, 0) }];
    // A fence that asked for it at once (failed tasks, an alarm, `kanaria abort --now`).
    assert_eq!(ok(Action::Rollback, &r, &fenced(canary_obs(100)), NOW).commands, all_back);
    assert_eq!(ok(Action::Restore, &r, &fenced(canary_obs(100)), NOW).commands, all_back);
    // Failed tasks of the new task set.
    let mut obs = fenced_paced(canary_obs(50));
    obs.failures = vec![failure("a1", 1)];
    assert_eq!(ok(Action::Rollback, &paced_rollout(50), &obs, NOW).commands, all_back);
    // An alarm in ALARM.
    let obs = Observation { alarms_firing: vec!["web-5xx".into()], ..fenced_paced(canary_obs(50)) };
    assert_eq!(ok(Action::Rollback, &paced_rollout(50), &obs, NOW).commands, all_back);
    // A new task that is not a healthy target any more.
    let mut obs = fenced_paced(canary_obs(50));
    obs.target_health.push((GREEN_ID.into(), TargetHealth { running_tasks: 4, healthy: 3 }));
    assert_eq!(ok(Action::Rollback, &paced_rollout(50), &obs, NOW).commands, all_back);
    // A failed analysis (a rollback of the state machine's own, not fenced, not paced).
    let failed = Rollout { cause: Some("canary analysis at 50%: 5xx rate above the allowed".into()), ..paced_rollout(50) };
    assert_eq!(ok(Action::Rollback, &failed, &canary_obs(50), NOW).commands, all_back);
    // Without `shiftBack`, a paced fence goes at once too.
    let unpaced = Rollout { step: 2, weight: 100, ..canary_rollout() };
    assert_eq!(ok(Action::Rollback, &unpaced, &fenced_paced(canary_obs(100)), NOW).commands, all_back);
}

#[test]
fn an_inconclusive_analysis_that_rolls_back_is_paced() {
    let r = Rollout { paced_rollback: true, ..paced_rollout(100) };
    assert_eq!(ok(Action::Rollback, &r, &canary_obs(100), NOW).commands, vec![Command::SetWeights { weights: weights(50, 50) }]);
}

#[test]
fn shift_back_is_validated() {
    for (extra, path) in [
        ("shiftBack: { steps: [], interval: 30s }\n", "shiftBack.steps"),
        ("shiftBack: { steps: [20, 50], interval: 30s }\n", "shiftBack.steps"),
        ("shiftBack: { steps: [100], interval: 30s }\n", "shiftBack.steps[0]"),
        ("shiftBack: { steps: [50], interval: 2h }\n", "shiftBack.interval"),
    ] {
        let text = format!("{POLICY}{extra}");
        let err = policy::parse("shift-back", &text).expect_err(extra).to_string();
        assert!(err.contains(path), "{extra}: {err}");
    }
}

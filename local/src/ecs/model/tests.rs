use super::*;

const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/1";

fn spec(id: &str, scale: f64, desired: u32) -> TaskSetSpec {
    TaskSetSpec {
        id: id.into(),
        arn: format!("arn:aws:ecs:us-east-1:123456789012:task-set/demo/web/{id}"),
        cluster_arn: "arn:aws:ecs:us-east-1:123456789012:cluster/demo".into(),
        service: "web".into(),
        task_definition_arn: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2".into(),
        scale_percent: scale,
        load_balancer: Some((TG.into(), "web".into(), 8080)),
        service_desired_count: desired,
    }
}

/// A model and a clock: `run` ticks every 50 ms and starts the tasks it is asked to, as the
/// simulator does with RunTask.
struct World {
    model: Model,
    now: Instant,
    events: Vec<Task>,
    next_task: u32,
    deleted: Vec<String>,
}

impl World {
    fn new() -> Self {
        World { model: Model::new(Timing::default()), now: Instant::now(), events: vec![], next_task: 0, deleted: vec![] }
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::StartTasks { task_set_id, count } => {
                    for _ in 0..count {
                        self.next_task += 1;
                        let arn = format!("arn:aws:ecs:us-east-1:123456789012:task/demo/t{}", self.next_task);
                        let ip = format!("10.0.0.{}", self.next_task);
                        let more =
                            self.model.task_started(&task_set_id, &arn, &ip, vec![("web".into(), "demo/web@sha256:new".into())], self.now);
                        self.apply(more);
                    }
                }
                Effect::Publish(TaskEvent { task }) => self.events.push(task),
                Effect::StopInMoto { .. } => {}
                Effect::DeleteTaskSet { task_set_arn, .. } => self.deleted.push(task_set_arn),
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(50);
            let effects = self.model.tick(self.now);
            self.apply(effects);
        }
    }

    fn statuses_of(&self, task: &str) -> Vec<(String, bool, u64)> {
        self.events
            .iter()
            .filter(|t| t.arn.ends_with(task))
            .map(|t| (t.last_status.as_str().to_string(), t.desired_running, t.version))
            .collect()
    }
}

#[test]
fn new_tasks_start_over_the_start_delay_and_become_healthy_after_the_healthy_threshold() {
    let mut w = World::new();
    let effects = w.model.sync(vec![spec("ecs-svc/1", 100.0, 2)], w.now);
    w.apply(effects);
    w.run(Duration::from_millis(50));
    let c = w.model.counts("ecs-svc/1").unwrap();
    assert_eq!((c.computed_desired, c.running, c.pending, c.steady), (2, 0, 2, false), "tasks are never RUNNING at once");
    assert!(w.model.targets_of(TG).is_empty(), "no target before RUNNING");

    w.run(Duration::from_millis(1000));
    let c = w.model.counts("ecs-svc/1").unwrap();
    assert_eq!((c.running, c.pending, c.steady), (2, 0, false), "RUNNING but not yet healthy: STABILIZING");
    let targets = w.model.targets_of(TG);
    assert_eq!(targets.len(), 2);
    assert!(targets.iter().all(|t| t.state == TargetState::Initial));

    // 5 healthy checks × 30 s × 0.01 = 1.5 s.
    w.run(Duration::from_millis(1400));
    assert!(!w.model.counts("ecs-svc/1").unwrap().steady);
    w.run(Duration::from_millis(200));
    assert!(w.model.targets_of(TG).iter().all(|t| t.state == TargetState::Healthy));
    assert!(w.model.counts("ecs-svc/1").unwrap().steady);
    assert_eq!(
        w.statuses_of("t1").iter().map(|(s, _, _)| s.as_str()).collect::<Vec<_>>(),
        ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING"]
    );
    let versions: Vec<u64> = w.statuses_of("t1").iter().map(|(_, _, v)| *v).collect();
    assert!(versions.windows(2).all(|v| v[0] < v[1]), "detail.version rises with every change: {versions:?}");
}

#[test]
fn computed_desired_count_rounds_up_as_ecs_does() {
    let mut w = World::new();
    let effects = w.model.sync(vec![spec("ecs-svc/1", 10.0, 2)], w.now);
    w.apply(effects);
    assert_eq!(w.model.counts("ecs-svc/1").unwrap().computed_desired, 1);
    let effects = w.model.sync(vec![spec("ecs-svc/1", 0.0, 2)], w.now);
    w.apply(effects);
    assert_eq!(w.model.counts("ecs-svc/1").unwrap().computed_desired, 0);
}

#[test]
fn a_crash_is_announced_first_and_stopped_after_the_deregistration_delay() {
    let mut w = World::new();
    w.model.add_rule("sha256:new", Behaviour { crash: Some((3, Duration::from_millis(2000))), ..Default::default() });
    let effects = w.model.sync(vec![spec("ecs-svc/1", 100.0, 1)], w.now);
    w.apply(effects);
    w.run(Duration::from_millis(3100));
    let first_stop = w.events.iter().find(|t| !t.desired_running).expect("the crash is announced").clone();
    assert_eq!(first_stop.last_status, LastStatus::Running, "desiredStatus STOPPED arrives while lastStatus is RUNNING");
    let stop = first_stop.stop.clone().unwrap();
    assert_eq!(stop.stop_code, "EssentialContainerExited");
    assert_eq!(stop.exit_codes, vec![("web".to_string(), 3)]);
    assert_eq!(w.model.targets_of(TG)[0].state, TargetState::Draining, "the target drains at once");

    // The deregistration delay: 300 s × 0.01 = 3 s before STOPPING.
    w.run(Duration::from_millis(2500));
    let t1: Vec<String> = w.statuses_of("t1").into_iter().map(|(s, _, _)| s).collect();
    assert!(t1.contains(&"DEACTIVATING".to_string()) && !t1.contains(&"STOPPED".to_string()), "{t1:?}");
    w.run(Duration::from_millis(1000));
    let t1: Vec<String> = w.statuses_of("t1").into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(&t1[t1.len() - 3..], ["STOPPING", "DEPROVISIONING", "STOPPED"]);
    assert!(w.model.targets_of(TG).iter().all(|t| !t.task_arn.ends_with("/t1")), "deregistered");
    // ECS replaced the task after its restart delay.
    assert!(w.events.iter().any(|t| t.arn.ends_with("/t2")), "a replacement started");
}

#[test]
fn a_task_that_fails_to_start_never_registers_a_target() {
    let mut w = World::new();
    w.model.add_rule("sha256:new", Behaviour { fail_to_start: Some("CannotPullContainerError: not found".into()), ..Default::default() });
    let effects = w.model.sync(vec![spec("ecs-svc/1", 100.0, 1)], w.now);
    w.apply(effects);
    w.run(Duration::from_millis(1500));
    let stop = w.events.iter().find(|t| !t.desired_running).unwrap();
    assert_eq!(stop.stop.as_ref().unwrap().stop_code, "TaskFailedToStart");
    assert!(stop.last_status.is_starting());
    assert!(w.model.targets_of(TG).is_empty());
    assert!(w.statuses_of("t1").iter().any(|(s, _, _)| s == "STOPPED"));
    assert!(!w.model.counts("ecs-svc/1").unwrap().steady);
}

#[test]
fn failing_health_checks_make_the_target_unhealthy_and_ecs_replaces_the_task() {
    let mut w = World::new();
    w.model.add_rule("sha256:new", Behaviour { fail_health_checks: true, ..Default::default() });
    let effects = w.model.sync(vec![spec("ecs-svc/1", 100.0, 1)], w.now);
    w.apply(effects);
    // RUNNING at 1 s, 2 failed checks × 30 s × 0.01 = 0.6 s later unhealthy, then stopped.
    w.run(Duration::from_millis(1700));
    let stop = w.events.iter().find(|t| !t.desired_running).expect("ECS stops the unhealthy task");
    assert!(stop.stop.as_ref().unwrap().reason.contains("failed ELB health checks"), "{stop:?}");
    assert!(!w.model.counts("ecs-svc/1").unwrap().steady);
}

#[test]
fn a_deleted_task_set_drains_then_disappears() {
    let mut w = World::new();
    let effects = w.model.sync(vec![spec("ecs-svc/1", 100.0, 1)], w.now);
    w.apply(effects);
    w.run(Duration::from_millis(3000));
    assert!(w.model.counts("ecs-svc/1").unwrap().steady);
    assert!(w.model.delete_task_set("ecs-svc/1"));
    w.run(Duration::from_millis(100));
    let c = w.model.counts("ecs-svc/1").unwrap();
    assert!(c.draining && c.computed_desired == 0 && !c.steady);
    assert_eq!(w.model.targets_of(TG)[0].state, TargetState::Draining);
    assert!(w.deleted.is_empty(), "still draining");
    w.run(Duration::from_millis(3500));
    assert_eq!(w.deleted.len(), 1, "removed from moto once its tasks stopped");
    assert!(w.model.is_gone("ecs-svc/1"));
    assert!(!w.model.delete_task_set("ecs-svc/1"), "deleting it again finds nothing");
    let effects = w.model.sync(vec![], w.now);
    w.apply(effects);
    assert!(w.model.counts("ecs-svc/1").is_none());
}

#[test]
fn scaling_out_the_service_starts_tasks_with_the_same_delay_and_scale_in_stops_extras() {
    let mut w = World::new();
    let effects = w.model.sync(vec![spec("ecs-svc/1", 100.0, 1)], w.now);
    w.apply(effects);
    w.run(Duration::from_millis(3000));
    let effects = w.model.sync(vec![spec("ecs-svc/1", 100.0, 3)], w.now);
    w.apply(effects);
    w.run(Duration::from_millis(100));
    let c = w.model.counts("ecs-svc/1").unwrap();
    assert_eq!((c.running, c.pending, c.steady), (1, 2, false));
    w.run(Duration::from_millis(2600));
    assert!(w.model.counts("ecs-svc/1").unwrap().steady);
    let effects = w.model.sync(vec![spec("ecs-svc/1", 100.0, 1)], w.now);
    w.apply(effects);
    w.run(Duration::from_millis(100));
    // The first event of each stop: desiredStatus STOPPED while still RUNNING.
    let stops: Vec<&Task> = w.events.iter().filter(|t| !t.desired_running && t.last_status == LastStatus::Running).collect();
    assert_eq!(stops.len(), 2);
    assert!(stops.iter().all(|t| t.stop.as_ref().unwrap().reason.starts_with("Scaling activity initiated by")));
    assert_eq!(w.model.counts("ecs-svc/1").unwrap().running, 1);
}

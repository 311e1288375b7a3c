//! The chaos matrix: for every mutating AWS operation of a canary that promotes and of a
//! rollback, each kind of fault AWS can answer with is injected at that operation, and the
//! invariants must hold afterwards:
//! - the execution ends, with the right outcome (promoted — or, for the canary, rolled back with
//!   a cause a person can read; the rollback rolled back, naming the failed task);
//! - 100% of traffic on exactly one task set, STEADY_STATE with healthy tasks;
//! - no duplicate task sets or task-definition revisions;
//! - the service's lock released;
//! - the traffic probe saw no error outside the fault itself (none at all for the canary; none on
//!   the stable target group for the rollback, whose failing new tasks are the fault).
//!
//! A fault that the SDK would hide by retrying (a throttle, a 500) is kept up for the SDK's three
//! attempts, so kanaria's own retries (Lambda's, Step Functions') are what get tested; "applied
//! then error" hits once (the SDK's retry then repeats an applied call).
//!
//! `make test` runs a representative slice (`chaos_slice`); `make chaos` runs the whole matrix
//! (`chaos_matrix`, ~130 runs, several at a time) and prints the table.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::{start, Env};
use kanaria::rollout::Stability;
use kanaria_local::faults::{FaultKind, FaultRule};
use kanaria_local::fixture::{self, SampleOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// A two-step canary of a good image that promotes.
    Promote,
    /// A canary whose new tasks crash during the bake: the circuit breaker rolls it back.
    Rollback,
}

#[derive(Debug, Clone)]
struct Case {
    scenario: Scenario,
    caller: &'static str,
    operation: &'static str,
    kind: FaultKind,
    times: u32,
}

/// Every mutating operation of the two scenarios, by the function that makes it.
const PROMOTE_OPERATIONS: &[(&str, &str)] = &[
    ("on-image-push", "dynamodb:PutItem"),
    ("on-image-push", "dynamodb:TransactWriteItems"),
    ("on-image-push", "states:StartExecution"),
    ("on-image-push", "dynamodb:UpdateItem"),
    ("rollout-step", "ecs:RegisterTaskDefinition"),
    ("rollout-step", "ecs:CreateTaskSet"),
    ("rollout-step", "elasticloadbalancing:ModifyListener"),
    ("rollout-step", "ecs:UpdateServicePrimaryTaskSet"),
    ("rollout-step", "ecs:UpdateTaskSet"),
    ("rollout-step", "dynamodb:UpdateItem"),
    ("rollout-step", "dynamodb:TransactWriteItems"),
    ("rollout-step", "ecs:DeleteTaskSet"),
    ("rollout-step", "sns:Publish"),
    ("states", "lambda:Invoke"),
];

const ROLLBACK_OPERATIONS: &[(&str, &str)] = &[
    ("on-task-event", "dynamodb:PutItem"),
    ("on-task-event", "dynamodb:UpdateItem"),
    ("on-task-event", "elasticloadbalancing:ModifyListener"),
    ("on-task-event", "ecs:DeleteTaskSet"),
    ("on-task-event", "states:SendTaskFailure"),
    ("on-task-event", "sns:Publish"),
    ("rollout-step", "dynamodb:TransactWriteItems"),
    ("states", "lambda:Invoke"),
];

/// The faults each operation gets, with how many calls in a row they hit.
fn faults_for(operation: &str) -> Vec<(FaultKind, u32)> {
    if operation == "lambda:Invoke" {
        // The state machine's SDK (botocore) retries a throttled invoke four times itself.
        return vec![
            (FaultKind::LambdaTooManyRequests, 6),
            (FaultKind::LambdaTimeout, 1),
            (FaultKind::AppliedThenError, 1),
            (FaultKind::ServerError, 6),
        ];
    }
    let mut kinds = vec![
        (FaultKind::Throttle, 3),
        (FaultKind::ServerError, 3),
        (FaultKind::Unavailable, 3),
        (FaultKind::DropConnection, 3),
        (FaultKind::AppliedThenError, 1),
    ];
    if operation == "dynamodb:TransactWriteItems" {
        kinds.push((FaultKind::TransactionCanceled("TransactionConflict".into()), 1));
        kinds.push((FaultKind::TransactionCanceled("ThrottlingError".into()), 1));
    }
    kinds
}

fn matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    for (scenario, operations) in [(Scenario::Promote, PROMOTE_OPERATIONS), (Scenario::Rollback, ROLLBACK_OPERATIONS)] {
        for (caller, operation) in operations {
            for (kind, times) in faults_for(operation) {
                cases.push(Case { scenario, caller, operation, kind, times });
            }
        }
    }
    cases
}

/// What `make test` runs: each fault kind and each function at least once, at the operations
/// where a fault has hurt before (lost replies, cancelled transactions, throttled invokes).
fn slice() -> Vec<Case> {
    let pick = |scenario, caller, operation, kind: FaultKind, times| Case { scenario, caller, operation, kind, times };
    vec![
        pick(Scenario::Promote, "rollout-step", "ecs:RegisterTaskDefinition", FaultKind::AppliedThenError, 1),
        pick(Scenario::Promote, "rollout-step", "elasticloadbalancing:ModifyListener", FaultKind::Throttle, 3),
        pick(
            Scenario::Promote,
            "on-image-push",
            "dynamodb:TransactWriteItems",
            FaultKind::TransactionCanceled("ThrottlingError".into()),
            1,
        ),
        pick(Scenario::Promote, "states", "lambda:Invoke", FaultKind::LambdaTooManyRequests, 6),
        pick(Scenario::Rollback, "on-task-event", "elasticloadbalancing:ModifyListener", FaultKind::DropConnection, 3),
        pick(Scenario::Rollback, "on-task-event", "ecs:DeleteTaskSet", FaultKind::AppliedThenError, 1),
        pick(
            Scenario::Rollback,
            "rollout-step",
            "dynamodb:TransactWriteItems",
            FaultKind::TransactionCanceled("TransactionConflict".into()),
            1,
        ),
        pick(Scenario::Rollback, "on-task-event", "states:SendTaskFailure", FaultKind::Unavailable, 3),
    ]
}

#[derive(Debug)]
struct Row {
    case: Case,
    fired: u32,
    outcome: String,
    /// Invariants that did not hold, with what was seen.
    broken: Vec<String>,
    seconds: f64,
}

async fn run_case(case: Case) -> Row {
    let started = Instant::now();
    let options = match case.scenario {
        Scenario::Promote => SampleOptions { steps: vec![(10, 1), (50, 1)], drain_seconds: 1, ..SampleOptions::default() },
        // A bake only the circuit breaker can end.
        Scenario::Rollback => SampleOptions { steps: vec![(10, 600), (50, 1)], drain_seconds: 1, ..SampleOptions::default() },
    };
    let env = start(options).await;
    let digest = fixture::new_digest(&format!("chaos-{}-{}-{}", case.caller, case.operation, case.kind.name()));
    if case.scenario == Scenario::Rollback {
        // Crashes once it serves its 10% (RUNNING at 1 s, healthy 1.5 s later, then shifted).
        env.local.simulator.crash_images(&digest, 1, Duration::from_secs(5));
    }
    let fault = env.local.shared.faults.add(FaultRule::new(case.caller, case.operation, case.kind.clone()).times(case.times));
    env.push("v2", &digest).await;
    let mut broken = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let started_execution = loop {
        if let Some(e) = env.started_executions().first().cloned() {
            break Some(e);
        }
        if Instant::now() > deadline {
            break None;
        }
        tick(&env).await;
    };
    let outcome = match started_execution {
        None => {
            broken.push("no rollout started".into());
            "none".into()
        }
        Some(execution) => match env.wait_for_end(&execution, Duration::from_secs(240)).await {
            Ok((status, error, cause)) => {
                check_outcome(&env, case.scenario, &digest, &status, &error, &cause, &mut broken).await;
                if error.is_empty() {
                    status
                } else {
                    format!("{status} {error}: {}", short(&cause))
                }
            }
            Err(e) => {
                broken.push(format!("the execution did not end: {e}"));
                "RUNNING".into()
            }
        },
    };
    check_service(&env, &mut broken).await;
    check_traffic(&env, case.scenario, &mut broken);
    let fired = env.local.shared.faults.fired(fault);
    if fired == 0 {
        broken.push(format!("the fault never fired: {} does not call {} in this scenario", case.caller, case.operation));
    }
    Row { case, fired, outcome, broken, seconds: started.elapsed().as_secs_f64() }
}

/// Wait a little for emulated AWS to change (the simulator's clock), up to half a second.
async fn tick(env: &Env) {
    tokio::time::timeout(Duration::from_millis(500), env.local.simulator.changed()).await.ok();
}

fn short(s: &str) -> String {
    let s = s.replace('\n', " ");
    match s.char_indices().nth(90) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

async fn check_outcome(env: &Env, scenario: Scenario, digest: &str, status: &str, error: &str, cause: &str, broken: &mut Vec<String>) {
    match (scenario, status, error) {
        (Scenario::Promote, "SUCCEEDED", _) => {
            let sets = env.task_sets().await;
            let images = match sets.iter().find(|s| s.status == "PRIMARY") {
                Some(s) => env.images_of(&s.task_definition_arn).await,
                None => vec![],
            };
            if images != vec![env.image_uri(digest)] {
                broken.push(format!("promoted, but the primary runs {images:?}"));
            }
        }
        // A fault may make a canary roll back; the cause must say why in words.
        (Scenario::Promote, "FAILED", "Kanaria.RolledBack") if !cause.is_empty() && cause != "rolled back" => {}
        (Scenario::Rollback, "FAILED", "Kanaria.RolledBack") if cause.contains("failed at") && cause.contains("exit 1") => {}
        _ => broken.push(format!("outcome {status} {error}: {cause}")),
    }
}

async fn check_service(env: &Env, broken: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let sets = loop {
        let sets = env.task_sets().await;
        if !sets.iter().any(|t| t.status == "DRAINING") {
            break sets;
        }
        if Instant::now() > deadline {
            broken.push("a deleted task set never drained away".into());
            break sets;
        }
        tick(env).await;
    };
    if sets.len() != 1 {
        broken.push(format!("{} task sets left: {:?}", sets.len(), sets.iter().map(|s| (&s.id, &s.status)).collect::<Vec<_>>()));
    }
    if let Some(set) = sets.iter().find(|s| s.status == "PRIMARY") {
        let tg = set.target_group_arn.clone().unwrap_or_default();
        let weight = Env::weight_of(&env.weights().await, &tg);
        if weight != 100 {
            broken.push(format!("the primary task set's target group has {weight}%"));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let steady = loop {
            if env.task_sets().await.iter().any(|s| s.id == set.id && s.stability == Some(Stability::SteadyState)) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tick(env).await;
        };
        if !steady {
            broken.push("the primary task set is not STEADY_STATE".into());
        }
    } else {
        broken.push("no primary task set".into());
    }
    let revisions = env.task_definition_revisions().await;
    if revisions != 2 {
        broken.push(format!("{revisions} task-definition revisions (expected 2)"));
    }
    if let Some(lock) = env.store().lock(&env.sample.policy.service.key()).await.unwrap() {
        broken.push(format!("the lock is still held by {} ({})", lock.rollout_id, lock.phase));
    }
}

fn check_traffic(env: &Env, scenario: Scenario, broken: &mut Vec<String>) {
    let traffic = env.traffic();
    let errors = match scenario {
        Scenario::Promote => traffic.errors(),
        Scenario::Rollback => traffic.errors_by_target_group.get(&env.sample.target_groups[0]).copied().unwrap_or(0),
    };
    if errors > 0 {
        broken.push(format!("clients saw {errors} errors outside the fault: {traffic:?}"));
    }
}

/// Run the cases, `parallel` at a time; the table of results.
async fn run_all(cases: Vec<Case>, parallel: usize) -> (String, usize) {
    let total = cases.len();
    let mut pending = cases.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let mut rows = Vec::new();
    loop {
        while running.len() < parallel {
            match pending.next() {
                Some(case) => {
                    let copy = case.clone();
                    // A run that panics is a row that says so, not the end of the table.
                    running.spawn(async move {
                        match tokio::spawn(run_case(case)).await {
                            Ok(row) => row,
                            Err(e) => Row {
                                case: copy,
                                fired: 0,
                                outcome: "panicked".into(),
                                broken: vec![format!("the run panicked: {e}")],
                                seconds: 0.0,
                            },
                        }
                    });
                }
                None => break,
            }
        }
        match running.join_next().await {
            Some(row) => {
                let row = row.expect("a chaos run's wrapper ends");
                eprintln!(
                    "[{}/{total}] {:?} {} {} {}: {}",
                    rows.len() + 1,
                    row.case.scenario,
                    row.case.caller,
                    row.case.operation,
                    row.case.kind.name(),
                    if row.broken.is_empty() { "ok".to_string() } else { row.broken.join("; ") }
                );
                rows.push(row);
            }
            None => break,
        }
    }
    rows.sort_by_key(|r| (r.case.scenario as u8, r.case.caller, r.case.operation, r.case.kind.name()));
    let mut table =
        String::from("| scenario | function | operation | fault | fired | outcome | invariants | s |\n|---|---|---|---|---|---|---|---|\n");
    let mut failures = 0;
    for r in &rows {
        let invariants = if r.broken.is_empty() {
            "all hold".to_string()
        } else {
            failures += 1;
            format!("**BROKEN**: {}", r.broken.join("; "))
        };
        let _ = writeln!(
            table,
            "| {:?} | {} | {} | {} ×{} | {} | {} | {} | {:.0} |",
            r.case.scenario,
            r.case.caller,
            r.case.operation,
            r.case.kind.name(),
            r.case.times,
            r.fired,
            r.outcome,
            invariants,
            r.seconds
        );
    }
    (table, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_slice() {
    let (table, failures) = run_all(slice(), 2).await;
    println!("{table}");
    assert_eq!(failures, 0, "invariants broken under faults:\n{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the whole matrix (114 runs) takes about 17 minutes on 2 cores: make chaos"]
async fn chaos_matrix() {
    let parallel = std::env::var("KANARIA_CHAOS_PARALLEL").ok().and_then(|p| p.parse().ok()).unwrap_or(3);
    // KANARIA_CHAOS_ONLY=<text> reruns the rows whose "scenario function operation fault" contains it.
    let only = std::env::var("KANARIA_CHAOS_ONLY").unwrap_or_default();
    let cases = matrix()
        .into_iter()
        .filter(|c| format!("{:?} {} {} {}", c.scenario, c.caller, c.operation, c.kind.name()).contains(&only))
        .collect();
    let (table, failures) = run_all(cases, parallel).await;
    println!("{table}");
    if let Ok(path) = std::env::var("KANARIA_CHAOS_REPORT") {
        std::fs::write(&path, &table).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    assert_eq!(failures, 0, "invariants broken under faults:\n{table}");
}

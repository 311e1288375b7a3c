//! `kanaria verify`: is an ECS service ready to be rolled out by kanaria, and if not, what
//! exactly should change? Pure: [`check`] takes [`Facts`] (plain data an adapter gathered, see
//! `crate::aws::inspect`) and returns [`Finding`]s, each with the fix a careful colleague would
//! give (which setting, and a CLI or task-definition snippet with the service's own values).
//!
//! Checks, in report order: the policy validates and fits the service; the deployment controller
//! is EXTERNAL with a primary task set; the listener (or rule) and both target groups exist and
//! are wired as the policy says; the target groups are of type `ip` for awsvpc tasks; what every
//! new task set copies from the primary can be copied (the production load balancer first, one
//! ALB target group); the task size is valid and the containers fit it; the execution role can
//! pull from ECR and read every secret the task definition references; the subnets have a path to
//! ECR; every essential container logs somewhere.
//!
//! IAM is evaluated statically from the role's identity policies (Allow/Deny, Action/NotAction,
//! Resource/NotResource, wildcards). Conditions, permission boundaries, SCPs and resource
//! policies are not evaluated; a permission granted only under a Condition is a warning.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::policy::{Policy, Problem, Strategy, TrafficRoute};

/// The AWS managed policy made for task execution roles.
pub const EXECUTION_ROLE_POLICY_ARN: &str = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";

// ---------------------------------------------------------------------------------------------
// Facts: what the adapter read. No AWS types.
// ---------------------------------------------------------------------------------------------

/// Something that could not be read (access denied, throttled, ...): what it was, what AWS said,
/// and the permission the caller of `kanaria verify` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub what: String,
    pub error: String,
    pub needs: String,
}

pub type Gathered<T> = Result<T, Unreadable>;

/// Everything [`check`] looks at.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `CLUSTER/SERVICE` as given on the command line.
    pub service: String,
    pub region: String,
    /// The service's account (from its ARN); used to expand parameter names into ARNs.
    pub account: String,
    pub policy: PolicyFacts,
    /// `EXTERNAL`, `ECS` or `CODE_DEPLOY`.
    pub controller: String,
    /// Task sets of the service, as (id, status).
    pub task_sets: Vec<(String, String)>,
    /// What runs: the primary task set's settings (EXTERNAL) or the service's own (ECS). None when
    /// an EXTERNAL service has no primary task set.
    pub workload: Option<Workload>,
    pub task_definition: Option<Gathered<TaskDefinitionFacts>>,
    /// Listeners and rules by ARN (the policy's and the blue/green test route); `None`: not found.
    pub routes: BTreeMap<String, Gathered<Option<RouteFacts>>>,
    /// Target groups by ARN; `None`: not found.
    pub target_groups: BTreeMap<String, Gathered<Option<TargetGroupFacts>>>,
    pub network: Option<Gathered<NetworkFacts>>,
    /// IAM roles by ARN; `None`: no such role.
    pub roles: BTreeMap<String, Gathered<Option<RoleFacts>>>,
    /// awslogs log groups by name: does it exist?
    pub log_groups: BTreeMap<String, Gathered<bool>>,
    /// The policy's alarms CloudWatch returned (metric and composite); `None` when the policy
    /// names none or could not be read.
    pub alarms: Option<Gathered<Vec<AlarmFacts>>>,
}

/// An alarm CloudWatch knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmFacts {
    pub name: String,
    pub composite: bool,
    /// OK, ALARM or INSUFFICIENT_DATA.
    pub state: String,
}

#[derive(Debug, Clone, Default)]
pub struct PolicyFacts {
    /// Where the policy came from, for messages: `file web.yaml`, `SSM parameter /kanaria/...`.
    pub source: String,
    pub state: PolicyState,
}

#[derive(Debug, Clone, Default)]
pub enum PolicyState {
    /// No policy is stored for the service.
    #[default]
    Missing,
    Unreadable(Unreadable),
    /// `policy` is the document as far as it could be read (it may not validate); `problems`
    /// is everything [`crate::policy::parse`] reported.
    Read {
        policy: Option<Box<Policy>>,
        problems: Vec<Problem>,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workload {
    /// `primary task set ecs-svc/123` or `service`.
    pub from: String,
    pub task_definition_arn: String,
    /// FARGATE, EC2 or EXTERNAL; None with a capacity provider strategy.
    pub launch_type: Option<String>,
    pub capacity_providers: Vec<String>,
    /// awsvpc network configuration (empty subnets: none).
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    /// Load balancers with a target group (Application or Network), in the task set's order.
    pub load_balancers: Vec<LoadBalancerFacts>,
    /// Classic Load Balancers by name (a load balancer entry without a target group).
    pub classic_load_balancers: Vec<String>,
    /// Cloud Map services the tasks register in (`serviceRegistries[].registryArn`).
    pub service_registries: Vec<String>,
}

impl Workload {
    pub fn fargate(&self) -> bool {
        self.launch_type.as_deref() == Some("FARGATE") || self.capacity_providers.iter().any(|c| c.starts_with("FARGATE"))
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadBalancerFacts {
    pub target_group_arn: String,
    pub container_name: String,
    pub container_port: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskDefinitionFacts {
    pub arn: String,
    /// `awsvpc`, `bridge`, `host` or `none`.
    pub network_mode: String,
    pub requires_compatibilities: Vec<String>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub execution_role_arn: Option<String>,
    pub task_role_arn: Option<String>,
    pub containers: Vec<ContainerFacts>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerFacts {
    pub name: String,
    pub image: String,
    pub essential: bool,
    pub cpu: i32,
    pub memory: Option<i32>,
    pub memory_reservation: Option<i32>,
    pub log_driver: Option<String>,
    pub log_options: BTreeMap<String, String>,
    /// `valueFrom` of `secrets` and of `logConfiguration.secretOptions`.
    pub secrets: Vec<String>,
    /// `repositoryCredentials.credentialsParameter` (a Secrets Manager secret).
    pub repository_credentials: Option<String>,
    /// `environmentFiles` values (S3 object ARNs).
    pub environment_files: Vec<String>,
    pub container_ports: Vec<i32>,
    /// The container is a FireLens log router (`firelensConfiguration`).
    pub firelens_router: bool,
}

/// A listener's default actions or a rule's actions, as far as kanaria cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteFacts {
    /// `listener :443 (HTTPS)` or `rule 10 of listener ...`.
    pub label: String,
    /// The forward action's target groups and raw weights; None: no forward action.
    pub forward: Option<Vec<(String, i64)>>,
    /// Types of the route's actions (forward, fixed-response, redirect, authenticate-oidc, ...).
    pub action_types: Vec<String>,
    /// The forward action's target-group stickiness duration in seconds, when it is on.
    pub sticky_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetGroupFacts {
    pub name: String,
    /// `ip`, `instance`, `lambda` or `alb`.
    pub target_type: String,
    pub vpc_id: Option<String>,
    pub protocol: Option<String>,
    pub port: Option<i32>,
    pub health_check_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkFacts {
    pub subnets: Vec<SubnetFacts>,
    /// VPC endpoints of the subnets' VPC(s).
    pub endpoints: Vec<EndpointFacts>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubnetFacts {
    pub id: String,
    /// None: the subnet does not exist.
    pub vpc_id: Option<String>,
    /// The subnet's route table: its explicit association, else the VPC's main table.
    pub route_table_id: Option<String>,
    /// Target of the `0.0.0.0/0` route (igw-…, nat-…, tgw-…, eni-…, pcx-…, i-…), if any.
    pub default_route: Option<String>,
    /// The default route exists but is a blackhole (its target was deleted).
    pub default_route_blackhole: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointFacts {
    pub id: String,
    pub vpc_id: String,
    /// e.g. `com.amazonaws.us-east-1.ecr.dkr`.
    pub service_name: String,
    /// `Interface` or `Gateway`.
    pub kind: String,
    /// `available`, `pending`, ...
    pub state: String,
    pub private_dns: bool,
    pub route_table_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleFacts {
    pub arn: String,
    pub name: String,
    /// Service principals the trust policy lets assume the role.
    pub trusted_services: Vec<String>,
    pub policies: Vec<PolicyDocument>,
    /// Attached or inline policies that could not be read (the evaluation may then be incomplete).
    pub unreadable: Vec<Unreadable>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyDocument {
    /// `AmazonECSTaskExecutionRolePolicy (AWS managed)`, `inline policy read-secrets`, ...
    pub name: String,
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statement {
    pub allow: bool,
    pub actions: Vec<String>,
    /// `actions` are a NotAction list.
    pub not_action: bool,
    pub resources: Vec<String>,
    /// `resources` are a NotResource list.
    pub not_resource: bool,
    pub conditional: bool,
}

/// Read a policy document for verify: every problem [`crate::policy::parse`] reports, and the
/// document itself as far as it deserialises, so the wiring checks run even when, say, a step
/// weight is wrong.
pub fn policy_state(source: &str, text: &str) -> PolicyState {
    match crate::policy::parse(source, text) {
        Ok(p) => PolicyState::Read { policy: Some(Box::new(p)), problems: Vec::new() },
        Err(e) => {
            let lenient = serde_yaml_ng::from_str::<serde_json::Value>(text).ok().and_then(|v| serde_json::from_value::<Policy>(v).ok());
            PolicyState::Read { policy: lenient.map(Box::new), problems: e.problems().to_vec() }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Policy,
    Alarms,
    DeploymentController,
    Traffic,
    TargetGroups,
    TaskSize,
    ExecutionRole,
    Secrets,
    Network,
    Logs,
}

impl Check {
    pub const ALL: [Check; 10] = [
        Check::Policy,
        Check::Alarms,
        Check::DeploymentController,
        Check::Traffic,
        Check::TargetGroups,
        Check::TaskSize,
        Check::ExecutionRole,
        Check::Secrets,
        Check::Network,
        Check::Logs,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Check::Policy => "policy",
            Check::Alarms => "alarms",
            Check::DeploymentController => "deployment controller",
            Check::Traffic => "listener/rule",
            Check::TargetGroups => "target groups",
            Check::TaskSize => "task size",
            Check::ExecutionRole => "execution role",
            Check::Secrets => "secrets",
            Check::Network => "network path to ECR",
            Check::Logs => "log configuration",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but deserves a look (not counted as a problem).
    Warn,
    /// The service is not ready.
    Fail,
    /// Could not be checked: a read failed.
    Unknown,
    /// Not applicable, or depends on something that failed above.
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Unknown => "?",
            Status::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: Check,
    pub status: Status,
    /// What the finding is about: a resource or a policy field.
    pub subject: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}: {}", self.status.label(), self.check.label(), self.subject, self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, " (fix: {fix})")?;
        }
        Ok(())
    }
}

/// Ready (exit 0) when nothing failed and everything could be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Ready,
    NotReady,
    /// Nothing failed, but some checks could not be made.
    Incomplete,
}

pub fn verdict(findings: &[Finding]) -> Verdict {
    if findings.iter().any(|f| f.status == Status::Fail) {
        Verdict::NotReady
    } else if findings.iter().any(|f| f.status == Status::Unknown) {
        Verdict::Incomplete
    } else {
        Verdict::Ready
    }
}

struct Report {
    findings: Vec<Finding>,
}

impl Report {
    fn push(&mut self, check: Check, status: Status, subject: impl Into<String>, message: impl Into<String>, fix: Option<String>) {
        self.findings.push(Finding { check, status, subject: subject.into(), message: message.into(), fix });
    }
    fn ok(&mut self, check: Check, subject: impl Into<String>, message: impl Into<String>) {
        self.push(check, Status::Ok, subject, message, None);
    }
    fn warn(&mut self, check: Check, subject: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Status::Warn, subject, message, Some(fix.into()));
    }
    fn fail(&mut self, check: Check, subject: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Status::Fail, subject, message, Some(fix.into()));
    }
    fn skip(&mut self, check: Check, subject: impl Into<String>, message: impl Into<String>) {
        self.push(check, Status::Skip, subject, message, None);
    }
    fn unknown(&mut self, check: Check, u: &Unreadable) {
        self.push(
            check,
            Status::Unknown,
            u.what.clone(),
            format!("could not be read: {}", u.error),
            Some(format!("run kanaria verify with credentials that allow {}", u.needs)),
        );
    }
}

/// Every check, in report order.
pub fn check(facts: &Facts) -> Vec<Finding> {
    let mut r = Report { findings: Vec::new() };
    let policy = check_policy(facts, &mut r);
    check_alarms(facts, policy, &mut r);
    check_controller(facts, &mut r);
    let td = match &facts.task_definition {
        Some(Ok(td)) => Some(td),
        _ => None,
    };
    check_traffic(facts, policy, &mut r);
    check_target_groups(facts, policy, td, &mut r);
    check_task_size(facts, &mut r);
    check_execution_role(facts, td, &mut r);
    check_secrets(facts, td, &mut r);
    check_network(facts, td, &mut r);
    check_logs(facts, td, &mut r);
    r.findings
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// `...:targetgroup/web-blue/73e2d6bc24d8a067` → `web-blue`.
pub fn target_group_name(arn: &str) -> &str {
    match arn.split_once(":targetgroup/") {
        Some((_, rest)) => rest.split('/').next().unwrap_or(rest),
        None => arn,
    }
}

/// `arn:aws:iam::123456789012:role/service-role/web-execution` → `web-execution`.
pub fn role_name(arn: &str) -> &str {
    match arn.split_once(":role/") {
        Some((_, rest)) => rest.rsplit('/').next().unwrap_or(rest),
        None => arn.rsplit('/').next().unwrap_or(arn),
    }
}

/// `arn:aws:ecs:REGION:ACCOUNT:task-definition/web:3` → `web:3`.
fn short_task_definition(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn tg_label(facts: &Facts, arn: &str) -> String {
    match facts.target_groups.get(arn) {
        Some(Ok(Some(tg))) => tg.name.clone(),
        _ => target_group_name(arn).to_string(),
    }
}

fn names(list: &[String]) -> String {
    list.join(", ")
}

fn route_arn(route: &TrafficRoute) -> &str {
    match route {
        TrafficRoute::Listener(a) | TrafficRoute::Rule(a) => a,
    }
}

/// `register-task-definition` wants the whole definition again; say so once, the same way.
const NEW_REVISION: &str =
    "register a new task-definition revision with this change (ECS console: Create new revision; CLI: `aws ecs describe-task-definition \
     --task-definition FAMILY --query taskDefinition` > td.json, edit it, `aws ecs register-task-definition --cli-input-json file://td.json` \
     after removing the read-only fields); kanaria's next rollout starts from the primary task set's revision, so create the initial \
     task set from the new revision or push an image";

// ---------------------------------------------------------------------------------------------
// policy
// ---------------------------------------------------------------------------------------------

fn check_policy<'a>(facts: &'a Facts, r: &mut Report) -> Option<&'a Policy> {
    let source = &facts.policy.source;
    match &facts.policy.state {
        PolicyState::Missing => {
            r.fail(
                Check::Policy,
                source.clone(),
                format!("no policy is stored for {}, so no push would roll it out", facts.service),
                format!(
                    "write the service's policy (see policies/example.yaml), check it with `kanaria verify {} --policy web.yaml`, \
                     then store it with `kanaria policy apply web.yaml`",
                    facts.service
                ),
            );
            None
        }
        PolicyState::Unreadable(u) => {
            r.unknown(Check::Policy, u);
            None
        }
        PolicyState::Read { policy, problems } => {
            for p in problems {
                r.fail(Check::Policy, p.path.clone(), p.message.clone(), p.fix.clone());
            }
            let policy = policy.as_deref();
            if let Some(p) = policy {
                if p.service.key() != facts.service {
                    r.fail(
                        Check::Policy,
                        "service",
                        format!("the policy in {source} is for {}, not {}", p.service.key(), facts.service),
                        format!(
                            "set `service: {{ cluster: {}, name: {} }}` in the policy, or verify the service it names",
                            facts.service.split('/').next().unwrap_or_default(),
                            facts.service.split('/').nth(1).unwrap_or_default()
                        ),
                    );
                }
                if let Some(Ok(td)) = &facts.task_definition {
                    if !td.containers.iter().any(|c| c.name == p.container) {
                        let have: Vec<String> = td.containers.iter().map(|c| c.name.clone()).collect();
                        r.fail(
                            Check::Policy,
                            "container",
                            format!(
                                "the task definition {} has no container named {:?} (it has: {})",
                                short_task_definition(&td.arn),
                                p.container,
                                names(&have)
                            ),
                            "set `container:` to the name of the container whose image a push should replace",
                        );
                    }
                }
            }
            if problems.is_empty() {
                let summary = match policy.map(|p| &p.strategy) {
                    Some(Strategy::Canary(c)) => format!("canary, {} step(s)", c.steps.len()),
                    Some(Strategy::Linear(l)) => format!("linear, {}% every {}", l.step_percent, l.interval),
                    Some(Strategy::BlueGreen(_)) => "blue/green".to_string(),
                    None => "?".into(),
                };
                r.ok(Check::Policy, source.clone(), format!("valid ({summary})"));
            }
            policy
        }
    }
}

// ---------------------------------------------------------------------------------------------
// alarms
// ---------------------------------------------------------------------------------------------

/// Every alarm the policy names must exist: CloudWatch answers an unknown name with nothing, so
/// a misspelt or deleted alarm would silently never roll a rollout back.
fn check_alarms(facts: &Facts, policy: Option<&Policy>, r: &mut Report) {
    let Some(policy) = policy else {
        r.skip(Check::Alarms, "alarms", "no policy to read them from");
        return;
    };
    if policy.alarms.is_empty() {
        r.skip(Check::Alarms, "alarms", "the policy names no CloudWatch alarms (failed tasks and canary analysis still roll back)");
        return;
    }
    let found = match &facts.alarms {
        Some(Ok(found)) => found,
        Some(Err(u)) => {
            r.unknown(Check::Alarms, u);
            return;
        }
        None => {
            r.skip(Check::Alarms, "alarms", "not looked up");
            return;
        }
    };
    let known: Vec<String> = found.iter().map(|a| a.name.clone()).collect();
    let problems = crate::policy::unknown_alarms(&policy.alarms, &known, &facts.region);
    for (i, name) in policy.alarms.iter().enumerate() {
        match found.iter().find(|a| &a.name == name) {
            Some(a) => {
                let kind = if a.composite { "composite alarm" } else { "metric alarm" };
                r.ok(Check::Alarms, name.clone(), format!("{kind}, {} now", a.state));
            }
            None => {
                if let Some(p) = problems.iter().find(|p| p.path == format!("alarms[{i}]")) {
                    r.fail(Check::Alarms, name.clone(), p.message.clone(), p.fix.clone());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// deployment controller
// ---------------------------------------------------------------------------------------------

fn check_controller(facts: &Facts, r: &mut Report) {
    let (cluster, name) = facts.service.split_once('/').unwrap_or((&facts.service, ""));
    if facts.controller != "EXTERNAL" {
        let w = facts.workload.as_ref();
        let td = w.map(|w| short_task_definition(&w.task_definition_arn).to_string()).unwrap_or_else(|| "FAMILY:REVISION".into());
        let network = match w {
            Some(w) if !w.subnets.is_empty() => format!(
                " --network-configuration 'awsvpcConfiguration={{subnets=[{}],securityGroups=[{}],assignPublicIp={}}}'",
                w.subnets.join(","),
                w.security_groups.join(","),
                if w.assign_public_ip { "ENABLED" } else { "DISABLED" }
            ),
            _ => String::new(),
        };
        let lb = match w.and_then(|w| w.load_balancers.first()) {
            Some(lb) => format!(
                " --load-balancers targetGroupArn={},containerName={},containerPort={}",
                lb.target_group_arn,
                lb.container_name,
                lb.container_port.map(|p| p.to_string()).unwrap_or_else(|| "PORT".into())
            ),
            None => " --load-balancers targetGroupArn=BLUE_TG_ARN,containerName=CONTAINER,containerPort=PORT".into(),
        };
        let launch = match w.and_then(|w| w.launch_type.clone()) {
            Some(l) => format!(" --launch-type {l}"),
            None => " --launch-type FARGATE".into(),
        };
        r.fail(
            Check::DeploymentController,
            facts.service.clone(),
            format!(
                "the service uses the {} deployment controller; kanaria rolls out only services with the EXTERNAL controller \
                 (kanaria is then their controller)",
                facts.controller
            ),
            format!(
                "a service's deployment controller cannot be changed in place. Create a new service next to it with the EXTERNAL \
                 controller and one task set, move traffic to it, then delete the old service:\n\
                 aws ecs create-service --cluster {cluster} --service-name {name}-v2 --desired-count N --deployment-controller type=EXTERNAL\n\
                 aws ecs create-task-set --cluster {cluster} --service {name}-v2 --task-definition {td}{launch}{network}{lb} \
                 --scale unit=PERCENT,value=100 --external-id initial\n\
                 aws ecs update-service-primary-task-set --cluster {cluster} --service {name}-v2 --primary-task-set TASK_SET_ARN\n\
                 (CloudFormation: `DeploymentController: {{Type: EXTERNAL}}` plus AWS::ECS::TaskSet and AWS::ECS::PrimaryTaskSet; \
                 docs/deploy.md shows the whole stack.) Point the policy at {cluster}/{name}-v2."
            ),
        );
        return;
    }
    let primary: Vec<&(String, String)> = facts.task_sets.iter().filter(|(_, s)| s == "PRIMARY").collect();
    match (facts.task_sets.len(), primary.first()) {
        (0, _) => r.fail(
            Check::DeploymentController,
            facts.service.clone(),
            "EXTERNAL, but the service has no task set: kanaria copies the primary task set's network and load balancer settings \
             into every new task set",
            format!(
                "create the initial task set on the stable target group and make it primary:\n\
                 aws ecs create-task-set --cluster {cluster} --service {name} --task-definition FAMILY:REVISION --launch-type FARGATE \
                 --network-configuration 'awsvpcConfiguration={{subnets=[SUBNET_IDS],securityGroups=[SG_IDS],assignPublicIp=DISABLED}}' \
                 --load-balancers targetGroupArn=BLUE_TG_ARN,containerName=CONTAINER,containerPort=PORT --scale unit=PERCENT,value=100 \
                 --external-id initial\n\
                 aws ecs update-service-primary-task-set --cluster {cluster} --service {name} --primary-task-set TASK_SET_ARN"
            ),
        ),
        (_, None) => r.fail(
            Check::DeploymentController,
            facts.service.clone(),
            format!(
                "EXTERNAL, but none of its {} task set(s) is PRIMARY: kanaria rolls out from the primary task set",
                facts.task_sets.len()
            ),
            format!(
                "make the task set that serves production primary: aws ecs update-service-primary-task-set --cluster {cluster} \
                 --service {name} --primary-task-set TASK_SET_ARN"
            ),
        ),
        (1, Some((id, _))) => r.ok(Check::DeploymentController, facts.service.clone(), format!("EXTERNAL, primary task set {id}")),
        (n, Some((id, _))) => r.warn(
            Check::DeploymentController,
            facts.service.clone(),
            format!("EXTERNAL, primary task set {id}, and {} other task set(s)", n - 1),
            format!(
                "a rollout may be in flight (`kanaria status {}`); otherwise delete the task sets left behind \
                 (`aws ecs delete-task-set --cluster {cluster} --service {name} --task-set ID`) so the first rollout starts clean",
                facts.service
            ),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// listener / rule wiring
// ---------------------------------------------------------------------------------------------

/// The target group the primary task set (or the service) serves from.
fn stable_target_group<'a>(facts: &'a Facts, policy: &'a Policy) -> Option<&'a str> {
    facts.workload.as_ref().and_then(|w| w.load_balancers.first()).map(|lb| lb.target_group_arn.as_str()).or_else(|| {
        // No primary task set: assume the policy's first, as docs/deploy.md sets it up.
        policy.traffic.target_groups.first().map(String::as_str)
    })
}

fn forward_snippet(kind: &TrafficRoute, weights: &[(String, u32)]) -> String {
    forward_snippet_with(kind, weights, "")
}

/// The command that makes the route forward with `weights`; `extra` goes into the ForwardConfig
/// (e.g. `,"TargetGroupStickinessConfig":{"Enabled":false}`).
fn forward_snippet_with(kind: &TrafficRoute, weights: &[(String, u32)], extra: &str) -> String {
    let groups: Vec<String> = weights.iter().map(|(tg, w)| format!("{{\"TargetGroupArn\":\"{tg}\",\"Weight\":{w}}}")).collect();
    let actions = format!("[{{\"Type\":\"forward\",\"ForwardConfig\":{{\"TargetGroups\":[{}]{extra}}}}}]", groups.join(","));
    match kind {
        TrafficRoute::Listener(arn) => format!("aws elbv2 modify-listener --listener-arn {arn} --default-actions '{actions}'"),
        TrafficRoute::Rule(arn) => format!("aws elbv2 modify-rule --rule-arn {arn} --actions '{actions}'"),
    }
}

fn check_traffic(facts: &Facts, policy: Option<&Policy>, r: &mut Report) {
    let Some(policy) = policy else {
        r.skip(Check::Traffic, "traffic", "needs a readable policy (see above)");
        return;
    };
    let wanted = &policy.traffic.target_groups;
    if wanted.len() != 2 {
        r.skip(Check::Traffic, "traffic", "needs the policy's two target groups (see above)");
        return;
    }
    let stable = stable_target_group(facts, policy).unwrap_or(&wanted[0]).to_string();
    let spare = if stable == wanted[1] { wanted[0].clone() } else { wanted[1].clone() };
    let mut routes: Vec<(&str, TrafficRoute)> = Vec::new();
    match policy.traffic.route() {
        Some(route) => routes.push(("production", route)),
        None => r.skip(Check::Traffic, "traffic", "the policy names no single listener or rule (see above)"),
    }
    if let Some(test) = policy.test_route() {
        routes.push(("test", test));
    }
    for (role, route) in routes {
        let arn = route_arn(&route);
        let (field, what) = match (&route, role) {
            (TrafficRoute::Listener(_), "production") => ("traffic.listenerArn", "listener"),
            (TrafficRoute::Rule(_), "production") => ("traffic.listenerRuleArn", "listener rule"),
            (TrafficRoute::Listener(_), _) => ("strategy.blueGreen.testListenerArn", "test listener"),
            (TrafficRoute::Rule(_), _) => ("strategy.blueGreen.testListenerRuleArn", "test listener rule"),
        };
        let production_weights = vec![(stable.clone(), 100), (spare.clone(), 0)];
        match facts.routes.get(arn) {
            None => r.skip(Check::Traffic, arn, format!("the {what} was not read")),
            Some(Err(u)) => r.unknown(Check::Traffic, u),
            Some(Ok(None)) => r.fail(
                Check::Traffic,
                arn,
                format!("the {what} named by the policy's `{field}` does not exist (deleted or re-created, or another region)"),
                match route {
                    TrafficRoute::Listener(_) => format!(
                        "copy the ARN of the {what} that should carry the service's {role} traffic from `aws elbv2 describe-listeners \
                         --load-balancer-arn LB_ARN` into `{field}`, or create it forwarding to both target groups: \
                         aws elbv2 create-listener --load-balancer-arn LB_ARN --protocol HTTPS --port 443 --certificates CertificateArn=CERT_ARN \
                         --default-actions '[{{\"Type\":\"forward\",\"ForwardConfig\":{{\"TargetGroups\":[{{\"TargetGroupArn\":\"{stable}\",\"Weight\":100}},{{\"TargetGroupArn\":\"{spare}\",\"Weight\":0}}]}}}}]'"
                    ),
                    TrafficRoute::Rule(_) => format!(
                        "copy the ARN of the rule that forwards the service's {role} traffic from `aws elbv2 describe-rules --listener-arn \
                         LISTENER_ARN` into `{field}`"
                    ),
                },
            ),
            Some(Ok(Some(facts_route))) => {
                let label = &facts_route.label;
                let Some(forward) = &facts_route.forward else {
                    r.fail(
                        Check::Traffic,
                        label.clone(),
                        format!(
                            "the {what} does not forward: its actions are {}; kanaria moves traffic by weighting a forward action",
                            facts_route.action_types.join(", ")
                        ),
                        format!("make it forward to both target groups, the stable one at 100: {}", forward_snippet(&route, &production_weights)),
                    );
                    continue;
                };
                let listed: Vec<&str> = forward.iter().map(|(tg, _)| tg.as_str()).collect();
                let missing: Vec<&String> = wanted.iter().filter(|tg| !listed.contains(&tg.as_str())).collect();
                let extra: Vec<&str> = listed.iter().copied().filter(|tg| !wanted.iter().any(|w| w == tg)).collect();
                if !missing.is_empty() || !extra.is_empty() {
                    let now: Vec<String> = forward.iter().map(|(tg, w)| format!("{} (weight {w})", tg_label(facts, tg))).collect();
                    let should: Vec<String> = wanted.iter().map(|tg| tg_label(facts, tg)).collect();
                    // Keep today's weights for the stable group so fixing the wiring moves no traffic.
                    let weights = if role == "production" {
                        production_weights.clone()
                    } else {
                        vec![(stable.clone(), 100), (spare.clone(), 0)]
                    };
                    r.fail(
                        Check::Traffic,
                        label.clone(),
                        format!(
                            "the {what} forwards to {}, but the policy's traffic.targetGroups are {}{}",
                            names(&now),
                            names(&should),
                            if missing.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    " ({} missing: kanaria would shift weight to a target group the {what} does not use)",
                                    missing.iter().map(|t| tg_label(facts, t)).collect::<Vec<_>>().join(", ")
                                )
                            }
                        ),
                        format!(
                            "forward to exactly the policy's two target groups (or change the policy to the ones the {what} uses): {}",
                            forward_snippet(&route, &weights)
                        ),
                    );
                    continue;
                }
                let total: i64 = forward.iter().map(|(_, w)| (*w).max(0)).sum();
                let pct = |tg: &str| -> i64 {
                    let w = forward.iter().find(|(t, _)| t == tg).map(|(_, w)| (*w).max(0)).unwrap_or(0);
                    if total == 0 {
                        0
                    } else {
                        (w * 100 + total / 2) / total
                    }
                };
                let split = format!("{} {}% / {} {}%", tg_label(facts, &stable), pct(&stable), tg_label(facts, &spare), pct(&spare));
                if role == "production" && pct(&stable) != 100 {
                    r.warn(
                        Check::Traffic,
                        label.clone(),
                        format!("forwards to both target groups, but the split is {split} (the stable task set serves {})", tg_label(facts, &stable)),
                        format!(
                            "a rollout may be in flight (`kanaria status {}`); if not, put all traffic on the stable target group before the \
                             first rollout: {}",
                            facts.service,
                            forward_snippet(&route, &production_weights)
                        ),
                    );
                } else {
                    r.ok(Check::Traffic, label.clone(), format!("{role} traffic: forwards {split}"));
                }
                if let Some(seconds) = facts_route.sticky_seconds {
                    r.warn(
                        Check::Traffic,
                        label.clone(),
                        format!(
                            "target-group stickiness is on ({seconds} s): a client's stickiness cookie sends it back to the same target \
                             group whatever the weights, so during a canary clients stay where they first landed; kanaria turns \
                             stickiness off in the same change that takes a target group to 0% (a rollback, a promotion) — \
                             otherwise clients stuck to the canary would keep reaching it after a rollback — and it stays off"
                        ),
                        format!(
                            "leave it on for sticky canaries until the first rollback or promotion, or turn it off now, with the \
                             weights as they are: {}",
                            forward_snippet_with(
                                &route,
                                &forward.iter().map(|(tg, w)| (tg.clone(), (*w).clamp(0, 999) as u32)).collect::<Vec<_>>(),
                                ",\"TargetGroupStickinessConfig\":{\"Enabled\":false}"
                            )
                        ),
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// target groups
// ---------------------------------------------------------------------------------------------

fn check_target_groups(facts: &Facts, policy: Option<&Policy>, td: Option<&TaskDefinitionFacts>, r: &mut Report) {
    let Some(policy) = policy else {
        r.skip(Check::TargetGroups, "traffic.targetGroups", "needs a readable policy (see above)");
        return;
    };
    // awsvpc tasks (all of Fargate) have their own IP address and are registered by it; bridge
    // and host tasks are registered as instance + port.
    let awsvpc = td.map(|t| t.network_mode == "awsvpc").unwrap_or(true);
    let expected = if awsvpc { "ip" } else { "instance" };
    let task_vpc = match &facts.network {
        Some(Ok(n)) => n.subnets.iter().find_map(|s| s.vpc_id.clone()),
        _ => None,
    };
    let existing: Vec<&TargetGroupFacts> = policy
        .traffic
        .target_groups
        .iter()
        .filter_map(|a| match facts.target_groups.get(a) {
            Some(Ok(Some(tg))) => Some(tg),
            _ => None,
        })
        .collect();
    for (i, arn) in policy.traffic.target_groups.iter().enumerate() {
        let field = format!("traffic.targetGroups[{i}]");
        match facts.target_groups.get(arn) {
            None => r.skip(Check::TargetGroups, arn.clone(), "not read (the policy names no valid target group ARN here)"),
            Some(Err(u)) => r.unknown(Check::TargetGroups, u),
            Some(Ok(None)) => {
                // Copy the settings of its twin, when that one exists.
                let template = existing.iter().copied().find(|t| t.name != target_group_name(arn));
                let (protocol, port, vpc, health) = match template {
                    Some(t) => (
                        t.protocol.clone().unwrap_or_else(|| "HTTP".into()),
                        t.port.map(|p| p.to_string()).unwrap_or_else(|| "PORT".into()),
                        t.vpc_id.clone().unwrap_or_else(|| "VPC_ID".into()),
                        t.health_check_path.clone().unwrap_or_else(|| "/".into()),
                    ),
                    None => ("HTTP".into(), "PORT".into(), task_vpc.clone().unwrap_or_else(|| "VPC_ID".into()), "/".into()),
                };
                r.fail(
                    Check::TargetGroups,
                    arn.clone(),
                    format!("the target group in `{field}` does not exist (deleted or re-created, or another region)"),
                    format!(
                        "create it (same settings as its twin) and put its ARN in `{field}` and in the listener's forward action: \
                         aws elbv2 create-target-group --name {} --target-type {expected} --protocol {protocol} --port {port} --vpc-id {vpc} \
                         --health-check-path {health}",
                        target_group_name(arn)
                    ),
                );
            }
            Some(Ok(Some(tg))) => {
                let mut bad = false;
                if tg.target_type != expected {
                    bad = true;
                    let why = if awsvpc {
                        "tasks with the awsvpc network mode (every Fargate task) get their own IP address and ECS registers them by IP, \
                         which a target group of type instance refuses"
                    } else {
                        "tasks with the bridge or host network mode are registered as container instance and port"
                    };
                    r.fail(
                        Check::TargetGroups,
                        tg.name.clone(),
                        format!("target type is {}; {why}", tg.target_type),
                        format!(
                            "a target group's type cannot be changed: create one of type {expected} with the same settings, then use it in \
                             `{field}` and in the listener's forward action instead of {}: aws elbv2 create-target-group --name {}-{expected} \
                             --target-type {expected} --protocol {} --port {} --vpc-id {} --health-check-path {}",
                            tg.name,
                            tg.name,
                            tg.protocol.clone().unwrap_or_else(|| "HTTP".into()),
                            tg.port.map(|p| p.to_string()).unwrap_or_else(|| "PORT".into()),
                            tg.vpc_id.clone().unwrap_or_else(|| "VPC_ID".into()),
                            tg.health_check_path.clone().unwrap_or_else(|| "/".into()),
                        ),
                    );
                }
                if let (Some(tg_vpc), Some(task_vpc)) = (&tg.vpc_id, &task_vpc) {
                    if tg_vpc != task_vpc {
                        bad = true;
                        r.fail(
                            Check::TargetGroups,
                            tg.name.clone(),
                            format!("is in {tg_vpc}, but the tasks run in subnets of {task_vpc}: ECS cannot register them"),
                            format!("create the target group in {task_vpc} (aws elbv2 create-target-group ... --vpc-id {task_vpc}) and use it instead"),
                        );
                    }
                }
                if !bad {
                    r.ok(
                        Check::TargetGroups,
                        tg.name.clone(),
                        format!("type {}{}", tg.target_type, tg.vpc_id.as_ref().map(|v| format!(", {v}")).unwrap_or_default()),
                    );
                }
            }
        }
    }
    // The primary task set must serve from one of the policy's target groups, else the first
    // rollout has no stable side to shift from.
    if let Some(w) = &facts.workload {
        match w.load_balancers.first() {
            None => r.fail(
                Check::TargetGroups,
                w.from.clone(),
                "is registered with no target group, so no traffic reaches it and kanaria has nothing to shift",
                "create the initial task set with `--load-balancers targetGroupArn=BLUE_TG_ARN,containerName=CONTAINER,containerPort=PORT` \
                 (a task set's load balancers cannot be changed afterwards)",
            ),
            Some(lb) if !policy.traffic.target_groups.contains(&lb.target_group_arn) => {
                match w.load_balancers.iter().position(|l| policy.traffic.target_groups.contains(&l.target_group_arn)) {
                    Some(at) => r.fail(
                        Check::TargetGroups,
                        w.from.clone(),
                        format!(
                            "lists target group {} first and the policy's {} as load balancer {}: kanaria takes a task set's first load \
                             balancer for the one traffic moves on, and would move {} instead",
                            tg_label(facts, &lb.target_group_arn),
                            tg_label(facts, &w.load_balancers[at].target_group_arn),
                            at + 1,
                            tg_label(facts, &lb.target_group_arn),
                        ),
                        format!(
                            "a task set's load balancers cannot be changed: create the task set again with {} first in \
                             `--load-balancers`, the others after it, make it primary (aws ecs update-service-primary-task-set) and \
                             delete the old one",
                            w.load_balancers[at].target_group_arn
                        ),
                    ),
                    None => r.fail(
                        Check::TargetGroups,
                        w.from.clone(),
                        format!(
                            "serves from target group {}, which is not one of the policy's traffic.targetGroups ({})",
                            tg_label(facts, &lb.target_group_arn),
                            policy.traffic.target_groups.iter().map(|t| tg_label(facts, t)).collect::<Vec<_>>().join(", ")
                        ),
                        format!(
                            "put {} in the policy's traffic.targetGroups (with one spare target group of the same type)",
                            lb.target_group_arn
                        ),
                    ),
                }
            }
            Some(lb) => {
                if let Some(td) = td {
                    match td.containers.iter().find(|c| c.name == lb.container_name) {
                        None => r.fail(
                            Check::TargetGroups,
                            w.from.clone(),
                            format!(
                                "registers container {:?} with the load balancer, but task definition {} has no such container",
                                lb.container_name,
                                short_task_definition(&td.arn)
                            ),
                            "use the container's name from the task definition in the task set's loadBalancers",
                        ),
                        Some(c) if lb.container_port.is_some_and(|p| !c.container_ports.is_empty() && !c.container_ports.contains(&p)) => r.fail(
                            Check::TargetGroups,
                            w.from.clone(),
                            format!(
                                "registers {}:{} with the load balancer, but the container maps port(s) {}",
                                c.name,
                                lb.container_port.unwrap_or_default(),
                                c.container_ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                            ),
                            "add the port to the container's portMappings, or register the port the container listens on",
                        ),
                        Some(_) => {}
                    }
                }
                if facts.controller == "EXTERNAL" {
                    check_copied_settings(facts, w, r);
                }
            }
        }
    }
}

/// The load balancer a target group belongs to, by its protocol: HTTP/HTTPS target groups are
/// an Application Load Balancer's, TCP/TLS/UDP/TCP_UDP a Network Load Balancer's.
fn load_balancer_kind(tg: &TargetGroupFacts) -> Option<&'static str> {
    match tg.protocol.as_deref()? {
        "HTTP" | "HTTPS" => Some("Application"),
        "TCP" | "TLS" | "UDP" | "TCP_UDP" => Some("Network"),
        "GENEVE" => Some("Gateway"),
        _ => None,
    }
}

/// What kanaria copies from the primary task set into every new one besides the production
/// load balancer (the first, checked above), and what it cannot copy. CreateTaskSet takes
/// several load balancers and service registries (ECS API reference), but "If you're using an
/// Application Load Balancer, only one Application Load Balancer target group is allowed per task
/// set", and the EXTERNAL controller supports only Application and Network Load Balancers (ECS
/// developer guide, External deployment): a copy that breaks those rules would be refused at
/// CreateTaskSet, in the middle of a rollout.
fn check_copied_settings(facts: &Facts, w: &Workload, r: &mut Report) {
    let (cluster, name) = facts.service.split_once('/').unwrap_or((&facts.service, ""));
    let recreate = format!(
        "a task set's load balancers cannot be changed: create the task set again (aws ecs create-task-set --cluster {cluster} \
         --service {name} ... --load-balancers ...), make it primary (aws ecs update-service-primary-task-set) and delete the old one"
    );
    for classic in &w.classic_load_balancers {
        r.fail(
            Check::TargetGroups,
            w.from.clone(),
            format!(
                "registers with Classic Load Balancer {classic}: with the EXTERNAL deployment controller a task set may use only \
                 Application and Network Load Balancers (ECS developer guide, External deployment), so kanaria cannot copy it into a \
                 new task set"
            ),
            format!("serve that traffic through a Network Load Balancer target group instead; {recreate}"),
        );
    }
    let mut application = Vec::new();
    for lb in &w.load_balancers {
        match facts.target_groups.get(&lb.target_group_arn) {
            None => {}
            Some(Err(u)) => r.unknown(Check::TargetGroups, u),
            Some(Ok(None)) => r.fail(
                Check::TargetGroups,
                w.from.clone(),
                format!(
                    "registers with target group {}, which does not exist: kanaria copies it into every new task set, and \
                     CreateTaskSet would refuse it",
                    tg_label(facts, &lb.target_group_arn)
                ),
                format!("leave the missing target group out of the task set's load balancers; {recreate}"),
            ),
            Some(Ok(Some(tg))) => match load_balancer_kind(tg) {
                Some("Application") => application.push(tg_label(facts, &lb.target_group_arn)),
                Some("Network") if Some(lb) != w.load_balancers.first() => r.warn(
                    Check::TargetGroups,
                    w.from.clone(),
                    format!(
                        "registers with Network Load Balancer target group {}, which kanaria copies unchanged into every new task set: \
                         its clients reach the new tasks as soon as they are healthy, in proportion to the number of tasks, not by \
                         the canary's weights, until the rollout promotes or rolls back",
                        tg.name
                    ),
                    "if that traffic must follow the canary too, serve it through the production listener instead; otherwise \
                     nothing to do",
                ),
                _ => {}
            },
        }
    }
    if application.len() > 1 {
        r.fail(
            Check::TargetGroups,
            w.from.clone(),
            format!(
                "registers with {} Application Load Balancer target groups ({}): a task set may have only one (ECS developer guide, \
                 External deployment), so CreateTaskSet would refuse the new task set kanaria copies from this one",
                application.len(),
                application.join(", ")
            ),
            format!(
                "keep one Application Load Balancer target group on the task set, the production one from the policy: serve the \
                 other traffic through the production listener's load balancer (another listener or rule forwarding to the \
                 policy's target groups) or a Network Load Balancer target group; {recreate}"
            ),
        );
    }
    if !w.service_registries.is_empty() {
        r.warn(
            Check::TargetGroups,
            w.from.clone(),
            format!(
                "registers its tasks in Cloud Map ({}), which kanaria copies into every new task set: service-discovery clients \
                 reach the new tasks as soon as they are healthy, not by the canary's weights",
                w.service_registries.join(", ")
            ),
            "if that traffic must follow the canary too, serve it through the production listener; or have clients select \
             instances by their ECS_TASK_SET_EXTERNAL_ID attribute, which ECS sets to the task set's external id (the rollout id)",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// task size
// ---------------------------------------------------------------------------------------------

/// CPU units: `256`, `1024`, `1 vCPU`, `0.25 vcpu`.
pub fn parse_cpu(s: &str) -> Option<u32> {
    let t = s.trim().to_ascii_lowercase();
    if let Some(v) = t.strip_suffix("vcpu") {
        return v.trim().parse::<f64>().ok().filter(|v| *v > 0.0).map(|v| (v * 1024.0).round() as u32);
    }
    t.parse().ok()
}

/// MiB: `512`, `1 GB`, `0.5GB`.
pub fn parse_memory(s: &str) -> Option<u32> {
    let t = s.trim().to_ascii_lowercase();
    if let Some(v) = t.strip_suffix("gb") {
        return v.trim().parse::<f64>().ok().filter(|v| *v > 0.0).map(|v| (v * 1024.0).round() as u32);
    }
    t.parse().ok()
}

/// The memory sizes (MiB) Fargate offers with `cpu` units; None for a CPU value it does not offer.
pub fn fargate_memory_options(cpu: u32) -> Option<Vec<u32>> {
    let range = |from: u32, to: u32, step: u32| (from..=to).step_by(step as usize).collect();
    Some(match cpu {
        256 => vec![512, 1024, 2048],
        512 => range(1024, 4096, 1024),
        1024 => range(2048, 8192, 1024),
        2048 => range(4096, 16384, 1024),
        4096 => range(8192, 30720, 1024),
        8192 => range(16384, 61440, 4096),
        16384 => range(32768, 122880, 8192),
        _ => return None,
    })
}

const FARGATE_CPUS: [u32; 7] = [256, 512, 1024, 2048, 4096, 8192, 16384];

fn options_text(v: &[u32]) -> String {
    if v.len() <= 4 {
        v.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
    } else {
        format!("{} to {} in steps of {}", v[0], v[v.len() - 1], v[1] - v[0])
    }
}

/// The smallest Fargate size with at least `cpu` units and `memory` MiB.
fn smallest_fargate_size(cpu: u32, memory: u32) -> Option<(u32, u32)> {
    FARGATE_CPUS
        .iter()
        .filter(|c| **c >= cpu)
        .find_map(|c| fargate_memory_options(*c).and_then(|m| m.into_iter().find(|m| *m >= memory)).map(|m| (*c, m)))
}

fn check_task_size(facts: &Facts, r: &mut Report) {
    let td = match &facts.task_definition {
        None => {
            r.skip(Check::TaskSize, "task definition", "no task definition to check (see above)");
            return;
        }
        Some(Err(u)) => {
            r.unknown(Check::TaskSize, u);
            return;
        }
        Some(Ok(td)) => td,
    };
    let subject = short_task_definition(&td.arn).to_string();
    let fargate = facts.workload.as_ref().map(|w| w.fargate()).unwrap_or(false);
    let cpu = td.cpu.as_deref().and_then(parse_cpu);
    let memory = td.memory.as_deref().and_then(parse_memory);
    let before = r.findings.len();
    let reserved = |c: &ContainerFacts| c.memory.or(c.memory_reservation);
    let needed_memory: u32 = td.containers.iter().filter_map(reserved).map(|m| m.max(0) as u32).sum();
    let needed_cpu: u32 = td.containers.iter().map(|c| c.cpu.max(0) as u32).sum();

    if fargate {
        if !td.requires_compatibilities.iter().any(|c| c == "FARGATE") {
            r.fail(
                Check::TaskSize,
                subject.clone(),
                format!(
                    "the service runs on Fargate, but the task definition is registered for {} (requiresCompatibilities lacks FARGATE): \
                     new task sets would be refused",
                    if td.requires_compatibilities.is_empty() { "EC2".to_string() } else { td.requires_compatibilities.join(", ") }
                ),
                format!(
                    "{NEW_REVISION}: `\"requiresCompatibilities\": [\"FARGATE\"]`, `\"networkMode\": \"awsvpc\"` and task-level `cpu` and `memory`"
                ),
            );
        }
        if td.network_mode != "awsvpc" {
            r.fail(
                Check::TaskSize,
                subject.clone(),
                format!(
                    "network mode is {}; Fargate runs only awsvpc tasks",
                    if td.network_mode.is_empty() { "bridge" } else { &td.network_mode }
                ),
                format!("{NEW_REVISION}: `\"networkMode\": \"awsvpc\"`"),
            );
        }
        let (want_cpu, want_mem) = smallest_fargate_size(needed_cpu.max(256), needed_memory.max(512)).unwrap_or((256, 512));
        match (cpu, memory) {
            (None, _) | (_, None) => {
                let missing = match (cpu, memory) {
                    (None, None) => "neither task-level cpu nor memory",
                    (None, _) => "no task-level cpu",
                    _ => "no task-level memory",
                };
                r.fail(
                    Check::TaskSize,
                    subject.clone(),
                    format!(
                        "the task definition sets {missing}; Fargate sizes a task by its task-level cpu and memory (container-level \
                         memory alone is not enough), so it cannot place the task"
                    ),
                    format!(
                        "{NEW_REVISION}: task-level `\"cpu\": \"{want_cpu}\", \"memory\": \"{want_mem}\"` (the smallest Fargate size that holds \
                         the containers' {needed_memory} MiB; CloudFormation: `Cpu: {want_cpu}`, `Memory: {want_mem}`)"
                    ),
                );
            }
            (Some(c), Some(m)) => match fargate_memory_options(c) {
                None => r.fail(
                    Check::TaskSize,
                    subject.clone(),
                    format!("cpu {c} is not a Fargate size (Fargate offers {} CPU units)", FARGATE_CPUS.map(|c| c.to_string()).join(", ")),
                    format!("{NEW_REVISION}: e.g. `\"cpu\": \"{want_cpu}\", \"memory\": \"{want_mem}\"`"),
                ),
                Some(options) if !options.contains(&m) => r.fail(
                    Check::TaskSize,
                    subject.clone(),
                    format!(
                        "cpu {c} with memory {m} MiB is not a Fargate size: with {c} CPU units Fargate offers {} MiB",
                        options_text(&options)
                    ),
                    format!(
                        "{NEW_REVISION}: a valid pair, e.g. `\"cpu\": \"{c}\", \"memory\": \"{}\"`",
                        options.iter().copied().find(|o| *o >= m).unwrap_or(options[options.len() - 1])
                    ),
                ),
                Some(_) => {}
            },
        }
    }

    // Containers against the task. The rule: a container's `memory` is its hard limit and
    // `memoryReservation` its soft reservation; each is optional when the task has task-level
    // memory (the containers then share it), but without task-level memory every container
    // needs one of them. What the containers reserve (memory, or memoryReservation where no
    // hard limit is set) must fit in the task memory, and no hard limit may exceed it.
    for c in &td.containers {
        if let (Some(hard), Some(soft)) = (c.memory, c.memory_reservation) {
            if soft > hard {
                r.fail(
                    Check::TaskSize,
                    format!("container {}", c.name),
                    format!("memoryReservation {soft} MiB is above its memory (hard limit) {hard} MiB"),
                    format!("{NEW_REVISION}: memoryReservation at most {hard}, or raise memory"),
                );
            }
        }
        match (memory, reserved(c)) {
            (None, None) => r.fail(
                Check::TaskSize,
                format!("container {}", c.name),
                "sets neither memory nor memoryReservation, and the task sets no task-level memory: without one of the three ECS \
                 cannot size the container",
                format!(
                    "{NEW_REVISION}: give the container `\"memory\": N` (hard limit, MiB; it is killed above it) or `\"memoryReservation\": N` \
                     (soft), or give the task `\"memory\"`"
                ),
            ),
            (Some(m), _) if c.memory.is_some_and(|hard| hard.max(0) as u32 > m) => {
                let hard = c.memory.unwrap_or_default();
                let bigger = if fargate {
                    smallest_fargate_size(cpu.unwrap_or(256), hard.max(0) as u32)
                        .map(|(c, m)| format!(" (on Fargate e.g. `\"cpu\": \"{c}\", \"memory\": \"{m}\"`)"))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                r.fail(
                    Check::TaskSize,
                    format!("container {}", c.name),
                    format!("memory (hard limit) {hard} MiB is more than the task's {m} MiB: the task cannot start"),
                    format!("{NEW_REVISION}: lower the container's memory to at most {m}, or raise the task memory to at least {hard}{bigger}"),
                );
            }
            _ => {}
        }
    }
    if let Some(m) = memory {
        if needed_memory > m && !td.containers.iter().any(|c| c.memory.is_some_and(|h| h.max(0) as u32 > m)) {
            let parts: Vec<String> = td.containers.iter().filter_map(|c| reserved(c).map(|v| format!("{} {v}", c.name))).collect();
            r.fail(
                Check::TaskSize,
                subject.clone(),
                format!("the containers reserve {needed_memory} MiB together ({}), more than the task's {m} MiB", parts.join(" + ")),
                format!("{NEW_REVISION}: lower the containers' memory/memoryReservation to fit {m} MiB, or raise the task memory to at least {needed_memory}"),
            );
        }
    }
    if let Some(c) = cpu {
        if needed_cpu > c {
            let parts: Vec<String> = td.containers.iter().filter(|x| x.cpu > 0).map(|x| format!("{} {}", x.name, x.cpu)).collect();
            r.fail(
                Check::TaskSize,
                subject.clone(),
                format!("the containers ask for {needed_cpu} CPU units together ({}), more than the task's {c}", parts.join(" + ")),
                format!("{NEW_REVISION}: lower the containers' cpu to fit {c}, or raise the task cpu"),
            );
        }
    }
    if r.findings.len() == before {
        let size = match (cpu, memory) {
            (Some(c), Some(m)) => format!("cpu {c}, memory {m} MiB"),
            (None, Some(m)) => format!("memory {m} MiB"),
            (Some(c), None) => format!("cpu {c}"),
            (None, None) => "no task-level size".to_string(),
        };
        let containers: Vec<String> = td
            .containers
            .iter()
            .map(|c| match (c.memory, c.memory_reservation) {
                (Some(h), _) => format!("{} {h} MiB", c.name),
                (None, Some(s)) => format!("{} {s} MiB reserved", c.name),
                (None, None) => format!("{} shares the task memory", c.name),
            })
            .collect();
        r.ok(
            Check::TaskSize,
            subject,
            format!("{size}{}; containers fit ({})", if fargate { " (a Fargate size)" } else { "" }, containers.join(", ")),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// IAM: static evaluation of identity policies
// ---------------------------------------------------------------------------------------------

/// Parse an IAM policy document (JSON, already URL-decoded) into statements.
pub fn parse_policy_document(json: &str) -> Result<Vec<Statement>, String> {
    let doc: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not a JSON policy document: {e}"))?;
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        serde_json::Value::Object(_) => vec![doc["Statement"].clone()],
        _ => return Err("the document has no Statement".into()),
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        }
    };
    Ok(statements
        .iter()
        .map(|s| {
            let not_action = s.get("NotAction").is_some();
            let not_resource = s.get("NotResource").is_some();
            Statement {
                allow: s["Effect"].as_str() == Some("Allow"),
                actions: strings(if not_action { &s["NotAction"] } else { &s["Action"] }),
                not_action,
                resources: strings(if not_resource { &s["NotResource"] } else { &s["Resource"] }),
                not_resource,
                conditional: s.get("Condition").is_some_and(|c| c.as_object().is_some_and(|o| !o.is_empty())),
            }
        })
        .collect())
}

/// Service principals a trust policy allows to `sts:AssumeRole`.
pub fn trusted_services(json: &str) -> Vec<String> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let mut out = Vec::new();
    for s in statements {
        if s["Effect"].as_str() != Some("Allow") {
            continue;
        }
        let actions: Vec<&str> = match &s["Action"] {
            serde_json::Value::String(a) => vec![a.as_str()],
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
            _ => Vec::new(),
        };
        if !actions.iter().any(|a| action_matches(a, "sts:AssumeRole")) {
            continue;
        }
        match &s["Principal"]["Service"] {
            serde_json::Value::String(p) => out.push(p.clone()),
            serde_json::Value::Array(a) => out.extend(a.iter().filter_map(|x| x.as_str().map(str::to_string))),
            _ => {}
        }
    }
    out
}

/// IAM action patterns are case-insensitive, with `*` and `?` wildcards.
fn action_matches(pattern: &str, action: &str) -> bool {
    wildmatch::WildMatch::new(&pattern.to_ascii_lowercase()).matches(&action.to_ascii_lowercase())
}

/// Resource patterns are case-sensitive, with `*` and `?` wildcards.
fn resource_matches(pattern: &str, resource: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(resource)
}

fn statement_applies(s: &Statement, action: &str, resource: &str) -> bool {
    let a = s.actions.iter().any(|p| action_matches(p, action)) != s.not_action;
    let r = s.resources.iter().any(|p| resource_matches(p, resource)) != s.not_resource;
    a && r
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Allowed by the named policy; `conditional` when only under a Condition (or a conditional
    /// Deny may apply).
    Allowed {
        by: String,
        conditional: bool,
    },
    /// Explicitly denied by the named policy.
    Denied {
        by: String,
    },
    NotAllowed,
}

/// Does the role's identity policy allow `action` on `resource`?
pub fn evaluate(role: &RoleFacts, action: &str, resource: &str) -> Access {
    let mut allowed: Option<(String, bool)> = None;
    let mut conditional_deny = false;
    for p in &role.policies {
        for s in &p.statements {
            if !statement_applies(s, action, resource) {
                continue;
            }
            match (s.allow, s.conditional) {
                (false, false) => return Access::Denied { by: p.name.clone() },
                (false, true) => conditional_deny = true,
                (true, conditional) => {
                    if allowed.as_ref().is_none_or(|(_, c)| *c && !conditional) {
                        allowed = Some((p.name.clone(), conditional));
                    }
                }
            }
        }
    }
    match allowed {
        Some((by, conditional)) => Access::Allowed { by, conditional: conditional || conditional_deny },
        None => Access::NotAllowed,
    }
}

/// One permission the execution role needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Need {
    action: &'static str,
    resource: String,
    /// What it is for, e.g. `pull demo/web from ECR`.
    purpose: String,
}

/// `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG|@DIGEST]` → (account, region, repository, partition).
pub fn ecr_image(image: &str) -> Option<(String, String, String, &'static str)> {
    let (host, path) = image.split_once('/')?;
    let parts: Vec<&str> = host.split('.').collect();
    // ACCOUNT . dkr . ecr[-fips] . REGION . amazonaws . com [. cn]
    if parts.len() < 6 || parts[1] != "dkr" || !parts[2].starts_with("ecr") || parts[4] != "amazonaws" || parts[5] != "com" {
        return None;
    }
    if parts[0].len() != 12 || !parts[0].chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let partition = if parts.get(6) == Some(&"cn") { "aws-cn" } else { "aws" };
    let path = path.split('@').next().unwrap_or(path);
    // A tag follows the last ':' after the last '/'.
    let repo = match path.rsplit_once('/') {
        Some((dir, last)) => format!("{dir}/{}", last.split(':').next().unwrap_or(last)),
        None => path.split(':').next().unwrap_or(path).to_string(),
    };
    Some((parts[0].to_string(), parts[3].to_string(), repo, partition))
}

/// What reading a `valueFrom` takes: (action, resource ARN, what it is).
pub fn secret_need(value_from: &str, region: &str, account: &str) -> (&'static str, String, String) {
    let parts: Vec<&str> = value_from.split(':').collect();
    if value_from.starts_with("arn:") && parts.len() >= 7 && parts[2] == "secretsmanager" {
        // arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf[:json-key:version-stage:version-id]
        let arn = parts[..7].join(":");
        return ("secretsmanager:GetSecretValue", arn.clone(), format!("secret {arn}"));
    }
    if value_from.starts_with("arn:") && parts.len() >= 6 && parts[2] == "ssm" {
        return ("ssm:GetParameters", value_from.to_string(), format!("parameter {value_from}"));
    }
    // A parameter name in the task's own region and account.
    let arn = format!("arn:aws:ssm:{region}:{account}:parameter/{}", value_from.trim_start_matches('/'));
    ("ssm:GetParameters", arn, format!("parameter {value_from}"))
}

fn role_facts<'a>(facts: &'a Facts, arn: Option<&str>) -> Option<&'a Gathered<Option<RoleFacts>>> {
    arn.and_then(|a| facts.roles.get(a))
}

/// The execution role's needs for pulling the task's images.
fn ecr_needs(td: &TaskDefinitionFacts) -> Vec<Need> {
    let mut needs = Vec::new();
    let mut seen = Vec::new();
    for c in &td.containers {
        if c.repository_credentials.is_some() {
            continue; // a private registry with credentials; see the secrets check
        }
        if let Some((account, region, repo, partition)) = ecr_image(&c.image) {
            let arn = format!("arn:{partition}:ecr:{region}:{account}:repository/{repo}");
            if seen.contains(&arn) {
                continue;
            }
            seen.push(arn.clone());
            if needs.is_empty() {
                needs.push(Need {
                    action: "ecr:GetAuthorizationToken",
                    resource: "*".into(),
                    purpose: format!("log in to ECR (for {repo})"),
                });
            }
            for action in ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"] {
                needs.push(Need { action, resource: arn.clone(), purpose: format!("pull {repo} from ECR") });
            }
        }
    }
    needs
}

/// Every secret-like reference's need.
fn secret_needs(facts: &Facts, td: &TaskDefinitionFacts) -> Vec<(String, Need)> {
    let mut needs = Vec::new();
    for c in &td.containers {
        for v in &c.secrets {
            let (action, resource, what) = secret_need(v, &facts.region, &facts.account);
            needs.push((c.name.clone(), Need { action, resource, purpose: format!("read {what}") }));
        }
        if let Some(cred) = &c.repository_credentials {
            let (_, resource, what) = secret_need(cred, &facts.region, &facts.account);
            needs.push((
                c.name.clone(),
                Need { action: "secretsmanager:GetSecretValue", resource, purpose: format!("read the registry credentials {what}") },
            ));
        }
        for f in &c.environment_files {
            let object = f.to_string();
            let bucket = f.split_once(":::").map(|(_, rest)| rest.split('/').next().unwrap_or(rest)).unwrap_or_default();
            needs.push((
                c.name.clone(),
                Need { action: "s3:GetObject", resource: object.clone(), purpose: format!("read the environment file {object}") },
            ));
            needs.push((
                c.name.clone(),
                Need {
                    action: "s3:GetBucketLocation",
                    resource: format!("arn:aws:s3:::{bucket}"),
                    purpose: format!("read the environment file {object}"),
                },
            ));
        }
    }
    needs
}

fn policy_snippet(role: &str, name: &str, needs: &[&Need]) -> String {
    let mut by_action: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in needs {
        let list = by_action.entry(n.action).or_default();
        if !list.contains(&n.resource.as_str()) {
            list.push(&n.resource);
        }
    }
    let statements: Vec<String> = by_action
        .iter()
        .map(|(a, rs)| {
            let res = if rs.len() == 1 {
                format!("\"{}\"", rs[0])
            } else {
                format!("[{}]", rs.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(","))
            };
            format!("{{\"Effect\":\"Allow\",\"Action\":\"{a}\",\"Resource\":{res}}}")
        })
        .collect();
    format!(
        "aws iam put-role-policy --role-name {role} --policy-name {name} --policy-document '{{\"Version\":\"2012-10-17\",\"Statement\":[{}]}}'",
        statements.join(",")
    )
}

/// The task role grants what the execution role lacks: the classic confusion, said plainly.
fn task_role_note(facts: &Facts, td: &TaskDefinitionFacts, missing: &[&Need], what: &str) -> String {
    let Some(Ok(Some(task_role))) = role_facts(facts, td.task_role_arn.as_deref()) else {
        return String::new();
    };
    if td.task_role_arn == td.execution_role_arn {
        return String::new();
    }
    let granted: Vec<&str> =
        missing.iter().filter(|n| matches!(evaluate(task_role, n.action, &n.resource), Access::Allowed { .. })).map(|n| n.action).collect();
    if granted.is_empty() {
        return String::new();
    }
    let mut uniq = granted.clone();
    uniq.dedup();
    format!(
        "\nNote: the task role {} allows {}, but ECS {what} as the execution role, before the container starts; the task role is only \
         for the AWS calls your application makes. Move the permission to the execution role (or remove it from the task role if the \
         application does not need it).",
        task_role.name,
        uniq.join(", ")
    )
}

fn trust_fix(role: &str) -> String {
    format!(
        "let ECS tasks assume it: aws iam update-assume-role-policy --role-name {role} --policy-document \
         '{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Principal\":{{\"Service\":\"ecs-tasks.amazonaws.com\"}},\"Action\":\"sts:AssumeRole\"}}]}}'"
    )
}

fn create_execution_role_fix(role: &str) -> String {
    format!(
        "aws iam create-role --role-name {role} --assume-role-policy-document \
         '{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Principal\":{{\"Service\":\"ecs-tasks.amazonaws.com\"}},\"Action\":\"sts:AssumeRole\"}}]}}'\n\
         aws iam attach-role-policy --role-name {role} --policy-arn {EXECUTION_ROLE_POLICY_ARN}"
    )
}

fn check_execution_role(facts: &Facts, td: Option<&TaskDefinitionFacts>, r: &mut Report) {
    let Some(td) = td else {
        r.skip(Check::ExecutionRole, "execution role", "needs the task definition (see above)");
        return;
    };
    let pulls = ecr_needs(td);
    let uses_awslogs = td.containers.iter().any(|c| c.log_driver.as_deref() == Some("awslogs"));
    let has_secrets = !secret_needs(facts, td).is_empty();
    let Some(arn) = td.execution_role_arn.as_deref() else {
        if pulls.is_empty() && !uses_awslogs && !has_secrets {
            r.ok(Check::ExecutionRole, short_task_definition(&td.arn), "none set, and none needed (no ECR image, secrets or awslogs)");
            return;
        }
        let mut why = Vec::new();
        if !pulls.is_empty() {
            why.push("pull the image from ECR");
        }
        if has_secrets {
            why.push("read the referenced secrets");
        }
        if uses_awslogs {
            why.push("send awslogs logs");
        }
        let note = match role_facts(facts, td.task_role_arn.as_deref()) {
            Some(Ok(Some(task_role)))
                if pulls.iter().all(|n| matches!(evaluate(task_role, n.action, &n.resource), Access::Allowed { .. }))
                    && !pulls.is_empty() =>
            {
                format!(
                "\nNote: the task role {} has these permissions, but ECS uses the execution role, not the task role, to start the task: \
                 set it as executionRoleArn too, or better give the task a separate execution role.",
                task_role.name
            )
            }
            _ => String::new(),
        };
        let family = td.arn.rsplit('/').next().and_then(|s| s.split(':').next()).unwrap_or("web");
        r.fail(
            Check::ExecutionRole,
            short_task_definition(&td.arn),
            format!("the task definition has no executionRoleArn, but ECS needs one to {}", why.join(", ")),
            format!(
                "create an execution role and set it as the task definition's executionRoleArn ({NEW_REVISION}):\n{}{note}",
                create_execution_role_fix(&format!("{family}-execution"))
            ),
        );
        return;
    };
    let name = role_name(arn).to_string();
    let role = match role_facts(facts, Some(arn)) {
        None => {
            r.skip(Check::ExecutionRole, name, "not read");
            return;
        }
        Some(Err(u)) => {
            r.unknown(Check::ExecutionRole, u);
            return;
        }
        Some(Ok(None)) => {
            r.fail(
                Check::ExecutionRole,
                name.clone(),
                format!("the execution role {arn} does not exist: no task can start"),
                format!("create it (or set executionRoleArn to an existing execution role):\n{}", create_execution_role_fix(&name)),
            );
            return;
        }
        Some(Ok(Some(role))) => role,
    };
    let before = r.findings.len();
    if !role.trusted_services.iter().any(|s| s == "ecs-tasks.amazonaws.com") {
        r.fail(
            Check::ExecutionRole,
            name.clone(),
            format!(
                "its trust policy does not let ecs-tasks.amazonaws.com assume it (it trusts: {}), so ECS cannot use it to start tasks",
                if role.trusted_services.is_empty() { "no AWS service".to_string() } else { role.trusted_services.join(", ") }
            ),
            trust_fix(&name),
        );
    }
    for u in &role.unreadable {
        r.unknown(Check::ExecutionRole, u);
    }
    let mut missing: Vec<&Need> = Vec::new();
    let mut denied: Vec<(String, &Need)> = Vec::new();
    let mut conditional: Vec<(String, &Need)> = Vec::new();
    let mut granted_by: Vec<String> = Vec::new();
    for need in &pulls {
        match evaluate(role, need.action, &need.resource) {
            Access::Allowed { by, conditional: false } => {
                if !granted_by.contains(&by) {
                    granted_by.push(by);
                }
            }
            Access::Allowed { by, conditional: true } => conditional.push((by, need)),
            Access::Denied { by } => denied.push((by, need)),
            Access::NotAllowed => missing.push(need),
        }
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|n| format!("{} on {}", n.action, n.resource)).collect();
        let repos: Vec<String> = {
            let mut v: Vec<String> = missing.iter().map(|n| n.purpose.clone()).collect();
            v.dedup();
            v
        };
        r.fail(
            Check::ExecutionRole,
            name.clone(),
            format!("cannot {}: its policies do not allow {}; tasks stop with CannotPullContainerError", repos.join(", "), list.join(", ")),
            format!(
                "attach the AWS managed policy for execution roles: aws iam attach-role-policy --role-name {name} --policy-arn \
                 {EXECUTION_ROLE_POLICY_ARN}\n(or grant exactly these: {}){}",
                policy_snippet(&name, "ecr-pull", &missing),
                task_role_note(facts, td, &missing, "pulls images")
            ),
        );
    }
    for (by, need) in &denied {
        r.fail(
            Check::ExecutionRole,
            name.clone(),
            format!("cannot {}: {by} explicitly denies {} on {}", need.purpose, need.action, need.resource),
            format!("remove or narrow the Deny in {by}: an explicit Deny wins over every Allow"),
        );
    }
    for (by, need) in &conditional {
        r.warn(
            Check::ExecutionRole,
            name.clone(),
            format!("allows {} on {} only under a Condition ({by}); kanaria does not evaluate conditions", need.action, need.resource),
            "check that the condition holds when ECS pulls the image for a task (no source IP or VPC conditions: ECS calls from AWS's network)",
        );
    }
    if r.findings.len() == before {
        let what = if pulls.is_empty() {
            "no ECR image to pull (images come from other registries)".to_string()
        } else {
            let repos: Vec<&str> = pulls
                .iter()
                .filter(|n| n.action == "ecr:BatchGetImage")
                .map(|n| n.resource.rsplit("repository/").next().unwrap_or(""))
                .collect();
            format!("can pull {} from ECR ({})", repos.join(", "), granted_by.join(", "))
        };
        r.ok(Check::ExecutionRole, name, format!("trusted by ecs-tasks.amazonaws.com; {what}"));
    }
}

// ---------------------------------------------------------------------------------------------
// secrets
// ---------------------------------------------------------------------------------------------

fn check_secrets(facts: &Facts, td: Option<&TaskDefinitionFacts>, r: &mut Report) {
    let Some(td) = td else {
        r.skip(Check::Secrets, "secrets", "needs the task definition (see above)");
        return;
    };
    let needs = secret_needs(facts, td);
    if needs.is_empty() {
        r.skip(
            Check::Secrets,
            short_task_definition(&td.arn),
            "the task definition references no secrets, parameters or environment files",
        );
        return;
    }
    let Some(arn) = td.execution_role_arn.as_deref() else {
        r.skip(Check::Secrets, short_task_definition(&td.arn), "no execution role to read them (see above)");
        return;
    };
    let name = role_name(arn).to_string();
    let role = match role_facts(facts, Some(arn)) {
        Some(Ok(Some(role))) => role,
        Some(Err(u)) => {
            r.unknown(Check::Secrets, u);
            return;
        }
        _ => {
            r.skip(Check::Secrets, name, "the execution role is missing (see above)");
            return;
        }
    };
    let kms = role
        .policies
        .iter()
        .flat_map(|p| &p.statements)
        .any(|s| s.allow && s.actions.iter().any(|a| action_matches(a, "kms:Decrypt")) != s.not_action);
    for (container, need) in &needs {
        let subject = format!("container {container}");
        match evaluate(role, need.action, &need.resource) {
            Access::Allowed { by, conditional: false } => {
                let kms_note = if !kms && need.action != "s3:GetObject" && need.action != "s3:GetBucketLocation" {
                    "; if it is encrypted with a customer managed KMS key, the role also needs kms:Decrypt on that key"
                } else {
                    ""
                };
                r.ok(Check::Secrets, subject, format!("{name} may {} ({} by {by}){kms_note}", need.purpose, need.action));
            }
            Access::Allowed { by, conditional: true } => r.warn(
                Check::Secrets,
                subject,
                format!("{name} may {} only under a Condition ({by}); kanaria does not evaluate conditions", need.purpose),
                "check that the condition holds when ECS reads the secret as the execution role",
            ),
            Access::Denied { by } => r.fail(
                Check::Secrets,
                subject,
                format!("{name} cannot {}: {by} explicitly denies {}", need.purpose, need.action),
                format!("remove or narrow the Deny in {by}: an explicit Deny wins over every Allow"),
            ),
            Access::NotAllowed => {
                let note = task_role_note(facts, td, &[need], "reads the task definition's secrets");
                let kms_note = if need.action.starts_with("s3:") {
                    ""
                } else {
                    " If the secret is encrypted with a customer managed KMS key, add kms:Decrypt on that key too."
                };
                r.fail(
                    Check::Secrets,
                    subject,
                    format!(
                        "the execution role {name} cannot {}: its policies do not allow {} on {}; tasks stop with ResourceInitializationError",
                        need.purpose, need.action, need.resource
                    ),
                    format!("{}{kms_note}{note}", policy_snippet(&name, "read-task-secrets", &[need])),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// network path to ECR
// ---------------------------------------------------------------------------------------------

fn endpoint_for<'a>(endpoints: &'a [EndpointFacts], vpc: &str, service: &str) -> Option<&'a EndpointFacts> {
    endpoints.iter().find(|e| e.vpc_id == vpc && e.service_name == service && e.state.eq_ignore_ascii_case("available"))
}

fn check_network(facts: &Facts, td: Option<&TaskDefinitionFacts>, r: &mut Report) {
    let Some(w) = &facts.workload else {
        r.skip(Check::Network, "network", "no task set to read the network configuration from (see above)");
        return;
    };
    if td.is_some_and(|t| t.network_mode != "awsvpc") {
        r.skip(
            Check::Network,
            "network",
            "the tasks do not use awsvpc networking: they pull through their container instances' network, which kanaria does not check",
        );
        return;
    }
    if w.subnets.is_empty() {
        r.fail(
            Check::Network,
            w.from.clone(),
            "has no awsvpc network configuration (subnets and security groups); Fargate tasks need one",
            "create the task set with `--network-configuration 'awsvpcConfiguration={subnets=[SUBNET_IDS],securityGroups=[SG_IDS],assignPublicIp=DISABLED}'`",
        );
        return;
    }
    let network = match &facts.network {
        None => {
            r.skip(Check::Network, "network", "not read");
            return;
        }
        Some(Err(u)) => {
            r.unknown(Check::Network, u);
            return;
        }
        Some(Ok(n)) => n,
    };
    let region = &facts.region;
    let td_uses = |pred: &dyn Fn(&ContainerFacts) -> bool| td.is_some_and(|t| t.containers.iter().any(pred));
    // Besides ECR itself, what the task's start needs to reach: only an issue when the
    // endpoints are the only way out.
    let mut also: Vec<(&str, String)> = Vec::new();
    if td_uses(&|c| c.log_driver.as_deref() == Some("awslogs")) {
        also.push(("logs (awslogs)", format!("com.amazonaws.{region}.logs")));
    }
    if td_uses(&|c| {
        c.secrets
            .iter()
            .chain(c.repository_credentials.iter())
            .any(|s| secret_need(s, region, &facts.account).0.starts_with("secretsmanager"))
    }) {
        also.push(("Secrets Manager (secrets)", format!("com.amazonaws.{region}.secretsmanager")));
    }
    if td_uses(&|c| c.secrets.iter().any(|s| secret_need(s, region, &facts.account).0.starts_with("ssm"))) {
        also.push(("Systems Manager (parameters)", format!("com.amazonaws.{region}.ssm")));
    }
    let sg = if w.security_groups.is_empty() { "SG_ID".to_string() } else { w.security_groups.join(" ") };
    for subnet in &network.subnets {
        let Some(vpc) = &subnet.vpc_id else {
            r.fail(
                Check::Network,
                subnet.id.clone(),
                format!("the subnet in {}'s network configuration does not exist", w.from),
                "create the task set with existing subnets (a task set's network configuration cannot be changed; the next rollout copies it)",
            );
            continue;
        };
        let rtb = subnet.route_table_id.clone().unwrap_or_else(|| "ROUTE_TABLE_ID".into());
        let route = subnet.default_route.as_deref().filter(|_| !subnet.default_route_blackhole);
        if let Some(target) = route {
            if target.starts_with("nat-") {
                r.ok(Check::Network, subnet.id.clone(), format!("0.0.0.0/0 → NAT gateway {target} ({rtb})"));
                continue;
            }
            if target.starts_with("igw-") && w.assign_public_ip {
                r.ok(Check::Network, subnet.id.clone(), format!("public subnet (0.0.0.0/0 → {target}) and assignPublicIp ENABLED"));
                continue;
            }
        }
        let api = endpoint_for(&network.endpoints, vpc, &format!("com.amazonaws.{region}.ecr.api"));
        let dkr = endpoint_for(&network.endpoints, vpc, &format!("com.amazonaws.{region}.ecr.dkr"));
        let s3_service = format!("com.amazonaws.{region}.s3");
        let s3 = network.endpoints.iter().find(|e| {
            e.vpc_id == *vpc
                && e.service_name == s3_service
                && e.state.eq_ignore_ascii_case("available")
                && (e.kind.eq_ignore_ascii_case("Interface")
                    || subnet.route_table_id.as_ref().is_some_and(|t| e.route_table_ids.contains(t)))
        });
        let mut endpoint_gaps: Vec<String> = Vec::new();
        for (label, e) in [("ecr.api", api), ("ecr.dkr", dkr)] {
            match e {
                None => endpoint_gaps.push(format!("no com.amazonaws.{region}.{label} interface endpoint")),
                Some(e) if !e.private_dns => {
                    endpoint_gaps.push(format!("{label} endpoint {} has private DNS disabled, so ECR's name does not resolve to it", e.id))
                }
                Some(_) => {}
            }
        }
        if s3.is_none() {
            endpoint_gaps.push(format!("no S3 gateway endpoint on route table {rtb} (image layers are downloaded from S3)"));
        }
        let endpoints_fix = format!(
            "aws ec2 create-vpc-endpoint --vpc-id {vpc} --vpc-endpoint-type Interface --service-name com.amazonaws.{region}.ecr.api --subnet-ids {} --security-group-ids {sg} --private-dns-enabled\n\
             aws ec2 create-vpc-endpoint --vpc-id {vpc} --vpc-endpoint-type Interface --service-name com.amazonaws.{region}.ecr.dkr --subnet-ids {} --security-group-ids {sg} --private-dns-enabled\n\
             aws ec2 create-vpc-endpoint --vpc-id {vpc} --vpc-endpoint-type Gateway --service-name com.amazonaws.{region}.s3 --route-table-ids {rtb}",
            subnet.id, subnet.id
        );
        if endpoint_gaps.is_empty() {
            let missing_also: Vec<String> = also
                .iter()
                .filter(|(_, svc)| endpoint_for(&network.endpoints, vpc, svc).is_none_or(|e| !e.private_dns))
                .map(|(what, svc)| format!("{what}: {svc}"))
                .collect();
            if missing_also.is_empty() {
                r.ok(
                    Check::Network,
                    subnet.id.clone(),
                    format!(
                        "ECR through VPC endpoints ({}, {}, S3 {})",
                        api.map(|e| e.id.as_str()).unwrap_or(""),
                        dkr.map(|e| e.id.as_str()).unwrap_or(""),
                        s3.map(|e| e.id.as_str()).unwrap_or("")
                    ),
                );
            } else if let Some(target) = route.filter(|t| !t.starts_with("igw-")) {
                r.warn(
                    Check::Network,
                    subnet.id.clone(),
                    format!(
                        "reaches ECR through VPC endpoints; the task also needs {}, which has no endpoint, so it goes through 0.0.0.0/0 → \
                         {target}, where kanaria cannot see",
                        missing_also.join("; ")
                    ),
                    "make sure that route reaches the internet, or add the missing interface endpoints",
                );
            } else {
                r.fail(
                    Check::Network,
                    subnet.id.clone(),
                    format!(
                        "reaches ECR through VPC endpoints only, but the task also needs {} and the VPC has no endpoint for it: the task fails to start",
                        missing_also.join("; ")
                    ),
                    missing_also
                        .iter()
                        .map(|m| {
                            let svc = m.rsplit(": ").next().unwrap_or(m);
                            format!("aws ec2 create-vpc-endpoint --vpc-id {vpc} --vpc-endpoint-type Interface --service-name {svc} --subnet-ids {} --security-group-ids {sg} --private-dns-enabled", subnet.id)
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
            }
            continue;
        }
        if let Some(target) = route {
            if target.starts_with("igw-") {
                r.fail(
                    Check::Network,
                    subnet.id.clone(),
                    format!(
                        "is a public subnet (0.0.0.0/0 → {target}), but {} has assignPublicIp DISABLED: the tasks get no public address, so \
                         they cannot reach ECR (CannotPullContainerError: i/o timeout)",
                        w.from
                    ),
                    format!(
                        "either give the tasks a public IP (create the task set with assignPublicIp=ENABLED; the next rollout copies it), or run \
                         them in private subnets whose route table sends 0.0.0.0/0 to a NAT gateway, or add the VPC endpoints:\n{endpoints_fix}"
                    ),
                );
                continue;
            }
            // Transit gateway, peering, a NAT instance, a firewall: kanaria cannot see past it.
            r.warn(
                Check::Network,
                subnet.id.clone(),
                format!("0.0.0.0/0 → {target} ({rtb}); kanaria cannot see whether that leads to ECR"),
                "make sure that route reaches the internet (or ECR and S3), or add a NAT gateway route or the ECR and S3 VPC endpoints",
            );
            continue;
        }
        let why = if subnet.default_route_blackhole {
            format!("route table {rtb} has a 0.0.0.0/0 route whose target is gone (blackhole)")
        } else {
            format!("route table {rtb} has no 0.0.0.0/0 route to a NAT gateway")
        };
        r.fail(
            Check::Network,
            subnet.id.clone(),
            format!(
                "no path to ECR: {why}, the VPC's endpoints are incomplete ({}), and assignPublicIp is {}; tasks stop with \
                 CannotPullContainerError (i/o timeout)",
                endpoint_gaps.join("; "),
                if w.assign_public_ip { "ENABLED but there is no internet gateway route" } else { "DISABLED" }
            ),
            format!(
                "give the subnet a way out, one of:\n\
                 - a NAT gateway (in a public subnet): aws ec2 create-route --route-table-id {rtb} --destination-cidr-block 0.0.0.0/0 --nat-gateway-id NAT_GATEWAY_ID\n\
                 - VPC endpoints for ECR and S3 (plus logs, secretsmanager or ssm when the task uses them):\n{endpoints_fix}\n\
                 - a public subnet (0.0.0.0/0 → internet gateway) with assignPublicIp=ENABLED on the task set"
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// log configuration
// ---------------------------------------------------------------------------------------------

fn check_logs(facts: &Facts, td: Option<&TaskDefinitionFacts>, r: &mut Report) {
    let Some(td) = td else {
        r.skip(Check::Logs, "log configuration", "needs the task definition (see above)");
        return;
    };
    let family = td.arn.rsplit('/').next().and_then(|s| s.split(':').next()).unwrap_or("FAMILY").to_string();
    let router = td.containers.iter().any(|c| c.firelens_router);
    let execution_role = match role_facts(facts, td.execution_role_arn.as_deref()) {
        Some(Ok(Some(role))) => Some(role),
        _ => None,
    };
    for c in td.containers.iter().filter(|c| c.essential) {
        let subject = format!("container {}", c.name);
        match c.log_driver.as_deref() {
            None => r.fail(
                Check::Logs,
                subject,
                "has no logConfiguration: when it crashes there is nothing to read about why (kanaria's restart-loop alerts quote the \
                 last awslogs lines)",
                format!(
                    "{NEW_REVISION}, with this in the container definition:\n\
                     \"logConfiguration\": {{\"logDriver\": \"awslogs\", \"options\": {{\"awslogs-group\": \"/ecs/{family}\", \"awslogs-region\": \"{}\", \
                     \"awslogs-stream-prefix\": \"ecs\"}}}}\n\
                     and create the group: aws logs create-log-group --log-group-name /ecs/{family}",
                    facts.region
                ),
            ),
            Some("awslogs") => {
                let Some(group) = c.log_options.get("awslogs-group") else {
                    r.fail(
                        Check::Logs,
                        subject,
                        "uses awslogs without the awslogs-group option",
                        format!("{NEW_REVISION}: add `\"awslogs-group\": \"/ecs/{family}\"` (and awslogs-region, awslogs-stream-prefix)"),
                    );
                    continue;
                };
                let create = c.log_options.get("awslogs-create-group").is_some_and(|v| v.eq_ignore_ascii_case("true"));
                let log_region = c.log_options.get("awslogs-region").cloned().unwrap_or_else(|| facts.region.clone());
                let stream = format!(
                    "arn:aws:logs:{log_region}:{}:log-group:{group}:log-stream:{}/{}/TASK_ID",
                    facts.account,
                    c.log_options.get("awslogs-stream-prefix").map(String::as_str).unwrap_or("ecs"),
                    c.name
                );
                let mut problems = 0;
                match facts.log_groups.get(group.as_str()) {
                    Some(Ok(false)) if !create => {
                        problems += 1;
                        r.fail(
                            Check::Logs,
                            subject.clone(),
                            format!("logs to the awslogs group {group}, which does not exist: tasks fail to start (ResourceInitializationError)"),
                            format!("aws logs create-log-group --log-group-name {group} --region {log_region}"),
                        );
                    }
                    Some(Err(u)) => {
                        problems += 1;
                        r.unknown(Check::Logs, u);
                    }
                    _ => {}
                }
                if let Some(role) = execution_role {
                    let mut needed = vec!["logs:CreateLogStream", "logs:PutLogEvents"];
                    if create && matches!(facts.log_groups.get(group.as_str()), Some(Ok(false))) {
                        needed.push("logs:CreateLogGroup");
                    }
                    let lacking: Vec<&str> =
                        needed.into_iter().filter(|a| !matches!(evaluate(role, a, &stream), Access::Allowed { .. })).collect();
                    if !lacking.is_empty() {
                        problems += 1;
                        r.fail(
                            Check::Logs,
                            subject.clone(),
                            format!("the execution role {} may not {} on {group}: the awslogs driver cannot write", role.name, lacking.join(", ")),
                            format!(
                                "attach {EXECUTION_ROLE_POLICY_ARN} to {} (it allows logs:CreateLogStream and logs:PutLogEvents), or grant {} on \
                                 arn:aws:logs:{log_region}:{}:log-group:{group}:*",
                                role.name,
                                lacking.join(", "),
                                facts.account
                            ),
                        );
                    }
                }
                if problems == 0 {
                    r.ok(Check::Logs, subject, format!("awslogs → {group}"));
                }
            }
            Some("awsfirelens") if !router => r.fail(
                Check::Logs,
                subject,
                "uses the awsfirelens log driver, but no container of the task is a FireLens log router (firelensConfiguration)",
                format!("{NEW_REVISION}: add the log router container (e.g. the aws-for-fluent-bit image with `firelensConfiguration: {{type: fluentbit}}`)"),
            ),
            Some("awsfirelens") => r.ok(Check::Logs, subject, "FireLens (awsfirelens) through the task's log router"),
            Some(other) => r.ok(
                Check::Logs,
                subject,
                format!("{other} (kanaria's restart-loop alerts quote log lines only from awslogs)"),
            ),
        }
    }
    if !td.containers.iter().any(|c| c.essential) {
        r.fail(
            Check::Logs,
            short_task_definition(&td.arn),
            "no container is essential",
            format!("{NEW_REVISION}: mark the main container `\"essential\": true`"),
        );
    }
}

#[cfg(test)]
mod tests;

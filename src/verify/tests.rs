use super::*;

const ACCOUNT: &str = "123456789012";
const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2";
const TEST_LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/aaaaaaaaaaaaaaaa";
const RULE: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2/bbbbbbbbbbbbbbbb";
const BLUE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067";
const GREEN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2453ed029918f21f";
const EXEC: &str = "arn:aws:iam::123456789012:role/web-execution";
const TASK: &str = "arn:aws:iam::123456789012:role/web-task";
const TD: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3";
const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf";

fn policy_yaml() -> String {
    format!(
        "service: {{ cluster: demo, name: web }}\ncontainer: web\ntrigger: {{ repository: demo/web, tags: [\"v*\"] }}\n\
         traffic:\n  listenerArn: {LISTENER}\n  targetGroups: [{BLUE}, {GREEN}]\n\
         strategy:\n  canary:\n    steps:\n      - {{ weight: 10, bake: 1m }}\n      - {{ weight: 50, bake: 1m }}\n"
    )
}

fn execution_policy() -> PolicyDocument {
    PolicyDocument {
        name: "AmazonECSTaskExecutionRolePolicy (AWS managed)".into(),
        statements: parse_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:BatchGetImage","logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]}"#,
        )
        .unwrap(),
    }
}

fn role(arn: &str, policies: Vec<PolicyDocument>) -> RoleFacts {
    RoleFacts {
        arn: arn.into(),
        name: role_name(arn).into(),
        trusted_services: vec!["ecs-tasks.amazonaws.com".into()],
        policies,
        unreadable: Vec::new(),
    }
}

fn inline(name: &str, json: &str) -> PolicyDocument {
    PolicyDocument { name: format!("inline policy {name}"), statements: parse_policy_document(json).unwrap() }
}

fn container() -> ContainerFacts {
    ContainerFacts {
        name: "web".into(),
        image: format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/demo/web:v1"),
        essential: true,
        memory: Some(512),
        log_driver: Some("awslogs".into()),
        log_options: [("awslogs-group", "/ecs/web"), ("awslogs-region", "us-east-1"), ("awslogs-stream-prefix", "ecs")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        container_ports: vec![8080],
        ..Default::default()
    }
}

fn endpoint(id: &str, service: &str, kind: &str, route_tables: &[&str]) -> EndpointFacts {
    EndpointFacts {
        id: id.into(),
        vpc_id: "vpc-1".into(),
        service_name: format!("com.amazonaws.us-east-1.{service}"),
        kind: kind.into(),
        state: "available".into(),
        private_dns: kind == "Interface",
        route_table_ids: route_tables.iter().map(|s| s.to_string()).collect(),
    }
}

/// A service every check passes: the way docs/deploy.md sets one up, private subnets behind a NAT.
fn ready() -> Facts {
    let mut f = Facts {
        service: "demo/web".into(),
        region: "us-east-1".into(),
        account: ACCOUNT.into(),
        policy: PolicyFacts { source: "SSM parameter /kanaria/policies/demo/web".into(), state: policy_state("p", &policy_yaml()) },
        controller: "EXTERNAL".into(),
        task_sets: vec![("ecs-svc/1".into(), "PRIMARY".into())],
        workload: Some(Workload {
            from: "primary task set ecs-svc/1".into(),
            task_definition_arn: TD.into(),
            launch_type: Some("FARGATE".into()),
            capacity_providers: Vec::new(),
            subnets: vec!["subnet-a".into()],
            security_groups: vec!["sg-1".into()],
            assign_public_ip: false,
            load_balancers: vec![LoadBalancerFacts {
                target_group_arn: BLUE.into(),
                container_name: "web".into(),
                container_port: Some(8080),
            }],
            classic_load_balancers: Vec::new(),
            service_registries: Vec::new(),
        }),
        task_definition: Some(Ok(TaskDefinitionFacts {
            arn: TD.into(),
            network_mode: "awsvpc".into(),
            requires_compatibilities: vec!["FARGATE".into()],
            cpu: Some("256".into()),
            memory: Some("512".into()),
            execution_role_arn: Some(EXEC.into()),
            task_role_arn: Some(TASK.into()),
            containers: vec![container()],
        })),
        network: Some(Ok(NetworkFacts {
            subnets: vec![SubnetFacts {
                id: "subnet-a".into(),
                vpc_id: Some("vpc-1".into()),
                route_table_id: Some("rtb-1".into()),
                default_route: Some("nat-1".into()),
                default_route_blackhole: false,
            }],
            endpoints: Vec::new(),
        })),
        ..Default::default()
    };
    f.routes.insert(
        LISTENER.into(),
        Ok(Some(RouteFacts {
            label: "listener :443 (HTTPS)".into(),
            forward: Some(vec![(BLUE.into(), 100), (GREEN.into(), 0)]),
            action_types: vec!["forward".into()],
            sticky_seconds: None,
        })),
    );
    for (arn, name) in [(BLUE, "web-blue"), (GREEN, "web-green")] {
        f.target_groups.insert(
            arn.into(),
            Ok(Some(TargetGroupFacts {
                name: name.into(),
                target_type: "ip".into(),
                vpc_id: Some("vpc-1".into()),
                protocol: Some("HTTP".into()),
                port: Some(8080),
                health_check_path: Some("/healthz".into()),
            })),
        );
    }
    f.roles.insert(EXEC.into(), Ok(Some(role(EXEC, vec![execution_policy()]))));
    f.roles.insert(TASK.into(), Ok(Some(role(TASK, Vec::new()))));
    f.log_groups.insert("/ecs/web".into(), Ok(true));
    f
}

fn td(f: &mut Facts) -> &mut TaskDefinitionFacts {
    f.task_definition.as_mut().unwrap().as_mut().unwrap()
}

fn exec_role(f: &mut Facts) -> &mut RoleFacts {
    f.roles.get_mut(EXEC).unwrap().as_mut().unwrap().as_mut().unwrap()
}

fn subnet(f: &mut Facts) -> &mut SubnetFacts {
    &mut f.network.as_mut().unwrap().as_mut().unwrap().subnets[0]
}

fn failures(f: &Facts) -> Vec<Finding> {
    check(f).into_iter().filter(|x| x.status == Status::Fail).collect()
}

/// The only failure is of `check`; returns it.
fn only_failure(f: &Facts, check_: Check) -> Finding {
    let fails = failures(f);
    assert_eq!(fails.len(), 1, "expected one failure of {check_:?}: {fails:#?}");
    assert_eq!(fails[0].check, check_, "{fails:#?}");
    assert!(fails[0].fix.as_deref().is_some_and(|x| !x.is_empty()), "a failure always has a fix");
    fails[0].clone()
}

fn has(s: &Finding, message: &str, fix: &str) {
    assert!(s.message.contains(message), "message {:?} lacks {message:?}", s.message);
    assert!(s.fix.as_deref().unwrap_or_default().contains(fix), "fix {:?} lacks {fix:?}", s.fix);
}

#[test]
fn a_ready_service_passes_every_check() {
    let findings = check(&ready());
    assert_eq!(verdict(&findings), Verdict::Ready, "{findings:#?}");
    let checks: Vec<Check> = findings.iter().map(|f| f.check).collect();
    for c in Check::ALL {
        assert!(checks.contains(&c), "{c:?} is reported: {findings:#?}");
    }
    assert!(findings.iter().all(|f| matches!(f.status, Status::Ok | Status::Skip)), "{findings:#?}");
    let net = findings.iter().find(|f| f.check == Check::Network).unwrap();
    assert!(net.message.contains("NAT gateway nat-1"), "{net:?}");
    let exec = findings.iter().find(|f| f.check == Check::ExecutionRole).unwrap();
    assert!(exec.message.contains("can pull demo/web") && exec.message.contains("AmazonECSTaskExecutionRolePolicy"), "{exec:?}");
}

// --- alarms -------------------------------------------------------------------------------

/// `ready()` with a policy naming `alarms`, of which CloudWatch returned `found`.
fn with_alarms(alarms: &str, found: Gathered<Vec<AlarmFacts>>) -> Facts {
    let mut f = ready();
    f.policy.state = policy_state("p", &format!("{}alarms: [{alarms}]\n", policy_yaml()));
    f.alarms = Some(found);
    f
}

fn alarm(name: &str, composite: bool, state: &str) -> AlarmFacts {
    AlarmFacts { name: name.into(), composite, state: state.into() }
}

#[test]
fn alarms_that_exist_pass_metric_or_composite() {
    let f = with_alarms("web-5xx, web-health", Ok(vec![alarm("web-health", true, "ALARM"), alarm("web-5xx", false, "OK")]));
    let findings: Vec<Finding> = check(&f).into_iter().filter(|x| x.check == Check::Alarms).collect();
    assert_eq!(verdict(&findings), Verdict::Ready, "{findings:#?}");
    let lines: Vec<String> = findings.iter().map(|x| x.to_string()).collect();
    assert_eq!(lines, ["ok alarms: web-5xx: metric alarm, OK now", "ok alarms: web-health: composite alarm, ALARM now"]);
}

#[test]
fn an_alarm_cloudwatch_does_not_return_fails_with_what_to_do() {
    let f = with_alarms("web-5xx, web-latncy", Ok(vec![alarm("web-5xx", false, "OK")]));
    let fail = only_failure(&f, Check::Alarms);
    assert_eq!(fail.subject, "web-latncy");
    has(&fail, "no CloudWatch alarm named \"web-latncy\" in us-east-1, metric or composite", "create the alarm in us-east-1");
    has(&fail, "would never roll a rollout back", "--alarm-types MetricAlarm CompositeAlarm --alarm-name-prefix web");
    has(&fail, "", "cloudwatch:DescribeAlarms on \"*\"");
}

#[test]
fn alarms_that_cannot_be_read_are_unknown_and_no_alarms_is_skipped() {
    let denied = Unreadable {
        what: "alarms web-5xx".into(),
        error: "CloudWatch DescribeAlarms: AccessDenied".into(),
        needs: "cloudwatch:DescribeAlarms on \"*\"".into(),
    };
    let f = with_alarms("web-5xx", Err(denied));
    let findings = check(&f);
    assert_eq!(verdict(&findings), Verdict::Incomplete, "{findings:#?}");
    let unknown = findings.iter().find(|x| x.check == Check::Alarms).unwrap();
    assert_eq!(unknown.status, Status::Unknown);
    assert!(unknown.fix.as_deref().unwrap().contains("cloudwatch:DescribeAlarms on \"*\""), "{unknown:?}");

    let none = check(&ready()).into_iter().find(|x| x.check == Check::Alarms).unwrap();
    assert_eq!(none.status, Status::Skip, "{none:?}");
}

// --- policy -------------------------------------------------------------------------------

#[test]
fn a_missing_policy_says_how_to_store_one() {
    let mut f = ready();
    f.policy.state = PolicyState::Missing;
    let fails = failures(&f);
    assert_eq!(fails[0].check, Check::Policy);
    has(&fails[0], "no policy is stored for demo/web", "kanaria policy apply");
    // Without a policy the wiring cannot be judged; it is skipped, not failed.
    assert!(check(&f).iter().any(|x| x.check == Check::Traffic && x.status == Status::Skip));
}

#[test]
fn an_invalid_policy_reports_every_problem_and_still_checks_the_wiring() {
    let mut f = ready();
    f.policy.state = policy_state("p", &policy_yaml().replace("weight: 50", "weight: 5"));
    let fails = failures(&f);
    assert_eq!(fails.len(), 1, "{fails:#?}");
    assert_eq!(fails[0].subject, "strategy.canary.steps[1].weight");
    has(&fails[0], "does not increase", "increasing order");
    assert!(check(&f).iter().any(|x| x.check == Check::Traffic && x.status == Status::Ok), "wiring still checked");

    f.policy.state = policy_state("p", "service: [");
    let fails = failures(&f);
    assert_eq!(fails[0].check, Check::Policy);
    has(&fails[0], "not valid YAML", "fix the syntax");
}

#[test]
fn a_policy_for_another_service_or_container_is_reported() {
    let mut f = ready();
    f.service = "demo/api".into();
    let fail = only_failure(&f, Check::Policy);
    has(&fail, "is for demo/web, not demo/api", "cluster: demo, name: api");

    let mut f = ready();
    td(&mut f).containers[0].name = "app".into();
    td(&mut f).containers[0].container_ports = vec![8080];
    let fails = failures(&f);
    assert!(fails.iter().any(|x| x.check == Check::Policy && x.message.contains("no container named \"web\" (it has: app)")), "{fails:#?}");
}

#[test]
fn an_unreadable_policy_is_unknown_not_failed() {
    let mut f = ready();
    f.policy.state = PolicyState::Unreadable(Unreadable {
        what: "SSM parameter /kanaria/policies/demo/web".into(),
        error: "SSM GetParameter: AccessDeniedException: no".into(),
        needs: "ssm:GetParameter on parameter /kanaria/policies/demo/web".into(),
    });
    let findings = check(&f);
    assert_eq!(verdict(&findings), Verdict::Incomplete);
    let u = findings.iter().find(|x| x.status == Status::Unknown).unwrap();
    assert!(u.fix.as_deref().unwrap().contains("ssm:GetParameter on parameter /kanaria/policies/demo/web"), "{u:?}");
}

// --- deployment controller -----------------------------------------------------------------

#[test]
fn a_non_external_controller_fails_with_the_migration() {
    let mut f = ready();
    f.controller = "ECS".into();
    f.task_sets.clear();
    if let Some(w) = f.workload.as_mut() {
        w.from = "the service".into();
    }
    let fail = only_failure(&f, Check::DeploymentController);
    has(&fail, "uses the ECS deployment controller", "cannot be changed in place");
    let fix = fail.fix.unwrap();
    assert!(fix.contains("--deployment-controller type=EXTERNAL"), "{fix}");
    assert!(fix.contains("--task-definition web:3 --launch-type FARGATE"), "{fix}");
    assert!(fix.contains(&format!("targetGroupArn={BLUE},containerName=web,containerPort=8080")), "{fix}");
    assert!(fix.contains("subnets=[subnet-a],securityGroups=[sg-1],assignPublicIp=DISABLED"), "{fix}");
    assert!(fix.contains("update-service-primary-task-set"), "{fix}");
}

#[test]
fn task_sets_missing_not_primary_or_left_behind() {
    let mut f = ready();
    f.task_sets.clear();
    f.workload = None;
    f.task_definition = None;
    f.network = None;
    let fails = failures(&f);
    assert!(fails.iter().any(|x| x.check == Check::DeploymentController && x.message.contains("no task set")), "{fails:#?}");
    assert!(check(&f).iter().any(|x| x.check == Check::TaskSize && x.status == Status::Skip));

    let mut f = ready();
    f.task_sets = vec![("ecs-svc/1".into(), "ACTIVE".into())];
    assert!(failures(&f).iter().any(|x| x.message.contains("none of its 1 task set(s) is PRIMARY")));

    let mut f = ready();
    f.task_sets.push(("ecs-svc/2".into(), "ACTIVE".into()));
    let findings = check(&f);
    assert_eq!(verdict(&findings), Verdict::Ready, "a leftover task set is a warning");
    let w = findings.iter().find(|x| x.status == Status::Warn).unwrap();
    assert!(w.message.contains("1 other task set(s)") && w.fix.as_deref().unwrap().contains("kanaria status demo/web"), "{w:?}");
}

// --- listener / rule -------------------------------------------------------------------------

#[test]
fn a_missing_listener_names_the_policy_field() {
    let mut f = ready();
    f.routes.insert(LISTENER.into(), Ok(None));
    let fail = only_failure(&f, Check::Traffic);
    has(&fail, "`traffic.listenerArn` does not exist", "describe-listeners");
    assert!(fail.fix.unwrap().contains(&format!("{{\"TargetGroupArn\":\"{BLUE}\",\"Weight\":100}}")));
}

#[test]
fn a_listener_that_does_not_forward_or_forwards_elsewhere() {
    let mut f = ready();
    f.routes.insert(
        LISTENER.into(),
        Ok(Some(RouteFacts {
            label: "listener :80 (HTTP)".into(),
            forward: None,
            action_types: vec!["fixed-response".into()],
            sticky_seconds: None,
        })),
    );
    let fail = only_failure(&f, Check::Traffic);
    has(&fail, "does not forward: its actions are fixed-response", &format!("aws elbv2 modify-listener --listener-arn {LISTENER}"));

    let mut f = ready();
    f.routes.insert(
        LISTENER.into(),
        Ok(Some(RouteFacts {
            label: "listener :80 (HTTP)".into(),
            forward: Some(vec![(BLUE.into(), 1)]),
            action_types: vec!["forward".into()],
            sticky_seconds: None,
        })),
    );
    let fail = only_failure(&f, Check::Traffic);
    has(
        &fail,
        "forwards to web-blue (weight 1), but the policy's traffic.targetGroups are web-blue, web-green (web-green missing",
        "modify-listener",
    );
    assert!(
        fail.fix.unwrap().contains(&format!("{{\"TargetGroupArn\":\"{GREEN}\",\"Weight\":0}}")),
        "keeps all traffic on the stable group"
    );
}

#[test]
fn a_split_listener_is_a_warning_about_a_rollout_in_flight() {
    let mut f = ready();
    f.routes.insert(
        LISTENER.into(),
        Ok(Some(RouteFacts {
            label: "listener :80 (HTTP)".into(),
            forward: Some(vec![(BLUE.into(), 90), (GREEN.into(), 10)]),
            action_types: vec![],
            sticky_seconds: None,
        })),
    );
    let findings = check(&f);
    assert_eq!(verdict(&findings), Verdict::Ready);
    let w = findings.iter().find(|x| x.status == Status::Warn).unwrap();
    assert!(w.message.contains("web-blue 90% / web-green 10%"), "{w:?}");
}

#[test]
fn target_group_stickiness_is_a_warning_that_says_what_kanaria_does_with_it() {
    let mut f = ready();
    if let Some(Ok(Some(route))) = f.routes.get_mut(LISTENER) {
        route.sticky_seconds = Some(3600);
    }
    let findings = check(&f);
    assert_eq!(verdict(&findings), Verdict::Ready, "a warning, not a failure");
    let w = findings.iter().find(|x| x.status == Status::Warn).expect("a warning");
    assert!(w.message.contains("stickiness is on (3600 s)") && w.message.contains("turns stickiness off"), "{w:?}");
    let fix = w.fix.as_deref().unwrap_or_default();
    assert!(fix.contains("\"TargetGroupStickinessConfig\":{\"Enabled\":false}") && fix.contains("modify-listener"), "{fix}");
    // Off: no warning.
    assert!(!check(&ready()).iter().any(|x| x.status == Status::Warn));
}

#[test]
fn rules_and_blue_green_test_routes_are_checked_too() {
    let mut f = ready();
    let bg = policy_yaml().replace(&format!("listenerArn: {LISTENER}"), &format!("listenerRuleArn: {RULE}")).replace(
        "  canary:\n    steps:\n      - { weight: 10, bake: 1m }\n      - { weight: 50, bake: 1m }\n",
        &format!("  blueGreen:\n    testListenerArn: {TEST_LISTENER}\n    validation: {{ bake: 1m }}\n    keepOldFor: 5m\n"),
    );
    f.policy.state = policy_state("p", &bg);
    f.routes.clear();
    f.routes.insert(
        RULE.into(),
        Ok(Some(RouteFacts {
            label: "rule 10".into(),
            forward: Some(vec![(BLUE.into(), 100), (GREEN.into(), 0)]),
            action_types: vec![],
            sticky_seconds: None,
        })),
    );
    f.routes.insert(TEST_LISTENER.into(), Ok(None));
    let fail = only_failure(&f, Check::Traffic);
    assert_eq!(fail.subject, TEST_LISTENER);
    has(&fail, "`strategy.blueGreen.testListenerArn` does not exist", "test traffic");

    f.routes.insert(RULE.into(), Ok(None));
    f.routes.insert(
        TEST_LISTENER.into(),
        Ok(Some(RouteFacts {
            label: "listener :8443 (HTTP)".into(),
            forward: Some(vec![(BLUE.into(), 100), (GREEN.into(), 0)]),
            action_types: vec![],
            sticky_seconds: None,
        })),
    );
    let fail = only_failure(&f, Check::Traffic);
    has(&fail, "`traffic.listenerRuleArn` does not exist", "describe-rules");
}

// --- target groups -------------------------------------------------------------------------

fn set_tg(f: &mut Facts, arn: &str, edit: impl FnOnce(&mut TargetGroupFacts)) {
    edit(f.target_groups.get_mut(arn).unwrap().as_mut().unwrap().as_mut().unwrap());
}

#[test]
fn an_instance_target_group_for_awsvpc_tasks_fails_with_a_replacement() {
    let mut f = ready();
    set_tg(&mut f, GREEN, |t| t.target_type = "instance".into());
    let fail = only_failure(&f, Check::TargetGroups);
    assert_eq!(fail.subject, "web-green");
    has(&fail, "target type is instance; tasks with the awsvpc network mode", "cannot be changed");
    assert!(
        fail.fix.unwrap().contains("aws elbv2 create-target-group --name web-green-ip --target-type ip --protocol HTTP --port 8080 --vpc-id vpc-1 --health-check-path /healthz")
    );

    // Bridge-mode tasks need instance target groups instead.
    let mut f = ready();
    td(&mut f).network_mode = "bridge".into();
    f.workload.as_mut().unwrap().launch_type = Some("EC2".into());
    let fails = failures(&f);
    assert!(
        fails.iter().any(|x| x.check == Check::TargetGroups && x.message.contains("target type is ip; tasks with the bridge")),
        "{fails:#?}"
    );
}

#[test]
fn a_missing_target_group_is_created_like_its_twin() {
    let mut f = ready();
    f.target_groups.insert(GREEN.into(), Ok(None));
    let fail = only_failure(&f, Check::TargetGroups);
    has(
        &fail,
        "`traffic.targetGroups[1]` does not exist",
        "create-target-group --name web-green --target-type ip --protocol HTTP --port 8080 --vpc-id vpc-1",
    );
}

#[test]
fn a_target_group_in_another_vpc_or_not_serving_the_task_set() {
    let mut f = ready();
    set_tg(&mut f, BLUE, |t| t.vpc_id = Some("vpc-2".into()));
    let fail = only_failure(&f, Check::TargetGroups);
    has(&fail, "is in vpc-2, but the tasks run in subnets of vpc-1", "--vpc-id vpc-1");

    let mut f = ready();
    f.workload.as_mut().unwrap().load_balancers[0].target_group_arn =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/old/1".into();
    let fails = failures(&f);
    assert!(fails.iter().any(|x| x.check == Check::TargetGroups && x.message.contains("serves from target group old")), "{fails:#?}");

    let mut f = ready();
    f.workload.as_mut().unwrap().load_balancers[0].container_port = Some(80);
    let fail = only_failure(&f, Check::TargetGroups);
    has(&fail, "registers web:80 with the load balancer, but the container maps port(s) 8080", "portMappings");

    let mut f = ready();
    f.workload.as_mut().unwrap().load_balancers.clear();
    let fail = only_failure(&f, Check::TargetGroups);
    has(&fail, "registered with no target group", "--load-balancers");
}

/// A target group of the primary task set besides the production one, with `protocol`.
fn extra_target_group(f: &mut Facts, name: &str, protocol: &str) -> String {
    let arn = format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/0123456789abcdef");
    f.workload.as_mut().unwrap().load_balancers.push(LoadBalancerFacts {
        target_group_arn: arn.clone(),
        container_name: "web".into(),
        container_port: Some(8080),
    });
    f.target_groups.insert(
        arn.clone(),
        Ok(Some(TargetGroupFacts {
            name: name.into(),
            target_type: "ip".into(),
            vpc_id: Some("vpc-1".into()),
            protocol: Some(protocol.into()),
            port: Some(8080),
            health_check_path: None,
        })),
    );
    arn
}

/// "Only one Application Load Balancer target group is allowed per task set" (ECS developer
/// guide, External deployment): kanaria's copy of a primary with two would be refused at
/// CreateTaskSet, so verify says so first.
#[test]
fn a_second_application_load_balancer_target_group_cannot_be_copied() {
    let mut f = ready();
    extra_target_group(&mut f, "web-admin", "HTTPS");
    let fail = only_failure(&f, Check::TargetGroups);
    assert_eq!(fail.subject, "primary task set ecs-svc/1");
    has(
        &fail,
        "registers with 2 Application Load Balancer target groups (web-blue, web-admin): a task set may have only one",
        "keep one Application Load Balancer target group on the task set",
    );
    has(&fail, "CreateTaskSet would refuse the new task set", "aws ecs create-task-set --cluster demo --service web");
}

/// Network Load Balancer target groups and Cloud Map registries are copied: they work, but their
/// clients reach new tasks regardless of the canary's weights.
#[test]
fn network_load_balancers_and_registries_are_copied_with_a_warning() {
    let mut f = ready();
    extra_target_group(&mut f, "web-tcp", "TCP");
    f.workload.as_mut().unwrap().service_registries = vec!["arn:aws:servicediscovery:us-east-1:123456789012:service/srv-1".into()];
    let findings = check(&f);
    assert_eq!(verdict(&findings), Verdict::Ready, "{findings:#?}");
    let warnings: Vec<&Finding> = findings.iter().filter(|x| x.status == Status::Warn).collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    has(warnings[0], "Network Load Balancer target group web-tcp, which kanaria copies unchanged", "production listener");
    has(
        warnings[1],
        "registers its tasks in Cloud Map (arn:aws:servicediscovery:us-east-1:123456789012:service/srv-1)",
        "ECS_TASK_SET_EXTERNAL_ID",
    );
}

#[test]
fn the_production_load_balancer_must_come_first() {
    let mut f = ready();
    let tcp = extra_target_group(&mut f, "web-tcp", "TCP");
    f.workload.as_mut().unwrap().load_balancers.rotate_right(1);
    assert_eq!(f.workload.as_ref().unwrap().load_balancers[0].target_group_arn, tcp);
    let fails = failures(&f);
    let fail = fails.iter().find(|x| x.message.contains("first")).unwrap_or_else(|| panic!("{fails:#?}"));
    has(fail, "lists target group web-tcp first and the policy's web-blue as load balancer 2", &format!("with {BLUE} first"));
}

#[test]
fn classic_and_missing_load_balancers_cannot_be_copied() {
    let mut f = ready();
    f.workload.as_mut().unwrap().classic_load_balancers = vec!["web-elb".into()];
    let fail = only_failure(&f, Check::TargetGroups);
    has(&fail, "Classic Load Balancer web-elb", "Network Load Balancer target group");

    let mut f = ready();
    let gone = extra_target_group(&mut f, "web-gone", "TCP");
    f.target_groups.insert(gone, Ok(None));
    let fail = only_failure(&f, Check::TargetGroups);
    has(&fail, "target group web-gone, which does not exist", "leave the missing target group out");
}

// --- task size -----------------------------------------------------------------------------

#[test]
fn fargate_sizes_and_units_parse() {
    assert_eq!(parse_cpu("256"), Some(256));
    assert_eq!(parse_cpu("1 vCPU"), Some(1024));
    assert_eq!(parse_cpu(".25 vcpu"), Some(256));
    assert_eq!(parse_cpu("lots"), None);
    assert_eq!(parse_memory("2 GB"), Some(2048));
    assert_eq!(parse_memory("0.5GB"), Some(512));
    assert_eq!(parse_memory("512"), Some(512));
    assert_eq!(fargate_memory_options(256), Some(vec![512, 1024, 2048]));
    assert_eq!(fargate_memory_options(512), Some(vec![1024, 2048, 3072, 4096]));
    assert_eq!(fargate_memory_options(4096).unwrap().last(), Some(&30720));
    assert_eq!(fargate_memory_options(16384).unwrap()[1], 32768 + 8192);
    assert_eq!(fargate_memory_options(300), None);
    assert_eq!(smallest_fargate_size(256, 1024), Some((256, 1024)));
    assert_eq!(smallest_fargate_size(256, 3000), Some((512, 3072)));
}

#[test]
fn a_container_over_the_task_memory_fails_with_both_ways_out() {
    let mut f = ready();
    td(&mut f).containers[0].memory = Some(1024);
    let fail = only_failure(&f, Check::TaskSize);
    assert_eq!(fail.subject, "container web");
    has(&fail, "memory (hard limit) 1024 MiB is more than the task's 512 MiB", "at most 512, or raise the task memory to at least 1024");
    assert!(fail.fix.unwrap().contains("\"cpu\": \"256\", \"memory\": \"1024\""));
}

#[test]
fn containers_that_together_exceed_the_task_fail() {
    let mut f = ready();
    let mut sidecar = container();
    sidecar.name = "envoy".into();
    sidecar.memory = None;
    sidecar.memory_reservation = Some(256);
    sidecar.cpu = 128;
    td(&mut f).containers[0].cpu = 256;
    td(&mut f).containers.push(sidecar);
    let fails = failures(&f);
    assert_eq!(fails.len(), 2, "{fails:#?}");
    has(&fails[0], "reserve 768 MiB together (web 512 + envoy 256), more than the task's 512 MiB", "at least 768");
    has(&fails[1], "ask for 384 CPU units together (web 256 + envoy 128), more than the task's 256", "lower the containers' cpu");
}

#[test]
fn task_level_memory_unset_on_fargate_fails_and_says_the_rule() {
    let mut f = ready();
    td(&mut f).memory = None;
    td(&mut f).cpu = None;
    td(&mut f).requires_compatibilities = vec!["EC2".into()];
    td(&mut f).containers[0].memory = None;
    td(&mut f).containers[0].memory_reservation = Some(300);
    let fails = failures(&f);
    assert!(fails.iter().all(|x| x.check == Check::TaskSize), "{fails:#?}");
    assert!(fails.iter().any(|x| x.message.contains("requiresCompatibilities lacks FARGATE")), "{fails:#?}");
    let mem = fails.iter().find(|x| x.message.contains("neither task-level cpu nor memory")).expect("memory unset reported");
    has(mem, "Fargate sizes a task by its task-level cpu and memory", "\"cpu\": \"256\", \"memory\": \"512\"");

    // The same definition on EC2 is fine: the container's reservation sizes it.
    f.workload.as_mut().unwrap().launch_type = Some("EC2".into());
    assert!(failures(&f).is_empty(), "{:#?}", failures(&f));
}

#[test]
fn a_container_without_any_memory_and_no_task_memory_fails() {
    let mut f = ready();
    f.workload.as_mut().unwrap().launch_type = Some("EC2".into());
    td(&mut f).memory = None;
    td(&mut f).containers[0].memory = None;
    let fail = only_failure(&f, Check::TaskSize);
    has(&fail, "sets neither memory nor memoryReservation, and the task sets no task-level memory", "\"memoryReservation\": N");

    // With task-level memory a container may leave both out: it shares the task's memory.
    let mut f = ready();
    td(&mut f).containers[0].memory = None;
    let ok = check(&f).into_iter().find(|x| x.check == Check::TaskSize).unwrap();
    assert_eq!(ok.status, Status::Ok);
    assert!(ok.message.contains("web shares the task memory"), "{ok:?}");
}

#[test]
fn invalid_fargate_pairs_and_reservations_above_limits() {
    let mut f = ready();
    td(&mut f).memory = Some("4096".into());
    let fail = only_failure(&f, Check::TaskSize);
    has(&fail, "cpu 256 with memory 4096 MiB is not a Fargate size: with 256 CPU units Fargate offers 512, 1024, 2048 MiB", "a valid pair");

    let mut f = ready();
    td(&mut f).cpu = Some("300".into());
    let fail = only_failure(&f, Check::TaskSize);
    has(&fail, "cpu 300 is not a Fargate size", "\"cpu\": \"256\"");

    let mut f = ready();
    td(&mut f).containers[0].memory_reservation = Some(600);
    let fail = only_failure(&f, Check::TaskSize);
    has(&fail, "memoryReservation 600 MiB is above its memory (hard limit) 512 MiB", "at most 512");

    let mut f = ready();
    td(&mut f).network_mode = "bridge".into();
    let fails = failures(&f);
    assert!(fails.iter().any(|x| x.check == Check::TaskSize && x.message.contains("Fargate runs only awsvpc tasks")), "{fails:#?}");
}

// --- IAM evaluation ------------------------------------------------------------------------

#[test]
fn statements_parse_in_every_shape() {
    let s = parse_policy_document(
        r#"{"Statement":{"Effect":"Deny","NotAction":"s3:*","NotResource":["arn:a","arn:b"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}}"#,
    )
    .unwrap();
    assert_eq!(
        s,
        vec![Statement {
            allow: false,
            actions: vec!["s3:*".into()],
            not_action: true,
            resources: vec!["arn:a".into(), "arn:b".into()],
            not_resource: true,
            conditional: true
        }]
    );
    assert!(parse_policy_document("nope").is_err());
    assert!(parse_policy_document(r#"{"Version":"2012-10-17"}"#).is_err());
    assert_eq!(
        trusted_services(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":["ecs-tasks.amazonaws.com","lambda.amazonaws.com"]},"Action":"sts:AssumeRole"},{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:root"},"Action":"sts:AssumeRole"}]}"#
        ),
        vec!["ecs-tasks.amazonaws.com", "lambda.amazonaws.com"]
    );
    assert!(trusted_services("{}").is_empty());
}

#[test]
fn evaluation_handles_wildcards_denies_and_conditions() {
    let r = role(EXEC, vec![inline("all-ecr", r#"{"Statement":[{"Effect":"Allow","Action":"ECR:*","Resource":"*"}]}"#)]);
    assert!(matches!(
        evaluate(&r, "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:1:repository/x"),
        Access::Allowed { conditional: false, .. }
    ));
    let admin = role(EXEC, vec![inline("admin", r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)]);
    assert!(matches!(evaluate(&admin, "secretsmanager:GetSecretValue", SECRET), Access::Allowed { .. }));
    let scoped = role(
        EXEC,
        vec![inline(
            "s",
            r#"{"Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-*"}]}"#,
        )],
    );
    assert!(matches!(evaluate(&scoped, "secretsmanager:GetSecretValue", SECRET), Access::Allowed { .. }));
    assert_eq!(
        evaluate(&scoped, "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:123456789012:secret:api-1"),
        Access::NotAllowed
    );
    assert_eq!(evaluate(&scoped, "secretsmanager:DescribeSecret", SECRET), Access::NotAllowed);
    let denied = role(
        EXEC,
        vec![execution_policy(), inline("deny", r#"{"Statement":[{"Effect":"Deny","Action":"ecr:BatchGetImage","Resource":"*"}]}"#)],
    );
    assert_eq!(evaluate(&denied, "ecr:BatchGetImage", "arn:x"), Access::Denied { by: "inline policy deny".into() });
    let not_action = role(EXEC, vec![inline("na", r#"{"Statement":[{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}]}"#)]);
    assert!(matches!(evaluate(&not_action, "ecr:BatchGetImage", "arn:x"), Access::Allowed { .. }));
    assert_eq!(evaluate(&not_action, "iam:PassRole", "arn:x"), Access::NotAllowed);
    let conditional = role(
        EXEC,
        vec![inline(
            "c",
            r#"{"Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"StringEquals":{"aws:SourceVpce":"vpce-1"}}}]}"#,
        )],
    );
    assert!(matches!(evaluate(&conditional, "ecr:BatchGetImage", "arn:x"), Access::Allowed { conditional: true, .. }));
    // An unconditional grant elsewhere wins over the conditional one.
    let both = role(EXEC, vec![conditional.policies[0].clone(), execution_policy()]);
    assert!(matches!(evaluate(&both, "ecr:BatchGetImage", "arn:x"), Access::Allowed { conditional: false, .. }));
}

#[test]
fn images_and_secret_references_resolve_to_what_iam_checks() {
    assert_eq!(
        ecr_image("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:v1"),
        Some(("123456789012".into(), "us-east-1".into(), "team/web".into(), "aws"))
    );
    assert_eq!(ecr_image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/web@sha256:abc").unwrap().2, "web");
    assert_eq!(ecr_image("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/web").unwrap().3, "aws-cn");
    assert_eq!(ecr_image("localhost:5000/web:v1"), None);
    assert_eq!(ecr_image("public.ecr.aws/nginx/nginx:latest"), None);
    assert_eq!(ecr_image("nginx"), None);
    assert_eq!(ecr_image("nginx:latest"), None);

    assert_eq!(
        secret_need(&format!("{SECRET}:password::"), "us-east-1", ACCOUNT),
        ("secretsmanager:GetSecretValue", SECRET.to_string(), format!("secret {SECRET}"))
    );
    assert_eq!(secret_need("/prod/db-url", "us-east-1", ACCOUNT).1, "arn:aws:ssm:us-east-1:123456789012:parameter/prod/db-url");
    assert_eq!(secret_need("db-url", "eu-west-1", ACCOUNT).1, "arn:aws:ssm:eu-west-1:123456789012:parameter/db-url");
    let arn = "arn:aws:ssm:us-east-1:123456789012:parameter/prod/db-url";
    assert_eq!(secret_need(arn, "eu-west-1", ACCOUNT), ("ssm:GetParameters", arn.to_string(), format!("parameter {arn}")));
}

// --- execution role ------------------------------------------------------------------------

#[test]
fn an_execution_role_without_ecr_pull_fails_and_names_the_managed_policy() {
    let mut f = ready();
    exec_role(&mut f).policies =
        vec![inline("logs", r#"{"Statement":[{"Effect":"Allow","Action":["logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]}"#)];
    let fail = only_failure(&f, Check::ExecutionRole);
    assert_eq!(fail.subject, "web-execution");
    has(&fail, "cannot log in to ECR (for demo/web), pull demo/web from ECR", EXECUTION_ROLE_POLICY_ARN);
    assert!(fail.message.contains("ecr:BatchGetImage on arn:aws:ecr:us-east-1:123456789012:repository/demo/web"), "{}", fail.message);
    assert!(fail.message.contains("CannotPullContainerError"));
    assert!(!fail.fix.unwrap().contains("task role"), "no confusion note when the task role lacks it too");
}

#[test]
fn ecr_permissions_on_the_task_role_are_called_out() {
    let mut f = ready();
    exec_role(&mut f).policies.clear();
    exec_role(&mut f).policies.push(inline("logs", r#"{"Statement":[{"Effect":"Allow","Action":"logs:*","Resource":"*"}]}"#));
    f.roles.insert(TASK.into(), Ok(Some(role(TASK, vec![execution_policy()]))));
    let fail = only_failure(&f, Check::ExecutionRole);
    let fix = fail.fix.unwrap();
    assert!(fix.contains("the task role web-task allows ecr:GetAuthorizationToken, ecr:BatchGetImage"), "{fix}");
    assert!(fix.contains("ECS pulls images as the execution role"), "{fix}");
}

#[test]
fn execution_role_missing_untrusted_denied_or_absent() {
    let mut f = ready();
    f.roles.insert(EXEC.into(), Ok(None));
    let fails = failures(&f);
    has(&fails[0], "does not exist: no task can start", "aws iam create-role --role-name web-execution");

    let mut f = ready();
    exec_role(&mut f).trusted_services = vec!["lambda.amazonaws.com".into()];
    let fail = only_failure(&f, Check::ExecutionRole);
    has(
        &fail,
        "does not let ecs-tasks.amazonaws.com assume it (it trusts: lambda.amazonaws.com)",
        "update-assume-role-policy --role-name web-execution",
    );

    let mut f = ready();
    exec_role(&mut f).policies.push(inline("deny", r#"{"Statement":[{"Effect":"Deny","Action":"ecr:*","Resource":"*"}]}"#));
    let fails = failures(&f);
    assert!(fails.iter().all(|x| x.fix.as_deref().unwrap().contains("explicit Deny wins")), "{fails:#?}");

    let mut f = ready();
    td(&mut f).execution_role_arn = None;
    f.roles.insert(TASK.into(), Ok(Some(role(TASK, vec![execution_policy()]))));
    let fails = failures(&f);
    let fail = fails.iter().find(|x| x.check == Check::ExecutionRole).unwrap();
    has(
        fail,
        "no executionRoleArn, but ECS needs one to pull the image from ECR, send awslogs logs",
        "the task role web-task has these permissions",
    );

    // Not from ECR and no secrets or awslogs: no execution role is needed.
    let mut f = ready();
    td(&mut f).execution_role_arn = None;
    td(&mut f).containers[0].image = "public.ecr.aws/nginx/nginx:1".into();
    td(&mut f).containers[0].log_driver = Some("splunk".into());
    assert!(failures(&f).is_empty(), "{:#?}", failures(&f));
}

#[test]
fn unreadable_roles_and_policies_are_unknown() {
    let mut f = ready();
    let u = Unreadable { what: EXEC.into(), error: "IAM GetRole: AccessDenied: no".into(), needs: format!("iam:GetRole on {EXEC}") };
    f.roles.insert(EXEC.into(), Err(u));
    let findings = check(&f);
    assert_eq!(verdict(&findings), Verdict::Incomplete, "{findings:#?}");
    assert!(findings.iter().any(|x| x.status == Status::Unknown && x.check == Check::ExecutionRole));
}

// --- secrets -------------------------------------------------------------------------------

#[test]
fn a_secret_the_execution_role_cannot_read_fails_with_a_scoped_policy() {
    let mut f = ready();
    td(&mut f).containers[0].secrets = vec![format!("{SECRET}:password::")];
    let fail = only_failure(&f, Check::Secrets);
    assert_eq!(fail.subject, "container web");
    has(
        &fail,
        &format!("the execution role web-execution cannot read secret {SECRET}"),
        "aws iam put-role-policy --role-name web-execution",
    );
    let fix = fail.fix.unwrap();
    assert!(fix.contains(&format!("\"Action\":\"secretsmanager:GetSecretValue\",\"Resource\":\"{SECRET}\"")), "{fix}");
    assert!(fix.contains("kms:Decrypt"), "{fix}");
    assert!(fail.message.contains("ResourceInitializationError"));

    // Granted: ok, with the KMS note.
    exec_role(&mut f).policies.push(inline(
        "s",
        &format!(r#"{{"Statement":[{{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"{SECRET}"}}]}}"#),
    ));
    let ok = check(&f).into_iter().find(|x| x.check == Check::Secrets).unwrap();
    assert_eq!(ok.status, Status::Ok, "{ok:?}");
    assert!(ok.message.contains("customer managed KMS key"), "{ok:?}");
}

#[test]
fn a_secret_on_the_task_role_is_the_classic_confusion() {
    let mut f = ready();
    td(&mut f).containers[0].secrets = vec!["/prod/db-url".into()];
    f.roles.insert(
        TASK.into(),
        Ok(Some(role(TASK, vec![inline("ssm", r#"{"Statement":[{"Effect":"Allow","Action":"ssm:GetParameter*","Resource":"*"}]}"#)]))),
    );
    let fail = only_failure(&f, Check::Secrets);
    has(&fail, "cannot read parameter /prod/db-url: its policies do not allow ssm:GetParameters on arn:aws:ssm:us-east-1:123456789012:parameter/prod/db-url", "the task role web-task allows ssm:GetParameters");
}

#[test]
fn registry_credentials_and_environment_files_need_the_execution_role_too() {
    let mut f = ready();
    td(&mut f).containers[0].image = "ghcr.io/team/web:1".into();
    td(&mut f).containers[0].repository_credentials = Some(SECRET.into());
    td(&mut f).containers[0].environment_files = vec!["arn:aws:s3:::cfg-bucket/web.env".into()];
    let fails = failures(&f);
    assert_eq!(fails.len(), 3, "{fails:#?}");
    assert!(fails[0].message.contains("read the registry credentials"), "{fails:#?}");
    assert!(fails[1].message.contains("s3:GetObject on arn:aws:s3:::cfg-bucket/web.env"), "{fails:#?}");
    assert!(fails[2].message.contains("s3:GetBucketLocation on arn:aws:s3:::cfg-bucket"), "{fails:#?}");
}

// --- network -------------------------------------------------------------------------------

#[test]
fn a_private_subnet_without_nat_or_endpoints_fails_with_three_ways_out() {
    let mut f = ready();
    subnet(&mut f).default_route = None;
    let fail = only_failure(&f, Check::Network);
    assert_eq!(fail.subject, "subnet-a");
    has(&fail, "no path to ECR: route table rtb-1 has no 0.0.0.0/0 route to a NAT gateway", "--nat-gateway-id");
    assert!(fail.message.contains("assignPublicIp is DISABLED"));
    let fix = fail.fix.unwrap();
    assert!(
        fix.contains(
            "--service-name com.amazonaws.us-east-1.ecr.api --subnet-ids subnet-a --security-group-ids sg-1 --private-dns-enabled"
        ),
        "{fix}"
    );
    assert!(fix.contains("--vpc-endpoint-type Gateway --service-name com.amazonaws.us-east-1.s3 --route-table-ids rtb-1"), "{fix}");
    assert!(fix.contains("assignPublicIp=ENABLED"), "{fix}");
}

#[test]
fn a_public_subnet_needs_a_public_ip() {
    let mut f = ready();
    subnet(&mut f).default_route = Some("igw-1".into());
    let fail = only_failure(&f, Check::Network);
    has(
        &fail,
        "is a public subnet (0.0.0.0/0 → igw-1), but primary task set ecs-svc/1 has assignPublicIp DISABLED",
        "assignPublicIp=ENABLED",
    );
    f.workload.as_mut().unwrap().assign_public_ip = true;
    assert!(failures(&f).is_empty());
}

#[test]
fn endpoints_count_only_when_complete() {
    let mut f = ready();
    subnet(&mut f).default_route = None;
    let n = f.network.as_mut().unwrap().as_mut().unwrap();
    n.endpoints = vec![
        endpoint("vpce-api", "ecr.api", "Interface", &[]),
        endpoint("vpce-dkr", "ecr.dkr", "Interface", &[]),
        endpoint("vpce-s3", "s3", "Gateway", &["rtb-1"]),
        endpoint("vpce-logs", "logs", "Interface", &[]),
    ];
    let findings = check(&f);
    assert_eq!(verdict(&findings), Verdict::Ready, "{findings:#?}");
    assert!(findings
        .iter()
        .any(|x| x.check == Check::Network && x.message.contains("ECR through VPC endpoints (vpce-api, vpce-dkr, S3 vpce-s3)")));

    // The S3 gateway endpoint must be on the subnet's route table.
    f.network.as_mut().unwrap().as_mut().unwrap().endpoints[2].route_table_ids = vec!["rtb-other".into()];
    let fail = only_failure(&f, Check::Network);
    assert!(fail.message.contains("no S3 gateway endpoint on route table rtb-1 (image layers are downloaded from S3)"), "{fail:?}");

    // Private DNS off: ECR's name does not resolve to the endpoint.
    let mut g = f.clone();
    let n = g.network.as_mut().unwrap().as_mut().unwrap();
    n.endpoints[2].route_table_ids = vec!["rtb-1".into()];
    n.endpoints[1].private_dns = false;
    let fail = only_failure(&g, Check::Network);
    assert!(fail.message.contains("ecr.dkr endpoint vpce-dkr has private DNS disabled"), "{fail:?}");

    // Endpoints only, and the task also reads a secret: Secrets Manager needs its endpoint too.
    let mut h = f.clone();
    h.network.as_mut().unwrap().as_mut().unwrap().endpoints[2].route_table_ids = vec!["rtb-1".into()];
    td(&mut h).containers[0].secrets = vec![SECRET.into()];
    exec_role(&mut h)
        .policies
        .push(inline("s", r#"{"Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#));
    let fail = only_failure(&h, Check::Network);
    has(
        &fail,
        "Secrets Manager (secrets): com.amazonaws.us-east-1.secretsmanager",
        "--service-name com.amazonaws.us-east-1.secretsmanager",
    );
}

#[test]
fn other_routes_blackholes_and_missing_subnets() {
    let mut f = ready();
    subnet(&mut f).default_route = Some("tgw-1".into());
    let findings = check(&f);
    assert_eq!(verdict(&findings), Verdict::Ready);
    assert!(findings.iter().any(|x| x.status == Status::Warn && x.message.contains("0.0.0.0/0 → tgw-1")));

    let mut f = ready();
    subnet(&mut f).default_route_blackhole = true;
    let fail = only_failure(&f, Check::Network);
    assert!(fail.message.contains("blackhole"), "{fail:?}");

    let mut f = ready();
    *subnet(&mut f) = SubnetFacts { id: "subnet-gone".into(), ..Default::default() };
    let fails = failures(&f);
    assert!(fails.iter().any(|x| x.check == Check::Network && x.message.contains("does not exist")), "{fails:#?}");

    let mut f = ready();
    td(&mut f).network_mode = "bridge".into();
    f.workload.as_mut().unwrap().launch_type = Some("EC2".into());
    set_tg(&mut f, BLUE, |t| t.target_type = "instance".into());
    set_tg(&mut f, GREEN, |t| t.target_type = "instance".into());
    let findings = check(&f);
    assert!(findings.iter().any(|x| x.check == Check::Network && x.status == Status::Skip), "{findings:#?}");
    assert_eq!(verdict(&findings), Verdict::Ready, "{findings:#?}");
}

// --- logs ----------------------------------------------------------------------------------

#[test]
fn an_essential_container_without_logs_fails_with_an_awslogs_snippet() {
    let mut f = ready();
    td(&mut f).containers[0].log_driver = None;
    td(&mut f).containers[0].log_options.clear();
    let fail = only_failure(&f, Check::Logs);
    assert_eq!(fail.subject, "container web");
    has(&fail, "has no logConfiguration", "\"logDriver\": \"awslogs\"");
    assert!(fail.fix.unwrap().contains("aws logs create-log-group --log-group-name /ecs/web"));

    // A non-essential sidecar without logs is not a problem.
    let mut f = ready();
    let mut sidecar = container();
    sidecar.name = "xray".into();
    sidecar.essential = false;
    sidecar.memory = None;
    sidecar.log_driver = None;
    td(&mut f).containers.push(sidecar);
    assert!(failures(&f).is_empty(), "{:#?}", failures(&f));
}

#[test]
fn awslogs_needs_its_group_and_the_role_to_write() {
    let mut f = ready();
    f.log_groups.insert("/ecs/web".into(), Ok(false));
    let fail = only_failure(&f, Check::Logs);
    has(&fail, "group /ecs/web, which does not exist", "aws logs create-log-group --log-group-name /ecs/web --region us-east-1");

    // awslogs-create-group: the role must be allowed to create it.
    td(&mut f).containers[0].log_options.insert("awslogs-create-group".into(), "true".into());
    let fail = only_failure(&f, Check::Logs);
    has(&fail, "may not logs:CreateLogGroup on /ecs/web", "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web:*");

    let mut f = ready();
    exec_role(&mut f).policies = vec![inline("ecr", r#"{"Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#)];
    let fail = only_failure(&f, Check::Logs);
    has(&fail, "may not logs:CreateLogStream, logs:PutLogEvents", EXECUTION_ROLE_POLICY_ARN);
}

#[test]
fn firelens_and_other_drivers() {
    let mut f = ready();
    td(&mut f).containers[0].log_driver = Some("awsfirelens".into());
    let fail = only_failure(&f, Check::Logs);
    has(&fail, "no container of the task is a FireLens log router", "firelensConfiguration");
    let mut router = container();
    router.name = "log-router".into();
    router.memory = None;
    router.firelens_router = true;
    td(&mut f).containers.push(router);
    assert!(failures(&f).is_empty(), "{:#?}", failures(&f));

    let mut f = ready();
    td(&mut f).containers[0].log_driver = Some("splunk".into());
    let ok = check(&f).into_iter().find(|x| x.check == Check::Logs).unwrap();
    assert_eq!(ok.status, Status::Ok);
    assert!(ok.message.contains("only from awslogs"));
}

#[test]
fn every_failure_in_a_broken_service_has_a_fix() {
    let mut f = ready();
    f.controller = "ECS".into();
    set_tg(&mut f, GREEN, |t| t.target_type = "instance".into());
    td(&mut f).containers[0].memory = Some(4096);
    td(&mut f).containers[0].log_driver = None;
    td(&mut f).containers[0].secrets = vec![SECRET.into()];
    exec_role(&mut f).policies.clear();
    subnet(&mut f).default_route = None;
    let findings = check(&f);
    let failed: Vec<Check> = findings.iter().filter(|x| x.status == Status::Fail).map(|x| x.check).collect();
    for c in [
        Check::DeploymentController,
        Check::TargetGroups,
        Check::TaskSize,
        Check::ExecutionRole,
        Check::Secrets,
        Check::Network,
        Check::Logs,
    ] {
        assert!(failed.contains(&c), "{c:?} failed: {findings:#?}");
    }
    assert!(findings.iter().filter(|x| x.status == Status::Fail).all(|x| x.fix.as_deref().is_some_and(|s| s.len() > 20)));
    assert_eq!(verdict(&findings), Verdict::NotReady);
}

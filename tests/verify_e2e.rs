//! `kanaria verify` against emulated AWS: the sample service set up the way docs/deploy.md
//! describes is ready (exit 0); each problem the checks know is then introduced into it with
//! real API calls and reported with its fix (exit 1); a service that cannot be read exits 2.

mod common;

use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Compatibility, ContainerDefinition, DeploymentController, DeploymentControllerType, LaunchType, LoadBalancer,
    NetworkConfiguration, NetworkMode, PortMapping, Scale, ScaleUnit, Secret,
};
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, TargetGroupTuple, TargetTypeEnum};
use common::{start, Env};
use kanaria_local::fixture::{self, SampleOptions};
use kanaria_local::{ACCOUNT, REGION};

const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:demo/web/db-AbCdEf";

/// The sample service with its container logging to CloudWatch Logs: every check passes.
async fn ready() -> Env {
    start(SampleOptions { awslogs_group: Some("/ecs/web".into()), ..SampleOptions::default() }).await
}

/// Run `kanaria verify ARGS...` against the emulated AWS.
async fn verify(env: &Env, args: &[&str]) -> (Option<i32>, String, String) {
    let out = env.kanaria(&[&["verify"], args].concat()).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    // Shown with --nocapture, and by the harness when the test fails.
    eprintln!("$ kanaria verify ... (exit {:?})\n{stdout}{stderr}", out.status.code());
    (out.status.code(), stdout, stderr)
}

/// The report has a `FAIL` line for `check` that contains `line`, and its fix (the indented
/// lines below it) contains `fix`; the command exited 1.
fn assert_fails(report: &(Option<i32>, String, String), check: &str, line: &str, fix: &str) {
    let (code, out, err) = report;
    assert_eq!(*code, Some(1), "exit code; stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("FAIL") && l.contains(check) && l.contains(line))
        .unwrap_or_else(|| panic!("no FAIL line for {check} with {line:?}:\n{out}"));
    let fix_text: String = lines[at + 1..].iter().take_while(|l| l.starts_with("      ")).map(|l| l.trim()).collect::<Vec<_>>().join("\n");
    assert!(fix_text.starts_with("fix: "), "the problem is followed by its fix:\n{out}");
    assert!(fix_text.contains(fix), "fix of {check} lacks {fix:?}:\n{fix_text}\n\nreport:\n{out}");
    assert!(out.contains("is NOT ready"), "{out}");
}

/// Only these checks fail.
fn assert_only_failing(out: &str, checks: &[&str]) {
    for l in out.lines().filter(|l| l.starts_with("FAIL")) {
        assert!(checks.iter().any(|c| l.contains(c)), "unexpected failure {l:?} in:\n{out}");
    }
}

/// Runs of spaces as one (the report pads its columns).
fn squash(s: &str) -> String {
    s.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Write a policy file for `--policy`.
fn policy_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("kanaria-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Register a revision of the sample's task definition with `edit` applied to its container
/// builder (and `task` to the request), as a team would.
async fn register(
    env: &Env,
    edit: impl FnOnce(aws_sdk_ecs::types::builders::ContainerDefinitionBuilder) -> aws_sdk_ecs::types::builders::ContainerDefinitionBuilder,
    sized: bool,
) -> String {
    let ecs = &env.local.ctx().clients.ecs;
    let container = ContainerDefinition::builder()
        .name("web")
        .image(&env.sample.initial_image)
        .essential(true)
        .memory(512)
        .port_mappings(PortMapping::builder().container_port(8080).build())
        .log_configuration(fixture::awslogs("/ecs/web").unwrap());
    let mut req = ecs
        .register_task_definition()
        .family("web")
        .network_mode(NetworkMode::Awsvpc)
        .execution_role_arn(&env.sample.execution_role_arn)
        .task_role_arn(&env.sample.task_role_arn)
        .container_definitions(edit(container).build());
    if sized {
        req = req.requires_compatibilities(Compatibility::Fargate).cpu("256").memory("512");
    }
    req.send().await.expect("RegisterTaskDefinition").task_definition().unwrap().task_definition_arn().unwrap().to_string()
}

/// Replace the primary task set by one of `task_definition` in `subnets` (ECS cannot change a
/// task set's task definition or network in place): create, make primary, delete the old one.
async fn replace_task_set(env: &Env, task_definition: &str, subnets: &[String]) {
    let ecs = &env.local.ctx().clients.ecs;
    let (cluster, service) = (&env.sample.options.cluster, &env.sample.options.service);
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder().set_subnets(Some(subnets.to_vec())).security_groups(&env.sample.security_group).build().unwrap(),
        )
        .build();
    let ts = ecs
        .create_task_set()
        .cluster(cluster)
        .service(service)
        .task_definition(task_definition)
        .external_id("replacement")
        .launch_type(LaunchType::Fargate)
        .network_configuration(network)
        .load_balancers(
            LoadBalancer::builder().target_group_arn(&env.sample.target_groups[0]).container_name("web").container_port(8080).build(),
        )
        .scale(Scale::builder().unit(ScaleUnit::Percent).value(100.0).build())
        .send()
        .await
        .expect("CreateTaskSet");
    let arn = ts.task_set().unwrap().task_set_arn().unwrap().to_string();
    ecs.update_service_primary_task_set().cluster(cluster).service(service).primary_task_set(&arn).send().await.expect("primary");
    ecs.delete_task_set()
        .cluster(cluster)
        .service(service)
        .task_set(&env.sample.initial_task_set)
        .force(true)
        .send()
        .await
        .expect("delete");
}

fn forward(groups: &[(&str, i32)]) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .set_target_groups(Some(
                    groups.iter().map(|(tg, w)| TargetGroupTuple::builder().target_group_arn(*tg).weight(*w).build()).collect(),
                ))
                .build(),
        )
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_set_up_as_documented_is_ready() {
    let env = ready().await;
    let (code, out, err) = verify(&env, &["demo/web"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    for line in [
        "ok    policy",
        "SSM parameter /kanaria/policies/demo/web: valid (canary, 2 step(s))",
        "ok    deployment controller  demo/web: EXTERNAL, primary task set",
        "ok    listener/rule          listener :80 (HTTP): production traffic: forwards web-blue 100% / web-green 0%",
        "ok    target groups          web-blue: type ip",
        "ok    target groups          web-green: type ip",
        "ok    task size              web:1: cpu 256, memory 512 MiB (a Fargate size); containers fit (web 512 MiB)",
        "ok    execution role         web-execution: trusted by ecs-tasks.amazonaws.com; can pull demo/web from ECR (AmazonECSTaskExecutionRolePolicy (AWS managed))",
        "ECR through VPC endpoints",
        "ok    log configuration      container web: awslogs → /ecs/web",
        "demo/web is ready for kanaria.",
    ] {
        assert!(squash(&out).contains(&squash(line)), "report lacks {line:?}:\n{out}");
    }
    assert!(out.lines().all(|l| !l.starts_with("FAIL") && !l.starts_with("warn") && !l.starts_with('?')), "{out}");

    let (code, out, _) = verify(&env, &["demo/web", "--json"]).await;
    assert_eq!(code, Some(0));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ready"], true, "{report}");
    let checks: Vec<&str> = report["findings"].as_array().unwrap().iter().filter_map(|f| f["check"].as_str()).collect();
    for c in [
        "policy",
        "alarms",
        "deployment-controller",
        "traffic",
        "target-groups",
        "task-size",
        "execution-role",
        "secrets",
        "network",
        "logs",
    ] {
        assert!(checks.contains(&c), "{c} is reported: {report}");
    }
}

/// Issue 16 #4. CloudWatch ignores alarm names it does not know, so a misspelt alarm would never
/// roll a rollout back: `kanaria verify` and `kanaria policy validate` report it, and accept
/// metric and composite alarms that exist (the local runtime returns composite alarms only to a
/// DescribeAlarms that asks for them, as AWS does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_cloudwatch_does_not_know_is_reported_by_verify_and_policy_validate() {
    let env = ready().await;
    env.create_alarm("web-5xx").await;
    let cw = &env.local.ctx().clients.cloudwatch;
    cw.put_composite_alarm().alarm_name("web-health").alarm_rule("ALARM(\"web-5xx\")").send().await.unwrap();

    let good = policy_file("alarms-ok.yaml", &format!("{}alarms: [web-5xx, web-health]\n", env.sample.policy_yaml));
    let (code, out, err) = verify(&env, &["demo/web", "--policy", &good]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    for line in ["ok    alarms web-5xx: metric alarm, OK now", "ok    alarms web-health: composite alarm, OK now"] {
        assert!(squash(&out).contains(&squash(line)), "report lacks {line:?}:\n{out}");
    }
    let validated = env.kanaria(&["policy", "validate", &good]).await;
    assert_eq!(validated.status.code(), Some(0), "{}", String::from_utf8_lossy(&validated.stderr));

    let typo = policy_file("alarms-typo.yaml", &format!("{}alarms: [web-5xx, web-health, web-latncy]\n", env.sample.policy_yaml));
    let report = verify(&env, &["demo/web", "--policy", &typo]).await;
    assert_fails(
        &report,
        "alarms",
        "web-latncy: no CloudWatch alarm named \"web-latncy\" in us-east-1, metric or composite",
        "--alarm-types MetricAlarm CompositeAlarm --alarm-name-prefix web",
    );
    assert_only_failing(&report.1, &["alarms"]);

    let validated = env.kanaria(&["policy", "validate", &typo]).await;
    let out = String::from_utf8_lossy(&validated.stdout);
    assert_eq!(validated.status.code(), Some(2), "{out}{}", String::from_utf8_lossy(&validated.stderr));
    assert!(out.contains("alarms-typo.yaml: alarms[2]: no CloudWatch alarm named \"web-latncy\" in us-east-1"), "{out}");
    assert!(out.contains("  fix: create the alarm in us-east-1"), "{out}");
    assert!(!out.contains("web-health\" in"), "the composite alarm exists: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_with_the_ecs_deployment_controller_gets_the_migration() {
    let env = ready().await;
    let ecs = &env.local.ctx().clients.ecs;
    let td = register(&env, |c| c, true).await;
    // The same application, as an ordinary ECS-controlled service.
    ecs.create_service()
        .cluster("demo")
        .service_name("web-ecs")
        .task_definition(&td)
        .desired_count(1)
        .launch_type(LaunchType::Fargate)
        .deployment_controller(DeploymentController::builder().r#type(DeploymentControllerType::Ecs).build().unwrap())
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(
                    AwsVpcConfiguration::builder()
                        .set_subnets(Some(env.sample.subnets.clone()))
                        .security_groups(&env.sample.security_group)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .load_balancers(
            LoadBalancer::builder().target_group_arn(&env.sample.target_groups[0]).container_name("web").container_port(8080).build(),
        )
        .send()
        .await
        .unwrap();
    let policy = policy_file("ecs.yaml", &env.sample.policy_yaml.replace("name: web }", "name: web-ecs }"));
    let report = verify(&env, &["demo/web-ecs", "--policy", &policy]).await;
    assert_fails(
        &report,
        "deployment controller",
        "demo/web-ecs: the service uses the ECS deployment controller",
        "cannot be changed in place",
    );
    assert_fails(&report, "deployment controller", "", "aws ecs create-service --cluster demo --service-name web-ecs-v2");
    assert_fails(&report, "deployment controller", "", "--deployment-controller type=EXTERNAL");
    assert_fails(&report, "deployment controller", "", "update-service-primary-task-set");
    assert_only_failing(&report.1, &["deployment controller"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_target_group_is_reported_with_an_ip_replacement() {
    let env = ready().await;
    let elb = &env.local.ctx().clients.elb;
    let tg = elb
        .create_target_group()
        .name("web-instance")
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(&env.sample.vpc)
        .target_type(TargetTypeEnum::Instance)
        .send()
        .await
        .unwrap();
    let instance_tg = tg.target_groups()[0].target_group_arn().unwrap().to_string();
    let blue = env.sample.target_groups[0].as_str();
    elb.modify_listener()
        .listener_arn(&env.sample.listener_arn)
        .default_actions(forward(&[(blue, 100), (&instance_tg, 0)]))
        .send()
        .await
        .unwrap();
    let policy = policy_file("instance.yaml", &env.sample.policy_yaml.replace(&env.sample.target_groups[1], &instance_tg));
    let report = verify(&env, &["demo/web", "--policy", &policy]).await;
    assert_fails(&report, "target groups", "web-instance: target type is instance; tasks with the awsvpc network mode", "--target-type ip");
    assert_fails(&report, "target groups", "web-instance", "a target group's type cannot be changed");
    assert_only_failing(&report.1, &["target groups"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_listener_or_target_group_is_reported() {
    let env = ready().await;
    let gone_listener = format!("{}0", &env.sample.listener_arn[..env.sample.listener_arn.len() - 1]);
    let gone_listener =
        if gone_listener == env.sample.listener_arn { format!("{}1", &gone_listener[..gone_listener.len() - 1]) } else { gone_listener };
    let policy = policy_file("no-listener.yaml", &env.sample.policy_yaml.replace(&env.sample.listener_arn, &gone_listener));
    let report = verify(&env, &["demo/web", "--policy", &policy]).await;
    assert_fails(
        &report,
        "listener/rule",
        "the listener named by the policy's `traffic.listenerArn` does not exist",
        "aws elbv2 describe-listeners",
    );
    assert_only_failing(&report.1, &["listener/rule"]);

    let gone_tg = format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/web-gone/0123456789abcdef");
    let policy = policy_file("no-tg.yaml", &env.sample.policy_yaml.replace(&env.sample.target_groups[1], &gone_tg));
    let report = verify(&env, &["demo/web", "--policy", &policy]).await;
    assert_fails(
        &report,
        "target groups",
        "the target group in `traffic.targetGroups[1]` does not exist",
        "aws elbv2 create-target-group --name web-gone --target-type ip --protocol HTTP --port 8080",
    );
    // And the listener does not forward to it, which the policy says it should.
    assert_fails(
        &report,
        "listener/rule",
        "but the policy's traffic.targetGroups are web-blue, web-gone (web-gone missing",
        "aws elbv2 modify-listener",
    );
    assert_only_failing(&report.1, &["target groups", "listener/rule"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_not_wired_as_the_policy_says_is_reported() {
    let env = ready().await;
    let blue = env.sample.target_groups[0].as_str();
    env.local
        .ctx()
        .clients
        .elb
        .modify_listener()
        .listener_arn(&env.sample.listener_arn)
        .default_actions(forward(&[(blue, 1)]))
        .send()
        .await
        .unwrap();
    let report = verify(&env, &["demo/web"]).await;
    assert_fails(
        &report,
        "listener/rule",
        "forwards to web-blue (weight 1), but the policy's traffic.targetGroups are web-blue, web-green (web-green missing",
        &format!("aws elbv2 modify-listener --listener-arn {}", env.sample.listener_arn),
    );
    assert_fails(&report, "listener/rule", "", &format!("{{\"TargetGroupArn\":\"{}\",\"Weight\":0}}", env.sample.target_groups[1]));
    assert_only_failing(&report.1, &["listener/rule"]);

    // A listener that does not forward at all.
    let fixed = Action::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(aws_sdk_elasticloadbalancingv2::types::FixedResponseActionConfig::builder().status_code("404").build())
        .build();
    env.local.ctx().clients.elb.modify_listener().listener_arn(&env.sample.listener_arn).default_actions(fixed).send().await.unwrap();
    let report = verify(&env, &["demo/web"]).await;
    assert_fails(&report, "listener/rule", "the listener does not forward: its actions are fixed-response", "the stable one at 100");
}

/// Issue 16 #5: group stickiness beats weights; verify warns (the service is still ready) and
/// says what kanaria does with it and how to turn it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_group_stickiness_is_a_warning_with_what_kanaria_does() {
    let env = ready().await;
    let [blue, green] = env.sample.target_groups.clone();
    let sticky = |enabled: bool| {
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .target_groups(TargetGroupTuple::builder().target_group_arn(&blue).weight(100).build())
                    .target_groups(TargetGroupTuple::builder().target_group_arn(&green).weight(0).build())
                    .target_group_stickiness_config(
                        aws_sdk_elasticloadbalancingv2::types::TargetGroupStickinessConfig::builder()
                            .enabled(enabled)
                            .set_duration_seconds(enabled.then_some(3600))
                            .build(),
                    )
                    .build(),
            )
            .build()
    };
    let elb = &env.local.ctx().clients.elb;
    elb.modify_listener().listener_arn(&env.sample.listener_arn).default_actions(sticky(true)).send().await.unwrap();
    let (code, out, err) = verify(&env, &["demo/web"]).await;
    assert_eq!(code, Some(0), "a warning, not a failure:\n{out}\n{err}");
    let warning = squash(&out);
    for part in [
        "warn  listener/rule",
        "target-group stickiness is on (3600 s)",
        "kanaria turns stickiness off in the same change that takes a target group to 0%",
        "\"TargetGroupStickinessConfig\":{\"Enabled\":false}",
    ] {
        assert!(warning.contains(&squash(part)), "report lacks {part:?}:\n{out}");
    }
    elb.modify_listener().listener_arn(&env.sample.listener_arn).default_actions(sticky(false)).send().await.unwrap();
    let (code, out, _) = verify(&env, &["demo/web"]).await;
    assert_eq!(code, Some(0));
    assert!(!out.contains("stickiness"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_bigger_than_the_task_is_reported() {
    let env = ready().await;
    let td = register(&env, |c| c.memory(1024), true).await;
    replace_task_set(&env, &td, &env.sample.subnets).await;
    let report = verify(&env, &["demo/web"]).await;
    assert_fails(
        &report,
        "task size",
        "container web: memory (hard limit) 1024 MiB is more than the task's 512 MiB",
        "lower the container's memory to at most 512, or raise the task memory to at least 1024",
    );
    assert_fails(&report, "task size", "container web", "\"cpu\": \"256\", \"memory\": \"1024\"");
    assert_only_failing(&report.1, &["task size"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_definition_without_memory_for_fargate_is_reported() {
    let env = ready().await;
    // Registered for EC2 (no task-level size, only a soft reservation), but run on Fargate.
    let td = register(&env, |c| c.set_memory(None).memory_reservation(256), false).await;
    replace_task_set(&env, &td, &env.sample.subnets).await;
    let report = verify(&env, &["demo/web"]).await;
    assert_fails(
        &report,
        "task size",
        "the task definition sets neither task-level cpu nor memory; Fargate sizes a task by its task-level cpu and memory",
        "\"cpu\": \"256\", \"memory\": \"512\"",
    );
    assert_fails(&report, "task size", "requiresCompatibilities lacks FARGATE", "\"requiresCompatibilities\": [\"FARGATE\"]");
    assert_only_failing(&report.1, &["task size"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_role_that_cannot_pull_from_ecr_is_reported_and_the_fix_works() {
    let env = ready().await;
    let iam = aws_sdk_iam::Client::new(&env.local.config);
    // The classic mix-up: the execution policy ended up on the task role.
    iam.detach_role_policy().role_name("web-execution").policy_arn(kanaria::verify::EXECUTION_ROLE_POLICY_ARN).send().await.unwrap();
    iam.put_role_policy()
        .role_name("web-execution")
        .policy_name("logs")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    iam.attach_role_policy().role_name("web-task").policy_arn(kanaria::verify::EXECUTION_ROLE_POLICY_ARN).send().await.unwrap();
    let report = verify(&env, &["demo/web"]).await;
    assert_fails(
        &report,
        "execution role",
        "web-execution: cannot log in to ECR (for demo/web), pull demo/web from ECR",
        "aws iam attach-role-policy --role-name web-execution --policy-arn arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
    );
    assert_fails(&report, "execution role", "CannotPullContainerError", "the task role web-task allows ecr:GetAuthorizationToken");
    assert_fails(&report, "execution role", "", "ECS pulls images as the execution role");
    assert_only_failing(&report.1, &["execution role"]);

    // Doing what the fix says makes the service ready.
    iam.attach_role_policy().role_name("web-execution").policy_arn(kanaria::verify::EXECUTION_ROLE_POLICY_ARN).send().await.unwrap();
    let (code, out, _) = verify(&env, &["demo/web"]).await;
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_execution_role_cannot_read_is_reported() {
    let env = ready().await;
    let td = register(&env, |c| c.secrets(Secret::builder().name("DATABASE_URL").value_from(SECRET).build().unwrap()), true).await;
    replace_task_set(&env, &td, &env.sample.subnets).await;
    // The permission is there, on the wrong role.
    let iam = aws_sdk_iam::Client::new(&env.local.config);
    iam.put_role_policy()
        .role_name("web-task")
        .policy_name("db-secret")
        .policy_document(format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"{SECRET}"}}]}}"#
        ))
        .send()
        .await
        .unwrap();
    let report = verify(&env, &["demo/web"]).await;
    assert_fails(
        &report,
        "secrets",
        &format!("container web: the execution role web-execution cannot read secret {SECRET}"),
        &format!("aws iam put-role-policy --role-name web-execution --policy-name read-task-secrets --policy-document '{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":\"secretsmanager:GetSecretValue\",\"Resource\":\"{SECRET}\"}}]}}'"),
    );
    assert_fails(&report, "secrets", "ResourceInitializationError", "the task role web-task allows secretsmanager:GetSecretValue");
    assert_fails(&report, "secrets", "", "kms:Decrypt");
    // Endpoints are the tasks' only way out, and there is none for Secrets Manager.
    assert_fails(
        &report,
        "network path to ECR",
        "Secrets Manager (secrets): com.amazonaws.us-east-1.secretsmanager",
        "--service-name com.amazonaws.us-east-1.secretsmanager",
    );
    assert_only_failing(&report.1, &["secrets", "network path to ECR"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_subnet_without_nat_or_endpoints_is_reported_and_a_nat_route_fixes_it() {
    let env = ready().await;
    let ec2 = aws_sdk_ec2::Client::new(&env.local.config);
    // A private subnet with its own route table (only the local route), and no VPC endpoints.
    let subnet =
        ec2.create_subnet().vpc_id(&env.sample.vpc).cidr_block("172.31.128.0/20").availability_zone("us-east-1a").send().await.unwrap();
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
    let rtb = ec2.create_route_table().vpc_id(&env.sample.vpc).send().await.unwrap();
    let rtb = rtb.route_table().unwrap().route_table_id().unwrap().to_string();
    ec2.associate_route_table().route_table_id(&rtb).subnet_id(&subnet).send().await.unwrap();
    let endpoints = ec2.describe_vpc_endpoints().send().await.unwrap();
    let ids: Vec<String> = endpoints.vpc_endpoints().iter().filter_map(|e| e.vpc_endpoint_id().map(str::to_string)).collect();
    ec2.delete_vpc_endpoints().set_vpc_endpoint_ids(Some(ids)).send().await.unwrap();
    let td = register(&env, |c| c, true).await;
    replace_task_set(&env, &td, std::slice::from_ref(&subnet)).await;

    let report = verify(&env, &["demo/web"]).await;
    assert_fails(
        &report,
        "network path to ECR",
        &format!("{subnet}: no path to ECR: route table {rtb} has no 0.0.0.0/0 route to a NAT gateway"),
        &format!("aws ec2 create-route --route-table-id {rtb} --destination-cidr-block 0.0.0.0/0 --nat-gateway-id NAT_GATEWAY_ID"),
    );
    assert_fails(&report, "network path to ECR", "assignPublicIp is DISABLED", "--service-name com.amazonaws.us-east-1.ecr.dkr");
    assert_fails(&report, "network path to ECR", "no com.amazonaws.us-east-1.ecr.api interface endpoint", "--route-table-ids");
    assert_only_failing(&report.1, &["network path to ECR"]);

    // The first way out: a NAT gateway (in a public subnet) as the private subnet's default route.
    let nat = ec2.create_nat_gateway().subnet_id(&env.sample.subnets[0]).send().await.unwrap();
    let nat = nat.nat_gateway().unwrap().nat_gateway_id().unwrap().to_string();
    ec2.create_route().route_table_id(&rtb).destination_cidr_block("0.0.0.0/0").nat_gateway_id(&nat).send().await.unwrap();
    let (code, out, _) = verify(&env, &["demo/web"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("{subnet}: 0.0.0.0/0 → NAT gateway {nat} ({rtb})")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_without_a_log_configuration_is_reported() {
    // The sample service as the other tests use it: its container has no log configuration.
    let env = start(SampleOptions::default()).await;
    let report = verify(&env, &["demo/web"]).await;
    assert_fails(
        &report,
        "log configuration",
        "container web: has no logConfiguration: when it crashes there is nothing to read",
        "\"logDriver\": \"awslogs\"",
    );
    assert_fails(&report, "log configuration", "container web", "aws logs create-log-group --log-group-name /ecs/web");
    assert_only_failing(&report.1, &["log configuration"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_or_missing_policy_is_reported() {
    let env = ready().await;
    let policy = policy_file("invalid.yaml", &env.sample.policy_yaml.replace("weight: 10,", "weight: 0,"));
    let report = verify(&env, &["demo/web", "--policy", &policy]).await;
    assert_fails(&report, "policy", "strategy.canary.steps[0].weight: 0 is not a percentage from 1 to 100", "use a weight from 1 to 100");
    assert_only_failing(&report.1, &["policy"]);
    assert!(report.1.contains(&format!("(policy: policy file {policy})")), "{}", report.1);

    // No policy stored for the service at all.
    env.local.ctx().clients.ssm.delete_parameter().name("/kanaria/policies/demo/web").send().await.unwrap();
    let report = verify(&env, &["demo/web"]).await;
    assert_fails(&report, "policy", "no policy is stored for demo/web", "kanaria policy apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_cannot_be_read_exits_2_and_says_why() {
    let env = ready().await;
    let (code, out, err) = verify(&env, &["demo/nope"]).await;
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(
        err.contains("there is no ACTIVE service nope in cluster demo (region us-east-1); check CLUSTER/SERVICE and --region"),
        "{err}"
    );
    let (code, _, err) = verify(&env, &["nowhere/web"]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("cluster nowhere does not exist"), "{err}");
    let (code, _, err) = verify(&env, &["web"]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("CLUSTER/SERVICE"), "{err}");
    let (code, _, err) = verify(&env, &["demo/web", "--policy", "/nonexistent/web.yaml"]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read the policy file /nonexistent/web.yaml"), "{err}");
}

/// The primary task set has a second Application Load Balancer target group. "Only one
/// Application Load Balancer target group is allowed per task set" (ECS developer guide, External
/// deployment; moto does not enforce it): kanaria's copy of this task set would be refused at
/// CreateTaskSet, in the middle of a rollout, so verify fails it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_application_load_balancer_target_group_is_reported_before_a_rollout_trips_on_it() {
    let env = start(SampleOptions {
        awslogs_group: Some("/ecs/web".into()),
        extra_target_group_protocol: Some("HTTP".into()),
        ..SampleOptions::default()
    })
    .await;
    let report = verify(&env, &["demo/web"]).await;
    assert_fails(&report, "target groups", "2 Application Load Balancer target groups", "keep one Application Load Balancer target group");
    assert!(squash(&report.1).contains("(web-blue, web-extra)"), "{}", report.1);
    assert_only_failing(&report.1, &["target groups"]);
}

/// A Network Load Balancer target group and a Cloud Map registry on the primary task set are
/// carried into every new task set: ready, with a warning that their clients do not follow the
/// canary's weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_load_balancers_and_registries_are_carried_over_with_a_warning() {
    let env = start(SampleOptions {
        awslogs_group: Some("/ecs/web".into()),
        extra_target_group_protocol: Some("TCP".into()),
        service_registry: true,
        ..SampleOptions::default()
    })
    .await;
    let (code, out, err) = verify(&env, &["demo/web"]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    let warnings: Vec<String> = out.lines().filter(|l| l.starts_with("warn")).map(squash).collect();
    assert!(warnings.iter().any(|l| l.contains("Network Load Balancer target group web-extra")), "{out}");
    assert!(warnings.iter().any(|l| l.contains("registers its tasks in Cloud Map")), "{out}");
    assert_eq!(warnings.len(), 2, "{out}");
}

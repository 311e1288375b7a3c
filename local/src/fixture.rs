//! A sample ECS service behind an ALB, provisioned in emulated AWS the way a team would set one
//! up for kanaria: EXTERNAL deployment controller, one primary task set on the "blue" target
//! group, a production listener forwarding 100/0 to blue/green, and a policy in Parameter Store.

use anyhow::{anyhow, Context as _, Result};
use aws_config::SdkConfig;
use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Compatibility, ContainerDefinition, CpuArchitecture, DeploymentController, DeploymentControllerType,
    EphemeralStorage, IpcMode, LaunchType, LoadBalancer, MountPoint, NetworkConfiguration, NetworkMode, OsFamily, PidMode, PortMapping,
    RuntimePlatform, Scale, ScaleUnit, ServiceRegistry, Volume,
};
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, TargetGroupTuple, TargetTypeEnum};
use kanaria::aws::Context;
use kanaria::policy::Policy;
use sha2::{Digest, Sha256};

use crate::{ACCOUNT, REGION};

#[derive(Debug, Clone)]
pub struct SampleOptions {
    pub cluster: String,
    pub service: String,
    pub repository: String,
    pub desired_count: i32,
    /// (weight %, bake seconds) per canary step.
    pub steps: Vec<(u32, u64)>,
    pub drain_seconds: u64,
    pub stabilization_seconds: u64,
    /// Replaces the canary `strategy:` block when set (YAML, indented two spaces under it).
    pub strategy_yaml: Option<String>,
    /// More top-level policy fields (YAML), e.g. `alarms: [web-5xx]`.
    pub extra_policy_yaml: String,
    /// Give the container an awslogs log configuration to this group (created too). Off by
    /// default so the other tests' task definition stays as it always was.
    pub awslogs_group: Option<String>,
    /// Register the initial task set's tasks in a Cloud Map service (`{service}` in a private DNS
    /// namespace `{cluster}.local` of the VPC, A records), as service discovery does.
    pub service_registry: bool,
    /// The initial task set's externalId: [`INITIAL_EXTERNAL_ID`] hands it over to kanaria (it
    /// is deleted once a rollout replaced it); any other keeps it the team's.
    pub initial_external_id: String,
    /// Tags of the initial task set, besides [`MANAGED_TAG`] (which it always carries, as the
    /// deploy guide asks: kanaria scales and deletes only tagged task sets).
    pub task_set_tags: Vec<(String, String)>,
    /// The task definition also sets fields beyond the basics: `enableFaultInjection`,
    /// `ephemeralStorage` (30 GiB), a bind-mount volume, `pidMode`/`ipcMode` `task`, a runtime
    /// platform and an inference accelerator. moto keeps all of them but `enableFaultInjection`.
    pub task_definition_extras: bool,
    /// A third target group (`{service}-extra`, port 9000) with this protocol, registered as the
    /// initial task set's second load balancer: `TCP` is a Network Load Balancer's target group,
    /// `HTTP` an Application Load Balancer's.
    pub extra_target_group_protocol: Option<String>,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            cluster: "demo".into(),
            service: "web".into(),
            repository: "demo/web".into(),
            desired_count: 2,
            steps: vec![(10, 1), (50, 1)],
            drain_seconds: 1,
            stabilization_seconds: 60,
            strategy_yaml: None,
            extra_policy_yaml: String::new(),
            awslogs_group: None,
            service_registry: false,
            initial_external_id: INITIAL_EXTERNAL_ID.into(),
            task_set_tags: Vec::new(),
            task_definition_extras: false,
            extra_target_group_protocol: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SampleService {
    pub options: SampleOptions,
    pub listener_arn: String,
    /// A test listener (port 8443) forwarding to the same two target groups, for blue/green.
    pub test_listener_arn: String,
    /// [blue (stable at first), green].
    pub target_groups: [String; 2],
    pub policy: Policy,
    pub policy_yaml: String,
    pub initial_image: String,
    pub initial_task_set: String,
    /// The default VPC the service runs in, its subnets (two) and security group.
    pub vpc: String,
    pub subnets: Vec<String>,
    pub security_group: String,
    /// `{service}-execution` (AmazonECSTaskExecutionRolePolicy attached) and `{service}-task`
    /// (no permissions), both trusting ecs-tasks.amazonaws.com.
    pub execution_role_arn: String,
    pub task_role_arn: String,
    /// The Cloud Map service of [`SampleOptions::service_registry`].
    pub registry_arn: Option<String>,
    /// The target group of [`SampleOptions::extra_target_group_protocol`].
    pub extra_target_group: Option<String>,
}

/// Where the sample service's roles live (template.yaml's `PassableRoles` default: `kanaria/*`).
pub const ROLE_PATH: &str = "/kanaria/";

/// The tag that lets kanaria change a service, listener or rule (template.yaml, docs/deploy.md).
pub const MANAGED_TAG: (&str, &str) = ("kanaria:managed", "true");

/// The externalId of the sample's first task set: a team's task set handed over to kanaria
/// (`kanaria-` prefix), which kanaria may delete once a rollout has replaced it.
pub const INITIAL_EXTERNAL_ID: &str = "kanaria-initial";

/// The trust policy of an ECS task's roles.
pub const ECS_TASKS_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// The service's execution and task roles, as a team would create them (`kanaria verify` checks
/// them), under the path `/kanaria/`: the template's `PassableRoles` default lets kanaria pass
/// exactly those to ECS tasks. moto attaches AWS managed policies only when started with
/// MOTO_IAM_LOAD_MANAGED_POLICIES=true, which [`crate::LocalAws::start`] sets.
async fn create_roles(config: &SdkConfig, name: &str) -> Result<(String, String)> {
    let iam = aws_sdk_iam::Client::new(config);
    let mut arns = Vec::new();
    for role in [format!("{name}-execution"), format!("{name}-task")] {
        let out = iam
            .create_role()
            .role_name(&role)
            .path(ROLE_PATH)
            .assume_role_policy_document(ECS_TASKS_TRUST)
            .send()
            .await
            .with_context(|| format!("creating IAM role {role}"))?;
        arns.push(out.role().map(|r| r.arn().to_string()).unwrap_or_default());
    }
    iam.attach_role_policy()
        .role_name(format!("{name}-execution"))
        .policy_arn(kanaria::verify::EXECUTION_ROLE_POLICY_ARN)
        .send()
        .await
        .context("attaching AmazonECSTaskExecutionRolePolicy (is moto running with MOTO_IAM_LOAD_MANAGED_POLICIES=true?)")?;
    Ok((arns[0].clone(), arns[1].clone()))
}

/// moto's default VPC has no internet gateway route and the task set asks for no public IP,
/// so, as in a private subnet, the tasks reach ECR through VPC endpoints: ECR API and Docker
/// registry, S3 (image layers) on the main route table, CloudWatch Logs. Created once per VPC.
async fn create_endpoints(config: &SdkConfig, vpc: &str, subnets: &[String], security_group: &str) -> Result<()> {
    use aws_sdk_ec2::types::{Filter, VpcEndpointType};
    let ec2 = aws_sdk_ec2::Client::new(config);
    let existing = ec2.describe_vpc_endpoints().filters(Filter::builder().name("vpc-id").values(vpc).build()).send().await?;
    if !existing.vpc_endpoints().is_empty() {
        return Ok(());
    }
    for service in ["ecr.api", "ecr.dkr", "logs"] {
        ec2.create_vpc_endpoint()
            .vpc_id(vpc)
            .vpc_endpoint_type(VpcEndpointType::Interface)
            .service_name(format!("com.amazonaws.{REGION}.{service}"))
            .set_subnet_ids(Some(subnets.to_vec()))
            .security_group_ids(security_group)
            .private_dns_enabled(true)
            .send()
            .await
            .with_context(|| format!("creating the {service} VPC endpoint"))?;
    }
    let main = ec2
        .describe_route_tables()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .filters(Filter::builder().name("association.main").values("true").build())
        .send()
        .await?;
    let main = main.route_tables().first().and_then(|t| t.route_table_id()).ok_or_else(|| anyhow!("{vpc} has no main route table"))?;
    ec2.create_vpc_endpoint()
        .vpc_id(vpc)
        .vpc_endpoint_type(VpcEndpointType::Gateway)
        .service_name(format!("com.amazonaws.{REGION}.s3"))
        .route_table_ids(main)
        .send()
        .await
        .context("creating the S3 gateway endpoint")?;
    Ok(())
}

/// Two EC2 look-ups through moto's query API: the default VPC's subnets and security group.
/// (This spares the tests compiling the very large EC2 SDK crate for two read calls.)
async fn ec2_query(endpoint: &str, params: &str) -> Result<String> {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = hyper::Request::builder()
        .method("POST")
        .uri(format!("{endpoint}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/ec2/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(format!("Version=2016-11-15&{params}"))))?;
    let resp = client.request(req).await?;
    Ok(String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned())
}

/// One call of a JSON-protocol API (`X-Amz-Target: {target}`) through the front server, for the
/// services the fixture needs once and kanaria never calls (Cloud Map).
async fn json_call(endpoint: &str, signing_name: &str, target: &str, body: serde_json::Value) -> Result<serde_json::Value> {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = hyper::Request::builder()
        .method("POST")
        .uri(format!("{endpoint}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/{signing_name}/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))?;
    let resp = client.request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(anyhow!("{target}: HTTP {status}: {}", String::from_utf8_lossy(&bytes)));
    }
    Ok(serde_json::from_slice(&bytes).with_context(|| format!("{target}: unreadable answer"))?)
}

/// A Cloud Map service `name` in the private DNS namespace `namespace` of `vpc` (created too).
async fn cloud_map_service(endpoint: &str, namespace: &str, vpc: &str, name: &str) -> Result<String> {
    const API: &str = "Route53AutoNaming_v20170314";
    json_call(
        endpoint,
        "servicediscovery",
        &format!("{API}.CreatePrivateDnsNamespace"),
        serde_json::json!({"Name": namespace, "Vpc": vpc}),
    )
    .await?;
    let namespaces = json_call(endpoint, "servicediscovery", &format!("{API}.ListNamespaces"), serde_json::json!({})).await?;
    let namespace_id = namespaces["Namespaces"]
        .as_array()
        .and_then(|all| all.iter().find(|n| n["Name"] == namespace))
        .and_then(|n| n["Id"].as_str())
        .ok_or_else(|| anyhow!("Cloud Map namespace {namespace} was not created"))?
        .to_string();
    let service = json_call(
        endpoint,
        "servicediscovery",
        &format!("{API}.CreateService"),
        serde_json::json!({"Name": name, "NamespaceId": namespace_id, "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 10}]}}),
    )
    .await?;
    Ok(service["Service"]["Arn"].as_str().ok_or_else(|| anyhow!("Cloud Map CreateService answered no ARN: {service}"))?.to_string())
}

fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open).skip(1).filter_map(|s| s.split(&close).next().map(str::to_string)).collect()
}

pub async fn provision(config: &SdkConfig, endpoint: &str, ctx: &Context, options: SampleOptions) -> Result<SampleService> {
    let subnets_xml = ec2_query(endpoint, "Action=DescribeSubnets&Filter.1.Name=default-for-az&Filter.1.Value.1=true").await?;
    let subnets: Vec<String> = xml_values(&subnets_xml, "subnetId").into_iter().take(2).collect();
    let vpc = xml_values(&subnets_xml, "vpcId").into_iter().next().ok_or_else(|| anyhow!("moto has no default VPC"))?;
    let sg_xml = ec2_query(endpoint, "Action=DescribeSecurityGroups&Filter.1.Name=group-name&Filter.1.Value.1=default").await?;
    let security_group = xml_values(&sg_xml, "groupId").into_iter().next().ok_or_else(|| anyhow!("moto has no default security group"))?;

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(config);
    let name = &options.service;
    let mut target_groups = Vec::new();
    for color in ["blue", "green"] {
        let tg = elb
            .create_target_group()
            .name(format!("{name}-{color}"))
            .protocol(ProtocolEnum::Http)
            .port(8080)
            .vpc_id(&vpc)
            .target_type(TargetTypeEnum::Ip)
            .health_check_path("/healthz")
            .send()
            .await
            .context("creating a target group")?;
        target_groups.push(tg.target_groups()[0].target_group_arn().unwrap_or_default().to_string());
    }
    let mut extra_target_group = None;
    if let Some(protocol) = &options.extra_target_group_protocol {
        let tg = elb
            .create_target_group()
            .name(format!("{name}-extra"))
            .protocol(ProtocolEnum::from(protocol.as_str()))
            .port(9000)
            .vpc_id(&vpc)
            .target_type(TargetTypeEnum::Ip)
            .send()
            .await
            .context("creating the extra target group")?;
        extra_target_group = Some(tg.target_groups()[0].target_group_arn().unwrap_or_default().to_string());
    }
    let lb = elb
        .create_load_balancer()
        .name(format!("{name}-alb"))
        .set_subnets(Some(subnets.clone()))
        .security_groups(&security_group)
        .send()
        .await
        .context("creating the load balancer")?;
    let lb_arn = lb.load_balancers()[0].load_balancer_arn().unwrap_or_default().to_string();
    let forward = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(TargetGroupTuple::builder().target_group_arn(&target_groups[0]).weight(100).build())
                .target_groups(TargetGroupTuple::builder().target_group_arn(&target_groups[1]).weight(0).build())
                .build(),
        )
        .build();
    let mut listeners = Vec::new();
    for port in [80, 8443] {
        let listener = elb
            .create_listener()
            .load_balancer_arn(&lb_arn)
            .protocol(ProtocolEnum::Http)
            .port(port)
            .default_actions(forward.clone())
            .tags(aws_sdk_elasticloadbalancingv2::types::Tag::builder().key(MANAGED_TAG.0).value(MANAGED_TAG.1).build())
            .send()
            .await
            .context("creating a listener")?;
        listeners.push(listener.listeners()[0].listener_arn().unwrap_or_default().to_string());
    }
    let (listener_arn, test_listener_arn) = (listeners[0].clone(), listeners[1].clone());

    let (execution_role_arn, task_role_arn) = create_roles(config, name).await?;
    create_endpoints(config, &vpc, &subnets, &security_group).await?;

    let ecs = aws_sdk_ecs::Client::new(config);
    ecs.create_cluster().cluster_name(&options.cluster).send().await.context("creating the cluster")?;
    let initial_image = format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{}:v1", options.repository);
    let mut container = ContainerDefinition::builder()
        .name(name)
        .image(&initial_image)
        .essential(true)
        .memory(512)
        .port_mappings(PortMapping::builder().container_port(8080).build());
    if let Some(group) = &options.awslogs_group {
        aws_sdk_cloudwatchlogs::Client::new(config)
            .create_log_group()
            .log_group_name(group)
            .send()
            .await
            .context("creating the log group")?;
        container = container.log_configuration(awslogs(group)?);
    }
    let mut register = ecs
        .register_task_definition()
        .family(name)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .execution_role_arn(&execution_role_arn)
        .task_role_arn(&task_role_arn);
    if options.task_definition_extras {
        container = container.mount_points(MountPoint::builder().source_volume("scratch").container_path("/scratch").build());
        #[allow(deprecated)] // Elastic Inference is retired; moto still keeps the field, which is all the tests need.
        let accelerator = aws_sdk_ecs::types::InferenceAccelerator::builder().device_name("eia").device_type("eia2.medium").build()?;
        #[allow(deprecated)]
        let with_accelerator = register.inference_accelerators(accelerator);
        register = with_accelerator
            .enable_fault_injection(true)
            .ephemeral_storage(EphemeralStorage::builder().size_in_gib(30).build())
            .volumes(Volume::builder().name("scratch").build())
            .pid_mode(PidMode::Task)
            .ipc_mode(IpcMode::Task)
            .runtime_platform(
                RuntimePlatform::builder().operating_system_family(OsFamily::Linux).cpu_architecture(CpuArchitecture::X8664).build(),
            );
    }
    let td = register.container_definitions(container.build()).send().await.context("registering the task definition")?;
    let td_arn = td.task_definition().and_then(|t| t.task_definition_arn()).unwrap_or_default().to_string();
    ecs.create_service()
        .cluster(&options.cluster)
        .service_name(name)
        .desired_count(options.desired_count)
        .deployment_controller(DeploymentController::builder().r#type(DeploymentControllerType::External).build()?)
        .tags(aws_sdk_ecs::types::Tag::builder().key(MANAGED_TAG.0).value(MANAGED_TAG.1).build())
        .send()
        .await
        .context("creating the service")?;
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(AwsVpcConfiguration::builder().set_subnets(Some(subnets.clone())).security_groups(&security_group).build()?)
        .build();
    let initial = ecs
        .create_task_set()
        .cluster(&options.cluster)
        .service(name)
        .task_definition(&td_arn)
        // By default handed over to kanaria (docs/deploy.md): deleted once a rollout replaced it.
        .external_id(&options.initial_external_id)
        .launch_type(LaunchType::Fargate)
        .network_configuration(network)
        .scale(Scale::builder().unit(ScaleUnit::Percent).value(100.0).build());
    let mut load_balancers =
        vec![LoadBalancer::builder().target_group_arn(&target_groups[0]).container_name(name).container_port(8080).build()];
    if let Some(tg) = &extra_target_group {
        load_balancers.push(LoadBalancer::builder().target_group_arn(tg).container_name(name).container_port(9000).build());
    }
    let mut initial = initial.set_load_balancers(Some(load_balancers));
    let registry_arn = match options.service_registry {
        true => Some(cloud_map_service(endpoint, &format!("{}.local", options.cluster), &vpc, name).await?),
        false => None,
    };
    if let Some(arn) = &registry_arn {
        initial = initial.service_registries(ServiceRegistry::builder().registry_arn(arn).build());
    }
    initial = initial.tags(aws_sdk_ecs::types::Tag::builder().key(MANAGED_TAG.0).value(MANAGED_TAG.1).build());
    for (key, value) in &options.task_set_tags {
        initial = initial.tags(aws_sdk_ecs::types::Tag::builder().key(key).value(value).build());
    }
    let ts = initial.send().await.context("creating the initial task set")?;
    let ts_arn = ts.task_set().and_then(|t| t.task_set_arn()).unwrap_or_default().to_string();
    ecs.update_service_primary_task_set()
        .cluster(&options.cluster)
        .service(name)
        .primary_task_set(&ts_arn)
        .send()
        .await
        .context("making the initial task set primary")?;

    let strategy = match &options.strategy_yaml {
        Some(s) => s.replace("TEST_LISTENER", &test_listener_arn),
        None => format!(
            "  canary:\n    steps:\n{}",
            options.steps.iter().map(|(w, b)| format!("      - {{ weight: {w}, bake: {b}s }}\n")).collect::<String>()
        ),
    };
    let policy_yaml = format!(
        "service: {{ cluster: {cluster}, name: {name} }}\ncontainer: {name}\ntrigger: {{ repository: {repo}, tags: [\"v*\"] }}\ntraffic:\n  listenerArn: {listener_arn}\n  targetGroups:\n    - {blue}\n    - {green}\nstrategy:\n{strategy}stabilizationTimeout: {stab}s\ndrain: {drain}s\n{extra}",
        cluster = options.cluster,
        repo = options.repository,
        blue = target_groups[0],
        green = target_groups[1],
        stab = options.stabilization_seconds,
        drain = options.drain_seconds,
        extra = options.extra_policy_yaml,
    );
    let policy = kanaria::policy::parse("sample policy", &policy_yaml)?;
    kanaria::aws::policies::put(&ctx.clients.ssm, &ctx.settings.policy_prefix, &policy).await?;
    Ok(SampleService {
        options,
        listener_arn,
        test_listener_arn,
        target_groups: [target_groups[0].clone(), target_groups[1].clone()],
        policy,
        policy_yaml,
        initial_image,
        initial_task_set: ts.task_set().and_then(|t| t.id()).unwrap_or_default().to_string(),
        vpc,
        subnets,
        security_group,
        execution_role_arn,
        task_role_arn,
        registry_arn,
        extra_target_group,
    })
}

/// An awslogs log configuration to `group` (stream prefix `ecs`).
pub fn awslogs(group: &str) -> Result<aws_sdk_ecs::types::LogConfiguration> {
    Ok(aws_sdk_ecs::types::LogConfiguration::builder()
        .log_driver(aws_sdk_ecs::types::LogDriver::Awslogs)
        .options("awslogs-group", group)
        .options("awslogs-region", REGION)
        .options("awslogs-stream-prefix", "ecs")
        .build()?)
}

/// A fresh, valid-looking digest (so every demo run pushes a new image).
pub fn new_digest(seed: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let hash = Sha256::digest(format!("{seed}-{nanos}-{}", std::process::id()));
    format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The `ECR Image Action` event ECR sends for a push, in EventBridge's format.
pub fn ecr_push_event(repository: &str, tag: &str, digest: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": format!("{}", new_digest(tag).trim_start_matches("sha256:").get(..32).unwrap_or("0")),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "region": REGION,
        "resources": [],
        "detail": {
            "result": "SUCCESS",
            "repository-name": repository,
            "image-digest": digest,
            "action-type": "PUSH",
            "image-tag": tag
        }
    })
}

/// CloudTrail's record of the same push (`AWS API Call via CloudTrail`, ECR `PutImage`), as
/// EventBridge delivers it when the account has a trail: it says who pushed (`pusher_arn`).
pub fn ecr_put_image_cloudtrail_event(repository: &str, tag: &str, digest: &str, pusher_arn: &str) -> serde_json::Value {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    serde_json::json!({
        "version": "0",
        "id": format!("ct-{}", digest.trim_start_matches("sha256:").get(..24).unwrap_or("0")),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": now,
        "region": REGION,
        "resources": [],
        "detail": {
            "eventVersion": "1.10",
            "userIdentity": {"type": if pusher_arn.contains(":assumed-role/") { "AssumedRole" } else { "IAMUser" }, "arn": pusher_arn, "accountId": ACCOUNT},
            "eventTime": now,
            "eventSource": "ecr.amazonaws.com",
            "eventName": "PutImage",
            "awsRegion": REGION,
            "requestParameters": {"repositoryName": repository, "imageTag": tag, "registryId": ACCOUNT},
            "responseElements": {"image": {"registryId": ACCOUNT, "repositoryName": repository, "imageId": {"imageDigest": digest, "imageTag": tag}}},
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management"
        }
    })
}

/// Publish an event the way AWS services do (to the default bus), so it reaches functions
/// through the template's rules.
pub async fn put_event(config: &SdkConfig, event: &serde_json::Value) -> Result<()> {
    let events = aws_sdk_eventbridge::Client::new(config);
    // The event's own time (EventBridge keeps it), so tests can deliver old events late.
    let time =
        event["time"].as_str().and_then(|t| humantime::parse_rfc3339_weak(t).ok()).map(aws_sdk_eventbridge::primitives::DateTime::from);
    let out = events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source(event["source"].as_str().unwrap_or_default())
                .detail_type(event["detail-type"].as_str().unwrap_or_default())
                .detail(event["detail"].to_string())
                .set_time(time)
                .build(),
        )
        .send()
        .await
        .context("PutEvents")?;
    if out.failed_entry_count() > 0 {
        return Err(anyhow!("EventBridge refused the event: {:?}", out.entries()));
    }
    Ok(())
}

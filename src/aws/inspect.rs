//! Adapter of `kanaria verify`: reads what [`crate::verify::check`] judges, with read-only calls
//! (ECS DescribeServices/DescribeTaskSets/DescribeTaskDefinition, ELBv2 DescribeListeners/
//! DescribeRules/DescribeTargetGroups, EC2 DescribeSubnets/DescribeRouteTables/
//! DescribeVpcEndpoints, IAM GetRole/ListAttachedRolePolicies/GetPolicy/GetPolicyVersion/
//! ListRolePolicies/GetRolePolicy, CloudWatch Logs DescribeLogGroups, CloudWatch DescribeAlarms,
//! SSM GetParameter), and
//! turns the answers into plain [`Facts`]. A read that fails becomes an [`Unreadable`] fact
//! naming the permission the caller needs, so the rest of the report still comes out; only the
//! service itself must be readable.

use aws_sdk_ecs::types::{CapacityProviderStrategyItem, LoadBalancer, NetworkConfiguration, ServiceRegistry};

use super::AwsError;
use crate::verify::{
    self, AlarmFacts, ContainerFacts, EndpointFacts, Facts, Gathered, NetworkFacts, PolicyDocument, PolicyFacts, PolicyState, RoleFacts,
    RouteFacts, SubnetFacts, TargetGroupFacts, TaskDefinitionFacts, Unreadable, Workload,
};

/// The clients `kanaria verify` reads with. EC2 and IAM are only used here, so they are not
/// part of [`super::Clients`] (which every Lambda function builds).
#[derive(Clone, Debug)]
pub struct InspectClients {
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

impl InspectClients {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        InspectClients {
            ecs: aws_sdk_ecs::Client::new(config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
        }
    }
}

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// `--policy FILE`, already read.
    File { name: String, text: String },
    /// The SSM parameter under the policy prefix.
    Parameter { name: String },
}

/// Why verify could not even start: the service itself could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error(
        "{service}: there is no ACTIVE service {name} in cluster {cluster} (region {region}); check CLUSTER/SERVICE and --region{detail}"
    )]
    NoSuchService { service: String, cluster: String, name: String, region: String, detail: String },
    #[error("{service}: reading the service failed: {error}; kanaria verify needs {needs}")]
    Unreadable { service: String, error: AwsError, needs: String },
}

fn unreadable(e: &AwsError, what: impl Into<String>, needs: impl Into<String>) -> Unreadable {
    Unreadable { what: what.into(), error: format!("{} {}: {}", e.service, e.operation, e.message), needs: needs.into() }
}

/// IAM documents come URL-encoded (RFC 3986) from the API; some emulators send them plain.
pub fn decode_document(doc: &str) -> String {
    if doc.trim_start().starts_with('{') {
        return doc.to_string();
    }
    let bytes = doc.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Read everything about `CLUSTER/SERVICE` that the checks need.
pub async fn gather(clients: &InspectClients, key: &str, region: &str, source: PolicySource) -> Result<Facts, GatherError> {
    let (cluster, name) = key.split_once('/').unwrap_or((key, ""));
    let mut facts = Facts { service: key.to_string(), region: region.to_string(), ..Default::default() };

    facts.policy = match source {
        PolicySource::File { name, text } => {
            let source = format!("policy file {name}");
            PolicyFacts { state: verify::policy_state(&source, &text), source }
        }
        PolicySource::Parameter { name } => {
            let source = format!("SSM parameter {name}");
            let state = match clients.ssm.get_parameter().name(&name).with_decryption(true).send().await {
                Ok(out) => verify::policy_state(&source, out.parameter().and_then(|p| p.value()).unwrap_or_default()),
                Err(e) => {
                    let e = AwsError::new("SSM", "GetParameter", &name, e);
                    if e.is_code("ParameterNotFound") {
                        PolicyState::Missing
                    } else {
                        PolicyState::Unreadable(unreadable(&e, source.clone(), format!("ssm:GetParameter on parameter {name}")))
                    }
                }
            };
            PolicyFacts { source, state }
        }
    };

    // The service: the one read verify cannot do without.
    let out = clients.ecs.describe_services().cluster(cluster).services(name).send().await.map_err(|e| {
        let e = AwsError::new("ECS", "DescribeServices", key, e);
        if e.is_code("ClusterNotFoundException") {
            GatherError::NoSuchService {
                service: key.into(),
                cluster: cluster.into(),
                name: name.into(),
                region: region.into(),
                detail: format!(" (cluster {cluster} does not exist)"),
            }
        } else {
            GatherError::Unreadable { service: key.into(), error: e, needs: format!("ecs:DescribeServices on service {key}") }
        }
    })?;
    let Some(svc) = out.services().iter().find(|s| s.status() == Some("ACTIVE")) else {
        return Err(GatherError::NoSuchService {
            service: key.into(),
            cluster: cluster.into(),
            name: name.into(),
            region: region.into(),
            detail: String::new(),
        });
    };
    facts.account = svc.service_arn().and_then(|a| a.split(':').nth(4)).unwrap_or_default().to_string();
    facts.controller = svc.deployment_controller().map(|d| d.r#type().as_str().to_string()).unwrap_or_else(|| "ECS".into());

    // What runs: the primary task set's settings, or the service's own without task sets.
    let task_sets = match clients.ecs.describe_task_sets().cluster(cluster).service(name).send().await {
        Ok(out) => out.task_sets().to_vec(),
        Err(e) => {
            let e = AwsError::new("ECS", "DescribeTaskSets", key, e);
            // ECS refuses DescribeTaskSets for services that do not use task sets.
            if facts.controller == "ECS" || e.is_code("InvalidParameterException") {
                Vec::new()
            } else {
                return Err(GatherError::Unreadable {
                    service: key.into(),
                    error: e,
                    needs: format!("ecs:DescribeTaskSets on service {key}"),
                });
            }
        }
    };
    facts.task_sets =
        task_sets.iter().map(|t| (t.id().unwrap_or_default().to_string(), t.status().unwrap_or_default().to_string())).collect();
    facts.workload = match task_sets.iter().find(|t| t.status() == Some("PRIMARY")) {
        Some(t) => Some(workload(
            format!("primary task set {}", t.id().unwrap_or_default()),
            t.task_definition(),
            t.launch_type().map(|l| l.as_str()),
            t.capacity_provider_strategy(),
            t.network_configuration(),
            t.load_balancers(),
            t.service_registries(),
        )),
        None if facts.controller != "EXTERNAL" && task_sets.is_empty() => Some(workload(
            "the service".into(),
            svc.task_definition(),
            svc.launch_type().map(|l| l.as_str()),
            svc.capacity_provider_strategy(),
            svc.network_configuration(),
            svc.load_balancers(),
            svc.service_registries(),
        )),
        None => None,
    };

    if let Some(w) = facts.workload.clone() {
        if !w.task_definition_arn.is_empty() {
            facts.task_definition = Some(task_definition(clients, &w.task_definition_arn).await);
        }
        if !w.subnets.is_empty() {
            facts.network = Some(network(clients, &w.subnets).await);
        }
    }

    // The policy's listener/rule and target groups. ARNs the policy got wrong are reported by
    // its validation; only ARN-shaped ones are looked up.
    let policy = match &facts.policy.state {
        PolicyState::Read { policy: Some(p), .. } => Some(p.clone()),
        _ => None,
    };
    if let Some(p) = policy.as_ref().filter(|p| !p.alarms.is_empty()) {
        facts.alarms = Some(alarms(clients, &p.alarms).await);
    }
    if let Some(p) = policy {
        let mut routes = Vec::new();
        if let Some(r) = p.traffic.route() {
            routes.push(r);
        }
        if let Some(r) = p.test_route() {
            routes.push(r);
        }
        for route in routes {
            let (arn, fact) = match &route {
                crate::policy::TrafficRoute::Listener(a) if a.starts_with("arn:") => (a.clone(), listener(clients, a).await),
                crate::policy::TrafficRoute::Rule(a) if a.starts_with("arn:") => (a.clone(), rule(clients, a).await),
                _ => continue,
            };
            facts.routes.insert(arn, fact);
        }
        for arn in p.traffic.target_groups.iter().filter(|a| a.starts_with("arn:")) {
            let fact = target_group(clients, arn).await;
            facts.target_groups.insert(arn.clone(), fact);
        }
    }
    // The primary's other load balancers, which every new task set gets too: of which kind.
    let others: Vec<String> = facts.workload.iter().flat_map(|w| w.load_balancers.iter().map(|lb| lb.target_group_arn.clone())).collect();
    for arn in others.into_iter().filter(|a| a.starts_with("arn:")) {
        if !facts.target_groups.contains_key(&arn) {
            let fact = target_group(clients, &arn).await;
            facts.target_groups.insert(arn, fact);
        }
    }

    // Roles and log groups the task definition names.
    if let Some(Ok(td)) = facts.task_definition.clone() {
        for arn in [&td.execution_role_arn, &td.task_role_arn].into_iter().flatten() {
            if !facts.roles.contains_key(arn) {
                let fact = role(clients, arn).await;
                facts.roles.insert(arn.clone(), fact);
            }
        }
        for c in &td.containers {
            if c.log_driver.as_deref() != Some("awslogs") {
                continue;
            }
            let (Some(group), log_region) = (c.log_options.get("awslogs-group"), c.log_options.get("awslogs-region")) else {
                continue;
            };
            // Another region's group would need another client; the check then says nothing about it.
            if log_region.is_some_and(|r| r != region) || facts.log_groups.contains_key(group) {
                continue;
            }
            let fact = log_group_exists(clients, group).await;
            facts.log_groups.insert(group.clone(), fact);
        }
    }
    Ok(facts)
}

fn workload(
    from: String,
    task_definition: Option<&str>,
    launch_type: Option<&str>,
    capacity: &[CapacityProviderStrategyItem],
    network: Option<&NetworkConfiguration>,
    load_balancers: &[LoadBalancer],
    registries: &[ServiceRegistry],
) -> Workload {
    let vpc = network.and_then(|n| n.awsvpc_configuration());
    Workload {
        from,
        task_definition_arn: task_definition.unwrap_or_default().to_string(),
        launch_type: launch_type.map(str::to_string),
        capacity_providers: capacity.iter().map(|c| c.capacity_provider().to_string()).collect(),
        subnets: vpc.map(|v| v.subnets().to_vec()).unwrap_or_default(),
        security_groups: vpc.map(|v| v.security_groups().to_vec()).unwrap_or_default(),
        assign_public_ip: vpc.and_then(|v| v.assign_public_ip()).is_some_and(|a| a.as_str() == "ENABLED"),
        load_balancers: load_balancers
            .iter()
            .filter_map(|lb| {
                lb.target_group_arn().map(|tg| verify::LoadBalancerFacts {
                    target_group_arn: tg.to_string(),
                    container_name: lb.container_name().unwrap_or_default().to_string(),
                    container_port: lb.container_port(),
                })
            })
            .collect(),
        classic_load_balancers: load_balancers
            .iter()
            .filter(|lb| lb.target_group_arn().is_none())
            .filter_map(|lb| lb.load_balancer_name().map(str::to_string))
            .collect(),
        service_registries: registries.iter().filter_map(|r| r.registry_arn().map(str::to_string)).collect(),
    }
}

async fn task_definition(clients: &InspectClients, arn: &str) -> Gathered<TaskDefinitionFacts> {
    let out = clients
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .map_err(|e| unreadable(&AwsError::new("ECS", "DescribeTaskDefinition", arn, e), arn, "ecs:DescribeTaskDefinition"))?;
    let Some(td) = out.task_definition() else {
        return Err(Unreadable {
            what: arn.into(),
            error: "DescribeTaskDefinition returned no task definition".into(),
            needs: "ecs:DescribeTaskDefinition".into(),
        });
    };
    Ok(TaskDefinitionFacts {
        arn: td.task_definition_arn().unwrap_or(arn).to_string(),
        network_mode: td.network_mode().map(|m| m.as_str().to_string()).unwrap_or_else(|| "bridge".into()),
        requires_compatibilities: td.requires_compatibilities().iter().map(|c| c.as_str().to_string()).collect(),
        cpu: td.cpu().map(str::to_string),
        memory: td.memory().map(str::to_string),
        execution_role_arn: td.execution_role_arn().filter(|s| !s.is_empty()).map(str::to_string),
        task_role_arn: td.task_role_arn().filter(|s| !s.is_empty()).map(str::to_string),
        containers: td
            .container_definitions()
            .iter()
            .map(|c| {
                let log = c.log_configuration();
                let mut secrets: Vec<String> = c.secrets().iter().map(|s| s.value_from().to_string()).collect();
                if let Some(l) = log {
                    secrets.extend(l.secret_options().iter().map(|s| s.value_from().to_string()));
                }
                ContainerFacts {
                    name: c.name().unwrap_or_default().to_string(),
                    image: c.image().unwrap_or_default().to_string(),
                    // ECS treats a container without `essential` as essential.
                    essential: c.essential().unwrap_or(true),
                    cpu: c.cpu(),
                    memory: c.memory(),
                    memory_reservation: c.memory_reservation(),
                    log_driver: log.map(|l| l.log_driver().as_str().to_string()),
                    log_options: log
                        .and_then(|l| l.options())
                        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                    secrets,
                    repository_credentials: c.repository_credentials().map(|r| r.credentials_parameter().to_string()),
                    environment_files: c.environment_files().iter().map(|f| f.value().to_string()).collect(),
                    container_ports: c.port_mappings().iter().filter_map(|p| p.container_port()).collect(),
                    firelens_router: c.firelens_configuration().is_some(),
                }
            })
            .collect(),
    })
}

fn route_from_actions(label: String, actions: &[aws_sdk_elasticloadbalancingv2::types::Action]) -> RouteFacts {
    use aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum;
    let forward = actions.iter().find(|a| a.r#type() == Some(&ActionTypeEnum::Forward)).map(|a| {
        match a.forward_config().map(|c| c.target_groups()).filter(|g| !g.is_empty()) {
            // A target group listed without a weight has weight 1.
            Some(groups) => {
                groups.iter().filter_map(|g| g.target_group_arn().map(|t| (t.to_string(), g.weight().unwrap_or(1) as i64))).collect()
            }
            None => a.target_group_arn().map(|t| vec![(t.to_string(), 1)]).unwrap_or_default(),
        }
    });
    let sticky_seconds =
        actions.iter().find(|a| a.r#type() == Some(&ActionTypeEnum::Forward)).and_then(crate::aws::elb::stickiness_seconds).map(i64::from);
    RouteFacts {
        label,
        forward,
        action_types: actions.iter().filter_map(|a| a.r#type().map(|t| t.as_str().to_string())).collect(),
        sticky_seconds,
    }
}

async fn listener(clients: &InspectClients, arn: &str) -> Gathered<Option<RouteFacts>> {
    match clients.elb.describe_listeners().listener_arns(arn).send().await {
        Ok(out) => Ok(out.listeners().first().map(|l| {
            let label = format!(
                "listener :{} ({})",
                l.port().map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                l.protocol().map(|p| p.as_str()).unwrap_or("?")
            );
            route_from_actions(label, l.default_actions())
        })),
        Err(e) => {
            let e = AwsError::new("ELBv2", "DescribeListeners", arn, e);
            if e.is_code("ListenerNotFound") || e.is_code("LoadBalancerNotFound") {
                Ok(None)
            } else {
                Err(unreadable(&e, arn, "elasticloadbalancing:DescribeListeners"))
            }
        }
    }
}

async fn rule(clients: &InspectClients, arn: &str) -> Gathered<Option<RouteFacts>> {
    match clients.elb.describe_rules().rule_arns(arn).send().await {
        Ok(out) => Ok(out.rules().first().map(|r| route_from_actions(format!("rule {}", r.priority().unwrap_or("?")), r.actions()))),
        Err(e) => {
            let e = AwsError::new("ELBv2", "DescribeRules", arn, e);
            if e.is_code("RuleNotFound") || e.is_code("ListenerNotFound") {
                Ok(None)
            } else {
                Err(unreadable(&e, arn, "elasticloadbalancing:DescribeRules"))
            }
        }
    }
}

async fn target_group(clients: &InspectClients, arn: &str) -> Gathered<Option<TargetGroupFacts>> {
    match clients.elb.describe_target_groups().target_group_arns(arn).send().await {
        Ok(out) => Ok(out.target_groups().first().map(|t| TargetGroupFacts {
            name: t.target_group_name().unwrap_or_default().to_string(),
            // The API leaves TargetType out for instance target groups created long ago.
            target_type: t.target_type().map(|t| t.as_str().to_string()).unwrap_or_else(|| "instance".into()),
            vpc_id: t.vpc_id().map(str::to_string),
            protocol: t.protocol().map(|p| p.as_str().to_string()),
            port: t.port(),
            health_check_path: t.health_check_path().map(str::to_string),
        })),
        Err(e) => {
            let e = AwsError::new("ELBv2", "DescribeTargetGroups", arn, e);
            if e.is_code("TargetGroupNotFound") {
                Ok(None)
            } else {
                Err(unreadable(&e, arn, "elasticloadbalancing:DescribeTargetGroups"))
            }
        }
    }
}

async fn network(clients: &InspectClients, subnet_ids: &[String]) -> Gathered<NetworkFacts> {
    use aws_sdk_ec2::types::{Filter, RouteState};
    let mut facts = NetworkFacts::default();
    let mut vpcs: Vec<String> = Vec::new();
    for id in subnet_ids {
        // One call per subnet, so a missing one is reported by name.
        let subnet = match clients.ec2.describe_subnets().subnet_ids(id).send().await {
            Ok(out) => out.subnets().first().cloned(),
            Err(e) => {
                let e = AwsError::new("EC2", "DescribeSubnets", id, e);
                if e.is_code("InvalidSubnetID.NotFound") {
                    None
                } else {
                    return Err(unreadable(&e, id, "ec2:DescribeSubnets"));
                }
            }
        };
        let Some(vpc) = subnet.as_ref().and_then(|s| s.vpc_id()).map(str::to_string) else {
            facts.subnets.push(SubnetFacts { id: id.clone(), ..Default::default() });
            continue;
        };
        // A subnet without an explicit association uses its VPC's main route table.
        let describe = |filters: Vec<Filter>| clients.ec2.describe_route_tables().set_filters(Some(filters)).send();
        let explicit = describe(vec![Filter::builder().name("association.subnet-id").values(id).build()]).await.map_err(|e| {
            unreadable(&AwsError::new("EC2", "DescribeRouteTables", id, e), format!("route table of {id}"), "ec2:DescribeRouteTables")
        })?;
        let table = match explicit.route_tables().first() {
            Some(t) => Some(t.clone()),
            None => describe(vec![
                Filter::builder().name("vpc-id").values(&vpc).build(),
                Filter::builder().name("association.main").values("true").build(),
            ])
            .await
            .map_err(|e| {
                unreadable(
                    &AwsError::new("EC2", "DescribeRouteTables", &vpc, e),
                    format!("main route table of {vpc}"),
                    "ec2:DescribeRouteTables",
                )
            })?
            .route_tables()
            .first()
            .cloned(),
        };
        let default = table.as_ref().and_then(|t| t.routes().iter().find(|r| r.destination_cidr_block() == Some("0.0.0.0/0")));
        let target = default.and_then(|r| {
            r.nat_gateway_id()
                .or(r.gateway_id())
                .or(r.transit_gateway_id())
                .or(r.vpc_peering_connection_id())
                .or(r.network_interface_id())
                .or(r.instance_id())
                .or(r.core_network_arn())
                .map(str::to_string)
        });
        facts.subnets.push(SubnetFacts {
            id: id.clone(),
            vpc_id: Some(vpc.clone()),
            route_table_id: table.as_ref().and_then(|t| t.route_table_id()).map(str::to_string),
            default_route: target,
            default_route_blackhole: default.is_some_and(|r| r.state() == Some(&RouteState::Blackhole)),
        });
        if !vpcs.contains(&vpc) {
            vpcs.push(vpc);
        }
    }
    for vpc in vpcs {
        let mut pages =
            clients.ec2.describe_vpc_endpoints().filters(Filter::builder().name("vpc-id").values(&vpc).build()).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                unreadable(
                    &AwsError::new("EC2", "DescribeVpcEndpoints", &vpc, e),
                    format!("VPC endpoints of {vpc}"),
                    "ec2:DescribeVpcEndpoints",
                )
            })?;
            for e in page.vpc_endpoints() {
                facts.endpoints.push(EndpointFacts {
                    id: e.vpc_endpoint_id().unwrap_or_default().to_string(),
                    vpc_id: e.vpc_id().unwrap_or(&vpc).to_string(),
                    service_name: e.service_name().unwrap_or_default().to_string(),
                    kind: e.vpc_endpoint_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                    state: e.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                    private_dns: e.private_dns_enabled().unwrap_or(false),
                    route_table_ids: e.route_table_ids().to_vec(),
                });
            }
        }
    }
    Ok(facts)
}

async fn role(clients: &InspectClients, arn: &str) -> Gathered<Option<RoleFacts>> {
    let name = verify::role_name(arn).to_string();
    let got = match clients.iam.get_role().role_name(&name).send().await {
        Ok(out) => out,
        Err(e) => {
            let e = AwsError::new("IAM", "GetRole", arn, e);
            return if e.is_code("NoSuchEntity") { Ok(None) } else { Err(unreadable(&e, arn, format!("iam:GetRole on {arn}"))) };
        }
    };
    let Some(r) = got.role() else {
        return Ok(None);
    };
    let mut facts = RoleFacts {
        arn: r.arn().to_string(),
        name: name.clone(),
        trusted_services: r.assume_role_policy_document().map(|d| verify::trusted_services(&decode_document(d))).unwrap_or_default(),
        ..Default::default()
    };

    let mut attached = Vec::new();
    let mut pages = clients.iam.list_attached_role_policies().role_name(&name).into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => attached.extend(
                p.attached_policies()
                    .iter()
                    .map(|a| (a.policy_name().unwrap_or_default().to_string(), a.policy_arn().unwrap_or_default().to_string())),
            ),
            Err(e) => {
                let e = AwsError::new("IAM", "ListAttachedRolePolicies", arn, e);
                facts.unreadable.push(unreadable(
                    &e,
                    format!("managed policies of {name}"),
                    format!("iam:ListAttachedRolePolicies on {arn}"),
                ));
                break;
            }
        }
    }
    for (policy_name, policy_arn) in attached {
        let label =
            if policy_arn.contains(":iam::aws:policy/") { format!("{policy_name} (AWS managed)") } else { format!("policy {policy_name}") };
        match managed_policy_document(clients, &policy_arn).await {
            Ok(doc) => facts.policies.push(document(label, &doc, &mut facts.unreadable, &policy_arn)),
            Err(u) => facts.unreadable.push(u),
        }
    }

    let mut inline = Vec::new();
    let mut pages = clients.iam.list_role_policies().role_name(&name).into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => inline.extend(p.policy_names().iter().cloned()),
            Err(e) => {
                let e = AwsError::new("IAM", "ListRolePolicies", arn, e);
                facts.unreadable.push(unreadable(&e, format!("inline policies of {name}"), format!("iam:ListRolePolicies on {arn}")));
                break;
            }
        }
    }
    for policy_name in inline {
        match clients.iam.get_role_policy().role_name(&name).policy_name(&policy_name).send().await {
            Ok(out) => {
                let doc = decode_document(out.policy_document());
                facts.policies.push(document(format!("inline policy {policy_name}"), &doc, &mut facts.unreadable, &policy_name));
            }
            Err(e) => {
                let e = AwsError::new("IAM", "GetRolePolicy", &policy_name, e);
                facts.unreadable.push(unreadable(
                    &e,
                    format!("inline policy {policy_name} of {name}"),
                    format!("iam:GetRolePolicy on {arn}"),
                ));
            }
        }
    }
    Ok(Some(facts))
}

fn document(name: String, doc: &str, unreadable: &mut Vec<Unreadable>, what: &str) -> PolicyDocument {
    match verify::parse_policy_document(doc) {
        Ok(statements) => PolicyDocument { name, statements },
        Err(e) => {
            unreadable.push(Unreadable { what: what.to_string(), error: e, needs: "a valid policy document".into() });
            PolicyDocument { name, statements: Vec::new() }
        }
    }
}

async fn managed_policy_document(clients: &InspectClients, arn: &str) -> Result<String, Unreadable> {
    let policy = clients
        .iam
        .get_policy()
        .policy_arn(arn)
        .send()
        .await
        .map_err(|e| unreadable(&AwsError::new("IAM", "GetPolicy", arn, e), arn, format!("iam:GetPolicy on {arn}")))?;
    let version = policy.policy().and_then(|p| p.default_version_id()).unwrap_or("v1").to_string();
    let out = clients
        .iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(&version)
        .send()
        .await
        .map_err(|e| unreadable(&AwsError::new("IAM", "GetPolicyVersion", arn, e), arn, format!("iam:GetPolicyVersion on {arn}")))?;
    Ok(decode_document(out.policy_version().and_then(|v| v.document()).unwrap_or_default()))
}

/// The policy's alarms CloudWatch knows, metric and composite.
async fn alarms(clients: &InspectClients, names: &[String]) -> Gathered<Vec<AlarmFacts>> {
    let found = super::cloudwatch::describe_alarms(&clients.cloudwatch, names).await.map_err(|e| {
        unreadable(
            &e,
            format!("alarms {}", names.join(", ")),
            "cloudwatch:DescribeAlarms on \"*\" (composite alarms are returned only with that Resource)",
        )
    })?;
    Ok(found.into_iter().map(|a| AlarmFacts { name: a.name, composite: a.composite, state: a.state }).collect())
}

async fn log_group_exists(clients: &InspectClients, group: &str) -> Gathered<bool> {
    let mut pages = clients.logs.describe_log_groups().log_group_name_prefix(group).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            unreadable(
                &AwsError::new("CloudWatchLogs", "DescribeLogGroups", group, e),
                format!("log group {group}"),
                "logs:DescribeLogGroups",
            )
        })?;
        if page.log_groups().iter().any(|g| g.log_group_name() == Some(group)) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_url_decoded_when_encoded() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(decode_document(encoded), r#"{"Version":"2012-10-17","Statement":[]}"#);
        assert_eq!(decode_document(r#"{"a": "100%"}"#), r#"{"a": "100%"}"#, "plain JSON is left alone");
        assert_eq!(decode_document("%7Bbad%zz"), "{bad%zz", "a stray % survives");
        assert_eq!(decode_document("%7"), "%7");
    }
}

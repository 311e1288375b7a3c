//! Every service but ECS: Elastic Load Balancing, DynamoDB, Step Functions, SSM, SNS,
//! CloudWatch, CloudWatch Logs, Secrets Manager, EventBridge Scheduler, Application Auto
//! Scaling, Lambda, SQS and EventBridge. Resource ARN formats are the Service Authorization
//! Reference's (`resources` → `arn` in iam-definition.json).

use serde_json::Value;

use super::{pass_role, rest_segments, scalar, ApiCall};
use crate::evaluate::AuthzRequest;

pub(super) fn requests(call: &ApiCall) -> Result<Vec<AuthzRequest>, String> {
    let op = call.operation;
    let one = |resource: String| Ok(vec![call.request(op, &resource)]);
    match (call.iam_prefix(), op) {
        // Elastic Load Balancing v2: changes name their listener or rule; the reads have no
        // resource-level permissions.
        ("elasticloadbalancing", "ModifyListener") => one(call.required("ListenerArn")?),
        ("elasticloadbalancing", "ModifyRule") => one(call.required("RuleArn")?),
        (
            "elasticloadbalancing",
            "DescribeListeners"
            | "DescribeRules"
            | "DescribeTargetHealth"
            | "DescribeTargetGroups"
            | "DescribeTags"
            | "DescribeLoadBalancers",
        ) => one("*".into()),

        ("dynamodb", _) => dynamodb(call),

        // Step Functions.
        ("states", "StartExecution" | "StartSyncExecution" | "ListExecutions" | "DescribeStateMachine") => {
            one(call.required("stateMachineArn")?)
        }
        ("states", "DescribeExecution" | "StopExecution" | "GetExecutionHistory") => one(call.required("executionArn")?),
        ("states", "SendTaskSuccess" | "SendTaskFailure" | "SendTaskHeartbeat") => {
            one(call.task_token_state_machine.unwrap_or("*").to_string())
        }

        // SSM Parameter Store: `parameter` + the name, which starts with '/' for paths.
        ("ssm", "GetParametersByPath") => {
            let mut request = call.request(op, &parameter_arn(call, &call.required("Path")?));
            if let Some(recursive) = call.param("Recursive") {
                request = request.with("ssm:Recursive", &[&recursive]);
            }
            Ok(vec![request])
        }
        ("ssm", "GetParameter" | "PutParameter" | "DeleteParameter") => one(parameter_arn(call, &call.required("Name")?)),
        ("ssm", "GetParameters") => {
            let names = call.list("Names");
            if names.is_empty() {
                return Err(format!("ssm:{op} without Names: cannot tell which resource it acts on"));
            }
            Ok(names.iter().map(|n| call.request(op, &parameter_arn(call, n))).collect())
        }

        ("sns", "Publish") => {
            // A message to a phone number names no topic.
            let target = call.param("TopicArn").or_else(|| call.param("TargetArn")).filter(|t| !t.is_empty());
            match target {
                Some(arn) => one(arn),
                None if call.param("PhoneNumber").is_some() => one("*".into()),
                None => Err("sns:Publish without TopicArn, TargetArn or PhoneNumber: cannot tell which resource it acts on".into()),
            }
        }

        // CloudWatch: DescribeAlarms is authorized per alarm it names; without names against
        // `alarm:*` (its AccessDenied names that resource), or the prefix it lists. A request for
        // composite alarms needs the permission on "*": "You can't return information about
        // composite alarms if your cloudwatch:DescribeAlarms permission has a narrower scope"
        // (DescribeAlarms API reference), so it is authorized against "*" itself, which only a
        // statement with Resource "*" matches.
        ("cloudwatch", "DescribeAlarms") => {
            if call.list("AlarmTypes").iter().any(|t| t == "CompositeAlarm") {
                return one("*".into());
            }
            let names = call.list("AlarmNames");
            if !names.is_empty() {
                return Ok(names.iter().map(|n| call.request(op, &call.arn("cloudwatch", &format!("alarm:{n}")))).collect());
            }
            let prefix = call.param("AlarmNamePrefix").unwrap_or_default();
            one(call.arn("cloudwatch", &format!("alarm:{prefix}*")))
        }
        ("cloudwatch", "GetMetricData" | "GetMetricStatistics" | "ListMetrics" | "PutMetricData") => one("*".into()),

        // CloudWatch Logs.
        ("logs", "GetLogEvents") => {
            let group = log_group_name(call)?;
            let stream = call.required("logStreamName")?;
            one(call.arn("logs", &format!("log-group:{group}:log-stream:{stream}")))
        }
        ("logs", "DescribeLogStreams") => one(call.arn("logs", &format!("log-group:{}:*", log_group_name(call)?))),

        ("secretsmanager", "GetSecretValue" | "DescribeSecret") => {
            let id = call.required("SecretId")?;
            let arn = if id.starts_with("arn:") { id.clone() } else { call.arn("secretsmanager", &format!("secret:{id}-*")) };
            Ok(vec![call.request(op, &arn).with("secretsmanager:SecretId", &[&id])])
        }

        ("scheduler", _) => scheduler(call),

        // Application Auto Scaling.
        (
            "application-autoscaling",
            "DescribeScalableTargets" | "DescribeScheduledActions" | "DescribeScalingPolicies" | "DescribeScalingActivities",
        ) => one("*".into()),
        (
            "application-autoscaling",
            "RegisterScalableTarget" | "DeregisterScalableTarget" | "PutScheduledAction" | "DeleteScheduledAction",
        ) => {
            let mut request = call.request(op, &call.arn("application-autoscaling", "scalable-target/*"));
            for (param, key) in [
                ("ServiceNamespace", "application-autoscaling:service-namespace"),
                ("ScalableDimension", "application-autoscaling:scalable-dimension"),
            ] {
                if let Some(value) = call.param(param) {
                    request = request.with(key, &[&value]);
                }
            }
            let mut requests = vec![request];
            // Registering an ECS service's scalable target also needs ecs:DescribeServices and
            // ecs:UpdateService on the service, checked on the caller.
            // <https://docs.aws.amazon.com/autoscaling/application/userguide/auth-and-access-control.html>
            if op == "RegisterScalableTarget" && call.param("ServiceNamespace").as_deref() == Some("ecs") {
                let resource_id = call.required("ResourceId")?;
                let parts: Vec<&str> = resource_id.split('/').collect();
                if let ["service", cluster, service] = parts.as_slice() {
                    let cluster_arn = call.arn("ecs", &format!("cluster/{cluster}"));
                    let service_arn = call.arn("ecs", &format!("service/{cluster}/{service}"));
                    for action in ["ecs:DescribeServices", "ecs:UpdateService"] {
                        requests.push(
                            AuthzRequest::new(action, &service_arn)
                                .with("ecs:cluster", &[&cluster_arn])
                                .with("ecs:service", &[&service_arn]),
                        );
                    }
                }
            }
            Ok(requests)
        }

        ("lambda", "Invoke") => {
            let name = match &call.params {
                super::Params::Rest { path, .. } => rest_segments(path).get(2).cloned(),
                _ => None,
            };
            let name = name
                .or_else(|| call.param("FunctionName"))
                .ok_or_else(|| "lambda:Invoke without a function name: cannot tell which resource it acts on".to_string())?;
            let mut arn = function_arn(call, &name);
            if let Some(qualifier) = call.param("Qualifier").filter(|q| !q.is_empty()) {
                arn = format!("{arn}:{qualifier}");
            }
            Ok(vec![AuthzRequest::new("lambda:InvokeFunction", &arn)])
        }

        (
            "sqs",
            "SendMessage"
            | "SendMessageBatch"
            | "ReceiveMessage"
            | "DeleteMessage"
            | "DeleteMessageBatch"
            | "GetQueueAttributes"
            | "ChangeMessageVisibility"
            | "PurgeQueue",
        ) => {
            let url = call.required("QueueUrl")?;
            let segments: Vec<&str> = url.trim_end_matches('/').rsplit('/').take(2).collect();
            match segments.as_slice() {
                [name, account] => Ok(vec![call.request(op, &format!("arn:aws:sqs:{}:{account}:{name}", call.region))]),
                _ => Err(format!("sqs:{op}: QueueUrl {url} is not https://HOST/ACCOUNT/NAME")),
            }
        }
        ("sqs", "GetQueueUrl") => one(call.arn("sqs", &call.required("QueueName")?)),

        ("events", "PutEvents") => {
            let entries = call.json().and_then(|v| v.get("Entries")).and_then(Value::as_array).cloned().unwrap_or_default();
            let mut buses: Vec<String> =
                entries.iter().map(|e| e.get("EventBusName").and_then(Value::as_str).unwrap_or("default").to_string()).collect();
            buses.sort();
            buses.dedup();
            Ok(buses
                .iter()
                .map(|bus| {
                    let arn = if bus.starts_with("arn:") { bus.clone() } else { call.arn("events", &format!("event-bus/{bus}")) };
                    let on_bus: Vec<&Value> =
                        entries.iter().filter(|e| e.get("EventBusName").and_then(Value::as_str).unwrap_or("default") == bus).collect();
                    let values = |field: &str| -> Vec<String> {
                        on_bus.iter().filter_map(|e| e.get(field).and_then(Value::as_str).map(str::to_string)).collect()
                    };
                    let mut request = call.request(op, &arn);
                    request.context.insert("events:source".into(), values("Source"));
                    request.context.insert("events:detail-type".into(), values("DetailType"));
                    request
                })
                .collect())
        }

        _ => Err(call.unmapped()),
    }
}

/// `arn:aws:ssm:R:A:parameter/NAME` for a name, a path (`/a/b`) or an ARN.
fn parameter_arn(call: &ApiCall, name: &str) -> String {
    if name.starts_with("arn:") {
        name.to_string()
    } else if name.starts_with('/') {
        call.arn("ssm", &format!("parameter{name}"))
    } else {
        call.arn("ssm", &format!("parameter/{name}"))
    }
}

/// The log group of a Logs request: `logGroupName`, or `logGroupIdentifier` (a name or an ARN).
fn log_group_name(call: &ApiCall) -> Result<String, String> {
    if let Some(name) = call.param("logGroupName").filter(|n| !n.is_empty()) {
        return Ok(name);
    }
    let id =
        call.param("logGroupIdentifier").ok_or_else(|| format!("logs:{} without logGroupName or logGroupIdentifier", call.operation))?;
    Ok(match id.split_once(":log-group:") {
        Some((_, name)) => name.trim_end_matches(":*").to_string(),
        None => id,
    })
}

/// A Lambda function's ARN from its name, a partial ARN (`ACCOUNT:function:NAME`) or an ARN.
fn function_arn(call: &ApiCall, name: &str) -> String {
    if name.starts_with("arn:") {
        return name.to_string();
    }
    match name.split(':').collect::<Vec<_>>().as_slice() {
        [account, "function", rest @ ..] => format!("arn:aws:lambda:{}:{account}:function:{}", call.region, rest.join(":")),
        _ => call.arn("lambda", &format!("function:{name}")),
    }
}

/// The partition key values (`dynamodb:LeadingKeys`) of items (`Key` or `Item` maps), when the
/// caller said which attribute is the partition key.
fn leading_keys(call: &ApiCall, items: &[Value]) -> Vec<String> {
    let Some(attribute) = call.partition_key else { return Vec::new() };
    let mut keys: Vec<String> = items.iter().filter_map(|i| i[attribute].as_object()?.values().next().and_then(scalar)).collect();
    keys.dedup();
    keys
}

/// The partition key value a Query's key condition (`PK = :value ...`) names.
fn query_leading_key(call: &ApiCall) -> Vec<String> {
    let (Some(attribute), Some(body)) = (call.partition_key, call.json()) else { return Vec::new() };
    let expression = body["KeyConditionExpression"].as_str().unwrap_or_default();
    let Some(rest) = expression.split(" AND ").find_map(|c| c.trim().strip_prefix(attribute)?.trim().strip_prefix('=')) else {
        return Vec::new();
    };
    body["ExpressionAttributeValues"][rest.trim()].as_object().and_then(|v| v.values().next()).and_then(scalar).into_iter().collect()
}

fn with_leading_keys(request: AuthzRequest, keys: &[String]) -> AuthzRequest {
    if keys.is_empty() {
        return request;
    }
    request.with("dynamodb:LeadingKeys", &keys.iter().map(String::as_str).collect::<Vec<_>>())
}

fn dynamodb(call: &ApiCall) -> Result<Vec<AuthzRequest>, String> {
    let op = call.operation;
    let table_arn = |name: &str| if name.starts_with("arn:") { name.to_string() } else { call.arn("dynamodb", &format!("table/{name}")) };
    match op {
        "GetItem" | "UpdateItem" | "DeleteItem" | "PutItem" => {
            let member = if op == "PutItem" { "Item" } else { "Key" };
            let keys = call.json().map(|v| leading_keys(call, std::slice::from_ref(&v[member]))).unwrap_or_default();
            Ok(vec![with_leading_keys(call.request(op, &table_arn(&call.required("TableName")?)), &keys)])
        }
        "DescribeTable" => Ok(vec![call.request(op, &table_arn(&call.required("TableName")?))]),
        "Query" | "Scan" => {
            let table = table_arn(&call.required("TableName")?);
            let resource = match call.param("IndexName") {
                Some(index) => format!("{table}/index/{index}"),
                None => table,
            };
            let keys = if op == "Query" { query_leading_key(call) } else { Vec::new() };
            Ok(vec![with_leading_keys(call.request(op, &resource), &keys)])
        }
        "BatchGetItem" | "BatchWriteItem" => {
            let tables = call
                .json()
                .and_then(|v| v.get("RequestItems"))
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default();
            if tables.is_empty() {
                return Err(format!("dynamodb:{op} without RequestItems: cannot tell which tables it acts on"));
            }
            Ok(tables
                .iter()
                .map(|t| {
                    let keys = match op {
                        "BatchGetItem" => call
                            .json()
                            .and_then(|v| v["RequestItems"][t]["Keys"].as_array())
                            .map(|k| leading_keys(call, k))
                            .unwrap_or_default(),
                        _ => Vec::new(),
                    };
                    with_leading_keys(call.request(op, &table_arn(t)), &keys)
                })
                .collect())
        }
        // A transaction is authorized per item, as the single-item action on its table.
        // <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html>
        "TransactWriteItems" | "TransactGetItems" => {
            let items = call.json().and_then(|v| v.get("TransactItems")).and_then(Value::as_array).cloned().unwrap_or_default();
            let mut requests: Vec<AuthzRequest> = Vec::new();
            for item in &items {
                let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else { continue };
                let action = match kind.as_str() {
                    "Put" => "dynamodb:PutItem",
                    "Update" => "dynamodb:UpdateItem",
                    "Delete" => "dynamodb:DeleteItem",
                    "ConditionCheck" => "dynamodb:ConditionCheckItem",
                    "Get" => "dynamodb:GetItem",
                    other => {
                        return Err(format!(
                            "dynamodb:{op} item kind {other} has no authorization mapping; add one in local/iam/src/request/services.rs"
                        ))
                    }
                };
                let table = body
                    .get("TableName")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("dynamodb:{op}: a {kind} item without TableName"))?;
                let key = if kind == "Put" { &body["Item"] } else { &body["Key"] };
                let request = with_leading_keys(
                    AuthzRequest::new(action, &table_arn(table)).with("dynamodb:EnclosingOperation", &[op]),
                    &leading_keys(call, std::slice::from_ref(key)),
                );
                if !requests.contains(&request) {
                    requests.push(request);
                }
            }
            if requests.is_empty() {
                return Err(format!("dynamodb:{op} without TransactItems: cannot tell which tables it acts on"));
            }
            Ok(requests)
        }
        _ => Err(call.unmapped()),
    }
}

/// EventBridge Scheduler (REST-JSON): `/schedules/NAME`, its group from `?groupName=` or the
/// body's `GroupName` (`default` when neither).
fn scheduler(call: &ApiCall) -> Result<Vec<AuthzRequest>, String> {
    let op = call.operation;
    match op {
        "ListSchedules" | "ListScheduleGroups" => Ok(vec![call.request(op, "*")]),
        "GetSchedule" | "CreateSchedule" | "UpdateSchedule" | "DeleteSchedule" => {
            let name = match &call.params {
                super::Params::Rest { path, .. } => rest_segments(path).get(1).cloned(),
                _ => call.param("Name"),
            };
            let name =
                name.ok_or_else(|| format!("scheduler:{op} without a schedule name in its path: cannot tell which resource it acts on"))?;
            let group =
                call.param("groupName").or_else(|| call.param("GroupName")).filter(|g| !g.is_empty()).unwrap_or_else(|| "default".into());
            let mut requests = vec![call.request(op, &call.arn("scheduler", &format!("schedule/{group}/{name}")))];
            // The schedule's target role is passed to EventBridge Scheduler.
            // <https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html>
            let role = call.json().and_then(|b| b.get("Target")).and_then(|t| t.get("RoleArn")).and_then(Value::as_str);
            if let Some(role) = role.filter(|_| matches!(op, "CreateSchedule" | "UpdateSchedule")) {
                requests.push(pass_role(call, role, "scheduler.amazonaws.com"));
            }
            Ok(requests)
        }
        _ => Err(call.unmapped()),
    }
}

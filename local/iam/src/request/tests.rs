//! Request derivation for every operation kanaria's functions call, against the real reference
//! (skipped, with a note, when it is not installed).

use serde_json::json;

use super::*;
use crate::test_support::reference as real_reference;

const A: &str = "arn:aws:ecs:us-east-1:123456789012";

fn derive(service: &str, operation: &str, params: Params) -> Result<Vec<AuthzRequest>, String> {
    let reference = real_reference().expect("checked by the caller");
    authorization_requests(reference, &ApiCall::new(service, operation, params, "123456789012", "us-east-1"))
}

/// (action, resource) of each request of a JSON call.
fn pairs(service: &str, operation: &str, params: serde_json::Value) -> Vec<(String, String)> {
    let requests = derive(service, operation, Params::Json(params)).unwrap_or_else(|e| panic!("{e}"));
    requests.into_iter().map(|r| (r.action, r.resource)).collect()
}

fn query(pairs: &[(&str, &str)]) -> Params {
    Params::Query(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn rest(method: &str, path: &str, body: serde_json::Value) -> Params {
    Params::Rest { method: method.into(), path: path.into(), body }
}

fn p(action: &str, resource: &str) -> (String, String) {
    (action.to_string(), resource.to_string())
}

#[test]
fn ecs_reads_and_task_set_changes() {
    if real_reference().is_none() {
        return;
    }
    assert_eq!(
        pairs(
            "ecs",
            "DescribeServices",
            json!({"cluster": format!("{A}:cluster/prod"), "services": ["web", format!("{A}:service/prod/api")]})
        ),
        [p("ecs:DescribeServices", &format!("{A}:service/prod/web")), p("ecs:DescribeServices", &format!("{A}:service/prod/api"))]
    );
    assert_eq!(
        pairs("ecs", "DescribeTaskSets", json!({"cluster": "prod", "service": "web"})),
        [p("ecs:DescribeTaskSets", &format!("{A}:task-set/prod/web/*"))]
    );
    assert_eq!(
        pairs(
            "ecs",
            "DescribeTaskSets",
            json!({"cluster": "prod", "service": "web", "taskSets": [format!("{A}:task-set/prod/web/ecs-svc/12")]})
        ),
        [p("ecs:DescribeTaskSets", &format!("{A}:task-set/prod/web/ecs-svc/12"))]
    );
    assert_eq!(pairs("ecs", "DescribeTaskDefinition", json!({"taskDefinition": "web:3"})), [p("ecs:DescribeTaskDefinition", "*")]);
    // A task set's id has a slash of its own (`ecs-svc/99`); given as an id or an ARN, the
    // resource is the task set's ARN, by which its tags are found.
    for op in ["UpdateTaskSet", "DeleteTaskSet"] {
        for task_set in [format!("{A}:task-set/prod/web/ecs-svc/99"), "ecs-svc/99".to_string()] {
            assert_eq!(
                pairs("ecs", op, json!({"cluster": "prod", "service": format!("{A}:service/prod/web"), "taskSet": task_set})),
                [p(&format!("ecs:{op}"), &format!("{A}:task-set/prod/web/ecs-svc/99"))]
            );
        }
    }
    let swap = derive(
        "ecs",
        "UpdateServicePrimaryTaskSet",
        Params::Json(json!({"cluster": "prod", "service": "web", "primaryTaskSet": "ecs-svc/1"})),
    )
    .expect("mapped");
    assert_eq!(swap[0].resource, format!("{A}:service/prod/web"));
    assert_eq!(swap[0].context["ecs:cluster"], [format!("{A}:cluster/prod")]);
    assert_eq!(swap[0].context["ecs:service"], [format!("{A}:service/prod/web")]);
    assert_eq!(swap[0].context["aws:requestedregion"], ["us-east-1"]);
    let update = derive("ecs", "UpdateService", Params::Json(json!({"service": "web", "desiredCount": 2}))).expect("mapped");
    assert_eq!(update[0].resource, format!("{A}:service/default/web"), "no cluster is the default cluster");
    assert_eq!(
        pairs("ecs", "ListTasks", json!({"cluster": "prod", "serviceName": "web"})),
        [p("ecs:ListTasks", &format!("{A}:container-instance/prod/*"))]
    );
    assert_eq!(
        pairs("ecs", "DescribeTasks", json!({"cluster": "prod", "tasks": ["abc", format!("{A}:task/prod/def"), format!("{A}:task/ghi")]})),
        [
            p("ecs:DescribeTasks", &format!("{A}:task/prod/abc")),
            p("ecs:DescribeTasks", &format!("{A}:task/prod/def")),
            p("ecs:DescribeTasks", &format!("{A}:task/prod/ghi"))
        ]
    );
    let service = format!("{A}:service/prod/web");
    assert_eq!(pairs("ecs", "ListTagsForResource", json!({"resourceArn": service})), [p("ecs:ListTagsForResource", &service)]);
    let tag = derive("ecs", "TagResource", Params::Json(json!({"resourceArn": service, "tags": [{"key": "Team", "value": "a"}]})))
        .expect("mapped");
    assert_eq!(
        (tag[0].resource.as_str(), &tag[0].context["aws:requesttag/team"], &tag[0].context["aws:tagkeys"]),
        (service.as_str(), &vec!["a".to_string()], &vec!["Team".to_string()])
    );
    assert!(!tag[0].context.contains_key("ecs:createaction"));
    assert!(derive("ecs", "DescribeServices", Params::Json(json!({"cluster": "prod"}))).unwrap_err().contains("without services"));
}

#[test]
fn ecs_creates_pass_roles_and_tag_on_create() {
    if real_reference().is_none() {
        return;
    }
    let register = derive(
        "ecs",
        "RegisterTaskDefinition",
        Params::Json(
            json!({"family": "web", "taskRoleArn": "web-task", "executionRoleArn": "arn:aws:iam::123456789012:role/web-execution",
            "tags": [{"key": "kanaria:managed", "value": "true"}]}),
        ),
    )
    .expect("mapped");
    let summary: Vec<(String, String)> = register.iter().map(|r| (r.action.clone(), r.resource.clone())).collect();
    assert_eq!(
        summary,
        [
            p("ecs:RegisterTaskDefinition", &format!("{A}:task-definition/web:*")),
            p("ecs:TagResource", &format!("{A}:task-definition/web:*")),
            p("iam:PassRole", "arn:aws:iam::123456789012:role/web-task"),
            p("iam:PassRole", "arn:aws:iam::123456789012:role/web-execution"),
        ]
    );
    assert_eq!(register[0].context["aws:requesttag/kanaria:managed"], ["true"]);
    assert_eq!(register[1].context["ecs:createaction"], ["RegisterTaskDefinition"]);
    assert_eq!(register[1].context["aws:tagkeys"], ["kanaria:managed"]);
    assert_eq!(register[2].context["iam:passedtoservice"], ["ecs-tasks.amazonaws.com"]);
    // Without tags or roles: the registration alone.
    assert_eq!(pairs("ecs", "RegisterTaskDefinition", json!({"family": "web"})).len(), 1);

    let create = derive(
        "ecs",
        "CreateTaskSet",
        Params::Json(json!({"cluster": format!("{A}:cluster/prod"), "service": "web", "taskDefinition": "web:8", "tags": [{"key": "k", "value": "v"}]})),
    )
    .expect("mapped");
    assert_eq!(
        (create[0].action.as_str(), create[0].resource.as_str()),
        ("ecs:CreateTaskSet", format!("{A}:task-set/prod/web/*").as_str())
    );
    assert_eq!(create[0].context["ecs:task-definition"], [format!("{A}:task-definition/web:8")]);
    assert_eq!(create[0].context["ecs:service"], [format!("{A}:service/prod/web")]);
    assert_eq!(
        (create[1].action.as_str(), &create[1].context["ecs:createaction"]),
        ("ecs:TagResource", &vec!["CreateTaskSet".to_string()])
    );
    assert_eq!(pairs("ecs", "CreateTaskSet", json!({"cluster": "prod", "service": "web", "taskDefinition": "web:8"})).len(), 1);

    let service = pairs("ecs", "CreateService", json!({"cluster": "prod", "serviceName": "web", "tags": [{"key": "k", "value": "v"}]}));
    assert_eq!(service, [p("ecs:CreateService", &format!("{A}:service/prod/web")), p("ecs:TagResource", &format!("{A}:service/prod/web"))]);
    let run = pairs("ecs", "RunTask", json!({"cluster": "prod", "taskDefinition": "web", "tags": [{"key": "k", "value": "v"}]}));
    assert_eq!(run, [p("ecs:RunTask", &format!("{A}:task-definition/web:*")), p("ecs:TagResource", &format!("{A}:task/prod/*"))]);
}

#[test]
fn load_balancing_dynamodb_and_step_functions() {
    if real_reference().is_none() {
        return;
    }
    let elb = |op: &str, params: &[(&str, &str)]| {
        derive("elasticloadbalancing", op, query(params))
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|r| (r.action, r.resource))
            .collect::<Vec<_>>()
    };
    let listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2";
    let rule = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/1/2/3";
    assert_eq!(elb("ModifyListener", &[("ListenerArn", listener)]), [p("elasticloadbalancing:ModifyListener", listener)]);
    assert_eq!(elb("ModifyRule", &[("RuleArn", rule)]), [p("elasticloadbalancing:ModifyRule", rule)]);
    for op in ["DescribeListeners", "DescribeRules", "DescribeTargetHealth", "DescribeTargetGroups", "DescribeTags"] {
        assert_eq!(elb(op, &[("ListenerArns.member.1", listener)]), [p(&format!("elasticloadbalancing:{op}"), "*")]);
    }

    let table = "arn:aws:dynamodb:us-east-1:123456789012:table/rollouts";
    for op in ["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan"] {
        assert_eq!(pairs("dynamodb", op, json!({"TableName": "rollouts"})), [p(&format!("dynamodb:{op}"), table)]);
    }
    assert_eq!(
        pairs("dynamodb", "Query", json!({"TableName": table, "IndexName": "byTime"})),
        [p("dynamodb:Query", &format!("{table}/index/byTime"))]
    );
    let transaction = derive(
        "dynamodb",
        "TransactWriteItems",
        Params::Json(json!({"TransactItems": [
            {"Put": {"TableName": "rollouts"}}, {"Delete": {"TableName": "rollouts"}}, {"Put": {"TableName": "rollouts"}},
            {"ConditionCheck": {"TableName": "locks"}}, {"Update": {"TableName": "rollouts"}}]})),
    )
    .expect("mapped");
    let kinds: Vec<(String, String)> = transaction.iter().map(|r| (r.action.clone(), r.resource.clone())).collect();
    assert_eq!(
        kinds,
        [
            p("dynamodb:PutItem", table),
            p("dynamodb:DeleteItem", table),
            p("dynamodb:ConditionCheckItem", "arn:aws:dynamodb:us-east-1:123456789012:table/locks"),
            p("dynamodb:UpdateItem", table)
        ]
    );
    assert_eq!(transaction[0].context["dynamodb:enclosingoperation"], ["TransactWriteItems"]);
    let batch = pairs("dynamodb", "BatchGetItem", json!({"RequestItems": {"a": {}, "b": {}}}));
    assert_eq!(
        batch,
        [
            p("dynamodb:BatchGetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/a"),
            p("dynamodb:BatchGetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/b")
        ]
    );
    assert!(derive("dynamodb", "TransactWriteItems", Params::Json(json!({"TransactItems": [{"Frob": {"TableName": "t"}}]})))
        .unwrap_err()
        .contains("item kind Frob"));

    let machine = "arn:aws:states:us-east-1:123456789012:stateMachine:kanaria-rollout";
    let execution = "arn:aws:states:us-east-1:123456789012:execution:kanaria-rollout:x";
    assert_eq!(pairs("states", "StartExecution", json!({"stateMachineArn": machine})), [p("states:StartExecution", machine)]);
    assert_eq!(pairs("states", "ListExecutions", json!({"stateMachineArn": machine})), [p("states:ListExecutions", machine)]);
    assert_eq!(pairs("states", "DescribeExecution", json!({"executionArn": execution})), [p("states:DescribeExecution", execution)]);
    assert_eq!(pairs("states", "StopExecution", json!({"executionArn": execution})), [p("states:StopExecution", execution)]);
    for op in ["SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"] {
        assert_eq!(pairs("states", op, json!({"taskToken": "t"})), [p(&format!("states:{op}"), "*")]);
    }
    let reference = real_reference().expect("checked");
    let mut call = ApiCall::new("states", "SendTaskFailure", Params::Json(json!({"taskToken": "t"})), "123456789012", "us-east-1");
    call.task_token_state_machine = Some(machine);
    assert_eq!(authorization_requests(reference, &call).expect("mapped")[0].resource, machine);
}

#[test]
fn parameters_topics_alarms_logs_and_secrets() {
    if real_reference().is_none() {
        return;
    }
    let by_path =
        derive("ssm", "GetParametersByPath", Params::Json(json!({"Path": "/kanaria/policies", "Recursive": true}))).expect("mapped");
    assert_eq!(by_path[0].resource, "arn:aws:ssm:us-east-1:123456789012:parameter/kanaria/policies");
    assert_eq!(by_path[0].context["ssm:recursive"], ["true"]);
    assert_eq!(
        pairs("ssm", "GetParameter", json!({"Name": "plain"})),
        [p("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/plain")]
    );
    assert_eq!(
        pairs("ssm", "GetParameters", json!({"Names": ["/a/b", "c"]})),
        [
            p("ssm:GetParameters", "arn:aws:ssm:us-east-1:123456789012:parameter/a/b"),
            p("ssm:GetParameters", "arn:aws:ssm:us-east-1:123456789012:parameter/c")
        ]
    );

    let topic = "arn:aws:sns:us-east-1:123456789012:kanaria-AlertTopic";
    let publish = derive("sns", "Publish", query(&[("TopicArn", topic), ("Message", "hi")])).expect("mapped");
    assert_eq!((publish[0].action.as_str(), publish[0].resource.as_str()), ("sns:Publish", topic));

    let alarms = derive(
        "monitoring",
        "DescribeAlarms",
        query(&[("AlarmNames.member.2", "b"), ("AlarmNames.member.1", "a"), ("Version", "2010-08-01")]),
    )
    .expect("mapped");
    let alarms: Vec<(String, String)> = alarms.into_iter().map(|r| (r.action, r.resource)).collect();
    assert_eq!(
        alarms,
        [
            p("cloudwatch:DescribeAlarms", "arn:aws:cloudwatch:us-east-1:123456789012:alarm:a"),
            p("cloudwatch:DescribeAlarms", "arn:aws:cloudwatch:us-east-1:123456789012:alarm:b")
        ]
    );
    let with_composites = derive(
        "monitoring",
        "DescribeAlarms",
        query(&[("AlarmNames.member.1", "a"), ("AlarmTypes.member.1", "CompositeAlarm"), ("AlarmTypes.member.2", "MetricAlarm")]),
    )
    .expect("mapped");
    let with_composites: Vec<(String, String)> = with_composites.into_iter().map(|r| (r.action, r.resource)).collect();
    assert_eq!(with_composites, [p("cloudwatch:DescribeAlarms", "*")], "composite alarms need the permission on \"*\"");
    let all = derive("monitoring", "DescribeAlarms", query(&[])).expect("mapped");
    assert_eq!(all[0].resource, "arn:aws:cloudwatch:us-east-1:123456789012:alarm:*");
    assert_eq!(derive("monitoring", "GetMetricData", query(&[])).expect("mapped")[0].resource, "*");

    assert_eq!(
        pairs("logs", "GetLogEvents", json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/app/123"})),
        [p("logs:GetLogEvents", "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web:log-stream:ecs/app/123")]
    );
    assert_eq!(
        pairs("logs", "DescribeLogStreams", json!({"logGroupIdentifier": "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web:*"})),
        [p("logs:DescribeLogStreams", "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web:*")]
    );

    let secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kanaria/slack-AbCdEf";
    let by_arn = derive("secretsmanager", "GetSecretValue", Params::Json(json!({"SecretId": secret}))).expect("mapped");
    assert_eq!((by_arn[0].resource.as_str(), &by_arn[0].context["secretsmanager:secretid"]), (secret, &vec![secret.to_string()]));
    assert_eq!(
        pairs("secretsmanager", "GetSecretValue", json!({"SecretId": "kanaria/slack"})),
        [p("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:123456789012:secret:kanaria/slack-*")]
    );
}

#[test]
fn schedules_scaling_invocations_and_identity() {
    if real_reference().is_none() {
        return;
    }
    let schedule = |op: &str, method: &str, path: &str, body: serde_json::Value| {
        assert_eq!(rest_operation("scheduler", method, path), Some(op), "{method} {path}");
        derive("scheduler", op, rest(method, path, body)).unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(schedule("ListSchedules", "GET", "/schedules?NamePrefix=kanaria.", json!({}))[0].resource, "*");
    let get = schedule("GetSchedule", "GET", "/schedules/kanaria.prod.web?groupName=kanaria", json!({}));
    assert_eq!(get[0].resource, "arn:aws:scheduler:us-east-1:123456789012:schedule/kanaria/kanaria.prod.web");
    let delete = schedule("DeleteSchedule", "DELETE", "/schedules/kanaria%2Ex?clientToken=1", json!({}));
    assert_eq!(delete[0].resource, "arn:aws:scheduler:us-east-1:123456789012:schedule/default/kanaria.x");
    let role = "arn:aws:iam::123456789012:role/kanaria-SchedulerRole";
    for (op, method) in [("CreateSchedule", "POST"), ("UpdateSchedule", "PUT")] {
        let requests =
            schedule(op, method, "/schedules/kanaria.n", json!({"GroupName": "kanaria", "Target": {"Arn": "x", "RoleArn": role}}));
        assert_eq!(requests[0].resource, "arn:aws:scheduler:us-east-1:123456789012:schedule/kanaria/kanaria.n");
        assert_eq!((requests[1].action.as_str(), requests[1].resource.as_str()), ("iam:PassRole", role));
        assert_eq!(requests[1].context["iam:passedtoservice"], ["scheduler.amazonaws.com"]);
    }

    for op in ["DescribeScalableTargets", "DescribeScheduledActions"] {
        assert_eq!(
            pairs("application-autoscaling", op, json!({"ServiceNamespace": "ecs"})),
            [p(&format!("application-autoscaling:{op}"), "*")]
        );
    }
    let target = "arn:aws:application-autoscaling:us-east-1:123456789012:scalable-target/*";
    let register = derive(
        "application-autoscaling",
        "RegisterScalableTarget",
        Params::Json(json!({"ServiceNamespace": "ecs", "ResourceId": "service/prod/web", "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 2})),
    )
    .expect("mapped");
    let summary: Vec<(String, String)> = register.iter().map(|r| (r.action.clone(), r.resource.clone())).collect();
    assert_eq!(
        summary,
        [
            p("application-autoscaling:RegisterScalableTarget", target),
            p("ecs:DescribeServices", &format!("{A}:service/prod/web")),
            p("ecs:UpdateService", &format!("{A}:service/prod/web"))
        ]
    );
    assert_eq!(register[0].context["application-autoscaling:scalable-dimension"], ["ecs:service:DesiredCount"]);
    for op in ["PutScheduledAction", "DeleteScheduledAction"] {
        assert_eq!(
            pairs("application-autoscaling", op, json!({"ServiceNamespace": "ecs", "ResourceId": "service/prod/web"})),
            [p(&format!("application-autoscaling:{op}"), target)]
        );
    }

    let path = "/2015-03-31/functions/kanaria-hook-check/invocations";
    assert_eq!(rest_operation("lambda", "POST", path), Some("Invoke"));
    let invoke = derive("lambda", "Invoke", rest("POST", path, json!({}))).expect("mapped");
    assert_eq!(
        (invoke[0].action.as_str(), invoke[0].resource.as_str()),
        ("lambda:InvokeFunction", "arn:aws:lambda:us-east-1:123456789012:function:kanaria-hook-check")
    );
    let qualified = derive(
        "lambda",
        "Invoke",
        rest(
            "POST",
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/invocations?Qualifier=live",
            json!({}),
        ),
    )
    .expect("mapped");
    assert_eq!(qualified[0].resource, "arn:aws:lambda:us-east-1:123456789012:function:f:live");

    assert_eq!(derive("sts", "GetCallerIdentity", query(&[])), Ok(vec![]));
}

#[test]
fn gaps_in_coverage_are_loud() {
    if real_reference().is_none() {
        return;
    }
    assert_eq!(
        derive("ecs", "DeleteCluster", Params::Json(json!({}))),
        Err("no authorization mapping for ecs:DeleteCluster; add one in local/iam/src/request.rs".into())
    );
    assert_eq!(
        derive("monitoring", "PutMetricAlarm", query(&[])),
        Err("no authorization mapping for cloudwatch:PutMetricAlarm; add one in local/iam/src/request.rs".into())
    );
    assert_eq!(
        derive("iam", "GetRole", query(&[])).unwrap_err(),
        "no authorization mapping for iam:GetRole; add one in local/iam/src/request.rs"
    );
    assert!(derive("ecs", "UpdateTaskSet", Params::Json(json!({"service": "web"})))
        .unwrap_err()
        .contains("ecs:UpdateTaskSet without taskSet"));
    assert!(derive("ssm", "GetParametersByPath", Params::Json(json!({}))).unwrap_err().contains("ssm:GetParametersByPath without Path"));
    assert_eq!(rest_operation("scheduler", "PATCH", "/schedules/x"), None);
}

#[test]
fn actions_without_resource_types_are_authorized_on_star() {
    // A reference in which ecs:DescribeServices has no resource types: whatever ARN the mapping
    // builds, the request is on "*".
    let json = json!({"ecs": {"prefix": "ecs", "privileges": {"DescribeServices": {"privilege": "DescribeServices",
        "resource_types": {"": {"resource_type": "", "required": false, "condition_keys": []}}}}, "resources": {}}});
    let reference = Reference::from_json(json.to_string().as_bytes()).expect("valid");
    let call = ApiCall::new("ecs", "DescribeServices", Params::Json(json!({"services": ["web"]})), "123456789012", "us-east-1");
    assert_eq!(authorization_requests(&reference, &call).expect("mapped")[0].resource, "*");
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%2Fb%zz%4", false), "a/b%zz%4");
    assert_eq!(percent_decode("a+b", true), "a b");
    assert_eq!(percent_decode("a+b", false), "a+b");
    assert_eq!(rest_segments("/x/a%20b/?q=1"), ["x", "a b"]);
}

/// Item operations carry the partition key values they touch (`dynamodb:LeadingKeys`), so a
/// statement limited to some partitions is evaluated as DynamoDB does.
#[test]
fn dynamodb_item_operations_carry_their_leading_keys() {
    if real_reference().is_none() {
        return;
    }
    let leading = |op: &str, params: serde_json::Value| -> Vec<Vec<String>> {
        let mut call = ApiCall::new("dynamodb", op, Params::Json(params), "123456789012", "us-east-1");
        call.partition_key = Some("pk");
        authorization_requests(real_reference().unwrap(), &call)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|r| r.context.get("dynamodb:leadingkeys").cloned().unwrap_or_default())
            .collect()
    };
    let key = json!({"pk": {"S": "policies"}, "sk": {"S": "built"}});
    for op in ["GetItem", "DeleteItem", "UpdateItem"] {
        assert_eq!(leading(op, json!({"TableName": "t", "Key": key})), [["policies"]], "{op}");
    }
    assert_eq!(leading("PutItem", json!({"TableName": "t", "Item": key})), [["policies"]]);
    assert_eq!(
        leading(
            "Query",
            json!({"TableName": "t", "KeyConditionExpression": "pk = :pk AND begins_with(sk, :s)",
                   "ExpressionAttributeValues": {":pk": {"S": "repo#team/web"}, ":s": {"S": "x"}}})
        ),
        [["repo#team/web"]]
    );
    assert_eq!(
        leading("BatchGetItem", json!({"RequestItems": {"t": {"Keys": [key, {"pk": {"S": "service#a/b"}, "sk": {"S": "lock"}}]}}})),
        [["policies", "service#a/b"]]
    );
    let transaction = leading(
        "TransactWriteItems",
        json!({"TransactItems": [{"Put": {"TableName": "t", "Item": key}}, {"Delete": {"TableName": "t", "Key": {"pk": {"S": "repo#x"}}}}]}),
    );
    assert_eq!(transaction, [vec!["policies".to_string()], vec!["repo#x".to_string()]]);
    // Without the partition key's name, nothing is claimed.
    let call = ApiCall::new("dynamodb", "GetItem", Params::Json(json!({"TableName": "t", "Key": key})), "123456789012", "us-east-1");
    assert!(authorization_requests(real_reference().unwrap(), &call).unwrap()[0].context.get("dynamodb:leadingkeys").is_none());
}

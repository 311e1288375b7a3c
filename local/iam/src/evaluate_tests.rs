//! Tests of the evaluation: operator semantics on a small reference of its own, and the real
//! template's roles against the real reference (skipped, with a note, when it is not installed).

use serde_json::json;

use super::*;
use crate::request::{authorization_requests, ApiCall, Params};
use crate::template::statements_from_policy;
use crate::test_support::{reference as real_reference, statements_of};

/// A reference of one made-up service: `demo:Do` on `thing` resources with a few keys, and
/// `demo:List` without resource types.
fn demo() -> Reference {
    let json = json!({"demo": {"prefix": "demo", "privileges": {
        "Do": {"privilege": "Do", "resource_types": {
            "thing": {"resource_type": "thing", "required": true, "condition_keys": []},
            "": {"resource_type": "", "required": false, "condition_keys":
                ["demo:Color", "demo:Count", "demo:Labels", "demo:Parent", "demo:Flag", "aws:ResourceTag/${TagKey}"]}}},
        "List": {"privilege": "List", "resource_types": {"": {"resource_type": "", "required": false, "condition_keys": []}}}},
        "resources": {"thing": {"resource": "thing", "arn": "arn:${Partition}:demo:${Region}:${Account}:thing/${Name}", "condition_keys": ["demo:Size"]}}}});
    Reference::from_json(json.to_string().as_bytes()).expect("valid reference")
}

const THING: &str = "arn:aws:demo:us-east-1:123456789012:thing/a";

fn policy(statements: serde_json::Value) -> Vec<Statement> {
    statements_from_policy(&json!({ "Statement": statements }), "test").expect("valid policy")
}

/// Whether one Allow statement with this condition allows `demo:Do` on THING with the context.
fn allows(condition: serde_json::Value, context: &[(&str, &[&str])]) -> bool {
    let statements = policy(json!([{"Sid": "S", "Effect": "Allow", "Action": "demo:Do", "Resource": "*", "Condition": condition}]));
    let mut request = AuthzRequest::new("demo:Do", THING);
    for (k, v) in context {
        request = request.with(k, v);
    }
    evaluate(&demo(), &statements, &request).is_allowed()
}

fn why(decision: Decision) -> String {
    match decision {
        Decision::ImplicitDeny { why } => why,
        other => panic!("expected an implicit deny, got {other:?}"),
    }
}

#[test]
fn an_explicit_deny_wins_over_an_allow() {
    let statements = policy(json!([
        {"Sid": "All", "Effect": "Allow", "Action": "demo:*", "Resource": "*"},
        {"Sid": "NotA", "Effect": "Deny", "Action": "demo:Do", "Resource": THING},
    ]));
    assert_eq!(evaluate(&demo(), &statements, &AuthzRequest::new("demo:Do", THING)), Decision::ExplicitDeny { by: "test / NotA".into() });
    let other = "arn:aws:demo:us-east-1:123456789012:thing/b";
    assert_eq!(evaluate(&demo(), &statements, &AuthzRequest::new("demo:Do", other)), Decision::Allowed { by: "test / All".into() });
    // A Deny whose condition does not hold does not apply.
    let statements = policy(json!([
        {"Effect": "Allow", "Action": "demo:Do", "Resource": "*"},
        {"Effect": "Deny", "Action": "demo:Do", "Resource": "*", "Condition": {"StringEquals": {"demo:Color": "red"}}},
    ]));
    assert!(evaluate(&demo(), &statements, &AuthzRequest::new("demo:Do", THING).with("demo:color", &["blue"])).is_allowed());
    assert!(!evaluate(&demo(), &statements, &AuthzRequest::new("demo:Do", THING).with("demo:color", &["red"])).is_allowed());
}

#[test]
fn not_action_and_not_resource() {
    let statements = policy(json!([{"Effect": "Allow", "NotAction": "demo:List", "NotResource": "arn:aws:demo:*:*:thing/secret*"}]));
    let reference = demo();
    assert!(evaluate(&reference, &statements, &AuthzRequest::new("demo:Do", THING)).is_allowed());
    let secret = evaluate(&reference, &statements, &AuthzRequest::new("demo:Do", "arn:aws:demo:us-east-1:1:thing/secret-1"));
    assert!(why(secret).contains("its NotResource arn:aws:demo:*:*:thing/secret* excludes"));
    assert!(!evaluate(&reference, &statements, &AuthzRequest::new("demo:List", "*")).is_allowed());
}

#[test]
fn wildcards_in_actions_and_resources() {
    let reference = demo();
    let statements = policy(json!([{"Effect": "Allow", "Action": ["DEMO:d?"], "Resource": "arn:aws:demo:us-east-1:123456789012:thing/?"}]));
    assert!(evaluate(&reference, &statements, &AuthzRequest::new("demo:Do", THING)).is_allowed());
    assert!(!evaluate(&reference, &statements, &AuthzRequest::new("demo:Do", &format!("{THING}b"))).is_allowed());
    // Resource ARNs are case-sensitive.
    assert!(!evaluate(&reference, &statements, &AuthzRequest::new("demo:Do", &THING.replace("thing", "Thing"))).is_allowed());
    let statements = policy(json!([{"Effect": "Allow", "Action": "demo:*", "Resource": "arn:aws:demo:*"}]));
    // An action without resource types is authorized on "*", which only "Resource": "*" covers.
    let denied = why(evaluate(&reference, &statements, &AuthzRequest::new("demo:List", "*")));
    assert!(denied.contains("demo:List has no resource-level permissions, so only \"Resource\": \"*\" grants it"), "{denied}");
    let statements = policy(json!([{"Effect": "Allow", "Action": "demo:*", "Resource": "*"}]));
    assert!(evaluate(&reference, &statements, &AuthzRequest::new("demo:List", "*")).is_allowed());
}

#[test]
fn string_operators() {
    let red: &[(&str, &[&str])] = &[("demo:color", &["red"])];
    assert!(allows(json!({"StringEquals": {"demo:Color": ["blue", "red"]}}), red), "values are ORed");
    assert!(!allows(json!({"StringEquals": {"demo:Color": "Red"}}), red), "StringEquals is case-sensitive");
    assert!(allows(json!({"StringEqualsIgnoreCase": {"demo:Color": "RED"}}), red));
    assert!(!allows(json!({"StringNotEqualsIgnoreCase": {"demo:Color": "RED"}}), red));
    assert!(allows(json!({"StringNotEquals": {"demo:Color": "blue"}}), red));
    assert!(!allows(json!({"StringNotEquals": {"demo:Color": ["blue", "red"]}}), red));
    assert!(allows(json!({"StringLike": {"demo:Color": "r?d*"}}), red));
    assert!(!allows(json!({"StringNotLike": {"demo:Color": "r*"}}), red));
    assert!(allows(json!({"StringNotLike": {"demo:Color": "b*"}}), red));
    // Condition key names are case-insensitive.
    assert!(allows(json!({"StringEquals": {"DEMO:COLOR": "red"}}), red));
    // An absent key: positive operators do not hold, negated ones do (AWS's documented rule).
    assert!(!allows(json!({"StringEquals": {"demo:Color": "red"}}), &[]));
    assert!(allows(json!({"StringNotEquals": {"demo:Color": "red"}}), &[]));
    // Several keys and operators are ANDed.
    let both = json!({"StringEquals": {"demo:Color": "red", "demo:Flag": "true"}});
    assert!(!allows(both.clone(), red));
    assert!(allows(both, &[("demo:color", &["red"]), ("demo:flag", &["true"])]));
    assert!(!allows(json!({"StringEquals": {"demo:Color": "red"}, "Bool": {"demo:Flag": "true"}}), red));
}

#[test]
fn arn_bool_null_and_numeric_operators() {
    let parent: &[(&str, &[&str])] = &[("demo:parent", &["arn:aws:demo:us-east-1:123456789012:thing/p"])];
    assert!(allows(json!({"ArnLike": {"demo:Parent": "arn:aws:demo:*:123456789012:thing/*"}}), parent));
    assert!(allows(json!({"ArnEquals": {"demo:Parent": "arn:aws:demo:us-east-1:123456789012:thing/p"}}), parent));
    assert!(!allows(json!({"ArnLike": {"demo:Parent": "arn:aws:demo:*:111111111111:thing/*"}}), parent));
    assert!(allows(json!({"ArnNotLike": {"demo:Parent": "arn:aws:demo:*:111111111111:*"}}), parent));
    assert!(!allows(json!({"ArnNotEquals": {"demo:Parent": "arn:aws:demo:us-east-1:123456789012:thing/p"}}), parent));
    assert!(!allows(json!({"ArnLike": {"demo:Parent": "arn:aws:demo:*:*:thing/*"}}), &[("demo:parent", &["not-an-arn"])]));

    assert!(allows(json!({"Bool": {"demo:Flag": true}}), &[("demo:flag", &["true"])]));
    assert!(!allows(json!({"Bool": {"demo:Flag": "true"}}), &[("demo:flag", &["false"])]));
    assert!(!allows(json!({"Bool": {"demo:Flag": "true"}}), &[]));

    assert!(allows(json!({"Null": {"demo:Color": "true"}}), &[]));
    assert!(!allows(json!({"Null": {"demo:Color": "true"}}), &[("demo:color", &["red"])]));
    assert!(allows(json!({"Null": {"demo:Color": "false"}}), &[("demo:color", &["red"])]));
    assert!(!allows(json!({"Null": {"demo:Color": "false"}}), &[]));

    let five: &[(&str, &[&str])] = &[("demo:count", &["5"])];
    assert!(allows(json!({"NumericEquals": {"demo:Count": "5.0"}}), five));
    assert!(!allows(json!({"NumericNotEquals": {"demo:Count": 5}}), five));
    assert!(allows(json!({"NumericLessThan": {"demo:Count": 6}}), five));
    assert!(!allows(json!({"NumericLessThan": {"demo:Count": 5}}), five));
    assert!(allows(json!({"NumericLessThanEquals": {"demo:Count": 5}}), five));
    assert!(allows(json!({"NumericGreaterThan": {"demo:Count": 4}}), five));
    assert!(!allows(json!({"NumericGreaterThan": {"demo:Count": 5}}), five));
    assert!(allows(json!({"NumericGreaterThanEquals": {"demo:Count": 5}}), five));
    assert!(!allows(json!({"NumericEquals": {"demo:Count": 5}}), &[("demo:count", &["five"])]));
}

#[test]
fn if_exists_and_set_operators() {
    assert!(allows(json!({"StringEqualsIfExists": {"demo:Color": "red"}}), &[]));
    assert!(allows(json!({"StringEqualsIfExists": {"demo:Color": "red"}}), &[("demo:color", &["red"])]));
    assert!(!allows(json!({"StringEqualsIfExists": {"demo:Color": "red"}}), &[("demo:color", &["blue"])]));
    assert!(allows(json!({"NumericLessThanIfExists": {"demo:Count": 3}}), &[]));
    assert!(!allows(json!({"ArnLikeIfExists": {"demo:Parent": "arn:aws:demo:*:*:x"}}), &[("demo:parent", &["arn:aws:demo:r:1:y"])]));

    let labels: &[(&str, &[&str])] = &[("demo:labels", &["a", "b"])];
    assert!(allows(json!({"ForAnyValue:StringEquals": {"demo:Labels": ["b", "z"]}}), labels));
    assert!(!allows(json!({"ForAnyValue:StringEquals": {"demo:Labels": ["z"]}}), labels));
    assert!(!allows(json!({"ForAnyValue:StringEquals": {"demo:Labels": ["a"]}}), &[]), "ForAnyValue on no values");
    assert!(allows(json!({"ForAllValues:StringEquals": {"demo:Labels": ["a", "b", "c"]}}), labels));
    assert!(!allows(json!({"ForAllValues:StringEquals": {"demo:Labels": ["a"]}}), labels));
    assert!(allows(json!({"ForAllValues:StringEquals": {"demo:Labels": ["a"]}}), &[]), "ForAllValues on no values");
    assert!(allows(json!({"ForAllValues:StringLike": {"demo:Labels": ["?"]}}), labels));
    assert!(allows(json!({"ForAnyValue:StringNotEquals": {"demo:Labels": ["a"]}}), labels));
    assert!(!allows(json!({"ForAllValues:StringNotEquals": {"demo:Labels": ["a"]}}), labels));
    // A single-valued operator on several values: any matches; negated, none does.
    assert!(allows(json!({"StringEquals": {"demo:Labels": "b"}}), labels));
    assert!(!allows(json!({"StringNotEquals": {"demo:Labels": "b"}}), labels));
}

#[test]
fn unknown_operators_and_unsupported_keys_explain_themselves() {
    let reference = demo();
    let request = AuthzRequest::new("demo:Do", THING).with("demo:color", &["red"]);
    let statements = policy(
        json!([{"Sid": "Odd", "Effect": "Allow", "Action": "demo:Do", "Resource": "*", "Condition": {"StringSortOf": {"demo:Color": "red"}}}]),
    );
    let denied = why(evaluate(&reference, &statements, &request));
    assert!(
        denied.contains("test / Odd matches demo:Do on")
            && denied.contains("condition operator StringSortOf is not one local/iam evaluates"),
        "{denied}"
    );
    assert!(!allows(json!({"ForAnyValue:Null": {"demo:Color": "true"}}), &[]));

    // demo:Size is a key of the thing resource type, but not one demo:Do supports: a request
    // cannot carry it, whatever the caller put in the context.
    let statements = policy(
        json!([{"Sid": "Sized", "Effect": "Allow", "Action": "demo:Do", "Resource": "*", "Condition": {"StringEquals": {"demo:Size": "big"}}}]),
    );
    let denied = why(evaluate(&reference, &statements, &AuthzRequest::new("demo:Do", THING).with("demo:size", &["big"])));
    assert!(
        denied.contains("its condition key demo:Size is not supported by demo:Do (Service Authorization Reference), so it never applies"),
        "{denied}"
    );
    // As with any absent key, a negated operator on it holds.
    assert!(allows(json!({"StringNotEquals": {"demo:Size": "big"}}), &[("demo:size", &["big"])]));

    let denied = why(evaluate(&reference, &statements, &AuthzRequest::new("demo:Nope", THING)));
    assert!(denied.contains("demo:Nope is not an action of the Service Authorization Reference"), "{denied}");
    let denied = why(evaluate(&reference, &[], &AuthzRequest::new("demo:Do", THING)));
    assert_eq!(denied, format!("no statement of the role allows demo:Do (on {THING})"));
}

#[test]
fn policy_variables_and_resource_tags() {
    let reference = demo();
    let statements = policy(json!([{"Effect": "Allow", "Action": "demo:Do", "Resource": "arn:aws:demo:*:*:thing/${aws:username}",
        "Condition": {"StringEquals": {"aws:ResourceTag/owner": "${aws:username}"}}}]));
    let request = AuthzRequest::new("demo:Do", THING).with("aws:username", &["a"]);
    assert!(needs_resource_tags(&reference, &statements, &request));
    assert!(!evaluate(&reference, &statements, &request).is_allowed());
    assert!(evaluate(&reference, &statements, &request.clone().with("aws:ResourceTag/Owner", &["a"])).is_allowed());
    assert!(!evaluate(&reference, &statements, &AuthzRequest::new("demo:Do", THING).with("aws:resourcetag/owner", &["a"])).is_allowed());
    assert!(!needs_resource_tags(
        &reference,
        &statements,
        &AuthzRequest::new("demo:Do", "arn:aws:demo:r:1:thing/b").with("aws:username", &["a"])
    ));
    // A variable without a value: the entry matches nothing, the condition does not hold.
    let anonymous = AuthzRequest::new("demo:Do", THING).with("aws:resourcetag/owner", &["a"]);
    let statements = policy(json!([{"Sid": "V", "Effect": "Allow", "Action": "demo:Do", "Resource": "*",
        "Condition": {"StringNotEquals": {"aws:ResourceTag/owner": "${aws:username}"}}}]));
    assert!(why(evaluate(&reference, &statements, &anonymous)).contains("names a policy variable the request has no value for"));
    assert!(evaluate(&reference, &statements, &anonymous.clone().with("aws:username", &["b"])).is_allowed());
    let with_default = policy(json!([{"Effect": "Allow", "Action": "demo:Do", "Resource": "arn:aws:demo:*:*:thing/${aws:username, 'a'}"}]));
    assert!(evaluate(&reference, &with_default, &anonymous).is_allowed());
    let plain = policy(json!([{"Effect": "Allow", "Action": "demo:Do", "Resource": "*"}]));
    assert!(!needs_resource_tags(&reference, &plain, &request));
}

// ---- The real template and reference --------------------------------------------------------

fn call(service: &'static str, operation: &'static str, params: serde_json::Value) -> ApiCall<'static> {
    ApiCall::new(service, operation, Params::Json(params), "123456789012", "us-east-1")
}

/// Every authorization request of the call, evaluated against the function's role.
fn decide(reference: &Reference, function: &str, call: &ApiCall) -> Vec<(AuthzRequest, Decision)> {
    let statements = statements_of(function);
    let requests = authorization_requests(reference, call).unwrap_or_else(|e| panic!("{e}"));
    requests.into_iter().map(|r| (r.clone(), evaluate(reference, statements, &r))).collect()
}

/// Known bug in today's template: RolloutStepRole's PassRole is conditioned on the role's tags,
/// which iam:PassRole does not support, so registering a revision with roles is always denied.
#[test]
fn passrole_conditioned_on_role_tags_never_matches() {
    let Some(reference) = real_reference() else { return };
    // The statement template.yaml had until the strict runtime found it: on AWS it denied the
    // first state of every rollout.
    let tagged_roles = policy(json!([{
        "Sid": "PassTheManagedServicesTaskRoles", "Effect": "Allow", "Action": "iam:PassRole",
        "Resource": "arn:aws:iam::123456789012:role/*",
        "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com", "iam:ResourceTag/kanaria:managed": "true"}}
    }]));
    let register = call(
        "ecs",
        "RegisterTaskDefinition",
        json!({"family": "web", "executionRoleArn": "arn:aws:iam::123456789012:role/web-execution", "containerDefinitions": []}),
    );
    let requests = authorization_requests(reference, &register).expect("RegisterTaskDefinition maps");
    let pass_role = requests.iter().find(|r| r.action == "iam:PassRole").expect("RegisterTaskDefinition passes the role");
    assert_eq!(pass_role.resource, "arn:aws:iam::123456789012:role/web-execution");
    let why = why(evaluate(reference, &tagged_roles, pass_role));
    assert!(
        why.contains("test / PassTheManagedServicesTaskRoles matches iam:PassRole on arn:aws:iam::123456789012:role/web-execution but its condition key iam:ResourceTag/kanaria:managed is not supported by iam:PassRole (Service Authorization Reference), so it never applies"),
        "{why}"
    );
    // Even if the role's tags were put in the context, PassRole does not see them.
    let tagged = pass_role.clone().with("iam:ResourceTag/kanaria:managed", &["true"]).with("aws:ResourceTag/kanaria:managed", &["true"]);
    assert!(!evaluate(reference, &tagged_roles, &tagged).is_allowed());

    // template.yaml now scopes the roles by path (PassableRoles, default kanaria/*).
    let decisions = decide(reference, "RolloutStepFunction", &register);
    let (_, denied) = decisions.iter().find(|(r, _)| r.action == "iam:PassRole").expect("PassRole");
    assert!(!denied.is_allowed(), "a role outside /kanaria/ is not passed: {denied:?}");
    let under_path = call(
        "ecs",
        "RegisterTaskDefinition",
        json!({"family": "web", "executionRoleArn": "arn:aws:iam::123456789012:role/kanaria/web-execution", "containerDefinitions": []}),
    );
    for (request, decision) in decide(reference, "RolloutStepFunction", &under_path) {
        assert!(decision.is_allowed(), "{request:?}: {decision:?}");
    }
}

#[test]
fn passrole_scoped_by_name_and_service() {
    let Some(reference) = real_reference() else { return };
    let statements = policy(
        json!([{"Sid": "PassTaskRoles", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::123456789012:role/kanaria-*",
        "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}}]),
    );
    let pass = |role: &str, service: &str| {
        AuthzRequest::new("iam:PassRole", &format!("arn:aws:iam::123456789012:role/{role}")).with("iam:passedtoservice", &[service])
    };
    assert_eq!(
        evaluate(reference, &statements, &pass("kanaria-web-task", "ecs-tasks.amazonaws.com")),
        Decision::Allowed { by: "test / PassTaskRoles".into() }
    );
    let to_lambda = why(evaluate(reference, &statements, &pass("kanaria-web-task", "lambda.amazonaws.com")));
    assert!(to_lambda.contains("its condition StringEquals iam:PassedToService [\"ecs-tasks.amazonaws.com\"] does not hold: the request has iam:PassedToService = [\"lambda.amazonaws.com\"]"), "{to_lambda}");
    let other = why(evaluate(reference, &statements, &pass("other", "ecs-tasks.amazonaws.com")));
    assert!(other.contains("test / PassTaskRoles allows iam:PassRole but not on arn:aws:iam::123456789012:role/other"), "{other}");
}

#[test]
fn primary_task_set_changes_only_on_managed_services() {
    let Some(reference) = real_reference() else { return };
    let statements = statements_of("OnAlarmFunction");
    let swap = call("ecs", "UpdateServicePrimaryTaskSet", json!({"cluster": "prod", "service": "web", "primaryTaskSet": "ecs-svc/1"}));
    let requests = authorization_requests(reference, &swap).expect("mapped");
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.resource, "arn:aws:ecs:us-east-1:123456789012:service/prod/web");
    assert!(needs_resource_tags(reference, statements, request));
    let tagged = |value: &str| request.clone().with("aws:resourcetag/kanaria:managed", &[value]);
    assert_eq!(
        evaluate(reference, statements, &tagged("true")),
        Decision::Allowed { by: "OnAlarmRole managed RollbackPolicy / ChangePrimaryTaskSetOfManagedServices".into() }
    );
    let untagged = why(evaluate(reference, statements, request));
    assert!(
        untagged.contains("ChangePrimaryTaskSetOfManagedServices matches ecs:UpdateServicePrimaryTaskSet")
            && untagged.contains("the request has no aws:ResourceTag/kanaria:managed"),
        "{untagged}"
    );
    let tagged_false = why(evaluate(reference, statements, &tagged("false")));
    assert!(tagged_false.contains("the request has aws:ResourceTag/kanaria:managed = [\"false\"]"), "{tagged_false}");
}

#[test]
fn listener_changes_only_on_tagged_app_listeners() {
    let Some(reference) = real_reference() else { return };
    let statements = statements_of("RolloutStepFunction");
    let listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2";
    let modify = ApiCall::new(
        "elasticloadbalancing",
        "ModifyListener",
        Params::Query(vec![("ListenerArn".into(), listener.into())]),
        "123456789012",
        "us-east-1",
    );
    let request = authorization_requests(reference, &modify).expect("mapped").remove(0);
    assert_eq!((request.action.as_str(), request.resource.as_str()), ("elasticloadbalancing:ModifyListener", listener));
    assert!(needs_resource_tags(reference, statements, &request));
    assert!(evaluate(reference, statements, &request.clone().with("aws:ResourceTag/kanaria:managed", &["true"])).is_allowed());
    assert!(!evaluate(reference, statements, &request).is_allowed());
    let network = AuthzRequest::new("elasticloadbalancing:ModifyListener", &listener.replace("/app/", "/net/"))
        .with("aws:resourcetag/kanaria:managed", &["true"]);
    assert!(why(evaluate(reference, statements, &network))
        .contains("MoveTrafficOnManagedListeners allows elasticloadbalancing:ModifyListener but not on"));
}

#[test]
fn the_functions_everyday_calls_are_allowed() {
    let Some(reference) = real_reference() else { return };
    let allowed = |function: &str, call: ApiCall| {
        for (request, decision) in decide(reference, function, &call) {
            assert!(decision.is_allowed(), "{function} {request:?}: {decision:?}");
        }
    };
    let table = json!({"TableName": "kanaria-RolloutTable"});
    allowed("RolloutStepFunction", call("dynamodb", "GetItem", table.clone()));
    allowed(
        "RolloutStepFunction",
        call(
            "dynamodb",
            "TransactWriteItems",
            json!({"TransactItems": [{"Put": table.clone()}, {"Delete": table.clone()}, {"Update": table}]}),
        ),
    );
    allowed("RolloutStepFunction", call("ecs", "CreateTaskSet", json!({"cluster": "prod", "service": "web", "taskDefinition": "web:7"})));
    allowed("RolloutStepFunction", call("ecs", "DescribeTaskDefinition", json!({"taskDefinition": "web:7"})));
    // A revision keeps the tags of the one it copies: tagging as part of registering it.
    let register = call("ecs", "RegisterTaskDefinition", json!({"family": "web", "tags": [{"key": "kanaria:managed", "value": "true"}]}));
    assert_eq!(decide(reference, "RolloutStepFunction", &register).len(), 2);
    allowed("RolloutStepFunction", register);
    let tag_later = call(
        "ecs",
        "TagResource",
        json!({"resourceArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:7", "tags": [{"key": "a", "value": "b"}]}),
    );
    assert!(!decide(reference, "RolloutStepFunction", &tag_later)[0].1.is_allowed(), "tagging outside a registration is refused");
    allowed("RolloutStepFunction", call("ssm", "GetParametersByPath", json!({"Path": "/kanaria/policies", "Recursive": true})));
    allowed(
        "OnImagePushFunction",
        call("states", "StartExecution", json!({"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:kanaria-rollout"})),
    );
    allowed("OnTaskEventFunction", call("ecs", "ListTasks", json!({"cluster": "prod", "serviceName": "web"})));
    allowed("ScheduledScaleFunction", call("application-autoscaling", "DescribeScalableTargets", json!({"ServiceNamespace": "ecs"})));
    let create = |name: &str| {
        let mut c = call("scheduler", "CreateSchedule", json!({}));
        c.params = Params::Rest {
            method: "POST".into(),
            path: format!("/schedules/{name}"),
            body: json!({"GroupName": "kanaria", "Target": {"RoleArn": "arn:aws:iam::123456789012:role/kanaria-SchedulerRole", "Arn": "x"}}),
        };
        c
    };
    allowed("PolicySyncFunction", create("kanaria.prod.web.night"));
    let others = decide(reference, "PolicySyncFunction", &create("someone-elses"));
    assert!(!others[0].1.is_allowed() && others[1].1.is_allowed(), "{others:?}");
}

#[test]
fn ending_the_rollouts_wait_needs_the_token_state_machine() {
    let Some(reference) = real_reference() else { return };
    let mut success = call("states", "SendTaskSuccess", json!({"taskToken": "opaque", "output": "{}"}));
    let denied = decide(reference, "OnAlarmFunction", &success);
    assert_eq!(denied[0].0.resource, "*");
    assert!(why(denied[0].1.clone()).contains("states:SendTaskSuccess has no resource-level permissions"));
    success.task_token_state_machine = Some("arn:aws:states:us-east-1:123456789012:stateMachine:kanaria-rollout");
    assert!(decide(reference, "OnAlarmFunction", &success)[0].1.is_allowed());
}

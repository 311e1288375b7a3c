//! Tests of reading statements from templates: the real template.yaml and small ones.

use super::*;
use crate::test_support::{local_resolver, real_statements, statements_of, template_text};

fn find<'s>(statements: &'s [Statement], origin: &str) -> &'s Statement {
    statements.iter().find(|s| s.origin == origin).unwrap_or_else(|| {
        let origins: Vec<&str> = statements.iter().map(|s| s.origin.as_str()).collect();
        panic!("no statement {origin:?}; there are {origins:#?}")
    })
}

#[test]
fn every_function_of_the_real_template_gets_its_roles_statements() {
    let all = real_statements();
    let functions: Vec<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(
        functions,
        [
            "DecideFunction",
            "OnAlarmFunction",
            "OnImagePushFunction",
            "OnTaskEventFunction",
            "PolicySyncFunction",
            "RestartLoopFunction",
            "RolloutStepFunction",
            "ScheduledScaleFunction",
            "SlackInteractionsFunction",
            "SlackNotifyFunction"
        ]
    );
    for (function, statements) in all {
        assert!(statements.len() >= 2, "{function}: {statements:#?}");
        assert!(statements.iter().any(|s| s.sid.as_deref() == Some("Logs")), "{function} has its Logs statement");
    }

    let rollout = statements_of("RolloutStepFunction");
    let pass_role = find(rollout, "RolloutStepRole inline rollout-step / PassTheServicesTaskRoles");
    assert_eq!(pass_role.effect, Effect::Allow);
    assert_eq!(pass_role.action, ["iam:PassRole"]);
    assert_eq!(pass_role.resource, ["arn:aws:iam::123456789012:role/kanaria/*"], "PassableRoles' default");
    assert!(pass_role.conditions.contains(&Condition {
        operator: "StringEquals".into(),
        key: "iam:PassedToService".into(),
        values: vec!["ecs-tasks.amazonaws.com".into()]
    }));
    let primary = find(rollout, "RolloutStepRole managed RollbackPolicy / ChangePrimaryTaskSetOfManagedServices");
    assert_eq!(primary.resource, ["arn:aws:ecs:us-east-1:123456789012:service/*"]);
    assert_eq!(primary.conditions[0].key, "aws:ResourceTag/kanaria:managed");
    let table = find(rollout, "RolloutStepRole managed RolloutTablePolicy / statement 1");
    assert_eq!(table.resource, ["arn:aws:dynamodb:us-east-1:123456789012:table/kanaria-RolloutTable"]);
    let policies = find(rollout, "RolloutStepRole managed ReadPoliciesPolicy / EveryPolicy");
    assert_eq!(
        policies.resource,
        [
            "arn:aws:ssm:us-east-1:123456789012:parameter/kanaria/policies",
            "arn:aws:ssm:us-east-1:123456789012:parameter/kanaria/policies/*"
        ]
    );
    let notify = find(rollout, "RolloutStepRole managed NotifyPolicy / statement 1");
    assert_eq!(
        notify.resource,
        ["arn:aws:sns:us-east-1:123456789012:kanaria-AlertTopic", "arn:aws:sns:us-east-1:123456789012:kanaria-EventsTopic"]
    );
    let wait = find(rollout, "RolloutStepRole managed RollbackPolicy / EndTheRolloutsWait");
    assert_eq!(wait.resource, ["arn:aws:states:us-east-1:123456789012:stateMachine:kanaria-rollout"]);

    // Slack is not configured by default: the statements under !If SlackConfigured are absent.
    assert!(!statements_of("SlackNotifyFunction").iter().any(|s| s.action.iter().any(|a| a.starts_with("secretsmanager:"))));
    let scheduler = find(statements_of("PolicySyncFunction"), "PolicySyncRole inline policy-sync / KanariasOwnSchedules");
    assert_eq!(scheduler.resource, ["arn:aws:scheduler:us-east-1:123456789012:schedule/kanaria/kanaria.*"]);
}

#[test]
fn parameters_and_conditions_follow_the_resolver() {
    let mut resolver = local_resolver();
    let secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kanaria/slack-AbCdEf";
    resolver.parameters.insert("SlackSecretArn".into(), secret.into());
    resolver.parameters.insert("PolicyPath".into(), "/other".into());
    let all = function_statements(&template_text(), &resolver).expect("resolves");
    let slack = find(&all["SlackInteractionsFunction"], "SlackInteractionsRole inline slack-interactions / SlackSigningSecretAndToken");
    assert_eq!(slack.resource, [secret]);
    let policies = find(&all["PolicySyncFunction"], "PolicySyncRole managed ReadPoliciesPolicy / EveryPolicy");
    assert_eq!(policies.resource[0], "arn:aws:ssm:us-east-1:123456789012:parameter/other");
}

#[test]
fn each_resource_value_the_policies_need_is_asked_for_by_name() {
    let full = local_resolver();
    let mut keys: Vec<(bool, String)> = full.refs.keys().map(|k| (true, k.clone())).collect();
    keys.extend(full.attrs.keys().map(|k| (false, k.clone())));
    for (is_ref, key) in keys {
        let mut resolver = full.clone();
        if is_ref {
            resolver.refs.remove(&key);
        } else {
            resolver.attrs.remove(&key);
        }
        let error = format!("{:#}", function_statements(&template_text(), &resolver).expect_err(&key));
        let asks = if is_ref { format!("add \"{key}\" to Resolver.refs") } else { format!("add \"{key}\" to Resolver.attrs") };
        assert!(error.contains(&asks), "without {key}: {error}");
    }
}

const SMALL: &str = r#"
Parameters:
  Stage: { Type: String, Default: prod }
  Names: { Type: CommaDelimitedList, Default: "a,b" }
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  Both: { "Fn::And": [{ Condition: IsProd }, !Equals ["x", "x"]] }
  Either: !Or [!Condition IsDev, !Equals [!Select [1, !Ref Names], b]]
Resources:
  Bucket: { Type: AWS::S3::Bucket }
  Role:
    Type: AWS::IAM::Role
    Properties:
      ManagedPolicyArns: [!Ref Shared, !If [IsDev, !Ref Shared, !Ref AWS::NoValue]]
      Policies:
        - PolicyName: main
          PolicyDocument:
            Statement:
              Effect: Allow
              Action: [s3:GetObject, !If [Both, s3:PutObject, !Ref AWS::NoValue]]
              Resource:
                - { "Fn::Sub": ["arn:${AWS::Partition}:s3:::${B}/${Stage}/*", { B: !Ref Bucket }] }
                - !Join ["", ["arn:aws:s3:::", { "Fn::GetAtt": [Bucket, Name] }, "/x"]]
              Condition:
                Bool: { aws:SecureTransport: true }
                NumericLessThan: { s3:max-keys: 10 }
  Shared:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Sid: DenyDelete
            Effect: Deny
            NotAction: s3:Get*
            NotResource: "${!Literal}"
  Extra:
    Type: AWS::IAM::Policy
    Condition: Either
    Properties:
      Roles: [!Ref Role]
      PolicyDocument: { Statement: [{ Effect: Allow, Action: sqs:SendMessage, Resource: "*" }] }
  Fn:
    Type: AWS::Serverless::Function
    Properties: { Role: !GetAtt Role.Arn }
  DevOnly:
    Type: AWS::Serverless::Function
    Condition: IsDev
    Properties: { Role: !GetAtt Role.Arn }
"#;

fn small_resolver() -> Resolver {
    let mut resolver = Resolver::new("111122223333", "eu-west-1", "demo");
    resolver.refs.insert("Bucket".into(), "demo-bucket".into());
    resolver.attrs.insert("Bucket.Name".into(), "demo-bucket".into());
    resolver
}

#[test]
fn intrinsics_conditions_and_attached_policies() {
    let all = function_statements(SMALL, &small_resolver()).expect("resolves");
    assert_eq!(all.keys().collect::<Vec<_>>(), ["Fn"], "DevOnly's condition is false");
    let statements = &all["Fn"];
    let main = find(statements, "Role inline main / statement 1");
    assert_eq!(main.action, ["s3:GetObject", "s3:PutObject"]);
    assert_eq!(main.resource, ["arn:aws:s3:::demo-bucket/prod/*", "arn:aws:s3:::demo-bucket/x"]);
    assert_eq!(main.conditions[0], Condition { operator: "Bool".into(), key: "aws:SecureTransport".into(), values: vec!["true".into()] });
    assert_eq!(main.conditions[1].values, ["10"]);
    let deny = find(statements, "Role managed Shared / DenyDelete");
    assert_eq!(
        (deny.effect, deny.not_action.as_slice(), deny.not_resource.as_slice()),
        (Effect::Deny, &["s3:Get*".to_string()][..], &["${!Literal}".to_string()][..])
    );
    assert_eq!(statements.iter().filter(|s| s.origin.starts_with("Role managed Shared")).count(), 1, "the !If adds Shared only in dev");
    find(statements, "Role policy Extra / statement 1");

    let mut dev = small_resolver();
    dev.parameters.insert("Stage".into(), "dev".into());
    let all = function_statements(SMALL, &dev).expect("resolves");
    assert_eq!(all.keys().collect::<Vec<_>>(), ["DevOnly", "Fn"]);
    assert_eq!(find(&all["Fn"], "Role inline main / statement 1").action, ["s3:GetObject"]);
}

#[test]
fn what_cannot_be_known_is_an_error_naming_it() {
    let error = |template: &str| format!("{:#}", function_statements(template, &small_resolver()).expect_err("must fail"));
    let e = error(&SMALL.replace("B: !Ref Bucket", "B: !Ref Nothing"));
    assert!(e.contains("!Ref Nothing names neither a parameter nor a resource"), "{e}");
    let e = error(&SMALL.replace("[!Ref Shared, !If", "[arn:aws:iam::aws:policy/ReadOnlyAccess, !If"));
    assert!(e.contains("arn:aws:iam::aws:policy/ReadOnlyAccess, which is not an AWS::IAM::ManagedPolicy of this template"), "{e}");
    let e = error(
        &SMALL.replace("Properties: { Role: !GetAtt Role.Arn }\n  DevOnly", "Properties: { Role: arn:aws:iam::1:role/x }\n  DevOnly"),
    );
    assert!(e.contains("Fn's Role is not !GetAtt"), "{e}");
    let e = error(&SMALL.replace("Effect: Deny", "Effect: Deny\n            Principal: '*'"));
    assert!(e.contains("Principal has no place in an identity policy statement"), "{e}");
    let e = error(&SMALL.replace("Action: sqs:SendMessage,", "Action: sqs:SendMessage, NotAction: x,"));
    assert!(e.contains("exactly one of Action and NotAction"), "{e}");
    let e = error(&SMALL.replace("!Join", "!Base64"));
    assert!(e.contains("Fn::Base64 is not supported"), "{e}");
    let e = error(&SMALL.replace("IsDev: !Not [!Condition IsProd]", "IsDev: !Not [!Condition IsDev]"));
    assert!(e.contains("refers to itself"), "{e}");
    let e = error(&SMALL.replace("Effect: Allow\n              Action: [s3", "Effect: allow\n              Action: [s3"));
    assert!(e.contains("Effect must be Allow or Deny"), "{e}");
    assert!(function_statements("[1, 2", &small_resolver()).is_err());
    assert!(function_statements("{}", &small_resolver()).is_err());
}

#[test]
fn json_policy_documents() {
    let document = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "One", "Effect": "Allow", "Action": "ecs:DescribeServices", "Resource": ["*"],
         "Condition": {"StringEquals": {"ecs:cluster": ["a", "b"]}}}]});
    let statements = statements_from_policy(&document, "test").expect("valid");
    assert_eq!(statements[0].origin, "test / One");
    assert_eq!(statements[0].conditions[0].values, ["a", "b"]);
    assert!(statements_from_policy(&serde_json::json!({"Statement": [{"Effect": "Allow"}]}), "test").is_err());
}

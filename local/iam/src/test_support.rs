//! What the tests share: the real template, a resolver like the local runtime's, the real
//! reference (loaded once) and the statements of each function.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::reference::Reference;
use crate::template::{function_statements, Resolver, Statement};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const STACK: &str = "kanaria";

/// The repository's template.yaml.
pub fn template_text() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the local runtime would supply for the resources the policies mention (account
/// 123456789012, us-east-1, stack `kanaria`). Resolution fails naming any one missing.
pub fn local_resolver() -> Resolver {
    let mut resolver = Resolver::new(ACCOUNT, REGION, STACK);
    let arn = |service: &str, rest: &str| format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{rest}");
    for (id, value) in [("AlertTopic", arn("sns", "kanaria-AlertTopic")), ("EventsTopic", arn("sns", "kanaria-EventsTopic"))] {
        resolver.refs.insert(id.into(), value);
    }
    let log_groups = [
        ("OnImagePushLogGroup", "on-image-push"),
        ("RolloutStepLogGroup", "rollout-step"),
        ("OnTaskEventLogGroup", "on-task-event"),
        ("OnAlarmLogGroup", "on-alarm"),
        ("ScheduledScaleLogGroup", "scheduled-scale"),
        ("PolicySyncLogGroup", "policy-sync"),
        ("SlackInteractionsLogGroup", "slack-interactions"),
        ("SlackNotifyLogGroup", "slack-notify"),
        ("RestartLoopLogGroup", "restart-loop"),
        ("DecideLogGroup", "decide"),
    ];
    for (id, function) in log_groups {
        resolver.attrs.insert(format!("{id}.Arn"), arn("logs", &format!("log-group:/aws/lambda/{STACK}/{function}:*")));
    }
    for (key, value) in [
        ("FailedEventsQueue.Arn", arn("sqs", "kanaria-FailedEventsQueue")),
        ("DecisionQueue.Arn", arn("sqs", "kanaria-DecisionQueue")),
        ("SchedulerDeadLetterQueue.Arn", arn("sqs", "kanaria-SchedulerDeadLetterQueue")),
        ("RolloutTable.Arn", arn("dynamodb", "table/kanaria-RolloutTable")),
        ("SchedulerRole.Arn", format!("arn:aws:iam::{ACCOUNT}:role/kanaria-SchedulerRole")),
    ] {
        resolver.attrs.insert(key.into(), value);
    }
    resolver
}

/// The real reference, loaded once; `None` (noted on stderr) when it is not installed.
pub fn reference() -> Option<&'static Reference> {
    crate::reference::tests::real()
}

/// Every function's statements in the real template, resolved once.
pub fn real_statements() -> &'static BTreeMap<String, Vec<Statement>> {
    static STATEMENTS: OnceLock<BTreeMap<String, Vec<Statement>>> = OnceLock::new();
    STATEMENTS.get_or_init(|| function_statements(&template_text(), &local_resolver()).unwrap_or_else(|e| panic!("{e:#}")))
}

/// One function's statements in the real template.
pub fn statements_of(function: &str) -> &'static [Statement] {
    real_statements().get(function).unwrap_or_else(|| panic!("no function {function} in template.yaml"))
}

"""Writes statemachines/rollout.asl.json (committed exactly as deployed). Run: python3 tools/gen_rollout_asl.py"""
import json, os

FN = "${RolloutStepFunctionArn}"
# Lambda throttled (rollout-step's reserved concurrency, the account's limit) or timed out, or the
# Lambda service failed: retried for several minutes, with full jitter so that many executions
# throttled together do not come back together. Every step is idempotent, so retrying a step
# that timed out halfway is safe.
LAMBDA_ERRORS = ["Lambda.TooManyRequestsException", "Sandbox.Timedout", "Lambda.ServiceException", "Lambda.AWSLambdaException",
                 "Lambda.SdkClientException"]
RETRY = [
    {"ErrorEquals": LAMBDA_ERRORS, "IntervalSeconds": 2, "MaxAttempts": 12, "BackoffRate": 2.0, "MaxDelaySeconds": 60, "JitterStrategy": "FULL"},
    {"ErrorEquals": ["Kanaria.Transient", "Kanaria.NotConverged"], "IntervalSeconds": 1, "MaxAttempts": 4, "BackoffRate": 2.0,
     "MaxDelaySeconds": 10, "JitterStrategy": "FULL"}]
TO_ROLLBACK = {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RollBack"}


def task(action, nxt, comment, catch=("RollBack",), extra=None):
    params = {"action": action, "rollout.$": "$"}
    params.update(extra or {})
    t = {"Type": "Task", "Comment": comment, "Resource": FN, "Parameters": params, "Retry": RETRY}
    if catch:
        t["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": catch[0]}]
    t["Next"] = nxt
    return t


def wait_for_token(comment, on_timeout, on_success, timeout_path="$.waitSeconds"):
    """A bake or gate: rollout-step keeps the task token; the circuit breaker fails it, `kanaria
    promote` completes it, and otherwise the state times out after the bake (the normal path).
    Costs the same transitions as a Wait state, whatever the bake length."""
    return {
        "Type": "Task", "Comment": comment,
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": FN, "Payload": {"action": "bake", "rollout.$": "$", "taskToken.$": "$$.Task.Token"}},
        "TimeoutSecondsPath": timeout_path,
        "ResultPath": "$.waitResult",
        "Retry": RETRY,
        "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.waitResult", "Next": on_timeout}, TO_ROLLBACK],
        "Next": on_success,
    }


def wait_for_approval(comment):
    """A person's go-ahead: rollout-step keeps the task token server-side under a random approval
    id (the Slack buttons carry only that id). Approve → SendTaskSuccess; reject or the circuit
    breaker → SendTaskFailure (then RollBack); no answer in time → the policy's onTimeout."""
    return {
        "Type": "Task", "Comment": comment,
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": FN, "Payload": {"action": "approval", "rollout.$": "$", "taskToken.$": "$$.Task.Token"}},
        "TimeoutSecondsPath": "$.approval.timeoutSeconds",
        "ResultPath": "$.approvalResult",
        "Retry": RETRY,
        "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "ApprovalTimedOut"}, TO_ROLLBACK],
        "Next": "Approved",
    }


def verdict(v, nxt):
    rule = {"Variable": "$.verdict", "StringEquals": v}
    if nxt:
        rule["Next"] = nxt
    return rule


BLUE_GREEN = "$.policy.strategy.blueGreen"
SM_ARN = {"stateMachineArn.$": "$$.StateMachine.Id"}

sm = {
  "Comment": "kanaria rollout of one ECS service: new task set; canary/linear steps (shift, bake, verify) or blue/green (test route, gate, cutover, keep old); then promote. Any failure rolls back to the stable task set. One execution per service and image digest.",
  "StartAt": "CreateNewTaskSet",
  "States": {
    "CreateNewTaskSet": task("createGreen", "WaitForNewTasks", "Register the task-definition revision pinned to the pushed digest and create the new task set (0% traffic)."),
    "WaitForNewTasks": {"Type": "Wait", "Comment": "Short, backing-off waits until the new tasks run (bounded by the policy's stabilizationTimeout).", "SecondsPath": "$.waitSeconds", "Next": "CheckNewTasks"},
    "CheckNewTasks": task("checkGreen", "NewTasksReady", "Are all tasks of the new task set RUNNING, none failed, no alarm?"),
    "NewTasksReady": {"Type": "Choice", "Choices": [
        {"And": [{"Variable": "$.verdict", "StringEquals": "ready"}, {"Variable": BLUE_GREEN, "IsPresent": True}], "Next": "RouteTestTraffic"},
        verdict("ready", "ShiftTraffic"), verdict("rollback", "RollBack")], "Default": "WaitForNewTasks"},

    "RouteTestTraffic": task("testTraffic", "TestTrafficRouted", "Blue/green: the test listener or rule sends its traffic to the new task set (read back)."),
    "TestTrafficRouted": {"Type": "Choice", "Choices": [
        verdict("rollback", "RollBack"),
        {"Variable": BLUE_GREEN + ".validation.hook", "IsPresent": True, "Next": "RunValidationHook"},
        {"Variable": "$.approval", "IsPresent": True, "Next": "WaitForApproval"}],
        "Default": "ValidateOnTestRoute"},
    "ValidateOnTestRoute": wait_for_token("Blue/green: watch the new task set on the test route for the validation bake.", "CheckValidation", "CheckValidation"),
    "WaitForApproval": wait_for_approval("Wait for a person (Slack buttons, kanaria approve/reject) before the next step, the promotion or the blue/green cutover."),
    "ApprovalTimedOut": {"Type": "Choice", "Comment": "Nobody answered in time: the policy's onTimeout decides.",
                         "Choices": [{"Variable": "$.approval.onTimeout", "StringEquals": "promote", "Next": "Approved"}], "Default": "RollBack"},
    "Approved": {"Type": "Choice", "Comment": "Go on where the approval was asked for.", "Choices": [
        {"Variable": BLUE_GREEN, "IsPresent": True, "Next": "CheckValidation"},
        verdict("nextStep", "ShiftTraffic"), verdict("promote", "Promote")], "Default": "RollBack"},
    "RunValidationHook": {
        "Type": "Task", "Comment": "Blue/green: the policy's hook Lambda answers {pass, reason} about the new task set on the test route.",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName.$": BLUE_GREEN + ".validation.hook", "Payload": {"rollout.$": "$"}},
        # The whole answer: rollout-step's validate judges it (a path into it that the hook left
        # out would fail the execution with States.Runtime, past every Catch).
        "ResultSelector": {"answer.$": "$.Payload"},
        "ResultPath": "$.hook",
        "Retry": [{"ErrorEquals": LAMBDA_ERRORS, "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2.0, "MaxDelaySeconds": 30, "JitterStrategy": "FULL"}],
        "Catch": [TO_ROLLBACK],
        "Next": "CheckValidation"},
    "CheckValidation": task("validate", "ValidationPassed", "Blue/green: the hook passed the release (if any), no failed task, no alarm, the new tasks running."),
    "ValidationPassed": {"Type": "Choice", "Choices": [verdict("ready", "ShiftTraffic")], "Default": "RollBack"},

    "ShiftTraffic": task("shift", "TrafficShifted", "Set the current step's weight on the new target group and read it back."),
    "TrafficShifted": {"Type": "Choice", "Choices": [verdict("rollback", "RollBack")], "Default": "Bake"},
    "Bake": wait_for_token("Hold the step's weight for its bake time. The circuit breaker (failed tasks, alarms, a newer push, kanaria abort) ends it early with a rollback; kanaria promote ends it early to go on.", "Verify", "Verify"),
    "Verify": task("verify", "StepHealthy", "No failed task of the new task set, all its tasks running, no alarm, canary analysis passes."),
    "StepHealthy": {"Type": "Choice", "Choices": [
        {"And": [{"Variable": "$.approval", "IsPresent": True}, {"Or": [verdict("nextStep", None), verdict("promote", None)]}], "Next": "WaitForApproval"},
        verdict("nextStep", "ShiftTraffic"), verdict("hold", "Bake"), verdict("promote", "Promote")], "Default": "RollBack"},
    "Promote": task("promote", "PromoteDone", "100% to the new task set, make it primary, scale the old one to 0; release the service (then start a queued newer push, if any).", extra=SM_ARN),
    "PromoteDone": {"Type": "Choice", "Choices": [verdict("rollback", "RollBack")], "Default": "DrainOldTaskSet"},
    "DrainOldTaskSet": {"Type": "Wait", "Comment": "Let the old task set finish in-flight requests (the policy's drain).", "SecondsPath": "$.waitSeconds", "Next": "DeleteOldTaskSet"},
    "DeleteOldTaskSet": task("finish", "Promoted", "Delete the old task set (the service was released at promotion).", catch=("CleanupFailed",)),
    "Promoted": {"Type": "Succeed", "Comment": "The new image serves 100% of traffic from the primary task set."},
    "CleanupFailed": {"Type": "Fail", "Comment": "The new image is live and primary; only removing the old task set failed.",
                      "Error": "Kanaria.CleanupFailed", "Cause": "The new task set is primary and serves 100% of traffic and the rollout is recorded as promoted, but deleting the old task set failed. See the DeleteOldTaskSet state's error, and delete the old task set by hand if it is still there (it gets no traffic); the next rollout removes it too."},
    "RollBack": {"Type": "Task", "Comment": "100% back to the stable task set (read back), delete the new task set, release the service.",
                 "Resource": FN, "Parameters": dict({"action": "rollback", "rollout.$": "$"}, **SM_ARN),
                 # Rolling back must outlast throttling: Lambda errors are retried for about 20 minutes.
                 "Retry": [{"ErrorEquals": LAMBDA_ERRORS, "IntervalSeconds": 2, "MaxAttempts": 25, "BackoffRate": 2.0, "MaxDelaySeconds": 60, "JitterStrategy": "FULL"},
                           {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 6, "BackoffRate": 2.0, "MaxDelaySeconds": 20, "JitterStrategy": "FULL"}],
                 "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.rollbackError", "Next": "RollbackFailed"}],
                 "Next": "StableServing"},
    "StableServing": {"Type": "Choice", "Comment": "Traffic moves back only to a stable task set that serves (healthy); while its tasks start again, wait and look again.",
                      "Choices": [verdict("wait", "WaitForStable")], "Default": "RolledBack"},
    "WaitForStable": {"Type": "Wait", "Comment": "The stable task set's tasks are starting again (it was scaled down); traffic stays where it is meanwhile.", "SecondsPath": "$.waitSeconds", "Next": "RollBack"},
    "RolledBack": {"Type": "Fail", "Comment": "Traffic is back on the stable task set.", "Error": "Kanaria.RolledBack", "CausePath": "$.cause"},
    "RollbackFailed": {"Type": "Fail", "Error": "Kanaria.RollbackFailed",
                       "Cause": "Rolling back failed after retries: check the production listener's weights and the service's task sets now (kanaria status), and see the RollBack state's error."}
  }
}
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "statemachines")
with open(os.path.join(here, "rollout.asl.json"), "w") as f:
    json.dump(sm, f, indent=2)
    f.write("\n")

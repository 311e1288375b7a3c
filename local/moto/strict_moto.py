"""moto's server, with the Step Functions rules that moto skips and kanaria depends on.

The local runtime starts moto through this file instead of `moto_server` (same arguments). It
changes moto's Step Functions interpreter where moto is kinder than AWS:

- `TimeoutSecondsPath` (and `HeartbeatSecondsPath`) must select a positive integer. AWS fails
  the execution with States.Runtime otherwise, and no Catch catches it ("The States.ALL error
  type ... can't catch the States.DataLimitExceeded terminal error or Runtime error types",
  Step Functions developer guide, error handling). moto accepts 0 (a check that is never true).

- States.ALL matches any error name but States.Runtime (and States.DataLimitExceeded): those end
  the execution, whatever its Retry and Catch say (same page). moto's States.ALL matches all.

- StopExecution ends an execution ABORTED, and nothing of it runs after that. moto lets the task
  that was waiting fail afterwards, which runs its Catch and turns the execution FAILED.

- A Lambda task whose invoke fails in Lambda itself (throttled, a service error) fails with
  `Lambda.<ErrorCode>` (Lambda.TooManyRequestsException, Lambda.ServiceException...), which is
  what Retry and Catch name (Step Functions developer guide, "Handling Lambda service
  exceptions"). moto names all of them `Exception`.

And CloudWatch, where moto is kinder than AWS or lacks an API kanaria's tests need:

- DescribeAlarms returns composite alarms only when `AlarmTypes` lists `CompositeAlarm`, and
  metric alarms only when `AlarmTypes` is absent or lists `MetricAlarm` (DescribeAlarms API
  reference: "If you omit this parameter, only metric alarms are returned, even if composite
  alarms exist in the account"). moto ignores `AlarmTypes` and returns both.

- PutCompositeAlarm creates a composite alarm (moto has no handler for it, though its alarms
  carry an `AlarmRule` and DescribeAlarms already lists such alarms as composite).

Execution names are already unique per state machine for the life of the moto process (moto
answers ExecutionAlreadyExists for a closed execution's name, as AWS does for 90 days).
"""

import sys

from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.timeouts import timeout
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails


def _runtime_failure(env, field, value):
    cause = f"The value of the field '{field}' is '{value}', which is not a positive integer."
    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=StatesErrorNameType.StatesRuntime),
            event_type=HistoryEventType.ExecutionFailed,
            event_details=EventDetails(
                executionFailedEventDetails=ExecutionFailedEventDetails(
                    error=StatesErrorNameType.StatesRuntime.to_name(), cause=cause
                )
            ),
        )
    )


def _positive(original, field):
    def eval_seconds(self, env):
        seconds = original(self, env)
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
            raise _runtime_failure(env, field, seconds)
        return seconds

    return eval_seconds


timeout.TimeoutSecondsPath._eval_seconds = _positive(timeout.TimeoutSecondsPath._eval_seconds, "TimeoutSecondsPath")
try:
    from moto.stepfunctions.parser.asl.component.common.timeouts import heartbeat

    heartbeat.HeartbeatSecondsPath._eval_seconds = _positive(
        heartbeat.HeartbeatSecondsPath._eval_seconds, "HeartbeatSecondsPath"
    )
except (ImportError, AttributeError):
    pass

from moto.stepfunctions.parser.asl.component.common.error_name import error_equals_decl

_TERMINAL = {StatesErrorNameType.StatesRuntime.to_name(), "States.DataLimitExceeded"}
_original_eval_body = error_equals_decl.ErrorEqualsDecl._eval_body


def _eval_body(self, env):
    error_name = env.stack[-1]
    if getattr(error_name, "error_name", None) in _TERMINAL and self._STATE_ALL_ERROR in self.error_names:
        env.stack.pop()
        env.stack.append(False)
        return
    _original_eval_body(self, env)


error_equals_decl.ErrorEqualsDecl._eval_body = _eval_body

from moto.stepfunctions.parser.asl.eval import environment as _environment
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped


def _unless_stopped(original):
    def set_state(self, *args, **kwargs):
        if isinstance(self.program_state(), ProgramStopped):
            return
        original(self, *args, **kwargs)

    return set_state


_environment.Environment.set_error = _unless_stopped(_environment.Environment.set_error)
_environment.Environment.set_timed_out = _unless_stopped(_environment.Environment.set_timed_out)
_environment.Environment.set_ended = _unless_stopped(_environment.Environment.set_ended)

from botocore.exceptions import ClientError
from moto.stepfunctions.parser.api import LambdaFunctionFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_lambda

_lambda_from_error = state_task_lambda.StateTaskLambda._from_error


def _lambda_service_error(self, env, ex):
    if isinstance(ex, ClientError):
        error = f"Lambda.{ex.response['Error']['Code']}"
        return FailureEvent(
            env=env,
            error_name=CustomErrorName(error),
            event_type=HistoryEventType.LambdaFunctionFailed,
            event_details=EventDetails(
                lambdaFunctionFailedEventDetails=LambdaFunctionFailedEventDetails(
                    error=error, cause=ex.response["Error"].get("Message", "")
                )
            ),
        )
    return _lambda_from_error(self, env, ex)


state_task_lambda.StateTaskLambda._from_error = _lambda_service_error

from moto.cloudwatch.responses import CloudWatchResponse

_original_describe_alarms = CloudWatchResponse.describe_alarms


def _describe_alarms_of_types(self):
    answer = _original_describe_alarms(self)
    types = self._get_param("AlarmTypes", []) or ["MetricAlarm"]
    result = answer.result
    if "MetricAlarm" not in types:
        result["MetricAlarms"] = []
    if "CompositeAlarm" not in types:
        result["CompositeAlarms"] = []
    return answer


CloudWatchResponse.describe_alarms = _describe_alarms_of_types
# moto's PutMetricAlarm handler reads AlarmRule, and an alarm with a rule is a composite alarm.
CloudWatchResponse.put_composite_alarm = CloudWatchResponse.put_metric_alarm

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())

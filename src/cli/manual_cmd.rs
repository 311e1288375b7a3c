//! `kanaria abort`, `promote`, `approve` and `reject`: what a person does by hand, carried out by
//! the decide function ([`crate::handlers::decide`]) through [`crate::handlers::manual`] and
//! [`crate::handlers::approval`] (the same fence, restore and bake callbacks as the automatic paths).
//!
//! The functions here are pure: what to print and how to exit for each outcome.

use super::Exit;
use crate::handlers::circuit_breaker::Tripped;
use crate::handlers::on_image_push::Outcome;
use crate::handlers::HandlerError;

/// The line to print after an abort, whether it goes to stderr (a failure), and the exit code.
pub fn abort_outcome(service: &str, result: Option<&(String, Tripped)>) -> (Exit, String) {
    match result {
        Some((id, Tripped::Restored)) => (Exit::Success, format!("rolled back rollout {id} of {service}: 100% on the stable task set")),
        Some((id, Tripped::Fenced)) => (Exit::Success, format!("fenced rollout {id} of {service}; its next step rolls back")),
        Some((id, Tripped::WaitingForStable)) => (
            Exit::Success,
            format!("rolling back rollout {id} of {service}: traffic moves to the stable task set as soon as its tasks are healthy again, step by step if its policy's shiftBack asks (`kanaria status {service}` follows it; `kanaria abort --now` moves the rest at once)"),
        ),
        Some((id, Tripped::AlreadyTripped)) => (Exit::Success, format!("rollout {id} of {service} is being rolled back already")),
        Some((_, Tripped::NotInFlight)) | None => (Exit::Failure, no_rollout(service)),
    }
}

/// The line to print after `kanaria deploy`, and the exit code: 0 when a rollout started (or
/// waits its turn), 1 when nothing started, 2 for a digest that is not one.
pub fn deploy_outcome(service: &str, digest: &str, outcome: Result<Outcome, HandlerError>) -> (Exit, String) {
    match outcome {
        Ok(Outcome::Started { execution, .. }) => (Exit::Success, format!("rolling {digest} out to {service}: {execution}")),
        Ok(Outcome::Superseded { execution, superseded, .. }) => (
            Exit::Success,
            format!("rolling {digest} out to {service}: {execution} (the rollout {superseded} in flight is rolled back first)"),
        ),
        Ok(Outcome::Queued { behind, .. }) => {
            (Exit::Success, format!("{digest} is queued behind the rollout {behind} in flight on {service}"))
        }
        Ok(Outcome::Duplicate { execution, .. }) => (Exit::Success, format!("{digest} is rolling out to {service} already: {execution}")),
        Ok(Outcome::AlreadyRunning { .. }) => (Exit::Failure, format!("{service} runs {digest} already; nothing to deploy")),
        Ok(Outcome::NotRunning { reason, .. }) => (Exit::Failure, format!("{digest} was not deployed to {service}: {reason}")),
        Ok(Outcome::Refused { held_by, .. }) => (Exit::Failure, format!("{digest} was not deployed to {service}: {held_by} holds it")),
        Ok(Outcome::AlreadyRolledOut { execution, status, .. }) => {
            (Exit::Failure, format!("{digest} was not deployed to {service}: its rollout {execution} ended {status}"))
        }
        Err(e) if e.error_type == "Kanaria.InvalidInput" => (Exit::Invalid, e.message),
        Err(e) => (Exit::Failure, format!("deploying {digest} to {service} failed: {}", e.message)),
    }
}

/// The line to print after a promote request, and the exit code.
pub fn promote_outcome(service: &str, rollout_id: Option<&str>) -> (Exit, String) {
    match rollout_id {
        Some(id) => (
            Exit::Success,
            format!("promote requested for rollout {id} of {service}: its current bake ends now; it is promoted after a final check"),
        ),
        None => (Exit::Failure, no_rollout(service)),
    }
}

/// The line to print after `kanaria approve` / `kanaria reject`, and the exit code. `None`: no
/// rollout of the service waits for a person.
pub fn decision_outcome(
    service: &str,
    approve: bool,
    result: Option<&Result<crate::handlers::approval::Outcome, crate::handlers::approval::Refusal>>,
) -> (Exit, String) {
    use crate::handlers::approval::{Outcome, Refusal};
    match result {
        None => (Exit::Failure, format!("no rollout of {service} is waiting for an approval")),
        Some(Ok(Outcome::Approved(r))) => {
            (Exit::Success, format!("approved rollout {} of {service} at {}% traffic: it goes on now", r.rollout_id, r.weight))
        }
        Some(Ok(Outcome::RolledBack(r))) => (
            Exit::Success,
            format!("rejected rollout {} of {service}: all traffic is back on the stable task set and the new one is removed", r.rollout_id),
        ),
        Some(Ok(Outcome::TooLate(r))) => (
            Exit::Failure,
            format!("recorded, but rollout {} of {service} had already stopped waiting (timed out or rolled back); see `kanaria status {service}`", r.rollout_id),
        ),
        Some(Err(Refusal::Unknown)) => (Exit::Failure, format!("the approval of {service} is gone; see `kanaria status {service}`")),
        Some(Err(Refusal::Expired(_))) => (Exit::Failure, format!("the approval of {service} has expired; the policy's onTimeout applies")),
        Some(Err(Refusal::OwnPush(_))) => (
            Exit::Failure,
            format!("refused: you pushed this image and the policy of {service} forbids approving your own push; another approver decides"),
        ),
        Some(Err(Refusal::SelfApprovalUnknown(_, why))) => (
            Exit::Failure,
            format!("refused: the policy of {service} forbids approving your own push, and {why}; nothing was decided"),
        ),
        Some(Err(Refusal::AlreadyDecided(r))) => {
            let verb = if approve { "approve" } else { "reject" };
            (
                Exit::Failure,
                format!(
                    "cannot {verb}: the approval of {service} was already {} by {}",
                    r.status.to_lowercase(),
                    r.decided_by.as_deref().unwrap_or("someone")
                ),
            )
        }
    }
}

pub fn no_rollout(service: &str) -> String {
    format!("no rollout in flight for {service}")
}

/// The confirmation question `kanaria promote` asks on a terminal.
pub fn promote_question(service: &str) -> String {
    format!("Promote the rollout of {service} now, skipping its remaining steps? [y/N] ")
}

/// Whether an answer to a `[y/N]` question is yes (`y` or `yes`, any case); anything else,
/// including nothing, is no.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Why `kanaria promote` will not go on without `--yes` when it cannot ask.
pub fn needs_yes(service: &str) -> String {
    format!(
        "not promoting {service}: stdin is not a terminal, so kanaria cannot ask for confirmation; \
         add --yes to promote the rollout of {service} now, skipping its remaining steps"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_outcomes() {
        let restored = ("9f86d081884c7d65".to_string(), Tripped::Restored);
        assert_eq!(
            abort_outcome("demo/web", Some(&restored)),
            (Exit::Success, "rolled back rollout 9f86d081884c7d65 of demo/web: 100% on the stable task set".into())
        );
        let fenced = ("9f86d081884c7d65".to_string(), Tripped::Fenced);
        assert_eq!(
            abort_outcome("demo/web", Some(&fenced)),
            (Exit::Success, "fenced rollout 9f86d081884c7d65 of demo/web; its next step rolls back".into())
        );
        let gone = ("9f86d081884c7d65".to_string(), Tripped::NotInFlight);
        assert_eq!(abort_outcome("demo/web", Some(&gone)), (Exit::Failure, "no rollout in flight for demo/web".into()));
        assert_eq!(abort_outcome("demo/web", None), (Exit::Failure, "no rollout in flight for demo/web".into()));
    }

    #[test]
    fn promote_outcomes() {
        assert_eq!(
            promote_outcome("demo/web", Some("9f86d081884c7d65")),
            (
                Exit::Success,
                "promote requested for rollout 9f86d081884c7d65 of demo/web: its current bake ends now; it is promoted after a final check"
                    .into()
            )
        );
        assert_eq!(promote_outcome("demo/web", None), (Exit::Failure, "no rollout in flight for demo/web".into()));
    }

    #[test]
    fn confirmation() {
        assert_eq!(promote_question("demo/web"), "Promote the rollout of demo/web now, skipping its remaining steps? [y/N] ");
        for yes in ["y", "Y", "yes", "YES\n", " yes "] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "y es", "sure"] {
            assert!(!is_yes(no), "{no:?}");
        }
        assert!(needs_yes("demo/web").contains("add --yes"));
    }
}

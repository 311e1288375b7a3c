//! `kanaria verify CLUSTER/SERVICE [--policy FILE]`: is the service ready for kanaria, and what
//! to change if not. [`crate::aws::inspect::gather`] reads, [`crate::verify::check`] judges,
//! [`format_text`] and [`to_json`] (pure) present.
//!
//! Exit codes: 0 ready; 1 at least one check failed; 2 usage errors, an unreadable policy file
//! or service, or (with nothing failed) checks that could not be made because a read was denied.

use std::path::Path;

use serde_json::{json, Value};

use super::{Exit, GlobalArgs, Output, UsageError};
use crate::aws::inspect::{self, InspectClients, PolicySource};
use crate::verify::{self, Finding, Status, Verdict};

pub async fn run(global: &GlobalArgs, service: &str, policy: Option<&Path>, output: Output) -> anyhow::Result<Exit> {
    let key = super::status::parse_service_key(service)?;
    let source = match policy {
        Some(path) => PolicySource::File {
            name: path.display().to_string(),
            text: std::fs::read_to_string(path).map_err(|e| {
                UsageError(format!(
                    "cannot read the policy file {}: {e}; give the path of the service's policy (YAML or JSON)",
                    path.display()
                ))
            })?,
        },
        None => PolicySource::Parameter { name: format!("{}{key}", crate::aws::normalize_prefix(&global.policy_prefix)) },
    };
    let config = super::aws_config(global).await?;
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    let clients = InspectClients::new(&config);
    let facts = match inspect::gather(&clients, &key, &region, source).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Invalid);
        }
    };
    let findings = verify::check(&facts);
    let verdict = verify::verdict(&findings);
    match output {
        Output::Text => super::emit(&format_text(&key, &facts.policy.source, &findings))?,
        Output::Json => super::emit(&(serde_json::to_string_pretty(&to_json(&key, &facts.policy.source, &findings))? + "\n"))?,
    }
    Ok(match verdict {
        Verdict::Ready => Exit::Success,
        Verdict::NotReady => Exit::Failure,
        Verdict::Incomplete => Exit::Invalid,
    })
}

/// One line per finding (`ok`/`FAIL`/..., the check, what it is about, the verdict), each fix
/// indented below its problem, then the overall verdict.
pub fn format_text(service: &str, policy_source: &str, findings: &[Finding]) -> String {
    let mut out = format!("kanaria verify {service} (policy: {policy_source})\n\n");
    let width = findings.iter().map(|f| f.check.label().len()).max().unwrap_or(0);
    for f in findings {
        out.push_str(&format!("{:<4}  {:<width$}  {}: {}\n", f.status.label(), f.check.label(), f.subject, f.message));
        if let Some(fix) = &f.fix {
            let pad = " ".repeat(6 + width + 2);
            for (i, line) in fix.lines().enumerate() {
                let lead = if i == 0 { "fix: " } else { "     " };
                out.push_str(&format!("{pad}{lead}{line}\n"));
            }
        }
    }
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    out.push('\n');
    out.push_str(&match verify::verdict(findings) {
        Verdict::Ready => format!(
            "{service} is ready for kanaria{}.\n",
            match count(Status::Warn) {
                0 => String::new(),
                n => format!(" ({n} warning(s) worth a look)"),
            }
        ),
        Verdict::NotReady => format!(
            "{service} is NOT ready: {} problem(s) to fix (each with its fix above); run `kanaria verify {service}` again afterwards.\n",
            count(Status::Fail)
        ),
        Verdict::Incomplete => format!(
            "{service}: nothing failed, but {} check(s) could not be made (marked ?); give kanaria verify the read permissions named above.\n",
            count(Status::Unknown)
        ),
    });
    out
}

pub fn to_json(service: &str, policy_source: &str, findings: &[Finding]) -> Value {
    let verdict = verify::verdict(findings);
    json!({
        "service": service,
        "policy": policy_source,
        "ready": verdict == Verdict::Ready,
        "verdict": verdict,
        "problems": findings.iter().filter(|f| f.status == Status::Fail).count(),
        "findings": findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Check;

    fn finding(check: Check, status: Status, fix: Option<&str>) -> Finding {
        Finding { check, status, subject: "web-green".into(), message: "target type is instance".into(), fix: fix.map(str::to_string) }
    }

    #[test]
    fn text_puts_each_fix_under_its_problem_and_ends_with_the_verdict() {
        let findings = vec![
            finding(Check::Policy, Status::Ok, None),
            finding(Check::TargetGroups, Status::Fail, Some("create an ip target group:\naws elbv2 create-target-group ...")),
        ];
        let text = format_text("demo/web", "SSM parameter /kanaria/policies/demo/web", &findings);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "kanaria verify demo/web (policy: SSM parameter /kanaria/policies/demo/web)");
        assert_eq!(lines[2], "ok    policy         web-green: target type is instance");
        assert_eq!(lines[3], "FAIL  target groups  web-green: target type is instance");
        assert_eq!(lines[4], "                     fix: create an ip target group:");
        assert_eq!(lines[5], "                          aws elbv2 create-target-group ...");
        assert!(lines[7].contains("demo/web is NOT ready: 1 problem(s)"), "{text}");
    }

    #[test]
    fn verdict_lines_for_ready_and_incomplete() {
        let ready = format_text(
            "demo/web",
            "file p.yaml",
            &[finding(Check::Logs, Status::Ok, None), finding(Check::Traffic, Status::Warn, Some("x"))],
        );
        assert!(ready.ends_with("demo/web is ready for kanaria (1 warning(s) worth a look).\n"), "{ready}");
        let incomplete =
            format_text("demo/web", "file p.yaml", &[finding(Check::Network, Status::Unknown, Some("allow ec2:DescribeSubnets"))]);
        assert!(incomplete.contains("1 check(s) could not be made"), "{incomplete}");
    }

    #[test]
    fn parses_verify_with_a_policy_file_and_json() {
        use clap::Parser as _;
        let cli = super::super::Cli::try_parse_from(["kanaria", "verify", "demo/web", "--policy", "web.yaml", "--json"]).unwrap();
        match cli.command {
            super::super::Command::Verify { service, policy, json, output } => {
                assert_eq!(
                    (service.as_str(), policy.as_deref(), json, output),
                    ("demo/web", Some(Path::new("web.yaml")), true, Output::Text)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(super::super::Cli::try_parse_from(["kanaria", "verify"]).unwrap_err().exit_code(), 2);
    }

    #[tokio::test]
    async fn a_bad_service_or_policy_file_is_a_usage_error_before_any_aws_call() {
        use clap::Parser as _;
        for args in [vec!["kanaria", "verify", "web"], vec!["kanaria", "verify", "demo/web", "--policy", "/nonexistent/kanaria.yaml"]] {
            let err = super::super::run(super::super::Cli::try_parse_from(&args).unwrap()).await.unwrap_err();
            assert_eq!(super::super::exit_for_error(&err), Exit::Invalid, "{args:?}: {err:#}");
        }
    }

    #[test]
    fn json_has_the_verdict_and_every_finding() {
        let v = to_json("demo/web", "file p.yaml", &[finding(Check::TargetGroups, Status::Fail, Some("fix it"))]);
        assert_eq!(v["ready"], false);
        assert_eq!(v["verdict"], "notReady");
        assert_eq!(v["problems"], 1);
        assert_eq!(v["findings"][0]["check"], "target-groups");
        assert_eq!(v["findings"][0]["status"], "fail");
        assert_eq!(v["findings"][0]["fix"], "fix it");
    }
}

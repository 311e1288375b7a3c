//! `kanaria policy validate|apply`: check policy files and report every problem with its fix.
//! `validate` also looks the policies' alarms up in CloudWatch ([`add_unknown_alarms`]), since
//! CloudWatch ignores alarm names it does not know.

use std::path::Path;

use serde::Serialize;

use crate::policy::{self, Policy, Problem};

/// The outcome of validating one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    pub file: String,
    pub valid: bool,
    pub problems: Vec<Problem>,
    /// The parsed policy, when valid.
    #[serde(skip)]
    pub policy: Option<Policy>,
    /// The alarms the document lists (also when it is invalid), to look up in CloudWatch.
    #[serde(skip)]
    pub alarms: Vec<String>,
}

/// Validate policy text (YAML or JSON); `file` names it in the report.
pub fn validate_text(file: &str, text: &str) -> FileReport {
    let alarms = policy::listed_alarms(text);
    match policy::parse(file, text) {
        Ok(p) => FileReport { file: file.to_string(), valid: true, problems: Vec::new(), policy: Some(p), alarms },
        Err(e) => FileReport { file: file.to_string(), valid: false, problems: e.problems().to_vec(), policy: None, alarms },
    }
}

/// Every alarm the reports' documents list, once each, in order.
pub fn listed_alarms(reports: &[FileReport]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in reports.iter().flat_map(|r| r.alarms.iter()) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Add a problem for each listed alarm CloudWatch did not return (`known`: the names it
/// returned, metric and composite); a report with one is invalid.
pub fn add_unknown_alarms(reports: &mut [FileReport], known: &[String], region: &str) {
    for r in reports {
        let unknown = policy::unknown_alarms(&r.alarms, known, region);
        if !unknown.is_empty() {
            r.valid = false;
            r.policy = None;
            r.problems.extend(unknown);
        }
    }
}

/// Read and validate a policy file. A file that cannot be read is reported as invalid.
pub fn validate_file(path: &Path) -> FileReport {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => validate_text(&file, &text),
        Err(e) => FileReport {
            problems: vec![Problem {
                path: "(file)".into(),
                message: format!("cannot be read: {e}"),
                fix: "check the file name and that you may read it".into(),
            }],
            file,
            valid: false,
            policy: None,
            alarms: Vec::new(),
        },
    }
}

/// `FILE: ok`, or one `FILE: PATH: MESSAGE` line and a `  fix: FIX` line per problem.
pub fn format_reports_text(reports: &[FileReport]) -> String {
    let mut out = String::new();
    for r in reports {
        if r.valid {
            out.push_str(&format!("{}: ok\n", r.file));
        }
        for p in &r.problems {
            out.push_str(&format!("{}: {}: {}\n  fix: {}\n", r.file, p.path, p.message, p.fix));
        }
    }
    out
}

/// `[{file, valid, problems: [{path, message, fix}]}]`
pub fn reports_json(reports: &[FileReport]) -> serde_json::Value {
    serde_json::to_value(reports).expect("reports serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
service: { cluster: demo, name: web }
container: app
trigger: { repository: demo/web, tags: ["v*"] }
traffic:
  listenerArn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/demo/50dc6c495c0c9188/f2f7dc8efc522ab2
  targetGroups:
    - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/73e2d6bc24d8a067
    - arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2453ed029918f21f
strategy:
  canary:
    steps:
      - { weight: 10, bake: 1m }
      - { weight: 100, bake: 1m }
"#;

    #[test]
    fn valid_file_reports_ok() {
        let r = validate_text("web.yaml", GOOD);
        assert!(r.valid);
        assert_eq!(r.policy.as_ref().unwrap().service.key(), "demo/web");
        assert_eq!(format_reports_text(&[r]), "web.yaml: ok\n");
    }

    #[test]
    fn every_problem_is_printed_with_its_fix() {
        let bad = GOOD.replace("weight: 10,", "weight: 0,").replace("repository: demo/web", "repository: Demo/Web");
        let reports = [validate_text("web.yaml", GOOD), validate_text("bad.yaml", &bad)];
        let text = format_reports_text(&reports);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "web.yaml: ok");
        assert!(lines[1].starts_with("bad.yaml: trigger.repository: \"Demo/Web\" is not an ECR repository name"), "{text}");
        assert!(lines[2].starts_with("  fix: use the repository name as ECR shows it"), "{text}");
        assert_eq!(lines[3], "bad.yaml: strategy.canary.steps[0].weight: 0 is not a percentage from 1 to 100");
        assert_eq!(lines[4], "  fix: use a weight from 1 to 100");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn json_report_has_file_valid_and_problems() {
        let typo = GOOD.replace("container: app", "containr: app");
        let json = reports_json(&[validate_text("web.yaml", GOOD), validate_text("typo.yaml", &typo)]);
        assert_eq!(json[0], serde_json::json!({ "file": "web.yaml", "valid": true, "problems": [] }));
        assert_eq!(json[1]["file"], "typo.yaml");
        assert_eq!(json[1]["valid"], false);
        let problem = json[1]["problems"][0].as_object().unwrap();
        let mut keys: Vec<&str> = problem.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, vec!["fix", "message", "path"]);
        assert!(problem["message"].as_str().unwrap().contains("containr"));
    }

    #[test]
    fn alarms_cloudwatch_does_not_know_make_a_file_invalid() {
        let with_alarms = GOOD.replace("container: app", "container: app\nalarms: [web-5xx, web-latncy]");
        let broken = with_alarms.replace("weight: 10,", "weight: 0,").replace("web-latncy", "web-health");
        let mut reports = [validate_text("web.yaml", &with_alarms), validate_text("bad.yaml", &broken), validate_text("plain.yaml", GOOD)];
        assert_eq!(listed_alarms(&reports), ["web-5xx", "web-latncy", "web-health"]);
        add_unknown_alarms(&mut reports, &["web-5xx".to_string(), "web-health".to_string()], "us-east-1");
        assert!(!reports[0].valid && reports[0].policy.is_none());
        assert!(reports[2].valid, "a policy without alarms stays valid");
        let text = format_reports_text(&reports);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "web.yaml: alarms[1]: no CloudWatch alarm named \"web-latncy\" in us-east-1, metric or composite: CloudWatch ignores \
             names it does not know, so this alarm would never roll a rollout back"
        );
        assert!(lines[1].starts_with("  fix: create the alarm in us-east-1, correct the name"), "{text}");
        assert_eq!(lines[2], "bad.yaml: strategy.canary.steps[0].weight: 0 is not a percentage from 1 to 100");
        assert_eq!(lines[4], "plain.yaml: ok");
        assert_eq!(lines.len(), 5, "{text}");
    }

    #[test]
    fn unreadable_file_is_invalid() {
        let r = validate_file(Path::new("/nonexistent/kanaria/policy.yaml"));
        assert!(!r.valid);
        assert_eq!(r.problems[0].path, "(file)");
        assert!(format_reports_text(&[r]).starts_with("/nonexistent/kanaria/policy.yaml: (file): cannot be read: "));
    }
}

//! Reads `template.yaml` so the local runtime wires things exactly as the SAM application does:
//! which binary each function runs, the EventBridge patterns that invoke it, and the state
//! machines with their `DefinitionSubstitutions`. Nothing here is copied from the template.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use kanaria::handlers::Function;
use serde_yaml_ng::Value;

#[derive(Debug, Clone)]
pub struct TemplateFunction {
    pub logical_id: String,
    pub function: Function,
    /// (event name, EventBridge pattern) of every `EventBridgeRule` event of the function.
    pub rules: Vec<(String, serde_json::Value)>,
    /// (event name, queue logical id) of every `SQS` event of the function (`Queue: !GetAtt Q.Arn`).
    pub queues: Vec<(String, String)>,
    /// `FunctionUrlConfig.AuthType` (`NONE`, `AWS_IAM`) when the function has a URL.
    pub url_auth: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Substitution {
    /// `!GetAtt Fn.Arn`: the ARN of a function of the template.
    FunctionArn(String),
    Literal(String),
}

#[derive(Debug, Clone)]
pub struct TemplateStateMachine {
    pub logical_id: String,
    /// Its `Name` (resolved with the local stack name), else the logical id.
    pub name: String,
    pub definition_uri: String,
    pub substitutions: Vec<(String, Substitution)>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub functions: Vec<TemplateFunction>,
    pub state_machines: Vec<TemplateStateMachine>,
}

impl Template {
    pub fn function_by_logical_id(&self, id: &str) -> Option<&TemplateFunction> {
        self.functions.iter().find(|f| f.logical_id == id)
    }
}

fn tag_name(tag: &serde_yaml_ng::value::Tag) -> String {
    tag.to_string().trim_start_matches('!').to_string()
}

/// `!GetAtt X.Arn`, `{Fn::GetAtt: [X, Arn]}` or a plain string.
fn substitution(value: &Value) -> Result<Substitution> {
    match value {
        Value::String(s) => Ok(Substitution::Literal(s.clone())),
        Value::Tagged(t) if tag_name(&t.tag) == "GetAtt" => {
            let target = t.value.as_str().ok_or_else(|| anyhow!("!GetAtt needs a string"))?;
            let (id, attr) = target.split_once('.').ok_or_else(|| anyhow!("!GetAtt {target} has no attribute"))?;
            if attr != "Arn" {
                bail!("only !GetAtt X.Arn is supported locally, not {target}");
            }
            Ok(Substitution::FunctionArn(id.to_string()))
        }
        Value::Mapping(m) if m.len() == 1 && m.contains_key("Fn::GetAtt") => {
            let parts = m["Fn::GetAtt"].as_sequence().ok_or_else(|| anyhow!("Fn::GetAtt needs a list"))?;
            let id = parts.first().and_then(Value::as_str).ok_or_else(|| anyhow!("Fn::GetAtt needs a logical id"))?;
            Ok(Substitution::FunctionArn(id.to_string()))
        }
        other => bail!("unsupported substitution value {other:?}"),
    }
}

pub fn read(path: &Path) -> Result<Template> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

/// `!Sub "...${Param}..."` in an event pattern, with each parameter's `Default` (and the local
/// account and region for `AWS::AccountId`/`AWS::Region`), as CloudFormation would resolve it.
fn resolve_subs(value: &Value, defaults: &std::collections::HashMap<String, String>) -> Result<Value> {
    Ok(match value {
        Value::Tagged(t) if tag_name(&t.tag) == "Sub" => {
            let mut text = t.value.as_str().ok_or_else(|| anyhow!("only the one-string form of !Sub is supported locally"))?.to_string();
            while let Some(start) = text.find("${") {
                let end = text[start..].find('}').ok_or_else(|| anyhow!("unclosed ${{ in !Sub {text:?}"))? + start;
                let name = &text[start + 2..end];
                let value = match name {
                    "AWS::AccountId" => crate::ACCOUNT.to_string(),
                    "AWS::Region" => crate::REGION.to_string(),
                    "AWS::Partition" => "aws".to_string(),
                    "AWS::StackName" => crate::STACK_NAME.to_string(),
                    _ => defaults.get(name).cloned().ok_or_else(|| anyhow!("!Sub names {name}, not a parameter with a Default"))?,
                };
                text.replace_range(start..=end, &value);
            }
            Value::String(text)
        }
        Value::Tagged(t) => bail!("unsupported {} in an event pattern", t.tag),
        Value::Mapping(m) => Value::Mapping(m.iter().map(|(k, v)| Ok((k.clone(), resolve_subs(v, defaults)?))).collect::<Result<_>>()?),
        Value::Sequence(items) => Value::Sequence(items.iter().map(|v| resolve_subs(v, defaults)).collect::<Result<_>>()?),
        other => other.clone(),
    })
}

pub fn parse(text: &str) -> Result<Template> {
    let doc: Value = serde_yaml_ng::from_str(text)?;
    let defaults: std::collections::HashMap<String, String> = doc
        .get("Parameters")
        .and_then(Value::as_mapping)
        .map(|params| {
            params
                .iter()
                .filter_map(|(name, p)| {
                    let default = match p.get("Default")? {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    Some((name.as_str()?.to_string(), default))
                })
                .collect()
        })
        .unwrap_or_default();
    let resources = doc.get("Resources").and_then(Value::as_mapping).ok_or_else(|| anyhow!("no Resources"))?;
    let mut functions = Vec::new();
    let mut state_machines = Vec::new();
    for (id, resource) in resources {
        let id = id.as_str().unwrap_or_default().to_string();
        let kind = resource.get("Type").and_then(Value::as_str).unwrap_or_default();
        let props = resource.get("Properties");
        match kind {
            "AWS::Serverless::Function" => {
                let binary = resource
                    .get("Metadata")
                    .and_then(|m| m.get("BuildProperties"))
                    .and_then(|b| b.get("Binary"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("function {id} has no Metadata.BuildProperties.Binary"))?;
                let has_rules = props
                    .and_then(|p| p.get("Events"))
                    .and_then(Value::as_mapping)
                    .is_some_and(|events| events.values().any(|e| e.get("Type").and_then(Value::as_str) == Some("EventBridgeRule")));
                let Some(function) = Function::from_crate_name(binary) else {
                    // A function this runtime does not host (its crate has no handler in
                    // `kanaria::handlers` yet) is fine as long as no rule here routes to it.
                    // tests/template.rs checks every Binary against CodeUri for `sam build`.
                    if has_rules {
                        bail!("function {id} runs unknown binary {binary}, and its EventBridge rules need it locally");
                    }
                    continue;
                };
                let mut rules = Vec::new();
                let mut queues = Vec::new();
                if let Some(events) = props.and_then(|p| p.get("Events")).and_then(Value::as_mapping) {
                    for (name, event) in events {
                        if event.get("Type").and_then(Value::as_str) == Some("SQS") {
                            let queue = event
                                .get("Properties")
                                .and_then(|p| p.get("Queue"))
                                .ok_or_else(|| anyhow!("SQS event {name:?} of {id} has no Queue"))?;
                            let Substitution::FunctionArn(queue) = substitution(queue)? else {
                                bail!("SQS event {name:?} of {id}: Queue must be !GetAtt QUEUE.Arn");
                            };
                            queues.push((name.as_str().unwrap_or_default().to_string(), queue));
                        }
                        if event.get("Type").and_then(Value::as_str) == Some("EventBridgeRule") {
                            let pattern = event
                                .get("Properties")
                                .and_then(|p| p.get("Pattern"))
                                .ok_or_else(|| anyhow!("event {name:?} of {id} has no Pattern"))?;
                            let pattern: serde_json::Value = serde_yaml_ng::from_value(resolve_subs(pattern, &defaults)?)?;
                            rules.push((name.as_str().unwrap_or_default().to_string(), pattern));
                        }
                    }
                }
                let url_auth = props
                    .and_then(|p| p.get("FunctionUrlConfig"))
                    .and_then(|c| c.get("AuthType"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                functions.push(TemplateFunction { logical_id: id, function, rules, queues, url_auth });
            }
            "AWS::Serverless::StateMachine" => {
                let definition_uri = props
                    .and_then(|p| p.get("DefinitionUri"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("state machine {id} has no DefinitionUri"))?
                    .to_string();
                let mut substitutions = Vec::new();
                if let Some(subs) = props.and_then(|p| p.get("DefinitionSubstitutions")).and_then(Value::as_mapping) {
                    for (k, v) in subs {
                        substitutions.push((k.as_str().unwrap_or_default().to_string(), substitution(v)?));
                    }
                }
                let name = match props.and_then(|p| p.get("Name")) {
                    Some(n) => resolve_subs(n, &defaults)?
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| anyhow!("state machine {id}: Name must resolve to a string"))?,
                    None => id.clone(),
                };
                state_machines.push(TemplateStateMachine { logical_id: id, name, definition_uri, substitutions });
            }
            _ => {}
        }
    }
    Ok(Template { functions, state_machines })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_projects_template() {
        let t = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")).unwrap();
        let push = t.functions.iter().find(|f| f.function == Function::OnImagePush).unwrap();
        // The push itself, and CloudTrail's record of who pushed.
        assert_eq!(push.rules.len(), 2);
        assert!(push.rules.iter().all(|r| r.1["source"][0] == "aws.ecr"));
        let detail_types: Vec<&str> = push.rules.iter().filter_map(|r| r.1["detail-type"][0].as_str()).collect();
        assert!(detail_types.contains(&"ECR Image Action") && detail_types.contains(&"AWS API Call via CloudTrail"), "{detail_types:?}");
        let sync = t.functions.iter().find(|f| f.function == Function::PolicySync).unwrap();
        assert_eq!(sync.rules[0].1["detail"]["name"][0]["prefix"], "/kanaria/policies/", "!Sub resolved with the PolicyPath default");
        let sm = &t.state_machines[0];
        assert_eq!(sm.name, "kanaria-rollout", "Name resolved with the local stack name");
        assert!(sm.substitutions.iter().any(|(k, v)| k == "RolloutStepFunctionArn"
            && matches!(v, Substitution::FunctionArn(id) if t.function_by_logical_id(id).map(|f| f.function) == Some(Function::RolloutStep))));
    }
}

//! The IAM statements of every function of a SAM `template.yaml`, as AWS would see them once
//! the stack is deployed: the function's `Role: !GetAtt SomeRole.Arn`, that role's inline
//! `Policies`, the template's managed policies in its `ManagedPolicyArns`, and the template's
//! `AWS::IAM::Policy`/`AWS::IAM::ManagedPolicy` resources that name the role in `Roles`.
//!
//! Intrinsic functions are resolved as CloudFormation would (short `!Sub` tags and long
//! `Fn::Sub` forms): `Ref`, `Fn::Sub`, `Fn::GetAtt`, `Fn::If` with the template's `Conditions`,
//! `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::FindInMap`, `AWS::NoValue`. Values CloudFormation
//! would only know after creating resources (`!Ref Topic`, `!GetAtt Table.Arn`) come from the
//! [`Resolver`]; a missing one is an error naming the logical id, never a silent guess.
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference.html>

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail, Context as _, Result};
use serde_yaml_ng::{Mapping, Value};

/// A statement's `Effect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One key of a statement's `Condition`: `{operator: {key: values}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// As written, e.g. `StringEquals`, `ForAnyValue:StringLike`, `ArnLikeIfExists`.
    pub operator: String,
    /// As written, e.g. `aws:ResourceTag/kanaria:managed`.
    pub key: String,
    /// The policy's values (ORed); booleans and numbers as text.
    pub values: Vec<String>,
}

/// One resolved IAM policy statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub action: Vec<String>,
    pub not_action: Vec<String>,
    pub resource: Vec<String>,
    pub not_resource: Vec<String>,
    pub conditions: Vec<Condition>,
    /// Where it comes from, for messages: `RolloutStepRole inline rollout-step / PassTheServicesTaskRoles`.
    pub origin: String,
}

/// The values CloudFormation would supply when deploying the stack.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// `${AWS::Partition}`, normally `aws`.
    pub partition: String,
    pub region: String,
    pub account: String,
    pub stack_name: String,
    /// Parameter values; a parameter not named here takes its `Default`.
    pub parameters: HashMap<String, String>,
    /// `!Ref Logical` (and `${Logical}` in `!Sub`) of resources: topic ARNs, table names...
    pub refs: HashMap<String, String>,
    /// `!GetAtt Logical.Attr` (and `${Logical.Attr}`), keyed `"Logical.Attr"`.
    pub attrs: HashMap<String, String>,
}

impl Resolver {
    /// A resolver for partition `aws`, with no parameter overrides and no resource values yet.
    pub fn new(account: &str, region: &str, stack_name: &str) -> Resolver {
        Resolver {
            partition: "aws".into(),
            region: region.into(),
            account: account.into(),
            stack_name: stack_name.into(),
            ..Resolver::default()
        }
    }
}

/// The statements of every function of the template (`AWS::Serverless::Function` or
/// `AWS::Lambda::Function` whose `Condition`, if any, holds), keyed by the function's logical id.
pub fn function_statements(template_yaml: &str, resolver: &Resolver) -> Result<BTreeMap<String, Vec<Statement>>> {
    principal_statements(template_yaml, resolver, &["AWS::Serverless::Function", "AWS::Lambda::Function"])
}

/// The statements of every state machine of the template (its role: the Lambda functions it may
/// invoke), keyed by the state machine's logical id.
pub fn state_machine_statements(template_yaml: &str, resolver: &Resolver) -> Result<BTreeMap<String, Vec<Statement>>> {
    principal_statements(template_yaml, resolver, &["AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"])
}

fn principal_statements(template_yaml: &str, resolver: &Resolver, types: &[&str]) -> Result<BTreeMap<String, Vec<Statement>>> {
    let root: Value = serde_yaml_ng::from_str(template_yaml).context("template.yaml is not YAML")?;
    let template = Template::new(&root, resolver)?;
    let mut out = BTreeMap::new();
    for (logical_id, resource) in &template.resources {
        if !types.contains(&resource_type(resource)) || !template.resource_condition_holds(resource)? {
            continue;
        }
        let role = template.role_of(logical_id, resource)?;
        let statements = template.role_statements(&role).with_context(|| format!("the role {role} of function {logical_id}"))?;
        out.insert(logical_id.clone(), statements);
    }
    Ok(out)
}

/// The statements of one IAM policy document (JSON, as in the IAM console or an API call).
/// Each statement's origin is `origin / Sid` (or `origin / statement N`).
pub fn statements_from_policy(document: &serde_json::Value, origin: &str) -> Result<Vec<Statement>> {
    let value = serde_yaml_ng::to_value(document).context("policy document")?;
    parse_document(&value, origin)
}

/// The template being read, with the resolver and the conditions evaluated so far.
struct Template<'a> {
    resources: BTreeMap<String, &'a Value>,
    parameters: Option<&'a Mapping>,
    conditions: Option<&'a Mapping>,
    mappings: Option<&'a Mapping>,
    globals_role: Option<&'a Value>,
    resolver: &'a Resolver,
    evaluated: RefCell<HashMap<String, bool>>,
}

fn resource_type(resource: &Value) -> &str {
    resource.get("Type").and_then(Value::as_str).unwrap_or("")
}

/// An intrinsic function in either form: `!Sub x` (a YAML tag) or `{Fn::Sub: x}`; the name
/// without `Fn::` (`Ref`, `Sub`, `GetAtt`, `If`, `Condition`...).
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => Some((tagged.tag.to_string().trim_start_matches('!').to_string(), &tagged.value)),
        Value::Mapping(m) if m.len() == 1 => {
            let (key, arg) = m.iter().next()?;
            match key.as_str()? {
                "Ref" => Some(("Ref".into(), arg)),
                "Condition" => Some(("Condition".into(), arg)),
                k => k.strip_prefix("Fn::").map(|name| (name.to_string(), arg)),
            }
        }
        _ => None,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn args<'v>(name: &str, arg: &'v Value, count: usize) -> Result<&'v [Value]> {
    match arg.as_sequence() {
        Some(list) if list.len() == count => Ok(list),
        _ => bail!("Fn::{name} takes a list of {count}, not {}", serde_yaml_ng::to_string(arg).unwrap_or_default().trim()),
    }
}

impl<'a> Template<'a> {
    fn new(root: &'a Value, resolver: &'a Resolver) -> Result<Template<'a>> {
        let resources = root
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| anyhow!("the template has no Resources mapping"))?
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v)))
            .collect();
        Ok(Template {
            resources,
            parameters: root.get("Parameters").and_then(Value::as_mapping),
            conditions: root.get("Conditions").and_then(Value::as_mapping),
            mappings: root.get("Mappings").and_then(Value::as_mapping),
            globals_role: root.get("Globals").and_then(|g| g.get("Function")).and_then(|f| f.get("Role")),
            resolver,
            evaluated: RefCell::new(HashMap::new()),
        })
    }

    fn resource_condition_holds(&self, resource: &Value) -> Result<bool> {
        match resource.get("Condition").and_then(Value::as_str) {
            Some(name) => self.condition(name, 0),
            None => Ok(true),
        }
    }

    /// The logical id of the function's role: its `Role` (or the `Globals` one) must be
    /// `!GetAtt <Role>.Arn` of an `AWS::IAM::Role` of this template.
    fn role_of(&self, function: &str, resource: &Value) -> Result<String> {
        let role = resource.get("Properties").and_then(|p| p.get("Role")).or(self.globals_role).ok_or_else(|| {
            anyhow!("{function} has no Role: SAM would generate one from its Policies, which this crate does not read; give it an AWS::IAM::Role of the template")
        })?;
        let target = match intrinsic(role) {
            Some((name, arg)) if name == "GetAtt" => match arg {
                Value::String(s) => s.split_once('.').filter(|(_, attr)| *attr == "Arn").map(|(id, _)| id.to_string()),
                Value::Sequence(list) if list.len() == 2 && list[1].as_str() == Some("Arn") => list[0].as_str().map(str::to_string),
                _ => None,
            },
            _ => None,
        };
        match target {
            Some(id) if self.resources.get(&id).is_some_and(|r| resource_type(r) == "AWS::IAM::Role") => Ok(id),
            _ => bail!(
                "{function}'s Role is not !GetAtt <Role>.Arn of an AWS::IAM::Role of this template, so its permissions are unknown here"
            ),
        }
    }

    fn role_statements(&self, role: &str) -> Result<Vec<Statement>> {
        let resource = self.resources.get(role).ok_or_else(|| anyhow!("{role} is not a resource of the template"))?;
        let props = resource.get("Properties").ok_or_else(|| anyhow!("{role} has no Properties"))?;
        if props.get("PermissionsBoundary").is_some() {
            bail!("{role} has a PermissionsBoundary, which this evaluator does not apply; remove it or teach local/iam about boundaries");
        }
        let mut statements = Vec::new();
        if let Some(policies) = props.get("Policies") {
            let policies = self.resolve(policies).with_context(|| format!("{role} Policies"))?.unwrap_or(Value::Null);
            for policy in policies.as_sequence().map(Vec::as_slice).unwrap_or_default() {
                let name = policy.get("PolicyName").and_then(scalar_text).unwrap_or_else(|| "(unnamed)".into());
                let document = policy.get("PolicyDocument").ok_or_else(|| anyhow!("{role} inline policy {name} has no PolicyDocument"))?;
                statements.extend(parse_document(document, &format!("{role} inline {name}"))?);
            }
        }
        for entry in props.get("ManagedPolicyArns").and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or_default() {
            let Some(entry) = self.select(entry)? else { continue };
            let policy = match intrinsic(entry) {
                Some((name, arg)) if name == "Ref" => {
                    arg.as_str().filter(|id| self.resources.get(*id).is_some_and(|r| resource_type(r) == "AWS::IAM::ManagedPolicy"))
                }
                _ => None,
            };
            let Some(policy) = policy else {
                let shown = self.resolve(entry).ok().flatten().and_then(|v| scalar_text(&v)).unwrap_or_else(|| format!("{entry:?}"));
                bail!("{role} attaches the managed policy {shown}, which is not an AWS::IAM::ManagedPolicy of this template, so its statements are unknown here; write the permissions into the template");
            };
            statements.extend(self.policy_resource_statements(role, "managed", policy)?);
        }
        // Policies that attach themselves to the role (`Roles: [!Ref Role]`).
        for (id, resource) in &self.resources {
            if !matches!(resource_type(resource), "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy") {
                continue;
            }
            let roles =
                resource.get("Properties").and_then(|p| p.get("Roles")).and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or_default();
            let mut names_role = false;
            for r in roles {
                if let Some(r) = self.select(r)? {
                    names_role |= matches!(intrinsic(r), Some((name, arg)) if name == "Ref" && arg.as_str() == Some(role));
                }
            }
            if names_role {
                statements.extend(self.policy_resource_statements(role, "policy", id)?);
            }
        }
        Ok(statements)
    }

    fn policy_resource_statements(&self, role: &str, kind: &str, policy: &str) -> Result<Vec<Statement>> {
        let resource = self.resources.get(policy).ok_or_else(|| anyhow!("{policy} is not a resource of the template"))?;
        if !self.resource_condition_holds(resource)? {
            return Ok(vec![]);
        }
        let document =
            resource.get("Properties").and_then(|p| p.get("PolicyDocument")).ok_or_else(|| anyhow!("{policy} has no PolicyDocument"))?;
        let document = self.resolve(document).with_context(|| format!("{policy} PolicyDocument"))?.unwrap_or(Value::Null);
        parse_document(&document, &format!("{role} {kind} {policy}"))
    }

    /// Looks through `!If` to the value chosen; `None` for `!Ref AWS::NoValue`.
    fn select<'v>(&self, value: &'v Value) -> Result<Option<&'v Value>> {
        match intrinsic(value) {
            Some((name, arg)) if name == "If" => {
                let list = args("If", arg, 3)?;
                let condition = list[0].as_str().ok_or_else(|| anyhow!("Fn::If names its condition with a string"))?;
                let chosen = if self.condition(condition, 0)? { &list[1] } else { &list[2] };
                self.select(chosen)
            }
            Some((name, arg)) if name == "Ref" && arg.as_str() == Some("AWS::NoValue") => Ok(None),
            _ => Ok(Some(value)),
        }
    }

    /// A condition of the template's `Conditions`, evaluated once.
    fn condition(&self, name: &str, depth: usize) -> Result<bool> {
        if let Some(&known) = self.evaluated.borrow().get(name) {
            return Ok(known);
        }
        if depth > 32 {
            bail!("condition {name} refers to itself");
        }
        let expr = self
            .conditions
            .and_then(|c| c.get(name))
            .ok_or_else(|| anyhow!("there is no condition {name} in the template's Conditions"))?;
        let value = self.condition_expr(expr, depth + 1).with_context(|| format!("condition {name}"))?;
        self.evaluated.borrow_mut().insert(name.to_string(), value);
        Ok(value)
    }

    fn condition_expr(&self, expr: &Value, depth: usize) -> Result<bool> {
        let (name, arg) =
            intrinsic(expr).ok_or_else(|| anyhow!("a condition must be Fn::Equals, Fn::Not, Fn::And, Fn::Or or Condition"))?;
        match name.as_str() {
            "Equals" => {
                let list = args("Equals", arg, 2)?;
                let text = |v: &Value| -> Result<String> {
                    let resolved = self.resolve(v)?.unwrap_or(Value::Null);
                    scalar_text(&resolved).ok_or_else(|| anyhow!("Fn::Equals compares strings"))
                };
                Ok(text(&list[0])? == text(&list[1])?)
            }
            "Not" => Ok(!self.condition_expr(&args("Not", arg, 1)?[0], depth)?),
            "And" | "Or" => {
                let list = arg.as_sequence().ok_or_else(|| anyhow!("Fn::{name} takes a list"))?;
                let mut values = Vec::with_capacity(list.len());
                for item in list {
                    values.push(self.condition_expr(item, depth)?);
                }
                Ok(if name == "And" { values.iter().all(|v| *v) } else { values.iter().any(|v| *v) })
            }
            "Condition" => self.condition(arg.as_str().ok_or_else(|| anyhow!("Condition takes a name"))?, depth),
            other => bail!("Fn::{other} is not a condition function"),
        }
    }

    /// Resolves every intrinsic in `value`; `None` when it is `!Ref AWS::NoValue`.
    fn resolve(&self, value: &Value) -> Result<Option<Value>> {
        if let Some((name, arg)) = intrinsic(value) {
            return self.intrinsic_value(&name, arg);
        }
        Ok(Some(match value {
            Value::Sequence(list) => {
                let mut out = Vec::with_capacity(list.len());
                for item in list {
                    out.extend(self.resolve(item)?);
                }
                Value::Sequence(out)
            }
            Value::Mapping(map) => {
                let mut out = Mapping::new();
                for (k, v) in map {
                    if let Some(v) = self.resolve(v)? {
                        out.insert(k.clone(), v);
                    }
                }
                Value::Mapping(out)
            }
            other => other.clone(),
        }))
    }

    fn text(&self, value: &Value, what: &str) -> Result<String> {
        let resolved = self.resolve(value)?.unwrap_or(Value::Null);
        scalar_text(&resolved).ok_or_else(|| anyhow!("{what} must be a string"))
    }

    fn intrinsic_value(&self, name: &str, arg: &Value) -> Result<Option<Value>> {
        let text = |s: String| Ok(Some(Value::String(s)));
        match name {
            "Ref" => {
                let id = arg.as_str().ok_or_else(|| anyhow!("Ref takes a logical id"))?;
                if id == "AWS::NoValue" {
                    return Ok(None);
                }
                self.reference(id).map(Some)
            }
            "GetAtt" => {
                let key = match arg {
                    Value::String(s) => s.clone(),
                    Value::Sequence(list) if list.len() == 2 => {
                        format!("{}.{}", self.text(&list[0], "Fn::GetAtt's logical id")?, self.text(&list[1], "Fn::GetAtt's attribute")?)
                    }
                    _ => bail!("Fn::GetAtt takes Logical.Attr or [Logical, Attr]"),
                };
                text(self.attribute(&key)?)
            }
            "Sub" => {
                let (template, vars) = match arg {
                    Value::Sequence(list) if list.len() == 2 => (self.text(&list[0], "Fn::Sub's string")?, list[1].as_mapping()),
                    Value::Sequence(_) => bail!("Fn::Sub takes a string or [string, {{variables}}]"),
                    other => (self.text(other, "Fn::Sub's string")?, None),
                };
                text(self.substitute(&template, vars)?)
            }
            "If" => {
                let list = args("If", arg, 3)?;
                let condition = list[0].as_str().ok_or_else(|| anyhow!("Fn::If names its condition with a string"))?;
                self.resolve(if self.condition(condition, 0)? { &list[1] } else { &list[2] })
            }
            "Join" => {
                let list = args("Join", arg, 2)?;
                let delimiter = self.text(&list[0], "Fn::Join's delimiter")?;
                let items = self.resolve(&list[1])?.unwrap_or(Value::Null);
                let items = items.as_sequence().ok_or_else(|| anyhow!("Fn::Join joins a list"))?;
                let parts: Option<Vec<String>> = items.iter().map(scalar_text).collect();
                text(parts.ok_or_else(|| anyhow!("Fn::Join joins strings"))?.join(&delimiter))
            }
            "Select" => {
                let list = args("Select", arg, 2)?;
                let index: usize = self.text(&list[0], "Fn::Select's index")?.parse().context("Fn::Select's index")?;
                let items = self.resolve(&list[1])?.unwrap_or(Value::Null);
                let item =
                    items.as_sequence().and_then(|l| l.get(index)).ok_or_else(|| anyhow!("Fn::Select index {index} is out of range"))?;
                Ok(Some(item.clone()))
            }
            "Split" => {
                let list = args("Split", arg, 2)?;
                let delimiter = self.text(&list[0], "Fn::Split's delimiter")?;
                let source = self.text(&list[1], "Fn::Split's string")?;
                Ok(Some(Value::Sequence(source.split(delimiter.as_str()).map(|s| Value::String(s.to_string())).collect())))
            }
            "FindInMap" => {
                let list = args("FindInMap", arg, 3)?;
                let keys =
                    [self.text(&list[0], "map name")?, self.text(&list[1], "top-level key")?, self.text(&list[2], "second-level key")?];
                let found = self
                    .mappings
                    .and_then(|m| m.get(keys[0].as_str()))
                    .and_then(|m| m.get(keys[1].as_str()))
                    .and_then(|m| m.get(keys[2].as_str()));
                Ok(Some(found.cloned().ok_or_else(|| anyhow!("Fn::FindInMap {keys:?} is not in the template's Mappings"))?))
            }
            other => bail!("Fn::{other} is not supported in IAM policies by local/iam; add it to local/iam/src/template.rs"),
        }
    }

    /// `!Ref id`: a pseudo parameter, a parameter (its value or `Default`), or a resource (the
    /// resolver's value).
    fn reference(&self, id: &str) -> Result<Value> {
        let r = self.resolver;
        let pseudo = match id {
            "AWS::Partition" => Some(r.partition.clone()),
            "AWS::Region" => Some(r.region.clone()),
            "AWS::AccountId" => Some(r.account.clone()),
            "AWS::StackName" => Some(r.stack_name.clone()),
            "AWS::URLSuffix" => Some(if r.partition == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" }.to_string()),
            _ => None,
        };
        if let Some(value) = pseudo {
            return Ok(Value::String(value));
        }
        if let Some(parameter) = self.parameters.and_then(|p| p.get(id)) {
            let value = match r.parameters.get(id) {
                Some(v) => v.clone(),
                None => parameter
                    .get("Default")
                    .and_then(scalar_text)
                    .ok_or_else(|| anyhow!("parameter {id} has no Default; give its value in Resolver.parameters"))?,
            };
            let kind = parameter.get("Type").and_then(Value::as_str).unwrap_or("String");
            if kind == "CommaDelimitedList" || kind.starts_with("List<") {
                return Ok(Value::Sequence(value.split(',').map(|s| Value::String(s.trim().to_string())).collect()));
            }
            return Ok(Value::String(value));
        }
        if let Some(resource) = self.resources.get(id) {
            return r.refs.get(id).map(|v| Value::String(v.clone())).ok_or_else(|| {
                anyhow!("no value for !Ref {id} (a {} of the template); add \"{id}\" to Resolver.refs", resource_type(resource))
            });
        }
        bail!("!Ref {id} names neither a parameter nor a resource of the template")
    }

    /// `!GetAtt Logical.Attr`, from the resolver.
    fn attribute(&self, key: &str) -> Result<String> {
        let (id, _) = key.split_once('.').ok_or_else(|| anyhow!("Fn::GetAtt {key} is not Logical.Attr"))?;
        let resource = self.resources.get(id).ok_or_else(|| anyhow!("Fn::GetAtt {key}: {id} is not a resource of the template"))?;
        self.resolver.attrs.get(key).cloned().ok_or_else(|| {
            anyhow!("no value for !GetAtt {key} (a {} of the template); add \"{key}\" to Resolver.attrs", resource_type(resource))
        })
    }

    /// `Fn::Sub`: `${Var}` from the variables map, pseudo parameters, parameters,
    /// `${Logical.Attr}`, `${Logical}`; `${!Literal}` stays `${Literal}`.
    fn substitute(&self, template: &str, vars: Option<&Mapping>) -> Result<String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| anyhow!("Fn::Sub string {template:?} has an unclosed ${{"))?;
            let name = after[..end].trim();
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(var) = vars.and_then(|v| v.get(name)) {
                out.push_str(&self.text(var, &format!("Fn::Sub variable {name}"))?);
            } else if name.contains('.') && !name.starts_with("AWS::") {
                out.push_str(&self.attribute(name)?);
            } else {
                let value = self.reference(name)?;
                out.push_str(&scalar_text(&value).ok_or_else(|| anyhow!("${{{name}}} in Fn::Sub is a list"))?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn strings(value: Option<&Value>, what: &str, origin: &str) -> Result<Vec<String>> {
    match value {
        None => Ok(vec![]),
        Some(Value::Sequence(list)) => {
            list.iter().map(|v| scalar_text(v).ok_or_else(|| anyhow!("{origin}: {what} must be strings"))).collect()
        }
        Some(v) => Ok(vec![scalar_text(v).ok_or_else(|| anyhow!("{origin}: {what} must be a string or a list of strings"))?]),
    }
}

/// The statements of a resolved policy document.
fn parse_document(document: &Value, origin: &str) -> Result<Vec<Statement>> {
    let statements = match document.get("Statement") {
        Some(Value::Sequence(list)) => list.clone(),
        Some(single @ Value::Mapping(_)) => vec![single.clone()],
        _ => bail!("{origin}: the policy document has no Statement"),
    };
    statements.iter().enumerate().map(|(i, s)| parse_statement(s, i + 1, origin)).collect()
}

fn parse_statement(statement: &Value, index: usize, origin: &str) -> Result<Statement> {
    let map = statement.as_mapping().ok_or_else(|| anyhow!("{origin}: statement {index} is not a mapping"))?;
    let sid = map.get("Sid").and_then(scalar_text).filter(|s| !s.is_empty());
    let origin = format!("{origin} / {}", sid.clone().unwrap_or_else(|| format!("statement {index}")));
    for key in map.keys() {
        let key = key.as_str().unwrap_or("?");
        if !matches!(key, "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource" | "Condition") {
            bail!("{origin}: {key} has no place in an identity policy statement");
        }
    }
    let effect = match map.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        other => bail!("{origin}: Effect must be Allow or Deny, not {other:?}"),
    };
    let action = strings(map.get("Action"), "Action", &origin)?;
    let not_action = strings(map.get("NotAction"), "NotAction", &origin)?;
    let resource = strings(map.get("Resource"), "Resource", &origin)?;
    let not_resource = strings(map.get("NotResource"), "NotResource", &origin)?;
    if map.contains_key("Action") == map.contains_key("NotAction") {
        bail!("{origin}: a statement has exactly one of Action and NotAction");
    }
    if map.contains_key("Resource") == map.contains_key("NotResource") {
        bail!("{origin}: a statement has exactly one of Resource and NotResource");
    }
    let mut conditions = Vec::new();
    if let Some(condition) = map.get("Condition") {
        let operators = condition.as_mapping().ok_or_else(|| anyhow!("{origin}: Condition must be a mapping"))?;
        for (operator, keys) in operators {
            let operator = operator.as_str().ok_or_else(|| anyhow!("{origin}: condition operators are strings"))?;
            let keys = keys.as_mapping().ok_or_else(|| anyhow!("{origin}: {operator} must map condition keys to values"))?;
            for (key, values) in keys {
                let key = key.as_str().ok_or_else(|| anyhow!("{origin}: condition keys are strings"))?;
                let values = strings(Some(values), &format!("the values of {operator} {key}"), &origin)?;
                conditions.push(Condition { operator: operator.to_string(), key: key.to_string(), values });
            }
        }
    }
    Ok(Statement { sid, effect, action, not_action, resource, not_resource, conditions, origin })
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;

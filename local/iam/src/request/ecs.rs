//! Amazon ECS: resource ARNs from `cluster`, `service`, `taskSet`, `tasks`... (each a name, an
//! id or a full ARN), the `ecs:cluster`/`ecs:service` condition keys, and the implicit
//! authorizations of a create: `iam:PassRole` for a task definition's roles, `ecs:TagResource`
//! for tags given on create (with `ecs:CreateAction`).
//! <https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerservice.html>
//! <https://docs.aws.amazon.com/AmazonECS/latest/developerguide/supported-iam-actions-tagging.html>

use serde_json::Value;

use super::{pass_role, with_request_tags, ApiCall};
use crate::evaluate::AuthzRequest;

/// The last `/`-separated part of a name or ARN (`arn:...:cluster/prod` → `prod`).
fn last(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// A task set's id from its id or ARN. The id itself has a slash (`ecs-svc/1234567890`), and so
/// does its ARN: `task-set/CLUSTER/SERVICE/ecs-svc/1234567890` (ECS API reference, TaskSet).
/// Tags are looked up by that ARN, so an ARN without `ecs-svc/` names no task set.
fn task_set_id(id_or_arn: &str) -> &str {
    match id_or_arn.split_once(":task-set/") {
        Some((_, path)) => path.splitn(3, '/').nth(2).unwrap_or(path),
        None => id_or_arn,
    }
}

struct Ecs<'c, 'a> {
    call: &'c ApiCall<'a>,
    cluster: String,
}

impl Ecs<'_, '_> {
    fn cluster_arn(&self) -> String {
        self.call.arn("ecs", &format!("cluster/{}", self.cluster))
    }

    fn service_arn(&self, service: &str) -> String {
        self.call.arn("ecs", &format!("service/{}/{}", self.cluster, last(service)))
    }

    /// A task ARN; an old-format ARN (`task/ID`) is rewritten with the cluster.
    fn task_arn(&self, task: &str) -> String {
        self.call.arn("ecs", &format!("task/{}/{}", self.cluster, last(task)))
    }

    /// `family`, `family:revision` or an ARN → the task definition ARN (`family:*` without a revision).
    fn task_definition_arn(&self, task_definition: &str) -> String {
        if task_definition.starts_with("arn:") {
            return task_definition.to_string();
        }
        let with_revision = if task_definition.contains(':') { task_definition.to_string() } else { format!("{task_definition}:*") };
        self.call.arn("ecs", &format!("task-definition/{with_revision}"))
    }

    /// A request carrying `ecs:cluster`, and `ecs:service` when a service is named.
    fn request(&self, action: &str, resource: &str, service: Option<&str>) -> AuthzRequest {
        let mut request = self.call.request(action, resource).with("ecs:cluster", &[&self.cluster_arn()]);
        if let Some(service) = service {
            request = request.with("ecs:service", &[&self.service_arn(service)]);
        }
        request
    }

    /// The request's `tags` (`[{key, value}]`).
    fn tags(&self) -> Vec<(String, String)> {
        let tags = self.call.json().and_then(|v| v.get("tags")).and_then(Value::as_array);
        tags.into_iter()
            .flatten()
            .filter_map(|t| Some((t.get("key")?.as_str()?.to_string(), t.get("value").and_then(Value::as_str).unwrap_or("").to_string())))
            .collect()
    }

    /// The create request with its request tags, and `ecs:TagResource` on the created resource
    /// when it is tagged on create.
    fn create(&self, request: AuthzRequest, created: &str) -> Vec<AuthzRequest> {
        let tags = self.tags();
        let mut requests = vec![with_request_tags(request, &tags)];
        if !tags.is_empty() {
            let tag = self.call.request("TagResource", created).with("ecs:CreateAction", &[self.call.operation]);
            requests.push(with_request_tags(tag, &tags));
        }
        requests
    }
}

pub(super) fn requests(call: &ApiCall) -> Result<Vec<AuthzRequest>, String> {
    // ECS acts on the cluster named `default` when a request names none.
    let cluster = call.param("cluster").map(|c| last(&c).to_string()).unwrap_or_else(|| "default".into());
    let ecs = Ecs { call, cluster };
    let c = &ecs.cluster;
    let op = call.operation;
    Ok(match op {
        "DescribeServices" => {
            let services = call.list("services");
            if services.is_empty() {
                return Err(format!("ecs:{op} without services: cannot tell which resource it acts on"));
            }
            services.iter().map(|s| ecs.request(op, &ecs.service_arn(s), Some(s))).collect()
        }
        "DescribeTaskSets" => {
            let service = call.required("service")?;
            let task_sets = call.list("taskSets");
            let ids: Vec<&str> = if task_sets.is_empty() { vec!["*"] } else { task_sets.iter().map(|t| task_set_id(t)).collect() };
            ids.iter()
                .map(|id| ecs.request(op, &call.arn("ecs", &format!("task-set/{c}/{}/{id}", last(&service))), Some(&service)))
                .collect()
        }
        "CreateTaskSet" => {
            let service = call.required("service")?;
            let created = call.arn("ecs", &format!("task-set/{c}/{}/*", last(&service)));
            let mut request = ecs.request(op, &created, Some(&service));
            if let Some(td) = call.param("taskDefinition") {
                request = request.with("ecs:task-definition", &[&ecs.task_definition_arn(&td)]);
            }
            ecs.create(request, &created)
        }
        "UpdateTaskSet" | "DeleteTaskSet" => {
            let service = call.required("service")?;
            let task_set = call.required("taskSet")?;
            vec![ecs.request(op, &call.arn("ecs", &format!("task-set/{c}/{}/{}", last(&service), task_set_id(&task_set))), Some(&service))]
        }
        "UpdateServicePrimaryTaskSet" | "UpdateService" | "DeleteService" => {
            let service = call.required("service")?;
            let mut request = ecs.request(op, &ecs.service_arn(&service), Some(&service));
            if let Some(td) = call.param("taskDefinition").filter(|_| op == "UpdateService") {
                request = request.with("ecs:task-definition", &[&ecs.task_definition_arn(&td)]);
            }
            vec![request]
        }
        "CreateService" => {
            let service = call.required("serviceName")?;
            let mut request = ecs.request(op, &ecs.service_arn(&service), Some(&service));
            if let Some(td) = call.param("taskDefinition") {
                request = request.with("ecs:task-definition", &[&ecs.task_definition_arn(&td)]);
            }
            ecs.create(request, &ecs.service_arn(&service))
        }
        "ListTasks" => {
            // Authorized against the container instance it names, else all of the cluster's.
            let instance = call.param("containerInstance").map(|i| last(&i).to_string()).unwrap_or_else(|| "*".into());
            vec![ecs.request(op, &call.arn("ecs", &format!("container-instance/{c}/{instance}")), None)]
        }
        "DescribeTasks" | "StopTask" => {
            let tasks = if op == "StopTask" { vec![call.required("task")?] } else { call.list("tasks") };
            if tasks.is_empty() {
                return Err(format!("ecs:{op} without tasks: cannot tell which resource it acts on"));
            }
            tasks.iter().map(|t| ecs.request(op, &ecs.task_arn(t), None)).collect()
        }
        "RunTask" => {
            let td = call.required("taskDefinition")?;
            ecs.create(ecs.request(op, &ecs.task_definition_arn(&td), None), &call.arn("ecs", &format!("task/{c}/*")))
        }
        "DescribeTaskDefinition" | "ListTaskDefinitions" | "ListServices" | "ListClusters" => {
            vec![call.request(op, "*")]
        }
        "DescribeClusters" => {
            let clusters = call.list("clusters");
            let names: Vec<&str> = if clusters.is_empty() { vec!["default"] } else { clusters.iter().map(|n| last(n)).collect() };
            names.iter().map(|n| call.request(op, &call.arn("ecs", &format!("cluster/{n}")))).collect()
        }
        "RegisterTaskDefinition" => {
            let family = call.required("family")?;
            let created = call.arn("ecs", &format!("task-definition/{family}:*"));
            let mut requests = ecs.create(call.request(op, &created), &created);
            let mut roles: Vec<String> =
                ["taskRoleArn", "executionRoleArn"].iter().filter_map(|p| call.param(p)).filter(|r| !r.is_empty()).collect();
            roles.dedup();
            // Registering a task definition passes its roles to ECS tasks.
            // <https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html>
            requests.extend(roles.iter().map(|role| pass_role(call, role, "ecs-tasks.amazonaws.com")));
            requests
        }
        "ListTagsForResource" | "TagResource" | "UntagResource" => {
            let arn = call.required("resourceArn")?;
            let request = call.request(op, &arn);
            match op {
                "TagResource" => vec![with_request_tags(request, &ecs.tags())],
                "UntagResource" => {
                    let keys = call.list("tagKeys");
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    vec![request.with("aws:TagKeys", &keys)]
                }
                _ => vec![request],
            }
        }
        _ => return Err(call.unmapped()),
    })
}

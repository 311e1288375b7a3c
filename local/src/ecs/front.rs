//! ECS and ELB calls answered as AWS answers them, where moto does not (the front server runs
//! these before and after forwarding a call to moto):
//!
//! - `DescribeTaskSets`, `DescribeServices`, `CreateTaskSet`, `UpdateTaskSet`,
//!   `UpdateServicePrimaryTaskSet`: task sets carry `runningCount`, `pendingCount`,
//!   `computedDesiredCount` and `stabilityStatus` from the simulated tasks and target health
//!   (moto reports none and always STEADY_STATE); a deleted set is DRAINING until its tasks
//!   have stopped, then gone.
//! - `DeleteTaskSet`: the set goes DRAINING (moto removes it at once); a set that is gone is
//!   `TaskSetNotFoundException` (moto answers `ClientException`).
//! - `CreateTaskSet` honours `clientToken`: a retry with the same token returns the task set the
//!   first call created (ECS API reference, CreateTaskSet; moto creates another).
//! - `DescribeTasks`: each task's `lastStatus`, `desiredStatus`, stop code and exit codes as the
//!   simulator has them (moto's tasks are RUNNING from RunTask on).
//! - `DescribeTargetHealth`: each target's state from the simulated health checks (moto says
//!   `healthy` for everything, and task sets register nothing there).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::model::Model;
use crate::call::{form, xml_escape, ApiCall};
use crate::Shared;

/// What the strict front remembers between calls.
#[derive(Default)]
pub struct EcsFront {
    /// `CreateTaskSet` answers by `cluster/service/clientToken`.
    create_answers: Mutex<HashMap<String, Bytes>>,
}

/// `ecs-svc/123` from a task set id or ARN (`…:task-set/CLUSTER/SERVICE/ecs-svc/123`).
pub fn task_set_id(id_or_arn: &str) -> String {
    match id_or_arn.split_once(":task-set/") {
        Some((_, path)) => path.splitn(3, '/').nth(2).unwrap_or(path).to_string(),
        None => id_or_arn.to_string(),
    }
}

fn last_segment(name_or_arn: &str) -> &str {
    name_or_arn.rsplit('/').next().unwrap_or(name_or_arn)
}

fn json_response(body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(body))
        .expect("static response")
}

/// Before forwarding: answer here what moto would answer differently from ECS.
pub async fn before(shared: &Shared, call: &ApiCall, body: &Bytes) -> Option<Response<Full<Bytes>>> {
    if call.service != "ecs" {
        return None;
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match call.operation.as_str() {
        "DeleteTaskSet" => Some(delete_task_set(shared, call, &request).await),
        "CreateTaskSet" => {
            let key = create_key(&request)?;
            let answer = shared.ecs_front.create_answers.lock().unwrap().get(&key).cloned()?;
            Some(json_response(patch_task_sets(&shared.simulator.model.lock().unwrap(), answer)))
        }
        _ => None,
    }
}

fn create_key(request: &Value) -> Option<String> {
    let token = request["clientToken"].as_str().filter(|t| !t.is_empty())?;
    let cluster = last_segment(request["cluster"].as_str().unwrap_or("default"));
    let service = last_segment(request["service"].as_str()?);
    Some(format!("{cluster}/{service}/{token}"))
}

async fn delete_task_set(shared: &Shared, call: &ApiCall, request: &Value) -> Response<Full<Bytes>> {
    let not_found = || {
        call.error(
            StatusCode::BAD_REQUEST,
            "TaskSetNotFoundException",
            "The specified task set wasn't found. You can view your available task sets with DescribeTaskSets. Task sets are specific to each cluster, service and Region.",
        )
    };
    let Some(task_set) = request["taskSet"].as_str() else {
        return call.error(StatusCode::BAD_REQUEST, "InvalidParameterException", "taskSet is required");
    };
    let id = task_set_id(task_set);
    // The set may have been created a moment ago: read moto first.
    let _ = shared.simulator.sync(Instant::now()).await;
    let known = {
        let mut model = shared.simulator.model.lock().unwrap();
        if model.is_gone(&id) {
            false
        } else {
            model.delete_task_set(&id);
            true
        }
    };
    if !known {
        return not_found();
    }
    shared.simulator.mark_dirty();
    let describe = json!({
        "cluster": request["cluster"], "service": request["service"], "taskSets": [task_set],
    });
    let answer = match shared.moto_json("ecs", "AmazonEC2ContainerServiceV20141113.DescribeTaskSets", &describe).await {
        Ok(v) => v,
        Err(e) => return call.error(StatusCode::INTERNAL_SERVER_ERROR, "ServerException", &format!("emulated ECS: {e}")),
    };
    let Some(set) = answer["taskSets"].as_array().and_then(|s| s.first()).cloned() else { return not_found() };
    json_response(patch_task_sets(&shared.simulator.model.lock().unwrap(), Bytes::from(json!({ "taskSet": set }).to_string())))
}

/// After forwarding: moto's answer as ECS or ELB would give it.
pub fn after(shared: &Shared, call: &ApiCall, request: &Bytes, status: StatusCode, answer: Bytes) -> Bytes {
    if !status.is_success() {
        return answer;
    }
    match (call.service.as_str(), call.operation.as_str()) {
        ("ecs", op) => {
            if matches!(
                op,
                "CreateTaskSet" | "UpdateTaskSet" | "UpdateServicePrimaryTaskSet" | "CreateService" | "UpdateService" | "DeleteService"
            ) {
                shared.simulator.mark_dirty();
            }
            let model = shared.simulator.model.lock().unwrap();
            match op {
                "CreateTaskSet" => {
                    let request: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
                    if let Some(key) = create_key(&request) {
                        shared.ecs_front.create_answers.lock().unwrap().insert(key, answer.clone());
                    }
                    patch_task_sets(&model, answer)
                }
                "DescribeTaskSets" | "DescribeServices" | "UpdateTaskSet" | "UpdateServicePrimaryTaskSet" => {
                    patch_task_sets(&model, answer)
                }
                "DescribeTasks" => patch_tasks(&model, answer),
                _ => answer,
            }
        }
        ("elasticloadbalancing", "DescribeTargetHealth") => target_health(&shared.simulator.model.lock().unwrap(), request),
        ("elasticloadbalancing", "ModifyTargetGroup" | "ModifyTargetGroupAttributes") => {
            shared.simulator.target_group_changed();
            answer
        }
        ("elasticloadbalancing", op)
            if op.starts_with("Modify") || op.starts_with("Create") || op.starts_with("Delete") || op == "SetRulePriorities" =>
        {
            shared.notify_elb_change();
            answer
        }
        _ => answer,
    }
}

/// Counts, stability and DRAINING on every task set in an ECS answer; sets that have drained
/// away are left out.
fn patch_task_sets(model: &Model, answer: Bytes) -> Bytes {
    let Ok(mut v) = serde_json::from_slice::<Value>(&answer) else { return answer };
    if let Some(set) = v.get_mut("taskSet") {
        patch_task_set(model, set);
    }
    if let Some(sets) = v.get_mut("taskSets").and_then(Value::as_array_mut) {
        patch_list(model, sets);
    }
    if let Some(services) = v.get_mut("services").and_then(Value::as_array_mut) {
        for svc in services {
            if let Some(sets) = svc.get_mut("taskSets").and_then(Value::as_array_mut) {
                patch_list(model, sets);
                let running: u64 = sets.iter().filter_map(|s| s["runningCount"].as_u64()).sum();
                let pending: u64 = sets.iter().filter_map(|s| s["pendingCount"].as_u64()).sum();
                svc["runningCount"] = json!(running);
                svc["pendingCount"] = json!(pending);
            }
        }
    }
    Bytes::from(v.to_string())
}

fn patch_list(model: &Model, sets: &mut Vec<Value>) {
    sets.retain(|s| !s["id"].as_str().is_some_and(|id| model.spec(id).is_some() && model.is_gone(id)));
    for set in sets.iter_mut() {
        patch_task_set(model, set);
    }
}

fn patch_task_set(model: &Model, set: &mut Value) {
    let Some(id) = set["id"].as_str().map(str::to_string) else { return };
    // A set the simulator has not read yet has just been created: ECS has started nothing.
    let (computed, running, pending, steady, draining) = match model.counts(&id) {
        Some(c) => (c.computed_desired, c.running, c.pending, c.steady, c.draining),
        None => (0, 0, 0, false, false),
    };
    set["computedDesiredCount"] = json!(computed);
    set["runningCount"] = json!(running);
    set["pendingCount"] = json!(pending);
    set["stabilityStatus"] = json!(if steady { "STEADY_STATE" } else { "STABILIZING" });
    if draining {
        set["status"] = json!("DRAINING");
    }
}

fn patch_tasks(model: &Model, answer: Bytes) -> Bytes {
    let Ok(mut v) = serde_json::from_slice::<Value>(&answer) else { return answer };
    if let Some(tasks) = v.get_mut("tasks").and_then(Value::as_array_mut) {
        for task in tasks {
            let Some(sim) = task["taskArn"].as_str().and_then(|arn| model.task(arn)) else { continue };
            task["lastStatus"] = json!(sim.last_status.as_str());
            task["desiredStatus"] = json!(if sim.desired_running { "RUNNING" } else { "STOPPED" });
            if let Some(stop) = &sim.stop {
                task["stopCode"] = json!(stop.stop_code);
                task["stoppedReason"] = json!(stop.reason);
            }
            if let Some(containers) = task.get_mut("containers").and_then(Value::as_array_mut) {
                for c in containers {
                    let name = c["name"].as_str().unwrap_or_default().to_string();
                    if let Some((_, code)) = sim.stop.as_ref().and_then(|s| s.exit_codes.iter().find(|(n, _)| *n == name)) {
                        c["exitCode"] = json!(code);
                        c["lastStatus"] = json!("STOPPED");
                    } else {
                        c["lastStatus"] = json!(if sim.last_status.is_starting() { "PENDING" } else { "RUNNING" });
                    }
                }
            }
        }
    }
    Bytes::from(v.to_string())
}

/// `DescribeTargetHealth` from the simulated health checks.
fn target_health(model: &Model, request: &Bytes) -> Bytes {
    let params = form(request);
    let tg = params.iter().find(|(k, _)| k == "TargetGroupArn").map(|(_, v)| v.clone()).unwrap_or_default();
    let asked: Vec<String> =
        params.iter().filter(|(k, _)| k.starts_with("Targets.member.") && k.ends_with(".Id")).map(|(_, v)| v.clone()).collect();
    let registered = model.targets_of(&tg);
    let mut members = String::new();
    let mut describe = |ip: &str, port: u16, state: &str, reason: Option<(&str, &str)>| {
        let reason = reason
            .map(|(code, text)| format!("<Reason>{code}</Reason><Description>{}</Description>", xml_escape(text)))
            .unwrap_or_default();
        members.push_str(&format!(
            "<member><HealthCheckPort>{port}</HealthCheckPort><Target><Id>{}</Id><Port>{port}</Port></Target><TargetHealth><State>{state}</State>{reason}</TargetHealth></member>",
            xml_escape(ip)
        ));
    };
    if asked.is_empty() {
        for t in &registered {
            describe(&t.ip, t.port, t.state.as_str(), t.state.reason());
        }
    } else {
        for ip in &asked {
            match registered.iter().find(|t| &t.ip == ip) {
                Some(t) => describe(&t.ip, t.port, t.state.as_str(), t.state.reason()),
                None => describe(ip, 0, "unused", Some(("Target.NotRegistered", "Target is not registered to the target group"))),
            }
        }
    }
    Bytes::from(format!(
        "<DescribeTargetHealthResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><DescribeTargetHealthResult><TargetHealthDescriptions>{members}</TargetHealthDescriptions></DescribeTargetHealthResult><ResponseMetadata><RequestId>00000000-0000-4000-8000-000000000001</RequestId></ResponseMetadata></DescribeTargetHealthResponse>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_set_ids_come_from_ids_and_arns() {
        assert_eq!(task_set_id("ecs-svc/123"), "ecs-svc/123");
        assert_eq!(task_set_id("arn:aws:ecs:us-east-1:123456789012:task-set/demo/web/ecs-svc/123"), "ecs-svc/123");
    }
}

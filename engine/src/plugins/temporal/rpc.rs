//! The `temporal` RPC service the PHP SDK calls over `RR_RPC` (spec temporal "Wire protocol"
//! §7, rr's rpc.go): activity heartbeats, the names registered, the API key, and the replay
//! methods (answered with rr's validation texts, then "not implemented": see `replay`).

use super::TemporalService;
use crate::plugins::rpc::services::base64_decode;
use crate::plugins::rpc::services::{ready, Reply};
use crate::plugins::rpc::RpcService;
use crate::plugins::LocalFuture;
use prost::Message as _;
use serde_json::{json, Value};
use temporalio_common::protos::coresdk::ActivityHeartbeat;
use temporalio_common::protos::temporal::api::common::v1::Payloads;

impl RpcService for TemporalService {
    fn service(&self) -> &'static str {
        "temporal"
    }

    fn call<'a>(
        &'a self,
        method: &'a str,
        arg: Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
        let result = match method {
            "RecordActivityHeartbeat" => self.record_heartbeat(&arg),
            "GetActivityNames" => Ok(json!(self.names(|queue| &queue.activities))),
            "GetWorkflowNames" => Ok(json!(self.names(|queue| &queue.workflows))),
            "UpdateAPIKey" => Ok(json!(self.update_api_key(&arg))),
            _ => return None,
        };
        Some(ready(result.map(Reply::Json)))
    }

    fn call_proto<'a>(
        &'a self,
        method: &'a str,
        message: &'a [u8],
    ) -> Option<LocalFuture<'a, Result<Vec<u8>, String>>> {
        let status = super::replay::answer(method, message)?;
        Some(Box::pin(std::future::ready(Ok(status))))
    }
}

impl TemporalService {
    /// `temporal.RecordActivityHeartbeat {taskToken, details}` (both base64): hands the
    /// heartbeat to the core worker running the activity; answers whether the activity
    /// was cancelled.
    fn record_heartbeat(&self, arg: &Value) -> Result<Value, String> {
        let base64 = |key: &str| -> Result<Vec<u8>, String> {
            let text = arg.get(key).and_then(Value::as_str).unwrap_or_default();
            base64_decode(text)
                .ok_or_else(|| format!("temporal.RecordActivityHeartbeat: {key}: not base64"))
        };
        let task_token = base64("taskToken")?;
        let details = Payloads::decode(base64("details")?.as_slice())
            .map_err(|error| format!("temporal.RecordActivityHeartbeat: details: {error}"))?
            .payloads;
        let Some(activities) = &self.bridges.activities else {
            return Err("temporal.RecordActivityHeartbeat: no activity workers".to_owned());
        };
        let Some(running) = activities.running(&task_token) else {
            return Err("temporal.RecordActivityHeartbeat: no such activity running".to_owned());
        };
        self.core.record_heartbeat(
            &running.task_queue,
            ActivityHeartbeat {
                task_token,
                details,
            },
        );
        Ok(json!({ "canceled": running.canceled }))
    }

    /// `temporal.UpdateAPIKey "<key>"`: the key the client sends from now on (every core
    /// worker shares the connection); false for an empty one, which changes nothing (rr).
    fn update_api_key(&self, arg: &Value) -> bool {
        match arg.as_str() {
            Some(key) if !key.is_empty() => {
                self.core.set_api_key(key.to_owned());
                true
            }
            _ => false,
        }
    }

    fn names(
        &self,
        list: impl Fn(&super::worker_info::TaskQueueInfo) -> &Vec<Value>,
    ) -> Vec<String> {
        let mut names: Vec<String> = self
            .info
            .queues
            .iter()
            .flat_map(|queue| list(queue).iter())
            .filter_map(|entry| entry.get("Name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

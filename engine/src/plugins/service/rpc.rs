//! The RPC service `service`: rr's methods with the `service.v1` messages (protobuf, as
//! `spiral/roadrunner-services` sends them, or JSON with the same field names), and
//! ringrunner's `Start`, `Stop` and `Describe` for `rr service`.

use super::config::{self, ServiceSpec};
use super::proto;
use super::record::Info;
use super::{cpu_percent, Launch, ServicePlugin};
use crate::plugins::rpc::{Reply, RpcService};
use crate::plugins::LocalFuture;
use prost::Message;
use std::sync::Arc;

/// A request's service name, from its protobuf `Service` or JSON `{"name": …}`.
enum Arg<'a> {
    Proto(&'a [u8]),
    Json(serde_json::Value),
}

impl Arg<'_> {
    fn name(&self) -> Result<String, String> {
        match self {
            Self::Proto(bytes) => proto::ServiceName::decode(*bytes)
                .map(|m| m.name)
                .map_err(|e| e.to_string()),
            Self::Json(value) => Ok(value
                .get("name")
                .and_then(serde_json::Value::as_str)
                .or_else(|| value.as_str())
                .unwrap_or_default()
                .to_owned()),
        }
    }

    fn create(&self) -> Result<proto::Create, String> {
        match self {
            Self::Proto(bytes) => proto::Create::decode(*bytes).map_err(|e| e.to_string()),
            Self::Json(value) => {
                let text = |key: &str| {
                    value
                        .get(key)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let number = |key: &str| {
                    value
                        .get(key)
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(0)
                };
                let flag = |key: &str| {
                    value
                        .get(key)
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(false)
                };
                let env = value
                    .get("env")
                    .and_then(serde_json::Value::as_object)
                    .map(|map| {
                        map.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(proto::Create {
                    name: text("name"),
                    command: text("command"),
                    process_num: number("process_num"),
                    exec_timeout: number("exec_timeout"),
                    remain_after_exit: flag("remain_after_exit"),
                    env,
                    restart_sec: u64::try_from(number("restart_sec")).unwrap_or(0),
                    service_name_in_logs: flag("service_name_in_logs"),
                    timeout_stop_sec: u64::try_from(number("timeout_stop_sec")).unwrap_or(0),
                })
            }
        }
    }
}

/// A reply, encoded for the codec the request came in.
enum Answer {
    Ok,
    Statuses(proto::Statuses),
    Status(proto::Status),
    List(proto::List),
    Described(serde_json::Value),
}

impl Answer {
    fn proto(self) -> Vec<u8> {
        match self {
            Self::Ok => proto::Response {
                message: String::new(),
                ok: true,
            }
            .encode_to_vec(),
            Self::Statuses(statuses) => statuses.encode_to_vec(),
            Self::Status(status) => status.encode_to_vec(),
            Self::List(list) => list.encode_to_vec(),
            Self::Described(value) => value.to_string().into_bytes(),
        }
    }

    fn json(self) -> serde_json::Value {
        let status = |s: &proto::Status| {
            let mut value = serde_json::json!({"cpu_percent": s.cpu_percent, "pid": s.pid, "memory_usage": s.memory_usage, "command": s.command});
            if let Some(error) = &s.status {
                value["status"] = serde_json::json!({"code": error.code, "message": error.message});
            }
            value
        };
        match self {
            Self::Ok => serde_json::json!({"ok": true}),
            Self::Statuses(statuses) => {
                serde_json::json!({"status": statuses.status.iter().map(status).collect::<Vec<_>>()})
            }
            Self::Status(s) => status(&s),
            Self::List(list) => serde_json::json!({"services": list.services}),
            Self::Described(value) => value,
        }
    }
}

impl ServicePlugin {
    async fn answer(&self, method: &str, arg: Arg<'_>) -> Result<Answer, String> {
        match method {
            "Create" => {
                let create = arg.create()?;
                let spec = spec_from_create(&create)?;
                self.start_spec(Arc::new(spec), Launch::New)
                    .await
                    .map(|()| Answer::Ok)
            }
            "Terminate" => {
                let name = arg.name()?;
                self.stop_service(&name).await?;
                self.lock().remove(&name);
                Ok(Answer::Ok)
            }
            "Restart" => self.restart(&arg.name()?).await.map(|()| Answer::Ok),
            "Statuses" => Ok(Answer::Statuses(proto::Statuses {
                status: self
                    .records(&arg.name()?)?
                    .iter()
                    .map(|r| status_of(&r.info()))
                    .collect(),
            })),
            "Status" => {
                let records = self.records(&arg.name()?)?;
                let last = records
                    .last()
                    .map(|r| status_of(&r.info()))
                    .unwrap_or_default();
                match &last.status {
                    Some(error) => Err(error.message.clone()),
                    None => Ok(Answer::Status(last)),
                }
            }
            "List" => Ok(Answer::List(proto::List {
                services: self.lock().keys().cloned().collect(),
            })),
            "Stop" => self.stop_service(&arg.name()?).await.map(|()| Answer::Ok),
            "Start" => {
                let name = arg.name()?;
                // One still supervised is left running (launch checks under its lock).
                let spec = self
                    .lock()
                    .get(&name)
                    .map(|run| Arc::clone(&run.spec))
                    .or_else(|| self.configured.get(&name).cloned())
                    .ok_or_else(|| format!("the service with {name} name doesn't exist"))?;
                self.start_spec(spec, Launch::Again)
                    .await
                    .map(|()| Answer::Ok)
            }
            "Describe" => {
                let name = arg.name()?;
                let services = self.lock();
                let described: Vec<serde_json::Value> = services
                    .iter()
                    .filter(|(service, _)| name.is_empty() || **service == name)
                    .flat_map(|(service, run)| {
                        run.processes
                            .iter()
                            .map(move |record| describe(service, &record.info()))
                    })
                    .collect();
                if described.is_empty() && !name.is_empty() {
                    return Err(format!("the service with {name} name doesn't exist"));
                }
                Ok(Answer::Described(serde_json::Value::Array(described)))
            }
            _ => Err(format!("rpc: can't find method service.{method}")),
        }
    }
}

const METHODS: [&str; 9] = [
    "Create",
    "Terminate",
    "Restart",
    "Status",
    "Statuses",
    "List",
    "Start",
    "Stop",
    "Describe",
];

impl RpcService for ServicePlugin {
    fn service(&self) -> &'static str {
        "service"
    }

    fn call<'a>(
        &'a self,
        method: &'a str,
        arg: serde_json::Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
        METHODS
            .contains(&method)
            .then(|| -> LocalFuture<'a, Result<Reply, String>> {
                Box::pin(async move {
                    self.answer(method, Arg::Json(arg))
                        .await
                        .map(|answer| Reply::Json(answer.json()))
                })
            })
    }

    fn call_proto<'a>(
        &'a self,
        method: &'a str,
        message: &'a [u8],
    ) -> Option<LocalFuture<'a, Result<Vec<u8>, String>>> {
        METHODS
            .contains(&method)
            .then(|| -> LocalFuture<'a, Result<Vec<u8>, String>> {
                Box::pin(async move {
                    self.answer(method, Arg::Proto(message))
                        .await
                        .map(Answer::proto)
                })
            })
    }
}

/// A spec from `service.Create` (rr's defaults for zero values; `user` cannot be set).
fn spec_from_create(create: &proto::Create) -> Result<ServiceSpec, String> {
    if create.process_num <= 0 {
        return Err(format!(
            "the service with {} name should have at least 1 process",
            create.name
        ));
    }
    let mut spec = ServiceSpec::new(&create.name, &create.command);
    spec.process_num = usize::try_from(create.process_num).unwrap_or(1);
    spec.exec_timeout = u64::try_from(create.exec_timeout)
        .ok()
        .filter(|s| *s > 0)
        .map(std::time::Duration::from_secs);
    spec.restart = if create.remain_after_exit {
        config::Restart::Always
    } else {
        config::Restart::No
    };
    if create.restart_sec > 0 {
        spec.restart_sec = create.restart_sec;
    }
    if create.timeout_stop_sec > 0 {
        spec.timeout_stop = std::time::Duration::from_secs(create.timeout_stop_sec);
    }
    spec.name_in_log = create.service_name_in_logs;
    spec.env = create
        .env
        .iter()
        .map(|(k, v)| (k.to_uppercase(), v.clone()))
        .collect();
    Ok(spec)
}

/// rr's `Status` of one process: its figures, or for one not running the recorded pid and
/// command with the reason.
fn status_of(info: &Info) -> proto::Status {
    let pid = i32::try_from(info.pid).unwrap_or(0);
    if info.phase.is_up() {
        if let Some(rss) = crate::worker::process::rss_bytes(info.pid) {
            return proto::Status {
                cpu_percent: cpu_percent(info.pid, info.since) as f32,
                pid,
                memory_usage: rss,
                command: info.command.clone(),
                status: None,
            };
        }
    }
    let message = if info.message.is_empty() {
        format!(
            "process_state: process {} is {}",
            info.pid,
            info.phase.name()
        )
    } else {
        info.message.clone()
    };
    proto::Status {
        cpu_percent: 0.0,
        pid,
        memory_usage: 0,
        command: info.command.clone(),
        status: Some(proto::ErrorStatus { code: 0, message }),
    }
}

/// What `rr service status` prints of one process.
fn describe(service: &str, info: &Info) -> serde_json::Value {
    serde_json::json!({
        "name": service,
        "state": info.phase.name(),
        "pid": info.pid,
        "uptime_sec": info.since.filter(|_| info.phase.is_up()).map_or(0, |since| since.elapsed().as_secs()),
        "restarts": info.restarts,
        "last_exit": info.last_exit,
        "message": info.message,
        "command": info.command,
    })
}

//! rr's replay RPC methods (`temporal.ReplayWorkflow`, `DownloadWorkflowHistory`,
//! `ReplayFromJSON`, `ReplayWorkflowHistory`; protobuf in and out, roadrunner-server/api
//! `temporal/v1/temporal.proto`). rr replays a history through the Go SDK's replayer with the
//! PHP workflow worker; ringrunner's workflow worker serves live runs by run id, so a replay
//! of a run it may hold cannot share it. These methods give rr's answer to a request that
//! lacks a field (`InvalidArgument` with rr's text) and otherwise `Unimplemented` with what to
//! do instead, in rr's `ReplayResponse{status}`: never an RPC error the SDK cannot read.

use prost::Message as _;
/// rr's `common.v1.Status` is `google.rpc.Status` field for field (its `details` unset here).
use ringrunner_protocol::grpc::Status;
use temporalio_common::protos::temporal::api::common::v1::{WorkflowExecution, WorkflowType};

/// gRPC's `InvalidArgument`, `FailedPrecondition` and `Unimplemented` codes (rr's
/// `codes.*`).
const INVALID_ARGUMENT: i32 = 3;
const FAILED_PRECONDITION: i32 = 9;
const UNIMPLEMENTED: i32 = 12;

/// `ReplayRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct ReplayRequest {
    #[prost(message, optional, tag = "1")]
    workflow_execution: Option<WorkflowExecution>,
    #[prost(message, optional, tag = "2")]
    workflow_type: Option<WorkflowType>,
    #[prost(string, tag = "3")]
    save_path: String,
    #[prost(int64, tag = "4")]
    last_event_id: i64,
}

/// `History`: the history itself is only checked for presence.
#[derive(Clone, PartialEq, prost::Message)]
struct ReplayHistory {
    #[prost(bytes = "vec", optional, tag = "1")]
    history: Option<Vec<u8>>,
    #[prost(message, optional, tag = "2")]
    workflow_type: Option<WorkflowType>,
}

/// `ReplayResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplayResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
}

/// The encoded `ReplayResponse` for `method` with `message`; None for a method that is not a
/// replay method.
pub fn answer(method: &str, message: &[u8]) -> Option<Vec<u8>> {
    let (code, text) = match method {
        "ReplayWorkflow" | "DownloadWorkflowHistory" | "ReplayFromJSON" => {
            match ReplayRequest::decode(message) {
                Ok(request) => check_request(method, &request),
                Err(error) => (INVALID_ARGUMENT, format!("ReplayRequest: {error}")),
            }
        }
        "ReplayWorkflowHistory" => match ReplayHistory::decode(message) {
            Ok(history)
                if history.history.is_some()
                    && history
                        .workflow_type
                        .as_ref()
                        .is_some_and(|kind| !kind.name.is_empty()) =>
            {
                unimplemented(method)
            }
            // rr's code and text for this one.
            Ok(_) => (
                FAILED_PRECONDITION,
                "workflow_name and/or history should not be empty".to_owned(),
            ),
            Err(error) => (INVALID_ARGUMENT, format!("History: {error}")),
        },
        _ => return None,
    };
    tracing::warn!(
        method,
        code,
        message = text.as_str(),
        "temporal replay request"
    );
    Some(
        ReplayResponse {
            status: Some(Status {
                code,
                message: text,
                details: Vec::new(),
            }),
        }
        .encode_to_vec(),
    )
}

/// rr's checks of a `ReplayRequest`, then `Unimplemented`.
fn check_request(method: &str, request: &ReplayRequest) -> (i32, String) {
    let execution = request.workflow_execution.as_ref();
    let name = request
        .workflow_type
        .as_ref()
        .map_or("", |kind| kind.name.as_str());
    let ids = execution.is_some_and(|e| !e.workflow_id.is_empty() && !e.run_id.is_empty());
    let missing = match method {
        "ReplayWorkflow" => (!ids || name.is_empty())
            .then_some("run_id, workflow_id or workflow_name should not be empty"),
        "DownloadWorkflowHistory" => (!ids || name.is_empty() || request.save_path.is_empty())
            .then_some("run_id, workflow_id or save_path should not be empty"),
        _ => (name.is_empty() || request.save_path.is_empty())
            .then_some("workflow_name and save_path should not be empty"),
    };
    match missing {
        Some(text) => (INVALID_ARGUMENT, text.to_owned()),
        None => unimplemented(method),
    }
}

fn unimplemented(method: &str) -> (i32, String) {
    let instead = if method == "DownloadWorkflowHistory" {
        "download the history with `temporal workflow show --workflow-id ID --run-id RUN_ID --output json`"
    } else {
        "replay the history with the Temporal CLI's or an SDK's replayer"
    };
    (
        UNIMPLEMENTED,
        format!("temporal.{method} is not implemented by ringrunner: {instead}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(method: &str, message: &[u8]) -> Status {
        ReplayResponse::decode(answer(method, message).unwrap().as_slice())
            .unwrap()
            .status
            .unwrap()
    }

    #[test]
    fn a_request_missing_a_field_gets_rrs_text_and_a_full_one_unimplemented() {
        assert_eq!(
            status("ReplayWorkflow", &[]),
            Status {
                code: INVALID_ARGUMENT,
                message: "run_id, workflow_id or workflow_name should not be empty".into(),
                details: Vec::new(),
            }
        );
        let full = ReplayRequest {
            workflow_execution: Some(WorkflowExecution {
                workflow_id: "w".into(),
                run_id: "r".into(),
            }),
            workflow_type: Some(WorkflowType { name: "W".into() }),
            save_path: "/tmp/h.json".into(),
            last_event_id: 0,
        }
        .encode_to_vec();
        for method in [
            "ReplayWorkflow",
            "DownloadWorkflowHistory",
            "ReplayFromJSON",
        ] {
            assert_eq!(status(method, &full).code, UNIMPLEMENTED, "{method}");
        }
        assert_eq!(
            status("ReplayWorkflowHistory", &[]).message,
            "workflow_name and/or history should not be empty"
        );
        assert_eq!(status("ReplayFromJSON", &[0xff]).code, INVALID_ARGUMENT);
        assert!(answer("GetWorkflowNames", &[]).is_none());
    }
}

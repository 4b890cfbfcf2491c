//! What the core resolves (timers, activities, children, signals to other workflows) as
//! the responses the SDK waits for, by the id of its command.

use super::commands::{child_execution, Pending, RunState, LOCAL_RETRY_THRESHOLD};
use super::payloads::{encode_payloads, payloads_of, MessageError};
use prost::Message as _;
use ringrunner_protocol::temporal::Message;
use temporalio_common::protos::coresdk::activity_result::activity_resolution::Status as ActivityStatus;
use temporalio_common::protos::coresdk::activity_result::DoBackoff;
use temporalio_common::protos::coresdk::child_workflow::child_workflow_result::Status as ChildStatus;
use temporalio_common::protos::coresdk::workflow_activation::{
    resolve_child_workflow_execution_start::Status as ChildStartStatus,
    workflow_activation_job::Variant as Job,
};
use temporalio_common::protos::coresdk::workflow_commands::{
    query_result, workflow_command::Variant, QueryResult, QuerySuccess,
};
use temporalio_common::protos::temporal::api::failure::v1::Failure;

pub fn failed(id: u64, failure: Option<Failure>) -> Message {
    Message {
        id,
        failure: Some(failure.unwrap_or_default().encode_to_vec()),
        ..Message::default()
    }
}

pub fn resolved(
    id: u64,
    payloads: Vec<temporalio_common::protos::temporal::api::common::v1::Payload>,
) -> Message {
    Message {
        id,
        payloads: encode_payloads(payloads),
        ..Message::default()
    }
}

/// The responses a resolution job gives the SDK (none for jobs it does not see).
pub fn resolution(job: &Job, run: &mut RunState) -> Option<Vec<Message>> {
    let message = match job {
        Job::FireTimer(timer) => {
            run.pending.remove(&u64::from(timer.seq));
            Message {
                id: u64::from(timer.seq),
                ..Message::default()
            }
        }
        Job::ResolveActivity(activity) => {
            let id = u64::from(activity.seq);
            run.pending.remove(&id);
            match activity
                .result
                .as_ref()
                .and_then(|result| result.status.as_ref())
            {
                Some(ActivityStatus::Completed(success)) => {
                    resolved(id, success.result.clone().into_iter().collect())
                }
                Some(ActivityStatus::Failed(failure)) => failed(id, failure.failure.clone()),
                Some(ActivityStatus::Cancelled(cancelled)) => failed(id, cancelled.failure.clone()),
                Some(ActivityStatus::Backoff(backoff)) => {
                    failed(id, Some(local_backoff_failure(backoff)))
                }
                None => return None,
            }
        }
        Job::ResolveChildWorkflowExecutionStart(start) => {
            let id = u64::from(start.seq);
            match &start.status {
                Some(ChildStartStatus::Succeeded(success)) => {
                    let workflow_id = match run.pending.get(&id) {
                        Some(Pending::Child(workflow_id)) => workflow_id.clone(),
                        _ => String::new(),
                    };
                    let started = (workflow_id, success.run_id.clone());
                    let waiter = run.child_waiters.remove(&id);
                    let answer = waiter.map(|waiter| child_execution(waiter, &started));
                    run.children_started.insert(id, started);
                    return answer.map(|answer| vec![answer]);
                }
                Some(ChildStartStatus::Failed(failure)) => {
                    run.pending.remove(&id);
                    let failure = super::payloads::application_failure(
                        format!(
                            "child workflow {} could not start: cause {}",
                            failure.workflow_id, failure.cause
                        ),
                        "ChildWorkflowExecutionAlreadyStartedError",
                    );
                    let mut out = vec![failed(id, Some(failure.clone()))];
                    if let Some(waiter) = run.child_waiters.remove(&id) {
                        out.push(failed(waiter, Some(failure)));
                    }
                    return Some(out);
                }
                Some(ChildStartStatus::Cancelled(cancelled)) => {
                    run.pending.remove(&id);
                    failed(id, cancelled.failure.clone())
                }
                None => return None,
            }
        }
        Job::ResolveChildWorkflowExecution(child) => {
            let id = u64::from(child.seq);
            run.pending.remove(&id);
            match child
                .result
                .as_ref()
                .and_then(|result| result.status.as_ref())
            {
                Some(ChildStatus::Completed(success)) => {
                    resolved(id, success.result.clone().into_iter().collect())
                }
                Some(ChildStatus::Failed(failure)) => failed(id, failure.failure.clone()),
                Some(ChildStatus::Cancelled(cancelled)) => failed(id, cancelled.failure.clone()),
                None => return None,
            }
        }
        Job::ResolveSignalExternalWorkflow(external) => {
            external_resolution(external.seq, external.failure.as_ref(), run)
        }
        Job::ResolveRequestCancelExternalWorkflow(external) => {
            external_resolution(external.seq, external.failure.as_ref(), run)
        }
        _ => return None,
    };
    Some(vec![message])
}

/// A signal or cancel sent to another workflow: done, or its failure.
fn external_resolution(seq: u32, failure: Option<&Failure>, run: &mut RunState) -> Message {
    let id = u64::from(seq);
    run.pending.remove(&id);
    match failure {
        Some(failure) => failed(id, Some(failure.clone())),
        None => resolved(id, Vec::new()),
    }
}

pub fn query_answer(
    query_id: String,
    failure: Option<Failure>,
    message: &Message,
) -> Result<Variant, MessageError> {
    let variant = match failure {
        Some(failure) => query_result::Variant::Failed(failure),
        None => query_result::Variant::Succeeded(QuerySuccess {
            response: payloads_of(message)?.into_iter().next(),
        }),
    };
    Ok(Variant::RespondToQuery(QueryResult {
        query_id,
        variant: Some(variant),
    }))
}

/// A local activity whose next retry is further away than the core waits out itself
/// (`LOCAL_RETRY_THRESHOLD`): it fails, saying so.
fn local_backoff_failure(backoff: &DoBackoff) -> Failure {
    let delay = super::payloads::nanos_of(backoff.backoff_duration.as_ref());
    super::payloads::application_failure(
        format!(
            "local activity attempt {} would retry after {} ms, past the {} s a local activity may back off within its workflow task; use a regular activity for long retries",
            backoff.attempt,
            delay / 1_000_000,
            LOCAL_RETRY_THRESHOLD.as_secs()
        ),
        "LocalActivityBackoffTooLong",
    )
}

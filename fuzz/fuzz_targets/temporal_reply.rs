//! A workflow worker's reply on arbitrary input: the temporal `Frame`/`Message` decoding,
//! the nested Temporal messages (payloads, failure, header) and every command's options
//! JSON, translated into core commands as a workflow task would. Never a panic; garbage is
//! a typed error that fails the workflow task. Also run on the input shaped as one command
//! message whose options are the fuzzer's bytes, so the JSON decoders get direct input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner_protocol::temporal::{encode_frame, Frame, Message};

/// The commands a worker may send (spec temporal "Commands", PHP -> rr).
const COMMANDS: [&str; 12] = [
    "ExecuteActivity",
    "NewTimer",
    "CompleteWorkflow",
    "ContinueAsNew",
    "ExecuteChildWorkflow",
    "GetChildWorkflowExecution",
    "SignalExternalWorkflow",
    "CancelExternalWorkflow",
    "Cancel",
    "GetVersion",
    "SideEffect",
    "Panic",
];

fuzz_target!(|data: &[u8]| {
    let _ = ringrunner::plugins::temporal::translate_reply(data);
    let Some((&which, options)) = data.split_first() else {
        return;
    };
    let frame = Frame {
        messages: vec![Message {
            id: 9001,
            command: COMMANDS[usize::from(which) % COMMANDS.len()].to_owned(),
            options: options.to_vec(),
            ..Message::default()
        }],
    };
    let mut body = Vec::new();
    encode_frame(&frame, &mut body);
    let _ = ringrunner::plugins::temporal::translate_reply(&body);
});

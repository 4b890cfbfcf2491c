//! `GetVersion` and `SideEffect` recorded in the workflow's history. rr records both in
//! markers through the Go SDK; the core's only marker a workflow can set is the patch marker
//! (`SetPatchMarker`), which carries its id into history and announces it on replay
//! (`NotifyHasPatch`, before the activation's other jobs). So the id carries what must be
//! replayed: `rr-version/<version>/<change id>` and `rr-side-effect/<n>/<base64 payloads>`.

use super::command_options::VersionOptions;
use super::commands::{CommandError, RunState};
use crate::plugins::rpc::services::{base64, base64_decode};
use ringrunner_protocol::temporal::Message;
use temporalio_common::protos::coresdk::workflow_commands::{
    workflow_command::Variant, SetPatchMarker,
};

/// Go SDK's `workflow.DefaultVersion`: what `GetVersion` answers for code that ran before
/// the change.
pub const DEFAULT_VERSION: i64 = -1;
/// The largest side-effect value (its encoded `Payloads`) recorded in history; a larger one
/// is not recorded (a warning says so) and a replay gets the value the code computes again.
pub const MAX_SIDE_EFFECT_BYTES: usize = 16 * 1024;
const VERSION_PREFIX: &str = "rr-version/";
const SIDE_EFFECT_PREFIX: &str = "rr-side-effect/";

/// The version `GetVersion` answers (Go's `GetVersion`): the one history recorded for the
/// change, else `maxSupported` recorded now, else (replaying code that ran before the change)
/// `DefaultVersion`; the same for every call of one change in a run.
///
/// # Errors
/// A version outside `[minSupported, maxSupported]`: the workflow task fails, as Go's
/// `GetVersion` panics.
pub fn get_version(
    options: &VersionOptions,
    run: &mut RunState,
    commands: &mut Vec<Variant>,
) -> Result<i64, CommandError> {
    let change_id = options.change_id.as_str();
    let recorded = run.versions.get(change_id).copied().or_else(|| {
        run.patches
            .iter()
            .find_map(|patch| version_of(patch, change_id))
    });
    let version = match recorded {
        Some(version) => version,
        None if run.replaying => DEFAULT_VERSION,
        None => options.max_supported,
    };
    if version < options.min_supported || version > options.max_supported {
        return Err(CommandError::UnsupportedVersion {
            change_id: change_id.to_owned(),
            version,
            min_supported: options.min_supported,
            max_supported: options.max_supported,
        });
    }
    if version != DEFAULT_VERSION && !run.versions.contains_key(change_id) {
        commands.push(patch(format!("{VERSION_PREFIX}{version}/{change_id}")));
    }
    run.versions.insert(change_id.to_owned(), version);
    Ok(version)
}

fn version_of(patch: &str, change_id: &str) -> Option<i64> {
    let (version, id) = patch.strip_prefix(VERSION_PREFIX)?.split_once('/')?;
    (id == change_id).then(|| version.parse().ok()).flatten()
}

/// The value `SideEffect` answers: the one history recorded for this side effect (the n-th
/// of the run), else the SDK's, recorded now.
pub fn side_effect(
    message: &Message,
    run: &mut RunState,
    commands: &mut Vec<Variant>,
) -> Option<Vec<u8>> {
    let number = run.side_effects;
    run.side_effects += 1;
    let prefix = format!("{SIDE_EFFECT_PREFIX}{number}/");
    let recorded = run
        .patches
        .iter()
        .find(|patch| patch.starts_with(&prefix))
        .cloned();
    if let Some(id) = recorded {
        let value = base64_decode(&id[prefix.len()..]);
        commands.push(patch(id));
        if value.is_some() {
            return value;
        }
    }
    let value = message.payloads.clone().unwrap_or_default();
    if run.replaying {
        // History from before side effects were recorded: the code's value again.
        return Some(value);
    }
    if value.len() > MAX_SIDE_EFFECT_BYTES {
        tracing::warn!(
            bytes = value.len(),
            limit = MAX_SIDE_EFFECT_BYTES,
            "side effect value too large to record in history; a replay computes it again"
        );
    } else {
        commands.push(patch(format!("{prefix}{}", base64(&value))));
    }
    Some(value)
}

fn patch(patch_id: String) -> Variant {
    Variant::SetPatchMarker(SetPatchMarker {
        patch_id,
        deprecated: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(change_id: &str, min_supported: i64, max_supported: i64) -> VersionOptions {
        VersionOptions {
            change_id: change_id.into(),
            min_supported,
            max_supported,
        }
    }

    /// A run replaying the history `commands` (one marker) made.
    fn replay_of(commands: &[Variant]) -> RunState {
        let [Variant::SetPatchMarker(marker)] = commands else {
            panic!("one marker expected: {commands:?}");
        };
        let mut replay = RunState {
            replaying: true,
            ..RunState::default()
        };
        replay.patches.insert(marker.patch_id.clone());
        replay
    }

    #[test]
    fn a_new_change_records_the_max_and_a_replay_gets_what_history_has() {
        let mut live = RunState::default();
        let mut commands = Vec::new();
        assert_eq!(
            get_version(&options("c", 1, 3), &mut live, &mut commands),
            Ok(3)
        );
        // Asked again in the run: the same version, no second marker.
        assert_eq!(
            get_version(&options("c", 1, 4), &mut live, &mut commands),
            Ok(3)
        );
        let mut replay = replay_of(&commands);
        let mut replayed = Vec::new();
        assert_eq!(
            get_version(&options("c", 1, 5), &mut replay, &mut replayed),
            Ok(3)
        );
        assert_eq!(replayed, commands, "the replay sets the same marker");
    }

    #[test]
    fn a_version_outside_the_range_fails_with_the_go_sdks_texts() {
        let mut replay = RunState {
            replaying: true,
            ..RunState::default()
        };
        let error = get_version(&options("c", 0, 2), &mut replay, &mut Vec::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Workflow code removed support of version -1. for \"c\" changeID. The oldest supported version is 0"
        );
        replay.patches.insert("rr-version/7/c".into());
        let error = get_version(&options("c", 0, 2), &mut replay, &mut Vec::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Workflow code is too old to support version 7 for \"c\" changeID. The maximum supported version is 2"
        );
    }

    #[test]
    fn a_side_effect_is_recorded_and_replays_its_recorded_value() {
        let mut live = RunState::default();
        let mut commands = Vec::new();
        let first = Message {
            payloads: Some(b"first value".to_vec()),
            ..Message::default()
        };
        assert_eq!(
            side_effect(&first, &mut live, &mut commands),
            first.payloads
        );
        let mut replay = replay_of(&commands);
        let recomputed = Message {
            payloads: Some(b"another value".to_vec()),
            ..Message::default()
        };
        let mut replayed = Vec::new();
        assert_eq!(
            side_effect(&recomputed, &mut replay, &mut replayed),
            first.payloads
        );
        assert_eq!(replayed, commands);
    }

    #[test]
    fn a_side_effect_past_the_limit_is_answered_but_not_recorded() {
        let mut live = RunState::default();
        let mut commands = Vec::new();
        let big = Message {
            payloads: Some(vec![b'x'; MAX_SIDE_EFFECT_BYTES + 1]),
            ..Message::default()
        };
        assert_eq!(side_effect(&big, &mut live, &mut commands), big.payloads);
        assert!(commands.is_empty());
    }
}

//! Worker states, named and numbered as RoadRunner names them (spec pool-server §3).

/// A worker's state; the numeric value is rr's `status` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WorkerState {
    /// Spawned, handshake not finished.
    Inactive = 0,
    /// Idle, may be taken.
    Ready = 1,
    /// Executing a request.
    Working = 2,
    /// Must be retired when it comes back.
    Invalid = 3,
    /// Stop frame sent or kill in progress.
    Stopping = 4,
    /// Process ended.
    Stopped = 5,
    /// Removed on purpose; no replacement.
    Destroyed = 6,
    /// Hit `max_jobs`.
    MaxJobsReached = 7,
    /// Relay error, non-zero exit, or failure to boot.
    Errored = 8,
    /// Supervisor: idle too long.
    IdleTtlReached = 9,
    /// Supervisor: lived too long.
    TtlReached = 10,
    /// Supervisor: RSS over the limit.
    MaxMemoryReached = 11,
    /// `exec_ttl` hit (rr has no name for code 12 and prints `undefined`).
    ExecTtlReached = 12,
}

impl WorkerState {
    /// All states, by code.
    pub const ALL: [Self; 13] = [
        Self::Inactive,
        Self::Ready,
        Self::Working,
        Self::Invalid,
        Self::Stopping,
        Self::Stopped,
        Self::Destroyed,
        Self::MaxJobsReached,
        Self::Errored,
        Self::IdleTtlReached,
        Self::TtlReached,
        Self::MaxMemoryReached,
        Self::ExecTtlReached,
    ];

    /// The state with rr's code `code`.
    #[must_use]
    pub fn from_code(code: u8) -> Self {
        Self::ALL
            .get(usize::from(code))
            .copied()
            .unwrap_or(Self::Errored)
    }

    /// rr's `statusStr`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Ready => "ready",
            Self::Working => "working",
            Self::Invalid => "invalid",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Destroyed => "destroyed",
            Self::MaxJobsReached => "maxJobsReached",
            Self::Errored => "errored",
            Self::IdleTtlReached => "idleTTLReached",
            Self::TtlReached => "ttlReached",
            Self::MaxMemoryReached => "maxMemoryReached",
            Self::ExecTtlReached => "undefined",
        }
    }

    /// True for states after which the worker is retired with a stop frame (graceful).
    #[must_use]
    pub const fn retires_gracefully(self) -> bool {
        matches!(
            self,
            Self::Invalid
                | Self::MaxJobsReached
                | Self::IdleTtlReached
                | Self::TtlReached
                | Self::MaxMemoryReached
                | Self::Destroyed
                | Self::Stopping
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_rr_s() {
        for (code, state) in WorkerState::ALL.iter().enumerate() {
            assert_eq!(*state as usize, code);
            assert_eq!(WorkerState::from_code(code as u8), *state);
        }
        assert_eq!(WorkerState::IdleTtlReached.name(), "idleTTLReached");
        assert_eq!(WorkerState::ExecTtlReached.name(), "undefined");
    }
}

//! A slot's lifecycle task: start a worker, hand it to the pool, wait until it exits or is
//! handed back, stop or kill it, start the next one. At boot a failure is reported to the
//! pool's creator; at runtime it is retried with exponential backoff.

use super::slot::{SlotProcess, SlotToken};
use super::{
    unix_now_ns, PoolShared, SpawnError, Sweep, WorkerState, RESPAWN_BACKOFF_MAX,
    RESPAWN_BACKOFF_MIN, STOP_GRACE,
};
use crate::aio::{Backend, Stream};
use crate::runtime::ShardContext;
use crate::worker::process::{self, SpawnedProcess, StdioRelay};
use crate::worker::relay::RelayIo;
use ringrunner_protocol::payload::{encode_pid_request, encode_stop, parse_pid_reply};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

type BootReport = oneshot::Sender<Result<(), SpawnError>>;

/// A started, handshaken worker as its lifecycle task holds it.
struct RunningWorker {
    child: Child,
    exit: AsyncFd<OwnedFd>,
    generation: u64,
}

pub(super) async fn run_slot(
    shared: Arc<PoolShared>,
    index: u32,
    mut boot: Option<BootReport>,
    shard: Rc<ShardContext>,
) {
    let slot = shared.slot(index);
    slot.task_live.store(true, Ordering::Release);
    // The task owns its slot whenever no worker of it is in service.
    let mut token = SlotToken::claim(index);
    let mut failures: u32 = 0;
    let debug = shared.config.debug;
    while !shared.closed.load(Ordering::SeqCst)
        && slot.state() != WorkerState::Destroyed
        && slot.wanted.load(Ordering::Acquire)
    {
        // Debug mode: after the boot check, a worker is started only when a request asks.
        if debug && boot.is_none() && failures == 0 && !wait_for_demand(&shared).await {
            break;
        }
        match start_worker(&shared, &shard, index).await {
            Ok(mut running) => {
                if failures > 0 {
                    shared.failing_slots.fetch_sub(1, Ordering::Relaxed);
                    tracing::info!(pool = %shared.config.name, slot = index, "worker boots again");
                }
                failures = 0;
                if debug {
                    if let Some(boot) = boot.take() {
                        let _ = boot.send(Ok(()));
                        // The boot check passed; requests get workers started for them.
                        slot.set_state(WorkerState::Invalid);
                        let status = stop_worker(&shared, &shard, index, &mut running).await;
                        finish_worker(&shared, index, running.generation, status);
                        continue;
                    }
                }
                if !slot.transition(WorkerState::Inactive, WorkerState::Ready) {
                    // Destroyed while starting.
                    if let Some(boot) = boot.take() {
                        let _ = boot.send(Ok(()));
                    }
                    stop_worker(&shared, &shard, index, &mut running).await;
                    break;
                }
                shared.release(token, Some(shard.index()));
                // Reported only once the worker is in service: when the pool's start returns,
                // every worker is ready (and the status plugin's /ready says so).
                if let Some(boot) = boot.take() {
                    let _ = boot.send(Ok(()));
                }
                shared.worker_started.notify_waiters();
                let status;
                (status, token) = serve_until_retired(&shared, &shard, index, &mut running).await;
                finish_worker(&shared, index, running.generation, status);
            }
            Err(error) => {
                if let Some(boot) = boot.take() {
                    let _ = boot.send(Err(error));
                    break;
                }
                if failures == 0 {
                    shared.failing_slots.fetch_add(1, Ordering::Relaxed);
                }
                failures = failures.saturating_add(1);
                let delay = backoff(failures);
                tracing::error!(pool = %shared.config.name, slot = index, attempt = failures,
                    retry_in_ms = delay.as_millis() as u64, %error, "worker failed to boot");
                // Destroy wakes this wait.
                let _ = tokio::time::timeout(delay, until_closing(&shared)).await;
            }
        }
    }
    if failures > 0 {
        shared.failing_slots.fetch_sub(1, Ordering::Relaxed);
    }
    if let Some(boot) = boot.take() {
        let _ = boot.send(Err(SpawnError::Closed));
    }
    // The slot is free: the next task for it starts owning it.
    drop(token);
    slot.task_live.store(false, Ordering::Release);
    shared.live_tasks.fetch_sub(1, Ordering::AcqRel);
    shared.tasks_done.notify_waiters();
}

/// Debug mode: waits until a request wants a worker (true) or the pool is destroyed (false).
async fn wait_for_demand(shared: &PoolShared) -> bool {
    tokio::select! {
        () = shared.demand.notified() => true,
        () = until_closing(shared) => false,
    }
}

/// Returns once the pool is closed: registered for the wake-up before it checks the flag,
/// so a destroy in between is not missed.
async fn until_closing(shared: &PoolShared) {
    let closing = shared.closing.notified();
    tokio::pin!(closing);
    closing.as_mut().enable();
    if !shared.closed.load(Ordering::SeqCst) {
        closing.await;
    }
}

/// 100 ms, 200 ms, 400 ms … capped at 10 s.
fn backoff(failures: u32) -> std::time::Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    RESPAWN_BACKOFF_MIN
        .saturating_mul(factor)
        .min(RESPAWN_BACKOFF_MAX)
}

/// Spawns the process, starts its stderr reader and runs the pid handshake within
/// `allocate_timeout` (spec relay-protocol §8.1).
async fn start_worker(
    shared: &Arc<PoolShared>,
    shard: &ShardContext,
    index: u32,
) -> Result<RunningWorker, SpawnError> {
    let slot = shared.slot(index);
    let config = &shared.config;
    let command = config.command.display();
    slot.set_state(WorkerState::Inactive);
    let SpawnedProcess {
        mut child,
        pid,
        pidfd,
        relay_write,
        relay_read,
        stderr,
    } = process::spawn(
        &config.worker_command(),
        if shared.socket_relay.is_some() {
            StdioRelay::Socket
        } else {
            StdioRelay::Pipes
        },
    )
    .map_err(|error| SpawnError::Start {
        command: command.clone(),
        reason: error.to_string(),
    })?;
    let exit = match pidfd.try_clone().and_then(process::watch_exit) {
        Ok(exit) => exit,
        Err(error) => {
            // No exit watcher to reap with: kill it and wait off the shard.
            process::kill(&pidfd);
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
            return Err(start_error(&command, &error));
        }
    };
    let (stderr_closed, stderr_eof) = oneshot::channel();
    tokio::task::spawn_local(forward_stderr(
        Arc::clone(shared),
        index,
        pid,
        stderr,
        shard.backend(),
        stderr_closed,
    ));
    let mut starting = Starting {
        child,
        pid,
        exit,
        stderr_eof,
    };
    let (relay_write, relay_read) = match &shared.socket_relay {
        None => (
            relay_write.expect("pipes relay"),
            relay_read.expect("pipes relay"),
        ),
        // The worker connects and the accept side runs the handshake (spec §8.2).
        Some(socket) => {
            connect_over_socket(shared, slot, socket, &mut starting, &pidfd, &command).await?
        }
    };
    let generation = slot.generation.fetch_add(1, Ordering::AcqRel) + 1;
    let mut relay = match RelayIo::from_fds(
        relay_write.as_fd(),
        relay_read.as_fd(),
        config.max_payload_bytes,
        shard.backend(),
    ) {
        Ok(relay) => relay,
        Err(error) => return Err(starting.abandon(&pidfd, &command, &error).await),
    };
    slot.install(SlotProcess {
        relay_write,
        relay_read,
        pidfd,
        generation,
    });
    slot.pid.store(pid, Ordering::Release);
    if shared.socket_relay.is_none() {
        handshake_or_kill(shared, slot, &mut relay, &mut starting, command).await?;
    }
    let Starting { child, exit, .. } = starting;
    slot.execs.store(0, Ordering::Relaxed);
    slot.last_used_ns.store(0, Ordering::Relaxed);
    slot.spawned_at_ns.store(shared.now_ns(), Ordering::Relaxed);
    slot.created_unix_ns.store(unix_now_ns(), Ordering::Relaxed);
    shard.relays().put(shared.id, index, generation, relay);
    tracing::debug!(pool = %config.name, pid, max_execs = config.max_jobs, "worker is allocated");
    Ok(RunningWorker {
        child,
        exit,
        generation,
    })
}

/// A spawned process whose start is not finished: what its failure paths kill and reap.
struct Starting {
    child: Child,
    pid: u32,
    exit: AsyncFd<OwnedFd>,
    stderr_eof: oneshot::Receiver<()>,
}

impl Starting {
    /// Ends a process whose start failed before it was installed in its slot: SIGKILL and
    /// reap, so that neither a stray worker nor a zombie (nor its stderr reader, which ends
    /// at EOF) is left. Worst case: the reap waits for the killed process to die.
    async fn abandon(
        &mut self,
        pidfd: &OwnedFd,
        command: &str,
        error: &std::io::Error,
    ) -> SpawnError {
        process::kill(pidfd);
        let _ = process::reap(&mut self.child, &self.exit).await;
        start_error(command, error)
    }
}

/// Waits for the worker to connect to the socket relay (the accept side runs the
/// handshake, spec relay-protocol §8.2) within `allocate_timeout`; the connection twice (to
/// write and to read). On failure the process is killed and reaped.
async fn connect_over_socket(
    shared: &PoolShared,
    slot: &super::slot::WorkerSlot,
    socket: &crate::worker::socket_relay::SocketRelay,
    starting: &mut Starting,
    pidfd: &OwnedFd,
    command: &str,
) -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let config = &shared.config;
    let pid = starting.pid;
    let deadline = tokio::time::Instant::now() + config.allocate_timeout;
    let gone = async {
        let _ = starting.exit.readable().await;
    };
    let Some(connection) = socket.connection_of(pid, deadline, gone).await else {
        let exited = starting.child.try_wait().ok().flatten();
        if exited.is_none() {
            process::kill(pidfd);
        }
        let status = process::reap(&mut starting.child, &starting.exit)
            .await
            .map(|s| s.to_string())
            .unwrap_or_default();
        let stderr_tail = stderr_tail(slot, &starting.exit, &mut starting.stderr_eof).await;
        let command = command.to_owned();
        return Err(match exited {
            Some(_) => SpawnError::Handshake {
                command,
                pid,
                reason: format!(
                    "worker exited before connecting to the relay {} ({status})",
                    config.relay_dsn
                ),
                stderr_tail,
            },
            None => SpawnError::Timeout {
                command,
                pid,
                stderr_tail,
            },
        });
    };
    match connection.try_clone() {
        Ok(read) => Ok((connection, read)),
        Err(error) => Err(starting.abandon(pidfd, command, &error).await),
    }
}

/// The pipes relay's pid handshake within `allocate_timeout` (spec relay-protocol §8.1); on
/// failure the installed process is killed, reaped and uninstalled.
async fn handshake_or_kill(
    shared: &PoolShared,
    slot: &super::slot::WorkerSlot,
    relay: &mut RelayIo,
    starting: &mut Starting,
    command: String,
) -> Result<(), SpawnError> {
    let pid = starting.pid;
    let handshake = tokio::time::timeout(
        shared.config.allocate_timeout,
        handshake(relay, shared.server_pid, pid),
    );
    let reason = match handshake.await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(reason)) => Some(reason),
        Err(_) => None,
    };
    slot.kill();
    let status = process::reap(&mut starting.child, &starting.exit)
        .await
        .map(|status| format!(" ({status})"))
        .unwrap_or_default();
    slot.uninstall();
    let stderr_tail = stderr_tail(slot, &starting.exit, &mut starting.stderr_eof).await;
    Err(match reason {
        Some(reason) => SpawnError::Handshake {
            command,
            pid,
            reason: format!("{reason}{status}"),
            stderr_tail,
        },
        None => SpawnError::Timeout {
            command,
            pid,
            stderr_tail,
        },
    })
}

fn start_error(command: &str, error: &std::io::Error) -> SpawnError {
    SpawnError::Start {
        command: command.to_owned(),
        reason: error.to_string(),
    }
}

/// Gives the stderr reader a moment to record the dying worker's last words.
async fn stderr_tail(
    slot: &super::slot::WorkerSlot,
    exit: &AsyncFd<OwnedFd>,
    stderr_eof: &mut oneshot::Receiver<()>,
) -> String {
    const LAST_WORDS: std::time::Duration = std::time::Duration::from_millis(500);
    let _ = tokio::time::timeout(LAST_WORDS, exit.readable()).await;
    // The reader reaches EOF once the process (and anything that inherited its stderr) is
    // gone: then every byte it wrote has been recorded.
    let _ = tokio::time::timeout(LAST_WORDS, stderr_eof).await;
    slot.take_stderr_tail()
}

async fn handshake(relay: &mut RelayIo, server_pid: u32, spawned_pid: u32) -> Result<(), String> {
    let mut frame = Vec::with_capacity(32);
    encode_pid_request(server_pid, &mut frame);
    let (sent, _) = relay.send(frame).await;
    // A worker that exits at once may close stdin first: the reply read tells why.
    let reply = relay
        .receive(|frame| parse_pid_reply(frame).map_err(|e| e.to_string()))
        .await;
    match reply {
        Ok(Ok(pid)) if pid > 0 => {
            if pid != spawned_pid {
                tracing::debug!(
                    reported = pid,
                    spawned = spawned_pid,
                    "pipes handshake pid differs (wrapper process)"
                );
            }
            sent.map_err(|e| e.to_string())
        }
        Ok(Ok(_)) => Err("handshake reply carries pid 0".into()),
        Ok(Err(reason)) => Err(reason),
        Err(_) if relay.is_collecting_stray_output() => Err(relay
            .drain_stray_output()
            .await
            .map_or_else(|| "worker script not found".into(), |e| e.to_string())),
        Err(error) => Err(format!("worker exited before the handshake: {error}")),
    }
}

/// Reads the worker's stderr until EOF; each chunk is one INFO line of the `server` logger
/// (spec relay-protocol §7.4).
async fn forward_stderr(
    shared: Arc<PoolShared>,
    index: u32,
    pid: u32,
    stderr: OwnedFd,
    backend: Backend,
    closed: oneshot::Sender<()>,
) {
    let pipe = match Stream::new(stderr, backend) {
        Ok(pipe) => pipe,
        Err(error) => {
            tracing::error!(target: "server", pid, %error, "worker stderr cannot be read");
            return;
        }
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        let (result, returned) = pipe.read(buf).await;
        buf = returned;
        match result {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                shared.slot(index).record_stderr(&text);
                tracing::info!(target: "server", pid, pool = %shared.config.name, "{}", text.trim_end());
            }
        }
    }
    // Nobody listens once the worker started fine.
    let _ = closed.send(());
}

/// Waits until the process exits by itself or its slot is handed back, then ends it; the
/// slot's token, back with the task.
async fn serve_until_retired(
    shared: &Arc<PoolShared>,
    shard: &ShardContext,
    index: u32,
    running: &mut RunningWorker,
) -> (ExitStatus, SlotToken) {
    let slot = shared.slot(index);
    tokio::select! {
        _ = running.exit.readable() => {
            let status = reap(running).await;
            let state = if status.success() { WorkerState::Stopped } else { WorkerState::Errored };
            slot.mark(state);
            if !shared.closed.load(Ordering::SeqCst) {
                tracing::warn!(pool = %shared.config.name, pid = running.child.id(), %status, "worker exited, replacing it");
            }
            // Idle workers sit on the stack: sweep so that the dead one comes back to us.
            shared.sweep_idle(|other, _| if other == index { Sweep::Fetch } else { Sweep::Keep });
            slot.returned.notified().await;
            (status, SlotToken::claim(index))
        }
        () = slot.returned.notified() => {
            let token = SlotToken::claim(index);
            (stop_worker(shared, shard, index, running).await, token)
        }
    }
}

/// Ends a worker this task owns: stop frame and a grace period for retirements, SIGKILL for
/// errors (spec pool-server §6.3). Worst case: [`STOP_GRACE`] for the stop frame's write
/// and the exit together (a worker that stopped reading its input cannot hold the write
/// longer: the write is abandoned and the worker killed), then the reap after SIGKILL.
async fn stop_worker(
    shared: &Arc<PoolShared>,
    shard: &ShardContext,
    index: u32,
    running: &mut RunningWorker,
) -> ExitStatus {
    let slot = shared.slot(index);
    if slot.state().retires_gracefully() {
        slot.mark(WorkerState::Stopping);
        let relay = shard
            .relays()
            .take(shared.id, index, running.generation)
            .or_else(|| {
                slot.with_process(|p| {
                    let (write, read) = (p.relay_write.as_fd(), p.relay_read.as_fd());
                    RelayIo::from_fds(write, read, 1024, shard.backend()).ok()
                })
                .flatten()
            });
        let stop = async {
            if let Some(relay) = relay {
                let mut frame = Vec::with_capacity(32);
                encode_stop(&mut frame);
                let _ = relay.send(frame).await;
            }
            let _ = running.exit.readable().await;
        };
        if tokio::time::timeout(STOP_GRACE, stop).await.is_err() {
            tracing::warn!(pool = %shared.config.name, pid = running.child.id(),
                grace_ms = STOP_GRACE.as_millis() as u64,
                "worker doesn't respond on stop command, killing process");
            slot.kill();
        }
    } else {
        slot.kill();
    }
    let status = reap(running).await;
    slot.mark(WorkerState::Stopped);
    status
}

/// Waits for the pidfd to report the exit, then reaps the process.
async fn reap(running: &mut RunningWorker) -> ExitStatus {
    process::reap(&mut running.child, &running.exit)
        .await
        .unwrap_or_else(|| ExitStatus::from_raw(0))
}

/// Releases what the pool held for a process that has exited.
fn finish_worker(shared: &Arc<PoolShared>, index: u32, generation: u64, status: ExitStatus) {
    let slot = shared.slot(index);
    slot.uninstall();
    slot.pid.store(0, Ordering::Release);
    tracing::debug!(pool = %shared.config.name, slot = index, %status, "worker stopped");
    for shard in 0..shared.shards.count() {
        let pool = shared.id;
        shared.shards.spawn_on(shard, move |context| async move {
            context.relays().forget(pool, index, generation);
        });
    }
}

<?php
/**
 * The temporal test worker (both pools run it; rr tells them apart by what it sends). Task
 * queue from TEMPORAL_TASK_QUEUE. Workflows:
 *   GreetWorkflow(name)        one activity Greet -> "Hello, <name>!"
 *   TimerWorkflow(ms)          a timer, then "fired"
 *   CartWorkflow()             signals add(item) and checkout, query items; returns the items;
 *                              update add(item) answers the count of items, its validator
 *                              rejects an empty item
 *   ParentWorkflow(n)          a child ChildWorkflow(n) -> n * 2, returns "child said <n*2>"
 *   RetryWorkflow(key)         activity Flaky fails attempts 1 and 2, returns "ok after attempt 3"
 *   FailWorkflow()             throws DomainException
 *   CancellableWorkflow()      waits on a long timer; cancelled -> returns "cancelled"
 *   StepsWorkflow(n, ms)       n activities Step(i) with a timer of ms between, returns the list
 *   HeartbeatWorkflow()        activity Beat (heartbeat timeout 1 s, one attempt) runs 3 s,
 *                              heartbeating over RR_RPC; returns what the heartbeats got back
 *   HangWorkflow()             its first StartWorkflow is never answered (the worker sleeps);
 *                              once replayed in a new worker it returns "answered at last"
 *   BadCommandWorkflow(kind)   sends a command rr must refuse (unknown, broken options) or,
 *                              for garbage, a reply that is not a Frame
 *   CrashWorkflow()            activity Crash: kills its own worker on attempt 1
 *   LocalStepWorkflow()        local activity Step(0), returns its result
 *   BigWorkflow(bytes)         returns a string of `bytes` bytes (past Temporal's payload limit)
 *   MarkersWorkflow()          a side effect (a random number) and GetVersion(change, 1, 2),
 *                              query values; waits for signal go, returns both
 * Activities: Greet, Flaky, Step (appends "step <i> attempt <n> pid <pid>" to TEMPORAL_LOG
 * when set), Crash (SIGKILLs its worker on its first attempt).
 */
declare(strict_types=1);

require_once __DIR__ . '/Worker.php';
require_once __DIR__ . '/../Rpc.php';

use RingRunnerTest\Temporal\{Command, TemporalFailure, Worker, Workflow, WorkflowType};

$log = getenv('TEMPORAL_LOG') ?: '';
$note = function (string $line) use ($log): void {
    if ($log !== '') {
        file_put_contents($log, $line . "\n", FILE_APPEND | LOCK_EX);
    }
};

$workflows = [
    'GreetWorkflow' => new WorkflowType(function (object $state, string $name): Generator {
        return yield Workflow::activity('Greet', [$name]);
    }),
    'TimerWorkflow' => new WorkflowType(function (object $state, int $ms): Generator {
        yield Workflow::timer($ms);
        return 'fired';
    }),
    'CartWorkflow' => new WorkflowType(
        function (object $state): Generator {
            $state->items = [];
            $state->checkout = false;
            yield Workflow::await(fn () => $state->checkout);
            return $state->items;
        },
        [
            'add' => function (object $state, string $item): void { $state->items[] = $item; },
            'checkout' => function (object $state): void { $state->checkout = true; },
        ],
        ['items' => fn (object $state) => $state->items ?? []],
        ['add' => function (object $state, string $item): int {
            $state->items[] = $item;
            return count($state->items);
        }],
        ['add' => function (object $state, string $item): void {
            if ($item === '') {
                throw new InvalidArgumentException('an item needs a name');
            }
        }],
    ),
    'BigWorkflow' => new WorkflowType(function (object $state, int $bytes): Generator {
        yield Workflow::timer(1);
        return str_repeat('x', $bytes);
    }),
    'LocalStepWorkflow' => new WorkflowType(function (object $state): Generator {
        return yield Workflow::localActivity('Step', [0]);
    }),
    'MarkersWorkflow' => new WorkflowType(
        function (object $state): Generator {
            $state->go = false;
            $state->random = yield Workflow::sideEffect(fn () => random_int(0, PHP_INT_MAX));
            $state->version = yield Workflow::version('change', 1, 2);
            yield Workflow::await(fn () => $state->go);
            return [$state->random, $state->version];
        },
        ['go' => function (object $state): void { $state->go = true; }],
        ['values' => fn (object $state) => [$state->random ?? null, $state->version ?? null]],
    ),
    'ParentWorkflow' => new WorkflowType(function (object $state, int $n): Generator {
        $id = $state->info['WorkflowExecution']['ID'] . '-child';
        $result = yield Workflow::child('ChildWorkflow', [$n], ['WorkflowID' => $id, 'WorkflowIDReusePolicy' => 2, 'ParentClosePolicy' => 1]);
        return "child said $result";
    }),
    'ChildWorkflow' => new WorkflowType(function (object $state, int $n): Generator {
        yield Workflow::timer(10);
        return $n * 2;
    }),
    'RetryWorkflow' => new WorkflowType(function (object $state, string $key): Generator {
        return yield Workflow::activity('Flaky', [$key], [
            'RetryPolicy' => ['InitialInterval' => 100_000_000, 'BackoffCoefficient' => 1.0, 'MaximumAttempts' => 5],
        ]);
    }),
    'FailWorkflow' => new WorkflowType(function (object $state): Generator {
        yield Workflow::timer(1);
        throw new DomainException('the workflow gave up');
    }),
    'CancellableWorkflow' => new WorkflowType(function (object $state): Generator {
        try {
            yield Workflow::timer(3_600_000);
            return 'not cancelled';
        } catch (TemporalFailure $failure) {
            return $failure->isCanceled() ? 'cancelled' : 'failed: ' . $failure->getMessage();
        }
    }),
    'StepsWorkflow' => new WorkflowType(function (object $state, int $n, int $ms): Generator {
        $done = [];
        for ($i = 0; $i < $n; $i++) {
            $done[] = yield Workflow::activity('Step', [$i], [
                'RetryPolicy' => ['InitialInterval' => 100_000_000, 'BackoffCoefficient' => 1.0, 'MaximumAttempts' => 5],
            ]);
            if ($ms > 0) {
                yield Workflow::timer($ms);
            }
        }
        return $done;
    }),
    'CrashWorkflow' => new WorkflowType(function (object $state): Generator {
        return yield Workflow::activity('Crash', [], [
            'RetryPolicy' => ['InitialInterval' => 100_000_000, 'BackoffCoefficient' => 1.0, 'MaximumAttempts' => 5],
        ]);
    }),
    'HeartbeatWorkflow' => new WorkflowType(function (object $state): Generator {
        return yield Workflow::activity('Beat', [], [
            'HeartbeatTimeout' => 1_000_000_000,
            'RetryPolicy' => ['MaximumAttempts' => 1],
        ]);
    }),
    'HangWorkflow' => new WorkflowType(function (object $state) use ($log, $note): Generator {
        if (!str_contains((string) @file_get_contents($log), 'hung')) {
            $note('hung pid ' . getmypid());
            sleep(3600);
        }
        yield Workflow::timer(1);
        return 'answered at last';
    }),
    'BadCommandWorkflow' => new WorkflowType(function (object $state, string $kind): Generator {
        return yield match ($kind) {
            'unknown' => new Command('Teleport', []),
            'garbage' => new Command('__garbage__', []),
            default => new Command('NewTimer', ['ms' => 'soon']),
        };
    }),
];

$activities = [
    'Greet' => fn (array $info, string $name): string => "Hello, $name!",
    'Flaky' => function (array $info, string $key): string {
        $attempt = (int) ($info['Attempt'] ?? 1);
        if ($attempt < 3) {
            throw new RuntimeException("flaky failure on attempt $attempt");
        }
        return "ok after attempt $attempt";
    },
    'Crash' => function (array $info): string {
        $attempt = (int) ($info['Attempt'] ?? 1);
        if ($attempt === 1) {
            posix_kill(getmypid(), SIGKILL);
        }
        return "survived on attempt $attempt";
    },
    'Beat' => function (array $info): array {
        $rpc = RingRunnerTest\RpcClient::connect(getenv('RR_RPC'));
        $answers = [];
        for ($i = 0; $i < 6; $i++) {
            usleep(500_000);
            $answers[] = $rpc->call('temporal.RecordActivityHeartbeat', [
                'taskToken' => $info['TaskToken'],
                'details' => base64_encode(RingRunnerTest\Temporal\Payloads::encode([$i])),
            ]);
        }
        return $answers;
    },
    'Step' => function (array $info, int $i) use ($note): string {
        $note("step $i attempt " . ($info['Attempt'] ?? 1) . ' pid ' . getmypid());
        return "step $i";
    },
];

(new Worker(getenv('TEMPORAL_TASK_QUEUE') ?: 'default', $workflows, $activities))->run();

<?php
/**
 * A small PHP implementation of the SDK's side of the temporal worker protocol
 * (spec/temporal.md): workflows are generators that yield commands (activities, timers,
 * children, awaits) and get their results back; activities are plain callables.
 * Test use only: the real SDK is temporal/sdk.
 */
declare(strict_types=1);

namespace RingRunnerTest\Temporal;

require_once __DIR__ . '/../Goridge.php';
require_once __DIR__ . '/Codec.php';

use RingRunnerTest\Worker as GoridgeWorker;

/** What a workflow yields. */
final class Command
{
    public function __construct(public string $name, public array $options, public ?array $payloads = null)
    {
    }
}

/** Yielded by a workflow to wait until a condition holds (re-checked after each signal). */
final class Await
{
    /** @param \Closure(): bool $condition */
    public function __construct(public \Closure $condition)
    {
    }
}

/** A failure an activity, child or timer resolved with. */
final class TemporalFailure extends \RuntimeException
{
    public function __construct(public Failure $failure)
    {
        parent::__construct($failure->rootMessage());
    }

    public function isCanceled(): bool
    {
        for ($failure = $this->failure; $failure !== null; $failure = $failure->cause) {
            if ($failure->canceled) {
                return true;
            }
        }
        return false;
    }
}

/** The helpers workflows call. */
final class Workflow
{
    public static function activity(string $name, array $args = [], array $options = []): Command
    {
        return new Command('ExecuteActivity', [
            'name' => $name,
            'options' => $options + ['StartToCloseTimeout' => 10_000_000_000, 'HeartbeatTimeout' => 0, 'RetryPolicy' => null],
        ], $args);
    }

    public static function localActivity(string $name, array $args = [], array $options = []): Command
    {
        return new Command('ExecuteLocalActivity', [
            'name' => $name,
            'options' => $options + ['StartToCloseTimeout' => 10_000_000_000, 'RetryPolicy' => null],
        ], $args);
    }

    /** The SDK runs the side effect here; rr answers the value history recorded. */
    public static function sideEffect(\Closure $effect): Command
    {
        return new Command('SideEffect', [], [$effect()]);
    }

    public static function version(string $changeId, int $minSupported, int $maxSupported): Command
    {
        return new Command('GetVersion', ['changeID' => $changeId, 'minSupported' => $minSupported, 'maxSupported' => $maxSupported]);
    }

    public static function timer(int $ms): Command
    {
        return new Command('NewTimer', ['ms' => $ms]);
    }

    public static function child(string $name, array $args = [], array $options = []): Command
    {
        return new Command('ExecuteChildWorkflow', ['name' => $name, 'options' => $options], $args);
    }

    public static function await(\Closure $condition): Await
    {
        return new Await($condition);
    }
}

/** One running workflow: its generator, the command it waits for, its handlers. */
final class Run
{
    public ?int $waitingFor = null;
    public ?Await $awaiting = null;
    public bool $done = false;
    public bool $cancelRequested = false;

    public function __construct(public \Generator $generator, public object $state, public WorkflowType $type)
    {
    }
}

/**
 * A workflow definition: $start(state, ...args) returns the generator; signals, queries,
 * updates (their result is the update's) and update validators (a throw rejects the update)
 * are closures over the same state object.
 */
final class WorkflowType
{
    /**
     * @param array<string, \Closure> $signals @param array<string, \Closure> $queries
     * @param array<string, \Closure> $updates @param array<string, \Closure> $validators
     */
    public function __construct(
        public \Closure $start,
        public array $signals = [],
        public array $queries = [],
        public array $updates = [],
        public array $validators = [],
    ) {
    }
}

final class Worker
{
    /** @var array<string, Run> */
    private array $runs = [];
    private int $nextId = 9001;
    /** @var Message[] */
    private array $out = [];
    /** Set by the `__garbage__` command: the next reply is bytes that are not a Frame. */
    private bool $garbage = false;

    /** @param array<string, WorkflowType> $workflows @param array<string, \Closure> $activities */
    public function __construct(private string $taskQueue, private array $workflows, private array $activities)
    {
    }

    public function run(): void
    {
        $relay = GoridgeWorker::create();
        while ($payload = $relay->waitPayload()) {
            $context = json_decode($payload->context, true) ?: [];
            $messages = FrameCodec::decode($payload->body);
            $this->out = [];
            foreach ($messages as $message) {
                $this->handle($message, $context);
            }
            $relay->respond($this->garbage ? "\xff\xff\xff not a frame" : FrameCodec::encode($this->out));
            $this->garbage = false;
        }
    }

    private function handle(Message $message, array $context): void
    {
        if ($message->command === '') {
            $this->resolve($message);
            return;
        }
        $options = $message->options ?? [];
        if ($message->command === 'InvokeUpdate') {
            // Answered by the UpdateValidated/UpdateCompleted commands, not by a reply.
            $this->update($options, $message->payloads ?? []);
            return;
        }
        $reply = match ($message->command) {
            'GetWorkerInfo' => new Message(0, '', null, [$this->workerInfo()]),
            'InvokeActivity', 'InvokeLocalActivity' => $this->invokeActivity($options, $message->payloads ?? []),
            'StackTrace' => $this->stackTrace($options),
            'StartWorkflow' => $this->startWorkflow($options, $message->payloads ?? [], $context),
            'InvokeSignal' => $this->signal($options, $message->payloads ?? []),
            'InvokeQuery' => $this->query($options, $message->payloads ?? []),
            'CancelWorkflow' => $this->cancel($options),
            'DestroyWorkflow' => $this->destroy($options),
            default => new Message(0, '', null, null, new Failure("unknown command {$message->command}")),
        };
        $reply->id = $message->id;
        // rr's requests are answered after the commands they caused (spec §5).
        $this->out[] = $reply;
    }

    private function workerInfo(): array
    {
        $workflows = [];
        foreach ($this->workflows as $name => $type) {
            $workflows[] = [
                'Name' => $name,
                'Queries' => array_keys($type->queries),
                'Signals' => array_keys($type->signals),
                'Updates' => array_keys($type->updates),
            ];
        }
        return [
            'TaskQueue' => $this->taskQueue,
            'Options' => ['MaxConcurrentActivityExecutionSize' => 0],
            'Workflows' => $workflows,
            'Activities' => array_map(fn (string $name) => ['Name' => $name], array_keys($this->activities)),
            'PhpSdkVersion' => '',
        ];
    }

    private function invokeActivity(array $options, array $args): Message
    {
        $name = $options['name'] ?? '';
        $activity = $this->activities[$name] ?? null;
        try {
            if ($activity === null) {
                throw new \RuntimeException("activity $name is not registered");
            }
            return new Message(0, '', null, [$activity($options['info'] ?? [], ...$args)]);
        } catch (\Throwable $error) {
            return new Message(0, '', null, null, Failure::fromThrowable($error));
        }
    }

    private function startWorkflow(array $options, array $args, array $context): Message
    {
        $info = $options['info'] ?? [];
        $name = $info['WorkflowType']['Name'] ?? '';
        $runId = $info['WorkflowExecution']['RunID'] ?? '';
        $type = $this->workflows[$name] ?? null;
        if ($type === null) {
            return new Message(0, '', null, null, new Failure("workflow $name is not registered"));
        }
        $state = new \stdClass();
        $state->info = $info;
        $state->replay = !empty($context['replay']);
        $run = new Run(($type->start)($state, ...$args), $state, $type);
        $this->runs[$runId] = $run;
        $this->advance($run, fn () => $run->generator->current());
        return new Message(0, '', null, [null]);
    }

    private function signal(array $options, array $args): Message
    {
        $run = $this->runs[$options['runId'] ?? ''] ?? null;
        $handler = $run?->type->signals[$options['name'] ?? ''] ?? null;
        if ($run === null || $handler === null) {
            return new Message(0, '', null, null, new Failure('no such run or signal'));
        }
        $handler($run->state, ...$args);
        $this->wake($run);
        return new Message(0, '', null, [null]);
    }

    /** Resumes a run whose awaited condition now holds. */
    private function wake(Run $run): void
    {
        if ($run->awaiting !== null && ($run->awaiting->condition)()) {
            $run->awaiting = null;
            $this->advance($run, fn () => $run->generator->send(true));
        }
    }

    /** InvokeUpdate: UpdateValidated (with the validator's failure), then UpdateCompleted. */
    private function update(array $options, array $args): void
    {
        $id = $options['updateId'] ?? '';
        $run = $this->runs[$options['runId'] ?? ''] ?? null;
        $name = $options['name'] ?? '';
        $handler = $run?->type->updates[$name] ?? null;
        $answer = fn (string $command, ?array $values, ?Failure $failure) =>
            $this->out[] = new Message($this->nextId++, $command, ['id' => $id], $values, $failure);
        try {
            if ($run === null || $handler === null) {
                throw new \LogicException("unknown update method $name");
            }
            $validator = $run->type->validators[$name] ?? null;
            $validator === null or $validator($run->state, ...$args);
        } catch (\Throwable $error) {
            $answer('UpdateValidated', null, Failure::fromThrowable($error));
            return;
        }
        $answer('UpdateValidated', null, null);
        try {
            $answer('UpdateCompleted', [$handler($run->state, ...$args)], null);
        } catch (\Throwable $error) {
            $answer('UpdateCompleted', null, Failure::fromThrowable($error));
        }
        $this->wake($run);
    }

    /** StackTrace: where the run waits (the real SDK answers its coroutines' PHP stacks). */
    private function stackTrace(array $options): Message
    {
        $run = $this->runs[$options['runId'] ?? ''] ?? null;
        if ($run === null) {
            return new Message(0, '', null, null, new Failure('no such run'));
        }
        $name = $run->state->info['WorkflowType']['Name'] ?? '';
        $where = match (true) {
            $run->awaiting !== null => 'awaiting a condition',
            $run->waitingFor !== null => "waiting for command {$run->waitingFor}",
            default => 'running',
        };
        return new Message(0, '', null, ["$name: $where"]);
    }

    private function query(array $options, array $args): Message
    {
        $run = $this->runs[$options['runId'] ?? ''] ?? null;
        $handler = $run?->type->queries[$options['name'] ?? ''] ?? null;
        if ($run === null || $handler === null) {
            return new Message(0, '', null, null, new Failure('no such run or query'));
        }
        return new Message(0, '', null, [$handler($run->state, ...$args)]);
    }

    private function cancel(array $options): Message
    {
        $run = $this->runs[$options['runId'] ?? ''] ?? null;
        if ($run !== null && !$run->done) {
            $run->cancelRequested = true;
            if ($run->waitingFor !== null) {
                $this->emit($run, new Command('Cancel', ['ids' => [$run->waitingFor]]), false);
            }
        }
        return new Message(0, '', null, [null]);
    }

    private function destroy(array $options): Message
    {
        $runId = $options['runId'] ?? '';
        if (!isset($this->runs[$runId])) {
            return new Message(0, '', null, null, new Failure("Unable to kill workflow because workflow process #$runId was not found"));
        }
        unset($this->runs[$runId]);
        return new Message(0, '', null, [null]);
    }

    /** A response to one of our commands: resumes the run that waits for it. */
    private function resolve(Message $message): void
    {
        foreach ($this->runs as $run) {
            if ($run->waitingFor !== $message->id) {
                continue;
            }
            $run->waitingFor = null;
            if ($message->failure !== null) {
                $this->advance($run, fn () => $run->generator->throw(new TemporalFailure($message->failure)));
            } else {
                $this->advance($run, fn () => $run->generator->send($message->payloads[0] ?? null));
            }
            return;
        }
    }

    /** Runs $step, then emits what the generator yields next, or completes the workflow. */
    private function advance(Run $run, \Closure $step): void
    {
        try {
            $yielded = $step();
            if (!$run->generator->valid()) {
                $run->done = true;
                $this->emit($run, new Command('CompleteWorkflow', [], [$run->generator->getReturn()]), false);
                return;
            }
            if ($yielded instanceof Await) {
                if (($yielded->condition)()) {
                    $this->advance($run, fn () => $run->generator->send(true));
                } else {
                    $run->awaiting = $yielded;
                }
                return;
            }
            $this->emit($run, $yielded, true);
        } catch (\Throwable $error) {
            $run->done = true;
            $failure = $error instanceof TemporalFailure ? $error->failure : Failure::fromThrowable($error);
            $this->out[] = new Message($this->nextId++, 'CompleteWorkflow', [], null, $failure);
        }
    }

    private function emit(Run $run, Command $command, bool $wait): void
    {
        if ($command->name === '__garbage__') {
            $this->garbage = true;
            return;
        }
        $id = $this->nextId++;
        if ($wait) {
            $run->waitingFor = $id;
        }
        $this->out[] = new Message($id, $command->name, $command->options, $command->payloads);
    }
}

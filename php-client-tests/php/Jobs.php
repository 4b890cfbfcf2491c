<?php
/**
 * The jobs protocol from the spec, on our goridge client: a consumer (the context JSON and
 * payload in, the reply JSON out: ack, nack, requeue) and a producer (jobs.v1 protobuf over
 * RPC, as `spiral/roadrunner-jobs` sends it).
 */
declare(strict_types=1);

namespace RingRunnerTest;

require_once __DIR__ . '/Goridge.php';
require_once __DIR__ . '/Rpc.php';
require_once __DIR__ . '/Protobuf.php';

final class ReceivedJob
{
    public function __construct(
        private Worker $worker,
        public string $id,
        public string $name,
        public string $pipeline,
        public array $headers,
        public string $payload,
        public string $driver = '',
        public string $queue = 'unknown',
    ) {
    }

    public function ack(): void
    {
        $this->worker->respond('{"type":2,"data":[]}');
    }

    public function nack(string $message, bool $requeue = false, int $delay = 0): void
    {
        $this->worker->respond(json_encode(['type' => 3, 'data' => [
            'message' => $message, 'requeue' => $requeue, 'delay_seconds' => $delay,
        ]]));
    }

    public function requeue(string $message, array $headers = [], int $delay = 0): void
    {
        $data = ['message' => $message, 'delay_seconds' => $delay];
        if ($headers !== []) {
            $data['headers'] = $headers;
        }
        $this->worker->respond(json_encode(['type' => 4, 'data' => $data]));
    }

    public function respondRaw(string $body): void
    {
        $this->worker->respond($body);
    }
}

final class JobsConsumer
{
    public function __construct(private Worker $worker)
    {
    }

    public static function create(): self
    {
        return new self(Worker::create());
    }

    public function waitJob(): ?ReceivedJob
    {
        $payload = $this->worker->waitPayload();
        if ($payload === null) {
            return null;
        }
        $context = json_decode($payload->context, true, 16, JSON_THROW_ON_ERROR);
        return new ReceivedJob($this->worker, $context['id'], $context['job'], $context['pipeline'] ?? 'unknown',
            $context['headers'] ?? [], $payload->body, $context['driver'] ?? '', $context['queue'] ?? 'unknown');
    }
}

final class JobsProducer
{
    public function __construct(private RpcClient $rpc)
    {
    }

    /** One jobs.v1.Job. */
    public static function job(string $pipeline, string $name, string $id, string $payload, int $delay = 0,
        int $priority = 0, array $headers = [], bool $autoAck = false): string
    {
        $job = Protobuf::field(1, $name) . Protobuf::field(2, $id);
        if ($payload !== '') {
            $job .= Protobuf::field(3, $payload);
        }
        foreach ($headers as $key => $values) {
            $value = '';
            foreach ((array) $values as $one) {
                $value .= Protobuf::field(1, (string) $one);
            }
            $job .= Protobuf::field(4, Protobuf::field(1, (string) $key) . Protobuf::field(2, $value));
        }
        $options = Protobuf::field(2, $pipeline);
        if ($priority !== 0) {
            $options .= Protobuf::varintField(1, $priority);
        }
        if ($delay !== 0) {
            $options .= Protobuf::varintField(3, $delay);
        }
        if ($autoAck) {
            $options .= Protobuf::varintField(6, 1);
        }
        return $job . Protobuf::field(5, $options);
    }

    public function push(string $job): void
    {
        $this->rpc->call('jobs.Push', Protobuf::field(1, $job), Frame::CODEC_PROTO);
    }

    /** @param string[] $jobs */
    public function pushBatch(array $jobs): void
    {
        $this->rpc->call('jobs.PushBatch', implode('', array_map(fn ($j) => Protobuf::field(1, $j), $jobs)), Frame::CODEC_PROTO);
    }

    /** Pause, Resume, Destroy; List with no names. The names the reply lists. */
    public function pipelines(string $method, array $names = []): array
    {
        $message = implode('', array_map(fn ($n) => Protobuf::field(1, $n), $names));
        $reply = $this->rpc->call('jobs.' . $method, $message, Frame::CODEC_PROTO);
        return array_map(fn ($f) => $f[1], Protobuf::fields($reply));
    }

    public function declare(array $options): void
    {
        $message = '';
        foreach ($options as $key => $value) {
            $message .= Protobuf::field(1, Protobuf::field(1, (string) $key) . Protobuf::field(2, (string) $value));
        }
        $this->rpc->call('jobs.Declare', $message, Frame::CODEC_PROTO);
    }

    /** Each pipeline's Stat, by name. */
    public function stat(): array
    {
        $names = [1 => 'pipeline', 2 => 'driver', 3 => 'queue', 4 => 'active', 5 => 'delayed', 6 => 'reserved', 7 => 'ready', 8 => 'priority'];
        $out = [];
        foreach (Protobuf::fields($this->rpc->call('jobs.Stat', '', Frame::CODEC_PROTO)) as [, $bytes]) {
            $stat = ['active' => 0, 'delayed' => 0, 'reserved' => 0, 'ready' => false, 'priority' => 0];
            foreach (Protobuf::fields($bytes) as [$number, $value]) {
                $stat[$names[$number]] = $number === 7 ? (bool) $value : $value;
            }
            $out[$stat['pipeline']] = $stat;
        }
        return $out;
    }
}

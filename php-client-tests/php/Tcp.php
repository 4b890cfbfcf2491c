<?php
/**
 * The tcp side of our test client, written from spec/tcp-jobs.md Part A: events in (a JSON
 * context with remote_addr, server, uuid, event; the message bytes as body), one command
 * word and the bytes to write out. Test use only: the real one is spiral/roadrunner-tcp.
 */
declare(strict_types=1);

namespace RingRunnerTest;

require_once __DIR__ . '/Goridge.php';

final class TcpRequest
{
    public function __construct(
        public string $remoteAddr,
        public string $server,
        public string $uuid,
        public string $event,
        public string $body,
    ) {
    }
}

final class TcpWorker
{
    public function __construct(private Worker $worker)
    {
    }

    public static function create(): self
    {
        return new self(Worker::create());
    }

    /** The next event, or null when the server asks this worker to stop. */
    public function waitRequest(): ?TcpRequest
    {
        $payload = $this->worker->waitPayload();
        if ($payload === null) {
            return null;
        }
        $context = json_decode($payload->context, true, 8, JSON_THROW_ON_ERROR);
        return new TcpRequest(
            $context['remote_addr'],
            $context['server'],
            $context['uuid'],
            $context['event'],
            $payload->body,
        );
    }

    /** WRITE (keep reading), WRITECLOSE, CONTINUE or CLOSE (or anything, to test). */
    public function respond(string $command, string $body = ''): void
    {
        $this->worker->respond($body, $command);
    }

    public function error(string $message): void
    {
        $this->worker->error($message);
    }
}

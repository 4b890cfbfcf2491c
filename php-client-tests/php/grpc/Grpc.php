<?php
/**
 * ringrunner's own gRPC worker loop, written from spec/grpc.md (the payload the worker
 * receives, response headers and trailers, GRPCException statuses). Test use only: the
 * real package is spiral/roadrunner-grpc.
 */
declare(strict_types=1);

namespace RingRunnerTest;

require_once __DIR__ . '/../Goridge.php';
require_once __DIR__ . '/../Protobuf.php';

/** A status a method throws: sent as header `error` = base64(google.rpc.Status). */
final class GrpcException extends \RuntimeException
{
    public const UNKNOWN = 2;
    public const NOT_FOUND = 5;

    /** @param string[] $details serialized google.protobuf.Any messages */
    public function __construct(string $message, int $code, public array $details = [])
    {
        parent::__construct($message, $code);
    }

    public function status(): string
    {
        $status = Protobuf::varintField(1, $this->getCode()) . Protobuf::field(2, $this->getMessage());
        foreach ($this->details as $any) {
            $status .= Protobuf::field(3, $any);
        }
        return $status;
    }
}

/** What a method gets: the call's metadata, and the headers it sets for the answer. */
final class GrpcCall
{
    /** @var array<string, string> */
    public array $headers = [];

    /** @param array<string, string[]> $context */
    public function __construct(public string $service, public string $method, public array $context)
    {
    }

    /** @return string[] */
    public function getValue(string $key): array
    {
        return $this->context[$key] ?? [];
    }
}

final class GrpcWorker
{
    /**
     * @param array<string, array<string, callable>> $services service => method =>
     *     fn(GrpcCall, string): string|string[] (a list: its messages as one streamed reply)
     */
    public static function serve(array $services): void
    {
        $worker = Worker::create();
        while ($payload = $worker->waitPayload()) {
            $header = json_decode($payload->context, true, 16, JSON_THROW_ON_ERROR);
            $call = new GrpcCall($header['service'], $header['method'], $header['context']);
            try {
                $handler = $services[$call->service][$call->method] ?? null;
                if ($handler === null) {
                    throw new GrpcException(
                        "Method `{$call->method}` not found in service `{$call->service}`.",
                        GrpcException::UNKNOWN,
                    );
                }
                $reply = $handler($call, $payload->body);
                $context = json_encode((object) $call->headers);
                if (is_array($reply)) {
                    // Several messages: a streamed reply (goridge STREAM flag), which rr refuses.
                    $last = count($reply) - 1;
                    foreach (array_values($reply) as $i => $chunk) {
                        $worker->respondChunk($chunk, $i < $last, $i === 0 ? $context : '');
                    }
                } else {
                    $worker->respond($reply, $context);
                }
            } catch (GrpcException $e) {
                $worker->respond('', json_encode(['error' => base64_encode($e->status())]));
            } catch (\Throwable $e) {
                $worker->error($e->getMessage());
            }
        }
    }
}

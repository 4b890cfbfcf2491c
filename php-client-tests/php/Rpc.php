<?php
/**
 * ringrunner's own goridge RPC client, written from spec/relay-protocol.md §6: one call in
 * flight a connection, JSON (default) or raw codec, the sequence number checked on every
 * reply. Test use only: the real one is spiral/goridge's RPC class.
 */
declare(strict_types=1);

namespace RingRunnerTest;

require_once __DIR__ . '/Goridge.php';

final class RpcError extends \RuntimeException
{
}

final class RpcClient
{
    private static int $seq = 1;

    /** @param resource $socket */
    private function __construct(private $socket)
    {
    }

    /** `tcp://host:port` or `unix://path` (rr's `rpc.listen`, or RR_RPC). */
    public static function connect(string $dsn, float $timeout = 5.0): self
    {
        if (!preg_match('#^(tcp|unix)://(.+)$#', $dsn, $m)) {
            throw new \InvalidArgumentException("invalid rpc dsn $dsn");
        }
        $socket = @stream_socket_client("$m[1]://$m[2]", $errno, $error, $timeout);
        if ($socket === false) {
            throw new \RuntimeException("cannot connect to $dsn: $error");
        }
        stream_set_timeout($socket, 120);
        return new self($socket);
    }

    /** Sends raw bytes (for tests of bad input). */
    public function sendBytes(string $bytes): void
    {
        fwrite($this->socket, $bytes);
        fflush($this->socket);
    }

    /** True when the server closed the connection (read returns EOF within $seconds). */
    public function closedWithin(float $seconds): bool
    {
        stream_set_timeout($this->socket, (int) ceil($seconds));
        $data = fread($this->socket, 1);
        return $data === '' && feof($this->socket);
    }

    /**
     * Calls `Service.Method`; $payload is JSON-encoded (JSON codec) or sent as is (raw).
     * Returns the decoded reply (JSON) or the raw bytes; throws RpcError with the server's
     * error text.
     */
    public function call(string $method, mixed $payload, int $codec = Frame::CODEC_JSON): mixed
    {
        $seq = self::$seq;
        $body = $codec === Frame::CODEC_JSON ? json_encode($payload) : (string) $payload;
        $this->sendBytes((new Frame($codec, $method . $body, [$seq, strlen($method)]))->encode());
        $reply = Frame::read(function (int $length): string {
            $data = '';
            while (strlen($data) < $length) {
                $chunk = fread($this->socket, $length - strlen($data));
                if ($chunk === false || $chunk === '') {
                    throw new \RuntimeException('rpc connection closed');
                }
                $data .= $chunk;
            }
            return $data;
        });
        if (count($reply->options) !== 2) {
            throw new \RuntimeException('options missing');
        }
        if ($reply->options[0] !== $seq) {
            throw new \RuntimeException('sequence mismatch');
        }
        self::$seq++;
        $body = substr($reply->payload, $reply->options[1]);
        if ($reply->flags & Frame::ERROR) {
            throw new RpcError($body);
        }
        return $codec === Frame::CODEC_JSON ? json_decode($body, true, 64, JSON_THROW_ON_ERROR) : $body;
    }
}

<?php
/**
 * ringrunner's own goridge worker client, written from spec/relay-protocol.md.
 * Test use only: the real PHP packages are spiral/goridge and spiral/roadrunner-worker.
 */
declare(strict_types=1);

namespace RingRunnerTest;

final class Frame
{
    public const CONTROL = 0x01;
    public const CODEC_RAW = 0x04;
    public const CODEC_JSON = 0x08;
    public const ERROR = 0x40;
    public const CODEC_PROTO = 0x80;

    public const STREAM = 0x01;
    public const STOP = 0x02;
    public const PING = 0x04;
    public const PONG = 0x08;

    /** @param int[] $options */
    public function __construct(
        public int $flags = 0,
        public string $payload = '',
        public array $options = [],
        public int $stream = 0,
    ) {
    }

    /** spec §1.1: version 1, HL = 3 + options, CRC-32 of bytes 0..6, options, payload. */
    public function encode(): string
    {
        $words = 3 + count($this->options);
        if ($words > 13) {
            throw new \LengthException('at most 10 options');
        }
        $head = pack('CCV', (1 << 4) | $words, $this->flags, strlen($this->payload));
        $head .= pack('VCC', crc32($head), $this->stream, 0);
        foreach ($this->options as $option) {
            $head .= pack('V', $option);
        }
        return $head . $this->payload;
    }

    /** Reads one frame from $read (a function that returns exactly N bytes). */
    public static function read(callable $read): self
    {
        $head = $read(12);
        if ($head === 'Could not op') {
            throw new \RuntimeException('peer printed "Could not op..."');
        }
        $fields = unpack('Cvh/Cflags/Vlen/Vcrc/Cstream/Creserved', $head);
        if (crc32(substr($head, 0, 6)) !== $fields['crc']) {
            throw new \RuntimeException('bad frame CRC: ' . bin2hex($head));
        }
        $words = $fields['vh'] & 0x0f;
        if ($words < 3 || $words > 13) {
            throw new \RuntimeException("bad header length $words");
        }
        $options = $words > 3 ? array_values(unpack('V*', $read(4 * ($words - 3)))) : [];
        $payload = $fields['len'] > 0 ? $read($fields['len']) : '';
        return new self($fields['flags'], $payload, $options, $fields['stream']);
    }
}

/** A byte stream to the server: pipes (stdin/stdout) or a socket from RR_RELAY (spec §7.1). */
final class Relay
{
    /** @param resource $in @param resource $out */
    private function __construct(private $in, private $out)
    {
    }

    public static function fromEnvironment(): self
    {
        $dsn = getenv('RR_RELAY') ?: 'pipes';
        if ($dsn === 'pipes') {
            return new self(STDIN, STDOUT);
        }
        if (!preg_match('#^(tcp|unix)://(.+)$#', $dsn, $m)) {
            throw new \InvalidArgumentException("unsupported relay $dsn");
        }
        $socket = null;
        for ($attempt = 0; $attempt < 50 && $socket === null; $attempt++) {
            $socket = @stream_socket_client("$m[1]://$m[2]", $errno, $error, 5) ?: null;
            if ($socket === null) {
                usleep(1000 * ($attempt + 1));
            }
        }
        if ($socket === null) {
            throw new \RuntimeException("cannot connect to $dsn: $error");
        }
        return new self($socket, $socket);
    }

    public function send(Frame $frame): void
    {
        $bytes = $frame->encode();
        while ($bytes !== '') {
            $written = fwrite($this->out, $bytes);
            if ($written === false || $written === 0) {
                throw new \RuntimeException('relay closed while writing');
            }
            $bytes = substr($bytes, $written);
        }
        fflush($this->out);
    }

    public function receive(): Frame
    {
        return Frame::read(function (int $length): string {
            $data = '';
            while (strlen($data) < $length) {
                $chunk = fread($this->in, $length - strlen($data));
                if ($chunk === false || ($chunk === '' && feof($this->in))) {
                    throw new RelayClosed('relay closed');
                }
                $data .= $chunk;
            }
            return $data;
        });
    }
}

final class RelayClosed extends \RuntimeException
{
}

/** A request the server sent: context and body split by option 0 (spec §2). */
final class Payload
{
    public function __construct(public string $context, public string $body, public int $codec)
    {
    }
}

/** The worker side of spec §3–§5: handshake, requests, responses, errors, stop, streams. */
final class Worker
{
    private int $streamFramesSent = 0;

    public function __construct(private Relay $relay)
    {
    }

    public static function create(): self
    {
        return new self(Relay::fromEnvironment());
    }

    /** The next request, or null when the server asked this worker to stop. */
    public function waitPayload(): ?Payload
    {
        while (true) {
            try {
                $frame = $this->relay->receive();
            } catch (RelayClosed) {
                return null;
            }
            if ($frame->flags & Frame::CONTROL) {
                $control = json_decode($frame->payload, true, 8, JSON_THROW_ON_ERROR);
                if (!empty($control['stop'])) {
                    return null;
                }
                if (!empty($control['pid'])) {
                    $this->relay->send(new Frame(Frame::CONTROL, json_encode(['pid' => getmypid()])));
                    continue;
                }
                throw new \RuntimeException('undefined control package');
            }
            if ($frame->stream & (Frame::STOP | Frame::PONG)) {
                continue; // a late STOP/PONG after a stream ended
            }
            $contextLength = $frame->options[0] ?? 0;
            return new Payload(
                substr($frame->payload, 0, $contextLength),
                substr($frame->payload, $contextLength),
                $frame->flags,
            );
        }
    }

    public function respond(string $body, string $context = '', int $codec = 0): void
    {
        $this->relay->send(new Frame($codec, $context . $body, [strlen($context)]));
    }

    /** Sends one chunk of a streamed response (spec §5); the last one has $more = false. */
    public function respondChunk(string $body, bool $more, string $context = '', int $codec = 0): void
    {
        $stream = $more ? Frame::STREAM : 0;
        if ($more && ++$this->streamFramesSent % 5 === 0) {
            $stream |= Frame::PING;
        }
        $this->relay->send(new Frame($codec, $context . $body, [strlen($context)], $stream));
        if ($stream & Frame::PING) {
            $pong = $this->relay->receive();
            if ($pong->stream & Frame::STOP) {
                throw new StreamStopped();
            }
        }
        if (!$more) {
            $this->streamFramesSent = 0;
        }
    }

    public function error(string $message): void
    {
        $this->relay->send(new Frame(Frame::ERROR, $message));
    }

    /** Asks the server to retire this worker; it re-runs the request elsewhere (spec §4.2). */
    public function stop(): void
    {
        $this->relay->send(new Frame(0, '{"stop":true}', [13]));
    }
}

final class StreamStopped extends \RuntimeException
{
}

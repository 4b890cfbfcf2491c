<?php
/**
 * The HTTP side of our test client: decodes the `http.v1.Request` protobuf context (or the
 * legacy JSON one) and encodes `http.v1.Response`, written from spec/http.md §1.
 */
declare(strict_types=1);

namespace RingRunnerTest;

require_once __DIR__ . '/Goridge.php';

final class HttpRequest
{
    /** @param array<string, string[]> $headers @param array<string, string> $cookies */
    public function __construct(
        public string $remoteAddr = '',
        public string $protocol = '',
        public string $method = '',
        public string $uri = '',
        public array $headers = [],
        public array $cookies = [],
        public string $rawQuery = '',
        public bool $parsed = false,
        public string $uploads = '',
        public string $body = '',
    ) {
    }

    public function path(): string
    {
        return (string) parse_url($this->uri, PHP_URL_PATH);
    }

    /** @return array<string, mixed> */
    public function query(): array
    {
        parse_str($this->rawQuery, $query);
        return $query;
    }
}

final class Proto
{
    /** @return array{int, int} value and new offset */
    public static function varint(string $bytes, int $at): array
    {
        $value = 0;
        $shift = 0;
        while (true) {
            if ($at >= strlen($bytes)) {
                throw new \UnexpectedValueException('truncated varint');
            }
            $byte = ord($bytes[$at++]);
            $value |= ($byte & 0x7f) << $shift;
            if ($byte < 0x80) {
                return [$value, $at];
            }
            $shift += 7;
        }
    }

    /** @return array<int, list<int|string>> field number → values */
    public static function fields(string $bytes): array
    {
        $fields = [];
        $at = 0;
        while ($at < strlen($bytes)) {
            [$key, $at] = self::varint($bytes, $at);
            $field = $key >> 3;
            switch ($key & 7) {
                case 0:
                    [$value, $at] = self::varint($bytes, $at);
                    break;
                case 2:
                    [$length, $at] = self::varint($bytes, $at);
                    $value = substr($bytes, $at, $length);
                    $at += $length;
                    break;
                default:
                    throw new \UnexpectedValueException('unsupported wire type');
            }
            $fields[$field][] = $value;
        }
        return $fields;
    }

    /** @return array<string, string[]> a map<string, HeaderValue> field */
    public static function headerMap(array $entries): array
    {
        $map = [];
        foreach ($entries as $entry) {
            $parts = self::fields($entry);
            $values = isset($parts[2][0]) ? (self::fields($parts[2][0])[1] ?? []) : [];
            $map[$parts[1][0] ?? ''] = array_map('strval', $values);
        }
        return $map;
    }

    public static function putVarint(int $value): string
    {
        $out = '';
        while ($value >= 0x80) {
            $out .= chr(($value & 0x7f) | 0x80);
            $value >>= 7;
        }
        return $out . chr($value);
    }

    public static function putBytes(int $field, string $bytes): string
    {
        return chr($field << 3 | 2) . self::putVarint(strlen($bytes)) . $bytes;
    }

    /** @param array<string, string[]> $headers */
    public static function response(int $status, array $headers): string
    {
        $out = chr(1 << 3) . self::putVarint($status);
        foreach ($headers as $name => $values) {
            $value = '';
            foreach ((array) $values as $one) {
                $value .= self::putBytes(1, (string) $one);
            }
            $out .= self::putBytes(2, self::putBytes(1, (string) $name) . self::putBytes(2, $value));
        }
        return $out;
    }
}

final class HttpWorker
{
    private bool $json = false;

    public function __construct(private Worker $worker)
    {
    }

    public static function create(): self
    {
        return new self(Worker::create());
    }

    public function waitRequest(): ?HttpRequest
    {
        $payload = $this->worker->waitPayload();
        if ($payload === null) {
            return null;
        }
        $this->json = ($payload->codec & Frame::CODEC_JSON) !== 0;
        if ($this->json) {
            $c = json_decode($payload->context, true, 512, JSON_THROW_ON_ERROR);
            return new HttpRequest(
                $c['remoteAddr'], $c['protocol'], $c['method'], $c['uri'], $c['headers'] ?? [],
                $c['cookies'] ?? [], $c['rawQuery'], (bool) $c['parsed'],
                $c['uploads'] === null ? '' : json_encode($c['uploads']), $payload->body,
            );
        }
        $f = Proto::fields($payload->context);
        $cookies = array_map(fn (array $v) => $v[0] ?? '', Proto::headerMap($f[6] ?? []));
        return new HttpRequest(
            (string) ($f[1][0] ?? ''), (string) ($f[2][0] ?? ''), (string) ($f[3][0] ?? ''),
            (string) ($f[4][0] ?? ''), Proto::headerMap($f[5] ?? []), $cookies,
            (string) ($f[7][0] ?? ''), (bool) ($f[8][0] ?? false), (string) ($f[9][0] ?? ''),
            $payload->body,
        );
    }

    /** @param array<string, string|string[]> $headers */
    public function respond(int $status, string $body, array $headers = []): void
    {
        $this->worker->respond($body, $this->context($status, $headers), $this->codec());
    }

    /** One frame of a streamed response; the first carries status and headers. */
    public function respondChunk(string $body, bool $more, ?int $status = null, array $headers = []): void
    {
        $context = $status === null ? '' : $this->context($status, $headers);
        $this->worker->respondChunk($body, $more, $context, $this->codec());
    }

    /** A reply with a context of the caller's bytes (for garbage tests). */
    public function respondRaw(string $context, string $body): void
    {
        $this->worker->respond($body, $context, $this->codec());
    }

    public function error(string $message): void
    {
        $this->worker->error($message);
    }

    /** The codec of the last request's context: 'json' or 'protobuf'. */
    public function contextCodec(): string
    {
        return $this->json ? 'json' : 'protobuf';
    }

    private function codec(): int
    {
        return $this->json ? Frame::CODEC_JSON : Frame::CODEC_PROTO;
    }

    private function context(int $status, array $headers): string
    {
        $headers = array_map(fn ($v) => array_values((array) $v), $headers);
        if ($this->json) {
            return json_encode(['status' => $status, 'headers' => (object) $headers]);
        }
        return Proto::response($status, $headers);
    }
}

<?php
/**
 * A kv client written from the spec: the `kv.v1` protobuf messages encoded and decoded by
 * hand, sent with the PROTO codec over our goridge RPC client, values PHP-serialized and
 * expiry times written as `spiral/roadrunner-kv` writes them (now + TTL, UTC, RFC 3339).
 */
declare(strict_types=1);

namespace RingRunnerTest;

require_once __DIR__ . '/Rpc.php';

final class Protobuf
{
    public static function varint(int $value): string
    {
        $out = '';
        while ($value > 0x7f) {
            $out .= chr(($value & 0x7f) | 0x80);
            $value >>= 7;
        }
        return $out . chr($value);
    }

    /** A length-delimited field (strings, bytes, messages). */
    public static function field(int $number, string $bytes): string
    {
        return self::varint(($number << 3) | 2) . self::varint(strlen($bytes)) . $bytes;
    }

    /** The length-delimited fields of a message, as [number, bytes] pairs. */
    public static function fields(string $message): array
    {
        $fields = [];
        $at = 0;
        $length = strlen($message);
        $read = function () use ($message, &$at): int {
            $value = 0;
            $shift = 0;
            do {
                $byte = ord($message[$at++]);
                $value |= ($byte & 0x7f) << $shift;
                $shift += 7;
            } while ($byte & 0x80);
            return $value;
        };
        while ($at < $length) {
            $key = $read();
            if (($key & 7) !== 2) {
                throw new \RuntimeException('unexpected wire type ' . ($key & 7));
            }
            $size = $read();
            $fields[] = [$key >> 3, substr($message, $at, $size)];
            $at += $size;
        }
        return $fields;
    }
}

final class KvStorage
{
    public function __construct(private RpcClient $rpc, private string $name)
    {
    }

    /** `kv.<method>` with items [key, value, timeout]; the reply's items, the same shape. */
    public function call(string $method, array $items): array
    {
        $request = Protobuf::field(1, $this->name);
        foreach ($items as [$key, $value, $timeout]) {
            $item = Protobuf::field(1, $key);
            if ($value !== '') {
                $item .= Protobuf::field(2, $value);
            }
            if ($timeout !== '') {
                $item .= Protobuf::field(3, $timeout);
            }
            $request .= Protobuf::field(2, $item);
        }
        $reply = $this->rpc->call('kv.' . $method, $request, Frame::CODEC_PROTO);
        $out = [];
        foreach (Protobuf::fields($reply) as [$number, $bytes]) {
            if ($number !== 1) {
                continue;
            }
            $item = ['', '', ''];
            foreach (Protobuf::fields($bytes) as [$field, $value]) {
                $item[$field - 1] = $value;
            }
            $out[] = $item;
        }
        return $out;
    }

    /** As the PHP package: `now_utc + ttl`, `Y-m-d\TH:i:sP`; no TTL → "". */
    public static function timeout(?int $ttl): string
    {
        return $ttl === null ? '' : (new \DateTimeImmutable('now', new \DateTimeZone('UTC')))
            ->modify("+{$ttl} seconds")->format('Y-m-d\TH:i:sP');
    }

    public function setMultiple(array $values, ?int $ttl = null): void
    {
        $timeout = self::timeout($ttl);
        $items = [];
        foreach ($values as $key => $value) {
            $items[] = [(string) $key, serialize($value), $timeout];
        }
        $this->call('Set', $items);
    }

    /** The values of the keys present, unserialized, by key. */
    public function getMultiple(array $keys): array
    {
        $found = [];
        foreach ($this->call('MGet', array_map(fn ($k) => [(string) $k, '', ''], $keys)) as [$key, $value]) {
            $found[$key] = unserialize($value);
        }
        return $found;
    }

    public function has(string $key): bool
    {
        return $this->call('Has', [[$key, '', '']]) !== [];
    }

    /** The expiry time of each key that has one (null for none), by key. */
    public function getMultipleTtl(array $keys): array
    {
        $found = [];
        foreach ($this->call('TTL', array_map(fn ($k) => [(string) $k, '', ''], $keys)) as [$key, , $timeout]) {
            $found[$key] = $timeout === '' ? null : $timeout;
        }
        return $found;
    }

    public function deleteMultiple(array $keys): void
    {
        $this->call('Delete', array_map(fn ($k) => [(string) $k, '', ''], $keys));
    }

    public function clear(): void
    {
        $this->call('Clear', []);
    }
}

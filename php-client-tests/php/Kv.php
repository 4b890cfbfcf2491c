<?php
/**
 * A kv client written from the spec: the `kv.v1` protobuf messages encoded and decoded by
 * hand, sent with the PROTO codec over our goridge RPC client, values PHP-serialized and
 * expiry times written as `spiral/roadrunner-kv` writes them (now + TTL, UTC, RFC 3339).
 */
declare(strict_types=1);

namespace RingRunnerTest;

require_once __DIR__ . '/Rpc.php';
require_once __DIR__ . '/Protobuf.php';

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

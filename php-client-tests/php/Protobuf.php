<?php
/**
 * Just enough protobuf for the RPC messages of rr's PHP packages (kv.v1, service.v1),
 * written from the wire format's description.
 */
declare(strict_types=1);

namespace RingRunnerTest;

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

    /** A varint field (ints, bools). */
    public static function varintField(int $number, int $value): string
    {
        return self::varint($number << 3) . self::varint($value);
    }

    /**
     * The fields of a message, as [number, value] pairs: bytes for length-delimited fields,
     * an int for varints, a float for 32-bit fields (floats), an int for 64-bit ones.
     */
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
            switch ($key & 7) {
                case 0:
                    $fields[] = [$key >> 3, $read()];
                    break;
                case 1:
                    $fields[] = [$key >> 3, unpack('P', substr($message, $at, 8))[1]];
                    $at += 8;
                    break;
                case 2:
                    $size = $read();
                    $fields[] = [$key >> 3, substr($message, $at, $size)];
                    $at += $size;
                    break;
                case 5:
                    $fields[] = [$key >> 3, unpack('g', substr($message, $at, 4))[1]];
                    $at += 4;
                    break;
                default:
                    throw new \RuntimeException('unexpected wire type ' . ($key & 7));
            }
        }
        return $fields;
    }
}


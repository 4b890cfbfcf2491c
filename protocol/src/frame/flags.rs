//! The two bit sets of a frame header: the flags byte (offset 1) and the stream byte
//! (offset 10). Spec relay-protocol §1.3 and §1.4: plain bit sets, always tested bit by bit.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

macro_rules! bit_set {
    ($(#[$meta:meta])* $name:ident { $($(#[$bit_meta:meta])* $bit:ident = $value:expr,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub u8);

        impl $name {
            $($(#[$bit_meta])* pub const $bit: Self = Self($value);)*
            /// No bit set.
            pub const EMPTY: Self = Self(0);

            /// The raw byte.
            #[must_use]
            pub const fn bits(self) -> u8 {
                self.0
            }

            /// True when every bit of `other` is set in `self`.
            #[must_use]
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// True when no bit is set.
            #[must_use]
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// `self` with the bits of `other` added.
            #[must_use]
            pub const fn with(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }

            /// `self` with the bits of `other` cleared.
            #[must_use]
            pub const fn without(self, other: Self) -> Self {
                Self(self.0 & !other.0)
            }

            /// The names of the known bits that are set, lowest bit first.
            pub fn names(self) -> impl Iterator<Item = &'static str> {
                [$((Self::$bit, stringify!($bit)),)*]
                    .into_iter()
                    .filter(move |(bit, _)| self.contains(*bit))
                    .map(|(_, name)| name)
            }
        }

        impl BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                self.with(rhs)
            }
        }

        impl BitOrAssign for $name {
            fn bitor_assign(&mut self, rhs: Self) {
                *self = self.with(rhs);
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:#04x}", stringify!($name), self.0)?;
                for name in self.names() {
                    write!(f, " {name}")?;
                }
                f.write_str(")")
            }
        }
    };
}

bit_set! {
    /// The flags byte (offset 1): frame kind and payload codec.
    Flags {
        /// Control frame; the payload is a JSON object (§3).
        CONTROL = 0x01,
        /// Raw bytes.
        CODEC_RAW = 0x04,
        /// JSON.
        CODEC_JSON = 0x08,
        /// MessagePack (RPC only).
        CODEC_MSGPACK = 0x10,
        /// Go `encoding/gob` (RPC only).
        CODEC_GOB = 0x20,
        /// Error frame; the payload is UTF-8 error text.
        ERROR = 0x40,
        /// Protocol Buffers.
        CODEC_PROTO = 0x80,
    }
}

bit_set! {
    /// The stream byte (offset 10): streamed responses (§5).
    StreamFlags {
        /// Worker: more frames of this response follow.
        STREAM = 0x01,
        /// Server: abort the stream you are producing.
        STOP = 0x02,
        /// Worker: reply with PONG.
        PING = 0x04,
        /// Server: the reply to PING.
        PONG = 0x08,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_combine_and_test_individually() {
        let flags = Flags::CONTROL | Flags::CODEC_JSON;
        assert_eq!(flags.bits(), 0x09);
        assert!(flags.contains(Flags::CONTROL));
        assert!(!flags.contains(Flags::ERROR));
        assert_eq!(flags.without(Flags::CONTROL), Flags::CODEC_JSON);
        assert_eq!(flags.names().collect::<Vec<_>>(), ["CONTROL", "CODEC_JSON"]);
        assert_eq!(format!("{flags:?}"), "Flags(0x09 CONTROL CODEC_JSON)");
    }

    #[test]
    fn stream_bits() {
        let stream = StreamFlags::STREAM | StreamFlags::PING;
        assert_eq!(stream.bits(), 0x05);
        assert_eq!(stream.names().collect::<Vec<_>>(), ["STREAM", "PING"]);
        assert!(StreamFlags::EMPTY.is_empty());
    }
}

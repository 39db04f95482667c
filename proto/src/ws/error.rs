//! Owns `ProtocolError`: every way a peer can break RFC 6455 after the upgrade, and the close
//! code (RFC 6455 §7.4.1) each one is answered with. It performs nothing; `conn` acts on it.
//! Must not: perform anything; it names errors and their close codes.

use std::fmt;

/// A violation of RFC 6455 by the peer, detected by the sans-IO codec.
///
/// `close_code()` is the status code the server sends in its close frame (§7.4.1). Limits carry
/// the offending size and the configured maximum so logs can say what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// §5.2: opcodes 0x3–0x7 and 0xB–0xF are reserved.
    ReservedOpcode(u8),
    /// §5.2: RSV1–3 must be 0 unless an extension defines them. Holds the three bits.
    ReservedBits(u8),
    /// §5.1: a client must mask every frame it sends.
    UnmaskedFrame,
    /// §5.5: control frames carry at most 125 bytes of payload.
    ControlFrameTooLong(u64),
    /// §5.5: control frames must not be fragmented.
    FragmentedControlFrame,
    /// §5.4: a continuation frame arrived with no message in progress.
    UnexpectedContinuation,
    /// §5.4: a new text/binary frame arrived while a fragmented message was in progress.
    ExpectedContinuation,
    /// §5.2: the most significant bit of a 64-bit payload length must be 0.
    LengthTopBitSet,
    /// §5.5.1: a close payload of exactly one byte.
    CloseFrameOneByte,
    /// §7.4: a close code that is not allowed on the wire.
    InvalidCloseCode(u16),
    /// §8.1: text message or close reason is not valid UTF-8.
    InvalidUtf8,
    /// A frame's declared payload length exceeds the frame limit (checked before reading it).
    FrameTooLarge { size: u64, max: u64 },
    /// A message (all fragments together) exceeds the message limit.
    MessageTooLarge { size: u64, max: u64 },
    /// A message is split into more fragments than allowed (empty fragments count).
    TooManyFragments { max: u32 },
    /// RFC 7692 §7.2.2: a compressed message is not a valid DEFLATE stream.
    BadCompressedData,
}

impl ProtocolError {
    /// The close code sent to the peer for this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            // The payload is inconsistent with the message (§7.4.1), as for bad UTF-8.
            ProtocolError::InvalidUtf8 | ProtocolError::BadCompressedData => 1007,
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => 1009,
            ProtocolError::TooManyFragments { .. } => 1008,
            _ => 1002,
        }
    }

    /// A short reason for the close frame (kept well under the 123 bytes a close reason may use).
    pub fn reason(&self) -> &'static str {
        match self {
            ProtocolError::ReservedOpcode(_) => "reserved opcode",
            ProtocolError::ReservedBits(_) => "reserved bits set",
            ProtocolError::UnmaskedFrame => "client frame not masked",
            ProtocolError::ControlFrameTooLong(_) => "control frame too long",
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::UnexpectedContinuation => "continuation without a message",
            ProtocolError::ExpectedContinuation => "expected a continuation frame",
            ProtocolError::LengthTopBitSet => "64-bit length with top bit set",
            ProtocolError::CloseFrameOneByte => "close payload of one byte",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::FrameTooLarge { .. } => "frame too large",
            ProtocolError::MessageTooLarge { .. } => "message too large",
            ProtocolError::TooManyFragments { .. } => "too many fragments",
            ProtocolError::BadCompressedData => "invalid compressed data",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::FrameTooLarge { size, max }
            | ProtocolError::MessageTooLarge { size, max } => {
                write!(f, "{}: {} bytes, limit {}", self.reason(), size, max)
            }
            ProtocolError::TooManyFragments { max } => {
                write!(f, "{}: limit {}", self.reason(), max)
            }
            ProtocolError::ReservedOpcode(op) => write!(f, "{}: {:#x}", self.reason(), op),
            ProtocolError::InvalidCloseCode(c) => write!(f, "{}: {}", self.reason(), c),
            _ => f.write_str(self.reason()),
        }
    }
}

impl std::error::Error for ProtocolError {}
